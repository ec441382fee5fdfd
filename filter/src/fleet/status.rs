//! What the syncer tells the rest of its process about the fleet: a snapshot it writes to
//! shared data after every round, which every VM's status page reads. Pure: the glue stores the
//! bytes, the status page renders [`FleetStatus::render`].

use super::record::{FleetRecord, FleetStats};
use crate::json::{self, Kind, Path, Reader, Shape, Value, Writer};
use crate::state::Record;

/// Shared-data key of the snapshot (same `vm_id` namespace as the failure record).
pub const STATUS_KEY: &str = "failover.fleet.status.v1";

/// The syncer's view of the fleet, as of its last round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
    /// JSON bytes for shared data (fields in declaration order).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.begin_object();
        w.field_bool("connected", self.connected);
        w.field_bool("local_mode", self.local_mode);
        w.field_str("member", &self.member);
        w.field_u64("last_sync_ms", self.last_sync_ms);
        w.field_u64("syncs", self.syncs);
        w.field_u64("sync_errors", self.sync_errors);
        w.field_str("last_error", &self.last_error);
        w.field_u64("outages_started", self.outages_started);
        w.field_u64("adopted", self.adopted);
        w.key("record");
        self.record.write(&mut w);
        w.end_object();
        w.into_bytes()
    }

    /// Parses stored bytes; `None` when they are not a snapshot.
    pub fn decode(bytes: &[u8]) -> Option<FleetStatus> {
        let doc = json::parse(bytes).ok()?;
        let r = Reader::new(bytes);
        let mut s = FleetStatus::default();
        r.fields(&doc, &Path::ROOT, &SHAPE, &mut |i, v, p| {
            match i {
                0 => s.connected = r.bool(v, p)?,
                1 => s.local_mode = r.bool(v, p)?,
                2 => s.member = r.string(v, p)?,
                3 => s.last_sync_ms = r.u64(v, p)?,
                4 => s.syncs = r.u64(v, p)?,
                5 => s.sync_errors = r.u64(v, p)?,
                6 => s.last_error = r.string(v, p)?,
                7 => s.outages_started = r.u64(v, p)?,
                8 => s.adopted = r.u64(v, p)?,
                _ => s.record = FleetRecord::read(&r, v, p)?,
            }
            Ok(())
        })
        .ok()?;
        Some(s)
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
                let mut fields = vec![
                    ("name", Value::str(name)),
                    ("local_state", Value::str(local_state)),
                ];
                match self.record.endpoint(name) {
                    Some(e) => {
                        let claim = match &e.claim {
                            Some(c) => Value::object(vec![
                                ("member", Value::str(&c.member)),
                                ("until_ms", Value::u64(c.until_ms)),
                            ]),
                            None => Value::new(Kind::Null),
                        };
                        fields.extend([
                            ("fleet_state", Value::str(e.state.as_str())),
                            ("generation", Value::u64(e.generation)),
                            ("since_ms", Value::u64(e.since_ms)),
                            ("reason", Value::str(&e.reason)),
                            ("first_member", Value::str(&e.first_member)),
                            ("recovered_ms", Value::u64(e.recovered_ms)),
                            (
                                "next_check_ms",
                                Value::u64(e.next_check_ms.max(e.not_before_ms)),
                            ),
                            ("failed_checks", Value::u64(u64::from(e.failed_checks))),
                            ("claim", claim),
                        ]);
                    }
                    None => fields.push(("fleet_state", Value::str("healthy"))),
                }
                Value::object(fields)
            })
            .collect();
        Value::object(vec![
            ("enabled", Value::bool(true)),
            ("connected", Value::bool(self.connected)),
            ("local_mode", Value::bool(self.local_mode)),
            ("member", Value::str(&self.member)),
            ("last_sync_ms", Value::u64(self.last_sync_ms)),
            ("syncs", Value::u64(self.syncs)),
            ("sync_errors", Value::u64(self.sync_errors)),
            ("last_error", Value::str(&self.last_error)),
            ("outages_started_here", Value::u64(self.outages_started)),
            ("adopted", Value::u64(self.adopted)),
            ("stats", stats_value(&self.record.stats)),
            ("endpoints", Value::new(Kind::Array(endpoints))),
        ])
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

const SHAPE: Shape = Shape {
    name: "struct FleetStatus",
    fields: &[
        "connected",
        "local_mode",
        "member",
        "last_sync_ms",
        "syncs",
        "sync_errors",
        "last_error",
        "outages_started",
        "adopted",
        "record",
    ],
    required: 0,
    deny_unknown: false,
};

fn stats_value(s: &FleetStats) -> Value {
    Value::object(vec![
        ("total_failed", Value::u64(s.total_failed)),
        ("total_recovered", Value::u64(s.total_recovered)),
        ("total_verified", Value::u64(s.total_verified)),
        ("total_still_failed", Value::u64(s.total_still_failed)),
    ])
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
        let text = s
            .render(["a", "b"].into_iter(), &Record::default())
            .to_string();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
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
