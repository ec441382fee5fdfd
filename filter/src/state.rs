//! The shared record — the failure queue, strikes, the seed's four counters and the verifier
//! lease — and its pure transitions.
//!
//! Every transition is a plain function on `&mut Record` that decides from the state it is
//! given. [`crate::store::update`] hands it the freshest state and only keeps the result if its
//! compare-and-swap succeeds, so "this call inserted the endpoint" and "`total_failed` went up"
//! are decided and written together, exactly once, however many VMs race.

use std::collections::BTreeMap;

use crate::json::{self, Path, Reader, Shape, Value, Writer};

/// The shared-data key of the record (versioned: a future incompatible layout gets a new key).
pub const RECORD_KEY: &str = "failover.v1";

/// The seed's counters. They only ever go up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// First insertions into the queue.
    pub total_failed: u64,
    /// Verifier checks run (each check of a parked endpoint counts once).
    pub total_verified: u64,
    /// Endpoints brought back from the queue.
    pub total_recovered: u64,
    /// Checks that found the endpoint still failing.
    pub total_still_failed: u64,
}

/// One parked endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueEntry {
    /// When it was parked (ms since the Unix epoch).
    pub since_ms: u64,
    /// Why it was parked (the first failure).
    pub reason: String,
    /// Last verifier check, 0 if none yet.
    pub last_check_ms: u64,
    /// Earliest next check.
    pub next_check_ms: u64,
    /// Failed checks so far (drives the back-off).
    pub checks: u32,
    /// Healthy checks in a row.
    pub ok_streak: u32,
    /// Failures observed while parked, the first included.
    pub failures: u64,
    /// Deadline an upstream asked for (`retry-after`); nothing reaches the endpoint before it.
    /// 0 when none. Only ever moves later while the endpoint stays parked.
    pub not_before_ms: u64,
    /// A probe or trial request is in flight until this moment (0: none); keeps it to one.
    pub probe_until_ms: u64,
}

/// Which VM runs the verifier.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lease {
    /// Holder id, empty when never taken.
    pub owner: String,
    /// Expiry (ms since the epoch).
    pub until_ms: u64,
}

/// Everything the VMs share, stored as JSON under [`RECORD_KEY`]. Unknown top-level keys make
/// it foreign (another plugin's value under our key): it is then replaced, with an error log,
/// instead of being read as an empty record. (An incompatible layout gets a new key.)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// Parked endpoints by name.
    pub queue: BTreeMap<String, QueueEntry>,
    /// Failures in a row of endpoints not (yet) parked, when `failure.threshold` > 1.
    pub strikes: BTreeMap<String, u32>,
    /// The counters.
    pub stats: Stats,
    /// The verifier lease.
    pub lease: Lease,
}

// ===== JSON =====

const RECORD: Shape = Shape {
    name: "struct Record",
    fields: &["queue", "strikes", "stats", "lease"],
    required: 0,
    deny_unknown: true,
};

const STATS: Shape = Shape {
    name: "struct Stats",
    fields: &[
        "total_failed",
        "total_verified",
        "total_recovered",
        "total_still_failed",
    ],
    required: 0,
    deny_unknown: false,
};

const QUEUE_ENTRY: Shape = Shape {
    name: "struct QueueEntry",
    fields: &[
        "since_ms",
        "reason",
        "last_check_ms",
        "next_check_ms",
        "checks",
        "ok_streak",
        "failures",
        "not_before_ms",
        "probe_until_ms",
    ],
    required: 0,
    deny_unknown: false,
};

const LEASE: Shape = Shape {
    name: "struct Lease",
    fields: &["owner", "until_ms"],
    required: 0,
    deny_unknown: false,
};

