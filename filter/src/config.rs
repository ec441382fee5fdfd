//! The plugin configuration: the JSON Envoy hands to `on_configure`, parsed, `${ENV}`-resolved
//! and validated into a typed [`Config`] in one step.
//!
//! Everything after this module works with types that cannot be wrong (an [`EndpointIdx`]
//! always points at an endpoint, a [`StatusSet`] is already compiled), so a bad config is
//! rejected here, once, with an error naming the field path and the bad value, and
//! `on_configure` returns false — Envoy then refuses the plugin instead of running it half
//! configured.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::Deserialize;

use crate::envoy::ResponseFlags;

/// A config problem, always naming where it is (`endpoints[1].weight`) and what was wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The text is not the JSON shape we expect (syntax, unknown field, wrong type).
    #[error("plugin config: {path}: {message}")]
    Shape {
        /// Field path, `.` when the problem is at the top level.
        path: String,
        /// What serde said, including line and column.
        message: String,
    },
    /// A field parsed but its value is not acceptable.
    #[error("plugin config: {path}: {message}")]
    Invalid {
        /// Field path such as `failover.max_attempts`.
        path: String,
        /// What is wrong, quoting the bad value (never a secret).
        message: String,
    },
}

fn invalid(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: path.into(),
        message: message.into(),
    }
}

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
    value: String,
    secret: bool,
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

/// A set of HTTP statuses given as classes (`"5xx"`) and single codes (`429`, `"503"`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatusSet {
    classes: [bool; 6],
    codes: Vec<u16>,
}

impl StatusSet {
    /// True when `code` is in the set.
    pub fn contains(&self, code: u16) -> bool {
        let class = usize::from(code / 100);
        (class < self.classes.len() && self.classes[class]) || self.codes.contains(&code)
    }

    fn parse(path: &str, items: &[StatusItem]) -> Result<Self, ConfigError> {
        let mut set = StatusSet::default();
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
    pub statuses: StatusSet,
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
    pub healthy_statuses: StatusSet,
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
pub struct StatusConfig {
    /// Path answered locally (exact match, query ignored).
    pub path: String,
    /// Sources allowed to see it; everyone else gets a plain 404.
    pub allow_from: Vec<Cidr>,
}

/// The whole validated plugin config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// All endpoints, in config order.
    pub endpoints: Vec<Endpoint>,
    /// Groups in priority order, each with its endpoints.
    pub groups: Vec<Vec<EndpointIdx>>,
    /// Header the route's `cluster_header` reads (lowercase).
    pub route_header: String,
    /// What counts as a failure.
    pub failure: FailurePolicy,
    /// In-request failover.
    pub failover: FailoverPolicy,
    /// Background re-checks.
    pub verifier: VerifierConfig,
    /// Policy when every endpoint is parked.
    pub when_all_queued: AllQueuedPolicy,
    /// Status endpoint.
    pub status: StatusConfig,
}

impl Config {
    /// Checks the parts of this config that must agree with the Envoy config around it (the
    /// Wasm filter's `allow_on_headers_stop_iteration`, its listener's
    /// `per_connection_buffer_limit_bytes`), which no parser of either side sees alone.
    /// `buffer_limit_bytes` is `None` where the plugin is not an HTTP filter (a service never
    /// sees a request, so there is nothing to agree on).
    ///
    /// # Errors
    /// `failover.hold_headers` without the flag: Envoy would turn the Pause at headers into
    /// StopAllIterationAndWatermark and stop the body too, so every request with a body would
    /// stall. With the flag, a `failover.max_request_bytes` over the listener's buffer limit: a
    /// held body past the limit gets Envoy's 413 instead of streaming on.
    pub fn check_envoy_agreement(
        &self,
        allow_on_headers_stop_iteration: bool,
        buffer_limit_bytes: Option<u64>,
    ) -> Result<(), ConfigError> {
        // A service (the singleton verifier) never sees a request: nothing to agree on.
        let Some(limit) = buffer_limit_bytes else {
            return Ok(());
        };
        if !self.failover.hold_headers {
            return Ok(());
        }
        if !allow_on_headers_stop_iteration {
            return Err(invalid(
                "failover.hold_headers",
                "true needs `allow_on_headers_stop_iteration: true` in the Wasm filter's config \
                 (Envoy >= 1.35); without it a Pause at headers also stops the request body \
                 and every request with a body would stall",
            ));
        }
        let max = u64::try_from(self.failover.max_request_bytes).unwrap_or(u64::MAX);
        if max > limit {
            return Err(invalid(
                "failover.max_request_bytes",
                format!(
                    "{max} is over the listener's per_connection_buffer_limit_bytes \
                     ({limit}): with hold_headers a held body past it gets Envoy's 413"
                ),
            ));
        }
        Ok(())
    }

