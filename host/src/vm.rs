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

use std::cell::{Cell, RefCell};
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::rc::{Rc, Weak};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::{Engine, Linker, Module, Store, TypedFunc};

use crate::abi;
use crate::abi::state::{
    CallResult, Deferred, Direction, HostState, Phase, ProcessStores, StreamState,
};
use crate::metrics::Metrics;
use crate::shared_data::SharedData;
// The seam types, under the paths the public API has always used.
pub use crate::seam::{
    CallError, CallRequest, CallResponse, ClusterManager, DownstreamInfo, PluginSpec, WasmCode,
};

/// The filter built by `host/build.rs`, embedded so the host needs no `.wasm` on disk.
pub static EMBEDDED_FILTER: &[u8] = include_bytes!(env!("FAILOVER_FILTER_WASM"));

// ===== errors =====

/// Why a VM could not be started or used. Messages name the plugin (and the import, the phase,
/// the plugin's own log lines) so a start-up failure is one clear line.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// The wasmtime engine could not be set up.
    #[error("wasm engine: {0}")]
    Engine(String),
    /// The `.wasm` file could not be read.
    #[error("plugin {plugin}: cannot read {}: {message}", path.display())]
    Read {
        /// Plugin name.
        plugin: String,
        /// The file named in the configuration.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
    /// The bytes are not a valid Wasm module.
    #[error("plugin {plugin}: failed to compile the Wasm module: {message}")]
    Compile {
        /// Plugin name.
        plugin: String,
        /// wasmtime's reason.
        message: String,
    },
    /// The module does not export `proxy_abi_version_0_2_1`.
    #[error("plugin {plugin}: Missing or unknown Proxy-Wasm ABI version")]
    AbiVersion {
        /// Plugin name.
        plugin: String,
    },
    /// The module imports something Envoy does not provide (Envoy's wording).
    #[error("plugin {plugin}: Failed to load Wasm module due to a missing import: {import}")]
    MissingImport {
        /// Plugin name.
        plugin: String,
        /// `module.name` of the import.
        import: String,
    },
    /// Instantiation failed for another reason (e.g. an import with the wrong signature).
    #[error("plugin {plugin}: failed to instantiate the Wasm module: {message}")]
    Instantiate {
        /// Plugin name.
        plugin: String,
        /// wasmtime's reason.
        message: String,
    },
    /// The module trapped (the VM is unusable afterwards, as in Envoy).
    #[error("plugin {plugin}: the Wasm module trapped in {during}: {message}")]
    Trap {
        /// Plugin name.
        plugin: String,
        /// Which callback or start function.
        during: String,
        /// The trap and its backtrace.
        message: String,
    },
    /// `proxy_on_vm_start` returned false.
    #[error("plugin {plugin}: on_vm_start failed{}", render_logs(.logs))]
    VmStartRejected {
        /// Plugin name.
        plugin: String,
        /// The plugin's log lines while starting.
        logs: Vec<String>,
    },
    /// `proxy_on_configure` returned false: the plugin rejected its configuration.
    #[error("plugin {plugin}: the plugin rejected its configuration (on_configure returned false){}", render_logs(.logs))]
    ConfigureRejected {
        /// Plugin name.
        plugin: String,
        /// The plugin's log lines while starting (its reason is usually among them).
        logs: Vec<String>,
    },
    /// The VM trapped earlier and is not called again.
    #[error("plugin {plugin}: the Wasm VM failed earlier and is not usable")]
    Failed {
        /// Plugin name.
        plugin: String,
    },
    /// A call into the VM while another one is running (a host bug; refused, not re-entered).
    #[error("plugin {plugin}: re-entrant call into the Wasm VM refused")]
    Busy {
        /// Plugin name.
        plugin: String,
    },
}

fn render_logs(logs: &[String]) -> String {
    if logs.is_empty() {
        String::new()
    } else {
        format!("; plugin log: {}", logs.join(" | "))
    }
}

