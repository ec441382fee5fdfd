//! The proxy-wasm ABI 0.2.1 as this filter uses it, without the SDK: the host calls it imports
//! (each next to a wrapper that hands every status back as a `Result`, so no answer of a host
//! can panic the VM), the byte encodings, and the `log` backend. The callbacks it exports are
//! `glue::exports` (above this module: they dispatch into the contexts, which call down here).
//!
//! ```text
//!  host ──▶ glue::exports   proxy_on_* (only the ones the filter needs; cpp-host treats a
//!                        missing callback as "Continue" / "nothing to do")
//!               │
//!               ▼
//!          glue::contexts   which context an id or an HTTP-call token belongs to
//!               │
//!               ▼
//!          root / http     the filter's contexts ──▶ stream.rs, vm.rs ──▶ env.proxy_* imports
//! ```
//!
//! Why not the SDK (`proxy-wasm` 0.2.5): its dispatcher exports every callback (gRPC ones
//! included), keeps each context as a `Box<dyn>` in a hash map looked up on every callback,
//! and `panic!`s on any status its wrappers do not expect (bench/PROFILE.md, bench/WASM_SIZE.md).

pub mod codec;
pub mod logger;
pub mod stream;
pub mod vm;

pub use stream::{body, header, headers, resume, send_response, set_header};
pub use vm::{
    call_foreign_function, define_metric, get_shared_data, http_call, increment_metric,
    plugin_configuration, property, record_metric, set_effective_context, set_shared_data,
    set_tick_period, SharedValue,
};

/// What an HTTP callback tells the host: go on, or stop this direction until resumed.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Pass the headers/body on to the next filter.
    Continue = 0,
    /// Stop iteration (headers) or stop and buffer (body) until `proxy_continue_stream`.
    Pause = 1,
}

/// Header maps of the ABI (`proxy_get_header_map_*`): only the ones the filter reads or writes.
/// Named as in the spec and the SDK, so call sites read as they always did.
#[allow(clippy::enum_variant_names)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapType {
    /// The request headers (reachable at request headers, or while paused there).
    HttpRequestHeaders = 0,
    /// The response headers (reachable at response headers, or while paused there).
    HttpResponseHeaders = 2,
    /// The headers of an HTTP call's answer (only during `on_http_call_response`).
    HttpCallResponseHeaders = 6,
}

/// Buffers of the ABI (`proxy_get_buffer_bytes`): only the ones the filter reads.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferType {
    /// The request body (this chunk, or everything buffered while paused).
    HttpRequestBody = 0,
    /// The response body (this chunk, or everything buffered while paused).
    HttpResponseBody = 1,
    /// The body of an HTTP call's answer (only during `on_http_call_response`).
    HttpCallResponseBody = 4,
    /// The plugin configuration (only during `on_configure`).
    PluginConfiguration = 7,
}

/// Directions `proxy_continue_stream` resumes: only the ones the filter pauses.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamType {
    /// The response direction (a failed answer held while a replay runs).
    HttpResponse = 1,
}

/// Metric kinds of `proxy_define_metric`.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// Only goes up (increments must be > 0 in Envoy).
    Counter = 0,
    /// Set to a value.
    Gauge = 1,
}

/// The ABI's OK status; every other value is handed back as a [`HostStatus`].
const OK: u32 = 0;
/// The ABI's NOT_FOUND status, which several wrappers turn into "nothing there".
const NOT_FOUND: u32 = 1;
/// The ABI's BAD_ARGUMENT status.
pub const BAD_ARGUMENT: HostStatus = HostStatus(2);
/// The ABI's CAS_MISMATCH status (a shared-data write lost the race).
pub const CAS_MISMATCH: HostStatus = HostStatus(8);

/// A host status other than OK, as the raw number: a host may answer one the spec does not
/// list for the call, and the filter must neither panic on it nor lose it from its log line.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HostStatus(pub u32);

impl HostStatus {
    /// NOT_FOUND: the thing asked for is not there (a foreign function this Envoy lacks, …).
    pub fn is_not_found(self) -> bool {
        self.0 == NOT_FOUND
    }
}

impl std::fmt::Display for HostStatus {
    /// The spec's name (as the SDK's `Status` printed it), else `status N`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self.0 {
            1 => "NotFound",
            2 => "BadArgument",
            3 => "SerializationFailure",
            4 => "ParseFailure",
            7 => "Empty",
            8 => "CasMismatch",
            10 => "InternalFailure",
            _ => return write!(f, "status {}", self.0),
        };
        f.write_str(name)
    }
}

impl std::fmt::Debug for HostStatus {
    /// Same text as [`Display`](std::fmt::Display): log lines that print a status with `{:?}`
    /// read as they did with the SDK's enum (`BadArgument`, `InternalFailure`, …).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// OK → `Ok(())`, anything else → the status.
fn check(status: u32) -> Result<(), HostStatus> {
    if status == OK {
        Ok(())
    } else {
        Err(HostStatus(status))
    }
}

/// Takes ownership of bytes the host wrote into guest memory (allocated through
/// [`crate::glue::exports::proxy_on_memory_allocate`], i.e. this module's global allocator with align 1).
///
/// # Safety
/// `data`/`len` must come from a host call that just succeeded.
unsafe fn owned(data: *mut u8, len: usize) -> Vec<u8> {
    if data.is_null() {
        Vec::new()
    } else {
        // SAFETY: the host allocated `len` bytes at `data` with our allocator and hands them over.
        unsafe { Vec::from_raw_parts(data, len, len) }
    }
}
