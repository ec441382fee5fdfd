//! The per-request failover policy, without the ABI: what a replay needs (taken while the
//! request callbacks own the request), which endpoints a request really attempted, which failure
//! it already recorded, whether its body can be replayed, and how long a replay may take.
//!
//! Envoy hands a filter the request header map only while `on_http_request_headers` runs (or
//! while the filter keeps it paused): `Context::decodeHeaders` drops it as soon as the callback
//! returns Continue. Everything a later replay needs is therefore copied here, at request
//! headers, into a [`ReplayRequest`] — never read back in the response phase.

use crate::config::{Config, EndpointIdx, HOP_BY_HOP};

/// A request header list as the host gives it: names (lowercase in Envoy) and raw values.
pub type HeaderList = Vec<(String, Vec<u8>)>;

/// What a replay of this request sends, captured at request headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayRequest {
    /// `:method`, `:path`, `:authority` (and `:scheme`) first, then the headers to forward.
    headers: HeaderList,
}

/// Why a request cannot be replayed; the value of the `x-failover-not-replayed` answer header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReplayable {
    /// The body was larger than `failover.max_request_bytes` and streamed upstream unkept.
    BodyOverLimit,
    /// The answer came before the filter had the whole body.
    BodyIncomplete,
    /// The request lacked `:method`, `:path` or `:authority`, which a call needs.
    HeadersIncomplete,
}

impl NotReplayable {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            NotReplayable::BodyOverLimit => "request-body-over-limit",
            NotReplayable::BodyIncomplete => "request-body-incomplete",
            NotReplayable::HeadersIncomplete => "request-headers-incomplete",
        }
    }
}

/// The pseudo-headers Envoy's `httpCall` requires (BadArgument without any of them).
const REQUIRED: [&str; 3] = [":method", ":path", ":authority"];

impl ReplayRequest {
    /// Copies what a replay forwards from the client's request headers: everything but the
    /// route header (a client must never choose the upstream), headers some endpoint sets
    /// itself (one endpoint's credentials must never reach another), `content-length` (the
    /// call sets its own) and hop-by-hop headers, including those `connection` nominates.
    /// `None` when a pseudo-header a call needs is missing.
    pub fn capture(all: &[(String, Vec<u8>)], config: &Config) -> Option<Self> {
        let present = |name: &str| all.iter().any(|(n, _)| n == name);
        if !REQUIRED.iter().all(|p| present(p)) {
            return None;
        }
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
        let headers = all
            .iter()
            .filter(|(n, _)| {
                let n = n.to_ascii_lowercase();
                n != config.route_header
                    && n != "content-length"
                    && !HOP_BY_HOP.contains(&n.as_str())
                    && !nominated.contains(&n)
                    && !config
                        .endpoints
                        .iter()
                        .any(|e| e.request_headers.iter().any(|(h, _)| *h == n))
            })
            .cloned()
            .collect();
        Some(Self { headers })
    }

    /// The header list of a replay to `idx`: the captured headers, its `authority` in place of
    /// the client's when the endpoint sets one, then the endpoint's own headers.
    pub fn headers_for(&self, config: &Config, idx: EndpointIdx) -> Vec<(String, String)> {
        let e = config.endpoint(idx);
        let mut out: Vec<(String, String)> = self
            .headers
            .iter()
            .filter(|(n, _)| !(e.authority.is_some() && n == ":authority"))
            .map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        if let Some(a) = &e.authority {
            out.push((":authority".into(), a.clone()));
        }
        out.extend(
            e.request_headers
                .iter()
                .map(|(n, v)| (n.clone(), v.expose().to_string())),
        );
        out
    }

    /// True when the client asked for a streamed answer (`accept: text/event-stream`); see
    /// [`body_asks_for_stream`] for the body's `"stream": true`.
    pub fn accepts_event_stream(&self) -> bool {
        self.headers.iter().any(|(n, v)| {
            n.eq_ignore_ascii_case("accept")
                && String::from_utf8_lossy(v)
                    .to_ascii_lowercase()
                    .contains("text/event-stream")
        })
    }
}

/// True when a JSON request body asks for a streamed answer (`"stream": true` at the top, as
/// the Anthropic and OpenAI APIs take it). Anything else — not JSON, no such key — is false.
pub fn body_asks_for_stream(body: &[u8]) -> bool {
    if body.is_empty() || !body.trim_ascii_start().starts_with(b"{") {
        return false;
    }
    crate::json::parse(body)
        .ok()
        .and_then(|v| v.get("stream").and_then(crate::json::Value::as_bool))
        .unwrap_or(false)
}

