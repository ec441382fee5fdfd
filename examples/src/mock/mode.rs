//! What the mock answers ([`FailMode`]) and when it changes ([`Schedule`]), plus the text
//! syntax used by the `mock-upstream` CLI and its control API.
//!
//! Syntax (one mode):
//!
//! ```text
//! healthy                          200, small LLM-style JSON (SSE if the request asks "stream": true)
//! status:CODE[:name=value]...      CODE with those headers; `body=...` must come last and takes
//!                                  the rest verbatim, e.g. status:429:retry-after=3
//!                                  or status:200:body={"type":"error"}
//! error-body                       200 whose JSON body is {"type":"error",...}
//! refuse                           listener closed: connections are refused
//! reset                            read the request, then RST before any header
//! reset-mid-body                   headers + part of a chunked body, then RST
//! hang                             read the request, never answer
//! slow:BYTES_PER_SEC               healthy answer trickled at that rate
//! delay:DURATION                   healthy answer after DURATION (e.g. 2s, 500ms)
//! sse-cut:N                        SSE headers, N events, then the connection is cut
//! sse-error                        SSE stream that ends with an `event: error` frame
//! ```
//!
//! Schedules: a single mode (fixed), `flap:HEALTHY_FOR:FAILING_FOR:MODE` (starts healthy), or
//! `steps:DUR=MODE;DUR=MODE;...` (each mode held for its duration, the last one forever).
//! In `status:` parameters a segment without `=` is glued back to the previous value with `:`,
//! so HTTP dates (`retry-after=Wed, 21 Oct 2015 07:28:00 GMT`) survive the split.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Error from parsing a mode or schedule string; says which part was wrong and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid mode `{input}`: {reason}")]
pub struct ModeParseError {
    /// The (sub)string that could not be parsed.
    pub input: String,
    /// What was expected.
    pub reason: String,
}

fn perr(input: &str, reason: impl Into<String>) -> ModeParseError {
    ModeParseError {
        input: input.to_string(),
        reason: reason.into(),
    }
}

/// How the mock answers a request. Every variant is a fault (or non-fault) the failover filter
/// must tell apart, so the end-to-end tests can provoke each one deliberately.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailMode {
    /// 200 with a small JSON body shaped like an LLM messages answer, naming the mock and the
    /// request body length; an SSE stream when the request body has `"stream": true`.
    Healthy,
    /// A fixed answer: status, extra headers, body (an Anthropic-style error JSON if empty and
    /// the status is not 2xx). Used for 503, 429 + retry-after, 400, 422, 529, 200-with-error.
    Status {
        /// HTTP status code.
        code: u16,
        /// Extra response headers, in order.
        headers: Vec<(String, String)>,
        /// Response body; empty means "default error JSON for this code".
        body: String,
    },
    /// The listener is closed, so new connections get ECONNREFUSED; idle keep-alive
    /// connections are closed too. The same port is bound again when the mode changes.
    Refuse,
    /// Read the whole request, then close with RST (SO_LINGER 0) before sending any header.
    ResetBeforeHeaders,
    /// Send 200 headers and part of a chunked body, then RST.
    ResetMidBody,
    /// Read the request and never answer (until the client closes the connection).
    Hang,
    /// The healthy answer, trickled at this many body bytes per second (headers at once).
    Slow {
        /// Body bytes per second (at least 1).
        bytes_per_sec: u64,
    },
    /// The healthy answer, sent after this delay (headers included).
    Delay {
        /// How long to wait before answering.
        delay: Duration,
    },
    /// `text/event-stream` headers, `events` events, then the connection is cut (no final chunk).
    SseCut {
        /// Number of complete events sent before the cut.
        events: usize,
    },
    /// A complete SSE stream whose last frame is `event: error` (an overloaded error).
    SseError,
    /// `200 text/event-stream` whose first and only event is `event: error` — how Anthropic
    /// reports `overloaded_error` after the status already said 200.
    SseErrorFirst,
    /// A healthy SSE stream of `events` events, `gap` apart (an LLM answer as it is generated).
    SseSlow {
        /// Events in all (the first comes at once).
        events: usize,
        /// Time between two events.
        gap: Duration,
    },
}

