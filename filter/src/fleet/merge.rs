//! The pure merge: what one member's local observation does to the fleet record.
//!
//! [`apply`] is the transition the syncer runs on the freshest record it read from etcd, exactly
//! like a [`crate::state`] transition runs inside [`crate::store::update`]: only the member whose
//! txn lands keeps the [`Outcome`], so [`Outcome::NewOutage`] is seen by exactly one member per
//! outage fleet-wide.
//!
//! # The rules (staleness, monotonicity)
//! - A park observed after the fleet's last recovery of the endpoint (`at_ms >
//!   recovered_ms`) while it is healthy starts a new outage: generation + 1, `total_failed` + 1.
//!   One observed at or before it is [`Outcome::Stale`] and dropped.
//! - A recovery observed before the current outage began is stale too.
//! - Generations never go backwards ([`FleetEndpoint::phase`] never decreases); Retry-After
//!   deadlines (`not_before_ms`) only move later; counters only go up.
//! - A probe verdict counts only under the claim it was made with, and consumes it.
//!
//! # What commutes
//! Every observation is idempotent: applying it to its own result changes nothing. Parks of
//! the same endpoint commute with each other: the outage keeps the earliest `since_ms` (ties:
//! smallest member, then reason), the latest deadline and the latest next check, whatever
//! order the members' txns land in — only *who* sees `NewOutage` depends on the order, and it
//! is always exactly one. Observations of different endpoints commute. A park and a recovery of
//! the same endpoint do not (that is a real difference: parked-then-recovered is not
//! recovered-then-parked), and neither do claims from different members (first come, first
//! served — that is the point of a claim).

use super::record::{Claim, EndpointState, FleetEndpoint, FleetRecord};

/// A local observation a member pushes to the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// This member parked `id` locally at `at_ms` (or still has it parked since then).
    Park {
        /// Endpoint name.
        id: String,
        /// The observing member.
        member: String,
        /// When the local park began, ms since the epoch.
        at_ms: u64,
        /// The first failure's description.
        reason: String,
        /// Retry-After deadline the upstream asked for (0: none).
        not_before_ms: u64,
        /// Earliest first probe the member's verifier config gives.
        next_check_ms: u64,
    },
    /// Real traffic or a local check brought `id` back at `at_ms`.
    Recover {
        /// Endpoint name.
        id: String,
        /// When, ms since the epoch.
        at_ms: u64,
    },
    /// `member` asks for the right to probe `id` until `until_ms`.
    Claim {
        /// Endpoint name.
        id: String,
        /// The asking member.
        member: String,
        /// Now, ms since the epoch.
        now_ms: u64,
        /// Requested expiry.
        until_ms: u64,
    },
    /// The verdict of a probe made under the claim (`member`, `claim_until_ms`).
    Verdict {
        /// Endpoint name.
        id: String,
        /// The probing member.
        member: String,
        /// The claim's `until_ms` as granted (identifies the claim).
        claim_until_ms: u64,
        /// When the verdict was reached.
        at_ms: u64,
        /// What the probe found.
        verdict: Verdict,
    },
}

impl Observation {
    /// The endpoint it is about.
    pub fn id(&self) -> &str {
        match self {
            Observation::Park { id, .. }
            | Observation::Recover { id, .. }
            | Observation::Claim { id, .. }
            | Observation::Verdict { id, .. } => id,
        }
    }
}

/// What a claimed probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Healthy enough (success threshold reached): the endpoint is back, fleet-wide.
    Recovered,
    /// Healthy, but fewer healthy probes in a row than the threshold so far.
    Healthy,
    /// Still failing; the next probe is not before `next_check_ms`.
    StillFailed {
        /// Back-off deadline of the next probe.
        next_check_ms: u64,
    },
}

/// Why a claim was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// The endpoint is not parked fleet-wide: nothing to probe.
    NotParked,
    /// Its next check (or Retry-After deadline) has not come yet.
    NotDue {
        /// Earliest moment a claim can be granted.
        at_ms: u64,
    },
    /// Another member holds an unexpired claim.
    HeldBy {
        /// The holder.
        member: String,
        /// Its expiry.
        until_ms: u64,
    },
}

/// What [`apply`] did. Only the member whose txn lands acts on it (logs, metrics, probes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// This observation made the healthy→parked transition: the caller logs the fleet `info`
    /// line and counts; `total_failed` went up by one in the same write.
    NewOutage {
        /// The outage's generation.
        generation: u64,
    },
    /// Already parked fleet-wide: adopt, log at `debug`, count nothing.
    AlreadyParked {
        /// The current outage's generation.
        generation: u64,
    },
    /// Observed before the fleet's last transition of the endpoint: dropped.
    Stale,
    /// This observation made the parked→healthy transition (`total_recovered` + 1).
    Recovered {
        /// The generation of the outage that ended.
        generation: u64,
    },
    /// Already healthy fleet-wide: nothing to do.
    AlreadyHealthy,
    /// The caller may probe until `until_ms`.
    ClaimGranted {
        /// The claim's expiry; pass it back in [`Observation::Verdict::claim_until_ms`].
        until_ms: u64,
    },
    /// The caller must not probe.
    ClaimDenied(Denied),
    /// The verdict was counted (and the claim released).
    VerdictCounted,
}

