//! Thin, non-panicking wrappers over the host calls the filter uses: shared data as a
//! [`SharedStore`], the clock, properties, metrics, HTTP calls.

use std::time::Duration;

use super::abi::{self, HostStatus, MetricType, SharedValue};
use super::calls;
use crate::store::{SetResult, SharedStore, StoreError};

/// Sends one HTTP call through the owning root context (so its answer is routed back to it):
/// the verifier's probes and the syncer's etcd calls.
pub type Dispatch<'a> =
    &'a dyn Fn(&str, Vec<(&str, &str)>, Option<&[u8]>, Duration) -> Result<u32, HostStatus>;

/// Sends an HTTP call on behalf of context `owner`, whose `on_http_call_response` gets the
/// answer.
pub fn dispatch_http_call(
    owner: u32,
    cluster: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<u32, HostStatus> {
    let token = abi::http_call(cluster, headers, body, timeout)?;
    calls::register(token, owner);
    Ok(token)
}

/// Shared data through the real host calls.
pub struct ProxyStore;

impl SharedStore for ProxyStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        match abi::get_shared_data(key) {
            Ok(SharedValue::Missing) => Ok(None),
            Ok(SharedValue::Present(value, cas)) => Ok(Some((value, cas))),
            Err(status) => Err(StoreError {
                op: "get",
                key: key.to_string(),
                detail: format!("{status:?}"),
            }),
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<SetResult, StoreError> {
        match abi::set_shared_data(key, value, cas) {
            Ok(()) => Ok(SetResult::Stored),
            Err(abi::CAS_MISMATCH) => Ok(SetResult::CasMismatch),
            Err(status) => Err(StoreError {
                op: "set",
                key: key.to_string(),
                detail: format!("{status:?}"),
            }),
        }
    }
}

/// Sets the filter's log filter to the host's level, so `debug!`/`trace!` lines are neither
/// formatted in the guest nor copied to the host when the host would drop them (Envoy logs
/// `info` and up by default). Called when a root context starts, is configured, and on every
/// tick, so a level changed at run time (Envoy's `/logging` admin endpoint) is followed within
/// one tick. An unknown answer leaves the level as it is.
pub fn follow_host_log_level() {
    if let Ok(raw) = abi::vm::log_level() {
        abi::logger::set_level(raw);
    }
}

/// Wall-clock ms since the Unix epoch, as the host tells it (0 if it cannot).
pub fn now_ms() -> u64 {
    abi::vm::current_time_ns().map_or(0, |ns| ns / 1_000_000)
}

/// A property's raw bytes; `None` when missing or unreadable.
pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    abi::property(path).ok().flatten()
}

/// A property as text, lossily decoded.
pub fn property_string(path: &[&str]) -> Option<String> {
    property(path).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// One metric, or nothing when the host would not define it (metrics must never break traffic).
#[derive(Debug, Clone, Copy)]
pub struct Metric(Option<u32>);

impl Metric {
    /// Defines (or finds: same name in every VM is one stat) a metric.
    pub fn define(kind: MetricType, name: &str) -> Self {
        Self(abi::define_metric(kind, name).ok())
    }

    /// Adds one to a counter.
    pub fn inc(self) {
        if let Some(id) = self.0 {
            let _ = abi::increment_metric(id, 1);
        }
    }

    /// Sets a gauge.
    pub fn set(self, value: u64) {
        if let Some(id) = self.0 {
            let _ = abi::record_metric(id, value);
        }
    }
}

/// The filter's Envoy stats. Counters are incremented only by the VM whose write made the
/// change, so summed over VMs they count each event once.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Every failure observed (each request × endpoint once).
    pub failures_observed: Metric,
    /// First insertions into the queue (== `total_failed`).
    pub queue_insertions: Metric,
    /// Endpoints brought back.
    pub recoveries: Metric,
    /// Current queue size.
    pub queue_size: Metric,
    /// Requests replayed to another endpoint.
    pub failovers: Metric,
    /// Verifier checks run.
    pub checks: Metric,
    /// Requests answered 503 because every endpoint was parked.
    pub rejected: Metric,
    /// Per endpoint, in config order.
    pub endpoints: Vec<EndpointMetrics>,
}

/// One endpoint's stats: `failover.endpoint.<name>.{parked,failures,parked_since_ms,
/// next_check_ms,retry_after_until_ms}` — what the status page shows, for dashboards and alerts
/// that only read Envoy's stats (the parking reason, a text, is on the status page only).
#[derive(Debug, Clone, Copy)]
pub struct EndpointMetrics {
    /// 1 while parked, 0 otherwise (set by the VM whose write changed the record).
    pub parked: Metric,
    /// Failures observed (each request × endpoint once).
    pub failures: Metric,
    /// When it was parked (ms since the Unix epoch); 0 while healthy.
    pub parked_since_ms: Metric,
    /// Earliest next verifier check (ms since the epoch); 0 while healthy.
    pub next_check_ms: Metric,
    /// The deadline an upstream asked for with `retry-after` or a rate-limit reset header
    /// (ms since the epoch); 0 when none or while healthy.
    pub retry_after_until_ms: Metric,
}

impl Metrics {
    /// Defines them all (in `on_configure`: not allowed earlier). Endpoint names are validated
    /// (`[A-Za-z0-9._-]`), so they are safe in stat names.
    pub fn define<'a>(endpoint_names: impl Iterator<Item = &'a str>) -> Self {
        Self {
            failures_observed: Metric::define(MetricType::Counter, "failover.failures_observed"),
            queue_insertions: Metric::define(MetricType::Counter, "failover.queue_insertions"),
            recoveries: Metric::define(MetricType::Counter, "failover.recoveries"),
            queue_size: Metric::define(MetricType::Gauge, "failover.queue_size"),
            failovers: Metric::define(MetricType::Counter, "failover.failovers"),
            checks: Metric::define(MetricType::Counter, "failover.verifier_checks"),
            rejected: Metric::define(MetricType::Counter, "failover.rejected"),
            endpoints: endpoint_names
                .map(|name| EndpointMetrics {
                    parked: Metric::define(
                        MetricType::Gauge,
                        &format!("failover.endpoint.{name}.parked"),
                    ),
                    failures: Metric::define(
                        MetricType::Counter,
                        &format!("failover.endpoint.{name}.failures"),
                    ),
                    parked_since_ms: Metric::define(
                        MetricType::Gauge,
                        &format!("failover.endpoint.{name}.parked_since_ms"),
                    ),
                    next_check_ms: Metric::define(
                        MetricType::Gauge,
                        &format!("failover.endpoint.{name}.next_check_ms"),
                    ),
                    retry_after_until_ms: Metric::define(
                        MetricType::Gauge,
                        &format!("failover.endpoint.{name}.retry_after_until_ms"),
                    ),
                })
                .collect(),
        }
    }
}
