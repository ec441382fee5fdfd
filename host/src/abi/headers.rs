//! Header maps: `proxy_{get,set}_header_map_pairs`, `proxy_{get,add,replace,remove}_header_map_value`.
//!
//! Map types (ABI 0.2.1): 0 request headers, 1 request trailers, 2 response headers,
//! 3 response trailers, 6 HTTP-call response headers, 7 HTTP-call response trailers.
//! Names are lower-cased as Envoy does. Maps that do not exist right now read as empty and
//! ignore writes (the SDK accepts only OK there); a missing single value is NOT_FOUND.
//!
//! Wire format (the SDK's `serialize_map`): u32 count, then per pair u32 name length and u32
//! value length, then per pair name bytes, NUL, value bytes, NUL. All little-endian.

use wasmtime::{Caller, Linker};

use super::memory;
use super::state::{HeaderList, HostState};
use super::Status;

/// Encodes `pairs` in the proxy-wasm map format.
pub(crate) fn encode(pairs: &[(String, Vec<u8>)]) -> Vec<u8> {
    let size = 4 + pairs
        .iter()
        .map(|(k, v)| k.len() + v.len() + 10)
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// Why a serialized map could not be decoded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct MalformedMap;

fn u32_at(bytes: &[u8], at: usize) -> Result<usize, MalformedMap> {
    let b = bytes.get(at..at + 4).ok_or(MalformedMap)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

/// Decodes the proxy-wasm map format; empty input is an empty map. Bounds are checked.
pub(crate) fn decode(bytes: &[u8]) -> Result<HeaderList, MalformedMap> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let count = u32_at(bytes, 0)?;
    let mut data = count
        .checked_mul(8)
        .and_then(|n| n.checked_add(4))
        .ok_or(MalformedMap)?;
    if data > bytes.len() {
        return Err(MalformedMap);
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let klen = u32_at(bytes, 4 + i * 8)?;
        let vlen = u32_at(bytes, 8 + i * 8)?;
        let key = bytes
            .get(data..data.checked_add(klen).ok_or(MalformedMap)?)
            .ok_or(MalformedMap)?;
        data += klen + 1;
        let value = bytes
            .get(data..data.checked_add(vlen).ok_or(MalformedMap)?)
            .ok_or(MalformedMap)?;
        data += vlen + 1;
        out.push((
            String::from_utf8_lossy(key).to_ascii_lowercase(),
            value.to_vec(),
        ));
    }
    Ok(out)
}

/// Which header list of the current context `map_type` names, if it exists now.
fn map_mut(state: &mut HostState, map_type: i32) -> Option<&mut HeaderList> {
    if map_type == 6 || map_type == 7 {
        let response = state.http_call_result.as_mut()?.response.as_mut()?;
        return Some(if map_type == 6 {
            &mut response.headers
        } else {
            &mut response.trailers
        });
    }
    let stream = state.stream()?;
    match map_type {
        0 => stream.request_headers.as_mut(),
        1 => stream.request_trailers.as_mut(),
        2 => stream.response_headers.as_mut(),
        3 => stream.response_trailers.as_mut(),
        _ => None,
    }
}

/// [`map_mut`] for a host function that changes the map: marks the head as changed.
fn map_for_write(state: &mut HostState, map_type: i32) -> Option<&mut HeaderList> {
    if let Some(stream) = state.stream() {
        match map_type {
            0 => stream.request_headers_changed = true,
            2 => stream.response_headers_changed = true,
            _ => {}
        }
    }
    map_mut(state, map_type)
}

fn key(caller: &mut Caller<'_, HostState>, ptr: i32, len: i32) -> wasmtime::Result<String> {
    let mut name = memory::read_string(caller, ptr, len)?;
    name.make_ascii_lowercase();
    Ok(name)
}

fn malformed() -> wasmtime::Error {
    wasmtime::Error::msg("malformed header map passed to the host")
}

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut caller: Caller<'_, HostState>,
         map_type: i32,
         ret_ptr: i32,
         ret_size: i32|
         -> wasmtime::Result<i32> {
            caller
                .data()
                .check_not_restricted("proxy_get_header_map_pairs")?;
            let bytes = map_mut(caller.data_mut(), map_type).map(|m| encode(m));
            match bytes {
                Some(b) => memory::copy_out(&mut caller, &b, ret_ptr, ret_size)?,
                None => memory::copy_out(&mut caller, &[], ret_ptr, ret_size)?,
            }
            Ok(Status::Ok.code())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut caller: Caller<'_, HostState>,
         map_type: i32,
         ptr: i32,
         len: i32|
         -> wasmtime::Result<i32> {
            caller
                .data()
                .check_not_restricted("proxy_set_header_map_pairs")?;
            let pairs = decode(&memory::read(&mut caller, ptr, len)?).map_err(|_| malformed())?;
            if let Some(map) = map_for_write(caller.data_mut(), map_type) {
                *map = pairs;
            }
            Ok(Status::Ok.code())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut caller: Caller<'_, HostState>,
         map_type: i32,
         key_ptr: i32,
         key_len: i32,
         ret_ptr: i32,
         ret_size: i32|
         -> wasmtime::Result<i32> {
            caller
                .data()
                .check_not_restricted("proxy_get_header_map_value")?;
            let k = key(&mut caller, key_ptr, key_len)?;
            let value = map_mut(caller.data_mut(), map_type)
                .and_then(|m| m.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()));
            match value {
                Some(v) => {
                    memory::copy_out(&mut caller, &v, ret_ptr, ret_size)?;
                    Ok(Status::Ok.code())
                }
                None => Ok(Status::NotFound.code()),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut caller: Caller<'_, HostState>,
         map_type: i32,
         key_ptr: i32,
         key_len: i32|
         -> wasmtime::Result<i32> {
            caller
                .data()
                .check_not_restricted("proxy_remove_header_map_value")?;
            let k = key(&mut caller, key_ptr, key_len)?;
            if let Some(map) = map_for_write(caller.data_mut(), map_type) {
                map.retain(|(n, _)| *n != k);
            }
            Ok(Status::Ok.code())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        |mut caller: Caller<'_, HostState>,
         map_type: i32,
         key_ptr: i32,
         key_len: i32,
         value_ptr: i32,
         value_len: i32|
         -> wasmtime::Result<i32> {
            caller
                .data()
                .check_not_restricted("proxy_replace_header_map_value")?;
            let k = key(&mut caller, key_ptr, key_len)?;
            let v = memory::read(&mut caller, value_ptr, value_len)?;
            if let Some(map) = map_for_write(caller.data_mut(), map_type) {
                replace(map, k, v);
            }
            Ok(Status::Ok.code())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_add_header_map_value",
        |mut caller: Caller<'_, HostState>,
         map_type: i32,
         key_ptr: i32,
         key_len: i32,
         value_ptr: i32,
         value_len: i32|
         -> wasmtime::Result<i32> {
            caller
                .data()
                .check_not_restricted("proxy_add_header_map_value")?;
            let k = key(&mut caller, key_ptr, key_len)?;
            let v = memory::read(&mut caller, value_ptr, value_len)?;
            if let Some(map) = map_for_write(caller.data_mut(), map_type) {
                map.push((k, v));
            }
            Ok(Status::Ok.code())
        },
    )?;
    Ok(())
}

/// Sets `name` to exactly one value: the first occurrence is replaced in place, others removed.
pub(crate) fn replace(map: &mut HeaderList, name: String, value: Vec<u8>) {
    match map.iter().position(|(n, _)| *n == name) {
        Some(first) => {
            map[first].1 = value;
            let mut i = 0;
            map.retain(|(n, _)| {
                let keep = *n != name || i == first;
                i += 1;
                keep
            });
        }
        None => map.push((name, value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Golden bytes: the SDK's own fixture for this map (hostcalls.rs, SERIALIZED_MAP).
    #[rustfmt::skip]
    const GOLDEN: &[u8] = &[
        4, 0, 0, 0,                           // 4 pairs
        7, 0, 0, 0, 3, 0, 0, 0,               // ":method" / "GET"
        5, 0, 0, 0, 8, 0, 0, 0,               // ":path" / "/bytes/1"
        10, 0, 0, 0, 11, 0, 0, 0,             // ":authority" / "httpbin.org"
        10, 0, 0, 0, 10, 0, 0, 0,             // "powered-by" / "proxy-wasm"
        b':', b'm', b'e', b't', b'h', b'o', b'd', 0, b'G', b'E', b'T', 0,
        b':', b'p', b'a', b't', b'h', 0, b'/', b'b', b'y', b't', b'e', b's', b'/', b'1', 0,
        b':', b'a', b'u', b't', b'h', b'o', b'r', b'i', b't', b'y', 0,
        b'h', b't', b't', b'p', b'b', b'i', b'n', b'.', b'o', b'r', b'g', 0,
        b'p', b'o', b'w', b'e', b'r', b'e', b'd', b'-', b'b', b'y', 0,
        b'p', b'r', b'o', b'x', b'y', b'-', b'w', b'a', b's', b'm', 0,
    ];

    fn pairs() -> HeaderList {
        vec![
            (":method".into(), b"GET".to_vec()),
            (":path".into(), b"/bytes/1".to_vec()),
            (":authority".into(), b"httpbin.org".to_vec()),
            ("powered-by".into(), b"proxy-wasm".to_vec()),
        ]
    }

    #[test]
    fn encodes_golden_bytes() {
        assert_eq!(encode(&pairs()), GOLDEN);
    }

    #[test]
    fn decodes_golden_bytes_and_round_trips() {
        assert_eq!(decode(GOLDEN).unwrap(), pairs());
        assert_eq!(decode(&encode(&[])).unwrap(), Vec::new());
        assert_eq!(decode(&[]).unwrap(), Vec::new());
    }

    #[test]
    fn rejects_truncated_and_oversized_maps() {
        assert_eq!(decode(&GOLDEN[..GOLDEN.len() - 3]), Err(MalformedMap));
        assert_eq!(decode(&[0xff, 0xff, 0xff, 0xff]), Err(MalformedMap));
        assert_eq!(decode(&[1, 0]), Err(MalformedMap));
    }

    #[test]
    fn replace_keeps_one_value() {
        let mut m: HeaderList = vec![
            ("a".into(), b"1".to_vec()),
            ("b".into(), b"2".to_vec()),
            ("a".into(), b"3".to_vec()),
        ];
        replace(&mut m, "a".into(), b"x".to_vec());
        assert_eq!(
            m,
            vec![("a".into(), b"x".to_vec()), ("b".into(), b"2".to_vec())]
        );
        replace(&mut m, "c".into(), b"y".to_vec());
        assert_eq!(m.len(), 3);
    }
}
