//! Clusters: discovery, endpoints, upstream TLS, HTTP protocol options.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use crate::bootstrap::any::{any_deserialize, payload, AnyKind};
use crate::bootstrap::any::{HTTP_OPTIONS_TYPE, TLS_TYPE};

use super::common::{Address, DataSource};

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

/// A transport socket config: upstream TLS.
#[derive(Debug)]
pub struct TransportSocketConfig(pub UpstreamTlsContext);

impl AnyKind for TransportSocketConfig {
    const WHAT: &'static str = "a transport socket";
    const TYPES: &'static [&'static str] = &[TLS_TYPE];
    fn decode<'de, D: Deserializer<'de>>(_url: &str, rest: D) -> Result<Self, D::Error> {
        Ok(Self(payload(rest)?))
    }
}
any_deserialize!(TransportSocketConfig);

/// A cluster's `typed_extension_protocol_options` value.
#[derive(Debug)]
pub struct ClusterProtocolOptions(pub HttpProtocolOptions);

impl AnyKind for ClusterProtocolOptions {
    const WHAT: &'static str = "cluster protocol options";
    const TYPES: &'static [&'static str] = &[HTTP_OPTIONS_TYPE];
    fn decode<'de, D: Deserializer<'de>>(_url: &str, rest: D) -> Result<Self, D::Error> {
        Ok(Self(payload(rest)?))
    }
}
any_deserialize!(ClusterProtocolOptions);
