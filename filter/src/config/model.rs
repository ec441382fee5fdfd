//! The validated, typed config: what the rest of the filter works with.

use std::fmt;
use std::net::IpAddr;

use super::{invalid, ConfigError};
use crate::envoy::ResponseFlags;

/// Index of an endpoint in [`Config::endpoints`]; only [`Config::parse`] makes them, so one is
/// always valid for the config it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndpointIdx(pub(crate) usize);

impl EndpointIdx {
    /// Position in [`Config::endpoints`].
    pub fn get(self) -> usize {
        self.0
    }
}

/// A validated endpoint name: non-empty, at most 64 characters of `[A-Za-z0-9._-]`. It is the
/// key of the shared record, so it must be stable and printable in logs and JSON.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndpointId(String);

impl EndpointId {
    /// Validates `name`; the error text quotes the bad value.
    pub fn new(name: &str) -> Result<Self, String> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(Self(name.to_string()))
        } else {
            Err(format!(
                "{name:?} is not a valid endpoint name (1-64 characters of A-Z a-z 0-9 . _ -)"
            ))
        }
    }

    /// The name as written in the config.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EndpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A header value that may hold a secret (it came from `${ENV}`): its `Debug` never shows it,
/// so it cannot leak through a log line or an error by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct HeaderValue {
    pub(super) value: String,
    pub(super) secret: bool,
}

impl HeaderValue {
    /// The value to put on the wire.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// True when any part of it came from the environment.
    pub fn is_secret(&self) -> bool {
        self.secret
    }
}

impl fmt::Debug for HeaderValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.secret {
            f.write_str("<redacted>")
        } else {
            write!(f, "{:?}", self.value)
        }
    }
}

/// One upstream endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Name; the key in the failure queue.
    pub id: EndpointId,
    /// Envoy cluster that reaches it (set into `route_header`, used by `dispatch_http_call`).
    pub cluster: String,
    /// Priority group name.
    pub group: String,
    /// Relative weight inside its group (≥ 1).
    pub weight: u32,
    /// `:authority` for replays and probes; `None` keeps the client's (replays) or uses the
    /// cluster name (probes).
    pub authority: Option<String>,
    /// Headers set on every request to this endpoint (replacing a client's copy), lowercase names.
    pub request_headers: Vec<(String, HeaderValue)>,
}

/// One item of a status list as JSON spells it: a number (`429`) or text (`"503"`, `"5xx"`).
pub(super) enum StatusItem {
    Code(u64),
    Text(String),
}

impl StatusItem {
    /// A list of items, each read as serde's `#[serde(untagged)]` enum read it: an unsigned
    /// integer is a code, a string is text, anything else "did not match any variant".
    pub(super) fn read_all(
        r: &crate::json::Reader<'_>,
        v: &crate::json::Value,
        path: &crate::json::Path<'_>,
    ) -> Result<Vec<StatusItem>, crate::json::Error> {
        let items = r.array(v, path)?;
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            out.push(match &item.kind {
                crate::json::Kind::U64(n) => StatusItem::Code(*n),
                crate::json::Kind::Str(s) => StatusItem::Text(s.clone()),
                _ => {
                    return Err(r.error(
                        &path.index(i),
                        r.after_element(item),
                        "data did not match any variant of untagged enum StatusItem".into(),
                    ))
                }
            });
        }
        Ok(out)
    }
}

/// A set of HTTP statuses given as classes (`"5xx"`) and single codes (`429`, `"503"`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpStatusSet {
    classes: [bool; 6],
    codes: Vec<u16>,
}

impl HttpStatusSet {
    /// True when `code` is in the set.
    pub fn contains(&self, code: u16) -> bool {
        let class = usize::from(code / 100);
        (class < self.classes.len() && self.classes[class]) || self.codes.contains(&code)
    }

    pub(super) fn parse(path: &str, items: &[StatusItem]) -> Result<Self, ConfigError> {
        let mut set = HttpStatusSet::default();
        for (i, item) in items.iter().enumerate() {
            let here = format!("{path}[{i}]");
            match item {
                StatusItem::Code(code) => set.codes.push(check_code(&here, *code)?),
                StatusItem::Text(text) => {
                    let t = text.trim().to_ascii_lowercase();
                    if t.len() == 3 && t.ends_with("xx") {
                        match t.as_bytes()[0] {
                            d @ b'1'..=b'5' => set.classes[usize::from(d - b'0')] = true,
                            _ => {
                                return Err(invalid(
                                    here,
                                    format!("{text:?} is not a status class (1xx..5xx)"),
                                ))
                            }
                        }
                    } else {
                        let code: u64 = t.parse().map_err(|_| {
                            invalid(
                                &here,
                                format!(
                                    "{text:?} is neither a status code nor a class like \"5xx\""
                                ),
                            )
                        })?;
                        set.codes.push(check_code(&here, code)?);
                    }
                }
            }
        }
        Ok(set)
    }
}

fn check_code(path: &str, code: u64) -> Result<u16, ConfigError> {
    match u16::try_from(code) {
        Ok(c) if (100..=599).contains(&c) => Ok(c),
        _ => Err(invalid(
            path,
            format!("{code} is not an HTTP status (100..599)"),
        )),
    }
}

/// What decides that an answer is an endpoint failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailurePolicy {
    /// Upstream statuses that count as failures.
    pub statuses: HttpStatusSet,
    /// Envoy response flags that count as failures (a local reply carrying one of them).
    pub response_flags: ResponseFlags,
    /// Failures in a row before an endpoint is parked (≥ 1).
    pub threshold: u32,
}

