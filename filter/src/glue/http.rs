//! The per-request context: choose the endpoint, keep a copy of the request for replay, judge
//! the answer, and fail over inside the request.
//!
//! ```text
//! request headers ─ status path? answer locally
//!                 ─ strip client route header, choose endpoint, set route header + its headers,
//!                   clear_route_cache, copy headers for replay
//! request body    ─ copy (≤ max_request_bytes), Continue (streams on unchanged)
//! response headers─ healthy → Continue      client error → Continue
//!                 ─ failure → record once; replayable and attempts left?
//!                      yes → dispatch_http_call to the next endpoint, Pause
//!                      no  → add tried header, Continue (the client gets this answer)
//! call response   ─ healthy/client error → send_http_response(that answer)
//!                 ─ failure → record once; next endpoint, or the last real answer
//! ```

use std::rc::Rc;
use std::time::Duration;

use log::{debug, info};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, Status};
use serde_json::json;

use super::host::{now_ms, property, property_string};
use super::plugin::Plugin;
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

/// One request.
pub struct FailoverHttp {
    ctx: u32,
    plugin: Rc<Plugin>,
    /// Endpoints this request went to, in order.
    tried: Vec<EndpointIdx>,
    /// Endpoints whose failure this request already recorded (once each).
    failed: Vec<EndpointIdx>,
    /// The endpoint the router sent the original request to.
    routed: Option<EndpointIdx>,
    /// Request headers for replay, endpoint-specific ones removed.
    replay_headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    body_complete: bool,
    body_too_large: bool,
    /// The replay in flight: (call token, endpoint).
    pending: Option<(u32, EndpointIdx)>,
    last: LastAnswer,
    /// The filter answered (status page, reject, or a replaced response).
    answered: bool,
    /// The endpoint whose healthy answer is streaming to the client (the router's original).
    streaming_from: Option<EndpointIdx>,
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
            tried: Vec::new(),
            failed: Vec::new(),
            routed: None,
            replay_headers: Vec::new(),
            body: Vec::new(),
            body_complete: false,
            body_too_large: false,
            pending: None,
            last: LastAnswer::Original,
            answered: false,
            streaming_from: None,
            sse: false,
            sse_tail: Vec::new(),
            response_complete: false,
            trials: Vec::new(),
            deferred_recovery: None,
        }
    }

    fn request_header(&self, name: &str) -> Option<String> {
        self.get_http_request_header_bytes(name)
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    fn next_random(&self) -> u64 {
        self.plugin.rng.borrow_mut().next_u64()
    }

    /// Local answer; the stream ends here.
    fn answer(&mut self, status: u32, headers: Vec<(&str, &str)>, body: Option<&[u8]>) -> Action {
        self.answered = true;
        let _ = hostcalls::send_http_response(status, headers, body);
        Action::Pause
    }

    fn answer_status_page(&mut self) -> Action {
        let cfg = &self.plugin.config;
        let source = property_string(&["source", "address"]);
        if !status::allowed(cfg, source.as_deref()) {
            // As if the path did not exist: no hint that there is something here.
            return self.answer(404, vec![], None);
        }
        let method = self.request_header(":method").unwrap_or_default();
        if method != "GET" && method != "HEAD" {
            return self.answer(405, vec![("allow", "GET, HEAD")], None);
        }
        let record = self.plugin.record();
        let doc = status::render(cfg, &record, now_ms()).to_string();
        self.answer(
            200,
            vec![
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
            vec![
                ("content-type", "application/json"),
                ("retry-after", secs.as_str()),
            ],
            Some(body.as_bytes()),
        )
    }

    /// Points the router at `idx`.
    fn route(&mut self, idx: EndpointIdx) {
        let e = self.plugin.config.endpoint(idx);
        let _ = hostcalls::set_map_value(
            proxy_wasm::types::MapType::HttpRequestHeaders,
            &self.plugin.config.route_header,
            Some(&e.cluster),
        );
        for (name, value) in &e.request_headers {
            let _ = hostcalls::set_map_value(
                proxy_wasm::types::MapType::HttpRequestHeaders,
                name,
                Some(value.expose()),
            );
        }
        // Envoy ≥ 1.2x: re-run route matching now that the header is set; older Envoy clears the
        // route cache itself for ABI 0.2.1 modules and answers NOT_FOUND here.
        let _ = hostcalls::call_foreign_function("clear_route_cache", None);
        self.tried.push(idx);
        self.routed = Some(idx);
    }

    /// Keeps the request headers for replay, minus what belongs to one endpoint or one hop.
    fn keep_headers_for_replay(&mut self) {
        let cfg = &self.plugin.config;
        let all = self.get_http_request_headers_bytes();
        let nominated: Vec<String> = all
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
            .flat_map(|(_, v)| {
                String::from_utf8_lossy(v)
                    .split(',')
                    .map(|t| t.trim().to_ascii_lowercase())
                    .collect::<Vec<_>>()
            })
            .collect();
        self.replay_headers = all
            .into_iter()
            .filter(|(n, _)| {
                let n = n.to_ascii_lowercase();
                n != cfg.route_header
                    && n != "content-length"
                    && !HOP_BY_HOP.contains(&n.as_str())
                    && !nominated.contains(&n)
                    && !cfg
                        .endpoints
                        .iter()
                        .any(|e| e.request_headers.iter().any(|(h, _)| *h == n))
            })
            .collect();
    }

    /// Records a failure of `idx`, once per request.
    fn fail(&mut self, idx: EndpointIdx, reason: &Reason, not_before_ms: Option<u64>) {
        if self.failed.contains(&idx) {
            return;
        }
        self.failed.push(idx);
        self.plugin
            .record_failure(self.ctx, idx, reason, not_before_ms);
    }

    /// Why this request cannot be replayed at all, as the value of [`NOT_REPLAYED_HEADER`]:
    /// its body went upstream unbuffered (over `failover.max_request_bytes`), or the answer
    /// came before the body was complete.
    fn not_replayable(&self) -> Option<&'static str> {
        if self.body_too_large {
            Some("request-body-over-limit")
        } else if !self.body_complete {
            Some("request-body-incomplete")
        } else {
            None
        }
    }

    /// Starts the next attempt if the request can be replayed and attempts remain.
    fn try_next(&mut self) -> bool {
        let plugin = self.plugin.clone();
        let cfg = &plugin.config;
        if let Some(why) = self.not_replayable() {
            debug!("#{} not replayed: {why}", self.ctx);
            return false;
        }
        if self.replay_headers.is_empty() && self.tried.len() < cfg.failover.max_attempts as usize {
            self.keep_headers_for_replay();
        }
        while self.tried.len() < cfg.failover.max_attempts as usize {
            let record = self.plugin.record();
            let idx = match select::choose(cfg, &record, &self.tried, self.next_random()) {
                Choice::Endpoint(idx) => idx,
                Choice::Trial(idx) => {
                    let until = now_ms().saturating_add(cfg.failover.attempt_timeout_ms);
                    if !self.plugin.claim_trial(idx, until) {
                        return false;
                    }
                    self.trials.push((idx, until));
                    idx
                }
                Choice::Reject { .. } | Choice::Exhausted => return false,
            };
            self.tried.push(idx);
            match self.dispatch(idx) {
                Ok(token) => {
                    self.pending = Some((token, idx));
                    self.plugin.metrics.failovers.inc();
                    debug!(
                        "#{} failing over to \"{}\" (attempt {})",
                        self.ctx,
                        cfg.endpoint(idx).id,
                        self.tried.len()
                    );
                    return true;
                }
                Err(status) => {
                    let reason = Reason::Stream(format!("replay could not be sent: {status:?}"));
                    self.fail(idx, &reason, None);
                }
            }
        }
        false
    }

    fn dispatch(&self, idx: EndpointIdx) -> Result<u32, Status> {
        let cfg = &self.plugin.config;
        let e = cfg.endpoint(idx);
        let text: Vec<(String, String)> = self
            .replay_headers
            .iter()
            .map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        let mut headers: Vec<(&str, &str)> = text
            .iter()
            .filter(|(n, _)| !(e.authority.is_some() && n == ":authority"))
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        if let Some(a) = &e.authority {
            headers.push((":authority", a));
        }
        headers.extend(
            e.request_headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.expose())),
        );
        let body = (!self.body.is_empty()).then_some(self.body.as_slice());
        self.dispatch_http_call(
            &e.cluster,
            headers,
            body,
            vec![],
            Duration::from_millis(cfg.failover.attempt_timeout_ms),
        )
    }

    fn is_trial(&self, idx: EndpointIdx) -> bool {
        self.trials.iter().any(|(i, _)| *i == idx)
    }

    fn tried_list(&self) -> String {
        self.tried
            .iter()
            .map(|i| self.plugin.config.endpoint(*i).id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
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
        let _ = hostcalls::send_http_response(u32::from(status), out, Some(body));
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
                let tried = self.tried_list();
                self.set_http_response_header(
                    &self.plugin.config.failover.tried_header,
                    Some(&tried),
                );
                self.resume_http_response();
            }
        }
        info!(
            "#{} every attempt failed (tried: {})",
            self.ctx,
            self.tried_list()
        );
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

