//! Thin, non-panicking wrappers over the host calls the filter uses: shared data as a
//! [`SharedStore`], the clock, properties, metrics.

use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{MetricType, Status};

use crate::store::{SetResult, SharedStore, StoreError};

/// Shared data through the real host calls.
pub struct ProxyStore;

impl SharedStore for ProxyStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        match hostcalls::get_shared_data(key) {
            Ok((None, None)) => Ok(None),
            Ok((value, cas)) => Ok(Some((value.unwrap_or_default(), cas.unwrap_or(0)))),
            Err(status) => Err(StoreError {
                op: "get",
                key: key.to_string(),
                detail: format!("{status:?}"),
            }),
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<SetResult, StoreError> {
        match hostcalls::set_shared_data(key, Some(value), Some(cas)) {
            Ok(()) => Ok(SetResult::Stored),
            Err(Status::CasMismatch) => Ok(SetResult::CasMismatch),
            Err(status) => Err(StoreError {
                op: "set",
                key: key.to_string(),
                detail: format!("{status:?}"),
            }),
        }
    }
}

/// Wall-clock ms since the Unix epoch, as the host tells it (0 if it cannot).
pub fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A property's raw bytes; `None` when missing or unreadable.
pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    hostcalls::get_property(path.to_vec()).ok().flatten()
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
        Self(hostcalls::define_metric(kind, name).ok())
    }

    /// Adds one to a counter.
    pub fn inc(self) {
        if let Some(id) = self.0 {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }

    /// Sets a gauge.
    pub fn set(self, value: u64) {
        if let Some(id) = self.0 {
            let _ = hostcalls::record_metric(id, value);
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

/// One endpoint's stats: `failover.endpoint.<name>.{parked,failures}`.
#[derive(Debug, Clone, Copy)]
pub struct EndpointMetrics {
    /// 1 while parked, 0 otherwise (set by the VM whose write changed the record).
    pub parked: Metric,
    /// Failures observed (each request × endpoint once).
    pub failures: Metric,
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
                })
                .collect(),
        }
    }
}
