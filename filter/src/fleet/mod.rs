//! Fleet mode: one exactly-once failure queue for every proxy of a deployment, kept in etcd.
//!
//! Shared data is per Envoy process; a deployment runs many (gateway replicas, one sidecar per
//! pod). Fleet mode adds one record in etcd that every process's syncer reads and writes with
//! compare-and-swap on the key's `mod_revision` — the same loop as [`crate::store::update`],
//! one level up. Local shared data stays authoritative for routing; the hot path never waits
//! on etcd. See `fleet.md` for the contract.
//!
//! Everything here is pure (no `proxy_wasm`): the glue feeds it HTTP answers and clock readings
//! and sends what it asks for.
//!
//! - [`config`]: the typed `fleet` section of the plugin config.
//! - [`record`]: the fleet record (versioned JSON) and its codec.
//! - [`merge`]: applying a local observation to the fleet record (the staleness rules).
//! - [`adopt`]: bringing the fleet record into the local record, and what to push back.
//! - [`etcd`]: etcd v3 JSON gateway bodies (range, txn with a `mod_revision` compare).
//! - [`status`]: the syncer's snapshot for the status page (shared data).
//! - [`sync`]: one sync round as a state machine: range → merge → txn → retry from the
//!   failure branch → done.

pub mod adopt;
mod base64;
pub mod config;
pub mod etcd;
pub mod merge;
pub mod record;
pub mod status;
pub mod sync;

pub use adopt::{adopt, apply_local, pending_parks, LocalAction};
pub use config::FleetConfig;
pub use merge::{apply, apply_all, Denied, Observation, Outcome, Verdict};
pub use record::{Claim, EndpointState, FleetEndpoint, FleetRecord, FleetStats, RecordError};
pub use status::FleetStatus;
pub use sync::{next_round_due, Request, Round, Step, SyncError, SyncRound};
