//! The one writer of Envoy bootstrap YAML in the tests: listeners (routes, Wasm HTTP filters),
//! admin, clusters (with or without endpoints) and singleton Wasm services. Tests describe what
//! they need with [`BootstrapBuilder`] and never spell out YAML, so a change of shape is made
//! here once.
//!
//! ```
//! use failover_testkit::bootstrap::{BootstrapBuilder, Cluster, Listener, Route};
//! let yaml = BootstrapBuilder::new()
//!     .listener(Listener::new("test", ([127, 0, 0, 1], 0).into())
//!         .route(Route::to_cluster("/", "alpha").timeout("5s")))
//!     .cluster(Cluster::new("alpha", &[([127, 0, 0, 1], 9).into()]))
//!     .to_yaml();
//! assert!(yaml.contains("static_resources:"));
//! ```

use std::fmt::Write as _;
use std::net::SocketAddr;

use serde_json::Value;

/// A whole bootstrap: what `failover-host -c` reads. Built up by value, rendered by
/// [`BootstrapBuilder::to_yaml`].
#[derive(Debug, Clone, Default)]
pub struct BootstrapBuilder {
    admin: Option<SocketAddr>,
    listeners: Vec<Listener>,
    clusters: Vec<Cluster>,
    services: Vec<WasmPlugin>,
}

impl BootstrapBuilder {
    /// An empty bootstrap (no admin, listener, cluster or service yet).
    pub fn new() -> Self {
        Self::default()
    }

    /// The common shape of the proxy and CLI tests: listener `test` on `listen` sending every
    /// request to `cluster` (5 s route timeout), and one single-endpoint cluster per
    /// `clusters` entry.
    pub fn one_route(listen: SocketAddr, cluster: &str, clusters: &[(&str, SocketAddr)]) -> Self {
        let mut b = Self::new().listener(
            Listener::new("test", listen).route(Route::to_cluster("/", cluster).timeout("5s")),
        );
        for (name, addr) in clusters {
            b = b.cluster(Cluster::new(name, &[*addr]));
        }
        b
    }

    /// The admin listener (`/ready`, `/stats`), which process tests wait on.
    pub fn admin(mut self, address: SocketAddr) -> Self {
        self.admin = Some(address);
        self
    }

    /// Adds a listener (in order: the host reports listeners in this order).
    pub fn listener(mut self, listener: Listener) -> Self {
        self.listeners.push(listener);
        self
    }

    /// Adds a cluster.
    pub fn cluster(mut self, cluster: Cluster) -> Self {
        self.clusters.push(cluster);
        self
    }

    /// Adds a singleton Wasm service (`bootstrap_extensions`, `envoy.bootstrap.wasm`), which runs
    /// on the main thread, outside any listener.
    pub fn singleton_service(mut self, plugin: WasmPlugin) -> Self {
        self.services.push(plugin);
        self
    }

    /// The bootstrap as YAML text.
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        if let Some(admin) = self.admin {
            let _ = writeln!(out, "admin:\n  address: {}", socket_address(admin));
        }
        out.push_str("static_resources:\n  listeners:");
        if self.listeners.is_empty() {
            out.push_str(" []");
        }
        for l in &self.listeners {
            l.render(&mut out);
        }
        out.push_str("\n  clusters:");
        if self.clusters.is_empty() {
            out.push_str(" []");
        }
        for c in &self.clusters {
            c.render(&mut out);
        }
        out.push('\n');
        if !self.services.is_empty() {
            out.push_str("bootstrap_extensions:");
            for s in &self.services {
                out.push_str(concat!(
                    "\n- name: envoy.bootstrap.wasm",
                    "\n  typed_config:",
                    "\n    \"@type\": type.googleapis.com/envoy.extensions.wasm.v3.WasmService",
                    "\n    singleton: true",
                    "\n    config:",
                ));
                s.render(&mut out, "      ");
            }
            out.push('\n');
        }
        out
    }
}

/// `{ socket_address: { address: "IP", port_value: PORT } }`.
fn socket_address(a: SocketAddr) -> String {
    format!(
        "{{ socket_address: {{ address: \"{}\", port_value: {} }} }}",
        a.ip(),
        a.port()
    )
}

