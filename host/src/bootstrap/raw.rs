//! The serde model of the subset of Envoy's v3 bootstrap that `failover-host` runs.
//!
//! Field names are the proto field names (snake_case) exactly as Envoy's YAML uses them.
//! Every struct denies unknown fields: a field we do not implement is an error naming its
//! path, never silently ignored. The `typed_config` payloads (`Any` with an `@type`) are
//! decoded by [`super::any`], which picks the message type from the `@type` URL.
//!
//! Some fields are accepted only because Envoy accepts them and they change nothing here
//! (e.g. `codec_type: AUTO`, `lb_policy: ROUND_ROBIN`), so they are never read.
#![allow(dead_code)]

use std::collections::BTreeMap;

use serde::Deserialize;

use super::any::{
    ClusterProtocolOptions, HttpFilterConfig, ListenerFilterConfig, StringValue,
    TransportSocketConfig, WasmServiceAny,
};

/// `envoy.config.bootstrap.v3.Bootstrap`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bootstrap {
    /// Listeners and clusters.
    #[serde(default)]
    pub static_resources: StaticResources,
    /// `envoy.bootstrap.wasm` services (the singleton verifier).
    #[serde(default)]
    pub bootstrap_extensions: Vec<BootstrapExtension>,
    /// The admin listener.
    pub admin: Option<Admin>,
}

/// `static_resources`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticResources {
    /// Downstream listeners.
    #[serde(default)]
    pub listeners: Vec<Listener>,
    /// Upstream clusters.
    #[serde(default)]
    pub clusters: Vec<Cluster>,
}

/// `admin`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// Where the admin listener binds.
    pub address: Address,
}

/// `envoy.config.core.v3.Address` (only `socket_address`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Address {
    /// The TCP address.
    pub socket_address: SocketAddress,
}

/// `envoy.config.core.v3.SocketAddress`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocketAddress {
    /// IP address, or a host name in DNS clusters.
    pub address: String,
    /// TCP port.
    #[serde(default)]
    pub port_value: u32,
    /// Only `TCP` is supported.
    pub protocol: Option<SocketProtocol>,
}

/// `SocketAddress.Protocol`.
#[derive(Debug, Deserialize, PartialEq, Eq, Clone, Copy)]
pub enum SocketProtocol {
    /// The only protocol we serve.
    #[serde(rename = "TCP")]
    Tcp,
}

/// `envoy.config.listener.v3.Listener`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Listener name (for logs).
    #[serde(default)]
    pub name: String,
    /// Bind address.
    pub address: Address,
    /// `google.protobuf.UInt32Value`: how much a filter may buffer per stream (Envoy's
    /// default 1 MiB).
    pub per_connection_buffer_limit_bytes: Option<u32>,
    /// Exactly one filter chain without a match is supported.
    #[serde(default)]
    pub filter_chains: Vec<FilterChain>,
}

/// `envoy.config.listener.v3.FilterChain`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterChain {
    /// Network filters (exactly one HTTP connection manager).
    #[serde(default)]
    pub filters: Vec<NetworkFilter>,
    /// Optional chain name.
    pub name: Option<String>,
}

/// A network filter entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkFilter {
    /// Filter name, e.g. `envoy.filters.network.http_connection_manager`.
    pub name: String,
    /// The HCM config.
    pub typed_config: ListenerFilterConfig,
}

/// `envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConnectionManager {
    /// Stats prefix.
    pub stat_prefix: String,
    /// `AUTO` or `HTTP1` (we serve HTTP/1.1).
    pub codec_type: Option<CodecType>,
    /// The static route table.
    pub route_config: RouteConfiguration,
    /// HTTP filters, router last.
    #[serde(default)]
    pub http_filters: Vec<HttpFilter>,
}

/// `HttpConnectionManager.CodecType`.
#[derive(Debug, Deserialize, PartialEq, Eq, Clone, Copy)]
pub enum CodecType {
    /// Envoy picks by ALPN / preface; we speak HTTP/1.1.
    #[serde(rename = "AUTO")]
    Auto,
    /// HTTP/1.1.
    #[serde(rename = "HTTP1")]
    Http1,
}

/// `envoy.config.route.v3.RouteConfiguration`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfiguration {
    /// Route table name (the `route_name` property).
    #[serde(default)]
    pub name: String,
    /// Virtual hosts, matched by `Host`.
    #[serde(default)]
    pub virtual_hosts: Vec<VirtualHost>,
}

/// `envoy.config.route.v3.VirtualHost`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualHost {
    /// Name (for logs).
    pub name: String,
    /// Host patterns: `*`, `*.suffix`, `prefix*`, exact.
    pub domains: Vec<String>,
    /// Routes, first match wins.
    #[serde(default)]
    pub routes: Vec<Route>,
}

/// `envoy.config.route.v3.Route`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Optional route name.
    pub name: Option<String>,
    /// Only `prefix` matching.
    #[serde(rename = "match")]
    pub match_: RouteMatch,
    /// Where to send the request.
    pub route: RouteAction,
}

/// `envoy.config.route.v3.RouteMatch`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteMatch {
    /// Path prefix.
    pub prefix: String,
}

/// `envoy.config.route.v3.RouteAction`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteAction {
    /// A fixed cluster.
    pub cluster: Option<String>,
    /// The request header naming the cluster.
    pub cluster_header: Option<String>,
    /// Route timeout, Envoy duration string; default 15s, `0s` = none.
    pub timeout: Option<String>,
    /// Set `Host` to the upstream host's DNS name (DNS clusters only, as in Envoy).
    #[serde(default)]
    pub auto_host_rewrite: bool,
}

/// An entry of `http_filters`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFilter {
    /// `envoy.filters.http.wasm` or `envoy.filters.http.router`.
    pub name: String,
    /// Its typed config.
    pub typed_config: HttpFilterConfig,
}

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

