//! The failover filter's preset: a plugin config with quick timings, the [`Setup`] most
//! end-to-end suites start from (one listener routing on [`ROUTE_HEADER`], the embedded filter,
//! clusters of mock upstreams), the status document's accessors and the request bodies the
//! suites send. Everything here renders through [`crate::bootstrap`].

use std::net::SocketAddr;
use std::path::PathBuf;

use serde_json::{json, Value};

use crate::bootstrap::{BootstrapBuilder, Cluster, Listener, Route, WasmPlugin};

/// The header the filter writes and the routes read in every test bootstrap.
pub const ROUTE_HEADER: &str = "x-failover-cluster";

/// A healthy LLM-style request body.
pub const BODY: &str =
    r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"hi"}]}"#;

/// A streaming LLM request body (the mock answers with SSE).
pub const STREAM_BODY: &str =
    r#"{"model":"m","stream":true,"max_tokens":1,"messages":[{"role":"user","content":"hi"}]}"#;

/// A plugin config with quick, test-friendly timings; `endpoints` are `(name, cluster, group)`.
pub fn plugin_config(endpoints: &[(&str, &str, &str)]) -> Value {
    let eps: Vec<Value> = endpoints
        .iter()
        .map(|(name, cluster, group)| json!({"name": name, "cluster": cluster, "group": group}))
        .collect();
    json!({
        "endpoints": eps,
        "route_header": ROUTE_HEADER,
        "failover": { "max_attempts": 3, "max_request_bytes": 65536, "attempt_timeout_ms": 3000 },
        "verifier": { "interval_ms": 500, "max_interval_ms": 2000, "timeout_ms": 1000 },
        "when_all_queued": "least_recently_failed",
    })
}

/// Merges `patch` into `base` (objects recursively, everything else replaced): how a test
/// changes one setting of [`plugin_config`].
pub fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

/// What an end-to-end test runs: the failover filter with `plugin` in front of `clusters`.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The plugin JSON.
    pub plugin: Value,
    /// Clusters: name → address.
    pub clusters: Vec<(String, SocketAddr)>,
    /// Worker VMs.
    pub concurrency: usize,
    /// Add the singleton verifier service (`failover_verifier`).
    pub singleton_verifier: bool,
    /// Route timeout, Envoy duration syntax.
    pub route_timeout: String,
    /// Cluster connect timeout.
    pub connect_timeout: String,
    /// `--log-level`.
    pub log_level: String,
    /// `vm_config.environment_variables.key_values`.
    pub vm_env: Vec<(String, String)>,
    /// `--state-file`.
    pub state_file: Option<PathBuf>,
    /// `allow_on_headers_stop_iteration: true` in the Wasm filter's config (Envoy ≥ 1.35): a
    /// Pause at headers lets body callbacks go on. Needed by the plugin's `hold_headers`.
    pub stop_iteration_at_headers: bool,
    /// Clusters with no endpoint at all: the router answers them 503 UH (no healthy upstream).
    pub empty_clusters: Vec<String>,
}

impl Setup {
    /// Defaults: 4 workers, no singleton, 5 s route timeout, info logs.
    pub fn new(plugin: Value, clusters: &[(&str, SocketAddr)]) -> Self {
        Self {
            plugin,
            clusters: clusters.iter().map(|(n, a)| (n.to_string(), *a)).collect(),
            concurrency: 4,
            singleton_verifier: false,
            route_timeout: "5s".into(),
            connect_timeout: "0.5s".into(),
            log_level: "info".into(),
            vm_env: Vec::new(),
            state_file: None,
            stop_iteration_at_headers: false,
            empty_clusters: Vec::new(),
        }
    }

    /// The plugin (`name` and `root_id`) on the embedded filter, in VM `failover_test`.
    fn plugin(&self, name: &str) -> WasmPlugin {
        WasmPlugin::new(name, "builtin:failover")
            .root_id(name)
            .vm_id("failover_test")
            .env(&self.vm_env)
            .configuration(&self.plugin.to_string())
    }

    /// The bootstrap for listener `listen` and admin `admin`, as a builder (to add to).
    pub fn builder(&self, listen: SocketAddr, admin: SocketAddr) -> BootstrapBuilder {
        let listener = Listener::new("main", listen)
            .route_config_name("main")
            .route(Route::by_header("/", ROUTE_HEADER).timeout(&self.route_timeout))
            .wasm_filter(
                self.plugin("failover")
                    .allow_on_headers_stop_iteration(self.stop_iteration_at_headers),
            );
        let mut b = BootstrapBuilder::new().admin(admin).listener(listener);
        for (name, addr) in &self.clusters {
            b = b.cluster(Cluster::new(name, &[*addr]).connect_timeout(&self.connect_timeout));
        }
        for name in &self.empty_clusters {
            b = b.cluster(Cluster::new(name, &[]).connect_timeout(&self.connect_timeout));
        }
        if self.singleton_verifier {
            b = b.singleton_service(self.plugin("failover_verifier"));
        }
        b
    }

    /// The bootstrap YAML for listener `listen` and admin `admin`.
    pub fn bootstrap(&self, listen: SocketAddr, admin: SocketAddr) -> String {
        self.builder(listen, admin).to_yaml()
    }
}

/// The status document's entry for endpoint `name`.
pub fn endpoint<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["endpoints"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["name"] == name))
        .unwrap_or(&Value::Null)
}

/// True when the status document shows `name` parked.
pub fn is_parked(status: &Value, name: &str) -> bool {
    endpoint(status, name)["state"] == "parked"
}

/// A counter from the status document's `stats`.
pub fn stat(status: &Value, name: &str) -> u64 {
    status["stats"][name].as_u64().unwrap_or(0)
}
