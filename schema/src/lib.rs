//! Checks Envoy bootstrap YAML against Envoy's real protobuf schema, without Envoy.
//!
//! We cannot run Envoy in CI, so "this file works in Envoy" is proven the way Envoy itself
//! would first judge it: the YAML is decoded as `envoy.config.bootstrap.v3.Bootstrap` with
//! unknown fields denied, every `typed_config` (`Any`) decoded as the type its `@type` names,
//! then the basic `validate.rules` annotations of Envoy's `.proto` files are checked. The
//! descriptors are compiled at build time from the `.proto` files of the `envoy-types`
//! package (see `build.rs`); nothing of Envoy's is copied into this repository.
//!
//! The plugin configuration inside a Wasm filter is a plain string to Envoy's schema, so
//! [`Validated::plugins`] hands every one back, with its path, for the caller to check with
//! the plugin's own parser.
//!
//! ```no_run
//! let validated = failover_envoy_schema::validate_file("envoy/envoy.yaml".as_ref())?;
//! for plugin in validated.plugins() {
//!     println!("{}: {:?}", plugin.path, plugin.configuration_str());
//! }
//! # Ok::<(), failover_envoy_schema::SchemaError>(())
//! ```
//!
//! Scope: this is the schema Envoy's configuration API had when `envoy-types` was published
//! (data-plane-api of Envoy 1.3x); a field added later is reported as unknown, and a field
//! removed earlier is accepted here but may be rejected by an old Envoy.

#![deny(missing_docs)]

mod decode;
mod error;
mod plugins;
mod pool;
mod rules;
mod walk;

use std::path::Path;

pub use error::SchemaError;
pub use plugins::{PluginConfig, PluginConfiguration, PluginKind, DEFAULT_BUFFER_LIMIT_BYTES};

/// A bootstrap that passed every check.
#[derive(Debug, Clone)]
pub struct Validated {
    plugins: Vec<PluginConfig>,
    clusters: Vec<String>,
}

impl Validated {
    /// Every proxy-wasm plugin of the config (HTTP filters, Wasm services, others), in
    /// document order, with the configuration Envoy will pass to its `on_configure`.
    pub fn plugins(&self) -> &[PluginConfig] {
        &self.plugins
    }

    /// Names of the clusters under `static_resources.clusters`, in order: the names a plugin
    /// may route to or `dispatch_http_call` (an unknown one is BAD_ARGUMENT in Envoy).
    pub fn static_clusters(&self) -> &[String] {
        &self.clusters
    }
}

/// Validates a bootstrap given as YAML text.
///
/// # Errors
/// [`SchemaError::Yaml`] for YAML Envoy would not load (syntax, duplicate keys),
/// [`SchemaError::Schema`] when it does not decode under Envoy's schema,
/// [`SchemaError::Rule`] when a `validate.rules` constraint is broken. Each names the field.
pub fn validate_yaml(text: &str) -> Result<Validated, SchemaError> {
    let bootstrap = decode::bootstrap(text)?;
    let mut checker = rules::RuleChecker::new()?;
    walk::walk(&bootstrap, &mut checker)?;
    let mut collector = plugins::PluginCollector::default();
    walk::walk(&bootstrap, &mut collector)?;
    Ok(Validated {
        plugins: collector.found,
        clusters: static_cluster_names(&bootstrap),
    })
}

/// Validates a bootstrap file (YAML; JSON is YAML too).
///
/// # Errors
/// [`SchemaError::Io`] when the file cannot be read, otherwise as [`validate_yaml`].
pub fn validate_file(path: &Path) -> Result<Validated, SchemaError> {
    let text = std::fs::read_to_string(path).map_err(|source| SchemaError::Io {
        path: path.to_owned(),
        source,
    })?;
    validate_yaml(&text)
}

fn static_cluster_names(bootstrap: &prost_reflect::DynamicMessage) -> Vec<String> {
    let Some(resources) = bootstrap
        .get_field_by_name("static_resources")
        .and_then(|v| v.as_message().cloned())
    else {
        return Vec::new();
    };
    let Some(clusters) = resources.get_field_by_name("clusters") else {
        return Vec::new();
    };
    clusters
        .as_list()
        .unwrap_or_default()
        .iter()
        .filter_map(|c| {
            c.as_message()?
                .get_field_by_name("name")?
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}
