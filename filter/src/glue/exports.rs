//! The callbacks this module exports: exactly what the filter uses, plus what every host
//! requires (the ABI version marker, the allocator, `_initialize`).
//!
//! A host calls only what a module exports and treats the rest as having nothing to do:
//! cpp-host (`src/context.cc`) returns Continue for a missing `proxy_on_response_trailers`,
//! `true` for a missing `proxy_on_done`, and skips a missing `proxy_on_queue_ready`,
//! `proxy_on_foreign_function` or gRPC callback. The SDK exported all of them with exactly
//! those answers (`on_done` was always `true`: nothing of ours outlives a context), so leaving
//! them out changes nothing but the module's size and one host→guest call per stream.
//!
//! Each export is a shim: raw ABI integers in, a call into [`crate::glue::contexts`], the ABI's
//! integer out. Sizes arrive as `usize` (i32 on wasm32) and flags as `u32` (any non-zero is
//! true), so no value a host passes is invalid for its Rust type.

use super::abi::{logger, Action};
use super::contexts;

/// The ABI version marker (`proxy_abi_version_0_2_1`): a host picks the ABI by this export's
/// name and refuses a module without one.
#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

#[cfg(target_os = "wasi")]
extern "C" {
    fn __wasm_call_ctors();
}

/// Reactor start-up: static constructors, then the logger. Only `proxy_log` and a few WASI
/// calls are allowed here (envoy-host-contract.md, "Loading"); the first real work happens in
/// `proxy_on_vm_start` / `proxy_on_configure`.
#[no_mangle]
pub extern "C" fn _initialize() {
    #[cfg(target_os = "wasi")]
    // SAFETY: wasi-libc's constructors, run once, first, as a reactor's `_initialize` must.
    unsafe {
        __wasm_call_ctors();
    }
    logger::init();
}

/// Memory for data the host hands over (header maps, bodies, properties): `size` bytes from the
/// global allocator, align 1, freed by the filter as a `Vec<u8>` (`abi::owned`).
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    Box::into_raw(Box::<[u8]>::new_uninit_slice(size)).cast::<u8>()
}

/// A new context: a root context when `root_context_id` is 0, else an HTTP stream of it.
#[no_mangle]
pub extern "C" fn proxy_on_context_create(context_id: u32, root_context_id: u32) {
    contexts::create(context_id, root_context_id);
}

/// The VM started (per root context): false fails the VM. An unknown root context is false.
#[no_mangle]
pub extern "C" fn proxy_on_vm_start(context_id: u32, vm_configuration_size: usize) -> bool {
    contexts::with_root(context_id, false, |root| {
        root.on_vm_start(vm_configuration_size)
    })
}

/// The plugin configuration is readable: false rejects the plugin. An unknown root context is
/// false.
#[no_mangle]
pub extern "C" fn proxy_on_configure(context_id: u32, plugin_configuration_size: usize) -> bool {
    contexts::with_root(context_id, false, |root| {
        root.on_configure(plugin_configuration_size)
    })
}

/// The root context's timer fired.
#[no_mangle]
pub extern "C" fn proxy_on_tick(context_id: u32) {
    contexts::with_root(context_id, (), |root| root.on_tick());
}

/// Request headers arrived.
#[no_mangle]
pub extern "C" fn proxy_on_request_headers(
    context_id: u32,
    num_headers: usize,
    end_of_stream: u32,
) -> Action {
    contexts::with_http(context_id, |http| {
        http.on_http_request_headers(num_headers, end_of_stream != 0)
    })
}

/// A request body chunk arrived (or, while paused, the buffer grew).
#[no_mangle]
pub extern "C" fn proxy_on_request_body(
    context_id: u32,
    body_size: usize,
    end_of_stream: u32,
) -> Action {
    contexts::with_http(context_id, |http| {
        http.on_http_request_body(body_size, end_of_stream != 0)
    })
}

/// Request trailers arrived: the request body is complete.
#[no_mangle]
pub extern "C" fn proxy_on_request_trailers(context_id: u32, num_trailers: usize) -> Action {
    contexts::with_http(context_id, |http| {
        http.on_http_request_trailers(num_trailers)
    })
}

/// Response headers arrived.
#[no_mangle]
pub extern "C" fn proxy_on_response_headers(
    context_id: u32,
    num_headers: usize,
    end_of_stream: u32,
) -> Action {
    contexts::with_http(context_id, |http| {
        http.on_http_response_headers(num_headers, end_of_stream != 0)
    })
}

/// A response body chunk arrived (or, while paused, the buffer grew).
#[no_mangle]
pub extern "C" fn proxy_on_response_body(
    context_id: u32,
    body_size: usize,
    end_of_stream: u32,
) -> Action {
    contexts::with_http(context_id, |http| {
        http.on_http_response_body(body_size, end_of_stream != 0)
    })
}

/// An HTTP call's answer (0 headers: it failed). Routed by token to the context that sent it;
/// the host's `context_id` (the root's) is not needed for that.
#[no_mangle]
pub extern "C" fn proxy_on_http_call_response(
    _context_id: u32,
    token: u32,
    num_headers: usize,
    body_size: usize,
    _num_trailers: usize,
) {
    contexts::call_response(token, num_headers, body_size);
}

/// The stream ended: the access-log phase.
#[no_mangle]
pub extern "C" fn proxy_on_log(context_id: u32) {
    contexts::with_http(context_id, |http| {
        http.on_log();
        Action::Continue
    });
}

/// The context is gone.
#[no_mangle]
pub extern "C" fn proxy_on_delete(context_id: u32) {
    contexts::delete(context_id);
}