/// Whether the body copy is still being kept.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
enum BodyCopy {
    /// Still arriving; what came so far.
    #[default]
    Arriving,
    /// Over `max_request_bytes`: streamed, not kept, never replayed.
    OverLimit,
}

/// The request's body copy and whether it is complete.
///
/// Kept as the chunks the host handed over (each moved in, never copied again): most requests
/// are never replayed, so joining them is left to [`KeptBody::bytes`], which only a replay
/// calls. Appending to one growing `Vec` instead copied every byte once more, plus once per
/// doubling (bench/PROFILE.md, 1 MiB POSTs).
#[derive(Debug, Clone, Default)]
pub struct KeptBody {
    chunks: Vec<Vec<u8>>,
    len: usize,
    state: BodyCopy,
    complete: bool,
}

impl KeptBody {
    /// Bytes kept so far (the whole body once [`KeptBody::is_complete`]), joined: borrowed
    /// when they came in one chunk.
    pub fn bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        match self.chunks.as_slice() {
            [] => std::borrow::Cow::Borrowed(&[]),
            [one] => std::borrow::Cow::Borrowed(one),
            many => std::borrow::Cow::Owned(many.concat()),
        }
    }

    /// Length kept so far: the offset at which the next new bytes start in a host buffer that
    /// accumulates (a body held with StopIterationAndBuffer is handed over whole each time).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing has been kept.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Would keeping `more` bytes pass `max`? Then the body is given up: it streams unkept.
    pub fn fits(&self, more: usize, max: usize) -> bool {
        self.state != BodyCopy::OverLimit && self.len.saturating_add(more) <= max
    }

    /// Keeps `chunk` (the caller checked [`KeptBody::fits`]).
    pub fn keep(&mut self, chunk: Vec<u8>) {
        if self.state == BodyCopy::Arriving && !chunk.is_empty() {
            self.len += chunk.len();
            self.chunks.push(chunk);
        }
    }

    /// Gives the copy up: the body is over the limit.
    pub fn give_up(&mut self) {
        self.state = BodyCopy::OverLimit;
        self.chunks = Vec::new();
        self.len = 0;
    }

    /// The body reached its end (end of stream, or trailers).
    pub fn complete(&mut self) {
        self.complete = true;
    }

    /// True when the body reached its end.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Why a replay is impossible because of the body, if it is.
    pub fn not_replayable(&self) -> Option<NotReplayable> {
        if self.state == BodyCopy::OverLimit {
            Some(NotReplayable::BodyOverLimit)
        } else if !self.complete {
            Some(NotReplayable::BodyIncomplete)
        } else {
            None
        }
    }
}

/// Should the request be held at its headers until its body is complete? Only where the
/// config says Envoy lets body callbacks go on past a Pause at headers (`hold_headers`), only
/// when a replay is possible at all, and only for a body that can be kept: a declared
/// `content-length` over the limit streams at once (a chunked body is held and let go the
/// moment it passes the limit).
pub fn hold_request(config: &Config, end_of_stream: bool, content_length: Option<u64>) -> bool {
    let f = &config.failover;
    f.hold_headers
        && f.max_attempts > 1
        && !end_of_stream
        && content_length
            .is_none_or(|n| n > 0 && usize::try_from(n).is_ok_and(|n| n <= f.max_request_bytes))
}

/// The endpoints one request attempted, refused, and failed: the single place that decides
/// whether another attempt may start, where it may not go, and what the tried header says.
#[derive(Debug, Clone, Default)]
pub struct Attempts {
    /// Endpoints that really received this request (the router's choice, then each replay the
    /// host accepted), in order.
    tried: Vec<EndpointIdx>,
    /// Endpoints a replay could not even be sent to (the host refused the call): the filter's
    /// own error, never the endpoint's, never named in the tried header, not tried again.
    refused: Vec<EndpointIdx>,
    /// Endpoints whose failure this request already recorded (once each, whoever saw it).
    failed: Vec<EndpointIdx>,
}

impl Attempts {
    /// The request went to `idx` (the router's choice, or an accepted replay).
    pub fn attempted(&mut self, idx: EndpointIdx) {
        self.tried.push(idx);
    }

    /// The host refused to send a replay to `idx`.
    pub fn refused(&mut self, idx: EndpointIdx) {
        self.refused.push(idx);
    }

    /// The endpoints really attempted, in order.
    pub fn tried(&self) -> &[EndpointIdx] {
        &self.tried
    }

