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
use std::time::Duration;

use log::{debug, error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType, StreamType};
use serde_json::json;

use super::abi;
use super::host::{now_ms, property, property_string};
use super::plugin::Plugin;
use crate::attempt::{self, Attempts, FirstEvent, KeptBody, NotReplayable, ReplayRequest};
use crate::classify::{
    classify, decode_status, decode_u64_le, details_matter, is_event_stream, Observation, Reason,
    ResponseFlags, Verdict,
};
use crate::config::{EndpointIdx, HOP_BY_HOP};
use crate::retry_after;
use crate::select::{self, Choice};
use crate::status;

/// The context used when the root context is not configured: passes everything through.
pub struct Unconfigured;
impl Context for Unconfigured {}
impl HttpContext for Unconfigured {}

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
    /// The endpoint the router sent the original request to.
    routed: Option<EndpointIdx>,
    /// What a replay sends, copied at request headers; `None` when not replayable.
    replay: Option<ReplayRequest>,
    /// Why `replay` is `None` (set at request headers).
    headers_unreplayable: bool,
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
            routed: None,
            replay: None,
            headers_unreplayable: false,
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

    /// Local answer; the stream ends here.
    fn answer(&mut self, status: u32, headers: &[(&str, &str)], body: Option<&[u8]>) -> Action {
        self.answered = true;
        self.checked(
            "sending a local answer",
            abi::send_response(status, headers, body),
        );
        Action::Pause
    }

    fn answer_status_page(&mut self, method: &[u8]) -> Action {
        let cfg = &self.plugin.config;
        let source = property_string(&["source", "address"]);
        if !status::allowed(cfg, source.as_deref()) {
            // As if the path did not exist: no hint that there is something here.
            return self.answer(404, &[], None);
        }
        if method != b"GET" && method != b"HEAD" {
            return self.answer(405, &[("allow", "GET, HEAD")], None);
        }
        let record = self.plugin.record();
        let doc = status::render(cfg, &record, now_ms()).to_string();
        self.answer(
            200,
            &[
                ("content-type", "application/json"),
                ("cache-control", "no-store"),
            ],
            Some(doc.as_bytes()),
        )
    }

    /// Every endpoint is parked and none may be tried: 503 with `retry-after`.
    fn reject(&mut self) -> Action {
        let cfg = &self.plugin.config;
        let record = self.plugin.record();
        let now = now_ms();
        let names = cfg.endpoints.iter().map(|e| e.id.as_str());
        let retry_at = record.earliest_next_check(names).unwrap_or(now);
        let secs = retry_at.saturating_sub(now).div_ceil(1000).max(1);
        let body = json!({
            "type": "error",
            "error": {
                "type": "all_endpoints_parked",
                "message": format!("every upstream endpoint is in the failure queue; retry after {secs} s"),
            },
            "retry_after_s": secs,
        })
        .to_string();
        self.plugin.metrics.rejected.inc();
        debug!(
            "#{} all endpoints parked: rejected, retry after {secs} s",
            self.ctx
        );
        let secs = secs.to_string();
        self.answer(
            503,
            &[
                ("content-type", "application/json"),
                ("retry-after", secs.as_str()),
            ],
            Some(body.as_bytes()),
        )
    }

    /// Points the router at `idx`.
    fn route(&mut self, idx: EndpointIdx) {
        let plugin = self.plugin.clone();
        let cfg = &plugin.config;
        let e = cfg.endpoint(idx);
        self.checked(
            "setting the route header",
            abi::set_header(
                MapType::HttpRequestHeaders,
                &cfg.route_header,
                Some(&e.cluster),
            ),
        );
        for (name, value) in &e.request_headers {
            self.checked(
                "setting an endpoint header",
                abi::set_header(MapType::HttpRequestHeaders, name, Some(value.expose())),
            );
        }
        // Envoy ≥ 1.2x: re-run route matching now that the header is set; older Envoy clears the
        // route cache itself for ABI 0.2.1 modules and answers NOT_FOUND here.
        match hostcalls::call_foreign_function("clear_route_cache", None) {
            Ok(_) | Err(proxy_wasm::types::Status::NotFound) => {}
            Err(status) => warn!(
                "#{} clear_route_cache: the host answered {}",
                self.ctx,
                abi::HostStatus::from(status)
            ),
        }
        self.attempts.attempted(idx);
        self.routed = Some(idx);
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
        if self.headers_unreplayable {
            return Some(NotReplayable::HeadersIncomplete);
        }
        self.body.not_replayable()
    }

    /// Starts the next attempt if the request can be replayed and attempts remain.
    fn try_next(&mut self) -> bool {
        let plugin = self.plugin.clone();
        let cfg = &plugin.config;
        if let Some(why) = self.not_replayable() {
            debug!("#{} not replayed: {}", self.ctx, why.as_str());
            return false;
        }
        while self.attempts.may_attempt(cfg.failover.max_attempts) {
            let record = self.plugin.record();
            let excluded = self.attempts.excluded();
            let (idx, trial_until) =
                match select::choose(cfg, &record, &excluded, self.next_random()) {
                    Choice::Endpoint(idx) => (idx, None),
                    Choice::Trial(idx) => {
                        let until = now_ms().saturating_add(cfg.failover.attempt_timeout_ms);
                        if !self.plugin.claim_trial(idx, until) {
                            return false;
                        }
                        (idx, Some(until))
                    }
                    Choice::Reject { .. } | Choice::Exhausted => return false,
                };
            match self.dispatch(idx) {
                Ok(pending) => {
                    if let Some(until) = trial_until {
                        self.trials.push((idx, until));
                    }
                    self.attempts.attempted(idx);
                    self.pending = Some(pending);
                    self.plugin.metrics.failovers.inc();
                    debug!(
                        "#{} failing over to \"{}\" (attempt {})",
                        self.ctx,
                        cfg.endpoint(idx).id,
                        self.attempts.tried().len()
                    );
                    return true;
                }
                Err(status) => {
                    // The host would not even send it: our error, never the endpoint's.
                    error!(
                        "#{} the host refused to send the replay to \"{}\" (cluster {}): {status}; not counted against the endpoint",
                        self.ctx,
                        cfg.endpoint(idx).id,
                        cfg.endpoint(idx).cluster
                    );
                    if let Some(until) = trial_until {
                        self.plugin.release_trial(idx, until);
                    }
                    self.attempts.refused(idx);
                }
            }
        }
        false
    }

    fn dispatch(&self, idx: EndpointIdx) -> Result<Pending, abi::HostStatus> {
        let cfg = &self.plugin.config;
        let Some(replay) = &self.replay else {
            return Err(abi::HostStatus(
                proxy_wasm::types::Status::BadArgument as u32,
            ));
        };
        let text = replay.headers_for(cfg, idx);
        let headers: Vec<(&str, &str)> =
            text.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let body = self.body.bytes();
        let streamed = replay.accepts_event_stream() || attempt::body_asks_for_stream(body);
        let timeout_ms = attempt::replay_timeout_ms(cfg, streamed);
        let token = hostcalls::dispatch_http_call(
            &cfg.endpoint(idx).cluster,
            headers,
            (!body.is_empty()).then_some(body),
            vec![],
            Duration::from_millis(timeout_ms),
        )?;
        Ok(Pending {
            token,
            idx,
            sent_ms: now_ms(),
            timeout_ms,
        })
    }

    fn is_trial(&self, idx: EndpointIdx) -> bool {
        self.trials.iter().any(|(i, _)| *i == idx)
    }

    fn tried_list(&self) -> String {
        self.attempts.tried_list(&self.plugin.config)
    }

    /// Replaces the response with a replayed attempt's answer.
    fn respond(&mut self, status: u16, headers: &[(String, Vec<u8>)], body: &[u8]) {
        let tried = self.tried_list();
        let text: Vec<(String, String)> = headers
            .iter()
            .filter(|(n, _)| {
                let n = n.to_ascii_lowercase();
                !n.starts_with(':') && n != "content-length" && !HOP_BY_HOP.contains(&n.as_str())
            })
            .map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        let mut out: Vec<(&str, &str)> =
            text.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        out.push((
            self.plugin.config.failover.tried_header.as_str(),
            tried.as_str(),
        ));
        self.answered = true;
        self.checked(
            "replacing the answer",
            abi::send_response(u32::from(status), &out, Some(body)),
        );
    }

    /// Every attempt failed: the client gets the last real upstream answer, unchanged but for
    /// the tried header.
    fn deliver_last(&mut self) {
        match std::mem::replace(&mut self.last, LastAnswer::Original) {
            LastAnswer::Call {
                status,
                headers,
                body,
            } => self.respond(status, &headers, &body),
            LastAnswer::Original => {
                // The original response is paused: its headers are still ours.
                let tried = self.tried_list();
                self.set_response_header(&self.plugin.config.failover.tried_header, &tried);
                self.checked(
                    "resuming the original answer",
                    abi::resume(StreamType::HttpResponse),
                );
            }
        }
        info!(
            "#{} every attempt failed (tried: {})",
            self.ctx,
            self.tried_list()
        );
    }

    /// A failed answer goes to the client: say which endpoints were tried and, if the request
    /// could not be replayed at all, why (the response headers are ours in this callback).
    fn mark_unreplayed_answer(&self) {
        if self.attempts.tried().len() > 1 || self.plugin.config.failover.max_attempts > 1 {
            self.set_response_header(
                &self.plugin.config.failover.tried_header,
                &self.tried_list(),
            );
        }
        if let Some(why) = self.not_replayable() {
            self.set_response_header(NOT_REPLAYED_HEADER, why.as_str());
        }
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

    /// A healthy answer from the router's endpoint starts streaming to the client.
    fn start_streaming(&mut self, idx: EndpointIdx, end_of_stream: bool, sse: bool) {
        let trial = self.is_trial(idx);
        if trial && !end_of_stream {
            // A trial recovers the endpoint only if its answer arrives whole.
            self.deferred_recovery = Some(idx);
        } else {
            self.plugin.record_success(self.ctx, idx, trial);
        }
        self.streaming_from = Some(idx);
        self.response_complete = end_of_stream;
        self.sse = sse;
    }

    /// The router's answer failed (at its headers, or before its first event): record it and
    /// replay elsewhere if possible. Pause while a replay runs; else the answer goes on.
    fn original_failed(
        &mut self,
        idx: EndpointIdx,
        reason: &Reason,
        deadline: Option<u64>,
    ) -> Action {
        self.fail(idx, reason, deadline);
        if self.try_next() {
            return Action::Pause;
        }
        self.mark_unreplayed_answer();
        Action::Continue
    }

    /// Takes the request bytes the host has not handed over yet. A held body (the filter
    /// paused) accumulates in the host, so new bytes start at what is already kept; a
    /// streamed body comes a chunk at a time.
    fn keep_request_bytes(&mut self, body_size: usize) {
        let max = self.plugin.config.failover.max_request_bytes;
        let (start, len) = if self.holding_request {
            let kept = self.body.len();
            (kept, body_size.saturating_sub(kept))
        } else {
            (0, body_size)
        };
        if !self.body.fits(len, max) {
            self.body.give_up();
            return;
        }
        if len == 0 {
            return;
        }
        match abi::body(BufferType::HttpRequestBody, start, len) {
            Ok(bytes) => self.body.keep(&bytes),
            Err(status) => {
                warn!(
                    "#{} reading the request body: the host answered {status}; not replayable",
                    self.ctx
                );
                self.body.give_up();
            }
        }
    }

    /// An event stream held before its first event got more data: judge it.
    fn judge_held_stream(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(idx) = self.streaming_from else {
            self.held = None;
            return Action::Continue;
        };
        let cfg = &self.plugin.config.failover;
        let (max_bytes, timeout) = (cfg.first_event_max_bytes, cfg.first_event_timeout_ms);
        let Some(held) = self.held.as_mut() else {
            return Action::Continue;
        };
        let start = held.seen.len();
        if body_size > start {
            let want = (body_size - start).min(max_bytes.saturating_sub(start));
            if want > 0 {
                match abi::body(BufferType::HttpResponseBody, start, want) {
                    Ok(bytes) => held.seen.extend_from_slice(&bytes),
                    Err(status) => warn!(
                        "#{} reading a held event stream: the host answered {status}",
                        self.ctx
                    ),
                }
            }
        }
        let verdict = attempt::first_event(&held.seen);
        let waited = now_ms().saturating_sub(held.since_ms);
        let give_up = held.seen.len() >= max_bytes || waited >= timeout;
        match verdict {
            FirstEvent::Good => {
                self.release_held_stream(idx, end_of_stream);
                Action::Continue
            }
            FirstEvent::Pending if !end_of_stream && !give_up => Action::Pause,
            FirstEvent::Pending if !end_of_stream => {
                debug!(
                    "#{} no first event after {waited} ms / {} bytes: the stream goes on unjudged",
                    self.ctx,
                    held.seen.len()
                );
                self.release_held_stream(idx, end_of_stream);
                Action::Continue
            }
            FirstEvent::Error | FirstEvent::Pending => {
                let why = if verdict == FirstEvent::Error {
                    "error as the first event of a streamed answer"
                } else {
                    "streamed answer ended before its first event"
                };
                self.held = None;
                self.streaming_from = None;
                self.original_failed(idx, &Reason::Stream(why.into()), None)
            }
        }
    }

    /// The held stream's first event is fine: from here it streams as any healthy answer.
    fn release_held_stream(&mut self, idx: EndpointIdx, end_of_stream: bool) {
        let seen = self.held.take().map(|h| h.seen).unwrap_or_default();
        self.start_streaming(idx, end_of_stream, true);
        if end_of_stream {
            self.finish_response();
        }
        self.watch_sse(idx, seen);
    }

    /// Watches a streamed answer for `event: error` after the client began to see it.
    fn watch_sse(&mut self, idx: EndpointIdx, chunk: Vec<u8>) {
        let mut window = std::mem::take(&mut self.sse_tail);
        window.extend_from_slice(&chunk);
        if crate::classify::sse_error_event(&window) {
            // The answer already went out; nothing is replayed, but the endpoint failed.
            self.sse = false;
            self.deferred_recovery = None;
            self.fail(
                idx,
                &Reason::Stream("error event in a streamed answer".into()),
                None,
            );
        } else {
            // Keep the unfinished last line for the next chunk; a long one cannot be an
            // `event:` line, so only a marker that we are mid-line is kept.
            let from = window
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |p| p + 1);
            let partial = window.split_off(from);
            self.sse_tail = if partial.len() <= SSE_TAIL {
                partial
            } else {
                b"x".to_vec()
            };
        }
    }

    fn finish_response(&mut self) {
        self.response_complete = true;
        if let Some(idx) = self.deferred_recovery.take() {
            self.plugin.record_success(self.ctx, idx, true);
        }
    }
}

