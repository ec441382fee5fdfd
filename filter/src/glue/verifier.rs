//! Background re-checks of parked endpoints. Every root context ticks, but only the holder of
//! the lease in the shared record probes: the singleton `failover_verifier` service when the
//! bootstrap has one (it preempts workers), else whichever worker VM took the lease first. On
//! top of that each probe claims the endpoint's single in-flight slot by CAS, so two VMs never
//! probe one endpoint at the same time, even around a lease hand-over.

use std::collections::HashMap;
use std::time::Duration;

use log::{debug, info};

use super::host::{now_ms, Dispatch};
use super::plugin::Plugin;
use super::syncer::Syncer;
use crate::classify::{decode_status, Reason};
use crate::config::EndpointIdx;
use crate::probe;
use crate::retry_after;

/// Grace added to the probe timeout before another VM may probe the same endpoint again.
const CLAIM_SLACK_MS: u64 = 1000;

/// The verifier state of one root context.
pub struct Verifier {
    owner: String,
    singleton: bool,
    /// Probe calls: token → endpoint and, in fleet mode, the fleet claim it was made under.
    in_flight: HashMap<u32, (EndpointIdx, Option<u64>)>,
    leading: bool,
}

impl Verifier {
    /// `owner` identifies this root context in the lease; `singleton` outranks workers.
    pub fn new(owner: String, singleton: bool) -> Self {
        Self {
            owner,
            singleton,
            in_flight: HashMap::new(),
            leading: false,
        }
    }

    /// The tick period for a verifier interval: often enough to meet due times closely.
    pub fn tick_period(interval_ms: u64) -> Duration {
        Duration::from_millis((interval_ms / 4).clamp(50, 1000))
    }

    /// One tick: hold the lease, then (fleet mode) run the syncer, then probe every parked
    /// endpoint that is due. In fleet mode, while connected, a probe needs a fleet claim: the
    /// syncer asks for it in its next round and the probe goes out on the tick after the grant.
    pub fn tick(
        &mut self,
        plugin: &Plugin,
        dispatch: Dispatch<'_>,
        mut fleet: Option<&mut Syncer>,
    ) {
        let record = plugin.record();
        // In fleet mode the leader also syncs, so the lease is held even with an empty queue.
        if record.queue.is_empty() && fleet.is_none() {
            return;
        }
        let now = now_ms();
        let ttl = plugin.config.verifier.interval_ms.saturating_mul(3);
        let lease = &record.lease;
        let fresh = lease.owner == self.owner && lease.until_ms > now.saturating_add(ttl / 2);
        if !fresh {
            let may = lease.owner == self.owner || lease.until_ms <= now || self.singleton;
            let got = may
                && plugin
                    .update("taking the verifier lease", |r| {
                        r.acquire_lease(&self.owner, now, ttl, self.singleton)
                    })
                    .is_some_and(|up| up.outcome);
            if !got {
                if self.leading {
                    debug!("[{}] verifier lease moved to {}", plugin.label, lease.owner);
                }
                self.leading = false;
                return;
            }
            if !self.leading {
                info!("[{}] verifier running here ({})", plugin.label, self.owner);
                if let Some(syncer) = fleet.as_deref_mut() {
                    syncer.took_lead();
                }
            }
            self.leading = true;
        }
        if let Some(syncer) = fleet.as_deref_mut() {
            syncer.tick(plugin, dispatch);
        }
        // The syncer may have adopted or unparked endpoints.
        let record = plugin.record();
        for idx in plugin.config.indices() {
            let id = plugin.config.endpoint(idx).id.as_str();
            if !record.is_due(id, now) || self.in_flight.values().any(|(i, _)| *i == idx) {
                continue;
            }
            let mut claim = None;
            if let Some(syncer) = fleet.as_deref_mut().filter(|s| s.fleet_probes()) {
                match syncer.take_claim(id, now) {
                    Some(until) => claim = Some(until),
                    None => {
                        syncer.want_claim(id, now);
                        continue;
                    }
                }
            }
            let until = now
                .saturating_add(plugin.config.verifier.timeout_ms)
                .saturating_add(CLAIM_SLACK_MS);
            if plugin.claim_probe(idx, until) {
                self.probe(plugin, idx, claim, dispatch, fleet.as_deref_mut());
            }
        }
    }

    fn probe(
        &mut self,
        plugin: &Plugin,
        idx: EndpointIdx,
        claim: Option<u64>,
        dispatch: Dispatch<'_>,
        fleet: Option<&mut Syncer>,
    ) {
        let e = plugin.config.endpoint(idx);
        let p = &plugin.config.verifier.request;
        let authority = e.authority.as_deref().unwrap_or(&e.cluster);
        let mut headers: Vec<(&str, &str)> = vec![
            (":method", p.method.as_str()),
            (":path", p.path.as_str()),
            (":authority", authority),
            (":scheme", "http"),
            ("user-agent", "failover-verifier"),
        ];
        headers.extend(p.headers.iter().map(|(n, v)| (n.as_str(), v.expose())));
        for (n, v) in &e.request_headers {
            headers.retain(|(h, _)| h != n);
            headers.push((n.as_str(), v.expose()));
        }
        let body = (!p.body.is_empty()).then_some(p.body.as_bytes());
        let timeout = Duration::from_millis(plugin.config.verifier.timeout_ms);
        match dispatch(&e.cluster, headers, body, timeout) {
            Ok(token) => {
                debug!(
                    "[{}] probing endpoint \"{}\" (call {token})",
                    plugin.label, e.id
                );
                self.in_flight.insert(token, (idx, claim));
            }
            Err(status) => {
                let outcome =
                    plugin.record_check(idx, Err(format!("probe could not be sent: {status:?}")));
                if let (Some(until), Some(outcome), Some(s)) = (claim, outcome, fleet) {
                    s.push_verdict(e.id.as_str(), until, outcome);
                }
            }
        }
    }

    /// A probe's answer. Returns false when `token` is not a probe of ours.
    pub fn on_response(
        &mut self,
        plugin: &Plugin,
        token: u32,
        headers: Option<Vec<(String, Vec<u8>)>>,
        body: &[u8],
        fleet: Option<&mut Syncer>,
    ) -> bool {
        let Some((idx, claim)) = self.in_flight.remove(&token) else {
            return false;
        };
        let status = headers
            .as_ref()
            .and_then(|h| h.iter().find(|(n, _)| n == ":status"))
            .and_then(|(_, v)| decode_status(v));
        let verdict = probe::judge(&plugin.config.verifier, status, body);
        let deadline = match (status, &headers) {
            (Some(code), Some(h)) if verdict.is_err() => {
                let text: Vec<(String, String)> = h
                    .iter()
                    .map(|(n, v)| {
                        (
                            n.to_ascii_lowercase(),
                            String::from_utf8_lossy(v).into_owned(),
                        )
                    })
                    .collect();
                retry_after::deadline_ms(code, &text, now_ms())
            }
            _ => None,
        };
        let reason = verdict.clone().err();
        let outcome = plugin.record_check(idx, verdict);
        if let (Some(until), Some(outcome), Some(s)) = (claim, outcome, fleet) {
            s.push_verdict(plugin.config.endpoint(idx).id.as_str(), until, outcome);
        }
        if let (Some(deadline), Some(reason)) = (deadline, reason) {
            // The endpoint asked for time: no probe and no trial before then.
            plugin.record_failure(0, idx, &Reason::Probe(reason), Some(deadline));
        }
        true
    }
}
