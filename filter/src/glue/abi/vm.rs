//! The host calls that do not belong to one stream: logging, the clock, the tick, properties,
//! the plugin configuration, shared data, metrics, HTTP calls, foreign functions, and the
//! effective context. Each wrapper hands every status other than the ones it gives a meaning
//! back as a [`HostStatus`]; none can panic.

use std::time::Duration;

use super::codec::{encode_pairs, property_path};
use super::{check, owned, BufferType, HostStatus, MetricType, NOT_FOUND};

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, message: *const u8, message_len: usize) -> u32;
    fn proxy_get_log_level(return_level: *mut u32) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_property(
        path: *const u8,
        path_len: usize,
        out: *mut *mut u8,
        out_len: *mut usize,
    ) -> u32;
    fn proxy_get_shared_data(
        key: *const u8,
        key_len: usize,
        out: *mut *mut u8,
        out_len: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key: *const u8,
        key_len: usize,
        value: *const u8,
        value_len: usize,
        cas: u32,
    ) -> u32;
    fn proxy_define_metric(kind: u32, name: *const u8, name_len: usize, return_id: *mut u32)
        -> u32;
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
    fn proxy_record_metric(id: u32, value: u64) -> u32;
    #[allow(clippy::too_many_arguments)]
    fn proxy_http_call(
        upstream: *const u8,
        upstream_len: usize,
        headers: *const u8,
        headers_len: usize,
        body: *const u8,
        body_len: usize,
        trailers: *const u8,
        trailers_len: usize,
        timeout_ms: u32,
        return_token: *mut u32,
    ) -> u32;
    fn proxy_call_foreign_function(
        name: *const u8,
        name_len: usize,
        arguments: *const u8,
        arguments_len: usize,
        out: *mut *mut u8,
        out_len: *mut usize,
    ) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
}

/// Sends one log line at the ABI's `level` (0 trace … 5 critical). A refusal is dropped: there
/// is nowhere left to report it.
pub fn log(level: u32, message: &str) {
    // SAFETY: pointer to `message`'s bytes, live for the call.
    let _ = unsafe { proxy_log(level, message.as_ptr(), message.len()) };
}

/// The host's log level as the raw ABI number (0 trace … 5 critical).
pub fn log_level() -> Result<u32, HostStatus> {
    let mut raw = u32::MAX;
    // SAFETY: the host writes one u32 through a pointer to a live local.
    check(unsafe { proxy_get_log_level(&mut raw) })?;
    Ok(raw)
}

/// Wall-clock nanoseconds since the Unix epoch.
pub fn current_time_ns() -> Result<u64, HostStatus> {
    let mut ns = 0u64;
    // SAFETY: the host writes one u64 through a pointer to a live local.
    check(unsafe { proxy_get_current_time_nanoseconds(&mut ns) })?;
    Ok(ns)
}

/// Sets this root context's tick period (0 stops it). Periods over `u32::MAX` ms are clamped.
pub fn set_tick_period(period: Duration) -> Result<(), HostStatus> {
    let ms = u32::try_from(period.as_millis()).unwrap_or(u32::MAX);
    // SAFETY: no pointers.
    check(unsafe { proxy_set_tick_period_milliseconds(ms) })
}

/// A property's raw bytes; `Ok(None)` when the host has none (NOT_FOUND, or OK without data).
pub fn property(path: &[&str]) -> Result<Option<Vec<u8>>, HostStatus> {
    let path = property_path(path);
    let mut data = std::ptr::null_mut();
    let mut len = 0;
    // SAFETY: pointers to live locals and to `path`, live for the call.
    let status = unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut len) };
    if status == NOT_FOUND {
        return Ok(None);
    }
    check(status)?;
    // SAFETY: the call succeeded.
    Ok((!data.is_null()).then(|| unsafe { owned(data, len) }))
}

/// The plugin configuration (readable only during `on_configure`); empty when there is none.
pub fn plugin_configuration() -> Vec<u8> {
    super::stream::body(BufferType::PluginConfiguration, 0, usize::MAX).unwrap_or_default()
}

