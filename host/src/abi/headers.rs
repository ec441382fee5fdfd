//! Header maps: `proxy_{get,set}_header_map_pairs`, `proxy_{get,add,replace,remove}_header_map_value`.
//!
//! Map types (ABI 0.2.1): 0 request headers, 1 request trailers, 2 response headers,
//! 3 response trailers, 6 HTTP-call response headers, 7 HTTP-call response trailers.
//! Names are lower-cased as Envoy does. Maps that do not exist right now read as empty and
//! ignore writes (the SDK accepts only OK there); a missing single value is NOT_FOUND.
//!
//! The wire format lives in [`crate::headers`].

use wasmtime::{Caller, Linker};

use super::memory;
use super::state::{HeaderList, HostState};
use super::Status;
use crate::headers::{decode, encode};

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
