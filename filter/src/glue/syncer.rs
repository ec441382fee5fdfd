//! Fleet mode's syncer: the one root context per process that verifies (the singleton service,
//! or the worker holding the verifier lease) runs a sync round with etcd every
//! `sync_interval_ms`. Never on the request path.
//!
//! ```text
//!  tick ─ due? ─ observations = pending_parks + local recoveries + queued claims/verdicts
//!              └ SyncRound::start ─ dispatch range ─▶ on_response ─┬─ Send: dispatch txn ─▶ …
//!                                                                  ├─ Done: log outcomes, adopt,
//!                                                                  │        store::update, snapshot
//!                                                                  └─ Failed: count, maybe offline
//! ```
//!
//! One round is in flight at a time. Only the member whose txn got
//! [`Outcome::NewOutage`] logs the fleet `info` line; adopting is `debug`. A parked endpoint is
//! probed (by the verifier) only under a claim this syncer got granted; without a good round
//! for `offline_after_ms` the member is in local-only mode and the verifier probes as it does
//! without fleet mode (one `warn` going offline, one `info` coming back).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::abi::MetricType;
use log::{debug, info, warn};

use super::host::{now_ms, Dispatch, Metric, ProxyStore};
use super::plugin::Plugin;
use crate::fleet::status::STATUS_KEY;
use crate::fleet::{
    adopt, apply_local, next_round_due, pending_parks, FleetConfig, FleetStatus, Observation,
    Outcome, Step, SyncRound, Verdict,
};
use crate::state::CheckOutcome;
use crate::store::{SharedStore, CREATE_CAS};

/// Txns per round before it gives up for this interval (contention).
const MAX_TXNS: u32 = 4;

/// Shared-data key of this process's generated member name (one per process).
const MEMBER_KEY: &str = "failover.fleet.member.v1";

/// The fleet's Envoy stats (defined only when fleet mode is on).
#[derive(Debug, Clone, Copy)]
pub struct FleetMetrics {
    /// 1 while connected, 0 in local-only mode or before the first good round.
    pub connected: Metric,
    /// Rounds that ended well.
    pub syncs: Metric,
    /// Rounds that failed.
    pub sync_errors: Metric,
    /// Outages this process started fleet-wide (summed over the fleet: `total_failed`).
    pub outages: Metric,
    /// Fleet parks adopted here.
    pub adopted: Metric,
    /// Probes made under a fleet claim.
    pub claimed_probes: Metric,
}

impl FleetMetrics {
    /// Defines them (in `on_configure`).
    pub fn define() -> Self {
        Self {
            connected: Metric::define(MetricType::Gauge, "failover.fleet.connected"),
            syncs: Metric::define(MetricType::Counter, "failover.fleet.syncs"),
            sync_errors: Metric::define(MetricType::Counter, "failover.fleet.sync_errors"),
            outages: Metric::define(MetricType::Counter, "failover.fleet.outages_started"),
            adopted: Metric::define(MetricType::Counter, "failover.fleet.adopted"),
            claimed_probes: Metric::define(MetricType::Counter, "failover.fleet.claimed_probes"),
        }
    }
}

/// The last snapshot the syncer of this process wrote (for the status page of any VM).
pub fn read_status() -> Option<FleetStatus> {
    match ProxyStore.get(STATUS_KEY) {
        Ok(Some((bytes, _))) => FleetStatus::decode(&bytes),
        _ => None,
    }
}

/// This process's member name: the configured one, else one generated once per process and
/// kept in shared data (so a lease hand-over between workers keeps the name).
pub fn member_name(cfg: &FleetConfig, seed: u64) -> String {
    if let Some(m) = &cfg.member {
        return m.clone();
    }
    let read = || match ProxyStore.get(MEMBER_KEY) {
        Ok(Some((bytes, _))) if !bytes.is_empty() => String::from_utf8(bytes).ok(),
        _ => None,
    };
    if let Some(m) = read() {
        return m;
    }
    let fresh = crate::fleet::config::generated_member(seed);
    // Inserts if still missing, mismatches if another VM won (see store.rs).
    let _ = ProxyStore.set(MEMBER_KEY, fresh.as_bytes(), CREATE_CAS);
    read().unwrap_or(fresh)
}

/// A round in flight.
struct InFlight {
    token: u32,
    round: SyncRound,
    observations: Vec<Observation>,
    deadline_ms: u64,
}

