//! Outgoing calls: `proxy_http_call` (dispatch_http_call) and the gRPC functions.
//!
//! `proxy_http_call` checks its arguments (a timeout of 2^31 ms or more, an unknown cluster, or a
//! missing `:method`, `:path` or `:authority` → BAD_ARGUMENT, as Envoy's `Context::httpCall`),
//! refuses a call to a cluster that has no host at all (STRICT_DNS not resolved yet, an empty
//! load assignment) with INTERNAL_FAILURE and no callback ever — in Envoy the router answers
//! "no healthy upstream" inline, so `AsyncClient::send` returns null and `httpCall` erases the
//! token — hands out a token, and records the call; the VM starts it after the current guest
//! call returns and later delivers `proxy_on_http_call_response` on the root context — never
//! from inside a host call.
//!
//! gRPC is not supported: calls return the failure statuses the SDK's wrappers accept
//! (INTERNAL_FAILURE to start, NOT_FOUND for unknown tokens) and never trap.

use std::time::Duration;

use bytes::Bytes;
use wasmtime::{Caller, Linker};

use super::memory;
use super::state::{Deferred, HostState};
use super::AbiStatus;
use crate::headers;
use crate::seam::CallRequest;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    restricted!(linker.func_wrap(
        "env",
        "proxy_http_call",
        |mut caller: Caller<'_, HostState>,
         upstream_ptr: i32,
         upstream_len: i32,
         headers_ptr: i32,
         headers_len: i32,
         body_ptr: i32,
         body_len: i32,
         trailers_ptr: i32,
         trailers_len: i32,
         timeout_ms: i32,
         ret_token: i32|
         -> wasmtime::Result<i32> {
            let cluster = memory::read_string(&mut caller, upstream_ptr, upstream_len)?;
            let raw_headers = memory::read(&mut caller, headers_ptr, headers_len)?;
            let body = memory::read(&mut caller, body_ptr, body_len)?;
            let raw_trailers = memory::read(&mut caller, trailers_ptr, trailers_len)?;
            let (Ok(headers), Ok(trailers)) = (
                headers::decode(&raw_headers),
                headers::decode(&raw_trailers),
            ) else {
                return Ok(AbiStatus::BadArgument.code());
            };
            // Envoy takes the timeout as a signed int: 2^31 ms and more is BAD_ARGUMENT.
            if timeout_ms < 0 {
                return Ok(AbiStatus::BadArgument.code());
            }
            if !caller.data().clusters.has_cluster(&cluster) {
                tracing::debug!(cluster = %cluster, "dispatch_http_call to an unknown cluster");
                return Ok(AbiStatus::BadArgument.code());
            }
            for required in [":method", ":path", ":authority"] {
                if !headers.iter().any(|(n, v)| n == required && !v.is_empty()) {
                    tracing::debug!(
                        header = required,
                        "dispatch_http_call without a required header"
                    );
                    return Ok(AbiStatus::BadArgument.code());
                }
            }
            if !caller.data().clusters.has_usable_host(&cluster) {
                tracing::debug!(
                    cluster = %cluster,
                    "dispatch_http_call to a cluster without hosts: INTERNAL_FAILURE"
                );
                return Ok(AbiStatus::InternalFailure.code());
            }
            let timeout = match timeout_ms as u32 {
                0 => None,
                ms => Some(Duration::from_millis(u64::from(ms))),
            };
            let state = caller.data_mut();
            let token = state.next_token;
            state.next_token = state.next_token.wrapping_add(1).max(1);
            let context = state.effective_context;
            state.pending_calls.insert(token, context);
            state.deferred.push(Deferred::HttpCall {
                token,
                cluster,
                request: CallRequest {
                    headers,
                    body: Bytes::from(body),
                    trailers,
                },
                timeout,
            });
            memory::write_u32(&mut caller, ret_token, token)?;
            Ok(AbiStatus::Ok.code())
        },
    ))?;

    // ----- gRPC: unsupported, reported with statuses the SDK accepts -----
    restricted!(linker.func_wrap(
        "env",
        "proxy_grpc_call",
        |caller: Caller<'_, HostState>,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32|
         -> wasmtime::Result<i32> { Ok(AbiStatus::InternalFailure.code()) },
    ))?;
    restricted!(linker.func_wrap(
        "env",
        "proxy_grpc_stream",
        |caller: Caller<'_, HostState>,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32|
         -> wasmtime::Result<i32> { Ok(AbiStatus::InternalFailure.code()) },
    ))?;
    restricted!(linker.func_wrap(
        "env",
        "proxy_grpc_send",
        |caller: Caller<'_, HostState>, _: i32, _: i32, _: i32, _: i32| -> wasmtime::Result<i32> {
            Ok(AbiStatus::NotFound.code())
        },
    ))?;
    for name in ["proxy_grpc_cancel", "proxy_grpc_close"] {
        restricted!(linker.func_wrap(
            "env",
            name,
            |caller: Caller<'_, HostState>, _: i32| -> wasmtime::Result<i32> {
                Ok(AbiStatus::NotFound.code())
            },
        ))?;
    }
    restricted!(linker.func_wrap(
        "env",
        "proxy_get_status",
        |mut caller: Caller<'_, HostState>,
         ret_code: i32,
         ret_ptr: i32,
         ret_size: i32|
         -> wasmtime::Result<i32> {
            // No gRPC call ever completes here: report code 2 (UNKNOWN) without a message.
            memory::write_u32(&mut caller, ret_code, 2)?;
            memory::copy_out(&mut caller, &[], ret_ptr, ret_size)?;
            Ok(AbiStatus::Ok.code())
        },
    ))?;
    Ok(())
}
