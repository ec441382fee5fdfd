//! Stream control: `proxy_send_local_response`, `proxy_continue_stream`, `proxy_close_stream`,
//! `proxy_set_effective_context`, `proxy_done`.
//!
//! These only raise flags on the current HTTP context and wake its driver (the runtime's
//! stream driver); the driver acts after the guest call returns, so a local reply never
//! re-enters the module from inside `send_http_response`.

use wasmtime::{Caller, Linker};

use super::memory;
use super::state::{HostState, PluginReply, Reach};
use super::AbiStatus;
use crate::headers;

const HTTP_REQUEST: i32 = 0;
const HTTP_RESPONSE: i32 = 1;
/// `WasmStreamType::MAX` (upstream): larger types are BAD_ARGUMENT (cpp-host `exports.cc`).
const MAX_STREAM_TYPE: u32 = 3;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    restricted!(linker.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut caller: Caller<'_, HostState>,
         status_code: i32,
         details_ptr: i32,
         details_len: i32,
         body_ptr: i32,
         body_len: i32,
         headers_ptr: i32,
         headers_len: i32,
         _grpc_status: i32|
         -> wasmtime::Result<i32> {
            let details = memory::read_string(&mut caller, details_ptr, details_len)?;
            let body = memory::read(&mut caller, body_ptr, body_len)?;
            let raw = memory::read(&mut caller, headers_ptr, headers_len)?;
            let headers = headers::decode(&raw)
                .map_err(|_| wasmtime::Error::msg("malformed header map passed to proxy_send_local_response"))?;
            let label = caller.data().label.clone();
            let Some(stream) = caller.data_mut().stream() else {
                tracing::warn!(vm = %label, "send_http_response outside an HTTP context: ignored");
                return Ok(AbiStatus::Ok.code());
            };
            if stream.response_headers_sent {
                // Envoy: the response already started downstream; all it can do is reset.
                tracing::warn!(vm = %label, status = status_code, "send_http_response after the response headers were sent downstream: resetting the stream");
                stream.reset = true;
            } else if stream.local_reply.is_some() {
                tracing::debug!(vm = %label, "second send_http_response on the same stream: ignored");
            } else {
                stream.local_reply = Some(PluginReply { status: status_code as u32, details, body, headers });
            }
            stream.signal.notify_one();
            Ok(AbiStatus::Ok.code())
        },
    ))?;
    restricted!(linker.func_wrap(
        "env",
        "proxy_continue_stream",
        |mut caller: Caller<'_, HostState>, stream_type: i32| -> wasmtime::Result<i32> {
            if stream_type as u32 > MAX_STREAM_TYPE {
                return Ok(AbiStatus::BadArgument.code());
            }
            if let Some(stream) = caller.data_mut().stream() {
                match stream_type {
                    HTTP_REQUEST => stream.request.resume = true,
                    HTTP_RESPONSE => stream.response.resume = true,
                    // Downstream/upstream (network filters): nothing to continue in HTTP.
                    _ => return Ok(AbiStatus::Ok.code()),
                }
                // Envoy's `Context::continueStream` drops the request headers, body and
                // trailers for either HTTP direction, at once (the resume itself runs after
                // the guest call returns).
                stream.request.reach = Reach::default();
                stream.signal.notify_one();
            }
            Ok(AbiStatus::Ok.code())
        },
    ))?;
    restricted!(linker.func_wrap(
        "env",
        "proxy_close_stream",
        |mut caller: Caller<'_, HostState>, stream_type: i32| -> wasmtime::Result<i32> {
            if stream_type as u32 > MAX_STREAM_TYPE {
                return Ok(AbiStatus::BadArgument.code());
            }
            if let Some(stream) = caller.data_mut().stream() {
                if matches!(stream_type, HTTP_REQUEST | HTTP_RESPONSE) {
                    stream.reset = true;
                    stream.signal.notify_one();
                }
            }
            Ok(AbiStatus::Ok.code())
        },
    ))?;
    restricted!(linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut caller: Caller<'_, HostState>, context_id: i32| -> wasmtime::Result<i32> {
            let state = caller.data_mut();
            let id = context_id as u32;
            if id == state.root_context_id || state.streams.contains_key(&id) {
                state.effective_context = id;
                Ok(AbiStatus::Ok.code())
            } else {
                Ok(AbiStatus::BadArgument.code())
            }
        },
    ))?;
    restricted!(linker.func_wrap(
        "env",
        "proxy_done",
        |caller: Caller<'_, HostState>| -> wasmtime::Result<i32> { Ok(AbiStatus::Ok.code()) },
    ))?;
    Ok(())
}
