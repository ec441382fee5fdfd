//! Buffers: `proxy_get_buffer_bytes`, `proxy_set_buffer_bytes`.
//!
//! Buffer types (ABI 0.2.1): 0 request body, 1 response body, 2/3 network data, 4 HTTP-call
//! response body, 5 gRPC receive buffer, 6 VM configuration, 7 plugin configuration, 8 call
//! data; above 8 → BAD_ARGUMENT (cpp-host `src/exports.cc` `get_buffer_bytes`,
//! `set_buffer_bytes`).
//!
//! What each call reaches is Envoy's `Context::getBuffer` and `Buffer::copyFrom`
//! (`source/extensions/common/wasm/context.cc`):
//! - The bodies (0, 1) always exist as buffers, but hold data only while their callback runs or
//!   the filter keeps buffering them ([`super::state::Reach`]): reading a gone body is OK and
//!   empty, writing it is BAD_ARGUMENT.
//! - The HTTP-call response body (4) exists only during `on_http_call_response`, the plugin
//!   configuration (7) only during `on_configure` (and the root `on_context_create`): NOT_FOUND
//!   elsewhere. Neither can be written (BAD_ARGUMENT). The VM configuration (6) is always there,
//!   read-only. 2, 3, 5 and 8 read as empty and refuse writes.
//! - A body write may only prepend (start 0, size 0), replace everything (start 0, size ≥
//!   length) or append (start ≥ length); anything else is BAD_ARGUMENT. Newer Envoy also lets
//!   start 0 with 0 < size < length replace the first `size` bytes; older Envoy refuses it, so
//!   the host does too (a module that passes here passes on both).

use wasmtime::{Caller, Linker};

use super::body_buffer::BodyBuffer;
use super::memory;
use super::state::{Direction, HostState};
use super::AbiStatus;

const REQUEST_BODY: u32 = 0;
const RESPONSE_BODY: u32 = 1;
const HTTP_CALL_RESPONSE_BODY: u32 = 4;
const VM_CONFIGURATION: u32 = 6;
const PLUGIN_CONFIGURATION: u32 = 7;
/// The highest buffer type of ABI 0.2.1 (`WasmBufferType::MAX`, call data).
const MAX_BUFFER_TYPE: u32 = 8;

/// What `getBuffer` gives for a read. Everything is borrowed from the host's state: a read
/// copies only the range it asks for, straight into guest memory. (Cloning the whole buffer
/// per call made a filter that reads each new chunk of a buffered body quadratic in the body
/// size: ~32 MiB of copies for a 1 MiB POST in 16 KiB chunks.)
enum Readable<'a> {
    /// Contiguous bytes (possibly none).
    Bytes(&'a [u8]),
    /// A body as the chunks it arrived in.
    Body(&'a BodyBuffer),
    /// No such buffer now: NOT_FOUND.
    Missing,
    /// A type above 8: BAD_ARGUMENT.
    BadType,
}

impl Readable<'_> {
    /// The length, or the status to answer.
    fn len(&self) -> Result<usize, AbiStatus> {
        match self {
            Readable::Bytes(b) => Ok(b.len()),
            Readable::Body(b) => Ok(b.len()),
            Readable::Missing => Err(AbiStatus::NotFound),
            Readable::BadType => Err(AbiStatus::BadArgument),
        }
    }

    /// Copies the bytes from `start` into `out` (exactly `out.len()`); false if not there.
    fn copy_range(&self, start: usize, out: &mut [u8]) -> bool {
        match self {
            Readable::Bytes(b) => match b.get(start..start.saturating_add(out.len())) {
                Some(src) if src.len() == out.len() => {
                    out.copy_from_slice(src);
                    true
                }
                _ => false,
            },
            Readable::Body(b) => b.copy_range(start, out),
            Readable::Missing | Readable::BadType => false,
        }
    }
}

