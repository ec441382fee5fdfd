//! The process-wide shared-data store, with Envoy's rules exactly.
//!
//! Why exact: the filter's exactly-once failure queue is a CAS loop over this store, and a test
//! that passes here must mean the same thing in Envoy. The rules (see
//! `shared/envoy-host-contract.md`):
//!
//! - one namespace per `vm_id`;
//! - `get` of a missing key is [`SharedDataError::NotFound`];
//! - `set` with cas 0 overwrites unconditionally;
//! - `set` with cas ≠ 0 on an existing key must match the stored cas, else
//!   [`SharedDataError::CasMismatch`];
//! - `set` on a missing key always inserts, whatever the cas;
//! - cas values come from ONE process-wide `u32` counter that starts at 1, advances on every
//!   successful set (any key, any namespace) and skips 0 when it wraps;
//! - there is no delete: the SDK's "remove" stores an empty value, which reads back present-empty.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// Why a shared-data operation did not succeed (the two guest-visible outcomes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SharedDataError {
    /// `get` of a key that was never set in this namespace.
    #[error("shared data key not found")]
    NotFound,
    /// `set` with a non-zero cas on an existing key whose cas differs.
    #[error("shared data cas mismatch")]
    CasMismatch,
}

/// The store. Thread-safe: every worker VM of every plugin uses the same one.
pub struct SharedData {
    inner: Mutex<Inner>,
    changed_tx: watch::Sender<u64>,
}

struct Inner {
    namespaces: HashMap<String, HashMap<String, (Vec<u8>, u32)>>,
    /// The cas the next successful set will carry.
    next_cas: u32,
    generation: u64,
}

/// A serialisable copy of every namespace (for the state file): vm_id → key → entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The cas the next successful set will carry, so restored cas values stay unique.
    pub next_cas: u32,
    /// vm_id → key → entry. BTreeMaps so the file is stable and diffable.
    pub namespaces: BTreeMap<String, BTreeMap<String, SnapshotEntry>>,
}

/// One stored value in a [`Snapshot`]. UTF-8 values are kept readable; others as base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotEntry {
    /// The value as text, when it is valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The value as standard base64, when it is not valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base64: Option<String>,
    /// The entry's cas.
    pub cas: u32,
}

impl SnapshotEntry {
    fn new(value: &[u8], cas: u32) -> Self {
        match std::str::from_utf8(value) {
            Ok(text) => Self {
                text: Some(text.to_string()),
                base64: None,
                cas,
            },
            Err(_) => Self {
                text: None,
                base64: Some(base64::engine::general_purpose::STANDARD.encode(value)),
                cas,
            },
        }
    }

    /// The stored bytes.
    ///
    /// # Errors
    /// When neither `text` nor valid `base64` is present.
    pub fn value(&self) -> Result<Vec<u8>, SnapshotError> {
        match (&self.text, &self.base64) {
            (Some(text), None) => Ok(text.as_bytes().to_vec()),
            (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| SnapshotError(format!("invalid base64 value: {e}"))),
            _ => Err(SnapshotError(
                "an entry needs exactly one of `text` or `base64`".into(),
            )),
        }
    }
}

/// A snapshot that cannot be restored (the state file is corrupt).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid shared-data snapshot: {0}")]
pub struct SnapshotError(pub String);

impl Default for SharedData {
    fn default() -> Self {
        Self::new()
    }
}

