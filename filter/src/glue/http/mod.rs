//! The per-request context: translates the HTTP callbacks into the pure decisions of
//! [`crate::attempt`], [`crate::select`] and [`crate::classify`], and carries them out.
//!
//! Every map, body and property is read only in the callback that owns it (Envoy drops a map
//! as soon as its callback returns Continue): what a replay needs is copied at request headers.
//!
//! ```text
//! request headers ─ status path? answer locally
//!                 ─ copy what a replay needs (method, path, authority, headers to forward)
//!                 ─ strip client route header, choose endpoint, set route header + its headers,
//!                   clear_route_cache
//!                 ─ hold_headers and a keepable body? Pause (Envoy ≥ 1.35 with
//!                   allow_on_headers_stop_iteration: body callbacks go on)
//! request body    ─ keep a copy (≤ max_request_bytes); held: Pause until end of stream, then
//!                   Continue (the router sees the request only when the filter has all of it)
//! response headers─ healthy → Continue (held event stream: Pause until its first event)
//!                 ─ client error → Continue
//!                 ─ failure → record once; replayable and attempts left?
//!                      yes → dispatch_http_call to the next endpoint, Pause
//!                      no  → add tried header, Continue (the client gets this answer)
//! response body   ─ held event stream: first event good → Continue; error or end → failure
//! call response   ─ healthy/client error → send_http_response(that answer)
//!                 ─ failure → record once; next endpoint, or the last real answer
//!                 ─ no answer within *our* budget → not the endpoint's failure
//! ```

use std::rc::Rc;

use log::{debug, warn};

mod local;
mod replay;
mod stream;

use super::abi::{self, Action, BufferType, MapType};
use super::host::{now_ms, property, property_string};
use super::plugin::Plugin;
use crate::attempt::{self, Attempts, KeptBody, NotReplayable, ReplayRequest};
use crate::classify::{
    classify, decode_status, decode_u64_le, details_matter, is_event_stream, Observation, Reason,
    ResponseFlags, Verdict,
};
use crate::config::EndpointIdx;
use crate::retry_after;
use crate::select::{self, Choice};
use crate::status_page;

/// Which answer the client gets if every attempt fails.
enum LastAnswer {
    /// The router's own (paused) response.
    Original,
    /// The answer of a replayed attempt.
    Call {
        status: u16,
        headers: Vec<(String, Vec<u8>)>,
        body: Vec<u8>,
    },
}

/// Response header set when a failed answer reaches the client unreplayed because the request
/// itself could not be replayed (its value says why), so a client can tell "every endpoint
/// failed" from "failover was not possible for this request".
pub const NOT_REPLAYED_HEADER: &str = "x-failover-not-replayed";

/// A replay in flight.
#[derive(Clone, Copy)]
struct Pending {
    token: u32,
    idx: EndpointIdx,
    sent_ms: u64,
    timeout_ms: u64,
}

/// An event stream whose headers are held until its first complete event.
struct HeldStream {
    /// Bytes seen so far (the host hands the whole held buffer each time).
    seen: Vec<u8>,
    since_ms: u64,
}

/// One request.
pub struct FailoverHttp {
    ctx: u32,
    plugin: Rc<Plugin>,
    attempts: Attempts,
    /// What a replay sends, copied at request headers; `None` when replays are off
    /// (`max_attempts` 1) or the request lacks a pseudo-header a call needs.
    replay: Option<ReplayRequest>,
    body: KeptBody,
    /// The request is held at its headers until its body is complete.
    holding_request: bool,
    pending: Option<Pending>,
    last: LastAnswer,
    /// The filter answered (status page, reject, or a replaced response).
    answered: bool,
    /// The endpoint whose healthy answer is streaming to the client (the router's original).
    streaming_from: Option<EndpointIdx>,
    /// An event stream held before its first event.
    held: Option<HeldStream>,
    /// The streamed answer is server-sent events: watch it for `event: error`.
    sse: bool,
    /// The last bytes of the previous chunk, so a frame split over chunks is still seen.
    sse_tail: Vec<u8>,
    /// The response body reached its end.
    response_complete: bool,
    /// Parked endpoints this request claimed a trial slot for (`least_recently_failed`): only
    /// their success recovers them.
    trials: Vec<(EndpointIdx, u64)>,
    /// A trial's healthy answer is still streaming: it recovers the endpoint only if it ends.
    deferred_recovery: Option<EndpointIdx>,
}

