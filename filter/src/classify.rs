//! Is this answer an endpoint failure? Pure: it looks at the status, Envoy's response flags and
//! `response.code_details`, nothing else.
//!
//! Envoy turns upstream trouble into ordinary responses: a timeout is a local 504 with flag UT,
//! a refused connection a local 503 with UF, and so on. Those local replies count through their
//! flags; a status alone counts only when it really came from the upstream (`via_upstream`), so a
//! 503 that some other filter generated (no route, rate limit) never parks a healthy endpoint.

use std::fmt;

pub use crate::envoy::{decode_status, decode_u64_le, ResponseFlags};

/// What the filter could read about one answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observation {
    /// `:status`, if there was a response at all.
    pub status: Option<u16>,
    /// `response.flags`, if the host has them (Envoy streams; not `dispatch_http_call` answers).
    pub flags: Option<ResponseFlags>,
    /// `response.code_details`, e.g. `via_upstream`.
    pub code_details: Option<String>,
}

/// Why an endpoint is considered failed; shown in logs and the status endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// A configured failure status.
    Status {
        /// The status.
        code: u16,
        /// `response.code_details`, if known.
        details: Option<String>,
    },
    /// A local reply carrying a configured response flag.
    Flags {
        /// The flags that matched.
        flags: ResponseFlags,
        /// The local reply's status.
        code: Option<u16>,
        /// `response.code_details`, if known.
        details: Option<String>,
    },
    /// No response at all (the call failed, the stream was reset).
    NoResponse,
    /// A streamed answer was cut or carried an error event after headers went out.
    Stream(String),
    /// A verifier probe answered but not healthily.
    Probe(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Status { code, details } => {
                write!(f, "status {code}")?;
                if let Some(d) = details {
                    write!(f, " {d}")?;
                }
                Ok(())
            }
            Reason::Flags {
                flags,
                code,
                details,
            } => {
                write!(f, "flags {flags}")?;
                if let Some(c) = code {
                    write!(f, " status {c}")?;
                }
                if let Some(d) = details {
                    write!(f, " {d}")?;
                }
                Ok(())
            }
            Reason::NoResponse => f.write_str("no response (reset or connection failure)"),
            Reason::Stream(s) => write!(f, "stream: {s}"),
            Reason::Probe(s) => write!(f, "probe: {s}"),
        }
    }
}

/// The classification of one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// 1xx–3xx: the endpoint works.
    Healthy,
    /// A status outside the failure set that is not a success either (a client's 400, 404, 422):
    /// the endpoint answered correctly; nothing is recorded and nothing fails over.
    Neutral,
    /// The endpoint failed.
    Failed(Reason),
}

impl Verdict {
    /// True for [`Verdict::Failed`].
    pub fn is_failure(&self) -> bool {
        matches!(self, Verdict::Failed(_))
    }
}

/// True when `response.code_details` can change the verdict of an answer with this status and
/// these flags (or its reason): only a configured failure status or a matching flag looks at it.
/// The hot path reads that string property (a host call and a copy) only then; for every other
/// answer [`classify`] decides the same with `code_details: None`.
pub fn details_matter(
    policy: &crate::config::FailurePolicy,
    status: Option<u16>,
    flags: Option<ResponseFlags>,
) -> bool {
    let Some(code) = status else {
        return false;
    };
    flags.is_some_and(|f| !f.intersection(policy.response_flags).is_empty())
        || policy.statuses.contains(code)
}

/// Classifies `obs` under `policy`.
pub fn classify(policy: &crate::config::FailurePolicy, obs: &Observation) -> Verdict {
    let Some(code) = obs.status else {
        return Verdict::Failed(Reason::NoResponse);
    };
    let via_upstream = obs
        .code_details
        .as_deref()
        .is_none_or(|d| d == "via_upstream");
    if let Some(flags) = obs.flags {
        let hit = flags.intersection(policy.response_flags);
        if !hit.is_empty() {
            return Verdict::Failed(Reason::Flags {
                flags: hit,
                code: Some(code),
                details: obs.code_details.clone(),
            });
        }
    }
    if via_upstream && policy.statuses.contains(code) {
        return Verdict::Failed(Reason::Status {
            code,
            details: obs.code_details.clone(),
        });
    }
    if code < 400 {
        Verdict::Healthy
    } else {
        Verdict::Neutral
    }
}

