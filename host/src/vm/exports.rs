//! The guest's exported callbacks, looked up once per VM, and what the HTTP ones return.

use wasmtime::{Instance, Store, TypedFunc};

use crate::abi::state::HostState;

/// What a `proxy_on_*_headers/body/trailers` callback returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Go on with the next filter.
    Continue,
    /// Stop iteration (headers) / stop and buffer (body) until resumed.
    Pause,
}

impl Action {
    pub(super) fn from_abi(v: i32) -> Self {
        if v == 0 {
            Action::Continue
        } else {
            Action::Pause
        }
    }
}

pub(super) type F1 = TypedFunc<i32, ()>;
pub(super) type F1R = TypedFunc<i32, i32>;
pub(super) type F2 = TypedFunc<(i32, i32), ()>;
pub(super) type F2R = TypedFunc<(i32, i32), i32>;
pub(super) type F3R = TypedFunc<(i32, i32, i32), i32>;
pub(super) type F5 = TypedFunc<(i32, i32, i32, i32, i32), ()>;

pub(super) struct Exports {
    pub(super) on_context_create: Option<F2>,
    pub(super) on_vm_start: Option<F2R>,
    pub(super) on_configure: Option<F2R>,
    pub(super) on_tick: Option<F1>,
    pub(super) on_request_headers: Option<F3R>,
    pub(super) on_request_body: Option<F3R>,
    pub(super) on_request_trailers: Option<F2R>,
    pub(super) on_response_headers: Option<F3R>,
    pub(super) on_response_body: Option<F3R>,
    pub(super) on_response_trailers: Option<F2R>,
    pub(super) on_http_call_response: Option<F5>,
    pub(super) on_log: Option<F1>,
    pub(super) on_done: Option<F1R>,
    pub(super) on_delete: Option<F1>,
}

impl Exports {
    /// Looks every callback up once; a missing one is `None` (the host then acts as Envoy
    /// does for a module without it: Continue, or nothing).
    pub(super) fn resolve(instance: &Instance, store: &mut Store<HostState>) -> Self {
        macro_rules! export {
            ($name:literal) => {
                instance.get_typed_func(&mut *store, $name).ok()
            };
        }
        Exports {
            on_context_create: export!("proxy_on_context_create"),
            on_vm_start: export!("proxy_on_vm_start"),
            on_configure: export!("proxy_on_configure"),
            on_tick: export!("proxy_on_tick"),
            on_request_headers: export!("proxy_on_request_headers"),
            on_request_body: export!("proxy_on_request_body"),
            on_request_trailers: export!("proxy_on_request_trailers"),
            on_response_headers: export!("proxy_on_response_headers"),
            on_response_body: export!("proxy_on_response_body"),
            on_response_trailers: export!("proxy_on_response_trailers"),
            on_http_call_response: export!("proxy_on_http_call_response"),
            on_log: export!("proxy_on_log"),
            on_done: export!("proxy_on_done"),
            on_delete: export!("proxy_on_delete"),
        }
    }
}
