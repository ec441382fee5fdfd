//! The Wasm plugin config shared by the HTTP filter and the bootstrap's Wasm service.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use crate::bootstrap::any::WASM_SERVICE_TYPE;
use crate::bootstrap::any::{any_deserialize, payload, AnyKind};

use super::common::{AsyncDataSource, StringValue};

/// `envoy.extensions.wasm.v3.PluginConfig`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Plugin name (`plugin_name` property).
    #[serde(default)]
    pub name: String,
    /// Root context id.
    #[serde(default)]
    pub root_id: String,
    /// The VM.
    pub vm_config: VmConfig,
    /// The plugin configuration handed to `on_configure`.
    pub configuration: Option<StringValue>,
    /// Let traffic through when the VM is broken.
    #[serde(default)]
    pub fail_open: bool,
    /// `google.protobuf.BoolValue` (Envoy ≥ 1.35): Pause from a headers callback is
    /// `StopIteration` instead of `StopAllIterationAndWatermark`.
    pub allow_on_headers_stop_iteration: Option<bool>,
}

/// `envoy.extensions.wasm.v3.VmConfig`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmConfig {
    /// Shared-data namespace.
    #[serde(default)]
    pub vm_id: String,
    /// `envoy.wasm.runtime.*`.
    pub runtime: String,
    /// The module.
    pub code: AsyncDataSource,
    /// The VM configuration (`on_vm_start`).
    pub configuration: Option<StringValue>,
    /// The module's environment.
    pub environment_variables: Option<EnvironmentVariables>,
}

/// `envoy.extensions.wasm.v3.EnvironmentVariables`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentVariables {
    /// Names copied from the host's environment.
    #[serde(default)]
    pub host_env_keys: Vec<String>,
    /// Fixed values.
    #[serde(default)]
    pub key_values: BTreeMap<String, String>,
}

/// `envoy.extensions.wasm.v3.WasmService`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WasmService {
    /// The plugin.
    pub config: PluginConfig,
    /// Only `true` is supported (one VM on the main thread).
    #[serde(default)]
    pub singleton: bool,
}

/// `envoy.extensions.filters.http.wasm.v3.Wasm`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WasmFilter {
    /// The plugin.
    pub config: PluginConfig,
}

/// A `bootstrap_extensions` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapExtension {
    /// `envoy.bootstrap.wasm`.
    pub name: String,
    /// The WasmService.
    pub typed_config: WasmServiceAny,
}

/// A bootstrap extension config: the Wasm service.
#[derive(Debug)]
pub struct WasmServiceAny(pub Box<WasmService>);

impl AnyKind for WasmServiceAny {
    const WHAT: &'static str = "a bootstrap extension";
    const TYPES: &'static [&'static str] = &[WASM_SERVICE_TYPE];
    fn decode<'de, D: Deserializer<'de>>(_url: &str, rest: D) -> Result<Self, D::Error> {
        Ok(Self(Box::new(payload(rest)?)))
    }
}
any_deserialize!(WasmServiceAny);