/// The syncer of one root context (it acts only while its verifier leads).
pub struct Syncer {
    cfg: FleetConfig,
    key: String,
    metrics: FleetMetrics,
    status: FleetStatus,
    started_ms: u64,
    next_round_ms: u64,
    in_flight: Option<InFlight>,
    /// Claims and verdicts waiting for the next round.
    queued: Vec<Observation>,
    /// Claims granted to this member: endpoint → `until_ms`, not yet used for a probe.
    granted: BTreeMap<String, u64>,
    /// Endpoints parked here at the end of the last good round (to see local recoveries).
    parked_after_sync: BTreeSet<String>,
}

impl Syncer {
    /// A syncer for `cfg`, as `member`.
    pub fn new(cfg: FleetConfig, member: String, metrics: FleetMetrics) -> Self {
        let now = now_ms();
        Self {
            key: cfg.key(),
            cfg,
            metrics,
            status: FleetStatus {
                member,
                ..FleetStatus::default()
            },
            started_ms: now,
            next_round_ms: 0,
            in_flight: None,
            queued: Vec::new(),
            granted: BTreeMap::new(),
            parked_after_sync: BTreeSet::new(),
        }
    }

    /// This root context just took the lead (the verifier lease) from another one of this
    /// process, or for the first time: carry on the process's counters from the snapshot the
    /// last leader published, so the status page's `syncs`, `outages_started` and `adopted`
    /// count for the process, not for whichever VM leads now. (Each counted from 0 before:
    /// after a lease moved, e.g. from the main thread's root context to the singleton, or
    /// under load, the page could show an outage this member started as never started.)
    pub fn took_lead(&mut self) {
        if let Some(last) = read_status() {
            self.status.continue_counts(&last);
        }
    }

    /// The config it runs with.
    pub fn config(&self) -> &FleetConfig {
        &self.cfg
    }

    /// The tick period the syncer needs.
    pub fn tick_period(&self) -> Duration {
        Duration::from_millis((self.cfg.sync_interval_ms / 4).clamp(20, 1000))
    }

    /// True while the fleet decides who probes (not in local-only mode).
    pub fn fleet_probes(&self) -> bool {
        !self.status.local_mode
    }

    /// Asks (next round) for the right to probe `id`, unless already asked or granted.
    pub fn want_claim(&mut self, id: &str, now: u64) {
        let asked = self
            .queued
            .iter()
            .any(|o| matches!(o, Observation::Claim { id: i, .. } if i == id));
        if asked || self.granted.contains_key(id) {
            return;
        }
        self.queued.push(Observation::Claim {
            id: id.to_string(),
            member: self.status.member.clone(),
            now_ms: now,
            until_ms: now.saturating_add(self.cfg.probe_claim_ms),
        });
    }

    /// Takes a granted, unexpired claim on `id` for a probe: its `until_ms`.
    pub fn take_claim(&mut self, id: &str, now: u64) -> Option<u64> {
        match self.granted.remove(id) {
            Some(until) if until > now => {
                self.metrics.claimed_probes.inc();
                Some(until)
            }
            _ => None,
        }
    }

    /// Pushes the verdict of a probe made under the claim `claim_until_ms` (next round).
    pub fn push_verdict(&mut self, id: &str, claim_until_ms: u64, outcome: CheckOutcome) {
        let verdict = match outcome {
            CheckOutcome::Recovered => Verdict::Recovered,
            CheckOutcome::Healthy(_) => Verdict::Healthy,
            CheckOutcome::StillFailed { next_check_ms } => Verdict::StillFailed { next_check_ms },
            // Unparked here meanwhile: the recovery goes out as such.
            CheckOutcome::NotQueued => return,
        };
        self.queued.push(Observation::Verdict {
            id: id.to_string(),
            member: self.status.member.clone(),
            claim_until_ms,
            at_ms: now_ms(),
            verdict,
        });
    }