impl Context for FailoverHttp {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Some(pending) = self.pending else {
            return;
        };
        if pending.token != token {
            return;
        }
        self.pending = None;
        let idx = pending.idx;
        if num_headers == 0 {
            let elapsed = now_ms().saturating_sub(pending.sent_ms);
            if attempt::budget_ran_out(elapsed, pending.timeout_ms) {
                // Our budget, not the endpoint's fault: a hung endpoint is parked by the
                // router's own timeout on normal traffic.
                warn!(
                    "#{} the replay to \"{}\" got no answer within the replay budget ({} ms); not counted against it",
                    self.ctx,
                    self.plugin.config.endpoint(idx).id,
                    pending.timeout_ms
                );
            } else {
                self.fail(idx, &Reason::NoResponse, None);
            }
        } else {
            let headers = abi::headers(MapType::HttpCallResponseHeaders).unwrap_or_default();
            let body =
                abi::body(BufferType::HttpCallResponseBody, 0, body_size).unwrap_or_default();
            let status = headers
                .iter()
                .find(|(n, _)| n == ":status")
                .and_then(|(_, v)| decode_status(v));
            let obs = Observation {
                status,
                flags: None,
                code_details: None,
            };
            match classify(&self.plugin.config.failure, &obs) {
                Verdict::Healthy => {
                    let trial = self.is_trial(idx);
                    self.plugin.record_success(self.ctx, idx, trial);
                    self.respond(status.unwrap_or(200), &headers, &body);
                    return;
                }
                Verdict::Neutral => {
                    self.respond(status.unwrap_or(200), &headers, &body);
                    return;
                }
                Verdict::Failed(reason) => {
                    let deadline = status.and_then(|s| {
                        retry_after::deadline_ms(
                            s,
                            &Self::response_headers_text(&headers),
                            now_ms(),
                        )
                    });
                    self.fail(idx, &reason, deadline);
                    if let Some(status) = status {
                        self.last = LastAnswer::Call {
                            status,
                            headers,
                            body,
                        };
                    }
                }
            }
        }
        if !self.try_next() {
            self.deliver_last();
        }
    }
}

