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

use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::admin::{self, AdminHandle, ServerState};
use crate::bootstrap::Bootstrap;
use crate::error::StartError;
use crate::metrics::Metrics;
use crate::proxy::{bind_reuseport, drained, serve, Clusters, ListenerContext, Router};
use crate::seam::ClusterManager;
use crate::shared_data::SharedData;
use crate::state_file;
use crate::stream::ChainOptions;
use crate::vm::{HostShared, PluginVm, VmRole};

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

// ===== one generation: the threads serving one config =====

struct Thread {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl Thread {
    /// Asks the thread to stop. Called once per thread: the stop channel is written once.
    fn signal(&self) {
        let _ = self.stop.send(true);
    }
    /// Waits for a thread that was [`Thread::signal`]led.
    fn wait(self) {
        let _ = self.handle.join();
    }
    /// Signals and waits.
    fn join(self) {
        self.signal();
        self.wait();
    }
}

/// One listener's listening sockets, one per worker. Shared (`Arc`) by the generations that
/// serve the listener: the sockets close when the last generation holding them is gone.
struct ListenerSockets {
    /// The address in the bootstrap (port 0 included): what a reload matches on.
    configured: SocketAddr,
    sockets: Vec<std::net::TcpListener>,
}

struct Generation {
    workers: Vec<Thread>,
    singleton: Option<Thread>,
    listeners: Vec<(String, SocketAddr)>,
    sockets: Vec<Arc<ListenerSockets>>,
}

impl Generation {
    /// Stops accepting, lets connections finish, stops the VMs; waits for all of it.
    fn stop(self) {
        for w in &self.workers {
            w.signal();
        }
        for w in self.workers {
            w.wait();
        }
        if let Some(s) = self.singleton {
            s.join();
        }
    }

    /// The sockets already bound for `configured` with `count` sockets, if this generation has
    /// them.
    fn sockets_for(&self, configured: SocketAddr, count: usize) -> Option<Arc<ListenerSockets>> {
        self.sockets
            .iter()
            .find(|s| s.configured == configured && s.sockets.len() == count)
            .cloned()
    }
}

type Started = mpsc::Sender<Result<(), String>>;

/// Starts the threads serving `b`. Listeners whose address `previous` (the running generation,
/// on a reload) already serves reuse its sockets; the others are bound here.
fn start_generation(
    b: &Arc<Bootstrap>,
    shared: &HostShared,
    opts: &ServeOptions,
    previous: Option<&Generation>,
) -> Result<Generation, StartError> {
    // Canary: every plugin once on this thread before anything else (on_configure false = reject).
    let canary_clusters = Clusters::new(&b.clusters)
        .map_err(|e| StartError::Internal(format!("{}: {e}", b.file.display())))?;
    let plugins = b
        .listeners
        .iter()
        .flat_map(|l| l.wasm_filters.iter())
        .chain(b.services.iter());
    for p in plugins {
        let clusters: Rc<dyn ClusterManager> = canary_clusters.clone();
        let vm = PluginVm::start(shared, &p.spec, VmRole::Canary, clusters).map_err(|e| {
            StartError::Plugin(format!("{} ({}): {e}", b.file.display(), p.config_path))
        })?;
        vm.shutdown();
    }
    drop(canary_clusters);

    // Sockets: bound here so "address in use" is a start-up error, one per worker; on a reload
    // the running generation's sockets for the same address are shared instead.
    let n = opts.concurrency.max(1);
    let mut sockets = Vec::new();
    let mut per_listener = Vec::new();
    let mut listeners = Vec::new();
    for l in &b.listeners {
        let bind_err = |source| StartError::Bind {
            what: format!("listener {:?}", l.name),
            addr: l.address,
            source,
        };
        let shared_socks = match previous.and_then(|g| g.sockets_for(l.address, n)) {
            Some(s) => s,
            None => Arc::new(ListenerSockets {
                configured: l.address,
                sockets: bind_reuseport(l.address, n).map_err(bind_err)?,
            }),
        };
        // Each worker gets its own descriptor (its runtime registers and closes it).
        let socks = shared_socks
            .sockets
            .iter()
            .map(std::net::TcpListener::try_clone)
            .collect::<Result<Vec<_>, _>>()
            .map_err(bind_err)?;
        let addr = socks
            .first()
            .and_then(|s| s.local_addr().ok())
            .unwrap_or(l.address);
        listeners.push((l.name.clone(), addr));
        per_listener.push(socks);
        sockets.push(shared_socks);
    }

    let has_filters = b.listeners.iter().any(|l| !l.wasm_filters.is_empty());
    let singleton = if b.services.is_empty() && !has_filters {
        None
    } else {
        Some(spawn_main_wasm(b.clone(), shared.clone())?)
    };
    let mut workers = Vec::new();
    for i in 0..n {
        let socks: Vec<std::net::TcpListener> =
            per_listener.iter_mut().filter_map(|v| v.pop()).collect();
        match spawn_worker(i, b.clone(), shared.clone(), socks, opts.drain_time) {
            Ok(t) => workers.push(t),
            Err(e) => {
                Generation {
                    workers,
                    singleton,
                    listeners,
                    sockets,
                }
                .stop();
                return Err(e);
            }
        }
    }
    for (name, addr) in &listeners {
        tracing::info!("listener {name:?} listening on {addr} ({n} workers)");
    }
    Ok(Generation {
        workers,
        singleton,
        listeners,
        sockets,
    })
}

fn wait_started(
    rx: mpsc::Receiver<Result<(), String>>,
    t: Thread,
    what: &str,
) -> Result<Thread, StartError> {
    match rx.recv() {
        Ok(Ok(())) => Ok(t),
        Ok(Err(e)) => {
            t.join();
            Err(StartError::Plugin(e))
        }
        Err(_) => {
            t.join();
            Err(StartError::Internal(format!(
                "{what} thread ended during start-up"
            )))
        }
    }
}

fn spawn_thread(
    name: String,
    f: impl FnOnce(Started, watch::Receiver<bool>) + Send + 'static,
) -> Result<Thread, StartError> {
    let (tx, rx) = mpsc::channel();
    let (stop, stop_rx) = watch::channel(false);
    let handle = std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || f(tx, stop_rx))
        .map_err(|e| StartError::Internal(format!("cannot start thread {name}: {e}")))?;
    wait_started(rx, Thread { stop, handle }, &name)
}

