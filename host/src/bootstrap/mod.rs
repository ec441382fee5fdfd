//! The part of Envoy's v3 bootstrap YAML that `failover-host` runs, checked and resolved into
//! the typed [`Bootstrap`] the server uses.
//!
//! Supported (anything else is an error naming its field path and YAML line):
//! - `static_resources.listeners[]`: `name`, `address.socket_address`, one `filter_chains[]`
//!   entry holding one `envoy.filters.network.http_connection_manager` (`stat_prefix`,
//!   `codec_type` AUTO/HTTP1, `route_config{name, virtual_hosts[]{name, domains,
//!   routes[]{name, match{prefix}, route{cluster | cluster_header, timeout,
//!   auto_host_rewrite}}}}`,
//!   `http_filters[]`: `envoy.filters.http.wasm` then `envoy.filters.http.router` last).
//! - `static_resources.clusters[]`: `name`, `type` STATIC/STRICT_DNS/LOGICAL_DNS,
//!   `connect_timeout`, `lb_policy` ROUND_ROBIN, `dns_lookup_family`, `load_assignment`,
//!   `transport_socket` `envoy.transport_sockets.tls` (UpstreamTlsContext `sni`,
//!   `common_tls_context{alpn_protocols, validation_context.trusted_ca}`),
//!   `typed_extension_protocol_options` with HTTP/1.1 `explicit_http_config`.
//! - `bootstrap_extensions[]`: `envoy.bootstrap.wasm` with `singleton: true`.
//! - `admin.address.socket_address`.
//!
//! Wasm code: `vm_config.code.local.{filename | inline_bytes | inline_string}`. The file name
//! `builtin:failover` (host-only; Envoy cannot read it) and the CLI override `--wasm builtin`
//! select the filter module embedded in this binary; `--wasm PATH` replaces every
//! `filename`. A missing file is an error with the ways to fix it.

mod any;
mod duration;
mod model;
mod raw;
mod resolve;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::time::Duration;

pub use self::duration::parse_duration;
pub use self::model::*;
pub use self::raw::DnsLookupFamily;
use crate::error::ConfigError;
pub use crate::plugin::{PluginSpec, WasmCode};

/// The `code.local.filename` that selects the embedded filter module.
pub const BUILTIN_WASM: &str = "builtin:failover";
/// Envoy's default route timeout.
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(15);
/// Envoy's default cluster connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the `.wasm` at `path` cannot be loaded without opening it (missing: with the ways to fix
/// it; not a regular file), `None` when it looks loadable.
pub fn wasm_file_problem(path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => None,
        Ok(_) => Some(format!("Wasm module {} is not a regular file", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(format!(
            "Wasm module {} not found; build it (cargo build --profile wasm -p failover-filter --lib --target wasm32-wasip1), write the built-in one with `failover-host wasm --out {}`, or run with `--wasm builtin`",
            path.display(),
            path.display()
        )),
        Err(e) => Some(format!("Wasm module {}: {e}", path.display())),
    }
}

/// Reads, parses and checks a bootstrap file.
///
/// # Errors
/// A [`ConfigError`] naming the file, line:column when known, the field path and the problem.
pub fn load(file: &Path, opts: &LoadOptions) -> Result<Bootstrap, ConfigError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| ConfigError::field(file, "", format!("cannot read: {e}")))?;
    parse(file, &text, opts)
}

/// Parses and checks bootstrap YAML (`file` is used for messages and relative paths only).
///
/// # Errors
/// See [`load`].
pub fn parse(file: &Path, text: &str, opts: &LoadOptions) -> Result<Bootstrap, ConfigError> {
    // Duplicate keys are silently merged by the streaming decoder: catch them first.
    if let Err(e) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) {
        return Err(yaml_error(file, &e, ""));
    }
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let raw: raw::Bootstrap = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        yaml_error(file, e.inner(), if path == "." { "" } else { &path })
    })?;
    resolve::Resolver { file, opts }.bootstrap(raw)
}

/// Turns a YAML error into a one-line [`ConfigError`].
fn yaml_error(file: &Path, e: &serde_yaml_ng::Error, path: &str) -> ConfigError {
    let location = e.location().map(|l| (l.line(), l.column()));
    let mut message = e.to_string();
    if let Some((line, col)) = location {
        let suffix = format!(" at line {line} column {col}");
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_string();
        }
    }
    // serde_yaml_ng prefixes its own path; keep one.
    if !path.is_empty() {
        if let Some(stripped) = message.strip_prefix(&format!("{path}: ")) {
            message = stripped.to_string();
        }
    }
    ConfigError {
        file: file.to_path_buf(),
        location,
        field: path.to_string(),
        message,
    }
}
