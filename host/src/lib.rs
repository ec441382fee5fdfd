//! `failover-host`: runs the `failover` proxy-wasm filter without Envoy, with Envoy's
//! semantics (see `shared/envoy-host-contract.md`).
//!
//! Network half: [`bootstrap`] (the Envoy YAML subset), [`proxy`] (listeners, routing,
//! upstream pools, local replies), [`server`] (workers, reload, shutdown), [`admin`],
//! [`state_file`], [`demo`]. Runtime half: the Wasm VMs and the proxy-wasm ABI.
//!
//! Both halves need the default feature `runtime`. Without it only the parsers are built —
//! [`bootstrap`], [`error`], [`headers`], [`plugin`] — which is what the fuzz targets link.
#![deny(missing_docs)]

// ----- always built: the parsers (what the fuzz targets link, see `fuzz/`) -----
pub mod bootstrap;
pub mod error;
pub mod headers;
pub mod plugin;

// ----- network half -----
#[cfg(feature = "runtime")]
pub mod admin;
#[cfg(feature = "runtime")]
pub mod body;
#[cfg(feature = "runtime")]
pub mod demo;
#[cfg(feature = "runtime")]
pub mod proxy;
#[cfg(feature = "runtime")]
pub mod server;
#[cfg(feature = "runtime")]
pub mod state_file;

// ----- runtime half (Wasm VMs and the proxy-wasm ABI) -----
#[cfg(feature = "runtime")]
pub(crate) mod abi;
#[cfg(feature = "runtime")]
pub mod metrics;
#[cfg(feature = "runtime")]
pub mod seam;
#[cfg(feature = "runtime")]
pub mod shared_data;
#[cfg(feature = "runtime")]
pub mod stream;
#[cfg(feature = "runtime")]
pub mod vm;
#[cfg(feature = "runtime")]
pub mod wasi;
