//! Finds every proxy-wasm plugin in a config, with the configuration Envoy will hand to its
//! `on_configure`, so that callers can check it with the plugin's own parser.

use prost_reflect::{DynamicMessage, ReflectMessage};

use crate::walk::{unpack_any, FieldPath, Visitor};
use crate::SchemaError;

const PLUGIN_CONFIG: &str = "envoy.extensions.wasm.v3.PluginConfig";
const HTTP_FILTER: &str = "envoy.extensions.filters.http.wasm.v3.Wasm";
const SERVICE: &str = "envoy.extensions.wasm.v3.WasmService";
const STRING_VALUE: &str = "google.protobuf.StringValue";
const BYTES_VALUE: &str = "google.protobuf.BytesValue";
const LISTENER: &str = "envoy.config.listener.v3.Listener";

/// Envoy's default `per_connection_buffer_limit_bytes` (1 MiB): past it, a filter that buffers
/// a request body gets Envoy's 413.
pub const DEFAULT_BUFFER_LIMIT_BYTES: u32 = 1024 * 1024;

/// Where a plugin is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginKind {
    /// An `envoy.filters.http.wasm` HTTP filter (one VM per worker thread).
    HttpFilter,
    /// An `envoy.bootstrap.wasm` service; `singleton` means one VM on the main thread.
    Service {
        /// `WasmService.singleton`.
        singleton: bool,
    },
    /// A `PluginConfig` inside some other message (access logger, network filter, …): the
    /// enclosing message's full name.
    Other(String),
}

/// What `PluginConfig.configuration` holds. Envoy hands a `StringValue` or `BytesValue` to the
/// plugin as its bare contents and any other message as its serialized bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginConfiguration {
    /// No `configuration` at all: the plugin gets an empty buffer.
    Absent,
    /// A `google.protobuf.StringValue`: its text (for our filter, the plugin JSON).
    String(String),
    /// A `google.protobuf.BytesValue`: its bytes.
    Bytes(Vec<u8>),
    /// Any other type, named by its type URL.
    Other(String),
}

/// One proxy-wasm plugin found in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginConfig {
    /// Path of the `PluginConfig` message, e.g.
    /// `static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.config`;
    /// its configuration is at `{path}.configuration`.
    pub path: String,
    /// Where the plugin runs.
    pub kind: PluginKind,
    /// `PluginConfig.name`.
    pub name: String,
    /// `PluginConfig.root_id`: selects the root context inside the module.
    pub root_id: String,
    /// `vm_config.vm_id`: plugins with equal ids share one shared-data namespace.
    pub vm_id: String,
    /// `vm_config.code.local.filename`, when the code is a local file.
    pub code_filename: Option<String>,
    /// The configuration delivered to `on_configure`.
    pub configuration: PluginConfiguration,
    /// `PluginConfig.allow_on_headers_stop_iteration` (Envoy ≥ 1.35): a Pause at headers is
    /// StopIteration (body callbacks go on) instead of StopAllIterationAndWatermark.
    pub allow_on_headers_stop_iteration: bool,
    /// For an HTTP filter: its listener's `per_connection_buffer_limit_bytes` (Envoy's default
    /// when unset), the most request body a buffering filter may hold.
    pub buffer_limit_bytes: Option<u32>,
}

impl PluginConfig {
    /// The configuration as text, when it is a `StringValue` (or UTF-8 `BytesValue`).
    pub fn configuration_str(&self) -> Option<&str> {
        match &self.configuration {
            PluginConfiguration::String(s) => Some(s),
            PluginConfiguration::Bytes(b) => std::str::from_utf8(b).ok(),
            PluginConfiguration::Absent | PluginConfiguration::Other(_) => None,
        }
    }
}

