//! Listeners: filter chains, the HTTP connection manager, routes, HTTP filters.

use serde::{Deserialize, Deserializer};

use crate::bootstrap::any::{any_deserialize, payload, AnyKind};
use crate::bootstrap::any::{HCM_TYPE, ROUTER_TYPE, WASM_FILTER_TYPE};

use super::common::Address;
use super::wasm::WasmFilter;

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

/// `envoy.extensions.filters.http.router.v3.Router` (no options supported).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Router {}

/// A listener's network filter config: the HTTP connection manager.
#[derive(Debug)]
pub enum ListenerFilterConfig {
    /// `HttpConnectionManager`.
    Hcm(Box<HttpConnectionManager>),
}

impl AnyKind for ListenerFilterConfig {
    const WHAT: &'static str = "a network filter";
    const TYPES: &'static [&'static str] = &[HCM_TYPE];
    fn decode<'de, D: Deserializer<'de>>(_url: &str, rest: D) -> Result<Self, D::Error> {
        Ok(Self::Hcm(Box::new(payload(rest)?)))
    }
}
any_deserialize!(ListenerFilterConfig);

/// An HTTP filter config: Wasm or router.
#[derive(Debug)]
pub enum HttpFilterConfig {
    /// `envoy.extensions.filters.http.wasm.v3.Wasm`.
    Wasm(Box<WasmFilter>),
    /// `envoy.extensions.filters.http.router.v3.Router`.
    Router(Router),
}

impl AnyKind for HttpFilterConfig {
    const WHAT: &'static str = "an HTTP filter";
    const TYPES: &'static [&'static str] = &[WASM_FILTER_TYPE, ROUTER_TYPE];
    fn decode<'de, D: Deserializer<'de>>(url: &str, rest: D) -> Result<Self, D::Error> {
        if url == WASM_FILTER_TYPE {
            Ok(Self::Wasm(Box::new(payload(rest)?)))
        } else {
            Ok(Self::Router(payload(rest)?))
        }
    }
}
any_deserialize!(HttpFilterConfig);