/// The bytes of buffer `kind` as the current context sees it.
fn readable(state: &HostState, kind: u32) -> Readable<'_> {
    let body = |dir: Direction| match state.streams.get(&state.effective_context).and_then(|s| {
        let side = s.side(dir);
        side.reach.body.then_some(side.body.as_ref()).flatten()
    }) {
        Some(b) => Readable::Body(b),
        None => Readable::Bytes(&[]),
    };
    match kind {
        REQUEST_BODY => body(Direction::Request),
        RESPONSE_BODY => body(Direction::Response),
        HTTP_CALL_RESPONSE_BODY => match state
            .http_call_result
            .as_ref()
            .and_then(|r| r.response.as_ref())
        {
            Some(r) => Readable::Bytes(&r.body),
            None => Readable::Missing,
        },
        VM_CONFIGURATION => Readable::Bytes(&state.spec.vm_configuration),
        PLUGIN_CONFIGURATION if state.plugin_config_readable => {
            Readable::Bytes(&state.spec.configuration)
        }
        PLUGIN_CONFIGURATION => Readable::Missing,
        k if k > MAX_BUFFER_TYPE => Readable::BadType,
        _ => Readable::Bytes(&[]),
    }
}

/// `proxy_set_buffer_bytes`: the status Envoy answers, after applying the edit.
fn write(state: &mut HostState, kind: u32, start: usize, size: usize, data: &[u8]) -> AbiStatus {
    match kind {
        REQUEST_BODY | RESPONSE_BODY => {
            let Some(stream) = state.stream() else {
                return AbiStatus::BadArgument;
            };
            let side = stream.side_mut(if kind == REQUEST_BODY {
                Direction::Request
            } else {
                Direction::Response
            });
            match (side.reach.body, side.body.as_mut()) {
                (true, Some(buf)) => {
                    if buf.edit(start, size, data) {
                        AbiStatus::Ok
                    } else {
                        AbiStatus::BadArgument
                    }
                }
                _ => AbiStatus::BadArgument,
            }
        }
        // getBuffer returns null for these outside their callback: NOT_FOUND before copyFrom.
        HTTP_CALL_RESPONSE_BODY if state.http_call_result.is_none() => AbiStatus::NotFound,
        PLUGIN_CONFIGURATION if !state.plugin_config_readable => AbiStatus::NotFound,
        _ => AbiStatus::BadArgument,
    }
}

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    restricted!(linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut caller: Caller<'_, HostState>,
         kind: i32,
         start: i32,
         max_size: i32,
         ret_ptr: i32,
         ret_size: i32|
         -> wasmtime::Result<i32> {
            let kind = kind as u32;
            let len = match readable(caller.data(), kind).len() {
                Ok(len) => len,
                Err(status) => return Ok(status.code()),
            };
            let start = (start as u32 as usize).min(len);
            let end = start.saturating_add(max_size as u32 as usize).min(len);
            // Copied straight from the buffer into the guest's allocation: the allocator runs
            // first, then the range is taken again (it cannot have changed: the allocator is
            // guest code with no stream callback in between, but a module could call a host
            // function from it, so a changed buffer traps instead of copying a stale range).
            memory::copy_out_from(&mut caller, end - start, ret_ptr, ret_size, |state, out| {
                readable(state, kind).copy_range(start, out)
            })?;
            Ok(AbiStatus::Ok.code())
        },
    ))?;
    restricted!(linker.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut caller: Caller<'_, HostState>,
         kind: i32,
         start: i32,
         size: i32,
         data_ptr: i32,
         data_len: i32|
         -> wasmtime::Result<i32> {
            let kind = kind as u32;
            if kind > MAX_BUFFER_TYPE {
                return Ok(AbiStatus::BadArgument.code());
            }
            let data = memory::read(&mut caller, data_ptr, data_len)?;
            let status = write(
                caller.data_mut(),
                kind,
                start as u32 as usize,
                size as u32 as usize,
                &data,
            );
            if status != AbiStatus::Ok {
                tracing::debug!(vm = %caller.data().label, buffer = kind, ?status, "proxy_set_buffer_bytes refused");
            }
            Ok(status.code())
        },
    ))?;
    Ok(())
}