impl Stats {
    /// Reads the counters (missing ones are 0, unknown keys skipped).
    ///
    /// # Errors
    /// Not an object (or array) of unsigned integers.
    pub fn read(r: &Reader<'_>, v: &Value, path: &Path<'_>) -> Result<Stats, json::Error> {
        let mut s = Stats::default();
        r.fields(v, path, &STATS, &mut |i, v, p| {
            let n = r.u64(v, p)?;
            match i {
                0 => s.total_failed = n,
                1 => s.total_verified = n,
                2 => s.total_recovered = n,
                _ => s.total_still_failed = n,
            }
            Ok(())
        })?;
        Ok(s)
    }

    /// Writes the counters as an object, in declaration order.
    pub fn write(&self, w: &mut Writer) {
        w.begin_object();
        w.field_u64("total_failed", self.total_failed);
        w.field_u64("total_verified", self.total_verified);
        w.field_u64("total_recovered", self.total_recovered);
        w.field_u64("total_still_failed", self.total_still_failed);
        w.end_object();
    }
}

impl QueueEntry {
    fn read(r: &Reader<'_>, v: &Value, path: &Path<'_>) -> Result<QueueEntry, json::Error> {
        let mut e = QueueEntry::default();
        r.fields(v, path, &QUEUE_ENTRY, &mut |i, v, p| {
            match i {
                0 => e.since_ms = r.u64(v, p)?,
                1 => e.reason = r.string(v, p)?,
                2 => e.last_check_ms = r.u64(v, p)?,
                3 => e.next_check_ms = r.u64(v, p)?,
                4 => e.checks = r.u32(v, p)?,
                5 => e.ok_streak = r.u32(v, p)?,
                6 => e.failures = r.u64(v, p)?,
                7 => e.not_before_ms = r.u64(v, p)?,
                _ => e.probe_until_ms = r.u64(v, p)?,
            }
            Ok(())
        })?;
        Ok(e)
    }

    /// Writes the entry as an object, fields in declaration order (the stored format).
    pub fn write(&self, w: &mut Writer) {
        w.begin_object();
        w.field_u64("since_ms", self.since_ms);
        w.field_str("reason", &self.reason);
        w.field_u64("last_check_ms", self.last_check_ms);
        w.field_u64("next_check_ms", self.next_check_ms);
        w.field_u64("checks", u64::from(self.checks));
        w.field_u64("ok_streak", u64::from(self.ok_streak));
        w.field_u64("failures", self.failures);
        w.field_u64("not_before_ms", self.not_before_ms);
        w.field_u64("probe_until_ms", self.probe_until_ms);
        w.end_object();
    }
}

impl Lease {
    fn read(r: &Reader<'_>, v: &Value, path: &Path<'_>) -> Result<Lease, json::Error> {
        let mut l = Lease::default();
        r.fields(v, path, &LEASE, &mut |i, v, p| {
            match i {
                0 => l.owner = r.string(v, p)?,
                _ => l.until_ms = r.u64(v, p)?,
            }
            Ok(())
        })?;
        Ok(l)
    }
}

/// A failure report, as the request path or the verifier makes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure<'a> {
    /// Endpoint name.
    pub id: &'a str,
    /// Human-readable reason.
    pub reason: &'a str,
    /// Now, ms since the epoch.
    pub now_ms: u64,
    /// Failures in a row that park the endpoint.
    pub threshold: u32,
    /// First check delay after parking.
    pub interval_ms: u64,
    /// A `retry-after` style deadline the answer carried.
    pub not_before_ms: Option<u64>,
}

/// What [`Record::record_failure`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureOutcome {
    /// First insertion: counted in `total_failed`. Only one writer ever sees this per insertion.
    Inserted,
    /// Already parked: nothing counted.
    Repeat,
    /// Not parked yet: this many failures in a row so far.
    Struck(u32),
}

/// What [`Record::record_success`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuccessOutcome {
    /// Nothing to change.
    Unchanged,
    /// Pending strikes were forgotten.
    StrikesCleared,
    /// A parked endpoint answered a (trial) request: it is back, counted in `total_recovered`.
    Recovered,
}

