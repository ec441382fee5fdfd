//! The one compare-and-swap loop every writer of the shared record goes through.
//!
//! `update(store, f)`: get (value, cas) → apply the pure transition `f` to the fresh state → if it
//! changed anything, set with that cas → on CAS_MISMATCH start over. Only the VM whose set lands
//! keeps its transition's outcome, so an outcome such as
//! [`FailureOutcome::Inserted`](crate::state::FailureOutcome::Inserted) is seen by exactly one
//! VM per insertion.
//!
//! Creating the record is part of the same loop and must be race-free too. In Envoy a set with
//! cas 0 overwrites unconditionally (it could wipe a record another VM just wrote), while a set
//! on a missing key inserts whatever the cas. So a missing key is created with
//! [`CREATE_CAS`] (`u32::MAX`), which inserts if the key is still missing and mismatches if
//! another VM won. Strict hosts (Kong) mismatch on a non-zero cas for a missing key; if the key
//! is still missing after such a mismatch, the loop creates with cas 0, which those hosts treat
//! as insert-if-absent.

use crate::state::{Record, RECORD_KEY};
use std::rc::Rc;

/// Cas used to create a missing key (see the module docs). A live record carries it only after
/// 2^32 − 2 successful sets in the whole process.
pub const CREATE_CAS: u32 = u32::MAX;

/// What a host's shared-data `set` answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetResult {
    /// Stored.
    Stored,
    /// Someone else wrote first (CAS_MISMATCH).
    CasMismatch,
}

/// A host failure other than CAS_MISMATCH; nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("shared data {op} of {key:?} failed: {detail}")]
pub struct StoreError {
    /// `get` or `set`.
    pub op: &'static str,
    /// The key.
    pub key: String,
    /// The host's status.
    pub detail: String,
}

/// Proxy-wasm shared data as the filter sees it: the real host calls in the `.wasm`, model
/// stores in tests.
pub trait SharedStore {
    /// `Ok(None)` when the key is missing; `Ok(Some((value, cas)))` otherwise (an empty value is
    /// what the SDK's "remove" leaves behind).
    ///
    /// # Errors
    /// A host failure.
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError>;

    /// Sets `key` if `cas` allows it under the host's rules.
    ///
    /// # Errors
    /// A host failure other than a mismatch.
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<SetResult, StoreError>;
}

/// The result of [`update`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Updated<T> {
    /// The transition's outcome, from the state the successful write was based on.
    pub outcome: T,
    /// The record after the transition (what is now stored, if `written`).
    pub record: Record,
    /// True when this call wrote the record.
    pub written: bool,
    /// Attempts it took (1 without contention).
    pub attempts: u32,
    /// True when the stored value could not be decoded and was replaced.
    pub replaced_corrupt: bool,
}

/// Reads the record: `(record, cas)`, `cas == None` when the key is missing. A corrupt or
/// foreign value reads as a fresh record with its cas, so the next write replaces it.
///
/// # Errors
/// A host failure.
pub fn read(store: &dyn SharedStore) -> Result<(Record, Option<u32>, bool), StoreError> {
    match store.get(RECORD_KEY)? {
        None => Ok((Record::default(), None, false)),
        Some((bytes, cas)) => match Record::decode(&bytes) {
            Ok(record) => Ok((record, Some(cas), false)),
            Err(_) => Ok((Record::default(), Some(cas), true)),
        },
    }
}

/// Applies `transition` to the shared record atomically (see the module docs). A missing key is
/// always created, even when the transition changes nothing, so this is also how the record is
/// created at start-up.
///
/// `transition` may run several times (once per attempt): it must decide only from the record it
/// is given.
///
/// # Errors
/// A host failure; the loop never gives up on contention.
pub fn update<T>(
    store: &dyn SharedStore,
    mut transition: impl FnMut(&mut Record) -> T,
) -> Result<Updated<T>, StoreError> {
    // Only reading, the transition and the result are generic; the host calls are in `commit`,
    // once in the .wasm instead of once per transition (issue 16: module size).
    let mut attempts = 0u32;
    loop {
        attempts = attempts.saturating_add(1);
        let (current, cas, corrupt) = read(store)?;
        let mut next = current.clone();
        let outcome = transition(&mut next);
        if let Some((written, replaced_corrupt)) = commit(store, &current, &next, cas, corrupt)? {
            return Ok(Updated {
                outcome,
                record: next,
                written,
                attempts,
                replaced_corrupt,
            });
        }
    }
}

/// Writes `next` over `current` (read with `cas`, `None` when missing): `Some((written,
/// replaced_corrupt))` when done, `None` when another VM wrote first and the loop must start
/// over.
#[inline(never)]
fn commit(
    store: &dyn SharedStore,
    current: &Record,
    next: &Record,
    cas: Option<u32>,
    corrupt: bool,
) -> Result<Option<(bool, bool)>, StoreError> {
    let Some(cas) = cas else {
        // Missing: create, race-free.
        return match store.set(RECORD_KEY, &next.encode(), CREATE_CAS)? {
            SetResult::Stored => Ok(Some((true, false))),
            SetResult::CasMismatch => {
                if store.get(RECORD_KEY)?.is_none() {
                    // A strict host refused a non-zero cas on a missing key.
                    if store.set(RECORD_KEY, &next.encode(), 0)? == SetResult::Stored {
                        return Ok(Some((true, false)));
                    }
                }
                Ok(None)
            }
        };
    };
    if next == current && !corrupt {
        return Ok(Some((false, false)));
    }
    match store.set(RECORD_KEY, &next.encode(), cas)? {
        SetResult::Stored => Ok(Some((true, corrupt))),
        SetResult::CasMismatch => Ok(None),
    }
}

/// The per-VM copy of the record for the hot path: one `get` per request, and a JSON parse
/// only when the cas moved since the last one. The copy is shared behind an `Rc` so a request
/// holds it for free (no clone of the queue's maps per request) and nothing stays borrowed
/// while the holder goes on to write.
#[derive(Debug, Default)]
pub struct RecordCache {
    cas: Option<u32>,
    record: Rc<Record>,
}

impl RecordCache {
    /// Reads the stored record, parsing only if it changed. A missing, empty, corrupt or
    /// foreign value reads as a fresh record (the next write replaces it).
    ///
    /// # Errors
    /// A host failure; the cached copy is kept.
    pub fn refresh(&mut self, store: &dyn SharedStore) -> Result<&Record, StoreError> {
        match store.get(RECORD_KEY)? {
            None => {
                if self.cas.is_some() {
                    self.cas = None;
                    self.record = Rc::default();
                }
            }
            Some((bytes, cas)) => {
                if self.cas != Some(cas) {
                    self.record = Rc::new(Record::decode(&bytes).unwrap_or_default());
                    self.cas = Some(cas);
                }
            }
        }
        Ok(&self.record)
    }

    /// The copy from the last [`RecordCache::refresh`].
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// The same copy, shared: what a request keeps while it decides.
    pub fn shared(&self) -> Rc<Record> {
        Rc::clone(&self.record)
    }
}

#[cfg(test)]
pub(crate) mod model;