impl SharedData {
    /// An empty store whose first successful set gets cas 1 (as in Envoy).
    pub fn new() -> Self {
        let (changed_tx, _) = watch::channel(0);
        Self {
            inner: Mutex::new(Inner {
                namespaces: HashMap::new(),
                next_cas: 1,
                generation: 0,
            }),
            changed_tx,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map half-updated (every update is a
        // single insert), so a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads `key` in namespace `vm_id`: the value and its cas.
    ///
    /// # Errors
    /// [`SharedDataError::NotFound`] when the key was never set.
    pub fn get(&self, vm_id: &str, key: &str) -> Result<(Vec<u8>, u32), SharedDataError> {
        let inner = self.lock();
        inner
            .namespaces
            .get(vm_id)
            .and_then(|ns| ns.get(key))
            .cloned()
            .ok_or(SharedDataError::NotFound)
    }

    /// Writes `key` in namespace `vm_id` following Envoy's cas rules (module docs).
    ///
    /// # Errors
    /// [`SharedDataError::CasMismatch`] when `cas` ≠ 0, the key exists and its cas differs.
    pub fn set(
        &self,
        vm_id: &str,
        key: &str,
        value: &[u8],
        cas: u32,
    ) -> Result<(), SharedDataError> {
        let generation = {
            let mut inner = self.lock();
            let new_cas = inner.next_cas;
            let ns = inner.namespaces.entry(vm_id.to_string()).or_default();
            match ns.get_mut(key) {
                Some(entry) => {
                    if cas != 0 && cas != entry.1 {
                        return Err(SharedDataError::CasMismatch);
                    }
                    *entry = (value.to_vec(), new_cas);
                }
                None => {
                    ns.insert(key.to_string(), (value.to_vec(), new_cas));
                }
            }
            inner.next_cas = match new_cas.wrapping_add(1) {
                0 => 1,
                n => n,
            };
            inner.generation += 1;
            inner.generation
        };
        self.changed_tx.send_replace(generation);
        Ok(())
    }

    /// A copy of everything, for the state file.
    pub fn snapshot(&self) -> Snapshot {
        let inner = self.lock();
        let namespaces = inner
            .namespaces
            .iter()
            .map(|(vm_id, ns)| {
                let entries = ns
                    .iter()
                    .map(|(k, (v, cas))| (k.clone(), SnapshotEntry::new(v, *cas)))
                    .collect();
                (vm_id.clone(), entries)
            })
            .collect();
        Snapshot {
            next_cas: inner.next_cas,
            namespaces,
        }
    }

    /// Replaces the whole store with `snapshot` (before the first VM starts).
    ///
    /// The cas counter continues above every restored cas, so a cas a VM read before the
    /// restore can never accidentally match a newer write.
    ///
    /// # Errors
    /// When an entry's value cannot be decoded; the store is left unchanged then.
    pub fn restore(&self, snapshot: Snapshot) -> Result<(), SnapshotError> {
        let mut namespaces: HashMap<String, HashMap<String, (Vec<u8>, u32)>> = HashMap::new();
        let mut max_cas = 0u32;
        for (vm_id, entries) in snapshot.namespaces {
            let ns = namespaces.entry(vm_id.clone()).or_default();
            for (key, entry) in entries {
                let value = entry
                    .value()
                    .map_err(|e| SnapshotError(format!("{vm_id}/{key}: {}", e.0)))?;
                max_cas = max_cas.max(entry.cas);
                ns.insert(key, (value, entry.cas));
            }
        }
        let mut next_cas = snapshot.next_cas.max(max_cas.wrapping_add(1));
        if next_cas == 0 {
            next_cas = 1;
        }
        let mut inner = self.lock();
        inner.namespaces = namespaces;
        inner.next_cas = next_cas;
        Ok(())
    }

    /// How many successful sets happened since start (not persisted).
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// A receiver that sees the generation change after every successful set (to save the
    /// state file on change without polling).
    pub fn changed(&self) -> watch::Receiver<u64> {
        self.changed_tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_key_is_not_found() {
        let s = SharedData::new();
        assert_eq!(s.get("vm", "k"), Err(SharedDataError::NotFound));
    }

    #[test]
    fn set_on_missing_key_inserts_whatever_the_cas() {
        let s = SharedData::new();
        s.set("vm", "a", b"1", 0).unwrap();
        s.set("vm", "b", b"2", 12345).unwrap();
        s.set("vm", "c", b"3", u32::MAX).unwrap();
        assert_eq!(s.get("vm", "a").unwrap().0, b"1");
        assert_eq!(s.get("vm", "b").unwrap().0, b"2");
        assert_eq!(s.get("vm", "c").unwrap().0, b"3");
    }

    #[test]
    fn cas_zero_overwrites_and_wrong_cas_mismatches() {
        let s = SharedData::new();
        s.set("vm", "k", b"v1", 0).unwrap();
        let (_, cas) = s.get("vm", "k").unwrap();
        assert_eq!(
            s.set("vm", "k", b"x", cas + 100),
            Err(SharedDataError::CasMismatch)
        );
        assert_eq!(s.get("vm", "k").unwrap().0, b"v1");
        s.set("vm", "k", b"v2", cas).unwrap();
        assert_eq!(
            s.set("vm", "k", b"x", cas),
            Err(SharedDataError::CasMismatch)
        );
        s.set("vm", "k", b"v3", 0).unwrap();
        assert_eq!(s.get("vm", "k").unwrap().0, b"v3");
    }

    #[test]
    fn one_global_counter_starting_at_one() {
        let s = SharedData::new();
        s.set("vm1", "a", b"", 0).unwrap();
        s.set("vm2", "b", b"", 0).unwrap();
        s.set("vm1", "a", b"", 0).unwrap();
        assert_eq!(s.get("vm2", "b").unwrap().1, 2);
        assert_eq!(s.get("vm1", "a").unwrap().1, 3);
        assert_eq!(s.generation(), 3);
    }

    #[test]
    fn counter_skips_zero_on_wrap() {
        let s = SharedData::new();
        s.restore(Snapshot {
            next_cas: u32::MAX,
            namespaces: BTreeMap::new(),
        })
        .unwrap();
        s.set("vm", "a", b"", 0).unwrap();
        assert_eq!(s.get("vm", "a").unwrap().1, u32::MAX);
        s.set("vm", "a", b"", 0).unwrap();
        assert_eq!(s.get("vm", "a").unwrap().1, 1);
    }

    #[test]
    fn namespaces_are_separate() {
        let s = SharedData::new();
        s.set("vm1", "k", b"one", 0).unwrap();
        assert_eq!(s.get("vm2", "k"), Err(SharedDataError::NotFound));
    }

    #[test]
    fn snapshot_round_trips_text_and_binary() {
        let s = SharedData::new();
        s.set("vm", "text", b"{\"a\":1}", 0).unwrap();
        s.set("vm", "bin", &[0xff, 0x00, 0x80], 0).unwrap();
        let snap = s.snapshot();
        assert_eq!(
            snap.namespaces["vm"]["text"].text.as_deref(),
            Some("{\"a\":1}")
        );
        assert!(snap.namespaces["vm"]["bin"].base64.is_some());
        let t = SharedData::new();
        t.restore(snap.clone()).unwrap();
        assert_eq!(t.get("vm", "bin").unwrap(), s.get("vm", "bin").unwrap());
        assert_eq!(t.snapshot(), snap);
        t.set("vm", "new", b"", 0).unwrap();
        assert!(t.get("vm", "new").unwrap().1 > t.get("vm", "bin").unwrap().1);
    }

    #[test]
    fn corrupt_snapshot_is_refused_and_store_unchanged() {
        let s = SharedData::new();
        s.set("vm", "k", b"v", 0).unwrap();
        let mut snap = Snapshot::default();
        snap.namespaces.entry("vm".into()).or_default().insert(
            "bad".into(),
            SnapshotEntry {
                text: None,
                base64: Some("%%%".into()),
                cas: 1,
            },
        );
        assert!(s.restore(snap).is_err());
        assert_eq!(s.get("vm", "k").unwrap().0, b"v");
    }

    #[test]
    fn changed_sees_sets() {
        let s = SharedData::new();
        let mut rx = s.changed();
        s.set("vm", "k", b"v", 0).unwrap();
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 1);
        let _ = s.set("vm", "k", b"v", 999);
        assert!(!rx.has_changed().unwrap());
    }
}
