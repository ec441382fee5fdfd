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
//!         so the failure queue survives), then drain the old one
//! SIGINT/SIGTERM: drain, stop VMs, final state-file save
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

use crate::admin::{self, AdminHandle, ServerState};
use crate::bootstrap::{Bootstrap, WasmPlugin, WasmSource};
use crate::error::StartError;
use crate::metrics::Metrics;
use crate::proxy::{bind_reuseport, serve, Clusters, ListenerContext, Router};
use crate::shared_data::SharedData;
use crate::state_file;
use crate::stream::ChainOptions;
use crate::vm::{ClusterManager, HostShared, PluginSpec, PluginVm, VmRole, WasmCode};

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

/// The VM description of a configured plugin.
pub fn plugin_spec(p: &WasmPlugin) -> PluginSpec {
    PluginSpec {
        name: p.name.clone(),
        root_id: p.root_id.clone(),
        vm_id: p.vm_id.clone(),
        configuration: p.configuration.clone(),
        vm_configuration: p.vm_configuration.clone(),
        environment: p.environment.clone(),
        code: match &p.code {
            WasmSource::Embedded => WasmCode::Embedded,
            WasmSource::File(f) => WasmCode::File(f.clone()),
            WasmSource::Inline(b) => WasmCode::Bytes(Arc::from(b.as_slice())),
        },
        fail_open: p.fail_open,
        allow_on_headers_stop_iteration: p.allow_on_headers_stop_iteration,
    }
}

// ===== one generation: the threads serving one config =====

struct Thread {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl Thread {
    fn signal(&self) {
        let _ = self.stop.send(true);
    }
    fn join(self) {
        let _ = self.stop.send(true);
        let _ = self.handle.join();
    }
}

struct Generation {
    workers: Vec<Thread>,
    singleton: Option<Thread>,
    listeners: Vec<(String, SocketAddr)>,
}

impl Generation {
    /// Stops accepting, lets connections finish, stops the VMs; waits for all of it.
    fn stop(self) {
        for w in &self.workers {
            w.signal();
        }
        for w in self.workers {
            w.join();
        }
        if let Some(s) = self.singleton {
            s.join();
        }
    }
}

type Started = mpsc::Sender<Result<(), String>>;

fn start_generation(
    b: &Arc<Bootstrap>,
    shared: &HostShared,
    opts: &ServeOptions,
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
        let vm =
            PluginVm::start(shared, &plugin_spec(p), VmRole::Canary, clusters).map_err(|e| {
                StartError::Plugin(format!("{} ({}): {e}", b.file.display(), p.config_path))
            })?;
        vm.shutdown();
    }
    drop(canary_clusters);

    // Sockets: bound here so "address in use" is a start-up error, one per worker.
    let n = opts.concurrency.max(1);
    let mut per_listener = Vec::new();
    let mut listeners = Vec::new();
    for l in &b.listeners {
        let socks = bind_reuseport(l.address, n).map_err(|source| StartError::Bind {
            what: format!("listener {:?}", l.name),
            addr: l.address,
            source,
        })?;
        let addr = socks
            .first()
            .and_then(|s| s.local_addr().ok())
            .unwrap_or(l.address);
        listeners.push((l.name.clone(), addr));
        per_listener.push(socks);
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
                    match PluginVm::start(&shared, &plugin_spec(p), VmRole::Worker(index), cm) {
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
                match PluginVm::start(&shared, &plugin_spec(p), role, cm) {
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
            let _ = stop.wait_for(|s| *s).await;
            for vm in vms {
                vm.shutdown();
            }
        });
    })
}

// ===== the server =====

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
        let current = start_generation(&Arc::new(bootstrap), &shared, &opts)?;
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
        let next = start_generation(&Arc::new(bootstrap), &self.shared, &self.opts)?;
        if let Some(old) = self.current.replace(next) {
            let handle = std::thread::spawn(move || old.stop());
            self.draining.push(handle);
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
    pub fn shutdown(mut self) {
        self.state.set_draining();
        if let Some(g) = self.current.take() {
            g.stop();
        }
        for d in self.draining.drain(..) {
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
