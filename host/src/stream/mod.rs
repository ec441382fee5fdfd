//! Drives one request through the plugins' HTTP contexts with Envoy's filter-chain semantics.
//!
//! ```text
//! downstream request
//!   │ on_request_headers  (filters in order)   Continue → next filter
//!   │                                           Pause    → StopAllIterationAndWatermark: nothing
//!   │                                                      of the request moves until
//!   │                                                      continue_stream(request); with
//!   │                                                      allow_on_headers_stop_iteration:
//!   │                                                      StopIteration (body callbacks go on)
//!   │                                           send_http_response → local reply (below)
//!   │ forward(request)    the router: routes on the headers as the filters left them
//!   │ on_request_body     (a task of its own, per chunk, also after the response began, until
//!   │                     the response is complete) Pause = StopIterationAndBuffer: the next
//!   │                     call sees the whole buffer; past the listener's buffer limit → 413
//!   ▼
//! upstream response (or the router's local reply, with UpstreamInfo → response.* properties)
//!   │ on_response_headers (filters in reverse)  Pause, as for the request; send_http_response
//!   │                                           replaces the response (sent directly)
//!   │ ── response headers go downstream: send_http_response now resets the stream ──
//!   │ on_response_body    (per chunk, as the body is polled; buffering past the limit → 500
//!   │                     before the headers went out, a reset after)
//!   ▼
//! on_log (access-log view), on_done, on_delete   always, also when the stream ends early
//!
//! local reply during the request phase: passes on_response_headers/on_response_body of the
//! filters that saw the request (in reverse), like Envoy's sendLocalReply via the filter chain;
//! during the response phase (before headers went downstream): sent directly, replacing it.
//! ```
//!
//! Every callback a host call causes (a local reply, a resume, an HTTP-call answer) is acted on
//! here, after the guest call returned — never re-entered.
//!
//! What each callback can reach ([`crate::abi::state::Reach`]) follows Envoy's
//! `source/extensions/common/wasm/context.cc`: a map or body is reachable while its callback
//! runs and while the filter keeps it paused; a Continue drops it; `continue_stream` drops the
//! request ones; response headers and trailers a filter paused stay reachable after it resumed
//! (Envoy never clears them). The driver keeps its own copy of everything it must pass on.
//!
//! A Pause from a *headers* callback is Envoy's `StopAllIterationAndWatermark` for ABI 0.2.x
//! (proxy-wasm-cpp-host `convertVmCallResultToFilterHeadersStatus`): no body or trailers
//! callback for that direction reaches any filter until the headers are continued; the body
//! waits (here: it is not read, so back-pressure does what Envoy's watermark does) and then flows
//! on. With the plugin's `allow_on_headers_stop_iteration` it is `StopIteration`: the headers are
//! held but the body keeps flowing into the filter's body callbacks; a Continue from one of them
//! (or from its trailers callback), or `continue_stream`, releases the headers and what the
//! filter buffered (`ActiveStreamFilterBase::commonHandleAfterDataCallback` in Envoy's
//! `source/common/http/filter_manager.cc`).

mod chain;
mod convert;
mod drive;
mod passes;
mod pump;

// The body type, and the seam type, under the paths the public API has always used.
pub use crate::body::{Body, BoxError};
pub use crate::seam::UpstreamInfo;
pub use drive::{run_filter_chain, run_filter_chain_with};

/// Extension on a response produced because a plugin reset the stream (`close_stream`, or
/// `send_http_response` after the response started): the server should abort the downstream
/// connection instead of sending it.
#[derive(Clone, Copy, Debug, Default)]
pub struct StreamReset;

/// Code details of the 503 sent when a plugin VM has failed and `fail_open` is false.
pub const WASM_FAIL_DETAILS: &str = "wasm_fail_stream";

/// Envoy's default listener `per_connection_buffer_limit_bytes` (1 MiB).
pub const DEFAULT_BUFFER_LIMIT: usize = 1024 * 1024;

/// Code details of Envoy's 413 when a filter buffers more request body than the listener's
/// buffer limit (`StreamInfo::ResponseCodeDetails::RequestPayloadTooLarge`).
pub const REQUEST_TOO_LARGE_DETAILS: &str = "request_payload_too_large";

/// Code details of Envoy's 500 when a filter buffers more response body than the limit before
/// the response headers went out (`ResponsePayloadTooLarge`); after that the stream is reset.
pub const RESPONSE_TOO_LARGE_DETAILS: &str = "response_payload_too_large";

/// Options of one listener's filter chain.
#[derive(Debug, Clone, Copy)]
pub struct ChainOptions {
    /// The listener's `per_connection_buffer_limit_bytes`: how much body one filter may buffer
    /// (Pause from a body callback) before Envoy answers 413 (request) or 500/reset (response)
    /// — `ActiveStreamDecoderFilter::requestDataTooLarge` and
    /// `ActiveStreamEncoderFilter::responseDataTooLarge` in `filter_manager.cc`.
    pub buffer_limit: usize,
}

impl Default for ChainOptions {
    fn default() -> Self {
        Self {
            buffer_limit: DEFAULT_BUFFER_LIMIT,
        }
    }
}
