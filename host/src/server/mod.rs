//! Start-up, workers, reload and shutdown, in Envoy's order:
//!
//! ```text
//! load state file ─▶ HostShared ─▶ admin (/ready 503) ─▶ canary VM per plugin (main thread;
//! on_configure false → start-up fails with the plugin's log lines) ─▶ bind listeners
//! (SO_REUSEPORT, one socket per worker) ─▶ "main" Wasm thread: each HTTP filter's main-thread
//! VM (Envoy sets the filter's thread-local slot on the main thread too) and the singleton
//! WasmService VMs ─▶ N worker threads
//! (own current_thread runtime + LocalSet, own VMs, own pools) ─▶ /ready LIVE
//! SIGHUP: re-read config, start a new generation with the same HostShared (same shared data,
//!         so the failure queue survives) and the same listening sockets, then drain the old one
//! SIGINT/SIGTERM: drain, stop VMs, final state-file save
//! ```
//!
//! A listener whose address is unchanged by a reload keeps its sockets: the new generation's
//! workers accept on duplicates of the old generation's file descriptors, so a connection
//! waiting in an accept queue when the old workers stop accepting is taken by a new worker.
//! Envoy does the same for a listener update on the same address, "so that when using
//! reuse_port no TCP connections are dropped during the drain process"
//! (envoyproxy/envoy `source/common/listener_manager/listener_impl.md`). Binding new sockets
//! and closing the old ones reset every connection still queued on a closed socket
//! (`SO_REUSEPORT` gives each socket its own accept queue).

mod generation;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::admin::{self, AdminHandle, ServerState};
use crate::bootstrap::Bootstrap;
use crate::error::StartError;
use crate::metrics::Metrics;
use crate::shared_data::SharedData;
use crate::state_file;
use crate::vm::HostShared;

use generation::{local_runtime, spawn_thread, start_generation, Generation, Thread};

/// How the server runs (from the CLI).
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Worker threads.
    pub concurrency: usize,
    /// `--state-file`.
    pub state_file: Option<PathBuf>,
    /// How long old connections may finish after a reload or at shutdown.
    pub drain_time: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            concurrency: default_concurrency(),
            state_file: None,
            drain_time: Duration::from_secs(5),
        }
    }
}

/// Envoy's default `--concurrency`: the number of cores.
pub fn default_concurrency() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

// ===== the server =====

/// How long after the drain time [`Server::shutdown`] waits for workers to stop their VMs.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running server: admin, the current generation of workers, the state-file saver.
pub struct Server {
    shared: HostShared,
    opts: ServeOptions,
    state: ServerState,
    admin: Option<AdminHandle>,
    current: Option<Generation>,
    saver: Option<Thread>,
    draining: Vec<JoinHandle<()>>,
}

impl Server {
    /// Starts everything in Envoy's order (module docs).
    ///
    /// # Errors
    /// Corrupt state file, a plugin that fails to load or rejects its configuration, an
    /// address in use, …; everything started so far is stopped again.
    pub fn start(bootstrap: Bootstrap, opts: ServeOptions) -> Result<Self, StartError> {
        let store = Arc::new(SharedData::new());
        if let Some(path) = &opts.state_file {
            if state_file::restore_into(path, &store)? {
                tracing::info!("state file {} loaded", path.display());
            } else {
                tracing::info!(
                    "state file {} does not exist yet; starting empty",
                    path.display()
                );
            }
        }
        let shared = HostShared::with_stores(store, Arc::new(Metrics::new()))
            .map_err(|e| StartError::Plugin(e.to_string()))?;
        // Subscribe before any VM runs: the records the plugins create at start-up are saved too.
        let changed = shared.shared_data().changed();
        let state = ServerState::default();
        let admin = match bootstrap.admin {
            Some(addr) => Some(admin::spawn(addr, shared.metrics().clone(), state.clone())?),
            None => None,
        };
        let current = start_generation(&Arc::new(bootstrap), &shared, &opts, None)?;
        let saver = match &opts.state_file {
            Some(path) => Some(spawn_saver(
                path.clone(),
                shared.shared_data().clone(),
                changed,
            )?),
            None => None,
        };
        state.set_live();
        Ok(Self {
            shared,
            opts,
            state,
            admin,
            current: Some(current),
            saver,
            draining: Vec::new(),
        })
    }

    /// Replaces the running config: new VMs (same shared data), new listeners, then the old
    /// generation drains in the background. On error the old generation keeps running.
    ///
    /// # Errors
    /// Like [`Server::start`].
    pub fn reload(&mut self, bootstrap: Bootstrap) -> Result<(), StartError> {
        let next = start_generation(
            &Arc::new(bootstrap),
            &self.shared,
            &self.opts,
            self.current.as_ref(),
        )?;
        self.draining.retain(|d| !d.is_finished());
        if let Some(old) = self.current.replace(next) {
            self.draining.push(std::thread::spawn(move || old.stop()));
        }
        tracing::info!("configuration reloaded");
        Ok(())
    }

    /// Listener names and bound addresses of the current generation.
    pub fn listener_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.current
            .as_ref()
            .map(|g| g.listeners.clone())
            .unwrap_or_default()
    }

    /// The admin address, if any.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(AdminHandle::addr)
    }

    /// The process-wide VM state (shared data, metrics).
    pub fn shared(&self) -> &HostShared {
        &self.shared
    }

    /// Graceful stop: drain, stop VMs, final state-file save.
    ///
    /// Every generation gets `drain_time` for its connections and then a grace period to stop
    /// its VMs; a generation still running after that is left behind (it ends with the process)
    /// with an error line, so that SIGTERM always ends the process.
    pub fn shutdown(mut self) {
        self.state.set_draining();
        if let Some(g) = self.current.take() {
            self.draining.push(std::thread::spawn(move || g.stop()));
        }
        let deadline = Instant::now() + self.opts.drain_time + SHUTDOWN_GRACE;
        while self.draining.iter().any(|d| !d.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let stuck = self.draining.iter().filter(|d| !d.is_finished()).count();
        if stuck > 0 {
            tracing::error!(
                "{stuck} worker generation(s) did not stop within the drain time + {}s; exiting without them",
                SHUTDOWN_GRACE.as_secs()
            );
        }
        for d in self.draining.drain(..).filter(|d| d.is_finished()) {
            let _ = d.join();
        }
        if let Some(s) = self.saver.take() {
            s.join();
        }
        self.admin.take();
    }
}

fn spawn_saver(
    path: PathBuf,
    store: Arc<SharedData>,
    changed: watch::Receiver<u64>,
) -> Result<Thread, StartError> {
    spawn_thread("state-file".into(), move |started, stop| {
        local_runtime(&started, async {
            let _ = started.send(Ok(()));
            state_file::save_on_change(path, store, changed, stop).await;
        });
    })
}
