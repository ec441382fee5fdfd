//! The host calls of one HTTP stream: its header maps, its bodies, resuming it, answering it
//! locally.
//!
//! Envoy answers BadArgument for a header map, body or trailers the current callback does not
//! own (`Context::getMap`/`getBuffer` return null once the phase returned Continue). The SDK's
//! wrappers `panic!`ed on statuses like that, which kills the Wasm VM and every later request of
//! that worker with it; these hand every status back as a `Result`, and callers log it and go on.

use super::codec::{decode_pairs, encode_pairs};
use super::{check, owned, BufferType, HostStatus, MapType, StreamType, NOT_FOUND};

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_value(
        map: u32,
        key: *const u8,
        key_len: usize,
        out: *mut *mut u8,
        out_len: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(map: u32, out: *mut *mut u8, out_len: *mut usize) -> u32;
    fn proxy_replace_header_map_value(
        map: u32,
        key: *const u8,
        key_len: usize,
        value: *const u8,
        value_len: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map: u32, key: *const u8, key_len: usize) -> u32;
    fn proxy_get_buffer_bytes(
        buffer: u32,
        start: usize,
        max: usize,
        out: *mut *mut u8,
        out_len: *mut usize,
    ) -> u32;
    fn proxy_continue_stream(stream: u32) -> u32;
    #[allow(clippy::too_many_arguments)]
    fn proxy_send_local_response(
        status: u32,
        details: *const u8,
        details_len: usize,
        body: *const u8,
        body_len: usize,
        headers: *const u8,
        headers_len: usize,
        grpc_status: i32,
    ) -> u32;
}

/// One header's value; `Ok(None)` when the map has no such header.
pub fn header(map: MapType, name: &str) -> Result<Option<Vec<u8>>, HostStatus> {
    let mut data = std::ptr::null_mut();
    let mut len = 0;
    // SAFETY: pointers to live locals and to `name`'s bytes for the duration of the call.
    let status = unsafe {
        proxy_get_header_map_value(map as u32, name.as_ptr(), name.len(), &mut data, &mut len)
    };
    if status == NOT_FOUND {
        return Ok(None);
    }
    check(status)?;
    // SAFETY: the call succeeded.
    Ok(Some(unsafe { owned(data, len) }))
}

/// Every header of a map, in order. Malformed host data gives what could be decoded.
pub fn headers(map: MapType) -> Result<Vec<(String, Vec<u8>)>, HostStatus> {
    let mut data = std::ptr::null_mut();
    let mut len = 0;
    // SAFETY: pointers to live locals.
    check(unsafe { proxy_get_header_map_pairs(map as u32, &mut data, &mut len) })?;
    // SAFETY: the call succeeded.
    let bytes = unsafe { owned(data, len) };
    Ok(decode_pairs(&bytes))
}

/// Sets (replaces) a header, or removes every copy with `None`.
pub fn set_header(map: MapType, name: &str, value: Option<&str>) -> Result<(), HostStatus> {
    // SAFETY: pointers to `name`/`value` bytes, live for the call.
    let status = unsafe {
        match value {
            Some(v) => proxy_replace_header_map_value(
                map as u32,
                name.as_ptr(),
                name.len(),
                v.as_ptr(),
                v.len(),
            ),
            None => proxy_remove_header_map_value(map as u32, name.as_ptr(), name.len()),
        }
    };
    check(status)
}

/// Bytes `start..start + max` of a buffer; empty when the buffer has none there (NOT_FOUND, or
/// OK without data).
pub fn body(buffer: BufferType, start: usize, max: usize) -> Result<Vec<u8>, HostStatus> {
    let mut data = std::ptr::null_mut();
    let mut len = 0;
    // SAFETY: pointers to live locals.
    let status = unsafe { proxy_get_buffer_bytes(buffer as u32, start, max, &mut data, &mut len) };
    if status == NOT_FOUND {
        return Ok(Vec::new());
    }
    check(status)?;
    // SAFETY: the call succeeded.
    Ok(unsafe { owned(data, len) })
}

/// Resumes a paused direction (`proxy_continue_stream`).
pub fn resume(stream: StreamType) -> Result<(), HostStatus> {
    // SAFETY: no pointers.
    check(unsafe { proxy_continue_stream(stream as u32) })
}

/// Answers the request locally (`proxy_send_local_response`).
pub fn send_response(
    status: u32,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<(), HostStatus> {
    let encoded = encode_pairs(headers);
    let body = body.unwrap_or_default();
    // SAFETY: pointers to live buffers for the duration of the call.
    check(unsafe {
        proxy_send_local_response(
            status,
            std::ptr::null(),
            0,
            body.as_ptr(),
            body.len(),
            encoded.as_ptr(),
            encoded.len(),
            -1,
        )
    })
}
