//! The JSON shape as serde used to read it (unknown fields denied, defaults filled), read by
//! our own JSON reader with serde's messages and paths, and its validation into the typed
//! model.

use super::fields::*;
use super::model::*;
use super::{invalid, Config, ConfigError};
use crate::envoy::ResponseFlags;
use crate::json::{self, Path, Reader, Shape, Value};

// ===== the raw JSON shape =====

struct RawEndpoint {
    name: String,
    cluster: String,
    group: Option<String>,
    weight: u64,
    authority: Option<String>,
    request_headers: RawHeaders,
}

const ENDPOINT: Shape = Shape {
    name: "struct RawEndpoint",
    fields: &[
        "name",
        "cluster",
        "group",
        "weight",
        "authority",
        "request_headers",
    ],
    required: 0b11,
    deny_unknown: true,
};

impl RawEndpoint {
    fn read(r: &Reader<'_>, v: &Value, path: &Path<'_>) -> Result<Self, json::Error> {
        let mut e = RawEndpoint {
            name: String::new(),
            cluster: String::new(),
            group: None,
            weight: 1,
            authority: None,
            request_headers: RawHeaders::default(),
        };
        r.fields(v, path, &ENDPOINT, &mut |i, v, p| {
            match i {
                0 => e.name = r.string(v, p)?,
                1 => e.cluster = r.string(v, p)?,
                2 => e.group = opt_string(r, v, p)?,
                3 => e.weight = r.u64(v, p)?,
                4 => e.authority = opt_string(r, v, p)?,
                _ => e.request_headers = RawHeaders::read(r, v, p)?,
            }
            Ok(())
        })?;
        Ok(e)
    }
}

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

const FAILURE: Shape = Shape {
    name: "struct RawFailure",
    fields: &["statuses", "response_flags", "threshold"],
    required: 0,
    deny_unknown: true,
};

impl RawFailure {
    fn read(r: &Reader<'_>, v: &Value, path: &Path<'_>) -> Result<Self, json::Error> {
        let mut f = RawFailure::default();
        r.fields(v, path, &FAILURE, &mut |i, v, p| {
            match i {
                0 => f.statuses = StatusItem::read_all(r, v, p)?,
                1 => f.response_flags = r.strings(v, p)?,
                _ => f.threshold = r.u64(v, p)?,
            }
            Ok(())
        })?;
        Ok(f)
    }
}

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

const FAILOVER: Shape = Shape {
    name: "struct RawFailover",
    fields: &[
        "max_attempts",
        "max_request_bytes",
        "attempt_timeout_ms",
        "stream_attempt_timeout_ms",
        "tried_header",
        "hold_headers",
        "first_event_timeout_ms",
        "first_event_max_bytes",
    ],
    required: 0,
    deny_unknown: true,
};

impl RawFailover {
    fn read(r: &Reader<'_>, v: &Value, path: &Path<'_>) -> Result<Self, json::Error> {
        let mut f = RawFailover::default();
        r.fields(v, path, &FAILOVER, &mut |i, v, p| {
            match i {
                0 => f.max_attempts = r.u64(v, p)?,
                1 => f.max_request_bytes = r.u64(v, p)?,
                2 => f.attempt_timeout_ms = r.u64(v, p)?,
                3 => f.stream_attempt_timeout_ms = r.u64(v, p)?,
                4 => f.tried_header = r.string(v, p)?,
                5 => f.hold_headers = r.bool(v, p)?,
                6 => f.first_event_timeout_ms = r.u64(v, p)?,
                _ => f.first_event_max_bytes = r.u64(v, p)?,
            }
            Ok(())
        })?;
        Ok(f)
    }
}

struct RawProbe {
    method: String,
    path: String,
    headers: RawHeaders,
    body: String,
}

impl Default for RawProbe {
    fn default() -> Self {
        Self {
            method: "POST".into(),
            path: "/v1/messages".into(),
            headers: RawHeaders(vec![(
                "content-type".to_string(),
                "application/json".to_string(),
            )]),
            body: r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"hi"}]}"#
                .into(),
        }
    }
}

const PROBE: Shape = Shape {
    name: "struct RawProbe",
    fields: &["method", "path", "headers", "body"],
    required: 0,
    deny_unknown: true,
};

impl RawProbe {
    fn read(r: &Reader<'_>, v: &Value, path: &Path<'_>) -> Result<Self, json::Error> {
        let mut probe = RawProbe::default();
        r.fields(v, path, &PROBE, &mut |i, v, p| {
            match i {
                0 => probe.method = r.string(v, p)?,
                1 => probe.path = r.string(v, p)?,
                2 => probe.headers = RawHeaders::read(r, v, p)?,
                _ => probe.body = r.string(v, p)?,
            }
            Ok(())
        })?;
        Ok(probe)
    }
}

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