/// Runs `body` on a new current_thread runtime inside a `LocalSet`.
fn local_runtime(started: &Started, body: impl std::future::Future<Output = ()>) {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => tokio::task::LocalSet::new().block_on(&rt, body),
        Err(e) => {
            let _ = started.send(Err(format!("cannot start a runtime: {e}")));
        }
    }
}

fn spawn_worker(
    index: usize,
    b: Arc<Bootstrap>,
    shared: HostShared,
    sockets: Vec<std::net::TcpListener>,
    drain_time: Duration,
) -> Result<Thread, StartError> {
    spawn_thread(format!("worker-{index}"), move |started, drain| {
        local_runtime(&started, async {
            let clusters = match Clusters::new(&b.clusters) {
                Ok(c) => c,
                Err(e) => {
                    let _ = started.send(Err(e));
                    return;
                }
            };
            clusters.start_dns();
            let mut vms: Vec<Rc<PluginVm>> = Vec::new();
            let mut serving = Vec::new();
            for (l, sock) in b.listeners.iter().zip(sockets) {
                let mut filters = Vec::new();
                for p in &l.wasm_filters {
                    let cm: Rc<dyn ClusterManager> = clusters.clone();
                    match PluginVm::start(&shared, &p.spec, VmRole::Worker(index), cm) {
                        Ok(vm) => filters.push(vm),
                        Err(e) => {
                            let _ = started.send(Err(format!(
                                "{} ({}): {e}",
                                b.file.display(),
                                p.config_path
                            )));
                            vms.iter()
                                .chain(filters.iter())
                                .for_each(|vm| vm.shutdown());
                            return;
                        }
                    }
                }
                vms.extend(filters.iter().cloned());
                let local_addr = sock.local_addr().unwrap_or(l.address);
                let listener = match tokio::net::TcpListener::from_std(sock) {
                    Ok(t) => t,
                    Err(e) => {
                        let _ = started.send(Err(format!("listener {:?}: {e}", l.name)));
                        return;
                    }
                };
                let ctx = Rc::new(ListenerContext {
                    name: l.name.clone(),
                    local_addr,
                    filters,
                    router: Rc::new(Router::new(l, clusters.clone())),
                    chain: ChainOptions {
                        buffer_limit: l.buffer_limit as usize,
                    },
                });
                serving.push(serve(listener, ctx, drain.clone(), drain_time));
            }
            let _ = started.send(Ok(()));
            futures_util::future::join_all(serving).await;
            for vm in vms {
                vm.shutdown();
            }
        });
    })
}

/// The thread with Envoy's main-thread VMs: one per HTTP filter (as on a worker, but it never
/// sees a request; it ticks) and the singleton WasmServices.
fn spawn_main_wasm(b: Arc<Bootstrap>, shared: HostShared) -> Result<Thread, StartError> {
    spawn_thread("wasm-main".into(), move |started, mut stop| {
        local_runtime(&started, async {
            let clusters = match Clusters::new(&b.clusters) {
                Ok(c) => c,
                Err(e) => {
                    let _ = started.send(Err(e));
                    return;
                }
            };
            clusters.start_dns();
            let mut vms = Vec::new();
            let main_filters = b
                .listeners
                .iter()
                .flat_map(|l| l.wasm_filters.iter())
                .map(|p| (p, VmRole::Main));
            let services = b.services.iter().map(|p| (p, VmRole::Singleton));
            for (p, role) in main_filters.chain(services) {
                let cm: Rc<dyn ClusterManager> = clusters.clone();
                match PluginVm::start(&shared, &p.spec, role, cm) {
                    Ok(vm) => vms.push(vm),
                    Err(e) => {
                        let _ = started.send(Err(format!(
                            "{} ({}): {e}",
                            b.file.display(),
                            p.config_path
                        )));
                        vms.iter().for_each(|vm: &Rc<PluginVm>| vm.shutdown());
                        return;
                    }
                }
            }
            let _ = started.send(Ok(()));
            drained(&mut stop).await;
            for vm in vms {
                vm.shutdown();
            }
        });
    })
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