impl Context for FailoverHttp {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Some((pending, idx)) = self.pending else {
            return;
        };
        if pending != token {
            return;
        }
        self.pending = None;
        if num_headers == 0 {
            self.fail(idx, &Reason::NoResponse, None);
        } else {
            let headers = self.get_http_call_response_headers_bytes();
            let body = self
                .get_http_call_response_body(0, body_size)
                .unwrap_or_default();
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
        let cfg = &self.plugin.config;
        if let Some(path) = self.request_header(":path") {
            if status::is_status_path(cfg, &path) {
                return self.answer_status_page();
            }
        }
        // A client must never choose the upstream: drop every copy of the route header.
        let _ = hostcalls::set_map_value(
            proxy_wasm::types::MapType::HttpRequestHeaders,
            &cfg.route_header,
            None,
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
        // The headers for a replay are copied only when a replay happens (the request header
        // map stays readable during the response): the success path pays nothing for them.
        self.body_complete = end_of_stream;
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.body_too_large && !self.body_complete {
            let max = self.plugin.config.failover.max_request_bytes;
            if self.body.len().saturating_add(body_size) > max {
                self.body_too_large = true;
                self.body = Vec::new();
            } else if let Some(chunk) = self.get_http_request_body(0, body_size) {
                self.body.extend_from_slice(&chunk);
            }
        }
        if end_of_stream {
            self.body_complete = true;
        }
        Action::Continue
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.body_complete = true;
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
            .get_http_response_header_bytes(":status")
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
                let trial = self.is_trial(idx);
                if trial && !end_of_stream {
                    // A trial recovers the endpoint only if its answer arrives whole.
                    self.deferred_recovery = Some(idx);
                } else {
                    self.plugin.record_success(self.ctx, idx, trial);
                }
                self.streaming_from = Some(idx);
                self.response_complete = end_of_stream;
                self.sse = self
                    .get_http_response_header_bytes("content-type")
                    .is_some_and(|v| is_event_stream(&v));
                Action::Continue
            }
            Verdict::Neutral => Action::Continue,
            Verdict::Failed(reason) => {
                let deadline = status.and_then(|s| {
                    let headers =
                        Self::response_headers_text(&self.get_http_response_headers_bytes());
                    retry_after::deadline_ms(s, &headers, now_ms())
                });
                self.fail(idx, &reason, deadline);
                if self.try_next() {
                    return Action::Pause;
                }
                if self.tried.len() > 1 || self.plugin.config.failover.max_attempts > 1 {
                    let tried = self.tried_list();
                    self.set_http_response_header(
                        &self.plugin.config.failover.tried_header,
                        Some(&tried),
                    );
                }
                if let Some(why) = self.not_replayable() {
                    self.set_http_response_header(NOT_REPLAYED_HEADER, Some(why));
                }
                Action::Continue
            }
        }
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.pending.is_some() {
            // The failed answer waits while a replay runs; it is replaced or resumed after.
            return Action::Pause;
        }
        if let (true, Some(idx)) = (self.sse, self.streaming_from) {
            if let Some(chunk) = self.get_http_response_body(0, body_size) {
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
        }
        if end_of_stream {
            self.response_complete = true;
            if let Some(idx) = self.deferred_recovery.take() {
                self.plugin.record_success(self.ctx, idx, true);
            }
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
