//! The typed `fleet` section of the plugin config (parsed and validated by
//! [`crate::config::Config::parse`], like every other section). `None` in
//! [`crate::config::Config::fleet`] means fleet mode is off and nothing changes.

use crate::config::HeaderValue;

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
    /// [`generated_member`], once per process (a reconfigure keeps it).
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