impl HttpContext for FailoverHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
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
            if status::is_status_path(cfg, &String::from_utf8_lossy(path)) {
                let method = value(":method").unwrap_or_default().to_vec();
                return self.answer_status_page(&method);
            }
        }
        if cfg.failover.max_attempts > 1 {
            self.replay = ReplayRequest::capture(&all, cfg);
            self.headers_unreplayable = self.replay.is_none();
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

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
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

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.body.complete();
        self.holding_request = false;
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if self.answered {
            return Action::Continue;
        }
        let Some(idx) = self.routed else {
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

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
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

    fn on_log(&mut self) {
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

impl FailoverHttp {
    /// A healthy answer that never reached its end: who cut it? Only an upstream cut counts
    /// against the endpoint (a client hanging up does not).
    fn record_cut(&mut self) {
        let Some(idx) = self.streaming_from else {
            return;
        };
        if self.response_complete {
            return;
        }
        let flags = property(&["response", "flags"])
            .and_then(|b| decode_u64_le(&b))
            .map(ResponseFlags::from_bits)
            .unwrap_or_default();
        if flags.contains_any(UPSTREAM_CUT_FLAGS) {
            let details = property_string(&["response", "code_details"]).unwrap_or_default();
            self.fail(
                idx,
                &Reason::Stream(format!("answer cut after headers ({flags}) {details}")),
                None,
            );
        }
    }
}

/// Longest unfinished line kept between chunks (an `event: error` line is far shorter).
const SSE_TAIL: usize = 64;

/// Envoy flags meaning the upstream side ended a started answer: UT, UR, UC, SI, UMSDR, UPE.
const UPSTREAM_CUT_FLAGS: u64 = 0x4 | 0x10 | 0x40 | 0x10000 | 0x80000 | 0x800000;
