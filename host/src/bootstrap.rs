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
mod raw;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;

pub use self::duration::parse_duration;
pub use self::raw::DnsLookupFamily;
use crate::error::ConfigError;

/// The `code.local.filename` that selects the embedded filter module.
pub const BUILTIN_WASM: &str = "builtin:failover";
/// Envoy's default route timeout.
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(15);
/// Envoy's default cluster connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A checked, resolved bootstrap.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    /// The file it came from (for messages and reloads).
    pub file: PathBuf,
    /// Downstream listeners.
    pub listeners: Vec<Listener>,
    /// Upstream clusters.
    pub clusters: Vec<Cluster>,
    /// Singleton Wasm services (`envoy.bootstrap.wasm`).
    pub services: Vec<WasmPlugin>,
    /// The admin listener address.
    pub admin: Option<SocketAddr>,
}

/// A listener with its HTTP connection manager.
#[derive(Debug, Clone)]
pub struct Listener {
    /// Listener name.
    pub name: String,
    /// Bind address (port 0 = pick one).
    pub address: SocketAddr,
    /// HCM stat prefix.
    pub stat_prefix: String,
    /// Route table name (the `route_name` property).
    pub route_config_name: String,
    /// Virtual hosts in order.
    pub virtual_hosts: Vec<VirtualHost>,
    /// The Wasm HTTP filters, in order, before the router.
    pub wasm_filters: Vec<WasmPlugin>,
    /// `per_connection_buffer_limit_bytes` (default [`DEFAULT_BUFFER_LIMIT`]): past it, a
    /// filter that buffers the request body gets Envoy's 413, the response body a 500 or a
    /// reset.
    pub buffer_limit: u32,
}

/// Envoy's default listener `per_connection_buffer_limit_bytes`: 1 MiB.
pub const DEFAULT_BUFFER_LIMIT: u32 = 1024 * 1024;

/// A virtual host.
#[derive(Debug, Clone)]
pub struct VirtualHost {
    /// Name.
    pub name: String,
    /// Host patterns.
    pub domains: Vec<String>,
    /// Routes, first match wins.
    pub routes: Vec<Route>,
}

/// A prefix route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Optional route name.
    pub name: Option<String>,
    /// Path prefix.
    pub prefix: String,
    /// Where it goes.
    pub target: RouteTarget,
    /// Route timeout; `None` = no timeout (`0s`).
    pub timeout: Option<Duration>,
    /// `auto_host_rewrite`: `Host` becomes the upstream's DNS name (DNS clusters only).
    pub auto_host_rewrite: bool,
}

/// A route's cluster specifier.
#[derive(Debug, Clone)]
pub enum RouteTarget {
    /// A fixed cluster.
    Cluster(String),
    /// The cluster named by this request header (lower-case).
    ClusterHeader(String),
}

/// An upstream cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Name.
    pub name: String,
    /// How endpoints are found.
    pub discovery: Discovery,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// DNS family (DNS clusters).
    pub dns_lookup_family: DnsLookupFamily,
    /// Endpoint addresses as configured.
    pub endpoints: Vec<HostPort>,
    /// Upstream TLS, if any.
    pub tls: Option<TlsConfig>,
}

/// Cluster discovery type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    /// IP addresses as configured.
    Static,
    /// Every resolved address is a host.
    StrictDns,
    /// The first resolved address is the host.
    LogicalDns,
}

/// A configured `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// IP or DNS name.
    pub host: String,
    /// Port.
    pub port: u16,
}

/// Upstream TLS settings.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// SNI (and the name the certificate is verified against).
    pub sni: Option<String>,
    /// ALPN protocols to offer.
    pub alpn: Vec<String>,
    /// PEM trust anchors; `None` = the webpki roots.
    pub trusted_ca_pem: Option<Vec<u8>>,
}

