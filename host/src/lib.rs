//! `failover-host`: runs the `failover` proxy-wasm filter without Envoy, with Envoy's
//! semantics (see `shared/envoy-host-contract.md`).
//!
//! Network half: [`bootstrap`] (the Envoy YAML subset), [`proxy`] (listeners, routing,
//! upstream pools, local replies), [`server`] (workers, reload, shutdown), [`admin`],
//! [`state_file`], [`demo`]. Runtime half: the Wasm VMs and the proxy-wasm ABI.
#![deny(missing_docs)]

pub mod admin;
pub mod bootstrap;
pub mod demo;
pub mod error;
pub mod proxy;
pub mod server;
pub mod state_file;

// ----- runtime half (Wasm VMs and the proxy-wasm ABI) -----
pub(crate) mod abi;
pub mod metrics;
pub mod shared_data;
pub mod stream;
pub mod vm;
pub mod wasi;