impl FailMode {
    /// A `Status` mode with no extra headers and the default body.
    pub fn status(code: u16) -> Self {
        FailMode::Status {
            code,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    /// A 200 whose body is an error object: not a real success for an LLM client.
    pub fn error_body() -> Self {
        FailMode::Status {
            code: 200,
            headers: Vec::new(),
            body: ERROR_BODY_200.to_string(),
        }
    }

    /// Whether this mode means "the endpoint is down" in the sense the failover filter should
    /// park it for: connection faults, 5xx, 429, 529, 408, 2xx with an error body, broken or
    /// erroring streams. Client-caused 4xx (400, 404, 422, ...) and slow-but-correct answers are
    /// not down. The mock's `down_transitions` counter is built on this.
    pub fn is_down(&self) -> bool {
        match self {
            FailMode::Healthy
            | FailMode::Slow { .. }
            | FailMode::Delay { .. }
            | FailMode::SseSlow { .. } => false,
            FailMode::Status { code, body, .. } => {
                *code >= 500 || *code == 429 || *code == 408 || body_is_error(*code, body)
            }
            FailMode::Refuse
            | FailMode::ResetBeforeHeaders
            | FailMode::ResetMidBody
            | FailMode::Hang
            | FailMode::SseCut { .. }
            | FailMode::SseError
            | FailMode::SseErrorFirst => true,
        }
    }

    /// Whether an answer in this mode counts as a healthy answer in the mock's stats.
    pub fn answers_healthy(&self) -> bool {
        match self {
            FailMode::Healthy
            | FailMode::Slow { .. }
            | FailMode::Delay { .. }
            | FailMode::SseSlow { .. } => true,
            FailMode::Status { code, body, .. } => {
                (200..300).contains(code) && !body_is_error(*code, body)
            }
            _ => false,
        }
    }
}

/// Body of `error-body`: a 200 that an LLM client must not take as success.
pub const ERROR_BODY_200: &str =
    r#"{"type":"error","error":{"type":"api_error","message":"mock: error inside a 200"}}"#;

fn body_is_error(code: u16, body: &str) -> bool {
    if !(200..300).contains(&code) {
        return false;
    }
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(|t| t == "error"))
        .unwrap_or(false)
}

impl fmt::Display for FailMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailMode::Healthy => f.write_str("healthy"),
            FailMode::Status {
                code,
                headers,
                body,
            } => {
                write!(f, "status:{code}")?;
                for (k, v) in headers {
                    write!(f, ":{k}={v}")?;
                }
                if !body.is_empty() {
                    write!(f, ":body={body}")?;
                }
                Ok(())
            }
            FailMode::Refuse => f.write_str("refuse"),
            FailMode::ResetBeforeHeaders => f.write_str("reset"),
            FailMode::ResetMidBody => f.write_str("reset-mid-body"),
            FailMode::Hang => f.write_str("hang"),
            FailMode::Slow { bytes_per_sec } => write!(f, "slow:{bytes_per_sec}"),
            FailMode::Delay { delay } => write!(f, "delay:{}", fmt_duration(*delay)),
            FailMode::SseCut { events } => write!(f, "sse-cut:{events}"),
            FailMode::SseError => f.write_str("sse-error"),
            FailMode::SseErrorFirst => f.write_str("sse-error-first"),
            FailMode::SseSlow { events, gap } => {
                write!(f, "sse-slow:{events}:{}", fmt_duration(*gap))
            }
        }
    }
}