/// What `proxy_get_shared_data` found under a key.
#[derive(Debug, PartialEq, Eq)]
pub enum SharedValue {
    /// No such key (NOT_FOUND, or OK with neither data nor cas).
    Missing,
    /// The key exists: its bytes (empty for an empty value) and its cas (0 if the host gave
    /// none).
    Present(Vec<u8>, u32),
}

/// Reads a shared-data key.
pub fn get_shared_data(key: &str) -> Result<SharedValue, HostStatus> {
    let mut data = std::ptr::null_mut();
    let mut len = 0;
    let mut cas = 0u32;
    // SAFETY: pointers to live locals and to `key`'s bytes, live for the call.
    let status =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut len, &mut cas) };
    if status == NOT_FOUND {
        return Ok(SharedValue::Missing);
    }
    check(status)?;
    if data.is_null() && cas == 0 {
        return Ok(SharedValue::Missing);
    }
    // SAFETY: the call succeeded.
    Ok(SharedValue::Present(unsafe { owned(data, len) }, cas))
}

/// Writes a shared-data key with `cas` (0: unconditional; see envoy-host-contract.md for what
/// a cas on a missing key does). CAS_MISMATCH comes back as [`super::CAS_MISMATCH`].
pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> Result<(), HostStatus> {
    // SAFETY: pointers to `key`/`value` bytes, live for the call.
    check(unsafe {
        proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
    })
}

/// Defines (or finds: one name is one stat across VMs) a metric; its id.
pub fn define_metric(kind: MetricType, name: &str) -> Result<u32, HostStatus> {
    let mut id = 0u32;
    // SAFETY: pointers to `name`'s bytes and a live local.
    check(unsafe { proxy_define_metric(kind as u32, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

/// Adds `offset` to a counter or gauge.
pub fn increment_metric(id: u32, offset: i64) -> Result<(), HostStatus> {
    // SAFETY: no pointers.
    check(unsafe { proxy_increment_metric(id, offset) })
}

/// Sets a gauge.
pub fn record_metric(id: u32, value: u64) -> Result<(), HostStatus> {
    // SAFETY: no pointers.
    check(unsafe { proxy_record_metric(id, value) })
}

/// Sends an HTTP call to `cluster` (no trailers); its token. The answer comes back through
/// `proxy_on_http_call_response` with that token: the caller registers it with its context
/// (`glue::calls::register`). Timeouts over `u32::MAX` ms are clamped.
pub fn http_call(
    cluster: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<u32, HostStatus> {
    let headers = encode_pairs(headers);
    let trailers = encode_pairs(&[]);
    let timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
    let mut token = 0u32;
    // SAFETY: pointers to live buffers and a live local for the duration of the call.
    check(unsafe {
        proxy_http_call(
            cluster.as_ptr(),
            cluster.len(),
            headers.as_ptr(),
            headers.len(),
            body.map_or(std::ptr::null(), <[u8]>::as_ptr),
            body.map_or(0, <[u8]>::len),
            trailers.as_ptr(),
            trailers.len(),
            timeout_ms,
            &mut token,
        )
    })?;
    Ok(token)
}

/// Calls a host's foreign function (e.g. Envoy's `clear_route_cache`); its result bytes, if any.
/// A host without that function answers NOT_FOUND.
pub fn call_foreign_function(
    name: &str,
    arguments: Option<&[u8]>,
) -> Result<Option<Vec<u8>>, HostStatus> {
    let mut data = std::ptr::null_mut();
    let mut len = 0;
    // SAFETY: pointers to live buffers and locals for the duration of the call.
    let status = unsafe {
        proxy_call_foreign_function(
            name.as_ptr(),
            name.len(),
            arguments.map_or(std::ptr::null(), <[u8]>::as_ptr),
            arguments.map_or(0, <[u8]>::len),
            &mut data,
            &mut len,
        )
    };
    check(status)?;
    // SAFETY: the call succeeded.
    Ok((!data.is_null()).then(|| unsafe { owned(data, len) }))
}

/// Makes `context_id` the context later host calls act on (an HTTP call's answer arrives on
/// the root context; the stream that sent it is switched to before its callback runs).
pub fn set_effective_context(context_id: u32) -> Result<(), HostStatus> {
    // SAFETY: no pointers.
    check(unsafe { proxy_set_effective_context(context_id) })
}
