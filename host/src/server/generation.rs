//! One generation: the threads serving one config (workers, the main Wasm thread), the
//! listening sockets they share, and how a generation starts and stops.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

use crate::bootstrap::Bootstrap;
use crate::error::StartError;
use crate::proxy::{bind_reuseport, drained, serve, Clusters, ListenerContext, Router};
use crate::seam::ClusterManager;
use crate::stream::ChainOptions;
use crate::vm::{HostShared, PluginVm, VmRole};

use super::ServeOptions;

pub(super) struct Thread {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl Thread {
    /// Asks the thread to stop. Called once per thread: the stop channel is written once.
    pub(super) fn signal(&self) {
        let _ = self.stop.send(true);
    }
    /// Waits for a thread that was [`Thread::signal`]led.
    pub(super) fn wait(self) {
        let _ = self.handle.join();
    }
    /// Signals and waits.
    pub(super) fn join(self) {
        self.signal();
        self.wait();
    }
}

/// One listener's listening sockets, one per worker. Shared (`Arc`) by the generations that
/// serve the listener: the sockets close when the last generation holding them is gone.
pub(super) struct ListenerSockets {
    /// The address in the bootstrap (port 0 included): what a reload matches on.
    configured: SocketAddr,
    sockets: Vec<std::net::TcpListener>,
}

pub(super) struct Generation {
    pub(super) workers: Vec<Thread>,
    pub(super) singleton: Option<Thread>,
    pub(super) listeners: Vec<(String, SocketAddr)>,
    pub(super) sockets: Vec<Arc<ListenerSockets>>,
}

impl Generation {
    /// Stops accepting, lets connections finish, stops the VMs; waits for all of it.
    pub(super) fn stop(self) {
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

pub(super) type Started = mpsc::Sender<Result<(), String>>;

/// Starts the threads serving `b`. Listeners whose address `previous` (the running generation,
/// on a reload) already serves reuse its sockets; the others are bound here.
pub(super) fn start_generation(
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

pub(super) fn wait_started(
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

pub(super) fn spawn_thread(
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
pub(super) fn local_runtime(started: &Started, body: impl std::future::Future<Output = ()>) {
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

/// This thread's clusters (pools, DNS refresh), or `None` after telling the starter why not.
fn thread_clusters(b: &Bootstrap, started: &Started) -> Option<Rc<Clusters>> {
    match Clusters::new(&b.clusters) {
        Ok(c) => {
            c.start_dns();
            Some(c)
        }
        Err(e) => {
            let _ = started.send(Err(e));
            None
        }
    }
}

pub(super) fn spawn_worker(
    index: usize,
    b: Arc<Bootstrap>,
    shared: HostShared,
    sockets: Vec<std::net::TcpListener>,
    drain_time: Duration,
) -> Result<Thread, StartError> {
    spawn_thread(format!("worker-{index}"), move |started, drain| {
        local_runtime(&started, async {
            let Some(clusters) = thread_clusters(&b, &started) else {
                return;
            };
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
pub(super) fn spawn_main_wasm(b: Arc<Bootstrap>, shared: HostShared) -> Result<Thread, StartError> {
    spawn_thread("wasm-main".into(), move |started, mut stop| {
        local_runtime(&started, async {
            let Some(clusters) = thread_clusters(&b, &started) else {
                return;
            };
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