/// A YAML double-quoted scalar (JSON string syntax is valid YAML).
fn quoted(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// One HTTP listener: an HTTP connection manager with its routes, the Wasm HTTP filters in
/// order, then the router.
#[derive(Debug, Clone)]
pub struct Listener {
    name: String,
    address: SocketAddr,
    stat_prefix: String,
    route_config: String,
    routes: Vec<Route>,
    wasm_filters: Vec<WasmPlugin>,
}

impl Listener {
    /// A listener `name` on `address` (port 0: the OS picks; the host logs the port). Its
    /// `stat_prefix` is `name` too, its route config `{name}_routes` (the host reports it as
    /// the route name).
    pub fn new(name: &str, address: SocketAddr) -> Self {
        Self {
            name: name.into(),
            address,
            stat_prefix: name.into(),
            route_config: format!("{name}_routes"),
            routes: Vec::new(),
            wasm_filters: Vec::new(),
        }
    }

    /// Another `stat_prefix` than the listener's name.
    pub fn stat_prefix(mut self, prefix: &str) -> Self {
        self.stat_prefix = prefix.into();
        self
    }

    /// Another name for the route config than `{name}_routes`.
    pub fn route_config_name(mut self, name: &str) -> Self {
        self.route_config = name.into();
        self
    }

    /// Adds a route (first match wins, as in Envoy).
    pub fn route(mut self, route: Route) -> Self {
        self.routes.push(route);
        self
    }

    /// Adds a Wasm HTTP filter (`envoy.filters.http.wasm`) before the router.
    pub fn wasm_filter(mut self, plugin: WasmPlugin) -> Self {
        self.wasm_filters.push(plugin);
        self
    }

    fn render(&self, out: &mut String) {
        let _ = write!(
            out,
            concat!(
                "\n  - name: {name}",
                "\n    address: {address}",
                "\n    filter_chains:",
                "\n    - filters:",
                "\n      - name: envoy.filters.network.http_connection_manager",
                "\n        typed_config:",
                "\n          \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "\n          stat_prefix: {stat_prefix}",
                "\n          route_config:",
                "\n            name: {route_config}",
                "\n            virtual_hosts:",
                "\n            - name: all",
                "\n              domains: [\"*\"]",
                "\n              routes:",
            ),
            name = self.name,
            address = socket_address(self.address),
            stat_prefix = self.stat_prefix,
            route_config = self.route_config,
        );
        if self.routes.is_empty() {
            out.push_str(" []");
        }
        for r in &self.routes {
            r.render(out);
        }
        out.push_str("\n          http_filters:");
        for f in &self.wasm_filters {
            out.push_str(concat!(
                "\n          - name: envoy.filters.http.wasm",
                "\n            typed_config:",
                "\n              \"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "\n              config:",
            ));
            f.render(out, "                ");
        }
        out.push_str(concat!(
            "\n          - name: envoy.filters.http.router",
            "\n            typed_config:",
            "\n              \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
        ));
    }
}

/// Where a route sends its requests.
#[derive(Debug, Clone)]
enum Target {
    Cluster(String),
    Header(String),
}

/// A prefix route to a fixed cluster or to the cluster a request header names.
#[derive(Debug, Clone)]
pub struct Route {
    prefix: String,
    target: Target,
    timeout: Option<String>,
}

impl Route {
    /// `prefix` → cluster `cluster`.
    pub fn to_cluster(prefix: &str, cluster: &str) -> Self {
        Self {
            prefix: prefix.into(),
            target: Target::Cluster(cluster.into()),
            timeout: None,
        }
    }

    /// `prefix` → the cluster named by request header `header` (`cluster_header`), how the
    /// failover filter picks its endpoint.
    pub fn by_header(prefix: &str, header: &str) -> Self {
        Self {
            prefix: prefix.into(),
            target: Target::Header(header.into()),
            timeout: None,
        }
    }

    /// The route timeout, Envoy duration syntax (`5s`, `0.5s`); Envoy's default when unset.
    pub fn timeout(mut self, timeout: &str) -> Self {
        self.timeout = Some(timeout.into());
        self
    }

    fn render(&self, out: &mut String) {
        let target = match &self.target {
            Target::Cluster(c) => format!("cluster: {c}"),
            Target::Header(h) => format!("cluster_header: {h}"),
        };
        let timeout = self
            .timeout
            .as_ref()
            .map(|t| format!(", timeout: {t}"))
            .unwrap_or_default();
        let _ = write!(
            out,
            "\n              - match: {{ prefix: {} }}\n                route: {{ {target}{timeout} }}",
            quoted(&self.prefix)
        );
    }
}

/// A `STATIC` cluster of loopback (or any IP) endpoints; none at all makes the router answer
/// 503 (no healthy upstream).
#[derive(Debug, Clone)]
pub struct Cluster {
    name: String,
    endpoints: Vec<SocketAddr>,
    connect_timeout: String,
}

impl Cluster {
    /// Cluster `name` with `endpoints` (may be empty), connect timeout 0.5 s.
    pub fn new(name: &str, endpoints: &[SocketAddr]) -> Self {
        Self {
            name: name.into(),
            endpoints: endpoints.to_vec(),
            connect_timeout: "0.5s".into(),
        }
    }

    /// Another connect timeout (Envoy duration syntax).
    pub fn connect_timeout(mut self, timeout: &str) -> Self {
        self.connect_timeout = timeout.into();
        self
    }

    fn render(&self, out: &mut String) {
        let _ = write!(
            out,
            "\n  - name: {name}\n    type: STATIC\n    connect_timeout: {ct}\n    load_assignment:\n      cluster_name: {name}\n      endpoints:",
            name = self.name,
            ct = self.connect_timeout
        );
        if self.endpoints.is_empty() {
            out.push_str(" []");
            return;
        }
        out.push_str("\n      - lb_endpoints:");
        for e in &self.endpoints {
            let _ = write!(
                out,
                "\n        - endpoint: {{ address: {} }}",
                socket_address(*e)
            );
        }
    }
}

/// A proxy-wasm plugin as Envoy configures it (`name`, `root_id`, `vm_config`,
/// `configuration`): used for Wasm HTTP filters and for singleton services.
#[derive(Debug, Clone)]
pub struct WasmPlugin {
    name: String,
    root_id: Option<String>,
    vm_id: Option<String>,
    filename: String,
    configuration: Option<String>,
    env: Vec<(String, String)>,
    host_env_keys: Vec<String>,
    allow_on_headers_stop_iteration: bool,
}

impl WasmPlugin {
    /// Plugin `name` whose module is the file `filename` (`builtin:failover`: the embedded
    /// filter). No root id, VM id or configuration until set.
    pub fn new(name: &str, filename: &str) -> Self {
        Self {
            name: name.into(),
            root_id: None,
            vm_id: None,
            filename: filename.into(),
            configuration: None,
            env: Vec::new(),
            host_env_keys: Vec::new(),
            allow_on_headers_stop_iteration: false,
        }
    }

    /// `root_id`.
    pub fn root_id(mut self, id: &str) -> Self {
        self.root_id = Some(id.into());
        self
    }

    /// `vm_config.vm_id` (plugins with the same id share a VM).
    pub fn vm_id(mut self, id: &str) -> Self {
        self.vm_id = Some(id.into());
        self
    }

    /// The plugin configuration, a `google.protobuf.StringValue` (any text, JSON or not).
    pub fn configuration(mut self, text: &str) -> Self {
        self.configuration = Some(text.into());
        self
    }

    /// `vm_config.environment_variables.key_values`.
    pub fn env(mut self, pairs: &[(String, String)]) -> Self {
        self.env = pairs.to_vec();
        self
    }

    /// `vm_config.environment_variables.host_env_keys`.
    pub fn host_env_keys(mut self, keys: &[&str]) -> Self {
        self.host_env_keys = keys.iter().map(|k| k.to_string()).collect();
        self
    }

    /// `allow_on_headers_stop_iteration: true` (Envoy ≥ 1.35): a Pause at request headers lets
    /// body callbacks go on. Needed by the failover plugin's `hold_headers`.
    pub fn allow_on_headers_stop_iteration(mut self, allow: bool) -> Self {
        self.allow_on_headers_stop_iteration = allow;
        self
    }

    /// Renders the plugin's fields, each line at `indent`.
    fn render(&self, out: &mut String, indent: &str) {
        let _ = write!(out, "\n{indent}name: {}", self.name);
        if let Some(root) = &self.root_id {
            let _ = write!(out, "\n{indent}root_id: {root}");
        }
        let _ = write!(out, "\n{indent}vm_config:");
        if let Some(vm) = &self.vm_id {
            let _ = write!(out, "\n{indent}  vm_id: {vm}");
        }
        let _ = write!(
            out,
            "\n{indent}  runtime: envoy.wasm.runtime.v8\n{indent}  code: {{ local: {{ filename: {} }} }}",
            quoted(&self.filename)
        );
        if !self.env.is_empty() || !self.host_env_keys.is_empty() {
            let _ = write!(out, "\n{indent}  environment_variables:");
            if !self.env.is_empty() {
                let _ = write!(out, "\n{indent}    key_values:");
                for (k, v) in &self.env {
                    let _ = write!(out, "\n{indent}      {k}: {}", quoted(v));
                }
            }
            if !self.host_env_keys.is_empty() {
                let _ = write!(out, "\n{indent}    host_env_keys:");
                for k in &self.host_env_keys {
                    let _ = write!(out, "\n{indent}    - {k}");
                }
            }
        }
        if let Some(config) = &self.configuration {
            let _ = write!(
                out,
                "\n{indent}configuration:\n{indent}  \"@type\": type.googleapis.com/google.protobuf.StringValue\n{indent}  value: {}",
                quoted(config)
            );
        }
        if self.allow_on_headers_stop_iteration {
            let _ = write!(out, "\n{indent}allow_on_headers_stop_iteration: true");
        }
    }
}
