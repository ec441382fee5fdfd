//! Properties: `proxy_get_property`, `proxy_set_property`.
//!
//! A path arrives as NUL-separated segments (`response\0flags`). Strings are returned raw,
//! numbers as 8-byte little-endian integers (as Envoy serialises them). Unknown paths are
//! NOT_FOUND. Values stored with `proxy_set_property` read back on the same context.

use wasmtime::{Caller, Linker};

use super::memory;
use super::state::HostState;
use super::Status;

fn int(v: u64) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

fn text(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
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
    let effective = state.effective_context;
    let is_root = effective == state.root_context_id;
    if is_root {
        return state.root_properties.get(path).cloned();
    }
    let stream = state.streams.get(&effective)?;
    if let Some(v) = stream.properties.get(path) {
        return Some(v.clone());
    }
    let ds = &stream.downstream;
    match seg.as_slice() {
        ["source", "address"] => Some(text(&ds.source.to_string())),
        ["source", "port"] => Some(int(u64::from(ds.source.port()))),
        ["destination", "address"] => Some(text(&ds.destination.to_string())),
        ["destination", "port"] => Some(int(u64::from(ds.destination.port()))),
        ["request", field] => {
            let req = stream.request.as_ref()?;
            match *field {
                "path" => Some(text(&req.path)),
                "url_path" => Some(text(req.path.split('?').next().unwrap_or(""))),
                "method" => Some(text(&req.method)),
                "host" => Some(text(&req.host)),
                "scheme" => Some(text(&req.scheme)),
                "protocol" => Some(text(&req.protocol)),
                "id" => req.id.as_deref().or(ds.request_id.as_deref()).map(text),
                _ => None,
            }
        }
        ["response", field] => {
            let resp = stream.response.as_ref()?;
            match *field {
                "code" => Some(int(u64::from(resp.code))),
                "flags" => Some(int(resp.info.response_flags)),
                "code_details" => Some(text(&resp.info.code_details)),
                _ => None,
            }
        }
        ["upstream", "address"] => stream
            .response
            .as_ref()?
            .info
            .upstream_address
            .map(|a| text(&a.to_string())),
        ["upstream", "port"] => stream
            .response
            .as_ref()?
            .info
            .upstream_address
            .map(|a| int(u64::from(a.port()))),
        ["xds", "cluster_name"] => stream
            .response
            .as_ref()?
            .info
            .cluster_name
            .as_deref()
            .map(text),
        ["xds", "route_name"] => stream
            .response
            .as_ref()?
            .info
            .route_name
            .as_deref()
            .map(text),
        _ => None,
    }
}

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_property",
        |mut caller: Caller<'_, HostState>,
         path_ptr: i32,
         path_len: i32,
         ret_ptr: i32,
         ret_size: i32|
         -> wasmtime::Result<i32> {
            caller.data().check_not_restricted("proxy_get_property")?;
            let path = memory::read(&mut caller, path_ptr, path_len)?;
            match lookup(caller.data_mut(), &path) {
                Some(value) => {
                    memory::copy_out(&mut caller, &value, ret_ptr, ret_size)?;
                    Ok(Status::Ok.code())
                }
                None => Ok(Status::NotFound.code()),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_property",
        |mut caller: Caller<'_, HostState>,
         path_ptr: i32,
         path_len: i32,
         value_ptr: i32,
         value_len: i32|
         -> wasmtime::Result<i32> {
            caller.data().check_not_restricted("proxy_set_property")?;
            let path = memory::read(&mut caller, path_ptr, path_len)?;
            let value = memory::read(&mut caller, value_ptr, value_len)?;
            let state = caller.data_mut();
            if state.effective_context == state.root_context_id {
                state.root_properties.insert(path, value);
            } else if let Some(stream) = state.stream() {
                stream.properties.insert(path, value);
            }
            Ok(Status::Ok.code())
        },
    )?;
    Ok(())
}