/// `envoy.config.core.v3.AsyncDataSource` (only `local`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsyncDataSource {
    /// A local data source.
    pub local: DataSource,
}

/// `envoy.config.core.v3.DataSource`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSource {
    /// A file on disk.
    pub filename: Option<String>,
    /// Base64 bytes (proto3 JSON mapping).
    pub inline_bytes: Option<String>,
    /// Text.
    pub inline_string: Option<String>,
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

/// `envoy.extensions.filters.http.router.v3.Router` (no options supported).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Router {}

/// A `bootstrap_extensions` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapExtension {
    /// `envoy.bootstrap.wasm`.
    pub name: String,
    /// The WasmService.
    pub typed_config: WasmServiceAny,
}

/// `envoy.config.cluster.v3.Cluster`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// Cluster name.
    pub name: String,
    /// Discovery type; Envoy's default is `STATIC`.
    #[serde(rename = "type")]
    pub type_: Option<DiscoveryType>,
    /// TCP connect timeout; Envoy's default is 5s.
    pub connect_timeout: Option<String>,
    /// Only `ROUND_ROBIN`.
    pub lb_policy: Option<LbPolicy>,
    /// DNS family for DNS clusters.
    pub dns_lookup_family: Option<DnsLookupFamily>,
    /// The endpoints.
    pub load_assignment: Option<ClusterLoadAssignment>,
    /// Upstream TLS.
    pub transport_socket: Option<TransportSocket>,
    /// `envoy.extensions.upstreams.http.v3.HttpProtocolOptions` (HTTP/1.1 only).
    #[serde(default)]
    pub typed_extension_protocol_options: BTreeMap<String, ClusterProtocolOptions>,
}

/// `Cluster.DiscoveryType`.
#[derive(Debug, Deserialize, PartialEq, Eq, Clone, Copy)]
pub enum DiscoveryType {
    /// Fixed IP addresses.
    #[serde(rename = "STATIC")]
    Static,
    /// Every resolved address is a host, re-resolved periodically.
    #[serde(rename = "STRICT_DNS")]
    StrictDns,
    /// The first resolved address is the host.
    #[serde(rename = "LOGICAL_DNS")]
    LogicalDns,
}

/// `Cluster.LbPolicy`.
#[derive(Debug, Deserialize, PartialEq, Eq, Clone, Copy)]
pub enum LbPolicy {
    /// The only policy we implement.
    #[serde(rename = "ROUND_ROBIN")]
    RoundRobin,
}

/// `Cluster.DnsLookupFamily`.
#[derive(Debug, Deserialize, PartialEq, Eq, Clone, Copy)]
pub enum DnsLookupFamily {
    /// IPv4 first, IPv6 if none (Envoy's `AUTO` prefers v6; we keep resolver order).
    #[serde(rename = "AUTO")]
    Auto,
    /// IPv4 only.
    #[serde(rename = "V4_ONLY")]
    V4Only,
    /// IPv6 only.
    #[serde(rename = "V6_ONLY")]
    V6Only,
    /// IPv4 preferred.
    #[serde(rename = "V4_PREFERRED")]
    V4Preferred,
    /// Everything.
    #[serde(rename = "ALL")]
    All,
}

/// `envoy.config.endpoint.v3.ClusterLoadAssignment`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterLoadAssignment {
    /// Must equal the cluster name (Envoy ignores it for static clusters; we accept anything).
    #[serde(default)]
    pub cluster_name: String,
    /// Locality groups.
    #[serde(default)]
    pub endpoints: Vec<LocalityLbEndpoints>,
}

/// `envoy.config.endpoint.v3.LocalityLbEndpoints`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalityLbEndpoints {
    /// The hosts.
    #[serde(default)]
    pub lb_endpoints: Vec<LbEndpoint>,
}

/// `envoy.config.endpoint.v3.LbEndpoint`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LbEndpoint {
    /// The host.
    pub endpoint: Endpoint,
}

/// `envoy.config.endpoint.v3.Endpoint`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Its address.
    pub address: Address,
}

/// `envoy.config.core.v3.TransportSocket`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportSocket {
    /// `envoy.transport_sockets.tls`.
    pub name: String,
    /// The UpstreamTlsContext.
    pub typed_config: TransportSocketConfig,
}

/// `envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsContext {
    /// Server name sent in the ClientHello and verified in the certificate.
    pub sni: Option<String>,
    /// ALPN and trust anchors.
    pub common_tls_context: Option<CommonTlsContext>,
}

/// `envoy.extensions.transport_sockets.tls.v3.CommonTlsContext`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommonTlsContext {
    /// Only `http/1.1` is supported.
    #[serde(default)]
    pub alpn_protocols: Vec<String>,
    /// Trust anchors.
    pub validation_context: Option<CertificateValidationContext>,
}

/// `envoy.extensions.transport_sockets.tls.v3.CertificateValidationContext`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateValidationContext {
    /// PEM CA bundle.
    pub trusted_ca: Option<DataSource>,
}

/// `envoy.extensions.upstreams.http.v3.HttpProtocolOptions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpProtocolOptions {
    /// Only `http_protocol_options` (HTTP/1.1).
    pub explicit_http_config: ExplicitHttpConfig,
}

/// `HttpProtocolOptions.ExplicitHttpConfig`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplicitHttpConfig {
    /// HTTP/1.1 options (none supported).
    pub http_protocol_options: Http1ProtocolOptions,
}

/// `envoy.config.core.v3.Http1ProtocolOptions` (no options supported).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http1ProtocolOptions {}

/// `google.protobuf.StringValue` payload.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StringValuePayload {
    /// The string.
    #[serde(default)]
    pub value: String,
}
