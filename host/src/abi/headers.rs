//! Header maps: `proxy_{get,set}_header_map_pairs`, `proxy_{get,add,replace,remove}_header_map_value`.
//!
//! Map types (ABI 0.2.1): 0 request headers, 1 request trailers, 2 response headers,
//! 3 response trailers, 4/5 gRPC metadata, 6 HTTP-call response headers, 7 HTTP-call response
//! trailers; above 7 → BAD_ARGUMENT (cpp-host `src/exports.cc`, every header export). Names are
//! lower-cased as Envoy does.
//!
//! What a call can reach is Envoy's, rule by rule (`source/extensions/common/wasm/context.cc`):
//! - Reads go through `Context::getConstMap`: maps 0–3 only while their callback runs or the
//!   filter keeps it paused ([`Reach`](super::state::Reach)); in `on_log` (the access-log phase) the request headers
//!   as forwarded and the response headers/trailers as sent, never the request trailers; maps
//!   6/7 only during `on_http_call_response`; 4/5 never (no gRPC here).
//! - A map that is not there: all pairs → OK and nothing (`getHeaderMapPairs`); one value →
//!   BAD_ARGUMENT, or NOT_FOUND in the access-log phase (`getHeaderMapValue`). The Rust SDK
//!   panics on that BAD_ARGUMENT (the VM fails).
//! - Writes go through `Context::getMap`: maps 0–3 while reachable, nothing else (6/7 are
//!   read-only) → BAD_ARGUMENT otherwise, also in `on_log`. Envoy's `getMap` would create
//!   request/response trailers during the last body callback (`addDecodedTrailers`); the host
//!   refuses that with BAD_ARGUMENT (stricter, see FIDELITY.md).
//!
//! The wire format lives in [`crate::headers`].

use wasmtime::{Caller, Linker};

use super::memory;
use super::state::{Direction, HeaderList, HostState};
use super::AbiStatus;
use crate::headers::{decode, encode};

/// The highest map type of ABI 0.2.1 (`WasmHeaderMapType::MAX`).
const MAX_MAP_TYPE: u32 = 7;

/// What a read of map `map_type` finds.
enum Found<'a> {
    /// The map.
    Map(&'a HeaderList),
    /// No such map now (`getConstMap` returned null): one value is BAD_ARGUMENT.
    Gone,
    /// No such map in the access-log phase: one value is NOT_FOUND.
    GoneInLog,
    /// A map type above 7.
    BadType,
}

/// Envoy's `Context::getConstMap` for the current context.
fn readable(state: &HostState, map_type: i32) -> Found<'_> {
    let map_type = map_type as u32;
    if map_type > MAX_MAP_TYPE {
        return Found::BadType;
    }
    let stream = state.streams.get(&state.effective_context);
    let in_log = stream.is_some_and(|s| s.log.is_some());
    let gone = if in_log {
        Found::GoneInLog
    } else {
        Found::Gone
    };
    let found = match map_type {
        6 | 7 => state
            .http_call_result
            .as_ref()
            .and_then(|r| r.response.as_ref())
            .and_then(|r| match map_type {
                6 => Some(&r.headers),
                // Envoy's call response has no trailer map when none came.
                _ => (!r.trailers.is_empty()).then_some(&r.trailers),
            }),
        4 | 5 => None,
        _ => stream.and_then(|s| match (&s.log, map_type) {
            (Some(log), 0) => log.request_headers.as_ref(),
            (Some(_), 1) => None,
            (Some(log), 2) => log.response_headers.as_ref(),
            (Some(log), _) => log.response_trailers.as_ref(),
            (None, 0 | 2) => {
                let side = s.side(map_direction(map_type));
                side.reach.headers.then_some(side.headers.as_ref())?
            }
            (None, _) => {
                let side = s.side(map_direction(map_type));
                side.reach.trailers.then_some(side.trailers.as_ref())?
            }
        }),
    };
    match found {
        Some(map) => Found::Map(map),
        None => gone,
    }
}

/// Envoy's `Context::getMap` for a write: the live map if it is reachable now, and marks the
/// HTTP head as changed; `None` → BAD_ARGUMENT.
fn writable(state: &mut HostState, map_type: i32) -> Option<&mut HeaderList> {
    if !(0..=3).contains(&map_type) {
        return None;
    }
    let side = state.stream()?.side_mut(map_direction(map_type as u32));
    if map_type % 2 == 0 {
        if !side.reach.headers {
            return None;
        }
        side.headers_changed = true;
        side.headers.as_mut()
    } else {
        side.reach.trailers.then_some(side.trailers.as_mut())?
    }
}

/// Maps 0 and 1 (request headers, trailers) belong to the request; 2 and 3 to the response.
fn map_direction(map_type: u32) -> Direction {
    if map_type < 2 {
        Direction::Request
    } else {
        Direction::Response
    }
}

/// Runs `edit` on the writable map, or answers BAD_ARGUMENT.
fn write(state: &mut HostState, map_type: i32, edit: impl FnOnce(&mut HeaderList)) -> i32 {
    match writable(state, map_type) {
        Some(map) => {
            edit(map);
            AbiStatus::Ok.code()
        }
        None => {
            tracing::debug!(
                vm = %state.label,
                map_type,
                "header map write to a map that is not reachable now: BAD_ARGUMENT"
            );
            AbiStatus::BadArgument.code()
        }
    }
}