/// What [`Record::record_check`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOutcome {
    /// The endpoint was not parked (any more): nothing counted.
    NotQueued,
    /// Healthy, but fewer than `success_threshold` in a row yet.
    Healthy(u32),
    /// Back in rotation.
    Recovered,
    /// Still failing; next check at this time.
    StillFailed {
        /// Next check, ms since the epoch.
        next_check_ms: u64,
    },
}

/// Back-off parameters for checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Base interval.
    pub interval_ms: u64,
    /// Cap.
    pub max_interval_ms: u64,
}

impl Backoff {
    /// Delay after `failed_checks` failed checks: interval × 2^n, capped.
    pub fn delay(&self, failed_checks: u32) -> u64 {
        let factor = 1u64.checked_shl(failed_checks.min(40)).unwrap_or(u64::MAX);
        self.interval_ms
            .saturating_mul(factor)
            .min(self.max_interval_ms)
    }
}

impl Record {
    /// Decodes a stored record. An empty value (the SDK's "remove") is a fresh record.
    ///
    /// Reads what serde's derive read before (issue 16 replaced it): every field optional,
    /// unknown keys inside an entry skipped, unknown top-level keys refused.
    ///
    /// # Errors
    /// The JSON error, for a corrupt or foreign value; the caller replaces it.
    pub fn decode(bytes: &[u8]) -> Result<Record, json::Error> {
        if bytes.is_empty() {
            return Ok(Record::default());
        }
        // Only an object is ours: serde would also accept a JSON array as the struct's fields
        // in order, so `[]` written by someone else would read as an empty record.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(json::Error::custom(
                "the shared record is not a JSON object",
            ));
        }
        let (doc, trailing) = json::parse_with_tail(bytes)?;
        let r = Reader::new(bytes);
        let mut out = Record::default();
        let root = Path::ROOT;
        r.fields(&doc, &root, &RECORD, &mut |i, v, p| {
            match i {
                0 => {
                    out.queue = BTreeMap::new();
                    for m in r.map(v, p)? {
                        let entry = QueueEntry::read(&r, &m.value, &p.key(&m.key))?;
                        out.queue.insert(m.key.clone(), entry);
                    }
                }
                1 => {
                    out.strikes = BTreeMap::new();
                    for m in r.map(v, p)? {
                        out.strikes
                            .insert(m.key.clone(), r.u32(&m.value, &p.key(&m.key))?);
                    }
                }
                2 => out.stats = Stats::read(&r, v, p)?,
                _ => out.lease = Lease::read(&r, v, p)?,
            }
            Ok(())
        })?;
        match trailing {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Encodes for storage: the fields in declaration order, as serde wrote them.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.begin_object();
        w.key("queue");
        w.begin_object();
        for (name, e) in &self.queue {
            w.key(name);
            e.write(&mut w);
        }
        w.end_object();
        w.key("strikes");
        w.begin_object();
        for (name, n) in &self.strikes {
            w.field_u64(name, u64::from(*n));
        }
        w.end_object();
        w.key("stats");
        self.stats.write(&mut w);
        w.key("lease");
        w.begin_object();
        w.field_str("owner", &self.lease.owner);
        w.field_u64("until_ms", self.lease.until_ms);
        w.end_object();
        w.end_object();
        w.into_bytes()
    }

    /// True when `id` is parked.
    pub fn is_queued(&self, id: &str) -> bool {
        self.queue.contains_key(id)
    }

    /// Records a failure of `f.id`; parks it on the `threshold`-th failure in a row.
    pub fn record_failure(&mut self, f: &Failure<'_>) -> FailureOutcome {
        let not_before = f.not_before_ms.unwrap_or(0);
        if let Some(entry) = self.queue.get_mut(f.id) {
            entry.failures = entry.failures.saturating_add(1);
            // A later deadline pushes the next check out. (A failed trial frees its slot only
            // when its request has ended: `release_slot`.)
            if not_before > entry.not_before_ms {
                entry.not_before_ms = not_before;
            }
            entry.next_check_ms = entry.next_check_ms.max(entry.not_before_ms);
            return FailureOutcome::Repeat;
        }
        let strikes = self
            .strikes
            .get(f.id)
            .copied()
            .unwrap_or(0)
            .saturating_add(1);
        if strikes < f.threshold {
            self.strikes.insert(f.id.to_string(), strikes);
            return FailureOutcome::Struck(strikes);
        }
        self.strikes.remove(f.id);
        self.queue.insert(
            f.id.to_string(),
            QueueEntry {
                since_ms: f.now_ms,
                reason: f.reason.to_string(),
                last_check_ms: 0,
                next_check_ms: f.now_ms.saturating_add(f.interval_ms).max(not_before),
                checks: 0,
                ok_streak: 0,
                failures: 1,
                not_before_ms: not_before,
                probe_until_ms: 0,
            },
        );
        self.stats.total_failed = self.stats.total_failed.saturating_add(1);
        FailureOutcome::Inserted
    }

    /// Records a successful answer from `id` to real traffic. Clears strikes. A parked
    /// endpoint is recovered only by the answer to a trial (`trial`: the request claimed the
    /// endpoint's slot with [`Record::claim_trial`]); an answer to a request routed there before
    /// it was parked leaves it parked.
    pub fn record_success(&mut self, id: &str, trial: bool) -> SuccessOutcome {
        if self.queue.contains_key(id) {
            if !trial {
                return SuccessOutcome::Unchanged;
            }
            self.queue.remove(id);
            self.strikes.remove(id);
            self.stats.total_recovered = self.stats.total_recovered.saturating_add(1);
            return SuccessOutcome::Recovered;
        }
        if self.strikes.remove(id).is_some() {
            return SuccessOutcome::StrikesCleared;
        }
        SuccessOutcome::Unchanged
    }

    /// True when the verifier may probe `id` now: parked, its next check has come, past any
    /// `retry-after`, and no probe or trial in flight.
    pub fn is_due(&self, id: &str, now_ms: u64) -> bool {
        self.queue
            .get(id)
            .is_some_and(|e| e.next_check_ms <= now_ms && self.is_free(id, now_ms))
    }

    /// True when `id` is parked, past any `retry-after`, with no probe or trial in flight: a
    /// `least_recently_failed` trial may go (it does not wait for the verifier's schedule).
    pub fn is_free(&self, id: &str, now_ms: u64) -> bool {
        self.queue
            .get(id)
            .is_some_and(|e| e.not_before_ms <= now_ms && e.probe_until_ms <= now_ms)
    }

    /// Claims the single in-flight slot of a parked endpoint for a verifier probe until
    /// `until_ms`. Returns false (and changes nothing) when it is not [`Record::is_due`].
    pub fn claim_probe(&mut self, id: &str, now_ms: u64, until_ms: u64) -> bool {
        self.is_due(id, now_ms) && self.take_slot(id, until_ms)
    }

    /// Claims the same slot for a trial request under `least_recently_failed`. Returns false
    /// when it is not [`Record::is_free`].
    pub fn claim_trial(&mut self, id: &str, now_ms: u64, until_ms: u64) -> bool {
        self.is_free(id, now_ms) && self.take_slot(id, until_ms)
    }

    /// Frees the slot a trial took with `until_ms`, once its request has ended — unless the
    /// slot has expired and been taken again meanwhile (then it is no longer ours).
    pub fn release_slot(&mut self, id: &str, until_ms: u64) {
        if let Some(e) = self.queue.get_mut(id) {
            if e.probe_until_ms == until_ms {
                e.probe_until_ms = 0;
            }
        }
    }

    fn take_slot(&mut self, id: &str, until_ms: u64) -> bool {
        match self.queue.get_mut(id) {
            Some(e) => {
                e.probe_until_ms = until_ms;
                true
            }
            None => false,
        }
    }

    /// Records one verifier check of `id`.
    pub fn record_check(
        &mut self,
        id: &str,
        healthy: bool,
        now_ms: u64,
        backoff: Backoff,
        success_threshold: u32,
    ) -> CheckOutcome {
        let Some(entry) = self.queue.get_mut(id) else {
            return CheckOutcome::NotQueued;
        };
        self.stats.total_verified = self.stats.total_verified.saturating_add(1);
        entry.last_check_ms = now_ms;
        entry.probe_until_ms = 0;
        if healthy {
            entry.ok_streak = entry.ok_streak.saturating_add(1);
            if entry.ok_streak >= success_threshold {
                self.queue.remove(id);
                self.stats.total_recovered = self.stats.total_recovered.saturating_add(1);
                return CheckOutcome::Recovered;
            }
            entry.next_check_ms = now_ms
                .saturating_add(backoff.interval_ms)
                .max(entry.not_before_ms);
            return CheckOutcome::Healthy(entry.ok_streak);
        }
        entry.ok_streak = 0;
        entry.checks = entry.checks.saturating_add(1);
        entry.next_check_ms = now_ms
            .saturating_add(backoff.delay(entry.checks))
            .max(entry.not_before_ms);
        self.stats.total_still_failed = self.stats.total_still_failed.saturating_add(1);
        CheckOutcome::StillFailed {
            next_check_ms: entry.next_check_ms,
        }
    }

    /// Takes or renews the verifier lease for `owner` until `now + ttl`. Succeeds when `owner`
    /// holds it, when it expired, or when `preempt` (the singleton verifier outranks workers).
    pub fn acquire_lease(&mut self, owner: &str, now_ms: u64, ttl_ms: u64, preempt: bool) -> bool {
        let lease = &mut self.lease;
        if lease.owner == owner || lease.until_ms <= now_ms || preempt {
            lease.owner = owner.to_string();
            lease.until_ms = now_ms.saturating_add(ttl_ms);
            true
        } else {
            false
        }
    }

    /// Drops queue entries and strikes of endpoints that left the config.
    pub fn retain_endpoints(&mut self, known: impl Fn(&str) -> bool) {
        self.queue.retain(|k, _| known(k));
        self.strikes.retain(|k, _| known(k));
    }

    /// The parked endpoint that was parked longest ago (ties: by name).
    pub fn longest_parked<'a>(&'a self, among: impl Iterator<Item = &'a str>) -> Option<&'a str> {
        among
            .filter_map(|id| self.queue.get(id).map(|e| (e.since_ms, id)))
            .min()
            .map(|(_, id)| id)
    }

    /// Earliest moment any of `among` may be tried again (for `retry-after`).
    pub fn earliest_next_check<'a>(&self, among: impl Iterator<Item = &'a str>) -> Option<u64> {
        among
            .filter_map(|id| self.queue.get(id))
            .map(|e| e.next_check_ms.max(e.not_before_ms))
            .min()
    }
}

