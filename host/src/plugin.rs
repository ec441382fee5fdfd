//! What a Wasm plugin is, as configured: one description the bootstrap parser produces and the
//! VMs start from, so there is no second copy of it to keep in step.
//!
//! Always built (no runtime dependency): the bootstrap parser, which the fuzz targets link
//! without the runtime, produces it.

use std::path::PathBuf;
use std::sync::Arc;

/// Where the module's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WasmCode {
    /// The filter embedded in this binary (`vm::EMBEDDED_FILTER`).
    Embedded,
    /// A `.wasm` file (Envoy's `code.local.filename`).
    File(PathBuf),
    /// Bytes in memory: `inline_bytes` / `inline_string` in the config, tests, tools.
    Bytes(Arc<[u8]>),
}

/// One plugin as configured in the bootstrap (an HTTP filter or a WasmService).
#[derive(Debug, Clone)]
pub struct PluginSpec {
    /// `config.name`: log prefix and `plugin_name` property.
    pub name: String,
    /// `config.root_id`: `plugin_root_id` property (the SDK picks the root context by it).
    pub root_id: String,
    /// `vm_config.vm_id`: the shared-data namespace.
    pub vm_id: String,
    /// `config.configuration` payload: what `on_configure` reads.
    pub configuration: Vec<u8>,
    /// `vm_config.configuration` payload: what `on_vm_start` reads.
    pub vm_configuration: Vec<u8>,
    /// `vm_config.environment_variables`: the only environment WASI shows the module.
    pub environment: Vec<(String, String)>,
    /// The module.
    pub code: WasmCode,
    /// `config.allow_on_headers_stop_iteration` (Envoy ≥ 1.35, default false): a Pause from
    /// `on_http_request_headers`/`on_http_response_headers` is then `StopIteration` (headers
    /// held, body callbacks go on) instead of `StopAllIterationAndWatermark` (everything of
    /// that direction stops) — cpp-host `ContextBase::convertVmCallResultToFilterHeadersStatus`.
    pub allow_on_headers_stop_iteration: bool,
    /// `config.fail_open`: when the VM has failed, let requests through instead of 503.
    pub fail_open: bool,
}