/// Which VM this is (log prefix, and whether timers and HTTP calls run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmRole {
    /// The throw-away VM checked on the main thread before any worker starts.
    Canary,
    /// The VM of worker thread N.
    Worker(usize),
    /// The HTTP filter's VM on the main thread. Envoy sets the filter's thread-local slot on
    /// every worker *and* on the main thread, so each HTTP filter also has a VM there: it runs
    /// `on_vm_start`, `on_configure` and its ticks (and may dispatch HTTP calls), but never sees
    /// a request.
    Main,
    /// The singleton WasmService VM.
    Singleton,
}

impl fmt::Display for VmRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmRole::Canary => write!(f, "canary"),
            VmRole::Worker(n) => write!(f, "worker {n}"),
            VmRole::Main => write!(f, "main"),
            VmRole::Singleton => write!(f, "singleton"),
        }
    }
}

// ===== process-wide state =====

/// Process-wide state every VM shares: engine, linker, compiled modules, shared data,
/// metrics. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct HostShared {
    inner: Arc<SharedInner>,
}

/// content hash → (bytes, module) of every module compiled so far.
type ModuleCache = HashMap<u64, Vec<(Arc<[u8]>, Module)>>;

struct SharedInner {
    engine: Engine,
    linker: Linker<HostState>,
    /// content hash → (bytes, module); bytes compared on a hit, so a collision cannot mix modules.
    modules: Mutex<ModuleCache>,
    /// Shared data, metrics and queues: the part of this state the host functions reach.
    stores: ProcessStores,
}

impl HostShared {
    /// A new engine with the proxy-wasm ABI and Envoy's WASI allowlist linked, an empty
    /// shared-data store and metrics registry.
    ///
    /// # Errors
    /// When wasmtime cannot create the engine or register a host function.
    pub fn new() -> Result<Self, VmError> {
        Self::with_stores(Arc::new(SharedData::new()), Arc::new(Metrics::new()))
    }