/// One Wasm plugin (HTTP filter or singleton service) as configured.
#[derive(Debug, Clone)]
pub struct WasmPlugin {
    /// Field path of its `config` (for messages).
    pub config_path: String,
    /// `config.name`.
    pub name: String,
    /// `config.root_id`.
    pub root_id: String,
    /// `vm_config.vm_id`.
    pub vm_id: String,
    /// `config.configuration` payload (the plugin JSON).
    pub configuration: Vec<u8>,
    /// `vm_config.configuration` payload.
    pub vm_configuration: Vec<u8>,
    /// `vm_config.environment_variables`, host keys resolved.
    pub environment: Vec<(String, String)>,
    /// The module.
    pub code: WasmSource,
    /// `config.fail_open`.
    pub fail_open: bool,
    /// `config.allow_on_headers_stop_iteration` (default false).
    pub allow_on_headers_stop_iteration: bool,
}

/// Where a plugin's module comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WasmSource {
    /// The filter built into this binary.
    Embedded,
    /// A file on disk.
    File(PathBuf),
    /// Inline bytes from the config.
    Inline(Vec<u8>),
}

/// How to load: CLI overrides.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--wasm`: replaces every `code.local` (`None` = as configured).
    pub wasm_override: Option<WasmSource>,
    /// Do not require `code.local.filename` to exist here (`--mode validate` checks the files
    /// afterwards, with [`wasm_file_problem`] and by loading them).
    pub skip_file_checks: bool,
}

