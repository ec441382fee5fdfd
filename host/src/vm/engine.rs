//! The process-wide part every VM shares: the engine, the linker with the ABI and WASI, the
//! module cache, and the stores host functions reach.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use wasmtime::{Engine, Linker, Module, Store};

use super::{VmError, EMBEDDED_FILTER};
use crate::abi;
use crate::abi::state::{HostState, ProcessStores};
use crate::metrics::Metrics;
use crate::plugin::{PluginSpec, WasmCode};
use crate::seam::ClusterManager;
use crate::shared_data::SharedData;

/// The one engine configuration: the serving engine and every compiling engine
/// ([`HostShared::compile`]) must agree, or the compiled module would not load.
fn new_engine() -> Result<Engine, VmError> {
    Engine::new(&wasmtime::Config::new()).map_err(|e| VmError::Engine(format!("{e:#}")))
}

/// Process-wide state every VM shares: engine, linker, compiled modules, shared data,
/// metrics. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct HostShared {
    pub(super) inner: Arc<SharedInner>,
}

/// content hash → (bytes, module) of every module compiled so far.
type ModuleCache = HashMap<u64, Vec<(Arc<[u8]>, Module)>>;

pub(super) struct SharedInner {
    engine: Engine,
    pub(super) linker: Linker<HostState>,
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
        let engine = new_engine()?;
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
        let module = self.compile(&spec.name, &bytes)?;
        let mut cache = self.inner.modules.lock().unwrap_or_else(|p| p.into_inner());
        let entry = cache.entry(key).or_default();
        if let Some((_, m)) = entry.iter().find(|(b, _)| **b == *bytes) {
            return Ok(m.clone());
        }
        entry.push((bytes, module.clone()));
        Ok(module)
    }

    /// Compiles `bytes` in an engine of its own and moves the result into the serving engine.
    ///
    /// Why not compile in the serving engine: wasmtime's Cranelift backend keeps one compiler
    /// context per compiling thread for reuse (`Compiler::contexts`), with the register
    /// allocator's buffers sized for the largest function it has seen, for as long as the
    /// engine lives. For the filter that was ~20 MiB of the RSS at `/ready`, held for the life of
    /// the process (bench/PROFILE.md, "Memory at start: the compiler's contexts"). Dropping the compiling
    /// engine frees them; the round trip through `serialize`/`deserialize` costs ~2 ms.
    fn compile(&self, plugin: &str, bytes: &[u8]) -> Result<Module, VmError> {
        let compile_error = |e: wasmtime::Error| VmError::Compile {
            plugin: plugin.to_owned(),
            message: format!("{e:#}"),
        };
        let image = {
            let compiler = new_engine()?;
            let compiled = Module::new(&compiler, bytes).map_err(compile_error)?;
            compiled.serialize().map_err(compile_error)?
        };
        // SAFETY: `deserialize` trusts its input to be wasmtime's own output for a compatible
        // engine. `image` is exactly that: `Module::serialize` produced it just above, in this
        // process, from an engine built by the same `new_engine` (same configuration, same
        // wasmtime), and it never left this function. wasmtime still checks the version and
        // the configuration recorded in it and errors on a mismatch.
        unsafe { Module::deserialize(&self.inner.engine, &image) }.map_err(compile_error)
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
    pub(super) fn checked_module(
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