    /// Like [`HostShared::new`] but around existing stores (e.g. a shared-data store already
    /// restored from the state file).
    ///
    /// # Errors
    /// When wasmtime cannot create the engine or register a host function.
    pub fn with_stores(
        shared_data: Arc<SharedData>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, VmError> {
        let engine =
            Engine::new(&wasmtime::Config::new()).map_err(|e| VmError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        abi::add_to_linker(&mut linker).map_err(|e| VmError::Engine(format!("{e:#}")))?;
        crate::wasi::add_to_linker(&mut linker).map_err(|e| VmError::Engine(format!("{e:#}")))?;
        Ok(Self {
            inner: Arc::new(SharedInner {
                engine,
                linker,
                modules: Mutex::new(HashMap::new()),
                stores: ProcessStores::new(shared_data, metrics),
            }),
        })
    }

    /// The shared-data store (admin, state file).
    pub fn shared_data(&self) -> &Arc<SharedData> {
        self.inner.stores.shared_data()
    }

    /// The metrics registry (admin `/stats`).
    pub fn metrics(&self) -> &Arc<Metrics> {
        self.inner.stores.metrics()
    }

    /// Compiles `spec.code`, or returns the module compiled earlier from the same bytes.
    ///
    /// # Errors
    /// The file cannot be read, or the bytes are not a valid module.
    pub fn load_module(&self, spec: &PluginSpec) -> Result<Module, VmError> {
        let bytes: Arc<[u8]> = match &spec.code {
            WasmCode::Embedded => Arc::from(EMBEDDED_FILTER),
            WasmCode::Bytes(b) => b.clone(),
            WasmCode::File(path) => {
                std::fs::read(path)
                    .map(Arc::from)
                    .map_err(|e| VmError::Read {
                        plugin: spec.name.clone(),
                        path: path.clone(),
                        message: e.to_string(),
                    })?
            }
        };
        let mut hasher = DefaultHasher::new();
        bytes.hash(&mut hasher);
        let key = hasher.finish();
        {
            let cache = self.inner.modules.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((_, m)) = cache
                .get(&key)
                .and_then(|v| v.iter().find(|(b, _)| **b == *bytes))
            {
                return Ok(m.clone());
            }
        }
        // Compile outside the lock: other workers may load other modules meanwhile.
        let module = Module::new(&self.inner.engine, &bytes).map_err(|e| VmError::Compile {
            plugin: spec.name.clone(),
            message: format!("{e:#}"),
        })?;
        let mut cache = self.inner.modules.lock().unwrap_or_else(|p| p.into_inner());
        let entry = cache.entry(key).or_default();
        if let Some((_, m)) = entry.iter().find(|(b, _)| **b == *bytes) {
            return Ok(m.clone());
        }
        entry.push((bytes, module.clone()));
        Ok(module)
    }

    /// Loads `spec`'s module as Envoy does before it runs any of it: the bytes are read and
    /// compiled, `proxy_abi_version_0_2_1` is exported, every import is one Envoy provides.
    /// `--mode validate` stops here; [`PluginVm::start`] goes on to instantiate and configure.
    ///
    /// # Errors
    /// `Read`, `Compile`, `AbiVersion` or `MissingImport`.
    pub fn check_module(
        &self,
        spec: &PluginSpec,
        clusters: Rc<dyn ClusterManager>,
    ) -> Result<(), VmError> {
        self.checked_module(spec, spec.name.clone(), clusters)
            .map(|_| ())
    }

    /// [`HostShared::check_module`], keeping the module and the store the VM will live in.
    fn checked_module(
        &self,
        spec: &PluginSpec,
        label: String,
        clusters: Rc<dyn ClusterManager>,
    ) -> Result<(Module, Store<HostState>), VmError> {
        let plugin = spec.name.clone();
        let module = self.load_module(spec)?;
        if module.get_export("proxy_abi_version_0_2_1").is_none() {
            return Err(VmError::AbiVersion { plugin });
        }
        let state = HostState::new(spec.clone(), label, self.inner.stores.clone(), clusters);
        let mut store = Store::new(&self.inner.engine, state);
        for import in module.imports() {
            if self
                .inner
                .linker
                .get_by_import(&mut store, &import)
                .is_none()
            {
                return Err(VmError::MissingImport {
                    plugin,
                    import: format!("{}.{}", import.module(), import.name()),
                });
            }
        }
        Ok((module, store))
    }
}

// ===== one VM =====

/// What a `proxy_on_*_headers/body/trailers` callback returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Go on with the next filter.
    Continue,
    /// Stop iteration (headers) / stop and buffer (body) until resumed.
    Pause,
}

impl Action {
    fn from_abi(v: i32) -> Self {
        if v == 0 {
            Action::Continue
        } else {
            Action::Pause
        }
    }
}

type F1 = TypedFunc<i32, ()>;
type F1R = TypedFunc<i32, i32>;
type F2 = TypedFunc<(i32, i32), ()>;
type F2R = TypedFunc<(i32, i32), i32>;
type F3R = TypedFunc<(i32, i32, i32), i32>;
type F5 = TypedFunc<(i32, i32, i32, i32, i32), ()>;

struct Exports {
    on_context_create: Option<F2>,
    on_vm_start: Option<F2R>,
    on_configure: Option<F2R>,
    on_tick: Option<F1>,
    on_request_headers: Option<F3R>,
    on_request_body: Option<F3R>,
    on_request_trailers: Option<F2R>,
    on_response_headers: Option<F3R>,
    on_response_body: Option<F3R>,
    on_response_trailers: Option<F2R>,
    on_http_call_response: Option<F5>,
    on_log: Option<F1>,
    on_done: Option<F1R>,
    on_delete: Option<F1>,
}

/// One instance of a plugin on one thread: its own Store, root context, timers.
pub struct PluginVm {
    spec: PluginSpec,
    role: VmRole,
    label: String,
    store: RefCell<Store<HostState>>,
    exports: Exports,
    root_context_id: u32,
    next_context_id: Cell<u32>,
    failed: Cell<bool>,
    shut_down: Cell<bool>,
    tick_task: RefCell<Option<tokio::task::JoinHandle<()>>>,
    weak: Weak<PluginVm>,
}

fn trap_message(e: &wasmtime::Error) -> String {
    format!("{e:?}").replace('\n', " | ")
}

impl PluginVm {
    /// Instantiates the plugin, runs its start functions, creates the root context and runs
    /// `on_vm_start` and `on_configure`.
    ///
    /// # Errors
    /// See [`VmError`]; notably `ConfigureRejected` (with the plugin's log lines) when
    /// `on_configure` returns false, `MissingImport` naming the first import Envoy would not
    /// provide, `AbiVersion` when `proxy_abi_version_0_2_1` is not exported.
    pub fn start(
        shared: &HostShared,
        spec: &PluginSpec,
        role: VmRole,
        clusters: Rc<dyn ClusterManager>,
    ) -> Result<Rc<PluginVm>, VmError> {
        let plugin = spec.name.clone();
        let label = format!("{} {}", spec.name, role);
        let (module, mut store) = shared.checked_module(spec, label.clone(), clusters)?;
        let instance = shared
            .inner
            .linker
            .instantiate(&mut store, &module)
            .map_err(|e| VmError::Instantiate {
                plugin: plugin.clone(),
                message: format!("{e:#}"),
            })?;
        let memory = instance.get_memory(&mut store, "memory");
        // Envoy (cpp-host `WasmBase::getFunctions`) takes `malloc` first and falls back to
        // `proxy_on_memory_allocate`.
        let alloc = instance
            .get_typed_func::<u32, u32>(&mut store, "malloc")
            .or_else(|_| {
                instance.get_typed_func::<u32, u32>(&mut store, "proxy_on_memory_allocate")
            })
            .ok();
        if alloc.is_none() {
            // Envoy refuses such a module when it loads it (cpp-host `getFunctions`).
            return Err(VmError::Instantiate {
                plugin,
                message: "Wasm module is missing malloc function.".into(),
            });
        }
        store.data_mut().memory = memory;
        store.data_mut().alloc = alloc.map(Rc::new);

        // Start functions: only logging and a few WASI calls are allowed (phase Initializing).
        let start_err = |during: &str, e: wasmtime::Error| VmError::Trap {
            plugin: plugin.clone(),
            during: during.to_string(),
            message: trap_message(&e),
        };
        if let Ok(init) = instance.get_typed_func::<(), ()>(&mut store, "_initialize") {
            init.call(&mut store, ())
                .map_err(|e| start_err("_initialize", e))?;
            if let Ok(main) = instance.get_typed_func::<(i32, i32), i32>(&mut store, "main") {
                main.call(&mut store, (0, 0))
                    .map_err(|e| start_err("main", e))?;
            }
        } else if let Ok(start) = instance.get_typed_func::<(), ()>(&mut store, "_start") {
            start
                .call(&mut store, ())
                .map_err(|e| start_err("_start", e))?;
        }
        store.data_mut().phase = Phase::Running;

        macro_rules! export {
            ($name:literal) => {
                instance.get_typed_func(&mut store, $name).ok()
            };
        }
        let exports = Exports {
            on_context_create: export!("proxy_on_context_create"),
            on_vm_start: export!("proxy_on_vm_start"),
            on_configure: export!("proxy_on_configure"),
            on_tick: export!("proxy_on_tick"),
            on_request_headers: export!("proxy_on_request_headers"),
            on_request_body: export!("proxy_on_request_body"),
            on_request_trailers: export!("proxy_on_request_trailers"),
            on_response_headers: export!("proxy_on_response_headers"),
            on_response_body: export!("proxy_on_response_body"),
            on_response_trailers: export!("proxy_on_response_trailers"),
            on_http_call_response: export!("proxy_on_http_call_response"),
            on_log: export!("proxy_on_log"),
            on_done: export!("proxy_on_done"),
            on_delete: export!("proxy_on_delete"),
        };
        let root_context_id = 1;
        store.data_mut().root_context_id = root_context_id;
        store.data_mut().effective_context = root_context_id;

        let vm = Rc::new_cyclic(|weak| PluginVm {
            spec: spec.clone(),
            role,
            label,
            store: RefCell::new(store),
            exports,
            root_context_id,
            next_context_id: Cell::new(root_context_id + 1),
            failed: Cell::new(false),
            shut_down: Cell::new(false),
            tick_task: RefCell::new(None),
            weak: weak.clone(),
        });

        let root = root_context_id as i32;
        if let Some(f) = vm.exports.on_context_create.clone() {
            // cpp-host `ContextBase::onStart` sets `temp_plugin_` around the root context's
            // `on_context_create`: the plugin configuration is readable there.
            vm.with_state(|s| s.plugin_config_readable = true);
            let created = vm.call("proxy_on_context_create", root_context_id, |s| {
                f.call(s, (root, 0))
            });
            vm.with_state(|s| s.plugin_config_readable = false);
            created?;
        }
        let vm_config_len = spec.vm_configuration.len() as i32;
        if let Some(f) = vm.exports.on_vm_start.clone() {
            if vm.call("proxy_on_vm_start", root_context_id, |s| {
                f.call(s, (root, vm_config_len))
            })? == 0
            {
                return Err(VmError::VmStartRejected {
                    plugin,
                    logs: vm.take_logs(),
                });
            }
        }
        let config_len = spec.configuration.len() as i32;
        if let Some(f) = vm.exports.on_configure.clone() {
            // Only here can the plugin read its configuration (cpp-host
            // `ContextBase::onConfigure` sets `temp_plugin_` for the call; Envoy's
            // `Context::getBuffer(PluginConfiguration)` is NOT_FOUND without it).
            vm.with_state(|s| s.plugin_config_readable = true);
            let configured = vm.call("proxy_on_configure", root_context_id, |s| {
                f.call(s, (root, config_len))
            });
            vm.with_state(|s| s.plugin_config_readable = false);
            if configured? == 0 {
                vm.stop_timer();
                return Err(VmError::ConfigureRejected {
                    plugin,
                    logs: vm.take_logs(),
                });
            }
        }
        vm.take_logs();
        Ok(vm)
    }

