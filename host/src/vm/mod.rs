//! Plugin VMs: the process-wide engine and module cache ([`HostShared`]), and one VM per worker
//! ([`PluginVm`]) with Envoy's lifecycle.
//!
//! ```text
//! PluginVm::start
//!   load module (compiled once per distinct code, cached by content)
//!   refuse: no proxy_abi_version_0_2_1 export / any import Envoy does not provide
//!   instantiate (fresh Store per VM)
//!   _initialize (+ main) or _start      only proxy_log + WASI clock/random/environ/args/fd_write/fd_prestat_*
//!   proxy_on_context_create(root, 0)
//!   proxy_on_vm_start(root, |vm config|)       false → VmError::VmStartRejected
//!   proxy_on_configure(root, |plugin config|)  false → VmError::ConfigureRejected (with logs)
//! PluginVm::new_stream → HttpStream (proxy_on_context_create(ctx, root)); driven by crate::stream
//! timers / dispatch_http_call → tasks on the worker's LocalSet, delivered between guest calls
//!   (HTTP-call answers on the root context, as in Envoy; the SDK routes them on)
//! PluginVm::shutdown → proxy_on_done(root), proxy_on_delete(root), timers stopped
//! ```
//!
//! Threading: `HostShared` is `Send + Sync` and shared by all workers; a `PluginVm` is `Rc` and
//! lives on one worker thread. VMs whose role is not [`VmRole::Canary`] spawn their timers and
//! HTTP calls with `tokio::task::spawn_local`, so they must be started and used inside a
//! `tokio::task::LocalSet`. A canary VM never spawns anything (it is thrown away after
//! `on_configure`, as in Envoy).

mod calls;
mod engine;
mod error;
mod exports;
mod http_context;
mod plugin;
#[cfg(test)]
mod tests;

pub use engine::HostShared;
pub use error::{VmError, VmRole};
pub use exports::Action;
pub use http_context::HttpStream;
pub use plugin::PluginVm;
// The seam types, under the paths the public API has always used.
pub use crate::plugin::{PluginSpec, WasmCode};
pub use crate::seam::{CallError, CallRequest, CallResponse, ClusterManager, DownstreamInfo};

/// The filter built by `host/build.rs`, embedded so the host needs no `.wasm` on disk.
pub static EMBEDDED_FILTER: &[u8] = include_bytes!(env!("FAILOVER_FILTER_WASM"));
