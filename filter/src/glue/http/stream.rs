//! The bodies: the request copy kept for replay (streamed or held), an event stream held until
//! its first event, `event: error` watching once it streams, and cuts seen at the end.

use log::{debug, warn};

use super::FailoverHttp;
use crate::attempt::{self, FirstEvent};
use crate::classify::{decode_u64_le, Reason, ResponseFlags};
use crate::config::EndpointIdx;
use crate::glue::abi::{self, Action, BufferType};
use crate::glue::host::{now_ms, property, property_string};

impl FailoverHttp {
    /// A healthy answer from the router's endpoint starts streaming to the client.
    pub(super) fn start_streaming(&mut self, idx: EndpointIdx, end_of_stream: bool, sse: bool) {
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

    /// Takes the request bytes the host has not handed over yet. A held body (the filter
    /// paused) accumulates in the host, so new bytes start at what is already kept; a
    /// streamed body comes a chunk at a time.
    pub(super) fn keep_request_bytes(&mut self, body_size: usize) {
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
            Ok(bytes) => self.body.keep(bytes),
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
    pub(super) fn judge_held_stream(&mut self, body_size: usize, end_of_stream: bool) -> Action {
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
    pub(super) fn release_held_stream(&mut self, idx: EndpointIdx, end_of_stream: bool) {
        let seen = self.held.take().map(|h| h.seen).unwrap_or_default();
        self.start_streaming(idx, end_of_stream, true);
        if end_of_stream {
            self.finish_response();
        }
        self.watch_sse(idx, seen);
    }

    /// Watches a streamed answer for `event: error` after the client began to see it.
    pub(super) fn watch_sse(&mut self, idx: EndpointIdx, chunk: Vec<u8>) {
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

    pub(super) fn finish_response(&mut self) {
        self.response_complete = true;
        if let Some(idx) = self.deferred_recovery.take() {
            self.plugin.record_success(self.ctx, idx, true);
        }
    }

    /// A healthy answer that never reached its end: who cut it? Only an upstream cut counts
    /// against the endpoint (a client hanging up does not).
    pub(super) fn record_cut(&mut self) {
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
