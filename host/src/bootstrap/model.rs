//! The typed bootstrap the server runs: every field checked and resolved (addresses parsed,
//! durations converted, data sources read, defaults filled in as Envoy fills them).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::DnsLookupFamily;
use crate::plugin::{PluginSpec, WasmCode};

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
    /// What the VMs start from.
    pub spec: PluginSpec,
}

/// How to load: CLI overrides.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--wasm`: replaces every `code.local` (`None` = as configured).
    pub wasm_override: Option<WasmCode>,
    /// Do not require `code.local.filename` to exist here (`--mode validate` checks the files
    /// afterwards, with [`wasm_file_problem`] and by loading them).
    pub skip_file_checks: bool,
}
