//! The other direction of the merge: bringing the fleet record into this process's local
//! record (which stays authoritative for routing), and finding what the local record knows that
//! the fleet does not yet (what to push after a reconnect).
//!
//! Adoption never counts: the local `total_failed`/`total_recovered` count this process's own
//! transitions, the fleet counters count the fleet's. A member that adopts a park logs at
//! `debug`; only the member whose txn got [`super::Outcome::NewOutage`] logs `info`.
//!
//! The syncer runs a round as: push [`pending_parks`] (plus the recoveries, claims and verdicts
//! the process queued) through [`super::merge::apply`], then [`adopt`] the record the round
//! ended with, then [`apply_local`] each action inside [`crate::store::update`]. Pushing first
//! matters: a local recovery not yet pushed would otherwise be undone by adopting the fleet's
//! still-parked state.

use super::merge::Observation;
use super::record::FleetRecord;
use crate::state::{QueueEntry, Record};

/// What the local record must do to follow the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalAction {
    /// Parked fleet-wide but not here: park it (no local count).
    Park {
        /// Endpoint name.
        id: String,
        /// The fleet outage's start.
        since_ms: u64,
        /// The fleet outage's reason.
        reason: String,
        /// Retry-After deadline.
        not_before_ms: u64,
        /// Earliest next check.
        next_check_ms: u64,
    },
    /// Parked here, and the fleet recovered it after this park began: unpark (no local count).
    Unpark {
        /// Endpoint name.
        id: String,
    },
    /// Parked in both; the fleet has a later deadline or next check: take it.
    Extend {
        /// Endpoint name.
        id: String,
        /// The fleet's deadline.
        not_before_ms: u64,
        /// The fleet's next check.
        next_check_ms: u64,
    },
}

/// What `local` must do to follow `fleet`, for the endpoints `known` to this config. Pure;
/// the same inputs give the same actions, and applying them makes the next call return none.
pub fn adopt(
    fleet: &FleetRecord,
    local: &Record,
    known: impl Fn(&str) -> bool,
) -> Vec<LocalAction> {
    let mut actions = Vec::new();
    for (id, e) in fleet.endpoints.iter().filter(|(id, _)| known(id)) {
        match (e.is_parked(), local.queue.get(id)) {
            (true, None) => actions.push(LocalAction::Park {
                id: id.clone(),
                since_ms: e.since_ms,
                reason: e.reason.clone(),
                not_before_ms: e.not_before_ms,
                next_check_ms: e.next_check_ms,
            }),
            (true, Some(q))
                if e.not_before_ms > q.not_before_ms || e.next_check_ms > q.next_check_ms =>
            {
                actions.push(LocalAction::Extend {
                    id: id.clone(),
                    not_before_ms: e.not_before_ms.max(q.not_before_ms),
                    next_check_ms: e.next_check_ms.max(q.next_check_ms),
                });
            }
            (false, Some(q)) if e.generation > 0 && q.since_ms <= e.recovered_ms => {
                actions.push(LocalAction::Unpark { id: id.clone() });
            }
            // Healthy in both, or parked here after the fleet's last recovery (a new outage
            // [`pending_parks`] pushes).
            _ => {}
        }
    }
    actions
}

/// Applies one action to the local record; true when it changed it. Run inside
/// [`crate::store::update`], which decides on the freshest local record.
pub fn apply_local(local: &mut Record, action: &LocalAction) -> bool {
    match action {
        LocalAction::Park {
            id,
            since_ms,
            reason,
            not_before_ms,
            next_check_ms,
        } => {
            if local.queue.contains_key(id) {
                return false;
            }
            local.strikes.remove(id);
            local.queue.insert(
                id.clone(),
                QueueEntry {
                    since_ms: *since_ms,
                    reason: reason.clone(),
                    next_check_ms: (*next_check_ms).max(*not_before_ms),
                    not_before_ms: *not_before_ms,
                    failures: 1,
                    ..QueueEntry::default()
                },
            );
            true
        }
        LocalAction::Unpark { id } => local.queue.remove(id).is_some(),
        LocalAction::Extend {
            id,
            not_before_ms,
            next_check_ms,
        } => match local.queue.get_mut(id) {
            Some(q) if q.not_before_ms < *not_before_ms || q.next_check_ms < *next_check_ms => {
                q.not_before_ms = q.not_before_ms.max(*not_before_ms);
                q.next_check_ms = q.next_check_ms.max(*next_check_ms).max(q.not_before_ms);
                true
            }
            _ => false,
        },
    }
}