    /// The plugin this VM runs.
    pub fn spec(&self) -> &PluginSpec {
        &self.spec
    }

    /// Canary, worker N or singleton.
    pub fn role(&self) -> VmRole {
        self.role
    }

    /// True once the module trapped: it is never called again (requests then follow
    /// `fail_open`).
    pub fn is_failed(&self) -> bool {
        self.failed.get()
    }

    fn take_logs(&self) -> Vec<String> {
        match self.store.try_borrow_mut() {
            Ok(mut s) => s.data_mut().captured_logs.take().unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }

    /// Runs one guest call with `context` as the effective context, then acts on what the
    /// call's host functions deferred. A trap marks the VM failed.
    pub(crate) fn call<R>(
        &self,
        during: &str,
        context: u32,
        f: impl FnOnce(&mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, VmError> {
        if self.failed.get() {
            return Err(VmError::Failed {
                plugin: self.spec.name.clone(),
            });
        }
        let result = {
            let Ok(mut store) = self.store.try_borrow_mut() else {
                tracing::error!(vm = %self.label, during, "re-entrant call into the Wasm VM refused");
                return Err(VmError::Busy {
                    plugin: self.spec.name.clone(),
                });
            };
            store.data_mut().effective_context = context;
            f(&mut store)
        };
        match result {
            Ok(r) => {
                self.process_deferred();
                Ok(r)
            }
            Err(e) => {
                self.failed.set(true);
                self.stop_timer();
                let message = trap_message(&e);
                tracing::error!(target: "wasm", vm = %self.label, during, "[{}] Wasm VM failed in {during}: {message}", self.label);
                Err(VmError::Trap {
                    plugin: self.spec.name.clone(),
                    during: during.to_string(),
                    message,
                })
            }
        }
    }

    /// Access to the store data between guest calls.
    pub(crate) fn with_state<R>(&self, f: impl FnOnce(&mut HostState) -> R) -> Option<R> {
        let mut store = self.store.try_borrow_mut().ok()?;
        Some(f(store.data_mut()))
    }

    fn stop_timer(&self) {
        if let Ok(mut t) = self.tick_task.try_borrow_mut() {
            if let Some(handle) = t.take() {
                handle.abort();
            }
        }
    }

    /// Starts what host functions asked for during the last guest call (HTTP calls, timers).
    fn process_deferred(&self) {
        let (deferred, clusters) = match self.store.try_borrow_mut() {
            // Most guest calls defer nothing: return before cloning the cluster handle.
            Ok(s) if s.data().deferred.is_empty() => return,
            Ok(mut s) => (
                std::mem::take(&mut s.data_mut().deferred),
                s.data().clusters.clone(),
            ),
            Err(_) => return,
        };
        for d in deferred {
            match d {
                Deferred::SetTick(ms) => {
                    self.stop_timer();
                    if ms == 0 || self.role == VmRole::Canary || self.shut_down.get() {
                        continue;
                    }
                    let period = Duration::from_millis(u64::from(ms));
                    let weak = self.weak.clone();
                    let handle = tokio::task::spawn_local(async move {
                        let mut interval =
                            tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        loop {
                            interval.tick().await;
                            let Some(vm) = weak.upgrade() else { break };
                            if vm.shut_down.get() || vm.failed.get() {
                                break;
                            }
                            vm.on_tick();
                        }
                    });
                    if let Ok(mut t) = self.tick_task.try_borrow_mut() {
                        *t = Some(handle);
                    }
                }
                Deferred::HttpCall {
                    token,
                    cluster,
                    request,
                    timeout,
                } => {
                    if self.role == VmRole::Canary || self.shut_down.get() {
                        tracing::debug!(vm = %self.label, cluster = %cluster, "HTTP call from a canary VM is not started");
                        continue;
                    }
                    let future = clusters.call(&cluster, request, timeout);
                    let weak = self.weak.clone();
                    tokio::task::spawn_local(async move {
                        let result = future.await;
                        if let Some(vm) = weak.upgrade() {
                            vm.deliver_http_call(token, result);
                        }
                    });
                }
            }
        }
    }

    fn on_tick(&self) {
        if let Some(f) = self.exports.on_tick.as_ref() {
            let root = self.root_context_id as i32;
            let _ = self.call("proxy_on_tick", self.root_context_id, |s| f.call(s, root));
        }
    }

    /// Delivers a finished `dispatch_http_call` (0 headers when it failed), with the response
    /// readable through the buffer/header calls during the callback.
    ///
    /// As in Envoy, every call belongs to the root context (cpp-host `http_call` runs
    /// `httpCall` on `root_context()`): the callback gets the root context's id, with the root
    /// as the effective context — the SDK switches to the HTTP context that dispatched it with
    /// `proxy_set_effective_context` — and a call outlives the HTTP context that made it (the
    /// answer still arrives; the SDK then finds no context for it and drops it).
    fn deliver_http_call(&self, token: u32, result: Result<CallResponse, CallError>) {
        if self.shut_down.get() || self.failed.get() {
            return;
        }
        let Some(context) = self
            .with_state(|s| s.pending_calls.remove(&token))
            .flatten()
        else {
            return; // the root context went away (shutdown): Envoy cancels its calls
        };
        let response = match result {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::debug!(vm = %self.label, token, error = %e, "dispatch_http_call failed");
                None
            }
        };
        let (nh, nb, nt) = response
            .as_ref()
            .map(|r| {
                (
                    r.headers.len() as i32,
                    r.body.len() as i32,
                    r.trailers.len() as i32,
                )
            })
            .unwrap_or((0, 0, 0));
        self.with_state(|s| s.http_call_result = Some(CallResult { response }));
        if let Some(f) = self.exports.on_http_call_response.as_ref() {
            let root = self.root_context_id as i32;
            let tok = token as i32;
            let _ = self.call("proxy_on_http_call_response", self.root_context_id, |s| {
                f.call(s, (root, tok, nh, nb, nt))
            });
        }
        self.with_state(|s| s.http_call_result = None);
        // A stream waiting on this answer is woken by the flags the callback raised.
        self.with_state(|s| {
            if let Some(stream) = s.streams.get(&context) {
                stream.signal.notify_one();
            }
        });
    }

    /// Begins one HTTP stream: creates its context (`proxy_on_context_create(ctx, root)`).
    pub fn new_stream(self: &Rc<Self>, info: DownstreamInfo) -> HttpStream {
        let id = self.next_context_id.get();
        self.next_context_id
            .set(id.wrapping_add(1).max(self.root_context_id + 1));
        let signal = self
            .with_state(|s| {
                let state = StreamState::new(info);
                let signal = state.signal.clone();
                s.streams.insert(id, state);
                signal
            })
            .unwrap_or_else(|| Rc::new(tokio::sync::Notify::new()));
        let mut created = false;
        if !self.failed.get() {
            created = match self.exports.on_context_create.as_ref() {
                Some(f) => {
                    let root = self.root_context_id as i32;
                    self.call("proxy_on_context_create", id, |s| {
                        f.call(s, (id as i32, root))
                    })
                    .is_ok()
                }
                None => true,
            };
        }
        HttpStream {
            vm: self.clone(),
            id,
            signal,
            created,
            finished: Cell::new(false),
        }
    }

    /// Graceful end: `on_done` and `on_delete` of the root context; timers stop; pending HTTP
    /// calls are dropped.
    pub fn shutdown(&self) {
        if self.shut_down.replace(true) {
            return;
        }
        self.stop_timer();
        let root = self.root_context_id as i32;
        if let Some(f) = self.exports.on_done.as_ref() {
            let _ = self.call("proxy_on_done", self.root_context_id, |s| f.call(s, root));
        }
        if let Some(f) = self.exports.on_delete.as_ref() {
            let _ = self.call("proxy_on_delete", self.root_context_id, |s| f.call(s, root));
        }
        self.with_state(|s| s.pending_calls.clear());
    }
}

impl Drop for PluginVm {
    fn drop(&mut self) {
        self.stop_timer();
    }
}

// ===== one HTTP context =====

/// One HTTP context of one VM. Driven by the stream driver (`stream::run_filter_chain`); when dropped it
/// makes sure `on_log`, `on_done` and `on_delete` ran (a stream that ends early still gets
/// them, as in Envoy).
pub struct HttpStream {
    vm: Rc<PluginVm>,
    id: u32,
    signal: Rc<tokio::sync::Notify>,
    created: bool,
    finished: Cell<bool>,
}

impl HttpStream {
    /// The context id the plugin knows this stream by.
    pub fn context_id(&self) -> u32 {
        self.id
    }

    /// The VM this stream belongs to.
    pub fn vm(&self) -> &Rc<PluginVm> {
        &self.vm
    }

    /// False when the VM could not create the context (it failed): the stream bypasses it.
    pub(crate) fn is_live(&self) -> bool {
        self.created && !self.vm.failed.get() && !self.finished.get()
    }

    pub(crate) fn signal(&self) -> Rc<tokio::sync::Notify> {
        self.signal.clone()
    }

    /// Reads or changes this stream's state between guest calls.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut StreamState) -> R) -> Option<R> {
        self.vm
            .with_state(|s| s.streams.get_mut(&self.id).map(f))
            .flatten()
    }

    fn action(
        &self,
        during: &str,
        f: Option<&F3R>,
        a: usize,
        eos: bool,
    ) -> Result<Action, VmError> {
        let Some(f) = f else {
            return Ok(Action::Continue);
        };
        let id = self.id as i32;
        self.vm
            .call(during, self.id, |s| f.call(s, (id, a as i32, eos as i32)))
            .map(Action::from_abi)
    }

    fn action2(&self, during: &str, f: Option<&F2R>, a: usize) -> Result<Action, VmError> {
        let Some(f) = f else {
            return Ok(Action::Continue);
        };
        let id = self.id as i32;
        self.vm
            .call(during, self.id, |s| f.call(s, (id, a as i32)))
            .map(Action::from_abi)
    }

    /// `proxy_on_request_headers` / `proxy_on_response_headers` with `n` headers.
    pub(crate) fn on_headers(
        &self,
        dir: Direction,
        n: usize,
        eos: bool,
    ) -> Result<Action, VmError> {
        let e = &self.vm.exports;
        match dir {
            Direction::Request => self.action(
                "proxy_on_request_headers",
                e.on_request_headers.as_ref(),
                n,
                eos,
            ),
            Direction::Response => self.action(
                "proxy_on_response_headers",
                e.on_response_headers.as_ref(),
                n,
                eos,
            ),
        }
    }

    /// `proxy_on_request_body` / `proxy_on_response_body` with `size` bytes buffered.
    pub(crate) fn on_body(
        &self,
        dir: Direction,
        size: usize,
        eos: bool,
    ) -> Result<Action, VmError> {
        let e = &self.vm.exports;
        match dir {
            Direction::Request => self.action(
                "proxy_on_request_body",
                e.on_request_body.as_ref(),
                size,
                eos,
            ),
            Direction::Response => self.action(
                "proxy_on_response_body",
                e.on_response_body.as_ref(),
                size,
                eos,
            ),
        }
    }

    /// `proxy_on_request_trailers` / `proxy_on_response_trailers` with `n` trailers.
    pub(crate) fn on_trailers(&self, dir: Direction, n: usize) -> Result<Action, VmError> {
        let e = &self.vm.exports;
        match dir {
            Direction::Request => self.action2(
                "proxy_on_request_trailers",
                e.on_request_trailers.as_ref(),
                n,
            ),
            Direction::Response => self.action2(
                "proxy_on_response_trailers",
                e.on_response_trailers.as_ref(),
                n,
            ),
        }
    }

    /// `on_log`, `on_done`, `on_delete` (once), then forgets the context (not its HTTP calls,
    /// which belong to the root context, as in Envoy).
    pub fn finish(&self) {
        if self.finished.replace(true) {
            return;
        }
        if self.created && !self.vm.failed.get() {
            let id = self.id as i32;
            if let Some(f) = self.vm.exports.on_log.as_ref() {
                // Envoy's access-log phase (`Context::log`): header reads see the request as
                // forwarded and the response as sent; a missing map is NOT_FOUND there.
                self.with(|st| st.log = Some(std::mem::take(&mut st.log_view)));
                let _ = self.vm.call("proxy_on_log", self.id, |s| f.call(s, id));
                self.with(|st| st.log = None);
            }
            if let Some(f) = self.vm.exports.on_done.as_ref() {
                let _ = self.vm.call("proxy_on_done", self.id, |s| f.call(s, id));
            }
            if let Some(f) = self.vm.exports.on_delete.as_ref() {
                let _ = self.vm.call("proxy_on_delete", self.id, |s| f.call(s, id));
            }
        }
        let id = self.id;
        // Its HTTP calls are the root context's (Envoy): they stay pending.
        self.vm.with_state(|s| {
            s.streams.remove(&id);
            if s.effective_context == id {
                s.effective_context = s.root_context_id;
            }
        });
    }
}

impl Drop for HttpStream {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_shared_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<HostShared>();
    }

    #[test]
    fn roles_read_like_envoy_log_prefixes() {
        assert_eq!(VmRole::Worker(2).to_string(), "worker 2");
        assert_eq!(VmRole::Canary.to_string(), "canary");
        assert_eq!(VmRole::Singleton.to_string(), "singleton");
        assert_eq!(VmRole::Main.to_string(), "main");
    }
}