/// Applies one observation to the fleet record and says what it did (see the module docs).
pub fn apply(record: &mut FleetRecord, obs: &Observation) -> Outcome {
    match obs {
        Observation::Park {
            id,
            member,
            at_ms,
            reason,
            not_before_ms,
            next_check_ms,
        } => {
            let stats = &mut record.stats;
            let e = record.endpoints.entry(id.clone()).or_default();
            // An outage ended before (the current one, if parked, is not counted here).
            let recovered_before = e.generation > u64::from(e.is_parked());
            if recovered_before && *at_ms <= e.recovered_ms {
                return Outcome::Stale;
            }
            if e.is_parked() {
                e.not_before_ms = e.not_before_ms.max(*not_before_ms);
                e.next_check_ms = e.next_check_ms.max(*next_check_ms).max(e.not_before_ms);
                let earlier = (*at_ms, member.as_str(), reason.as_str())
                    < (e.since_ms, e.first_member.as_str(), e.reason.as_str());
                if earlier {
                    e.since_ms = *at_ms;
                    e.first_member.clone_from(member);
                    e.reason.clone_from(reason);
                }
                return Outcome::AlreadyParked {
                    generation: e.generation,
                };
            }
            e.generation = e.generation.saturating_add(1);
            e.state = EndpointState::Parked;
            e.since_ms = *at_ms;
            e.reason.clone_from(reason);
            e.first_member.clone_from(member);
            e.not_before_ms = e.not_before_ms.max(*not_before_ms);
            // Never earlier than before: a stale deadline of a past outage is in the past.
            e.next_check_ms = e.next_check_ms.max(*next_check_ms).max(e.not_before_ms);
            e.failed_checks = 0;
            e.claim = None;
            stats.total_failed = stats.total_failed.saturating_add(1);
            Outcome::NewOutage {
                generation: e.generation,
            }
        }
        Observation::Recover { id, at_ms } => {
            let Some(e) = record.endpoints.get_mut(id) else {
                return Outcome::AlreadyHealthy;
            };
            if !e.is_parked() {
                return Outcome::AlreadyHealthy;
            }
            if *at_ms < e.since_ms {
                return Outcome::Stale;
            }
            recover(e, *at_ms);
            record.stats.total_recovered = record.stats.total_recovered.saturating_add(1);
            Outcome::Recovered {
                generation: e.generation,
            }
        }
        Observation::Claim {
            id,
            member,
            now_ms,
            until_ms,
        } => match record.endpoints.get_mut(id) {
            Some(e) if e.is_parked() => claim(e, member, *now_ms, *until_ms),
            _ => Outcome::ClaimDenied(Denied::NotParked),
        },
        Observation::Verdict {
            id,
            member,
            claim_until_ms,
            at_ms,
            verdict,
        } => {
            let Some(e) = record.endpoints.get_mut(id) else {
                return Outcome::Stale;
            };
            let holds = e
                .claim
                .as_ref()
                .is_some_and(|c| &c.member == member && c.until_ms == *claim_until_ms);
            if !e.is_parked() || !holds {
                return Outcome::Stale;
            }
            e.claim = None;
            let stats = &mut record.stats;
            stats.total_verified = stats.total_verified.saturating_add(1);
            match verdict {
                Verdict::Recovered => {
                    recover(e, (*at_ms).max(e.since_ms));
                    stats.total_recovered = stats.total_recovered.saturating_add(1);
                }
                Verdict::Healthy => {}
                Verdict::StillFailed { next_check_ms } => {
                    e.failed_checks = e.failed_checks.saturating_add(1);
                    e.next_check_ms = e.next_check_ms.max(*next_check_ms);
                    stats.total_still_failed = stats.total_still_failed.saturating_add(1);
                }
            }
            Outcome::VerdictCounted
        }
    }
}

fn recover(e: &mut FleetEndpoint, at_ms: u64) {
    e.state = EndpointState::Healthy;
    e.recovered_ms = e.recovered_ms.max(at_ms);
    e.claim = None;
    e.failed_checks = 0;
}

fn claim(e: &mut FleetEndpoint, member: &str, now_ms: u64, until_ms: u64) -> Outcome {
    if let Some(c) = &mut e.claim {
        if c.member == member && c.until_ms > now_ms {
            // Re-asking while it holds (a retried txn, a duplicate) keeps it: idempotent.
            c.until_ms = c.until_ms.max(until_ms);
            return Outcome::ClaimGranted {
                until_ms: c.until_ms,
            };
        }
        if c.until_ms > now_ms {
            return Outcome::ClaimDenied(Denied::HeldBy {
                member: c.member.clone(),
                until_ms: c.until_ms,
            });
        }
    }
    let due = e.next_check_ms.max(e.not_before_ms);
    if now_ms < due {
        return Outcome::ClaimDenied(Denied::NotDue { at_ms: due });
    }
    e.claim = Some(Claim {
        member: member.to_string(),
        until_ms,
    });
    Outcome::ClaimGranted { until_ms }
}

/// Applies several observations in order; the outcomes in the same order. A sync round runs
/// this on every record it reads, so its result always starts from the freshest state.
pub fn apply_all(record: &mut FleetRecord, observations: &[Observation]) -> Vec<Outcome> {
    observations.iter().map(|o| apply(record, o)).collect()
}

#[cfg(test)]
mod tests;