impl FailoverHttp {
    /// A new request context of `plugin`.
    pub fn new(ctx: u32, plugin: Rc<Plugin>) -> Self {
        Self {
            ctx,
            plugin,
            attempts: Attempts::default(),
            replay: None,
            body: KeptBody::default(),
            holding_request: false,
            pending: None,
            last: LastAnswer::Original,
            answered: false,
            streaming_from: None,
            held: None,
            sse: false,
            sse_tail: Vec::new(),
            response_complete: false,
            trials: Vec::new(),
            deferred_recovery: None,
        }
    }

    fn next_random(&self) -> u64 {
        self.plugin.rng.borrow_mut().next_u64()
    }

    /// Logs a host call the host refused; the request goes on without it.
    fn checked(&self, what: &str, result: Result<(), abi::HostStatus>) {
        if let Err(status) = result {
            warn!("#{} {what}: the host answered {status}", self.ctx);
        }
    }

    fn set_response_header(&self, name: &str, value: &str) {
        self.checked(
            "setting a response header",
            abi::set_header(MapType::HttpResponseHeaders, name, Some(value)),
        );
    }

    fn response_header(&self, name: &str) -> Option<Vec<u8>> {
        abi::header(MapType::HttpResponseHeaders, name)
            .ok()
            .flatten()
    }

    /// Records a failure of `idx`, once per request.
    fn fail(&mut self, idx: EndpointIdx, reason: &Reason, not_before_ms: Option<u64>) {
        if self.attempts.first_failure(idx) {
            self.plugin
                .record_failure(self.ctx, idx, reason, not_before_ms);
        }
    }

    /// Why this request cannot be replayed at all.
    fn not_replayable(&self) -> Option<NotReplayable> {
        if self.replay.is_none() && self.plugin.config.failover.max_attempts > 1 {
            return Some(NotReplayable::HeadersIncomplete);
        }
        self.body.not_replayable()
    }

    fn is_trial(&self, idx: EndpointIdx) -> bool {
        self.trials.iter().any(|(i, _)| *i == idx)
    }

    fn tried_list(&self) -> String {
        self.attempts.tried_list(&self.plugin.config)
    }

    fn response_headers_text(headers: &[(String, Vec<u8>)]) -> Vec<(String, String)> {
        headers
            .iter()
            .map(|(n, v)| {
                (
                    n.to_ascii_lowercase(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }
}

/// The callbacks (`glue::exports` → `glue::contexts` → here).
impl FailoverHttp {
    /// The answer to this request's replay (0 headers: the call failed).
    pub fn on_http_call_response(&mut self, token: u32, num_headers: usize, body_size: usize) {
        let Some(pending) = self.pending else {
            return;
        };
        if pending.token != token {
            return;
        }
        self.pending = None;
        self.call_answered(pending, num_headers, body_size);
    }

    /// Request headers: status page, copy for replay, choose and route, maybe hold.
    pub fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let plugin = self.plugin.clone();
        let cfg = &plugin.config;
        // The request map is ours only now: read everything later phases need.
        let all = abi::headers(MapType::HttpRequestHeaders).unwrap_or_default();
        let value = |name: &str| {
            all.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_slice())
        };
        if let Some(path) = value(":path") {
            if status_page::is_status_path(cfg, &String::from_utf8_lossy(path)) {
                let method = value(":method").unwrap_or_default().to_vec();
                return self.answer_status_page(&method);
            }
        }
        if cfg.failover.max_attempts > 1 {
            self.replay = ReplayRequest::capture(&all, cfg);
        }
        let content_length = value("content-length")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        // A client must never choose the upstream: drop every copy of the route header.
        self.checked(
            "removing the client's route header",
            abi::set_header(MapType::HttpRequestHeaders, &cfg.route_header, None),
        );
        let record = self.plugin.record();
        match select::choose(cfg, &record, &[], self.next_random()) {
            Choice::Endpoint(idx) => self.route(idx),
            Choice::Trial(idx) => {
                let until = now_ms().saturating_add(cfg.failover.attempt_timeout_ms);
                if !self.plugin.claim_trial(idx, until) {
                    return self.reject();
                }
                self.trials.push((idx, until));
                debug!(
                    "#{} all endpoints parked: trial request to \"{}\"",
                    self.ctx,
                    cfg.endpoint(idx).id
                );
                self.route(idx);
            }
            Choice::Reject { .. } | Choice::Exhausted => return self.reject(),
        }
        if end_of_stream {
            self.body.complete();
        }
        if self.replay.is_some() && attempt::hold_request(cfg, end_of_stream, content_length) {
            // StopIteration (Envoy ≥ 1.35, allow_on_headers_stop_iteration): the body keeps
            // coming to us while the router waits for the whole request.
            self.holding_request = true;
            return Action::Pause;
        }
        Action::Continue
    }

    /// A request body chunk: keep a copy; release a held request once complete.
    pub fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.body.is_complete() {
            self.keep_request_bytes(body_size);
        }
        if end_of_stream {
            self.body.complete();
        }
        if self.holding_request {
            if self.body.is_complete()
                || self.body.not_replayable() == Some(NotReplayable::BodyOverLimit)
            {
                // Continue releases the held headers and the buffered body together.
                self.holding_request = false;
                return Action::Continue;
            }
            return Action::Pause;
        }
        Action::Continue
    }

    /// Request trailers: the body is complete.
    pub fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.body.complete();
        self.holding_request = false;
        Action::Continue
    }

