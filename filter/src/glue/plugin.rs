//! What a configured root context shares with its HTTP contexts, and the only place that turns
//! outcomes of [`store::update`] into log lines and metrics: a first insertion is one `info`
//! line from the one VM whose write landed; repeats are `debug`.

use std::cell::RefCell;
use std::rc::Rc;

use log::{debug, error, info, warn};

use super::host::{now_ms, Metrics, ProxyStore};
use crate::classify::Reason;
use crate::config::{Config, EndpointIdx};
use crate::state::{Backoff, CheckOutcome, Failure, FailureOutcome, Record, SuccessOutcome};
use crate::store::{self, RecordCache, Updated};

/// One configured plugin instance (per root context).
pub struct Plugin {
    /// The validated config.
    pub config: Config,
    /// Its metrics.
    pub metrics: Metrics,
    /// Hot-path copy of the record.
    pub cache: RefCell<RecordCache>,
    /// Weighted-choice randomness.
    pub rng: RefCell<crate::select::Rng>,
    /// Label for log lines (`failover` / `failover_verifier`).
    pub label: String,
}

impl Plugin {
    /// The record as of now: one shared-data get, parsed only if it changed; shared, not
    /// copied (the caller may write through [`Plugin::update`] while holding it).
    pub fn record(&self) -> Rc<Record> {
        let mut cache = self.cache.borrow_mut();
        if let Err(e) = cache.refresh(&ProxyStore) {
            warn!(
                "[{}] reading the failure queue failed, using the last copy: {e}",
                self.label
            );
        }
        cache.shared()
    }

    /// Runs `transition` through the one CAS loop, logging host errors and corrupt records.
    pub fn update<T>(
        &self,
        what: &str,
        transition: impl FnMut(&mut Record) -> T,
    ) -> Option<Updated<T>> {
        match store::update(&ProxyStore, transition) {
            Ok(up) => {
                if up.replaced_corrupt {
                    error!(
                        "[{}] the shared failure record was corrupt or foreign and has been replaced",
                        self.label
                    );
                }
                if up.written {
                    self.publish_gauges(&up.record);
                }
                Some(up)
            }
            Err(e) => {
                error!("[{}] {what}: {e}", self.label);
                None
            }
        }
    }

    /// Sets the gauges from a record this VM just wrote (or read at start-up).
    pub fn publish_gauges(&self, record: &Record) {
        self.metrics.queue_size.set(record.queue.len() as u64);
        for (e, m) in self.config.endpoints.iter().zip(&self.metrics.endpoints) {
            let entry = record.queue.get(e.id.as_str());
            m.parked.set(u64::from(entry.is_some()));
            m.parked_since_ms.set(entry.map_or(0, |q| q.since_ms));
            m.next_check_ms.set(entry.map_or(0, |q| q.next_check_ms));
            m.retry_after_until_ms
                .set(entry.map_or(0, |q| q.not_before_ms));
        }
    }

    /// Records that `idx` failed (call once per request and endpoint).
    pub fn record_failure(
        &self,
        ctx: u32,
        idx: EndpointIdx,
        reason: &Reason,
        not_before_ms: Option<u64>,
    ) {
        let endpoint = self.config.endpoint(idx);
        let id = endpoint.id.as_str();
        let reason = reason.to_string();
        let now = now_ms();
        self.metrics.failures_observed.inc();
        if let Some(m) = self.metrics.endpoints.get(idx.get()) {
            m.failures.inc();
        }
        let failure = Failure {
            id,
            reason: &reason,
            now_ms: now,
            threshold: self.config.failure.threshold,
            interval_ms: self.config.verifier.interval_ms,
            not_before_ms,
        };
        let Some(up) = self.update("recording a failure", |r| r.record_failure(&failure)) else {
            return;
        };
        match up.outcome {
            FailureOutcome::Inserted => {
                self.metrics.queue_insertions.inc();
                info!(
                    "#{ctx} endpoint \"{id}\" added to failure queue: {reason} (queue size {}, total_failed {})",
                    up.record.queue.len(),
                    up.record.stats.total_failed
                );
            }
            FailureOutcome::Repeat => {
                debug!("#{ctx} endpoint \"{id}\" already in failure queue: {reason}")
            }
            FailureOutcome::Struck(n) => debug!(
                "#{ctx} endpoint \"{id}\" failed ({n} of {} before parking): {reason}",
                self.config.failure.threshold
            ),
        }
    }