/// The local parks the fleet does not have parked: what `member` pushes each round (and after
/// a reconnect). [`super::merge::apply`] decides each: a new outage, an adopt, or stale (it
/// began before the fleet's last recovery).
pub fn pending_parks(local: &Record, fleet: &FleetRecord, member: &str) -> Vec<Observation> {
    local
        .queue
        .iter()
        .filter(|(id, q)| match fleet.endpoint(id) {
            None => true,
            // Parked here since before the fleet's last recovery: adoption unparks it.
            Some(e) if !e.is_parked() => e.generation == 0 || q.since_ms > e.recovered_ms,
            Some(e) => q.not_before_ms > e.not_before_ms,
        })
        .map(|(id, q)| Observation::Park {
            id: id.clone(),
            member: member.to_string(),
            at_ms: q.since_ms,
            reason: q.reason.clone(),
            not_before_ms: q.not_before_ms,
            next_check_ms: q.next_check_ms,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::merge::{apply_all, Outcome};
    use super::*;
    use crate::state::Failure;

    fn local_with(id: &str, now_ms: u64) -> Record {
        let mut r = Record::default();
        r.record_failure(&Failure {
            id,
            reason: "status 503",
            now_ms,
            threshold: 1,
            interval_ms: 1000,
            not_before_ms: None,
        });
        r
    }

    #[test]
    fn a_local_park_becomes_a_fleet_outage_and_others_adopt_it() {
        let mut fleet = FleetRecord::default();
        let l1 = local_with("a", 100);
        let push = pending_parks(&l1, &fleet, "m1");
        assert_eq!(
            apply_all(&mut fleet, &push),
            vec![Outcome::NewOutage { generation: 1 }]
        );
        assert!(pending_parks(&l1, &fleet, "m1").is_empty(), "pushed once");

        let mut l2 = Record::default();
        let actions = adopt(&fleet, &l2, |_| true);
        assert_eq!(actions.len(), 1);
        assert!(apply_local(&mut l2, &actions[0]));
        assert!(l2.is_queued("a"));
        assert_eq!(l2.stats.total_failed, 0, "adoption never counts");
        assert!(adopt(&fleet, &l2, |_| true).is_empty(), "converged");
        assert!(
            adopt(&fleet, &Record::default(), |_| false).is_empty(),
            "unknown endpoint"
        );
    }

    #[test]
    fn a_fleet_recovery_unparks_older_local_parks_only() {
        let mut fleet = FleetRecord::default();
        apply_all(
            &mut fleet,
            &[
                Observation::Park {
                    id: "a".into(),
                    member: "m1".into(),
                    at_ms: 100,
                    reason: "x".into(),
                    not_before_ms: 0,
                    next_check_ms: 0,
                },
                Observation::Recover {
                    id: "a".into(),
                    at_ms: 500,
                },
            ],
        );
        let mut old = local_with("a", 100);
        let actions = adopt(&fleet, &old, |_| true);
        assert_eq!(actions, vec![LocalAction::Unpark { id: "a".into() }]);
        assert!(apply_local(&mut old, &actions[0]));
        assert!(!old.is_queued("a"));

        // Parked here after the fleet's recovery: a new outage to push, not an unpark.
        let newer = local_with("a", 600);
        assert!(adopt(&fleet, &newer, |_| true).is_empty());
        let push = pending_parks(&newer, &fleet, "m2");
        assert_eq!(
            apply_all(&mut fleet, &push),
            vec![Outcome::NewOutage { generation: 2 }]
        );
    }

    #[test]
    fn later_fleet_deadlines_extend_the_local_park() {
        let mut fleet = FleetRecord::default();
        apply_all(
            &mut fleet,
            &[Observation::Park {
                id: "a".into(),
                member: "m1".into(),
                at_ms: 100,
                reason: "x".into(),
                not_before_ms: 9000,
                next_check_ms: 0,
            }],
        );
        let mut local = local_with("a", 100);
        let actions = adopt(&fleet, &local, |_| true);
        assert!(matches!(
            actions[..],
            [LocalAction::Extend {
                not_before_ms: 9000,
                ..
            }]
        ));
        assert!(apply_local(&mut local, &actions[0]));
        assert_eq!(local.queue["a"].not_before_ms, 9000);
        assert!(!apply_local(&mut local, &actions[0]), "idempotent");
        assert!(adopt(&fleet, &local, |_| true).is_empty());
    }
}