fn key(caller: &mut Caller<'_, HostState>, ptr: i32, len: i32) -> wasmtime::Result<String> {
    let mut name = memory::read_string(caller, ptr, len)?;
    name.make_ascii_lowercase();
    Ok(name)
}

/// A name argument as [`key`] would make it, compared in guest memory: without the copy and
/// allocation `key` costs per lookup, when it is valid UTF-8 (as with the SDK); lossily
/// decoded as `key` does otherwise.
enum KeyRef<'a> {
    Raw(&'a [u8]),
    Lossy(String),
}

impl<'a> KeyRef<'a> {
    fn new(raw: &'a [u8]) -> Self {
        match std::str::from_utf8(raw) {
            Ok(_) => KeyRef::Raw(raw),
            Err(_) => KeyRef::Lossy(String::from_utf8_lossy(raw).to_ascii_lowercase()),
        }
    }

    /// `name == key(..)`.
    fn matches(&self, name: &str) -> bool {
        match self {
            KeyRef::Raw(raw) => {
                name.len() == raw.len()
                    && name
                        .bytes()
                        .zip(raw.iter())
                        .all(|(n, k)| n == k.to_ascii_lowercase())
            }
            KeyRef::Lossy(k) => name == k,
        }
    }
}

fn malformed() -> wasmtime::Error {
    wasmtime::Error::msg("malformed header map passed to the host")
}

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    restricted!(linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut caller: Caller<'_, HostState>,
         map_type: i32,
         ret_ptr: i32,
         ret_size: i32|
         -> wasmtime::Result<i32> {
            let bytes = match readable(caller.data(), map_type) {
                Found::BadType => return Ok(AbiStatus::BadArgument.code()),
                // Envoy marshals no pairs at all for an empty map: pointer 0, size 0.
                Found::Map(m) if !m.is_empty() => encode(m),
                _ => Vec::new(),
            };
            memory::copy_out(&mut caller, &bytes, ret_ptr, ret_size)?;
            Ok(AbiStatus::Ok.code())
        },
    ))?;
    restricted!(linker.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut caller: Caller<'_, HostState>,
         map_type: i32,
         ptr: i32,
         len: i32|
         -> wasmtime::Result<i32> {
            let pairs = decode(&memory::read(&mut caller, ptr, len)?).map_err(|_| malformed())?;
            Ok(write(caller.data_mut(), map_type, |map| *map = pairs))
        },
    ))?;
    restricted!(linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut caller: Caller<'_, HostState>,
         map_type: i32,
         key_ptr: i32,
         key_len: i32,
         ret_ptr: i32,
         ret_size: i32|
         -> wasmtime::Result<i32> {
            let k = KeyRef::new(memory::borrow(&caller, key_ptr, key_len)?);
            let value = match readable(caller.data(), map_type) {
                Found::Map(m) => m.iter().find(|(n, _)| k.matches(n)).map(|(_, v)| v.clone()),
                Found::GoneInLog => None,
                Found::Gone | Found::BadType => return Ok(AbiStatus::BadArgument.code()),
            };
            match value {
                Some(v) => {
                    memory::copy_out(&mut caller, &v, ret_ptr, ret_size)?;
                    Ok(AbiStatus::Ok.code())
                }
                None => Ok(AbiStatus::NotFound.code()),
            }
        },
    ))?;
    restricted!(linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut caller: Caller<'_, HostState>,
         map_type: i32,
         key_ptr: i32,
         key_len: i32|
         -> wasmtime::Result<i32> {
            let (mem, state) = memory::split(&mut caller);
            let k = KeyRef::new(memory::borrow_in(mem, key_ptr, key_len)?);
            Ok(write(state, map_type, |map| {
                map.retain(|(n, _)| !k.matches(n))
            }))
        },
    ))?;
    restricted!(linker.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        |mut caller: Caller<'_, HostState>,
         map_type: i32,
         key_ptr: i32,
         key_len: i32,
         value_ptr: i32,
         value_len: i32|
         -> wasmtime::Result<i32> {
            let k = key(&mut caller, key_ptr, key_len)?;
            let v = memory::read(&mut caller, value_ptr, value_len)?;
            Ok(write(caller.data_mut(), map_type, |map| replace(map, k, v)))
        },
    ))?;
    restricted!(linker.func_wrap(
        "env",
        "proxy_add_header_map_value",
        |mut caller: Caller<'_, HostState>,
         map_type: i32,
         key_ptr: i32,
         key_len: i32,
         value_ptr: i32,
         value_len: i32|
         -> wasmtime::Result<i32> {
            let k = key(&mut caller, key_ptr, key_len)?;
            let v = memory::read(&mut caller, value_ptr, value_len)?;
            Ok(write(caller.data_mut(), map_type, |map| map.push((k, v))))
        },
    ))?;
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
    fn key_ref_matches_what_key_reads() {
        // `key` reads the bytes lossily as UTF-8, then lower-cases ASCII.
        let key = |raw: &[u8]| String::from_utf8_lossy(raw).to_ascii_lowercase();
        let raws: [&[u8]; 6] = [
            b":path",
            b"X-Route",
            b"x-route",
            b"",
            b"\xff-a",
            "Ä-b".as_bytes(),
        ];
        let names = [
            ":path",
            "x-route",
            "X-Route",
            "",
            "\u{fffd}-a",
            "Ä-b",
            "ä-b",
            "x-rout",
        ];
        for raw in raws {
            for name in names {
                assert_eq!(
                    KeyRef::new(raw).matches(name),
                    name == key(raw),
                    "{raw:?} {name}"
                );
            }
        }
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