    /// Records a healthy answer from `idx` to real traffic; writes only when there is
    /// something to clear (strikes, or a parked endpoint that this request's trial reached).
    pub fn record_success(&self, ctx: u32, idx: EndpointIdx, trial: bool) {
        let id = self.config.endpoint(idx).id.as_str();
        {
            let cache = self.cache.borrow();
            let r = cache.record();
            let parked = r.is_queued(id);
            if (!parked || !trial) && !r.strikes.contains_key(id) {
                return;
            }
        }
        let Some(up) = self.update("recording a success", |r| r.record_success(id, trial)) else {
            return;
        };
        match up.outcome {
            SuccessOutcome::Recovered => {
                self.metrics.recoveries.inc();
                info!(
                    "#{ctx} endpoint \"{id}\" recovered by a trial request (queue size {}, total_recovered {})",
                    up.record.queue.len(),
                    up.record.stats.total_recovered
                );
            }
            SuccessOutcome::StrikesCleared => debug!("#{ctx} endpoint \"{id}\" strikes cleared"),
            SuccessOutcome::Unchanged => {}
        }
    }

    /// Claims the one in-flight slot of a parked endpoint for a verifier probe until `until_ms`.
    pub fn claim_probe(&self, idx: EndpointIdx, until_ms: u64) -> bool {
        let id = self.config.endpoint(idx).id.as_str();
        let now = now_ms();
        self.update("claiming a probe slot", |r| {
            r.claim_probe(id, now, until_ms)
        })
        .is_some_and(|up| up.outcome)
    }

    /// Frees a trial's slot once its request has ended (see `Record::release_slot`).
    pub fn release_trial(&self, idx: EndpointIdx, until_ms: u64) {
        let id = self.config.endpoint(idx).id.as_str();
        self.update("releasing a trial slot", |r| r.release_slot(id, until_ms));
    }

    /// Claims the same slot for a `least_recently_failed` trial request until `until_ms`.
    pub fn claim_trial(&self, idx: EndpointIdx, until_ms: u64) -> bool {
        let id = self.config.endpoint(idx).id.as_str();
        let now = now_ms();
        self.update("claiming a trial slot", |r| {
            r.claim_trial(id, now, until_ms)
        })
        .is_some_and(|up| up.outcome)
    }

    /// Records one verifier check; its outcome (`None`: the record could not be written).
    pub fn record_check(
        &self,
        idx: EndpointIdx,
        verdict: Result<(), String>,
    ) -> Option<CheckOutcome> {
        let id = self.config.endpoint(idx).id.as_str();
        let v = &self.config.verifier;
        let backoff = Backoff {
            interval_ms: v.interval_ms,
            max_interval_ms: v.max_interval_ms,
        };
        let now = now_ms();
        let healthy = verdict.is_ok();
        let up = self.update("recording a check", |r| {
            r.record_check(id, healthy, now, backoff, v.success_threshold)
        })?;
        if up.outcome != CheckOutcome::NotQueued {
            self.metrics.checks.inc();
        }
        match up.outcome {
            CheckOutcome::Recovered => {
                self.metrics.recoveries.inc();
                info!(
                    "[{}] endpoint \"{id}\" recovered: check passed (queue size {}, total_recovered {})",
                    self.label,
                    up.record.queue.len(),
                    up.record.stats.total_recovered
                );
            }
            CheckOutcome::Healthy(n) => debug!(
                "[{}] endpoint \"{id}\" check passed ({n} of {})",
                self.label, v.success_threshold
            ),
            CheckOutcome::StillFailed { next_check_ms } => debug!(
                "[{}] endpoint \"{id}\" still failing: {}; next check in {} ms",
                self.label,
                verdict.err().unwrap_or_default(),
                next_check_ms.saturating_sub(now)
            ),
            CheckOutcome::NotQueued => {}
        }
        Some(up.outcome)
    }
}