/// True when a `content-type` value names `text/event-stream` (any case, any parameters):
/// the answers whose body may carry an `event: error` frame. Compared in place, no copy.
pub fn is_event_stream(content_type: &[u8]) -> bool {
    let media = content_type
        .split(|b| *b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    media.eq_ignore_ascii_case(b"text/event-stream")
}

/// True when `window` (whole lines of a `text/event-stream` body, possibly ending mid-line) has
/// an `event: error` line — how LLM APIs report a failure after a 200 went out.
pub fn sse_error_event(window: &[u8]) -> bool {
    window.split(|b| *b == b'\n').any(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        line.strip_prefix(b"event:")
            .is_some_and(|rest| rest.trim_ascii() == b"error")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn policy() -> crate::config::FailurePolicy {
        Config::parse(br#"{"endpoints":[{"name":"a","cluster":"ca"}]}"#, &|_| None)
            .unwrap()
            .failure
    }

    fn obs(status: Option<u16>, flags: u64, details: &str) -> Observation {
        Observation {
            status,
            flags: Some(ResponseFlags::from_bits(flags)),
            code_details: Some(details.to_string()),
        }
    }

    #[test]
    fn upstream_5xx_and_429_fail() {
        let p = policy();
        for code in [500, 502, 503, 504, 529, 429] {
            assert!(
                classify(&p, &obs(Some(code), 0, "via_upstream")).is_failure(),
                "{code}"
            );
        }
    }

    #[test]
    fn client_errors_are_neutral_and_2xx_healthy() {
        let p = policy();
        for code in [400, 401, 403, 404, 413, 422] {
            assert_eq!(
                classify(&p, &obs(Some(code), 0, "via_upstream")),
                Verdict::Neutral,
                "{code}"
            );
        }
        assert_eq!(
            classify(&p, &obs(Some(200), 0, "via_upstream")),
            Verdict::Healthy
        );
        assert_eq!(
            classify(&p, &obs(Some(304), 0, "via_upstream")),
            Verdict::Healthy
        );
    }

    /// 401/403 mean "this endpoint's key is bad" only for some deployments: they park when
    /// listed in `failure.statuses`, and the other client errors still never do.
    #[test]
    fn auth_errors_park_only_when_configured() {
        let p = Config::parse(
            br#"{"endpoints":[{"name":"a","cluster":"ca"}],
                 "failure":{"statuses":["5xx",429,401,403]}}"#,
            &|_| None,
        )
        .unwrap()
        .failure;
        for code in [401, 403] {
            assert!(
                classify(&p, &obs(Some(code), 0, "via_upstream")).is_failure(),
                "{code}"
            );
        }
        for code in [400, 404, 413, 422] {
            assert_eq!(
                classify(&p, &obs(Some(code), 0, "via_upstream")),
                Verdict::Neutral,
                "{code}"
            );
        }
    }

    #[test]
    fn local_replies_count_through_flags_only() {
        let p = policy();
        // connect failure: local 503 UF
        let v = classify(
            &p,
            &obs(
                Some(503),
                0x20,
                "upstream_reset_before_response_started{connection_failure}",
            ),
        );
        assert!(matches!(v, Verdict::Failed(Reason::Flags { .. })), "{v:?}");
        // timeout: local 504 UT
        assert!(classify(&p, &obs(Some(504), 0x4, "upstream_response_timeout")).is_failure());
        // retry limit on top of a reset
        assert!(classify(&p, &obs(Some(503), 0x8010, "x")).is_failure());
        // no healthy upstream host: local 503 UH
        assert!(classify(&p, &obs(Some(503), 0x2, "no_healthy_upstream")).is_failure());
        // upstream connection termination: local 503 UC
        assert!(classify(
            &p,
            &obs(
                Some(503),
                0x40,
                "upstream_reset_before_response_started{connection_termination}"
            )
        )
        .is_failure());
        // each of the six flag bits alone, whatever the status (the bits, not the code, decide)
        for bit in [0x2, 0x4, 0x10, 0x20, 0x40, 0x8000] {
            assert!(
                classify(&p, &obs(Some(200), bit, "x")).is_failure(),
                "{bit:#x}"
            );
        }
        // a 503 another filter generated (no route) must not park the endpoint
        assert_eq!(
            classify(&p, &obs(Some(503), 0x100, "route_not_found")),
            Verdict::Neutral
        );
        // a local 429 from a rate-limit filter: not the endpoint's fault
        assert_eq!(
            classify(&p, &obs(Some(429), 0x800, "request_rate_limited")),
            Verdict::Neutral
        );
    }

    #[test]
    fn no_response_is_a_failure() {
        assert_eq!(
            classify(&policy(), &Observation::default()),
            Verdict::Failed(Reason::NoResponse)
        );
    }

    #[test]
    fn missing_details_means_upstream_answer() {
        let o = Observation {
            status: Some(503),
            flags: None,
            code_details: None,
        };
        assert!(classify(&policy(), &o).is_failure());
    }

    #[test]
    fn flag_names_round_trip() {
        assert_eq!(ResponseFlags::bit_of("uf"), Some(0x20));
        assert_eq!(ResponseFlags::bit_of("URX"), Some(0x8000));
        assert_eq!(ResponseFlags::bit_of("nope"), None);
        assert_eq!(ResponseFlags::from_bits(0x8020).to_string(), "UF,URX");
        assert_eq!(ResponseFlags::from_bits(0).to_string(), "-");
    }

    #[test]
    fn event_stream_content_types() {
        assert!(is_event_stream(b"text/event-stream"));
        assert!(is_event_stream(b"Text/Event-Stream; charset=utf-8"));
        assert!(is_event_stream(b"  text/event-stream ;"));
        assert!(!is_event_stream(b"application/json"));
        assert!(!is_event_stream(b"text/event-streamx"));
        assert!(!is_event_stream(b""));
        assert!(!is_event_stream(&[0xff, 0xfe]));
    }

    #[test]
    fn sse_error_events_are_found_at_line_starts_only() {
        assert!(sse_error_event(
            b"event: message\ndata: {}\n\nevent: error\ndata: {}\n\n"
        ));
        assert!(sse_error_event(b"event:error\r\n"));
        assert!(!sse_error_event(
            b"event: message_stop\ndata: {\"event: error\"}\n"
        ));
        assert!(!sse_error_event(b"xevent: error\n"));
        assert!(!sse_error_event(b"event: errors\n"));
    }

    #[test]
    fn property_decoding_is_defensive() {
        assert_eq!(decode_u64_le(&0x20u64.to_le_bytes()), Some(0x20));
        assert_eq!(decode_u64_le(&[1, 2, 3]), None);
        assert_eq!(decode_status(b"503"), Some(503));
        assert_eq!(decode_status(&503u64.to_le_bytes()), Some(503));
        assert_eq!(decode_status(b"abc"), None);
        assert_eq!(decode_status(b"9999"), None);
        assert_eq!(decode_status(&[0xff; 3]), None);
    }

    #[test]
    fn code_details_are_read_only_when_they_can_matter() {
        let p = policy();
        let details = [
            None,
            Some("via_upstream".to_string()),
            Some("upstream_reset_before_response_started{remote_reset}".to_string()),
            Some("response_timeout".to_string()),
        ];
        let flag_sets = [
            None,
            Some(ResponseFlags::from_bits(0)),
            Some(ResponseFlags::from_bits(0x10)),
            Some(ResponseFlags::from_bits(0x2000)),
        ];
        for code in (100..=599).map(Some).chain([None]) {
            for flags in flag_sets {
                if details_matter(&p, code, flags) {
                    continue;
                }
                let lazy = classify(
                    &p,
                    &Observation {
                        status: code,
                        flags,
                        code_details: None,
                    },
                );
                for d in &details {
                    let full = Observation {
                        status: code,
                        flags,
                        code_details: d.clone(),
                    };
                    assert_eq!(classify(&p, &full), lazy, "{code:?} {flags:?} {d:?}");
                }
            }
        }
        // and a failure status does need them: a local 503 is not the upstream's 503
        assert!(details_matter(&p, Some(503), None));
    }
}