impl FromStr for FailMode {
    type Err = ModeParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (head, rest) = match s.split_once(':') {
            Some((h, r)) => (h, Some(r)),
            None => (s, None),
        };
        let no_arg = |m: FailMode| match rest {
            None => Ok(m),
            Some(_) => Err(perr(s, format!("`{head}` takes no argument"))),
        };
        match head.to_ascii_lowercase().as_str() {
            "healthy" | "ok" => no_arg(FailMode::Healthy),
            "error-body" => no_arg(FailMode::error_body()),
            "refuse" => no_arg(FailMode::Refuse),
            "reset" | "reset-before-headers" => no_arg(FailMode::ResetBeforeHeaders),
            "reset-mid-body" => no_arg(FailMode::ResetMidBody),
            "hang" => no_arg(FailMode::Hang),
            "sse-error" => no_arg(FailMode::SseError),
            "sse-error-first" => no_arg(FailMode::SseErrorFirst),
            "sse-slow" => {
                let arg = rest.ok_or_else(|| perr(s, "expected sse-slow:EVENTS:GAP"))?;
                let (events, gap) = arg.split_once(':').ok_or_else(|| {
                    perr(s, "expected sse-slow:EVENTS:GAP (e.g. sse-slow:50:20ms)")
                })?;
                let events: usize = events
                    .parse()
                    .map_err(|_| perr(s, "EVENTS must be a positive integer"))?;
                if events == 0 {
                    return Err(perr(s, "EVENTS must be at least 1"));
                }
                Ok(FailMode::SseSlow {
                    events,
                    gap: parse_duration(gap)?,
                })
            }
            "slow" => {
                let arg = rest.ok_or_else(|| perr(s, "expected slow:BYTES_PER_SEC"))?;
                let bytes_per_sec: u64 = arg
                    .parse()
                    .map_err(|_| perr(s, "BYTES_PER_SEC must be a positive integer"))?;
                if bytes_per_sec == 0 {
                    return Err(perr(s, "BYTES_PER_SEC must be at least 1"));
                }
                Ok(FailMode::Slow { bytes_per_sec })
            }
            "delay" => {
                let arg = rest.ok_or_else(|| perr(s, "expected delay:DURATION"))?;
                Ok(FailMode::Delay {
                    delay: parse_duration(arg)?,
                })
            }
            "sse-cut" => {
                let arg = rest.ok_or_else(|| perr(s, "expected sse-cut:EVENTS"))?;
                let events = arg
                    .parse()
                    .map_err(|_| perr(s, "EVENTS must be a non-negative integer"))?;
                Ok(FailMode::SseCut { events })
            }
            "status" => parse_status(s, rest.unwrap_or("")),
            other => Err(perr(
                s,
                format!(
                    "unknown mode `{other}` (expected healthy, status:CODE, error-body, refuse, \
                     reset, reset-mid-body, hang, slow:N, delay:D, sse-cut:N, sse-error, \
                     sse-error-first, sse-slow:N:GAP)"
                ),
            )),
        }
    }
}

fn parse_status(whole: &str, rest: &str) -> Result<FailMode, ModeParseError> {
    let (code_str, params) = match rest.split_once(':') {
        Some((c, p)) => (c, Some(p)),
        None => (rest, None),
    };
    let code: u16 = code_str
        .parse()
        .ok()
        .filter(|c| (100..=999).contains(c))
        .ok_or_else(|| perr(whole, "expected status:CODE with CODE in 100..=999"))?;
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut body = String::new();
    if let Some(mut params) = params {
        while !params.is_empty() {
            if let Some(b) = params.strip_prefix("body=") {
                body = b.to_string();
                break;
            }
            let (seg, next) = match params.split_once(':') {
                Some((a, b)) => (a, b),
                None => (params, ""),
            };
            params = next;
            match seg.split_once('=') {
                Some((k, v)) if !k.is_empty() => {
                    http::HeaderName::from_bytes(k.as_bytes())
                        .map_err(|_| perr(whole, format!("`{k}` is not a valid header name")))?;
                    headers.push((k.to_ascii_lowercase(), v.to_string()));
                }
                _ => match headers.last_mut() {
                    Some((_, v)) => {
                        v.push(':');
                        v.push_str(seg);
                    }
                    None => {
                        return Err(perr(
                            whole,
                            format!("`{seg}` is not `name=value` (or `body=...` last)"),
                        ))
                    }
                },
            }
        }
    }
    for (k, v) in &headers {
        http::HeaderValue::from_str(v)
            .map_err(|_| perr(whole, format!("value of `{k}` is not a valid header value")))?;
    }
    Ok(FailMode::Status {
        code,
        headers,
        body,
    })
}

