//! Properties: `proxy_get_property`, `proxy_set_property`.
//!
//! A path arrives as NUL-separated segments (`response\0flags`). Strings are returned raw,
//! numbers as 8-byte little-endian integers (as Envoy serialises them). Unknown paths are
//! NOT_FOUND. Values stored with `proxy_set_property` read back on the same context.
//!
//! Envoy's rules (`Context::findValue`, `Context::setProperty` in
//! `source/extensions/common/wasm/context.cc`; `RequestWrapper`/`ResponseWrapper` in
//! `source/extensions/filters/common/expr/context.cc`):
//! - `request.*` fields taken from headers (`path`, `url_path`, `host`, `scheme`, `method`,
//!   `referer`, `useragent`, `id`, `query`) read the *live* request header map, with the
//!   filter's own edits: NOT_FOUND once the map is gone (after the request headers continued),
//!   back in `on_log` (the access-log request headers). `request.protocol` comes from the stream
//!   info: always there, `HTTP/1.1` (Envoy writes `HTTP/2`, not `HTTP/2.0`).
//! - `response.flags` is 0 before any response; `response.code` and `response.code_details`
//!   are NOT_FOUND until set.
//! - A root context has no stream info: only `plugin_name`, `plugin_root_id`, `plugin_vm_id`;
//!   `proxy_set_property` there is NOT_FOUND (the Rust SDK panics on it).

use wasmtime::{Caller, Linker};

use super::memory;
use super::state::{HeaderList, HostState, StreamState};
use super::AbiStatus;

fn int(v: u64) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

fn text(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// The request header map `request.*` reads now: Envoy's `activation_request_headers_`
/// (the live map, else the access-log one).
fn request_map(stream: &StreamState) -> Option<&HeaderList> {
    if stream.request.reach.headers {
        return stream.request.headers.as_ref();
    }
    stream.log.as_ref()?.request_headers.as_ref()
}

fn header<'a>(map: &'a HeaderList, name: &str) -> Option<&'a [u8]> {
    map.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_slice())
}

/// `RequestWrapper::operator[]` for a field read from the request headers.
fn request_field(map: &HeaderList, field: &str) -> Option<Vec<u8>> {
    let path = || header(map, ":path").unwrap_or_default();
    match field {
        "path" => header(map, ":path").map(<[u8]>::to_vec),
        "url_path" => header(map, ":path")
            .map(|p| p.split(|b| *b == b'?').next().unwrap_or_default().to_vec()),
        "host" => header(map, ":authority").map(<[u8]>::to_vec),
        "scheme" => header(map, ":scheme").map(<[u8]>::to_vec),
        "method" => header(map, ":method").map(<[u8]>::to_vec),
        "referer" => header(map, "referer").map(<[u8]>::to_vec),
        "useragent" => header(map, "user-agent").map(<[u8]>::to_vec),
        "id" => header(map, "x-request-id").map(<[u8]>::to_vec),
        "query" => {
            let p = path();
            Some(match p.iter().position(|b| *b == b'?') {
                Some(q) => p[q + 1..].to_vec(),
                None => Vec::new(),
            })
        }
        _ => None,
    }
}

/// Looks up `path` for the current context; `None` when the property does not exist here.
pub(crate) fn lookup(state: &mut HostState, path: &[u8]) -> Option<Vec<u8>> {
    let segments: Vec<&[u8]> = path.split(|b| *b == 0).collect();
    let seg: Vec<&str> = segments
        .iter()
        .map(|s| std::str::from_utf8(s).unwrap_or("\u{fffd}"))
        .collect();
    match seg.as_slice() {
        ["plugin_root_id"] => return Some(text(&state.spec.root_id)),
        ["plugin_name"] => return Some(text(&state.spec.name)),
        ["plugin_vm_id"] => return Some(text(&state.spec.vm_id)),
        _ => {}
    }
    // A root context (or anything that is not an HTTP context) has no stream info.
    let stream = state.streams.get(&state.effective_context)?;
    if let Some(v) = stream.properties.get(path) {
        return Some(v.clone());
    }
    let ds = &stream.downstream;
    match seg.as_slice() {
        ["source", "address"] => Some(text(&ds.source.to_string())),
        ["source", "port"] => Some(int(u64::from(ds.source.port()))),
        ["destination", "address"] => Some(text(&ds.destination.to_string())),
        ["destination", "port"] => Some(int(u64::from(ds.destination.port()))),
        ["request", "protocol"] => Some(text(stream.protocol)),
        ["request", field] => request_field(request_map(stream)?, field),
        ["response", "flags"] => Some(int(stream
            .response_meta
            .as_ref()
            .map_or(0, |r| r.info.response_flags))),
        ["response", field] => {
            let resp = stream.response_meta.as_ref()?;
            match *field {
                "code" => Some(int(u64::from(resp.code))),
                "code_details" => {
                    (!resp.info.code_details.is_empty()).then(|| text(&resp.info.code_details))
                }
                _ => None,
            }
        }
        ["upstream", "address"] => stream
            .response_meta
            .as_ref()?
            .info
            .upstream_address
            .map(|a| text(&a.to_string())),
        ["upstream", "port"] => stream
            .response_meta
            .as_ref()?
            .info
            .upstream_address
            .map(|a| int(u64::from(a.port()))),
        ["xds", "cluster_name"] => stream
            .response_meta
            .as_ref()?
            .info
            .cluster_name
            .as_deref()
            .map(text),
        ["xds", "route_name"] => stream
            .response_meta
            .as_ref()?
            .info
            .route_name
            .as_deref()
            .map(text),
        _ => None,
    }
}

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    restricted!(linker.func_wrap(
        "env",
        "proxy_get_property",
        |mut caller: Caller<'_, HostState>,
         path_ptr: i32,
         path_len: i32,
         ret_ptr: i32,
         ret_size: i32|
         -> wasmtime::Result<i32> {
            let path = memory::read(&mut caller, path_ptr, path_len)?;
            match lookup(caller.data_mut(), &path) {
                Some(value) => {
                    memory::copy_out(&mut caller, &value, ret_ptr, ret_size)?;
                    Ok(AbiStatus::Ok.code())
                }
                None => Ok(AbiStatus::NotFound.code()),
            }
        },
    ))?;
    restricted!(linker.func_wrap(
        "env",
        "proxy_set_property",
        |mut caller: Caller<'_, HostState>,
         path_ptr: i32,
         path_len: i32,
         value_ptr: i32,
         value_len: i32|
         -> wasmtime::Result<i32> {
            let path = memory::read(&mut caller, path_ptr, path_len)?;
            let value = memory::read(&mut caller, value_ptr, value_len)?;
            // Envoy stores the value in the stream's filter state; a context without a stream
            // (the root context) has none: NOT_FOUND.
            match caller.data_mut().stream() {
                Some(stream) => {
                    stream.properties.insert(path, value);
                    Ok(AbiStatus::Ok.code())
                }
                None => Ok(AbiStatus::NotFound.code()),
            }
        },
    ))?;
    Ok(())
}
