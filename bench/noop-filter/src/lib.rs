//! The floor of a routing proxy-wasm filter, for `bench/run`'s `host_noop` case.
//!
//! It does per request what any filter that routes must do, and nothing else: read `:path`,
//! set the route header, clear the route cache, and read `:status` on the way back. Built with
//! the proxy-wasm Rust SDK as our filter is, so "our filter − this" is what our own logic costs
//! and "this − no filter" is the price of the ABI crossings themselves (the host's side and the
//! SDK's dispatch).

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(NoopRoot) });
}}

/// Hands out one [`Noop`] per request.
struct NoopRoot;

impl Context for NoopRoot {}

impl RootContext for NoopRoot {
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Noop))
    }
}

/// One request: route it to the bench's first cluster.
struct Noop;

impl Context for Noop {}

impl HttpContext for Noop {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        // Read what a router filter reads; the value does not matter here.
        let _path = self.get_http_request_header(":path");
        self.set_http_request_header("x-failover-cluster", Some("upstream_a"));
        // Envoy's foreign function, as our filter calls it; an error only means the host has
        // none (the route then stays as it was), which a fixture can ignore.
        let _ = proxy_wasm::hostcalls::call_foreign_function("clear_route_cache", None);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let _status = self.get_http_response_header(":status");
        Action::Continue
    }
}
