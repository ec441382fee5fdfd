//! The proxy-wasm glue: translates host callbacks into calls on the pure modules. Only built
//! for `wasm32`.
//!
//! ```text
//!  exports       ─ the proxy_on_* callbacks; _initialize installs the logger (no host calls
//!                  allowed there but logging); contexts.rs finds the context of each call
//!  FailoverRoot (one per root context: the HTTP filter's, and the verifier's)
//!    on_configure ─ parse config, define metrics, create the record, start the tick
//!    on_tick      ─ verifier: lease, fleet sync round (syncer.rs), due probes (verifier.rs)
//!    create_http_context ─ FailoverHttp (http.rs)
//!  FailoverHttp (one per request)
//!    request headers ─ choose endpoint, set route header, keep a copy for replay
//!    request body    ─ keep a copy (up to max_request_bytes), stream it on
//!    response headers─ classify; on failure record it, pause, replay elsewhere
//!    call response   ─ success → send_http_response; failure → next endpoint or last answer
//! ```

mod abi;
mod calls;
mod contexts;
mod exports;
mod host;
mod http;
mod plugin;
mod root;
mod syncer;
mod verifier;
