//! What the syncer tells the rest of its process about the fleet: a snapshot it writes to
//! shared data after every round, which every VM's status page reads. Pure: the glue stores the
//! bytes, the status page renders [`FleetStatus::render`].

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::record::FleetRecord;
use crate::state::Record;

/// Shared-data key of the snapshot (same `vm_id` namespace as the failure record).
pub const STATUS_KEY: &str = "failover.fleet.status.v1";

/// The syncer's view of the fleet, as of its last round.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FleetStatus {
    /// The last round succeeded and the member is not in local-only mode.
    pub connected: bool,
    /// Local-only mode: no good round for `offline_after_ms`; the local verifier probes alone.
    pub local_mode: bool,
    /// This member's name in the fleet record.
    pub member: String,
    /// When the last good round ended, ms since the epoch (0: never).
    pub last_sync_ms: u64,
    /// Rounds that ended well.
    pub syncs: u64,
    /// Rounds that failed (etcd down, timeout, unexpected answer, contention).
    pub sync_errors: u64,
    /// The last error, if the last round failed.
    pub last_error: String,
    /// Parks this member turned into fleet outages (its `NewOutage`s).
    pub outages_started: u64,
    /// Fleet parks this member adopted without observing them.
    pub adopted: u64,
    /// The fleet record as last read or written.
    pub record: FleetRecord,
}

impl FleetStatus {
    /// JSON bytes for shared data.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses stored bytes; `None` when they are not a snapshot.
    pub fn decode(bytes: &[u8]) -> Option<FleetStatus> {
        serde_json::from_slice(bytes).ok()
    }

    /// The status page's `fleet` object: the sync state, the fleet counters, and per endpoint
    /// of `names` the fleet's state next to the local one.
    pub fn render<'a>(&self, names: impl Iterator<Item = &'a str>, local: &Record) -> Value {
        let endpoints: Vec<Value> = names
            .map(|name| {
                let local_state = if local.is_queued(name) {
                    "parked"
                } else {
                    "healthy"
                };
                let mut v = json!({ "name": name, "local_state": local_state });
                match self.record.endpoint(name) {
                    Some(e) => {
                        v["fleet_state"] = json!(e.state);
                        v["generation"] = json!(e.generation);
                        v["since_ms"] = json!(e.since_ms);
                        v["reason"] = json!(e.reason);
                        v["first_member"] = json!(e.first_member);
                        v["recovered_ms"] = json!(e.recovered_ms);
                        v["next_check_ms"] = json!(e.next_check_ms.max(e.not_before_ms));
                        v["failed_checks"] = json!(e.failed_checks);
                        v["claim"] = json!(e.claim);
                    }
                    None => v["fleet_state"] = json!("healthy"),
                }
                v
            })
            .collect();
        json!({
            "enabled": true,
            "connected": self.connected,
            "local_mode": self.local_mode,
            "member": self.member,
            "last_sync_ms": self.last_sync_ms,
            "syncs": self.syncs,
            "sync_errors": self.sync_errors,
            "last_error": self.last_error,
            "outages_started_here": self.outages_started,
            "adopted": self.adopted,
            "stats": self.record.stats,
            "endpoints": endpoints,
        })
    }

    /// Carries on the process's counters from `last`, the snapshot the previous leader of this
    /// process published: a root context that takes the lead continues them instead of
    /// starting from its own (the counters are the process's, whichever VM syncs). Only a
    /// snapshot of the same member counts; a counter never goes down.
    pub fn continue_counts(&mut self, last: &FleetStatus) {
        if last.member != self.member {
            return;
        }
        self.syncs = self.syncs.max(last.syncs);
        self.sync_errors = self.sync_errors.max(last.sync_errors);
        self.outages_started = self.outages_started.max(last.outages_started);
        self.adopted = self.adopted.max(last.adopted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::merge::{apply, Observation};

    #[test]
    fn round_trips_and_renders_both_states() {
        let mut s = FleetStatus {
            connected: true,
            member: "m1".into(),
            ..FleetStatus::default()
        };
        apply(
            &mut s.record,
            &Observation::Park {
                id: "a".into(),
                member: "m1".into(),
                at_ms: 5,
                reason: "status 503".into(),
                not_before_ms: 0,
                next_check_ms: 10,
            },
        );
        assert_eq!(FleetStatus::decode(&s.encode()), Some(s.clone()));
        assert_eq!(FleetStatus::decode(b"nope"), None);
        let v = s.render(["a", "b"].into_iter(), &Record::default());
        assert_eq!(v["connected"], true);
        assert_eq!(v["stats"]["total_failed"], 1);
        assert_eq!(v["endpoints"][0]["fleet_state"], "parked");
        assert_eq!(v["endpoints"][0]["local_state"], "healthy");
        assert_eq!(v["endpoints"][1]["fleet_state"], "healthy");
    }

    #[test]
    fn a_new_leader_continues_the_counters_of_its_member_only() {
        let last = FleetStatus {
            member: "m1".into(),
            syncs: 7,
            sync_errors: 2,
            outages_started: 1,
            adopted: 3,
            ..FleetStatus::default()
        };
        let mut fresh = FleetStatus {
            member: "m1".into(),
            syncs: 1,
            ..FleetStatus::default()
        };
        fresh.continue_counts(&last);
        assert_eq!(
            (
                fresh.syncs,
                fresh.sync_errors,
                fresh.outages_started,
                fresh.adopted
            ),
            (7, 2, 1, 3)
        );
        // Its own counts are never lowered.
        let mut ahead = FleetStatus {
            member: "m1".into(),
            syncs: 9,
            outages_started: 4,
            ..FleetStatus::default()
        };
        ahead.continue_counts(&last);
        assert_eq!(
            (ahead.syncs, ahead.outages_started, ahead.adopted),
            (9, 4, 3)
        );
        // Another member's snapshot is not ours.
        let mut other = FleetStatus {
            member: "m2".into(),
            ..FleetStatus::default()
        };
        other.continue_counts(&last);
        assert_eq!((other.syncs, other.outages_started), (0, 0));
    }
}