    /// Endpoints the next attempt must not go to: attempted or refused.
    pub fn excluded(&self) -> Vec<EndpointIdx> {
        let mut all = self.tried.clone();
        all.extend_from_slice(&self.refused);
        all
    }

    /// May another attempt start? Refused sends do not use up an attempt.
    pub fn may_attempt(&self, max_attempts: u32) -> bool {
        self.tried.len() < max_attempts as usize
    }

    /// Marks `idx` failed for this request; true only the first time, so a failure is recorded
    /// once per request however many places observe it.
    pub fn first_failure(&mut self, idx: EndpointIdx) -> bool {
        if self.failed.contains(&idx) {
            return false;
        }
        self.failed.push(idx);
        true
    }

    /// The tried header's value: endpoint names in the order attempted.
    pub fn tried_list(&self, config: &Config) -> String {
        self.tried
            .iter()
            .map(|i| config.endpoint(*i).id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The time budget of a replay: streamed requests get `stream_attempt_timeout_ms`.
pub fn replay_timeout_ms(config: &Config, streamed: bool) -> u64 {
    if streamed {
        config.failover.stream_attempt_timeout_ms
    } else {
        config.failover.attempt_timeout_ms
    }
}

/// Did a replay that got no answer at all end because *our* budget ran out (and not because
/// the endpoint refused or reset)? Then the endpoint is not blamed: a hung endpoint is parked
/// by the router's own timeout on normal traffic. A host fires the timer at the deadline, not
/// before; a small margin absorbs clock granularity.
pub fn budget_ran_out(elapsed_ms: u64, timeout_ms: u64) -> bool {
    let margin = (timeout_ms / 20).min(100);
    elapsed_ms.saturating_add(margin) >= timeout_ms
}

/// Did a replay's answer come from *our* budget running out rather than from the endpoint?
/// Envoy's HTTP call runs through a router of its own: when the call's timeout fires it
/// delivers that router's local reply, a 504 ("upstream request timeout"), or no headers at
/// all after a reset. Either, arriving at the deadline, is our timeout; an answer the endpoint
/// really sent arrives before it (or is not a 504).
pub fn ours_timed_out(status: Option<u16>, elapsed_ms: u64, timeout_ms: u64) -> bool {
    matches!(status, None | Some(504)) && budget_ran_out(elapsed_ms, timeout_ms)
}

/// Where an event stream stands before its first complete event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstEvent {
    /// No complete event yet.
    Pending,
    /// The first event is an error (`event: error`, or a data line holding a JSON error
    /// object): the stream failed before the client saw anything.
    Error,
    /// The first event is a real one: the stream is healthy so far.
    Good,
}

/// Judges the start of an event stream. An event ends at a blank line; a block of comments
/// only (`: ping`) dispatches nothing and is skipped.
pub fn first_event(buf: &[u8]) -> FirstEvent {
    let mut lines: Vec<&[u8]> = Vec::new();
    let mut rest = buf;
    loop {
        let Some(end) = rest.iter().position(|b| *b == b'\n' || *b == b'\r') else {
            return FirstEvent::Pending;
        };
        let line = &rest[..end];
        // A CR LF pair is one line ending.
        let skip = if rest[end] == b'\r' && rest.get(end + 1) == Some(&b'\n') {
            2
        } else {
            1
        };
        if rest[end] == b'\r' && end + 1 == rest.len() {
            // A CR at the very end may be half of a CR LF: wait for the next byte.
            return FirstEvent::Pending;
        }
        rest = &rest[end + skip..];
        if !line.is_empty() {
            lines.push(line);
            continue;
        }
        let fields: Vec<&&[u8]> = lines.iter().filter(|l| !l.starts_with(b":")).collect();
        if fields.is_empty() {
            lines.clear();
            continue;
        }
        let is_error = fields.iter().any(|l| {
            l.strip_prefix(b"event:")
                .is_some_and(|v| v.trim_ascii() == b"error")
                || l.strip_prefix(b"data:").is_some_and(data_is_error)
        });
        return if is_error {
            FirstEvent::Error
        } else {
            FirstEvent::Good
        };
    }
}

/// A data line holding a JSON error object: `{"type":"error",…}` (Anthropic) or
/// `{"error":{…}}` (OpenAI).
fn data_is_error(value: &[u8]) -> bool {
    let value = value.trim_ascii();
    if !value.starts_with(b"{") {
        return false;
    }
    crate::json::parse(value).is_ok_and(|v| {
        v.get("type").and_then(crate::json::Value::as_str) == Some("error")
            || v.get("error").is_some_and(crate::json::Value::is_object)
    })
}

#[cfg(test)]
mod tests;