    /// One tick of the leading root context: end a round that never answered, go offline
    /// when it is time, start a round when one is due.
    pub fn tick(&mut self, plugin: &Plugin, dispatch: Dispatch<'_>) {
        let now = now_ms();
        if self
            .in_flight
            .as_ref()
            .is_some_and(|f| now >= f.deadline_ms)
        {
            self.in_flight = None;
            self.failed(plugin, "no answer from etcd in time".into(), now);
        }
        self.check_offline(plugin, now);
        if self.in_flight.is_some() || now < self.next_round_ms {
            return;
        }
        self.next_round_ms = next_round_due(self.next_round_ms, now, self.cfg.sync_interval_ms);
        let local = plugin.record();
        let member = self.status.member.clone();
        // Claims only while fresh (a claim asked long ago would be granted for a stale need).
        self.queued.retain(|o| match o {
            Observation::Claim { now_ms, .. } => now.saturating_sub(*now_ms) < 1000,
            _ => true,
        });
        // Order: verdicts (a probe's recovery is counted as a verdict), parks, recoveries, and
        // claims last (a claim on an endpoint parked in the same round is granted at once).
        let (claims, mut observations): (Vec<_>, Vec<_>) = std::mem::take(&mut self.queued)
            .into_iter()
            .partition(|o| matches!(o, Observation::Claim { .. }));
        observations.extend(pending_parks(&local, &self.status.record, &member));
        // Parked here after the last round, healthy here now, still parked in the fleet: a
        // local recovery (trial request or local verifier) the fleet has not heard of.
        for id in &self.parked_after_sync {
            let fleet_parked = self
                .status
                .record
                .endpoint(id)
                .is_some_and(|e| e.is_parked());
            let verdict_queued = observations
                .iter()
                .any(|o| matches!(o, Observation::Verdict { id: i, .. } if i == id));
            if fleet_parked && !verdict_queued && !local.is_queued(id) {
                observations.push(Observation::Recover {
                    id: id.clone(),
                    at_ms: now,
                });
            }
        }
        observations.extend(claims);
        let (round, request) = SyncRound::start(self.key.clone(), observations.clone(), MAX_TXNS);
        let flight = InFlight {
            token: 0,
            round,
            observations,
            deadline_ms: now
                .saturating_add(self.cfg.timeout_ms.saturating_mul(u64::from(MAX_TXNS) + 1)),
        };
        self.send(plugin, flight, request, dispatch);
    }

    fn send(
        &mut self,
        plugin: &Plugin,
        mut flight: InFlight,
        request: crate::fleet::Request,
        dispatch: Dispatch<'_>,
    ) {
        let mut headers: Vec<(&str, &str)> = vec![
            (":method", "POST"),
            (":path", request.path),
            (":authority", self.cfg.cluster.as_str()),
            (":scheme", "http"),
            ("content-type", "application/json"),
        ];
        if let Some(a) = &self.cfg.authorization {
            headers.push(("authorization", a.expose()));
        }
        let timeout = Duration::from_millis(self.cfg.timeout_ms);
        match dispatch(&self.cfg.cluster, headers, Some(&request.body), timeout) {
            Ok(token) => {
                flight.token = token;
                self.in_flight = Some(flight);
            }
            Err(status) => {
                self.requeue(flight.observations);
                self.failed(
                    plugin,
                    format!(
                        "the etcd call could not be sent to cluster \"{}\": {status:?}",
                        self.cfg.cluster
                    ),
                    now_ms(),
                );
            }
        }
    }

    /// An answer to an HTTP call. False when `token` is not this syncer's.
    pub fn on_response(
        &mut self,
        plugin: &Plugin,
        token: u32,
        status: Option<u16>,
        body: &[u8],
        dispatch: Dispatch<'_>,
    ) -> bool {
        let Some(mut flight) = self.in_flight.take_if(|f| f.token == token) else {
            return false;
        };
        match flight.round.on_answer(status, body) {
            Step::Send(request) => self.send(plugin, flight, request, dispatch),
            Step::Done(round) => {
                let now = now_ms();
                self.logs_and_claims(plugin, &flight.observations, &round.outcomes);
                self.status.record = round.record;
                self.succeeded(plugin, now);
            }
            Step::Failed(e) => {
                self.requeue(flight.observations);
                self.failed(plugin, e.to_string(), now_ms());
            }
        }
        true
    }

    /// Verdicts must not be lost to a failed round; parks and recoveries are recomputed and
    /// claims asked again.
    fn requeue(&mut self, observations: Vec<Observation>) {
        let verdicts = observations
            .into_iter()
            .filter(|o| matches!(o, Observation::Verdict { .. }));
        self.queued.extend(verdicts);
    }

    fn logs_and_claims(
        &mut self,
        plugin: &Plugin,
        observations: &[Observation],
        outcomes: &[Outcome],
    ) {
        let label = &plugin.label;
        let member = &self.status.member;
        for (obs, outcome) in observations.iter().zip(outcomes) {
            let id = obs.id();
            match outcome {
                Outcome::NewOutage { generation } => {
                    self.status.outages_started = self.status.outages_started.saturating_add(1);
                    self.metrics.outages.inc();
                    let reason = match obs {
                        Observation::Park { reason, .. } => reason.as_str(),
                        _ => "",
                    };
                    info!(
                        "[{label}] fleet: endpoint \"{id}\" parked fleet-wide by {member}: {reason} (outage {generation})"
                    );
                }
                Outcome::AlreadyParked { generation } => debug!(
                    "[{label}] fleet: endpoint \"{id}\" already parked fleet-wide (outage {generation})"
                ),
                Outcome::Stale => debug!("[{label}] fleet: stale observation of \"{id}\" dropped"),
                Outcome::Recovered { generation } => info!(
                    "[{label}] fleet: endpoint \"{id}\" recovered fleet-wide by {member} (outage {generation} over)"
                ),
                Outcome::AlreadyHealthy => {}
                Outcome::ClaimGranted { until_ms } => {
                    debug!("[{label}] fleet: probe claim on \"{id}\" granted until {until_ms}");
                    self.granted.insert(id.to_string(), *until_ms);
                }
                Outcome::ClaimDenied(d) => {
                    debug!("[{label}] fleet: probe claim on \"{id}\" denied: {d:?}")
                }
                Outcome::VerdictCounted => match obs {
                    Observation::Verdict {
                        verdict: Verdict::Recovered,
                        ..
                    } => info!(
                        "[{label}] fleet: endpoint \"{id}\" recovered fleet-wide: {member}'s check passed"
                    ),
                    _ => debug!("[{label}] fleet: probe verdict on \"{id}\" recorded"),
                },
            }
        }
    }

