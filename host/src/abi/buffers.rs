//! Buffers: `proxy_get_buffer_bytes`, `proxy_set_buffer_bytes`.
//!
//! Buffer types (ABI 0.2.1): 0 request body, 1 response body, 4 HTTP-call response body,
//! 6 VM configuration, 7 plugin configuration. The SDK accepts OK/NOT_FOUND from get and only
//! OK from set, so writes to a buffer that does not exist right now are ignored (logged).

use wasmtime::{Caller, Linker};

use super::memory;
use super::state::HostState;
use super::Status;

const REQUEST_BODY: i32 = 0;
const RESPONSE_BODY: i32 = 1;
const HTTP_CALL_RESPONSE_BODY: i32 = 4;
const VM_CONFIGURATION: i32 = 6;
const PLUGIN_CONFIGURATION: i32 = 7;

/// The bytes of buffer `kind` as the current context sees it, `None` when it has none.
fn buffer(state: &mut HostState, kind: i32) -> Option<Vec<u8>> {
    match kind {
        REQUEST_BODY => state.stream().and_then(|s| s.request_body.clone()),
        RESPONSE_BODY => state.stream().and_then(|s| s.response_body.clone()),
        HTTP_CALL_RESPONSE_BODY => state
            .http_call_result
            .as_ref()
            .and_then(|r| r.response.as_ref())
            .map(|r| r.body.to_vec()),
        VM_CONFIGURATION => Some(state.spec.vm_configuration.clone()),
        PLUGIN_CONFIGURATION => Some(state.spec.configuration.clone()),
        _ => None,
    }
}

fn buffer_mut(state: &mut HostState, kind: i32) -> Option<&mut Vec<u8>> {
    let stream = state.stream()?;
    match kind {
        REQUEST_BODY => stream.request_body.as_mut(),
        RESPONSE_BODY => stream.response_body.as_mut(),
        _ => None,
    }
}

/// Envoy's edit rules, generalised: replace `size` bytes at `start` with `data`
/// (start 0 size 0 prepends, start ≥ len appends, start 0 size ≥ len replaces everything).
pub(crate) fn splice(buf: &mut Vec<u8>, start: usize, size: usize, data: &[u8]) {
    let start = start.min(buf.len());
    let end = start.saturating_add(size).min(buf.len());
    buf.splice(start..end, data.iter().copied());
}

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut caller: Caller<'_, HostState>,
         kind: i32,
         start: i32,
         max_size: i32,
         ret_ptr: i32,
         ret_size: i32|
         -> wasmtime::Result<i32> {
            caller
                .data()
                .check_not_restricted("proxy_get_buffer_bytes")?;
            let Some(data) = buffer(caller.data_mut(), kind) else {
                return Ok(Status::NotFound.code());
            };
            let start = (start as u32 as usize).min(data.len());
            let end = start
                .saturating_add(max_size as u32 as usize)
                .min(data.len());
            memory::copy_out(&mut caller, &data[start..end], ret_ptr, ret_size)?;
            Ok(Status::Ok.code())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut caller: Caller<'_, HostState>,
         kind: i32,
         start: i32,
         size: i32,
         data_ptr: i32,
         data_len: i32|
         -> wasmtime::Result<i32> {
            caller
                .data()
                .check_not_restricted("proxy_set_buffer_bytes")?;
            let data = memory::read(&mut caller, data_ptr, data_len)?;
            match buffer_mut(caller.data_mut(), kind) {
                Some(buf) => splice(buf, start as u32 as usize, size as u32 as usize, &data),
                None => tracing::debug!(
                    buffer = kind,
                    "proxy_set_buffer_bytes on a buffer that is not available now: ignored"
                ),
            }
            Ok(Status::Ok.code())
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::splice;

    #[test]
    fn splice_follows_envoys_cases() {
        let mut b = b"world".to_vec();
        splice(&mut b, 0, 0, b"hello ");
        assert_eq!(b, b"hello world");
        splice(&mut b, 100, 0, b"!");
        assert_eq!(b, b"hello world!");
        splice(&mut b, 0, usize::MAX, b"new");
        assert_eq!(b, b"new");
        splice(&mut b, 1, 1, b"E");
        assert_eq!(b, b"nEw");
    }
}
