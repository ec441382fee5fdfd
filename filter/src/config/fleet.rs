//! The `fleet` section: its JSON shape and its validation into [`FleetConfig`].

use super::fields::{call_timeout, opt_string, positive, resolve_env};
use super::FleetConfig;
use super::{invalid, ConfigError};
use crate::json::{self, Path, Reader, Shape, Value};

pub(super) struct RawFleet {
    cluster: String,
    key_prefix: String,
    member: Option<String>,
    sync_interval_ms: u64,
    timeout_ms: Option<u64>,
    offline_after_ms: Option<u64>,
    probe_claim_ms: Option<u64>,
    authorization: Option<String>,
}

const FLEET: Shape = Shape {
    name: "struct RawFleet",
    fields: &[
        "cluster",
        "key_prefix",
        "member",
        "sync_interval_ms",
        "timeout_ms",
        "offline_after_ms",
        "probe_claim_ms",
        "authorization",
    ],
    required: 0b1,
    deny_unknown: true,
};

impl RawFleet {
    /// Reads the section as serde's derive did (`cluster` required, the rest defaulted).
    pub(super) fn read(r: &Reader<'_>, v: &Value, path: &Path<'_>) -> Result<Self, json::Error> {
        let mut f = RawFleet {
            cluster: String::new(),
            key_prefix: "/failover".into(),
            member: None,
            sync_interval_ms: 1000,
            timeout_ms: None,
            offline_after_ms: None,
            probe_claim_ms: None,
            authorization: None,
        };
        let opt_u64 = |v: &Value, p: &Path<'_>| -> Result<Option<u64>, json::Error> {
            if v.is_null() {
                Ok(None)
            } else {
                r.u64(v, p).map(Some)
            }
        };
        r.fields(v, path, &FLEET, &mut |i, v, p| {
            match i {
                0 => f.cluster = r.string(v, p)?,
                1 => f.key_prefix = r.string(v, p)?,
                2 => f.member = opt_string(r, v, p)?,
                3 => f.sync_interval_ms = r.u64(v, p)?,
                4 => f.timeout_ms = opt_u64(v, p)?,
                5 => f.offline_after_ms = opt_u64(v, p)?,
                6 => f.probe_claim_ms = opt_u64(v, p)?,
                _ => f.authorization = opt_string(r, v, p)?,
            }
            Ok(())
        })?;
        Ok(f)
    }
}

/// Longest default etcd call timeout; a shorter interval gets half of it.
const DEFAULT_TIMEOUT_MS: u64 = 500;

impl RawFleet {
    /// Validates; `verifier_timeout_ms` is the probe timeout a claim must outlast.
    pub(super) fn validate(
        self,
        env: &dyn Fn(&str) -> Option<String>,
        verifier_timeout_ms: u64,
    ) -> Result<FleetConfig, ConfigError> {
        if self.cluster.trim().is_empty() {
            return Err(invalid("fleet.cluster", "must not be empty"));
        }
        let prefix = &self.key_prefix;
        if prefix.trim_end_matches('/').is_empty()
            || !prefix.starts_with('/')
            || !prefix.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(invalid(
                "fleet.key_prefix",
                format!("{prefix:?} must start with '/' and hold visible ASCII characters only"),
            ));
        }
        let member = match &self.member {
            Some(text) => {
                let name = resolve_env("fleet.member", text, env)?.expose().to_string();
                if !valid_member(&name) {
                    return Err(invalid(
                        "fleet.member",
                        format!("{name:?} is not a member name (1-128 visible ASCII characters)"),
                    ));
                }
                Some(name)
            }
            None => env("HOSTNAME").filter(|h| valid_member(h)),
        };
        let sync = positive("fleet.sync_interval_ms", self.sync_interval_ms)?;
        let timeout_ms = match self.timeout_ms {
            None => DEFAULT_TIMEOUT_MS.min(sync / 2).max(1),
            Some(t) => {
                let t = call_timeout("fleet.timeout_ms", t)?;
                if t >= sync {
                    return Err(invalid(
                        "fleet.timeout_ms",
                        format!(
                            "{t} is not below fleet.sync_interval_ms ({sync}): rounds would overlap"
                        ),
                    ));
                }
                t
            }
        };
        let offline_after_ms = match self.offline_after_ms {
            None => sync.saturating_mul(5),
            Some(o) if o < sync => {
                return Err(invalid(
                    "fleet.offline_after_ms",
                    format!("{o} is below fleet.sync_interval_ms ({sync})"),
                ))
            }
            Some(o) => o,
        };
        let probe_claim_ms = match self.probe_claim_ms {
            None => verifier_timeout_ms.saturating_add(sync.saturating_mul(2)),
            Some(c) if c <= verifier_timeout_ms => {
                return Err(invalid(
                    "fleet.probe_claim_ms",
                    format!(
                        "{c} does not outlast verifier.timeout_ms ({verifier_timeout_ms}): a \
                         second member could probe while the first probe still runs"
                    ),
                ))
            }
            Some(c) => c,
        };
        let authorization = self
            .authorization
            .as_deref()
            .map(|a| resolve_env("fleet.authorization", a, env))
            .transpose()?;
        if authorization
            .as_ref()
            .is_some_and(|a| a.expose().is_empty())
        {
            return Err(invalid("fleet.authorization", "must not be empty"));
        }
        Ok(FleetConfig {
            cluster: self.cluster,
            key_prefix: self.key_prefix,
            member,
            sync_interval_ms: sync,
            timeout_ms,
            offline_after_ms,
            probe_claim_ms,
            authorization,
        })
    }
}

/// A member name for a process that has no configured one and no `HOSTNAME`: `member-` and 16
/// hex digits from `seed` (the glue mixes the clock and the root context id). Pure so that tests
/// and the glue agree on the shape.
pub fn generated_member(seed: u64) -> String {
    // splitmix64 finalizer: nearby seeds give unrelated names.
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    format!("member-{:016x}", z ^ (z >> 31))
}

/// True when `name` can be a member name: 1–128 visible ASCII characters (hostnames, pod
/// names), so it prints in logs and JSON as it is.
pub fn valid_member(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && name.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_are_valid_and_differ() {
        let a = generated_member(1);
        let b = generated_member(2);
        assert_ne!(a, b);
        assert!(
            valid_member(&a) && a.starts_with("member-") && a.len() == 23,
            "{a}"
        );
        assert_eq!(generated_member(1), a, "pure");
    }
}