/// A [`Visitor`] collecting every `PluginConfig`.
#[derive(Default)]
pub struct PluginCollector {
    /// What was found, in document order.
    pub found: Vec<PluginConfig>,
    /// `singleton` of the `WasmService` just visited: the walk is depth-first and pre-order, and
    /// a `WasmService`'s only message field is its `config`, so that is the next message seen.
    service_singleton: bool,
    /// `per_connection_buffer_limit_bytes` of the listener being walked (pre-order: a
    /// listener is seen before the filters inside it).
    listener_buffer_limit: Option<u32>,
}

impl Visitor for PluginCollector {
    fn message(
        &mut self,
        msg: &DynamicMessage,
        parent: Option<&str>,
        path: &FieldPath,
    ) -> Result<(), SchemaError> {
        match msg.descriptor().full_name() {
            LISTENER => {
                self.listener_buffer_limit = msg
                    .has_field_by_name("per_connection_buffer_limit_bytes")
                    .then(|| msg.get_field_by_name("per_connection_buffer_limit_bytes"))
                    .flatten()
                    .and_then(|v| v.as_message().cloned())
                    .and_then(|w| w.get_field_by_name("value").and_then(|v| v.as_u32()));
                Ok(())
            }
            SERVICE => {
                self.service_singleton = msg
                    .get_field_by_name("singleton")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false);
                Ok(())
            }
            PLUGIN_CONFIG => {
                let kind = match parent {
                    Some(HTTP_FILTER) => PluginKind::HttpFilter,
                    Some(SERVICE) => PluginKind::Service {
                        singleton: self.service_singleton,
                    },
                    other => PluginKind::Other(other.unwrap_or_default().to_owned()),
                };
                let buffer_limit_bytes = matches!(kind, PluginKind::HttpFilter).then_some(
                    self.listener_buffer_limit
                        .unwrap_or(DEFAULT_BUFFER_LIMIT_BYTES),
                );
                self.found.push(PluginConfig {
                    path: path.to_string(),
                    kind,
                    name: string_at(msg, &["name"]),
                    root_id: string_at(msg, &["root_id"]),
                    vm_id: string_at(msg, &["vm_config", "vm_id"]),
                    code_filename: Some(string_at(
                        msg,
                        &["vm_config", "code", "local", "filename"],
                    ))
                    .filter(|s| !s.is_empty()),
                    configuration: configuration(msg)?,
                    allow_on_headers_stop_iteration: msg
                        .has_field_by_name("allow_on_headers_stop_iteration")
                        .then(|| msg.get_field_by_name("allow_on_headers_stop_iteration"))
                        .flatten()
                        .and_then(|v| v.as_message().cloned())
                        .and_then(|w| w.get_field_by_name("value").and_then(|v| v.as_bool()))
                        .unwrap_or(false),
                    buffer_limit_bytes,
                });
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// Reads a string field through nested messages; empty when any step is unset.
fn string_at(msg: &DynamicMessage, names: &[&str]) -> String {
    let Some((last, steps)) = names.split_last() else {
        return String::new();
    };
    let mut current = msg.clone();
    for name in steps {
        match current
            .get_field_by_name(name)
            .and_then(|v| v.as_message().cloned())
        {
            Some(next) => current = next,
            None => return String::new(),
        }
    }
    current
        .get_field_by_name(last)
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn configuration(plugin: &DynamicMessage) -> Result<PluginConfiguration, SchemaError> {
    if !plugin.has_field_by_name("configuration") {
        return Ok(PluginConfiguration::Absent);
    }
    let Some(any) = plugin
        .get_field_by_name("configuration")
        .and_then(|v| v.as_message().cloned())
    else {
        return Ok(PluginConfiguration::Absent);
    };
    let payload = unpack_any(&any)?;
    let value = payload.get_field_by_name("value");
    Ok(match payload.descriptor().full_name() {
        STRING_VALUE => PluginConfiguration::String(
            value
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
        ),
        BYTES_VALUE => PluginConfiguration::Bytes(
            value
                .and_then(|v| v.as_bytes().map(|b| b.to_vec()))
                .unwrap_or_default(),
        ),
        other => PluginConfiguration::Other(format!("type.googleapis.com/{other}")),
    })
}