#[cfg(test)]
mod differential;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fail<'a>(id: &'a str, now: u64) -> Failure<'a> {
        Failure {
            id,
            reason: "status 503",
            now_ms: now,
            threshold: 1,
            interval_ms: 1000,
            not_before_ms: None,
        }
    }

    const BACKOFF: Backoff = Backoff {
        interval_ms: 1000,
        max_interval_ms: 8000,
    };

    // ----- the seed's scenarios, as named tests -----

    #[test]
    fn seed_two_endpoints_three_call_sites_three_attempts_counts_two_not_26() {
        let mut r = Record::default();
        // Many requests; each of 3 attempts reports from 3 call sites (status, timeout, exception).
        for request in 0..13u64 {
            for attempt in 0..3u64 {
                for _call_site in 0..3 {
                    let id = if (request + attempt) % 2 == 0 {
                        "primary"
                    } else {
                        "secondary"
                    };
                    r.record_failure(&fail(id, request * 10 + attempt));
                }
            }
        }
        assert_eq!(r.queue.len(), 2);
        assert_eq!(r.stats.total_failed, 2);
    }

    #[test]
    fn same_endpoint_twice_counts_once() {
        let mut r = Record::default();
        assert_eq!(r.record_failure(&fail("a", 1)), FailureOutcome::Inserted);
        assert_eq!(r.record_failure(&fail("a", 2)), FailureOutcome::Repeat);
        assert_eq!(r.stats.total_failed, 1);
        assert_eq!(r.queue["a"].failures, 2);
        assert_eq!(r.queue["a"].since_ms, 1, "a repeat does not restamp");
    }

    #[test]
    fn distinct_endpoints_count_separately() {
        let mut r = Record::default();
        for id in ["a", "b", "c"] {
            r.record_failure(&fail(id, 1));
        }
        assert_eq!(r.stats.total_failed, 3);
    }

    #[test]
    fn removed_and_readded_counts_again() {
        let mut r = Record::default();
        r.record_failure(&fail("a", 1));
        assert_eq!(
            r.record_check("a", true, 2000, BACKOFF, 1),
            CheckOutcome::Recovered
        );
        assert_eq!(r.record_failure(&fail("a", 3000)), FailureOutcome::Inserted);
        assert_eq!(r.stats.total_failed, 2);
        assert_eq!(r.stats.total_recovered, 1);
    }

    #[test]
    fn record_round_trips_and_survives_garbage() {
        let mut r = Record::default();
        r.record_failure(&fail("a", 1));
        assert_eq!(Record::decode(&r.encode()).unwrap(), r);
        assert_eq!(Record::decode(b"").unwrap(), Record::default());
        assert!(Record::decode(b"{not json").is_err());
        assert!(Record::decode(b"[1,2]").is_err());
        assert!(
            Record::decode(br#"{"someone_else": 1}"#).is_err(),
            "a foreign object"
        );
        assert!(Record::decode(&[0xff, 0x00]).is_err());
        // The design's example layout decodes.
        let design = br#"{ "queue":  { "main": { "since_ms": 0, "reason": "status 503 via_upstream", "last_check_ms": 0,
                        "next_check_ms": 0, "checks": 0, "ok_streak": 0 } },
          "strikes": { "spare": 1 },
          "stats":  { "total_failed": 0, "total_verified": 0, "total_recovered": 0, "total_still_failed": 0 },
          "lease":  { "owner": "", "until_ms": 0 } }"#;
        let d = Record::decode(design).unwrap();
        assert!(d.is_queued("main"));
        assert_eq!(d.strikes["spare"], 1);
    }

    #[test]
    fn threshold_needs_failures_in_a_row() {
        let mut r = Record::default();
        let f = |now| Failure {
            threshold: 3,
            ..fail("a", now)
        };
        assert_eq!(r.record_failure(&f(1)), FailureOutcome::Struck(1));
        assert_eq!(r.record_failure(&f(2)), FailureOutcome::Struck(2));
        assert_eq!(r.record_success("a", false), SuccessOutcome::StrikesCleared);
        assert_eq!(r.record_failure(&f(3)), FailureOutcome::Struck(1));
        assert_eq!(r.record_failure(&f(4)), FailureOutcome::Struck(2));
        assert_eq!(r.record_failure(&f(5)), FailureOutcome::Inserted);
        assert!(r.strikes.is_empty());
        assert_eq!(r.stats.total_failed, 1);
    }

    #[test]
    fn checks_back_off_and_recover() {
        let mut r = Record::default();
        r.record_failure(&fail("a", 0));
        assert_eq!(r.queue["a"].next_check_ms, 1000);
        assert!(!r.is_due("a", 999));
        assert!(r.claim_probe("a", 1000, 2000));
        assert!(
            !r.claim_probe("a", 1001, 2000),
            "one probe in flight at a time"
        );
        assert_eq!(
            r.record_check("a", false, 1500, BACKOFF, 2),
            CheckOutcome::StillFailed {
                next_check_ms: 3500
            }
        );
        assert_eq!(
            r.record_check("a", false, 4000, BACKOFF, 2),
            CheckOutcome::StillFailed {
                next_check_ms: 8000
            }
        );
        assert_eq!(
            r.record_check("a", false, 9000, BACKOFF, 2),
            CheckOutcome::StillFailed {
                next_check_ms: 17000
            },
            "capped at max_interval"
        );
        assert_eq!(
            r.record_check("a", true, 20000, BACKOFF, 2),
            CheckOutcome::Healthy(1)
        );
        assert_eq!(
            r.record_check("a", true, 21000, BACKOFF, 2),
            CheckOutcome::Recovered
        );
        assert_eq!(
            r.record_check("a", true, 22000, BACKOFF, 2),
            CheckOutcome::NotQueued
        );
        assert_eq!(
            r.stats,
            Stats {
                total_failed: 1,
                total_verified: 5,
                total_recovered: 1,
                total_still_failed: 3
            }
        );
    }

    #[test]
    fn retry_after_only_moves_later() {
        let mut r = Record::default();
        r.record_failure(&Failure {
            not_before_ms: Some(3000),
            ..fail("a", 0)
        });
        assert_eq!(r.queue["a"].next_check_ms, 3000);
        r.record_failure(&Failure {
            not_before_ms: Some(1000),
            ..fail("a", 500)
        });
        assert_eq!(
            r.queue["a"].not_before_ms, 3000,
            "a shorter deadline never wins"
        );
        assert!(!r.is_due("a", 2999));
        assert!(r.is_due("a", 3000));
        // a failed check cannot schedule before the deadline either
        let mut r2 = Record::default();
        r2.record_failure(&Failure {
            not_before_ms: Some(50_000),
            ..fail("a", 0)
        });
        assert_eq!(
            r2.record_check("a", false, 100, BACKOFF, 1),
            CheckOutcome::StillFailed {
                next_check_ms: 50_000
            }
        );
    }

    #[test]
    fn only_a_trial_recovers_a_parked_endpoint() {
        let mut r = Record::default();
        r.record_failure(&fail("a", 0));
        // An answer to a request routed before the endpoint was parked: still parked.
        assert_eq!(r.record_success("a", false), SuccessOutcome::Unchanged);
        assert!(r.is_queued("a"));
        // Trials do not wait for the verifier's next check, only for retry-after and the slot.
        assert!(!r.is_due("a", 10));
        assert!(r.claim_trial("a", 10, 5000));
        assert!(!r.claim_trial("a", 11, 5000), "one trial at a time");
        // A failed trial keeps the slot until its request ended.
        r.record_failure(&fail("a", 12));
        assert!(!r.claim_trial("a", 13, 5000));
        r.release_slot("a", 4999);
        assert!(
            !r.claim_trial("a", 13, 5000),
            "only the holder's release counts"
        );
        r.release_slot("a", 5000);
        assert!(r.claim_trial("a", 14, 5000));
        assert!(
            !r.claim_probe("a", 1000, 2000),
            "the probe waits for the trial too"
        );
        assert_eq!(r.record_success("a", true), SuccessOutcome::Recovered);
        assert_eq!(r.stats.total_recovered, 1);
        let mut r2 = Record::default();
        r2.record_failure(&Failure {
            not_before_ms: Some(3000),
            ..fail("b", 0)
        });
        assert!(
            !r2.claim_trial("b", 2999, 5000),
            "retry-after holds trials back"
        );
        assert!(r2.claim_trial("b", 3000, 5000));
    }

    #[test]
    fn lease_rules() {
        let mut r = Record::default();
        assert!(r.acquire_lease("w1", 0, 100, false));
        assert!(!r.acquire_lease("w2", 50, 100, false));
        assert!(r.acquire_lease("w1", 50, 100, false), "renewal");
        assert!(r.acquire_lease("w2", 150, 100, false), "expired");
        assert!(
            r.acquire_lease("singleton", 160, 100, true),
            "singleton preempts"
        );
        assert_eq!(r.lease.owner, "singleton");
    }

    #[test]
    fn retain_drops_endpoints_that_left() {
        let mut r = Record::default();
        r.record_failure(&fail("a", 0));
        r.record_failure(&Failure {
            threshold: 2,
            ..fail("b", 0)
        });
        r.retain_endpoints(|k| k != "a" && k != "b");
        assert!(r.queue.is_empty() && r.strikes.is_empty());
        assert_eq!(r.stats.total_failed, 1, "counters are history and stay");
    }

    #[test]
    fn longest_parked_and_earliest_check() {
        let mut r = Record::default();
        r.record_failure(&fail("b", 10));
        r.record_failure(&fail("a", 20));
        assert_eq!(r.longest_parked(["a", "b"].into_iter()), Some("b"));
        assert_eq!(r.earliest_next_check(["a", "b"].into_iter()), Some(1010));
    }

    // ----- properties -----

    #[derive(Debug, Clone)]
    enum Op {
        Fail(u8, u64),
        Success(u8),
        Check(u8, bool),
        Claim(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..4, proptest::option::of(0u64..5000))
                .prop_map(|(i, nb)| Op::Fail(i, nb.unwrap_or(0))),
            (0u8..4).prop_map(Op::Success),
            (0u8..4, any::<bool>()).prop_map(|(i, h)| Op::Check(i, h)),
            (0u8..4).prop_map(Op::Claim),
        ]
    }

    proptest! {
        #[test]
        fn transitions_keep_the_books(ops in proptest::collection::vec(op(), 0..200), threshold in 1u32..4) {
            let names = ["a", "b", "c", "d"];
            let mut r = Record::default();
            let mut inserted = 0u64;
            let mut recovered = 0u64;
            let mut now = 0u64;
            for op in ops {
                now += 7;
                let before = r.clone();
                match op {
                    Op::Fail(i, nb) => {
                        let f = Failure { threshold, not_before_ms: Some(nb).filter(|n| *n > 0), ..fail(names[usize::from(i)], now) };
                        let was_queued = r.is_queued(f.id);
                        let out = r.record_failure(&f);
                        if out == FailureOutcome::Inserted {
                            inserted += 1;
                            prop_assert!(!was_queued);
                        }
                        if was_queued {
                            prop_assert_eq!(out, FailureOutcome::Repeat);
                            let (old, new) = (&before.queue[f.id], &r.queue[f.id]);
                            prop_assert!(new.not_before_ms >= old.not_before_ms, "deadline moved earlier");
                        }
                    }
                    Op::Success(i) => {
                        if r.record_success(names[usize::from(i)], true) == SuccessOutcome::Recovered { recovered += 1; }
                    }
                    Op::Check(i, healthy) => {
                        if r.record_check(names[usize::from(i)], healthy, now, BACKOFF, 2) == CheckOutcome::Recovered { recovered += 1; }
                    }
                    Op::Claim(i) => { r.claim_probe(names[usize::from(i)], now, now + 100); }
                }
                // counters never go down
                prop_assert!(r.stats.total_failed >= before.stats.total_failed);
                prop_assert!(r.stats.total_verified >= before.stats.total_verified);
                prop_assert!(r.stats.total_recovered >= before.stats.total_recovered);
                prop_assert!(r.stats.total_still_failed >= before.stats.total_still_failed);
                // total_failed is exactly the number of first insertions
                prop_assert_eq!(r.stats.total_failed, inserted);
                prop_assert_eq!(r.stats.total_recovered, recovered);
                // the queue holds each endpoint at most once, by construction of the map, and
                // matches the books
                prop_assert_eq!(r.queue.len() as u64, inserted - recovered);
                // strikes and queue never overlap
                prop_assert!(r.strikes.keys().all(|k| !r.queue.contains_key(k)));
                prop_assert_eq!(Record::decode(&r.encode()).unwrap(), r.clone());
            }
        }
    }
}
