//! The process-wide metrics registry behind `proxy_define_metric` and friends.
//!
//! Why one registry: in Envoy a metric defined with the same name in every worker VM is ONE
//! stat (counters summed, gauges shared), and the admin `/stats` must show it that way. A
//! definition is keyed by (name, kind), so the same name and type from any VM returns the same
//! id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

/// The three metric kinds of the ABI (`proxy_define_metric`'s `metric_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[repr(u32)]
pub enum MetricKind {
    /// Monotonic; increments must be positive.
    Counter = 0,
    /// Goes up and down.
    Gauge = 1,
    /// Recorded values; `/stats` shows count and sum.
    Histogram = 2,
}

impl MetricKind {
    /// The kind for an ABI `metric_type`, `None` for unknown values.
    pub fn from_abi(value: u32) -> Option<Self> {
        match value {
            0 => Some(Self::Counter),
            1 => Some(Self::Gauge),
            2 => Some(Self::Histogram),
            _ => None,
        }
    }
}

/// Why a metric operation failed (mapped to the statuses the SDK expects).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MetricError {
    /// No metric has this id.
    #[error("metric not found")]
    NotFound,
    /// The operation does not fit the metric (non-positive counter increment, reading a
    /// histogram).
    #[error("bad argument for this metric")]
    BadArgument,
}

/// One metric value as `/stats` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MetricSample {
    /// The name the plugin defined.
    pub name: String,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// Counter total, gauge value, or for histograms the number of recorded values.
    pub value: i64,
    /// For histograms, the sum of recorded values; 0 otherwise.
    pub sum: u64,
}

struct Metric {
    name: String,
    kind: MetricKind,
    /// Counter total or gauge value.
    value: AtomicI64,
    /// Histogram: count and sum.
    hist_count: AtomicU64,
    hist_sum: AtomicU64,
}

/// The registry. Thread-safe; ids are process-wide.
#[derive(Default)]
pub struct Metrics {
    by_name: Mutex<HashMap<(String, MetricKind), u32>>,
    metrics: RwLock<Vec<Metric>>,
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Defines (or finds) the metric `name` of `kind`; the same pair always gives the same id.
    pub fn define(&self, kind: MetricKind, name: &str) -> u32 {
        let mut by_name = self.by_name.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(id) = by_name.get(&(name.to_string(), kind)) {
            return *id;
        }
        let mut metrics = self.metrics.write().unwrap_or_else(|p| p.into_inner());
        let id = metrics.len() as u32;
        metrics.push(Metric {
            name: name.to_string(),
            kind,
            value: AtomicI64::new(0),
            hist_count: AtomicU64::new(0),
            hist_sum: AtomicU64::new(0),
        });
        by_name.insert((name.to_string(), kind), id);
        id
    }

    fn with<R>(
        &self,
        id: u32,
        f: impl FnOnce(&Metric) -> Result<R, MetricError>,
    ) -> Result<R, MetricError> {
        let metrics = self.metrics.read().unwrap_or_else(|p| p.into_inner());
        let metric = metrics.get(id as usize).ok_or(MetricError::NotFound)?;
        f(metric)
    }

    /// Adds `offset`: counters need `offset > 0`; gauges take any sign; a histogram cannot be
    /// incremented (Envoy's `Context::incrementMetric` answers BAD_ARGUMENT for it; record it
    /// instead).
    ///
    /// # Errors
    /// `NotFound` for an unknown id, `BadArgument` for a non-positive counter increment or any
    /// histogram.
    pub fn increment(&self, id: u32, offset: i64) -> Result<(), MetricError> {
        self.with(id, |m| match m.kind {
            MetricKind::Counter if offset <= 0 => Err(MetricError::BadArgument),
            MetricKind::Counter | MetricKind::Gauge => {
                m.value.fetch_add(offset, Ordering::Relaxed);
                Ok(())
            }
            MetricKind::Histogram => Err(MetricError::BadArgument),
        })
    }