    /// Parses, resolves `${NAME}` with `env`, and validates.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field path and the bad value (never a secret's value).
    pub fn parse(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut de = serde_json::Deserializer::from_slice(json);
        let raw: RawConfig = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            ConfigError::Shape {
                path,
                message: e.into_inner().to_string(),
            }
        })?;
        de.end().map_err(|e| ConfigError::Shape {
            path: ".".into(),
            message: e.to_string(),
        })?;
        raw.validate(env)
    }

    /// The endpoint an index points at.
    pub fn endpoint(&self, idx: EndpointIdx) -> &Endpoint {
        &self.endpoints[idx.0]
    }

    /// Looks an endpoint up by its name.
    pub fn index_of(&self, name: &str) -> Option<EndpointIdx> {
        self.endpoints
            .iter()
            .position(|e| e.id.as_str() == name)
            .map(EndpointIdx)
    }

    /// Every endpoint index, in config order.
    pub fn indices(&self) -> impl Iterator<Item = EndpointIdx> + '_ {
        (0..self.endpoints.len()).map(EndpointIdx)
    }
}

// ===== the raw JSON shape =====

#[derive(Deserialize)]
#[serde(untagged)]
enum StatusItem {
    Code(u64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    name: String,
    cluster: String,
    #[serde(default)]
    group: Option<String>,
    #[serde(default = "one")]
    weight: u64,
    #[serde(default)]
    authority: Option<String>,
    #[serde(default)]
    request_headers: BTreeMap<String, String>,
}

fn one() -> u64 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawFailure {
    statuses: Vec<StatusItem>,
    response_flags: Vec<String>,
    threshold: u64,
}

impl Default for RawFailure {
    fn default() -> Self {
        Self {
            statuses: vec![StatusItem::Text("5xx".into()), StatusItem::Code(429)],
            response_flags: ["UT", "UF", "UR", "UC", "UH", "URX"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            threshold: 1,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawFailover {
    max_attempts: u64,
    max_request_bytes: u64,
    attempt_timeout_ms: u64,
    stream_attempt_timeout_ms: u64,
    tried_header: String,
    hold_headers: bool,
    first_event_timeout_ms: u64,
    first_event_max_bytes: u64,
}

impl Default for RawFailover {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            max_request_bytes: 1024 * 1024,
            attempt_timeout_ms: 60_000,
            stream_attempt_timeout_ms: 600_000,
            tried_header: "x-failover-tried".into(),
            hold_headers: false,
            first_event_timeout_ms: 10_000,
            first_event_max_bytes: 64 * 1024,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawProbe {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    body: String,
}

impl Default for RawProbe {
    fn default() -> Self {
        Self {
            method: "POST".into(),
            path: "/v1/messages".into(),
            headers: BTreeMap::from([("content-type".to_string(), "application/json".to_string())]),
            body: r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"hi"}]}"#
                .into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawVerifier {
    interval_ms: u64,
    max_interval_ms: u64,
    timeout_ms: u64,
    success_threshold: u64,
    healthy_statuses: Vec<StatusItem>,
    healthy_body_contains: Option<String>,
    request: RawProbe,
}

impl Default for RawVerifier {
    fn default() -> Self {
        Self {
            interval_ms: 60_000,
            max_interval_ms: 600_000,
            timeout_ms: 10_000,
            success_threshold: 1,
            healthy_statuses: vec![StatusItem::Code(200)],
            healthy_body_contains: None,
            request: RawProbe::default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawStatus {
    path: String,
    allow_from: Vec<String>,
}

impl Default for RawStatus {
    fn default() -> Self {
        Self {
            path: "/failover/status".into(),
            allow_from: vec!["127.0.0.1/32".into(), "::1/128".into()],
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    endpoints: Vec<RawEndpoint>,
    #[serde(default)]
    groups: Option<Vec<String>>,
    #[serde(default = "default_route_header")]
    route_header: String,
    #[serde(default)]
    failure: RawFailure,
    #[serde(default)]
    failover: RawFailover,
    #[serde(default)]
    verifier: RawVerifier,
    #[serde(default = "default_when_all_queued")]
    when_all_queued: String,
    #[serde(default)]
    status: RawStatus,
}

fn default_route_header() -> String {
    "x-failover-cluster".into()
}

fn default_when_all_queued() -> String {
    "least_recently_failed".into()
}

// ===== validation =====

fn positive(path: &str, v: u64) -> Result<u64, ConfigError> {
    if v == 0 {
        Err(invalid(path, "0 is not allowed here (must be at least 1)"))
    } else {
        Ok(v)
    }
}

/// Largest timeout Envoy's `dispatch_http_call` takes: it converts the milliseconds to a
/// signed 32-bit duration and refuses anything larger with BadArgument, so a bigger value
/// would make every replay (or probe) fail.
pub const MAX_CALL_TIMEOUT_MS: u64 = (1 << 31) - 1;

/// A `dispatch_http_call` timeout: at least 1 ms, at most [`MAX_CALL_TIMEOUT_MS`].
fn call_timeout(path: &str, v: u64) -> Result<u64, ConfigError> {
    let v = positive(path, v)?;
    if v > MAX_CALL_TIMEOUT_MS {
        return Err(invalid(
            path,
            format!("{v} is over {MAX_CALL_TIMEOUT_MS} ms, the most Envoy accepts for a call"),
        ));
    }
    Ok(v)
}

fn small(path: &str, v: u64) -> Result<u32, ConfigError> {
    u32::try_from(v).map_err(|_| invalid(path, format!("{v} is too large")))
}

/// A lowercase HTTP header name (RFC 9110 token characters).
fn header_name(path: &str, name: &str) -> Result<String, ConfigError> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(invalid(
            path,
            format!("{name:?} is not a valid header name"),
        ))
    }
}

/// Replaces every `${NAME}` in `text` from `env`. `$$` is not special; a `${` without `}` is an
/// error so a typo never reaches the wire.
fn resolve_env(
    path: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<HeaderValue, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut secret = false;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| {
            invalid(
                path,
                format!("{text:?} has \"${{\" without a closing \"}}\""),
            )
        })?;
        let name = &after[..end];
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(invalid(
                path,
                format!("${{{name}}} is not a valid environment variable reference"),
            ));
        }
        let value = env(name).ok_or_else(|| {
            invalid(
                path,
                format!("environment variable {name} is not set (list it in vm_config.environment_variables)"),
            )
        })?;
        out.push_str(&value);
        secret = true;
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    if out.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(invalid(path, "the value contains CR, LF or NUL"));
    }
    Ok(HeaderValue { value: out, secret })
}

fn headers(
    path: &str,
    raw: &BTreeMap<String, String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, HeaderValue)>, ConfigError> {
    raw.iter()
        .map(|(k, v)| {
            let here = format!("{path}.{k}");
            let name = header_name(&here, k)?;
            if name.starts_with(':') || HOP_BY_HOP.contains(&name.as_str()) || name == "host" {
                return Err(invalid(here, format!("{k:?} cannot be set by the filter")));
            }
            Ok((name, resolve_env(&here, v, env)?))
        })
        .collect()
}

/// Connection-level headers that never travel past one hop (RFC 9110 §7.6.1).
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

impl RawConfig {
    fn validate(self, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        if self.endpoints.is_empty() {
            return Err(invalid("endpoints", "at least one endpoint is required"));
        }
        let mut endpoints: Vec<Endpoint> = Vec::with_capacity(self.endpoints.len());
        let mut group_order: Vec<String> = Vec::new();
        for (i, e) in self.endpoints.iter().enumerate() {
            let p = format!("endpoints[{i}]");
            let id = EndpointId::new(&e.name).map_err(|m| invalid(format!("{p}.name"), m))?;
            if endpoints.iter().any(|x| x.id == id) {
                return Err(invalid(
                    format!("{p}.name"),
                    format!("{:?} is used by two endpoints", e.name),
                ));
            }
            if e.cluster.trim().is_empty() {
                return Err(invalid(format!("{p}.cluster"), "must not be empty"));
            }
            let weight = small(
                &format!("{p}.weight"),
                positive(&format!("{p}.weight"), e.weight)?,
            )?;
            let group = e.group.clone().unwrap_or_else(|| "primary".into());
            if group.is_empty() {
                return Err(invalid(format!("{p}.group"), "must not be empty"));
            }
            if !group_order.contains(&group) {
                group_order.push(group.clone());
            }
            if let Some(a) = &e.authority {
                if a.is_empty() || a.bytes().any(|b| b <= b' ' || b == 0x7f) {
                    return Err(invalid(
                        format!("{p}.authority"),
                        format!("{a:?} is not a valid authority"),
                    ));
                }
            }
            endpoints.push(Endpoint {
                id,
                cluster: e.cluster.clone(),
                group,
                weight,
                authority: e.authority.clone(),
                request_headers: headers(&format!("{p}.request_headers"), &e.request_headers, env)?,
            });
        }

        let order = match &self.groups {
            None => group_order.clone(),
            Some(list) => {
                for (i, g) in list.iter().enumerate() {
                    if !group_order.contains(g) {
                        return Err(invalid(
                            format!("groups[{i}]"),
                            format!("{g:?} has no endpoints"),
                        ));
                    }
                    if list[..i].contains(g) {
                        return Err(invalid(
                            format!("groups[{i}]"),
                            format!("{g:?} is listed twice"),
                        ));
                    }
                }
                if let Some(missing) = group_order.iter().find(|g| !list.contains(g)) {
                    return Err(invalid(
                        "groups",
                        format!("group {missing:?} is used by an endpoint but not listed"),
                    ));
                }
                list.clone()
            }
        };
        let groups = order
            .iter()
            .map(|g| {
                endpoints
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| &e.group == g)
                    .map(|(i, _)| EndpointIdx(i))
                    .collect()
            })
            .collect();

        let route_header = header_name("route_header", &self.route_header)?;

        let mut response_flags = ResponseFlags::default();
        for (i, name) in self.failure.response_flags.iter().enumerate() {
            let bit = ResponseFlags::bit_of(name).ok_or_else(|| {
                invalid(
                    format!("failure.response_flags[{i}]"),
                    format!("{name:?} is not an Envoy response flag"),
                )
            })?;
            response_flags = response_flags.with(bit);
        }
        let failure = FailurePolicy {
            statuses: StatusSet::parse("failure.statuses", &self.failure.statuses)?,
            response_flags,
            threshold: small(
                "failure.threshold",
                positive("failure.threshold", self.failure.threshold)?,
            )?,
        };

        let f = &self.failover;
        let failover = FailoverPolicy {
            max_attempts: small(
                "failover.max_attempts",
                positive("failover.max_attempts", f.max_attempts)?,
            )?,
            max_request_bytes: usize::try_from(f.max_request_bytes).map_err(|_| {
                invalid(
                    "failover.max_request_bytes",
                    format!("{} is too large", f.max_request_bytes),
                )
            })?,
            attempt_timeout_ms: call_timeout("failover.attempt_timeout_ms", f.attempt_timeout_ms)?,
            stream_attempt_timeout_ms: call_timeout(
                "failover.stream_attempt_timeout_ms",
                f.stream_attempt_timeout_ms,
            )?,
            tried_header: header_name("failover.tried_header", &f.tried_header)?,
            hold_headers: f.hold_headers,
            first_event_timeout_ms: positive(
                "failover.first_event_timeout_ms",
                f.first_event_timeout_ms,
            )?,
            first_event_max_bytes: usize::try_from(positive(
                "failover.first_event_max_bytes",
                f.first_event_max_bytes,
            )?)
            .map_err(|_| {
                invalid(
                    "failover.first_event_max_bytes",
                    format!("{} is too large", f.first_event_max_bytes),
                )
            })?,
        };

        let v = &self.verifier;
        let interval_ms = positive("verifier.interval_ms", v.interval_ms)?;
        let max_interval_ms = positive("verifier.max_interval_ms", v.max_interval_ms)?;
        if max_interval_ms < interval_ms {
            return Err(invalid(
                "verifier.max_interval_ms",
                format!("{max_interval_ms} is smaller than verifier.interval_ms ({interval_ms})"),
            ));
        }
        let method = v.request.method.trim().to_ascii_uppercase();
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(invalid(
                "verifier.request.method",
                format!("{:?} is not an HTTP method", v.request.method),
            ));
        }
        if !v.request.path.starts_with('/') {
            return Err(invalid(
                "verifier.request.path",
                format!("{:?} must start with '/'", v.request.path),
            ));
        }
        let verifier = VerifierConfig {
            interval_ms,
            max_interval_ms,
            timeout_ms: call_timeout("verifier.timeout_ms", v.timeout_ms)?,
            success_threshold: small(
                "verifier.success_threshold",
                positive("verifier.success_threshold", v.success_threshold)?,
            )?,
            healthy_statuses: StatusSet::parse("verifier.healthy_statuses", &v.healthy_statuses)?,
            healthy_body_contains: v.healthy_body_contains.clone().filter(|s| !s.is_empty()),
            request: ProbeRequest {
                method,
                path: v.request.path.clone(),
                headers: headers("verifier.request.headers", &v.request.headers, env)?,
                body: v.request.body.clone(),
            },
        };
        if v.healthy_statuses.is_empty() {
            return Err(invalid(
                "verifier.healthy_statuses",
                "must list at least one status",
            ));
        }

        let when_all_queued = match self.when_all_queued.as_str() {
            "least_recently_failed" => AllQueuedPolicy::LeastRecentlyFailed,
            "reject" => AllQueuedPolicy::Reject,
            other => {
                return Err(invalid(
                    "when_all_queued",
                    format!("{other:?} is not one of \"least_recently_failed\", \"reject\""),
                ))
            }
        };

        if !self.status.path.starts_with('/') {
            return Err(invalid(
                "status.path",
                format!("{:?} must start with '/'", self.status.path),
            ));
        }
        let allow_from = self
            .status
            .allow_from
            .iter()
            .enumerate()
            .map(|(i, c)| Cidr::parse(c).map_err(|m| invalid(format!("status.allow_from[{i}]"), m)))
            .collect::<Result<_, _>>()?;

        Ok(Config {
            endpoints,
            groups,
            route_header,
            failure,
            failover,
            verifier,
            when_all_queued,
            status: StatusConfig {
                path: self.status.path,
                allow_from,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "MAIN_API_KEY" => Some("sk-secret-123".into()),
            _ => None,
        }
    }

    pub(crate) const DESIGN_EXAMPLE: &str = r#"{
      "endpoints": [
        { "name": "main",   "cluster": "upstream_main",   "group": "primary",   "weight": 3,
          "request_headers": { "x-api-key": "${MAIN_API_KEY}" } },
        { "name": "spare",  "cluster": "upstream_spare",  "group": "primary",   "weight": 1 },
        { "name": "backup", "cluster": "upstream_backup", "group": "secondary" }
      ],
      "route_header": "x-failover-cluster",
      "failure":  { "statuses": ["5xx", 429], "response_flags": ["UT","UF","UR","UC","UH","URX"],
                    "threshold": 1 },
      "failover": { "max_attempts": 3, "max_request_bytes": 1048576, "attempt_timeout_ms": 60000 },
      "verifier": { "interval_ms": 60000, "max_interval_ms": 600000, "timeout_ms": 10000,
                    "success_threshold": 1, "healthy_statuses": [200],
                    "request": { "method": "POST", "path": "/v1/messages",
                                 "headers": { "content-type": "application/json" },
                                 "body": "{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}" } },
      "when_all_queued": "least_recently_failed",
      "status": { "path": "/failover/status", "allow_from": ["127.0.0.1/32", "::1/128"] }
    }"#;

    fn err(json: &str) -> String {
        Config::parse(json.as_bytes(), &env)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn hold_headers_must_agree_with_the_envoy_config() {
        let held = Config::parse(
            br#"{"endpoints":[{"name":"a","cluster":"ca"}],"failover":{"hold_headers":true}}"#,
            &|_| None,
        )
        .unwrap();
        let e = held
            .check_envoy_agreement(false, Some(1 << 20))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("failover.hold_headers") && e.contains("allow_on_headers_stop_iteration"),
            "{e}"
        );
        assert!(held.check_envoy_agreement(true, Some(1 << 20)).is_ok());
        let e = held
            .check_envoy_agreement(true, Some(1000))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("failover.max_request_bytes") && e.contains("1048576") && e.contains("1000"),
            "{e}"
        );
        let plain =
            Config::parse(br#"{"endpoints":[{"name":"a","cluster":"ca"}]}"#, &|_| None).unwrap();
        assert!(
            plain.check_envoy_agreement(false, Some(1000)).is_ok(),
            "nothing to agree on"
        );
    }

    #[test]
    fn call_timeouts_over_envoys_limit_are_refused() {
        for field in ["attempt_timeout_ms", "stream_attempt_timeout_ms"] {
            let json = format!(
                r#"{{"endpoints":[{{"name":"a","cluster":"ca"}}],"failover":{{"{field}":2147483648}}}}"#
            );
            let e = Config::parse(json.as_bytes(), &|_| None)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&format!("failover.{field}")) && e.contains("2147483648"),
                "{e}"
            );
            let json = format!(
                r#"{{"endpoints":[{{"name":"a","cluster":"ca"}}],"failover":{{"{field}":2147483647}}}}"#
            );
            assert!(Config::parse(json.as_bytes(), &|_| None).is_ok());
        }
        let e = Config::parse(
            br#"{"endpoints":[{"name":"a","cluster":"ca"}],"verifier":{"timeout_ms":4294967296}}"#,
            &|_| None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("verifier.timeout_ms"), "{e}");
    }

    #[test]
    fn design_example_parses() {
        let c = Config::parse(DESIGN_EXAMPLE.as_bytes(), &env).unwrap();
        assert_eq!(c.endpoints.len(), 3);
        assert_eq!(
            c.groups,
            vec![vec![EndpointIdx(0), EndpointIdx(1)], vec![EndpointIdx(2)]]
        );
        assert_eq!(c.endpoints[0].weight, 3);
        let (name, value) = &c.endpoints[0].request_headers[0];
        assert_eq!(name, "x-api-key");
        assert_eq!(value.expose(), "sk-secret-123");
        assert!(value.is_secret());
        assert!(
            !format!("{c:?}").contains("sk-secret-123"),
            "Debug must redact secrets"
        );
        assert!(c.failure.statuses.contains(503) && c.failure.statuses.contains(429));
        assert!(!c.failure.statuses.contains(400));
        assert_eq!(c.when_all_queued, AllQueuedPolicy::LeastRecentlyFailed);
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::parse(br#"{"endpoints":[{"name":"a","cluster":"ca"}]}"#, &env).unwrap();
        assert_eq!(c.route_header, "x-failover-cluster");
        assert_eq!(c.failover.max_attempts, 3);
        assert_eq!(c.failover.max_request_bytes, 1 << 20);
        assert_eq!(c.verifier.interval_ms, 60_000);
        assert_eq!(c.verifier.request.path, "/v1/messages");
        assert_eq!(c.failure.threshold, 1);
        assert!(c.failure.response_flags.contains_any(0x20));
        assert_eq!(c.status.path, "/failover/status");
        assert_eq!(c.endpoints[0].group, "primary");
    }

    #[test]
    fn unknown_fields_are_named_with_their_path() {
        let e = err(r#"{"endpoints":[{"name":"a","cluster":"ca","wieght":2}]}"#);
        assert!(e.contains("endpoints[0]") && e.contains("wieght"), "{e}");
        let e = err(r#"{"endpoints":[{"name":"a","cluster":"ca"}],"failover":{"max_atempts":2}}"#);
        assert!(e.contains("failover") && e.contains("max_atempts"), "{e}");
        let e = err(r#"{"endpoints":[{"name":"a","cluster":"ca"}],"extra":1}"#);
        assert!(e.contains("extra"), "{e}");
    }

    #[test]
    fn bad_values_name_field_and_value() {
        let e = err(r#"{"endpoints":[{"name":"a","cluster":"ca","weight":0}]}"#);
        assert!(e.contains("endpoints[0].weight") && e.contains('0'), "{e}");
        let e =
            err(r#"{"endpoints":[{"name":"a","cluster":"ca"}],"failure":{"statuses":["6xx"]}}"#);
        assert!(
            e.contains("failure.statuses[0]") && e.contains("6xx"),
            "{e}"
        );
        let e = err(
            r#"{"endpoints":[{"name":"a","cluster":"ca"}],"failure":{"response_flags":["XX"]}}"#,
        );
        assert!(
            e.contains("failure.response_flags[0]") && e.contains("XX"),
            "{e}"
        );
        let e = err(r#"{"endpoints":[{"name":"a","cluster":"ca"}],"when_all_queued":"panic"}"#);
        assert!(e.contains("when_all_queued") && e.contains("panic"), "{e}");
        let e = err(r#"{"endpoints":[{"name":"a b","cluster":"ca"}]}"#);
        assert!(e.contains("endpoints[0].name") && e.contains("a b"), "{e}");
        let e = err(r#"{"endpoints":[{"name":"a","cluster":"ca"},{"name":"a","cluster":"cb"}]}"#);
        assert!(e.contains("endpoints[1].name"), "{e}");
        let e = err(r#"{"endpoints":[]}"#);
        assert!(e.contains("endpoints"), "{e}");
        let e = err(
            r#"{"endpoints":[{"name":"a","cluster":"ca"}],"status":{"allow_from":["10.0.0.0/33"]}}"#,
        );
        assert!(
            e.contains("status.allow_from[0]") && e.contains("10.0.0.0/33"),
            "{e}"
        );
        let e = err(
            r#"{"endpoints":[{"name":"a","cluster":"ca"}],"verifier":{"interval_ms":5000,"max_interval_ms":1000}}"#,
        );
        assert!(e.contains("verifier.max_interval_ms"), "{e}");
        let e = err(r#"{"endpoints":[{"name":"a","cluster":"ca","group":"x"}],"groups":["y"]}"#);
        assert!(e.contains("groups[0]") && e.contains('y'), "{e}");
        let e = err(r#"{"endpoints":[{"name":"a","cluster":"ca","weight":-1}]}"#);
        assert!(e.contains("endpoints[0].weight"), "{e}");
    }

    #[test]
    fn missing_env_is_an_error_without_leaking_values() {
        let e = err(
            r#"{"endpoints":[{"name":"a","cluster":"ca","request_headers":{"x-api-key":"${NOPE}"}}]}"#,
        );
        assert!(
            e.contains("endpoints[0].request_headers.x-api-key") && e.contains("NOPE"),
            "{e}"
        );
        let e = err(
            r#"{"endpoints":[{"name":"a","cluster":"ca","request_headers":{"x-api-key":"${MAIN_API_KEY"}}]}"#,
        );
        assert!(e.contains("closing"), "{e}");
        assert!(!e.contains("sk-secret"), "{e}");
    }

    #[test]
    fn env_is_resolved_inside_text() {
        let c = Config::parse(
            br#"{"endpoints":[{"name":"a","cluster":"ca","request_headers":{"authorization":"Bearer ${MAIN_API_KEY}"}}]}"#,
            &env,
        )
        .unwrap();
        assert_eq!(
            c.endpoints[0].request_headers[0].1.expose(),
            "Bearer sk-secret-123"
        );
    }

    #[test]
    fn hop_by_hop_and_pseudo_headers_cannot_be_configured() {
        let e = err(
            r#"{"endpoints":[{"name":"a","cluster":"ca","request_headers":{"connection":"close"}}]}"#,
        );
        assert!(e.contains("connection"), "{e}");
    }

    #[test]
    fn malformed_json_never_panics() {
        for text in [
            "",
            "{",
            "[]",
            "null",
            "{\"endpoints\":{}}",
            "\u{0}",
            "{\"endpoints\":[{\"name\":1}]}",
        ] {
            assert!(Config::parse(text.as_bytes(), &env).is_err(), "{text:?}");
        }
        assert!(Config::parse(&[0xff, 0xfe, 0x00], &env).is_err());
    }

    #[test]
    fn explicit_groups_reorder_priority() {
        let c = Config::parse(
            br#"{"endpoints":[{"name":"a","cluster":"ca","group":"g1"},{"name":"b","cluster":"cb","group":"g2"}],"groups":["g2","g1"]}"#,
            &env,
        )
        .unwrap();
        assert_eq!(c.groups, vec![vec![EndpointIdx(1)], vec![EndpointIdx(0)]]);
    }

    #[test]
    fn cidr_matching() {
        let c = Cidr::parse("127.0.0.0/8").unwrap();
        assert!(c.contains("127.1.2.3".parse().unwrap()));
        assert!(!c.contains("128.0.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:127.0.0.1".parse().unwrap()));
        let six = Cidr::parse("::1/128").unwrap();
        assert!(six.contains("::1".parse().unwrap()));
        assert!(!six.contains("::2".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.1")
            .unwrap()
            .contains("10.0.0.1".parse().unwrap()));
        let odd = Cidr::parse("10.0.0.0/12").unwrap();
        assert!(odd.contains("10.15.255.255".parse().unwrap()));
        assert!(!odd.contains("10.16.0.0".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
    }
}