/// Parse `3s`, `500ms`, `2m`, or a bare number of seconds (`3`, `0.5`).
pub fn parse_duration(s: &str) -> Result<Duration, ModeParseError> {
    let s = s.trim();
    let (num, unit) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .parse()
        .map_err(|_| perr(s, "expected a duration like 3s, 500ms, 2m"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(perr(s, "duration must be a non-negative number"));
    }
    Ok(Duration::from_secs_f64(v * unit))
}

/// Render a duration so that [`parse_duration`] reads it back.
pub fn fmt_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// When the mock changes mode. Timing starts when the schedule is installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// One mode until told otherwise.
    Fixed(FailMode),
    /// Healthy for `healthy_for`, then `failing` for `failing_for`, repeated forever.
    Flap {
        /// Length of each healthy period (the schedule starts with one).
        healthy_for: Duration,
        /// Length of each failing period.
        failing_for: Duration,
        /// The mode used while failing.
        failing: FailMode,
    },
    /// Each mode for its duration, in order; the last mode is kept forever.
    Steps(Vec<(Duration, FailMode)>),
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule::Fixed(FailMode::Healthy)
    }
}

impl From<FailMode> for Schedule {
    fn from(m: FailMode) -> Self {
        Schedule::Fixed(m)
    }
}

impl Schedule {
    /// The first mode this schedule applies.
    pub fn initial_mode(&self) -> FailMode {
        match self {
            Schedule::Fixed(m) => m.clone(),
            Schedule::Flap { .. } => FailMode::Healthy,
            Schedule::Steps(steps) => steps
                .first()
                .map(|(_, m)| m.clone())
                .unwrap_or(FailMode::Healthy),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Fixed(m) => write!(f, "{m}"),
            Schedule::Flap {
                healthy_for,
                failing_for,
                failing,
            } => write!(
                f,
                "flap:{}:{}:{failing}",
                fmt_duration(*healthy_for),
                fmt_duration(*failing_for)
            ),
            Schedule::Steps(steps) => {
                f.write_str("steps:")?;
                for (i, (d, m)) in steps.iter().enumerate() {
                    if i > 0 {
                        f.write_str(";")?;
                    }
                    write!(f, "{}={m}", fmt_duration(*d))?;
                }
                Ok(())
            }
        }
    }
}

