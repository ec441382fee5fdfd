//! One instance of a plugin on one thread: start-up with Envoy's lifecycle, guest calls, the
//! HTTP streams it begins, shutdown.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use wasmtime::Store;

use super::exports::Exports;
use super::{HostShared, HttpStream, VmError, VmRole};
use crate::abi::state::{HostState, Phase, StreamState};
use crate::plugin::PluginSpec;
use crate::seam::{ClusterManager, DownstreamInfo};

/// One instance of a plugin on one thread: its own Store, root context, timers.
pub struct PluginVm {
    pub(super) spec: PluginSpec,
    pub(super) role: VmRole,
    pub(super) label: String,
    pub(super) store: RefCell<Store<HostState>>,
    pub(super) exports: Exports,
    pub(super) root_context_id: u32,
    pub(super) next_context_id: Cell<u32>,
    pub(super) failed: Cell<bool>,
    pub(super) shut_down: Cell<bool>,
    pub(super) tick_task: RefCell<Option<tokio::task::JoinHandle<()>>>,
    pub(super) weak: Weak<PluginVm>,
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

        let exports = Exports::resolve(&instance, &mut store);
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

    pub(super) fn take_logs(&self) -> Vec<String> {
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

    pub(super) fn stop_timer(&self) {
        if let Ok(mut t) = self.tick_task.try_borrow_mut() {
            if let Some(handle) = t.take() {
                handle.abort();
            }
        }
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
        HttpStream::new(self.clone(), id, signal, created)
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