    fn succeeded(&mut self, plugin: &Plugin, now: u64) {
        let label = &plugin.label;
        let config = &plugin.config;
        let local = plugin.record();
        let actions = adopt(&self.status.record, &local, |id| {
            config.index_of(id).is_some()
        });
        if !actions.is_empty() {
            let up = plugin.update("adopting the fleet record", |r| {
                actions
                    .iter()
                    .map(|a| apply_local(r, a))
                    .collect::<Vec<bool>>()
            });
            if let Some(up) = up {
                for (a, changed) in actions.iter().zip(&up.outcome) {
                    if !changed {
                        continue;
                    }
                    match a {
                        crate::fleet::LocalAction::Park { id, reason, .. } => {
                            self.status.adopted = self.status.adopted.saturating_add(1);
                            self.metrics.adopted.inc();
                            debug!(
                                "[{label}] fleet: adopted the fleet's park of \"{id}\": {reason}"
                            )
                        }
                        crate::fleet::LocalAction::Unpark { id } => {
                            debug!("[{label}] fleet: \"{id}\" recovered fleet-wide; unparked here")
                        }
                        crate::fleet::LocalAction::Extend { id, .. } => {
                            debug!("[{label}] fleet: took the fleet's later deadline for \"{id}\"")
                        }
                    }
                }
            }
        }
        let local = plugin.record();
        self.parked_after_sync = local.queue.keys().cloned().collect();
        // Granted claims of endpoints no longer parked fleet-wide are void.
        let record = &self.status.record;
        self.granted
            .retain(|id, until| *until > now && record.endpoint(id).is_some_and(|e| e.is_parked()));
        if self.status.local_mode {
            info!(
                "[{label}] fleet: etcd reachable again; fleet mode resumed as {} (fleet total_failed {})",
                self.status.member, self.status.record.stats.total_failed
            );
        } else if self.status.syncs == 0 {
            info!(
                "[{label}] fleet: connected to etcd as {} (fleet total_failed {})",
                self.status.member, self.status.record.stats.total_failed
            );
        }
        self.status.local_mode = false;
        self.status.connected = true;
        self.status.last_sync_ms = now;
        self.status.syncs = self.status.syncs.saturating_add(1);
        self.status.last_error.clear();
        self.metrics.syncs.inc();
        self.metrics.connected.set(1);
        self.publish();
    }

    fn failed(&mut self, plugin: &Plugin, error: String, now: u64) {
        debug!("[{}] fleet: sync round failed: {error}", plugin.label);
        self.status.sync_errors = self.status.sync_errors.saturating_add(1);
        self.status.last_error = error;
        self.metrics.sync_errors.inc();
        // Claims granted earlier may still be used until they expire; new ones need etcd.
        self.check_offline(plugin, now);
        self.publish();
    }

    fn check_offline(&mut self, plugin: &Plugin, now: u64) {
        if self.status.local_mode {
            return;
        }
        let since = self.status.last_sync_ms.max(self.started_ms);
        if now.saturating_sub(since) <= self.cfg.offline_after_ms {
            return;
        }
        warn!(
            "[{}] fleet: no good sync with etcd (cluster \"{}\") for {} ms: local-only mode, the local verifier probes again: {}",
            plugin.label,
            self.cfg.cluster,
            now.saturating_sub(since),
            if self.status.last_error.is_empty() { "no answer" } else { &self.status.last_error },
        );
        self.status.local_mode = true;
        self.status.connected = false;
        self.granted.clear();
        self.queued
            .retain(|o| !matches!(o, Observation::Claim { .. }));
        self.metrics.connected.set(0);
        self.publish();
    }

    /// Writes the snapshot for the status pages of this process (overwrite: one writer).
    fn publish(&self) {
        let _ = ProxyStore.set(STATUS_KEY, &self.status.encode(), 0);
    }
}
