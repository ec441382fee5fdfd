//! The stream host calls the request path makes, declared here so that no answer of the host
//! can panic the VM.
//!
//! The SDK's wrappers (`proxy_wasm::hostcalls`) `panic!` on any status they do not expect, and
//! Envoy answers BadArgument for a header map, body or trailers the current callback does not
//! own (`Context::getMap`/`getBuffer` return null once the phase returned Continue). A panic
//! kills the Wasm VM and every later request of that worker with it. These wrappers hand every
//! status back as a `Result` instead; callers log it and go on.

use proxy_wasm::types::{BufferType, MapType, Status, StreamType};

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

/// A host status other than OK (the raw number: the host may answer one the SDK's enum lacks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostStatus(pub u32);

impl std::fmt::Display for HostStatus {
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

impl From<Status> for HostStatus {
    fn from(s: Status) -> Self {
        HostStatus(s as u32)
    }
}

fn check(status: u32) -> Result<(), HostStatus> {
    if status == Status::Ok as u32 {
        Ok(())
    } else {
        Err(HostStatus(status))
    }
}

/// Takes ownership of bytes the host wrote into guest memory (allocated through the SDK's
/// `proxy_on_memory_allocate`, i.e. this module's global allocator).
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

/// One header's value; `Ok(None)` when the map has no such header.
pub fn header(map: MapType, name: &str) -> Result<Option<Vec<u8>>, HostStatus> {
    let mut data = std::ptr::null_mut();
    let mut len = 0;
    // SAFETY: pointers to live locals and to `name`'s bytes for the duration of the call.
    let status = unsafe {
        proxy_get_header_map_value(map as u32, name.as_ptr(), name.len(), &mut data, &mut len)
    };
    if status == Status::NotFound as u32 {
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

/// Decodes the ABI's map encoding: count, then (name length, value length) per pair, then each
/// name and value followed by a NUL. Stops at the first inconsistency instead of panicking.
fn decode_pairs(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let word = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at.checked_add(4)?)?;
        usize::try_from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])).ok()
    };
    let Some(count) = word(0) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut sizes = 4usize;
    let Some(mut at) = count.checked_mul(8).and_then(|n| n.checked_add(4)) else {
        return Vec::new();
    };
    for _ in 0..count {
        let (Some(nl), Some(vl)) = (word(sizes), word(sizes + 4)) else {
            break;
        };
        sizes += 8;
        let name_end = at.saturating_add(nl);
        let value_start = name_end.saturating_add(1);
        let value_end = value_start.saturating_add(vl);
        let (Some(name), Some(value)) =
            (bytes.get(at..name_end), bytes.get(value_start..value_end))
        else {
            break;
        };
        out.push((String::from_utf8_lossy(name).into_owned(), value.to_vec()));
        at = value_end.saturating_add(1);
    }
    out
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

/// Bytes `start..start + max` of a body buffer; empty when the buffer has none there.
pub fn body(buffer: BufferType, start: usize, max: usize) -> Result<Vec<u8>, HostStatus> {
    let mut data = std::ptr::null_mut();
    let mut len = 0;
    // SAFETY: pointers to live locals.
    let status = unsafe { proxy_get_buffer_bytes(buffer as u32, start, max, &mut data, &mut len) };
    if status == Status::NotFound as u32 {
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

/// Encodes pairs in the ABI's map encoding (see [`decode_pairs`]).
fn encode_pairs(pairs: &[(&str, &str)]) -> Vec<u8> {
    let word = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    let mut out = Vec::new();
    out.extend_from_slice(&word(pairs.len()));
    for (n, v) in pairs {
        out.extend_from_slice(&word(n.len()));
        out.extend_from_slice(&word(v.len()));
    }
    for (n, v) in pairs {
        out.extend_from_slice(n.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}