    /// Response headers: classify; on failure record and replay elsewhere.
    pub fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if self.answered {
            return Action::Continue;
        }
        // The router's endpoint: the first (and at this point only) one attempted.
        let Some(&idx) = self.attempts.tried().first() else {
            return Action::Continue;
        };
        let status = self
            .response_header(":status")
            .and_then(|v| decode_status(&v));
        let flags = property(&["response", "flags"])
            .and_then(|b| decode_u64_le(&b))
            .map(ResponseFlags::from_bits);
        let policy = &self.plugin.config.failure;
        let obs = Observation {
            status,
            flags,
            // A string property costs a host call and a copy: read it only when it can matter.
            code_details: details_matter(policy, status, flags)
                .then(|| property_string(&["response", "code_details"]))
                .flatten(),
        };
        match classify(&self.plugin.config.failure, &obs) {
            Verdict::Healthy => {
                let sse = self
                    .response_header("content-type")
                    .is_some_and(|v| is_event_stream(&v));
                if sse
                    && !end_of_stream
                    && self.plugin.config.failover.hold_headers
                    && self.replay.is_some()
                    && self.not_replayable().is_none()
                {
                    // Hold the headers until the first event says the stream is healthy.
                    self.streaming_from = Some(idx);
                    self.held = Some(HeldStream {
                        seen: Vec::new(),
                        since_ms: now_ms(),
                    });
                    return Action::Pause;
                }
                self.start_streaming(idx, end_of_stream, sse);
                Action::Continue
            }
            Verdict::Neutral => Action::Continue,
            Verdict::Failed(reason) => {
                let deadline = status.and_then(|s| {
                    let all = abi::headers(MapType::HttpResponseHeaders).unwrap_or_default();
                    retry_after::deadline_ms(s, &Self::response_headers_text(&all), now_ms())
                });
                self.original_failed(idx, &reason, deadline)
            }
        }
    }

    /// A response body chunk: judge a held event stream, watch a streaming one.
    pub fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.pending.is_some() {
            // The failed answer waits while a replay runs; it is replaced or resumed after.
            return Action::Pause;
        }
        if self.held.is_some() {
            return self.judge_held_stream(body_size, end_of_stream);
        }
        if let (true, Some(idx)) = (self.sse, self.streaming_from) {
            if let Ok(chunk) = abi::body(BufferType::HttpResponseBody, 0, body_size) {
                self.watch_sse(idx, chunk);
            }
        }
        if end_of_stream {
            self.finish_response();
        }
        Action::Continue
    }

    /// The stream ended: record a cut, free trial slots.
    pub fn on_log(&mut self) {
        self.record_cut();
        // The request has ended: free the trial slots it still holds (a recovered endpoint has
        // none left; an expired slot taken by someone else is not touched).
        for (idx, until) in std::mem::take(&mut self.trials) {
            if self
                .plugin
                .record()
                .is_queued(self.plugin.config.endpoint(idx).id.as_str())
            {
                self.plugin.release_trial(idx, until);
            }
        }
    }
}