/// Why the `.wasm` at `path` cannot be loaded without opening it (missing: with the ways to fix
/// it; not a regular file), `None` when it looks loadable.
pub fn wasm_file_problem(path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => None,
        Ok(_) => Some(format!("Wasm module {} is not a regular file", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(format!(
            "Wasm module {} not found; build it (cargo build --release -p failover-filter --target wasm32-wasip1), write the built-in one with `failover-host wasm --out {}`, or run with `--wasm builtin`",
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
    Resolver { file, opts }.bootstrap(raw)
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

// ===== resolution: raw model -> Bootstrap =====

struct Resolver<'a> {
    file: &'a Path,
    opts: &'a LoadOptions,
}

impl Resolver<'_> {
    fn err(&self, field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::field(self.file, field, message)
    }

    fn bootstrap(&self, raw: raw::Bootstrap) -> Result<Bootstrap, ConfigError> {
        let mut clusters: Vec<Cluster> = Vec::new();
        for (i, c) in raw.static_resources.clusters.into_iter().enumerate() {
            let path = format!("static_resources.clusters[{i}]");
            let cluster = self.cluster(&path, c)?;
            if clusters.iter().any(|o| o.name == cluster.name) {
                return Err(self.err(
                    format!("{path}.name"),
                    format!("duplicate cluster name {:?}", cluster.name),
                ));
            }
            clusters.push(cluster);
        }
        let mut listeners: Vec<Listener> = Vec::new();
        for (i, l) in raw.static_resources.listeners.into_iter().enumerate() {
            let path = format!("static_resources.listeners[{i}]");
            let listener = self.listener(&path, l, &clusters)?;
            if listeners
                .iter()
                .any(|o| o.address == listener.address && listener.address.port() != 0)
            {
                return Err(self.err(
                    format!("{path}.address"),
                    format!("two listeners on {}", listener.address),
                ));
            }
            listeners.push(listener);
        }
        let mut services = Vec::new();
        for (i, ext) in raw.bootstrap_extensions.into_iter().enumerate() {
            let path = format!("bootstrap_extensions[{i}]");
            if ext.name != "envoy.bootstrap.wasm" {
                return Err(self.err(
                    format!("{path}.name"),
                    format!(
                        "unsupported bootstrap extension {:?} (only envoy.bootstrap.wasm)",
                        ext.name
                    ),
                ));
            }
            let svc = *ext.typed_config.0;
            if !svc.singleton {
                return Err(self.err(
                    format!("{path}.typed_config.singleton"),
                    "only singleton: true Wasm services are supported",
                ));
            }
            services.push(self.plugin(&format!("{path}.typed_config.config"), svc.config)?);
        }
        let admin = match raw.admin {
            Some(a) => {
                Some(self.ip_address("admin.address.socket_address", &a.address.socket_address)?)
            }
            None => None,
        };
        Ok(Bootstrap {
            file: self.file.to_path_buf(),
            listeners,
            clusters,
            services,
            admin,
        })
    }

    fn ip_address(&self, path: &str, sa: &raw::SocketAddress) -> Result<SocketAddr, ConfigError> {
        let ip: IpAddr = sa.address.parse().map_err(|_| {
            self.err(
                format!("{path}.address"),
                format!("{:?} is not an IP address", sa.address),
            )
        })?;
        let port = self.port(path, sa.port_value)?;
        Ok(SocketAddr::new(ip, port))
    }

    fn port(&self, path: &str, value: u32) -> Result<u16, ConfigError> {
        u16::try_from(value).map_err(|_| {
            self.err(
                format!("{path}.port_value"),
                format!("{value} is not a port"),
            )
        })
    }

    fn listener(
        &self,
        path: &str,
        l: raw::Listener,
        clusters: &[Cluster],
    ) -> Result<Listener, ConfigError> {
        let address = self.ip_address(
            &format!("{path}.address.socket_address"),
            &l.address.socket_address,
        )?;
        if l.filter_chains.len() != 1 {
            return Err(self.err(
                format!("{path}.filter_chains"),
                format!(
                    "exactly one filter chain is supported, found {}",
                    l.filter_chains.len()
                ),
            ));
        }
        let chain = l
            .filter_chains
            .into_iter()
            .next()
            .ok_or_else(|| self.err(format!("{path}.filter_chains"), "missing"))?;
        let fpath = format!("{path}.filter_chains[0].filters");
        if chain.filters.len() != 1 {
            return Err(self.err(&fpath, format!("exactly one network filter (the HTTP connection manager) is supported, found {}", chain.filters.len())));
        }
        let filter = chain
            .filters
            .into_iter()
            .next()
            .ok_or_else(|| self.err(&fpath, "missing"))?;
        if filter.name != "envoy.filters.network.http_connection_manager" {
            return Err(self.err(
                format!("{fpath}[0].name"),
                format!("unsupported network filter {:?}", filter.name),
            ));
        }
        let any::ListenerFilterConfig::Hcm(hcm) = filter.typed_config;
        let hpath = format!("{fpath}[0].typed_config");
        let mut wasm_filters = Vec::new();
        let n = hcm.http_filters.len();
        let mut saw_router = false;
        for (i, f) in hcm.http_filters.into_iter().enumerate() {
            let p = format!("{hpath}.http_filters[{i}]");
            match f.typed_config {
                any::HttpFilterConfig::Wasm(w) => {
                    if f.name != "envoy.filters.http.wasm" {
                        return Err(self.err(
                            format!("{p}.name"),
                            format!(
                                "a Wasm filter must be named envoy.filters.http.wasm, not {:?}",
                                f.name
                            ),
                        ));
                    }
                    wasm_filters.push(self.plugin(&format!("{p}.typed_config.config"), w.config)?);
                }
                any::HttpFilterConfig::Router(_) => {
                    if f.name != "envoy.filters.http.router" {
                        return Err(self.err(
                            format!("{p}.name"),
                            format!(
                                "the router must be named envoy.filters.http.router, not {:?}",
                                f.name
                            ),
                        ));
                    }
                    if i + 1 != n {
                        return Err(self.err(&p, "the router must be the last HTTP filter"));
                    }
                    saw_router = true;
                }
            }
        }
        if !saw_router {
            return Err(self.err(
                format!("{hpath}.http_filters"),
                "the last HTTP filter must be envoy.filters.http.router",
            ));
        }
        let rpath = format!("{hpath}.route_config");
        let mut virtual_hosts = Vec::new();
        for (i, vh) in hcm.route_config.virtual_hosts.into_iter().enumerate() {
            virtual_hosts.push(self.virtual_host(
                &format!("{rpath}.virtual_hosts[{i}]"),
                vh,
                clusters,
            )?);
        }
        Ok(Listener {
            name: l.name,
            address,
            stat_prefix: hcm.stat_prefix,
            route_config_name: hcm.route_config.name,
            virtual_hosts,
            wasm_filters,
            buffer_limit: l
                .per_connection_buffer_limit_bytes
                .unwrap_or(DEFAULT_BUFFER_LIMIT),
        })
    }

    fn virtual_host(
        &self,
        path: &str,
        vh: raw::VirtualHost,
        clusters: &[Cluster],
    ) -> Result<VirtualHost, ConfigError> {
        if vh.domains.is_empty() {
            return Err(self.err(format!("{path}.domains"), "at least one domain is required"));
        }
        let mut routes = Vec::new();
        for (i, r) in vh.routes.into_iter().enumerate() {
            let p = format!("{path}.routes[{i}]");
            let target = match (r.route.cluster, r.route.cluster_header) {
                (Some(c), None) => {
                    if !clusters.iter().any(|k| k.name == c) {
                        return Err(self.err(format!("{p}.route.cluster"), format!("unknown cluster {c:?}")));
                    }
                    RouteTarget::Cluster(c)
                }
                (None, Some(h)) => {
                    if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                        return Err(self.err(format!("{p}.route.cluster_header"), format!("{h:?} is not a header name")));
                    }
                    RouteTarget::ClusterHeader(h.to_ascii_lowercase())
                }
                (Some(_), Some(_)) => return Err(self.err(format!("{p}.route"), "multiple fields provided for oneof 'cluster_specifier' (cluster, cluster_header)")),
                (None, None) => return Err(self.err(format!("{p}.route"), "one of cluster or cluster_header is required")),
            };
            let timeout = match r.route.timeout {
                None => Some(DEFAULT_ROUTE_TIMEOUT),
                Some(t) => {
                    let d = parse_duration(&t)
                        .map_err(|m| self.err(format!("{p}.route.timeout"), m))?;
                    (!d.is_zero()).then_some(d)
                }
            };
            routes.push(Route {
                name: r.name,
                prefix: r.match_.prefix,
                target,
                timeout,
                auto_host_rewrite: r.route.auto_host_rewrite,
            });
        }
        Ok(VirtualHost {
            name: vh.name,
            domains: vh
                .domains
                .into_iter()
                .map(|d| d.to_ascii_lowercase())
                .collect(),
            routes,
        })
    }

    fn cluster(&self, path: &str, c: raw::Cluster) -> Result<Cluster, ConfigError> {
        if c.name.is_empty() {
            return Err(self.err(format!("{path}.name"), "must not be empty"));
        }
        let discovery = match c.type_.unwrap_or(raw::DiscoveryType::Static) {
            raw::DiscoveryType::Static => Discovery::Static,
            raw::DiscoveryType::StrictDns => Discovery::StrictDns,
            raw::DiscoveryType::LogicalDns => Discovery::LogicalDns,
        };
        let connect_timeout = match c.connect_timeout {
            None => DEFAULT_CONNECT_TIMEOUT,
            Some(t) => {
                let d = parse_duration(&t)
                    .map_err(|m| self.err(format!("{path}.connect_timeout"), m))?;
                if d.is_zero() {
                    return Err(
                        self.err(format!("{path}.connect_timeout"), "must be greater than 0s")
                    );
                }
                d
            }
        };
        let mut endpoints = Vec::new();
        if let Some(la) = c.load_assignment {
            for (i, group) in la.endpoints.into_iter().enumerate() {
                for (j, lb) in group.lb_endpoints.into_iter().enumerate() {
                    let p = format!("{path}.load_assignment.endpoints[{i}].lb_endpoints[{j}].endpoint.address.socket_address");
                    let sa = lb.endpoint.address.socket_address;
                    let port = self.port(&p, sa.port_value)?;
                    if port == 0 {
                        return Err(
                            self.err(format!("{p}.port_value"), "an upstream port is required")
                        );
                    }
                    if discovery == Discovery::Static && sa.address.parse::<IpAddr>().is_err() {
                        return Err(self.err(format!("{p}.address"), format!("{:?} is not an IP address (a STATIC cluster needs IPs; use STRICT_DNS for names)", sa.address)));
                    }
                    endpoints.push(HostPort {
                        host: sa.address,
                        port,
                    });
                }
            }
        }
        if discovery == Discovery::LogicalDns && endpoints.len() > 1 {
            return Err(self.err(
                format!("{path}.load_assignment"),
                "LOGICAL_DNS clusters take exactly one endpoint",
            ));
        }
        let tls = match c.transport_socket {
            None => None,
            Some(ts) => {
                if ts.name != "envoy.transport_sockets.tls" {
                    return Err(self.err(
                        format!("{path}.transport_socket.name"),
                        format!("unsupported transport socket {:?}", ts.name),
                    ));
                }
                Some(self.tls(
                    &format!("{path}.transport_socket.typed_config"),
                    ts.typed_config.0,
                )?)
            }
        };
        for key in c.typed_extension_protocol_options.keys() {
            if key != "envoy.extensions.upstreams.http.v3.HttpProtocolOptions" {
                return Err(self.err(
                    format!("{path}.typed_extension_protocol_options.{key}"),
                    "unsupported protocol options",
                ));
            }
        }
        Ok(Cluster {
            name: c.name,
            discovery,
            connect_timeout,
            dns_lookup_family: c.dns_lookup_family.unwrap_or(DnsLookupFamily::Auto),
            endpoints,
            tls,
        })
    }

    fn tls(&self, path: &str, t: raw::UpstreamTlsContext) -> Result<TlsConfig, ConfigError> {
        let mut alpn = Vec::new();
        let mut trusted_ca_pem = None;
        if let Some(ctx) = t.common_tls_context {
            for (i, p) in ctx.alpn_protocols.iter().enumerate() {
                if p != "http/1.1" {
                    return Err(self.err(
                        format!("{path}.common_tls_context.alpn_protocols[{i}]"),
                        format!("only http/1.1 is supported, not {p:?}"),
                    ));
                }
            }
            alpn = ctx.alpn_protocols;
            if let Some(ca) = ctx.validation_context.and_then(|v| v.trusted_ca) {
                let p = format!("{path}.common_tls_context.validation_context.trusted_ca");
                trusted_ca_pem = Some(self.data_source(&p, ca)?);
            }
        }
        Ok(TlsConfig {
            sni: t.sni,
            alpn,
            trusted_ca_pem,
        })
    }

    fn data_source(&self, path: &str, d: raw::DataSource) -> Result<Vec<u8>, ConfigError> {
        match (d.filename, d.inline_bytes, d.inline_string) {
            (Some(f), None, None) => std::fs::read(&f).map_err(|e| {
                self.err(
                    format!("{path}.filename"),
                    format!("cannot read {f:?}: {e}"),
                )
            }),
            (None, Some(b), None) => base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .map_err(|e| self.err(format!("{path}.inline_bytes"), format!("not base64: {e}"))),
            (None, None, Some(s)) => Ok(s.into_bytes()),
            _ => Err(self.err(
                path,
                "exactly one of filename, inline_bytes, inline_string is required",
            )),
        }
    }

    fn plugin(&self, path: &str, c: raw::PluginConfig) -> Result<WasmPlugin, ConfigError> {
        let vm = c.vm_config;
        const RUNTIMES: [&str; 4] = [
            "envoy.wasm.runtime.v8",
            "envoy.wasm.runtime.wasmtime",
            "envoy.wasm.runtime.wamr",
            "envoy.wasm.runtime.wavm",
        ];
        if !RUNTIMES.contains(&vm.runtime.as_str()) {
            return Err(self.err(
                format!("{path}.vm_config.runtime"),
                format!(
                    "unknown runtime {:?} (expected one of {})",
                    vm.runtime,
                    RUNTIMES.join(", ")
                ),
            ));
        }
        let cpath = format!("{path}.vm_config.code.local");
        let code = match &self.opts.wasm_override {
            Some(o) => o.clone(),
            None => {
                let local = vm.code.local;
                match (local.filename, local.inline_bytes, local.inline_string) {
                    (Some(f), None, None) if f == BUILTIN_WASM => WasmSource::Embedded,
                    (Some(f), None, None) => WasmSource::File(PathBuf::from(f)),
                    (None, b @ Some(_), None) => WasmSource::Inline(self.data_source(
                        &cpath,
                        raw::DataSource {
                            filename: None,
                            inline_bytes: b,
                            inline_string: None,
                        },
                    )?),
                    (None, None, Some(s)) => WasmSource::Inline(s.into_bytes()),
                    _ => {
                        return Err(self.err(
                            &cpath,
                            "exactly one of filename, inline_bytes, inline_string is required",
                        ))
                    }
                }
            }
        };
        if let (WasmSource::File(f), false) = (&code, self.opts.skip_file_checks) {
            if let Some(problem) = wasm_file_problem(f) {
                return Err(self.err(format!("{cpath}.filename"), problem));
            }
        }
        let mut environment = Vec::new();
        if let Some(env) = vm.environment_variables {
            // Envoy (`WasmConfig`): every key once across key_values and host_env_keys.
            let mut seen: std::collections::HashSet<&str> =
                env.key_values.keys().map(|k| k.as_str()).collect();
            for key in &env.host_env_keys {
                if !seen.insert(key.as_str()) {
                    return Err(self.err(
                        format!("{path}.vm_config.environment_variables"),
                        format!("Key {key} is duplicated in environment_variables; all the keys must be unique"),
                    ));
                }
            }
            for key in env.host_env_keys {
                if let Ok(v) = std::env::var(&key) {
                    environment.push((key, v));
                }
            }
            for (k, v) in env.key_values {
                environment.push((k, v));
            }
        }
        Ok(WasmPlugin {
            config_path: path.to_string(),
            name: c.name,
            root_id: c.root_id,
            vm_id: vm.vm_id,
            configuration: c
                .configuration
                .map(|s| s.0.into_bytes())
                .unwrap_or_default(),
            vm_configuration: vm
                .configuration
                .map(|s| s.0.into_bytes())
                .unwrap_or_default(),
            environment,
            code,
            fail_open: c.fail_open,
            allow_on_headers_stop_iteration: c.allow_on_headers_stop_iteration.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
static_resources:
  listeners:
  - name: main
    address: { socket_address: { address: 127.0.0.1, port_value: 10000 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          codec_type: AUTO
          route_config:
            name: local
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/fixed" }
                route: { cluster: a, timeout: 0.25s }
              - match: { prefix: "/" }
                route: { cluster_header: X-Failover-Cluster, timeout: 0s }
          http_filters:
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: failover
                root_id: failover
                vm_config:
                  vm_id: failover
                  runtime: envoy.wasm.runtime.v8
                  code: { local: { filename: "builtin:failover" } }
                  environment_variables: { key_values: { A: "1" } }
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: '{"endpoints":[]}'
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: a
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: a
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 9001 } } }
  - name: b
    type: STRICT_DNS
    load_assignment:
      cluster_name: b
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: localhost, port_value: 443 } } }
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        sni: api.example.com
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
bootstrap_extensions:
- name: envoy.bootstrap.wasm
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.wasm.v3.WasmService
    singleton: true
    config:
      name: verifier
      root_id: failover_verifier
      vm_config: { vm_id: failover, runtime: envoy.wasm.runtime.v8, code: { local: { inline_string: "x" } } }
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: 9901 } }
"#;

    fn parse_str(text: &str) -> Result<Bootstrap, ConfigError> {
        parse(Path::new("test.yaml"), text, &LoadOptions::default())
    }

    #[test]
    fn buffer_limit_and_stop_iteration_flag_default_as_in_envoy_and_can_be_set() {
        let b = parse_str(GOOD).expect("valid");
        assert_eq!(b.listeners[0].buffer_limit, 1024 * 1024);
        assert!(!b.listeners[0].wasm_filters[0].allow_on_headers_stop_iteration);
        let text = GOOD
            .replace(
                "    filter_chains:\n",
                "    per_connection_buffer_limit_bytes: 2048\n    filter_chains:\n",
            )
            .replace(
                "                root_id: failover\n",
                "                root_id: failover\n                allow_on_headers_stop_iteration: true\n",
            );
        let b = parse_str(&text).expect("valid");
        assert_eq!(b.listeners[0].buffer_limit, 2048);
        assert!(b.listeners[0].wasm_filters[0].allow_on_headers_stop_iteration);
        assert!(
            parse_str(&text.replace(
                "allow_on_headers_stop_iteration: true",
                "allow_on_headers_stop_iteration: sometimes"
            ))
            .is_err(),
            "a BoolValue is a bool"
        );
    }

    #[test]
    fn parses_the_supported_subset() {
        let b = parse_str(GOOD).expect("valid");
        assert_eq!(b.listeners.len(), 1);
        let l = &b.listeners[0];
        assert_eq!(l.address, "127.0.0.1:10000".parse().unwrap());
        assert_eq!(l.wasm_filters.len(), 1);
        let w = &l.wasm_filters[0];
        assert_eq!(w.code, WasmSource::Embedded);
        assert_eq!(w.configuration, br#"{"endpoints":[]}"#);
        assert_eq!(w.environment, vec![("A".to_string(), "1".to_string())]);
        let routes = &l.virtual_hosts[0].routes;
        assert_eq!(routes[0].timeout, Some(Duration::from_millis(250)));
        assert!(
            matches!(&routes[1].target, RouteTarget::ClusterHeader(h) if h == "x-failover-cluster")
        );
        assert_eq!(routes[1].timeout, None);
        assert_eq!(b.clusters[0].connect_timeout, Duration::from_secs(1));
        assert_eq!(b.clusters[1].discovery, Discovery::StrictDns);
        assert_eq!(b.clusters[1].connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(
            b.clusters[1].tls.as_ref().and_then(|t| t.sni.as_deref()),
            Some("api.example.com")
        );
        assert_eq!(b.services.len(), 1);
        assert_eq!(b.services[0].code, WasmSource::Inline(b"x".to_vec()));
        assert_eq!(b.admin, Some("127.0.0.1:9901".parse().unwrap()));
    }

    #[test]
    fn unknown_field_names_path_and_line() {
        let text = GOOD.replace(
            "                route: { cluster: a, timeout: 0.25s }",
            "                route: { clusterr: a }",
        );
        let e = parse_str(&text).unwrap_err();
        assert!(e.field.contains("static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[0].route"), "{e}");
        assert!(e.message.contains("clusterr"), "{e}");
        assert!(e.location.is_some(), "{e}");
    }

    #[test]
    fn unknown_field_inside_a_buffered_any_names_its_path() {
        let text = GOOD.replace(
            "        sni: api.example.com",
            "        sni: api.example.com\n        snii: x",
        );
        let e = parse_str(&text).unwrap_err();
        assert!(e.to_string().contains("snii"), "{e}");
        assert!(e.field.contains("transport_socket.typed_config"), "{e}");
    }

    #[test]
    fn bad_values_are_errors_naming_the_field() {
        let cases = [
            (
                "connect_timeout: 1s",
                "connect_timeout: 1000",
                "connect_timeout",
            ),
            ("type: STATIC", "type: STATIK", "type"),
            (
                "route: { cluster: a, timeout: 0.25s }",
                "route: { cluster: nope }",
                "unknown cluster",
            ),
            (
                "runtime: envoy.wasm.runtime.v8\n",
                "runtime: v9\n",
                "runtime",
            ),
            (
                "filename: \"builtin:failover\"",
                "filename: /nonexistent/failover_filter.wasm",
                "not found",
            ),
            (
                "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
                "type.googleapis.com/envoy.extensions.filters.http.routerr.v3.Router",
                "unsupported \"@type\"",
            ),
        ];
        for (from, to, expect) in cases {
            assert!(GOOD.contains(from), "{from}");
            let e = parse_str(&GOOD.replacen(from, to, 1)).unwrap_err();
            assert!(e.to_string().contains(expect), "{from} -> {to}: {e}");
        }
    }

    #[test]
    fn invalid_yaml_and_duplicate_keys_are_errors_with_a_line() {
        let e = parse_str("static_resources: [").unwrap_err();
        assert!(e.location.is_some(), "{e}");
        let e = parse_str("admin: {}\nadmin: {}\n").unwrap_err();
        assert!(e.message.contains("duplicate"), "{e}");
    }
}
