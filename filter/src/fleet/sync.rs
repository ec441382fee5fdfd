//! One sync round as a state machine: the fleet-level compare-and-swap loop.
//!
//! ```text
//!  start ──range──▶ answer ─┬─ unchanged ───────────────────────────▶ Done (nothing written)
//!                           └─ merge changed it ──txn(compare mod_revision)──▶ answer
//!                                  ├─ succeeded ─────────────────────▶ Done (written)
//!                                  └─ failed: the failure branch read the current value
//!                                       └─ merge again from it ──txn──▶ … (≤ max_attempts)
//! ```
//!
//! It is [`crate::store::update`] one level up: the observations are applied to the freshest
//! record every time, and only the round whose txn lands keeps its outcomes, so a
//! [`super::Outcome::NewOutage`] is seen by exactly one member per outage. Unlike the local
//! loop it is bounded (`max_attempts` txns per round): a round that keeps losing ends with
//! [`SyncError::Contention`] and its observations go into the next round, so a sync never
//! outlives its interval. The glue does the I/O: it sends each [`Request`] with
//! `dispatch_http_call` to the etcd cluster and hands the answer to [`SyncRound::on_answer`].

use super::etcd::{self, EtcdError, Kv, TxnOutcome};
use super::merge::{apply_all, Observation, Outcome};
use super::record::{FleetRecord, RecordError};

/// An HTTP call to make: `POST path` with a JSON `body` (and the configured authorization).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// [`etcd::RANGE_PATH`] or [`etcd::TXN_PATH`].
    pub path: &'static str,
    /// The JSON body.
    pub body: Vec<u8>,
}

/// What the glue does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this and call [`SyncRound::on_answer`] with its answer.
    Send(Request),
    /// The round is over.
    Done(Round),
    /// The round failed; nothing it decided holds (retry the observations next round).
    Failed(SyncError),
}

/// A finished round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Round {
    /// The fleet record as it now is in etcd (what to adopt).
    pub record: FleetRecord,
    /// Its `mod_revision` (`None`: no record, nothing observed).
    pub revision: Option<i64>,
    /// One outcome per observation, in order, decided on `record`'s predecessor. They hold:
    /// either this round wrote them, or they changed nothing.
    pub outcomes: Vec<Outcome>,
    /// True when this round's txn wrote the record.
    pub written: bool,
    /// Txns sent.
    pub attempts: u32,
}

/// Why a round failed. Any of them means "offline" for this round.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    /// etcd did not answer well (down, partitioned, refused, unexpected body).
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// The stored record cannot be used; it is left as it is.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// Every txn of the round lost a race.
    #[error("the fleet record changed under every one of {attempts} txns")]
    Contention {
        /// Txns sent.
        attempts: u32,
    },
    /// An answer arrived for a round that already ended (a glue bug, reported not panicked).
    #[error("an answer arrived after the sync round ended")]
    Finished,
}

#[derive(Debug, Clone)]
enum Phase {
    Reading,
    Committing {
        next: FleetRecord,
        outcomes: Vec<Outcome>,
    },
    Finished,
}

/// One round of the fleet CAS loop (see the module docs).
#[derive(Debug, Clone)]
pub struct SyncRound {
    key: String,
    observations: Vec<Observation>,
    max_attempts: u32,
    attempts: u32,
    phase: Phase,
}

impl SyncRound {
    /// Starts a round that pushes `observations` to the record at `key`; the first request is a
    /// range read. `max_attempts` (at least 1) bounds the txns.
    pub fn start(
        key: impl Into<String>,
        observations: Vec<Observation>,
        max_attempts: u32,
    ) -> (SyncRound, Request) {
        let key = key.into();
        let request = Request {
            path: etcd::RANGE_PATH,
            body: etcd::range_request(&key),
        };
        let round = SyncRound {
            key,
            observations,
            max_attempts: max_attempts.max(1),
            attempts: 0,
            phase: Phase::Reading,
        };
        (round, request)
    }

    /// Feeds the answer to the last [`Request`] (`status` `None`: no answer — failed or timed
    /// out) and says what to do next.
    pub fn on_answer(&mut self, status: Option<u16>, body: &[u8]) -> Step {
        let phase = std::mem::replace(&mut self.phase, Phase::Finished);
        match phase {
            Phase::Finished => Step::Failed(SyncError::Finished),
            Phase::Reading => match etcd::parse_range(status, body) {
                Ok(current) => self.merge_from(current),
                Err(e) => Step::Failed(e.into()),
            },
            Phase::Committing { next, outcomes } => match etcd::parse_txn(status, body) {
                Ok(TxnOutcome::Succeeded { revision }) => Step::Done(Round {
                    record: next,
                    revision: Some(revision),
                    outcomes,
                    written: true,
                    attempts: self.attempts,
                }),
                Ok(TxnOutcome::Failed { current }) => {
                    if self.attempts >= self.max_attempts {
                        return Step::Failed(SyncError::Contention {
                            attempts: self.attempts,
                        });
                    }
                    self.merge_from(current)
                }
                Err(e) => Step::Failed(e.into()),
            },
        }
    }

    /// Applies the observations to `current` and either finishes (nothing changed) or sends a
    /// txn comparing the revision read.
    fn merge_from(&mut self, current: Option<Kv>) -> Step {
        let (base, revision) = match &current {
            None => (FleetRecord::default(), None),
            Some(kv) => match FleetRecord::decode(&kv.value) {
                Ok(r) => (r, Some(kv.mod_revision)),
                Err(e) => return Step::Failed(e.into()),
            },
        };
        let mut next = base.clone();
        let outcomes = apply_all(&mut next, &self.observations);
        if next == base {
            return Step::Done(Round {
                record: next,
                revision,
                outcomes,
                written: false,
                attempts: self.attempts,
            });
        }
        self.attempts = self.attempts.saturating_add(1);
        let body = etcd::txn_request(&self.key, revision, &next.encode());
        self.phase = Phase::Committing { next, outcomes };
        Step::Send(Request {
            path: etcd::TXN_PATH,
            body,
        })
    }
}

/// When the round after one started at `now_ms` is due, given when this one was due.
///
/// Rounds stay on a grid of `interval_ms` instead of restarting the clock at each start: the
/// glue only looks at the clock on its ticks (a quarter of the interval), so `now + interval`
/// would lose up to a tick per round (1 250 ms instead of 1 000 at the default), stretching the
/// propagation bound of 2 × `sync_interval_ms` the fleet promises. A syncer that fell more than
/// an interval behind (etcd slow, VM paused) starts a fresh grid rather than firing rounds back
/// to back to catch up.
pub fn next_round_due(due_ms: u64, now_ms: u64, interval_ms: u64) -> u64 {
    let on_grid = due_ms.saturating_add(interval_ms);
    if on_grid > now_ms {
        on_grid
    } else {
        now_ms.saturating_add(interval_ms)
    }
}

#[cfg(test)]
mod model;
#[cfg(test)]
mod tests;
