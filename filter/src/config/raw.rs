//! The JSON shape as serde reads it (unknown fields denied, defaults filled), and its
//! validation into the typed model.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::fields::*;
use super::model::*;
use super::{invalid, Config, ConfigError};
use crate::envoy::ResponseFlags;

// ===== the raw JSON shape =====

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
pub(super) struct RawConfig {
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
    #[serde(default)]
    fleet: Option<super::fleet::RawFleet>,
}

fn default_route_header() -> String {
    "x-failover-cluster".into()
}

fn default_when_all_queued() -> String {
    "least_recently_failed".into()
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
