//! Failing over inside the request: the next attempt, the replay call, and which answer the
//! client finally gets.

use std::time::Duration;

use log::{debug, error, info, warn};

use super::{FailoverHttp, LastAnswer, Pending, NOT_REPLAYED_HEADER};
use crate::attempt;
use crate::classify::{classify, decode_status, Observation, Reason, Verdict};
use crate::config::{EndpointIdx, HOP_BY_HOP};
use crate::glue::abi::{self, Action, BufferType, MapType, StreamType};
use crate::glue::host::{dispatch_http_call, now_ms};
use crate::retry_after;
use crate::select::{self, Choice};

impl FailoverHttp {
    /// Starts the next attempt if the request can be replayed and attempts remain.
    pub(super) fn try_next(&mut self) -> bool {
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

    pub(super) fn dispatch(&self, idx: EndpointIdx) -> Result<Pending, abi::HostStatus> {
        let cfg = &self.plugin.config;
        let Some(replay) = &self.replay else {
            return Err(abi::BAD_ARGUMENT);
        };
        let text = replay.headers_for(cfg, idx);
        let headers: Vec<(&str, &str)> =
            text.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let body = self.body.bytes();
        let streamed = replay.accepts_event_stream() || attempt::body_asks_for_stream(&body);
        let timeout_ms = attempt::replay_timeout_ms(cfg, streamed);
        let token = dispatch_http_call(
            self.ctx,
            &cfg.endpoint(idx).cluster,
            &headers,
            (!body.is_empty()).then_some(&*body),
            Duration::from_millis(timeout_ms),
        )?;
        Ok(Pending {
            token,
            idx,
            sent_ms: now_ms(),
            timeout_ms,
        })
    }

    /// Replaces the response with a replayed attempt's answer.
    pub(super) fn respond(&mut self, status: u16, headers: &[(String, Vec<u8>)], body: &[u8]) {
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
    pub(super) fn deliver_last(&mut self) {
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
    pub(super) fn mark_unreplayed_answer(&self) {
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

    /// The router's answer failed (at its headers, or before its first event): record it and
    /// replay elsewhere if possible. Pause while a replay runs; else the answer goes on.
    pub(super) fn original_failed(
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

    /// A replay's answer arrived: deliver a success, or record the failure and go on.
    pub(super) fn call_answered(&mut self, pending: Pending, num_headers: usize, body_size: usize) {
        let idx = pending.idx;
        let (headers, body) = if num_headers == 0 {
            (Vec::new(), Vec::new())
        } else {
            (
                abi::headers(MapType::HttpCallResponseHeaders).unwrap_or_default(),
                abi::body(BufferType::HttpCallResponseBody, 0, body_size).unwrap_or_default(),
            )
        };
        let status = headers
            .iter()
            .find(|(n, _)| n == ":status")
            .and_then(|(_, v)| decode_status(v));
        let elapsed = now_ms().saturating_sub(pending.sent_ms);
        if attempt::ours_timed_out(status, elapsed, pending.timeout_ms) {
            // Our budget, not the endpoint's fault (a hung endpoint is parked by the route
            // timeout on normal traffic), and not an answer the client should get instead.
            warn!(
                "#{} the replay to \"{}\" got no answer within the replay budget ({} ms); not counted against it",
                self.ctx,
                self.plugin.config.endpoint(idx).id,
                pending.timeout_ms
            );
        } else if num_headers == 0 {
            self.fail(idx, &Reason::NoResponse, None);
        } else {
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