    /// Records `value`: sets a gauge, adds to a counter, records into a histogram.
    ///
    /// # Errors
    /// `NotFound` for an unknown id.
    pub fn record(&self, id: u32, value: u64) -> Result<(), MetricError> {
        self.with(id, |m| {
            match m.kind {
                MetricKind::Counter => {
                    m.value
                        .fetch_add(i64::try_from(value).unwrap_or(i64::MAX), Ordering::Relaxed);
                }
                MetricKind::Gauge => {
                    m.value
                        .store(i64::try_from(value).unwrap_or(i64::MAX), Ordering::Relaxed);
                }
                MetricKind::Histogram => {
                    m.hist_count.fetch_add(1, Ordering::Relaxed);
                    m.hist_sum.fetch_add(value, Ordering::Relaxed);
                }
            }
            Ok(())
        })
    }

    /// Reads a counter or gauge (negative gauges read as 0, the ABI value is unsigned).
    ///
    /// # Errors
    /// `NotFound` for an unknown id, `BadArgument` for a histogram.
    pub fn get(&self, id: u32) -> Result<u64, MetricError> {
        self.with(id, |m| match m.kind {
            MetricKind::Histogram => Err(MetricError::BadArgument),
            _ => Ok(u64::try_from(m.value.load(Ordering::Relaxed)).unwrap_or(0)),
        })
    }

    /// Every metric, sorted by name, for the admin `/stats` endpoints.
    pub fn snapshot(&self) -> Vec<MetricSample> {
        let metrics = self.metrics.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<MetricSample> = metrics
            .iter()
            .map(|m| match m.kind {
                MetricKind::Histogram => MetricSample {
                    name: m.name.clone(),
                    kind: m.kind,
                    value: i64::try_from(m.hist_count.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
                    sum: m.hist_sum.load(Ordering::Relaxed),
                },
                _ => MetricSample {
                    name: m.name.clone(),
                    kind: m.kind,
                    value: m.value.load(Ordering::Relaxed),
                    sum: 0,
                },
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_name_and_kind_is_one_metric() {
        let m = Metrics::new();
        let a = m.define(MetricKind::Counter, "x");
        let b = m.define(MetricKind::Counter, "x");
        let g = m.define(MetricKind::Gauge, "x");
        assert_eq!(a, b);
        assert_ne!(a, g);
        m.increment(a, 2).unwrap();
        m.increment(b, 3).unwrap();
        assert_eq!(m.get(a).unwrap(), 5);
    }

    #[test]
    fn counter_increment_must_be_positive() {
        let m = Metrics::new();
        let c = m.define(MetricKind::Counter, "c");
        assert_eq!(m.increment(c, 0), Err(MetricError::BadArgument));
        assert_eq!(m.increment(c, -1), Err(MetricError::BadArgument));
        assert_eq!(m.get(c).unwrap(), 0);
    }

    #[test]
    fn gauge_goes_both_ways_and_record_sets_it() {
        let m = Metrics::new();
        let g = m.define(MetricKind::Gauge, "g");
        m.increment(g, 5).unwrap();
        m.increment(g, -2).unwrap();
        assert_eq!(m.get(g).unwrap(), 3);
        m.record(g, 42).unwrap();
        assert_eq!(m.get(g).unwrap(), 42);
    }

    #[test]
    fn unknown_id_and_histogram_reads() {
        let m = Metrics::new();
        assert_eq!(m.get(7), Err(MetricError::NotFound));
        assert_eq!(m.increment(7, 1), Err(MetricError::NotFound));
        let h = m.define(MetricKind::Histogram, "h");
        assert_eq!(m.increment(h, 1), Err(MetricError::BadArgument));
        m.record(h, 10).unwrap();
        m.record(h, 20).unwrap();
        assert_eq!(m.get(h), Err(MetricError::BadArgument));
        let snap = m.snapshot();
        assert_eq!(snap[0].value, 2);
        assert_eq!(snap[0].sum, 30);
    }

    #[test]
    fn concurrent_increments_are_all_counted() {
        let m = std::sync::Arc::new(Metrics::new());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    let id = m.define(MetricKind::Counter, "shared");
                    for _ in 0..1000 {
                        m.increment(id, 1).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let id = m.define(MetricKind::Counter, "shared");
        assert_eq!(m.get(id).unwrap(), 4000);
    }
}