impl FromStr for Schedule {
    type Err = ModeParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("flap:") {
            let mut parts = rest.splitn(3, ':');
            let (Some(h), Some(fl), Some(mode)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(perr(s, "expected flap:HEALTHY_FOR:FAILING_FOR:MODE"));
            };
            let healthy_for = parse_duration(h)?;
            let failing_for = parse_duration(fl)?;
            if healthy_for.is_zero() || failing_for.is_zero() {
                return Err(perr(s, "flap periods must be longer than 0"));
            }
            return Ok(Schedule::Flap {
                healthy_for,
                failing_for,
                failing: mode.parse()?,
            });
        }
        if let Some(rest) = s.strip_prefix("steps:") {
            let mut steps = Vec::new();
            for item in rest.split(';').filter(|i| !i.trim().is_empty()) {
                let (d, m) = item
                    .split_once('=')
                    .ok_or_else(|| perr(item, "expected DURATION=MODE"))?;
                steps.push((parse_duration(d)?, m.parse()?));
            }
            if steps.is_empty() {
                return Err(perr(s, "steps: needs at least one DURATION=MODE"));
            }
            return Ok(Schedule::Steps(steps));
        }
        Ok(Schedule::Fixed(s.parse()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(s: &str) -> Schedule {
        let parsed: Schedule = s.parse().expect("parses");
        let again: Schedule = parsed.to_string().parse().expect("re-parses");
        assert_eq!(parsed, again, "display of {s} must parse back to the same");
        parsed
    }

    #[test]
    fn parses_every_mode() {
        assert_eq!(round_trip("healthy"), Schedule::Fixed(FailMode::Healthy));
        assert_eq!(round_trip("refuse"), Schedule::Fixed(FailMode::Refuse));
        assert_eq!(
            round_trip("reset"),
            Schedule::Fixed(FailMode::ResetBeforeHeaders)
        );
        assert_eq!(
            round_trip("reset-mid-body"),
            Schedule::Fixed(FailMode::ResetMidBody)
        );
        assert_eq!(round_trip("hang"), Schedule::Fixed(FailMode::Hang));
        assert_eq!(
            round_trip("slow:100"),
            Schedule::Fixed(FailMode::Slow { bytes_per_sec: 100 })
        );
        assert_eq!(
            round_trip("delay:250ms"),
            Schedule::Fixed(FailMode::Delay {
                delay: Duration::from_millis(250)
            })
        );
        assert_eq!(
            round_trip("sse-cut:2"),
            Schedule::Fixed(FailMode::SseCut { events: 2 })
        );
        assert_eq!(round_trip("sse-error"), Schedule::Fixed(FailMode::SseError));
        assert_eq!(
            round_trip("sse-error-first"),
            Schedule::Fixed(FailMode::SseErrorFirst)
        );
        assert_eq!(
            round_trip("sse-slow:50:20ms"),
            Schedule::Fixed(FailMode::SseSlow {
                events: 50,
                gap: Duration::from_millis(20)
            })
        );
        assert_eq!(
            round_trip("error-body"),
            Schedule::Fixed(FailMode::error_body())
        );
    }

    #[test]
    fn status_headers_and_body() {
        let s = round_trip("status:429:retry-after=3:x-ratelimit-reset-requests=2s");
        assert_eq!(
            s,
            Schedule::Fixed(FailMode::Status {
                code: 429,
                headers: vec![
                    ("retry-after".into(), "3".into()),
                    ("x-ratelimit-reset-requests".into(), "2s".into())
                ],
                body: String::new(),
            })
        );
        let s = round_trip(r#"status:200:x-a=1:body={"type":"error","a":"b=c:d"}"#);
        let Schedule::Fixed(FailMode::Status { headers, body, .. }) = s else {
            unreachable!("status parses as a fixed status schedule")
        };
        assert_eq!(headers, vec![("x-a".to_string(), "1".to_string())]);
        assert_eq!(body, r#"{"type":"error","a":"b=c:d"}"#);
    }

    #[test]
    fn http_date_survives_colons() {
        let m: FailMode = "status:503:retry-after=Wed, 21 Oct 2015 07:28:00 GMT"
            .parse()
            .expect("parses");
        let FailMode::Status { headers, .. } = m else {
            unreachable!("status mode")
        };
        assert_eq!(headers[0].1, "Wed, 21 Oct 2015 07:28:00 GMT");
    }

    #[test]
    fn schedules() {
        assert_eq!(
            round_trip("flap:3s:500ms:status:503"),
            Schedule::Flap {
                healthy_for: Duration::from_secs(3),
                failing_for: Duration::from_millis(500),
                failing: FailMode::status(503),
            }
        );
        assert_eq!(
            round_trip("steps:2s=status:429:retry-after=3;1s=healthy"),
            Schedule::Steps(vec![
                (
                    Duration::from_secs(2),
                    FailMode::Status {
                        code: 429,
                        headers: vec![("retry-after".into(), "3".into())],
                        body: String::new()
                    }
                ),
                (Duration::from_secs(1), FailMode::Healthy),
            ])
        );
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "",
            "nope",
            "status",
            "status:abc",
            "status:42",
            "status:503:novalue",
            "status:503:bad header=1",
            "slow",
            "slow:0",
            "slow:x",
            "sse-cut:-1",
            "hang:3",
            "flap:3s:status:503",
            "flap:0s:1s:refuse",
            "steps:",
            "steps:3s",
            "delay:-1s",
        ] {
            assert!(bad.parse::<Schedule>().is_err(), "`{bad}` must be rejected");
        }
    }

    #[test]
    fn down_classification() {
        assert!(!FailMode::Healthy.is_down());
        assert!(!FailMode::status(400).is_down());
        assert!(!FailMode::status(422).is_down());
        assert!(FailMode::status(429).is_down());
        assert!(FailMode::status(503).is_down());
        assert!(FailMode::status(529).is_down());
        assert!(FailMode::error_body().is_down());
        assert!(!FailMode::error_body().answers_healthy());
        assert!(FailMode::status(204).answers_healthy());
        assert!(FailMode::Refuse.is_down());
        assert!(FailMode::SseCut { events: 1 }.is_down());
    }
}