const VERIFIER: Shape = Shape {
    name: "struct RawVerifier",
    fields: &[
        "interval_ms",
        "max_interval_ms",
        "timeout_ms",
        "success_threshold",
        "healthy_statuses",
        "healthy_body_contains",
        "request",
    ],
    required: 0,
    deny_unknown: true,
};

impl RawVerifier {
    fn read(r: &Reader<'_>, v: &Value, path: &Path<'_>) -> Result<Self, json::Error> {
        let mut ver = RawVerifier::default();
        r.fields(v, path, &VERIFIER, &mut |i, v, p| {
            match i {
                0 => ver.interval_ms = r.u64(v, p)?,
                1 => ver.max_interval_ms = r.u64(v, p)?,
                2 => ver.timeout_ms = r.u64(v, p)?,
                3 => ver.success_threshold = r.u64(v, p)?,
                4 => ver.healthy_statuses = StatusItem::read_all(r, v, p)?,
                5 => ver.healthy_body_contains = opt_string(r, v, p)?,
                _ => ver.request = RawProbe::read(r, v, p)?,
            }
            Ok(())
        })?;
        Ok(ver)
    }
}

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

const STATUS: Shape = Shape {
    name: "struct RawStatus",
    fields: &["path", "allow_from"],
    required: 0,
    deny_unknown: true,
};

impl RawStatus {
    fn read(r: &Reader<'_>, v: &Value, path: &Path<'_>) -> Result<Self, json::Error> {
        let mut s = RawStatus::default();
        r.fields(v, path, &STATUS, &mut |i, v, p| {
            match i {
                0 => s.path = r.string(v, p)?,
                _ => s.allow_from = r.strings(v, p)?,
            }
            Ok(())
        })?;
        Ok(s)
    }
}

pub(super) struct RawConfig {
    endpoints: Vec<RawEndpoint>,
    groups: Option<Vec<String>>,
    route_header: String,
    failure: RawFailure,
    failover: RawFailover,
    verifier: RawVerifier,
    when_all_queued: String,
    status: RawStatus,
    fleet: Option<super::fleet::RawFleet>,
}

const CONFIG: Shape = Shape {
    name: "struct RawConfig",
    fields: &[
        "endpoints",
        "groups",
        "route_header",
        "failure",
        "failover",
        "verifier",
        "when_all_queued",
        "status",
        "fleet",
    ],
    required: 0b1,
    deny_unknown: true,
};

impl RawConfig {
    /// Reads the document the way `#[derive(Deserialize)]` with `deny_unknown_fields` and the
    /// defaults above did, with the same messages and paths.
    pub(super) fn read(r: &Reader<'_>, v: &Value) -> Result<Self, json::Error> {
        let mut c = RawConfig {
            endpoints: Vec::new(),
            groups: None,
            route_header: "x-failover-cluster".into(),
            failure: RawFailure::default(),
            failover: RawFailover::default(),
            verifier: RawVerifier::default(),
            when_all_queued: "least_recently_failed".into(),
            status: RawStatus::default(),
            fleet: None,
        };
        r.fields(v, &Path::ROOT, &CONFIG, &mut |i, v, p| {
            match i {
                0 => {
                    let items = r.array(v, p)?;
                    c.endpoints = Vec::with_capacity(items.len());
                    for (n, item) in items.iter().enumerate() {
                        c.endpoints.push(RawEndpoint::read(r, item, &p.index(n))?);
                    }
                }
                1 => {
                    c.groups = match v.is_null() {
                        true => None,
                        false => Some(r.strings(v, p)?),
                    }
                }
                2 => c.route_header = r.string(v, p)?,
                3 => c.failure = RawFailure::read(r, v, p)?,
                4 => c.failover = RawFailover::read(r, v, p)?,
                5 => c.verifier = RawVerifier::read(r, v, p)?,
                6 => c.when_all_queued = r.string(v, p)?,
                7 => c.status = RawStatus::read(r, v, p)?,
                _ => {
                    c.fleet = match v.is_null() {
                        true => None,
                        false => Some(super::fleet::RawFleet::read(r, v, p)?),
                    }
                }
            }
            Ok(())
        })?;
        Ok(c)
    }
}

// ===== validation =====

impl RawConfig {
    pub(super) fn validate(
        self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
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
            statuses: HttpStatusSet::parse("failure.statuses", &self.failure.statuses)?,
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
            healthy_statuses: HttpStatusSet::parse(
                "verifier.healthy_statuses",
                &v.healthy_statuses,
            )?,
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

        let fleet = self
            .fleet
            .map(|f| f.validate(env, verifier.timeout_ms))
            .transpose()?;

        Ok(Config {
            endpoints,
            groups,
            route_header,
            failure,
            failover,
            verifier,
            when_all_queued,
            status_page: StatusPageConfig {
                path: self.status.path,
                allow_from,
            },
            fleet,
        })
    }
}
