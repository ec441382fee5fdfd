//! The seam between the proxy-wasm ABI (`abi`) and the runtime that drives it (`vm`, `stream`,
//! `proxy`): the plain data and the one trait both sides name. It is a leaf — it uses nothing
//! from the crate, not even in doc links — so `abi` can depend on it without depending on the
//! runtime.
//!
//! `vm` and `stream` re-export these types under their old paths (the public API the tests,
//! benches and tools use).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;

// ===== what the proxy provides to the ABI =====

/// A request for `dispatch_http_call`: headers include `:method`, `:path`, `:authority`.
#[derive(Debug, Clone, Default)]
pub struct CallRequest {
    /// Lower-case names, pseudo-headers included.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The request body.
    pub body: Bytes,
    /// Trailers (usually empty).
    pub trailers: Vec<(String, Vec<u8>)>,
}

/// The answer to a [`CallRequest`]: headers include `:status`.
#[derive(Debug, Clone, Default)]
pub struct CallResponse {
    /// Lower-case names, `:status` included.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The whole response body.
    pub body: Bytes,
    /// Trailers (usually empty).
    pub trailers: Vec<(String, Vec<u8>)>,
}

/// Why a `dispatch_http_call` got no answer; the plugin sees 0 headers either way.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The call's timeout passed.
    #[error("timeout")]
    Timeout,
    /// No connection to the cluster.
    #[error("connect failure: {0}")]
    ConnectFailure(String),
    /// The connection broke before the answer was complete.
    #[error("reset: {0}")]
    Reset(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// The clusters, as `dispatch_http_call` needs them. Implemented by the proxy; the futures are
/// `!Send` and run on the worker's `LocalSet`.
pub trait ClusterManager {
    /// Whether `name` is a configured cluster (unknown → BAD_ARGUMENT to the plugin).
    fn has_cluster(&self, name: &str) -> bool;
    /// Whether `name` has at least one host to send to right now. A call to a cluster without
    /// one fails at once in Envoy (the router's "no healthy upstream" reply is generated inline,
    /// `AsyncClient::send` returns null): INTERNAL_FAILURE and no callback. Clusters that cannot
    /// tell answer true.
    fn has_usable_host(&self, name: &str) -> bool {
        let _ = name;
        true
    }
    /// Sends `request` to `cluster`; `timeout` `None` means no timeout.
    fn call(
        &self,
        cluster: &str,
        request: CallRequest,
        timeout: Option<Duration>,
    ) -> Pin<Box<dyn Future<Output = Result<CallResponse, CallError>>>>;
}

/// Where a request came from, for `source.*`/`destination.*`/`request.id` properties.
#[derive(Debug, Clone)]
pub struct DownstreamInfo {
    /// The client's address.
    pub source: SocketAddr,
    /// The listener address the client connected to.
    pub destination: SocketAddr,
    /// `x-request-id`, when the proxy has one.
    pub request_id: Option<String>,
}

// ===== what the router reports =====

/// What the router attaches (as an `http::Response` extension) to every response it
/// produces, so `response.flags`, `response.code_details`, `upstream.address`,
/// `xds.cluster_name` can be served to the plugin.
#[derive(Clone, Debug, Default)]
pub struct UpstreamInfo {
    /// Envoy response-flag bits: UH 0x2, UT 0x4, UR 0x10, UF 0x20, UC 0x40, URX 0x8000, NR 0x100 ...
    pub response_flags: u64,
    /// "via_upstream", "upstream_response_timeout", ...
    pub code_details: String,
    /// The upstream host that answered (or was tried).
    pub upstream_address: Option<SocketAddr>,
    /// The cluster the route chose.
    pub cluster_name: Option<String>,
    /// The route's name.
    pub route_name: Option<String>,
}

/// Envoy's response flag bits (`StreamInfo::CoreResponseFlag`), as `response.flags` reports them
/// and [`UpstreamInfo::response_flags`] carries them.
pub mod flags {
    /// UH: no healthy upstream host.
    pub const NO_HEALTHY_UPSTREAM: u64 = 0x2;
    /// UT: upstream request timeout.
    pub const UPSTREAM_REQUEST_TIMEOUT: u64 = 0x4;
    /// UR: upstream remote reset.
    pub const UPSTREAM_REMOTE_RESET: u64 = 0x10;
    /// UF: upstream connection failure.
    pub const UPSTREAM_CONNECTION_FAILURE: u64 = 0x20;
    /// UC: upstream connection termination.
    pub const UPSTREAM_CONNECTION_TERMINATION: u64 = 0x40;
    /// DC: downstream connection termination (the client went away).
    pub const DOWNSTREAM_CONNECTION_TERMINATION: u64 = 0x4000;
    /// NR: no route found.
    pub const NO_ROUTE_FOUND: u64 = 0x100;
    /// URX: upstream retry limit exceeded.
    pub const UPSTREAM_RETRY_LIMIT_EXCEEDED: u64 = 0x8000;
    /// UPE: upstream protocol error.
    pub const UPSTREAM_PROTOCOL_ERROR: u64 = 0x80_0000;
    /// NC: no cluster found.
    pub const NO_CLUSTER_FOUND: u64 = 0x100_0000;
}