/// How one request fails over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverPolicy {
    /// Attempts in all, the first included (≥ 1).
    pub max_attempts: u32,
    /// Request bodies up to this size are kept for replay; bigger ones stream and are not replayed.
    pub max_request_bytes: usize,
    /// Timeout of each replayed attempt, in milliseconds (< 2^31: Envoy refuses a larger
    /// `dispatch_http_call` timeout, so every replay would be refused).
    pub attempt_timeout_ms: u64,
    /// Timeout of a replayed attempt whose request asks for a streamed answer (`"stream": true`
    /// in a JSON body, or `accept: text/event-stream`). A replay arrives only when its answer is
    /// complete, and LLM streams last minutes: `attempt_timeout_ms` would cut a healthy one.
    pub stream_attempt_timeout_ms: u64,
    /// Response header naming the endpoints a request tried, set whenever it failed over.
    pub tried_header: String,
    /// Hold the request at its headers until the body is complete (so every local reply of the
    /// router comes after the filter has the whole, replayable request), and hold an event
    /// stream's response headers until its first complete event (so an error as the first
    /// event is failed over before the client sees anything). Only valid where a Pause at
    /// headers lets body callbacks go on: Envoy ≥ 1.35 with `allow_on_headers_stop_iteration:
    /// true` in the Wasm filter's config. Elsewhere a Pause at headers stalls the body.
    pub hold_headers: bool,
    /// Longest wait for an event stream's first complete event while its headers are held,
    /// checked as data arrives; then the stream goes on unjudged.
    pub first_event_timeout_ms: u64,
    /// Most bytes of an event stream held while waiting for its first complete event.
    pub first_event_max_bytes: usize,
}

/// The request the verifier sends to a parked endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRequest {
    /// HTTP method.
    pub method: String,
    /// Path with query.
    pub path: String,
    /// Extra headers (lowercase names).
    pub headers: Vec<(String, HeaderValue)>,
    /// Body, possibly empty.
    pub body: String,
}

/// Background re-checks of parked endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierConfig {
    /// First re-check delay after parking, and the base of the back-off, in ms.
    pub interval_ms: u64,
    /// Cap of the back-off, in ms.
    pub max_interval_ms: u64,
    /// Probe timeout, in ms.
    pub timeout_ms: u64,
    /// Healthy probes in a row that recover an endpoint.
    pub success_threshold: u32,
    /// Statuses a healthy probe may answer with.
    pub healthy_statuses: HttpStatusSet,
    /// If set, a healthy probe body must contain this text; if not, it must parse as JSON and
    /// must not be an error object (`{"type":"error"}` or a top-level `"error"` key).
    pub healthy_body_contains: Option<String>,
    /// The probe itself.
    pub request: ProbeRequest,
}

/// What to do when every endpoint is parked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllQueuedPolicy {
    /// One request at a time goes to the endpoint parked longest ago; a success recovers it.
    LeastRecentlyFailed,
    /// Answer 503 with `retry-after` set to the earliest next check.
    Reject,
}

/// An IPv4 or IPv6 network, `10.0.0.0/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `x::y/n`, or a bare address (a /32 or /128).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not an IP network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.trim().parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("{text:?} has an invalid prefix length")),
            },
        };
        Ok(Self { addr, prefix })
    }

    /// True when `ip` is inside this network (IPv4-mapped IPv6 addresses match IPv4 networks).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_match(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_match(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_match(net: &[u8], ip: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if net[..full] != ip[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    (net[full] & mask) == (ip[full] & mask)
}

/// The local status endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusPageConfig {
    /// Path answered locally (exact match, query ignored).
    pub path: String,
    /// Sources allowed to see it; everyone else gets a plain 404.
    pub allow_from: Vec<Cidr>,
}

/// Fleet mode's settings, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// The Envoy cluster that reaches etcd's client port (`dispatch_http_call` target).
    pub cluster: String,
    /// Prefix of the etcd key; the record lives at [`FleetConfig::key`].
    pub key_prefix: String,
    /// This member's name in the record (`first_member`, claims). Defaults to `HOSTNAME`
    /// from the VM's environment (in Envoy, list it in `vm_config.environment_variables`;
    /// Kubernetes sets it to the pod name). `None` when neither the config nor `HOSTNAME` gave
    /// one: the glue then makes one at start with
    /// [`generated_member`](super::generated_member), once per process (a reconfigure keeps it).
    pub member: Option<String>,
    /// How often the syncer runs a round, ms.
    pub sync_interval_ms: u64,
    /// Timeout of each etcd call, ms (below the interval, so rounds never overlap).
    pub timeout_ms: u64,
    /// After this long without a good round the member works alone (local verifier probes
    /// again) and says so once.
    pub offline_after_ms: u64,
    /// Lifetime of a probe claim, ms: long enough for a probe to finish, short enough that a
    /// dead member's claim soon frees the endpoint for another prober.
    pub probe_claim_ms: u64,
    /// `Authorization` header for etcd (from `${ENV}`; never logged).
    pub authorization: Option<HeaderValue>,
}

impl FleetConfig {
    /// The etcd key of the fleet record: `<key_prefix>/v1`.
    pub fn key(&self) -> String {
        format!("{}/v1", self.key_prefix.trim_end_matches('/'))
    }

    /// The member name, or `fallback` (see [`FleetConfig::member`]).
    pub fn member_or<'a>(&'a self, fallback: &'a str) -> &'a str {
        self.member.as_deref().unwrap_or(fallback)
    }
}
