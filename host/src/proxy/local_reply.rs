//! Envoy's local replies: the answers the proxy itself produces when routing or the upstream
//! fails, with Envoy's status, body, response flags and response code details, so a filter
//! sees exactly what it would see in Envoy (`response.flags`, `response.code_details`).

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::body::{full, Body};
use crate::seam::UpstreamInfo;

pub use crate::seam::flags;

/// Why the proxy answers by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalReply {
    /// No virtual host or route matched: 404, NR, `route_not_found`.
    RouteNotFound,
    /// The route's cluster (or the `cluster_header` value) is unknown or missing: 503, NC,
    /// `cluster_not_found`.
    ClusterNotFound,
    /// The cluster has no host: 503, UH, `no_healthy_upstream`.
    NoHealthyUpstream,
    /// The route timeout passed before response headers: 504, UT, `response_timeout`.
    Timeout,
    /// The TCP/TLS connection could not be made: 503, UF,
    /// `upstream_reset_before_response_started{connection_failure[,<transport reason>]}`.
    ConnectFailure {
        /// Envoy's transport failure reason, e.g. `delayed_connect_error:_111`.
        transport: Option<String>,
    },
    /// The connect timeout passed: 503, UF, `upstream_reset_before_response_started{connection_timeout}`.
    ConnectTimeout,
    /// The upstream closed or reset the connection before headers: 503, UC,
    /// `upstream_reset_before_response_started{connection_termination}`.
    ConnectionTermination,
    /// The upstream reset the stream: 503, UR, `upstream_reset_before_response_started{remote_reset}`.
    RemoteReset,
    /// The upstream sent something that is not HTTP/1.1: 503, UPE,
    /// `upstream_reset_before_response_started{protocol_error}`.
    ProtocolError,
}

impl LocalReply {
    /// Status, flags, code details and body text, as Envoy produces them.
    pub fn parts(&self) -> (StatusCode, u64, String, String) {
        const RESET_BODY: &str =
            "upstream connect error or disconnect/reset before headers. reset reason: ";
        match self {
            Self::RouteNotFound => (
                StatusCode::NOT_FOUND,
                flags::NO_ROUTE_FOUND,
                "route_not_found".into(),
                String::new(),
            ),
            Self::ClusterNotFound => (
                StatusCode::SERVICE_UNAVAILABLE,
                flags::NO_CLUSTER_FOUND,
                "cluster_not_found".into(),
                String::new(),
            ),
            Self::NoHealthyUpstream => (
                StatusCode::SERVICE_UNAVAILABLE,
                flags::NO_HEALTHY_UPSTREAM,
                "no_healthy_upstream".into(),
                "no healthy upstream".into(),
            ),
            Self::Timeout => (
                StatusCode::GATEWAY_TIMEOUT,
                flags::UPSTREAM_REQUEST_TIMEOUT,
                "response_timeout".into(),
                "upstream request timeout".into(),
            ),
            Self::ConnectFailure { transport } => {
                let (details, body) = match transport {
                    Some(t) => (
                        format!(
                            "upstream_reset_before_response_started{{connection_failure,{}}}",
                            t.replace(' ', "_")
                        ),
                        format!("{RESET_BODY}connection failure, transport failure reason: {t}"),
                    ),
                    None => (
                        "upstream_reset_before_response_started{connection_failure}".into(),
                        format!("{RESET_BODY}connection failure"),
                    ),
                };
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    flags::UPSTREAM_CONNECTION_FAILURE,
                    details,
                    body,
                )
            }
            Self::ConnectTimeout => (
                StatusCode::SERVICE_UNAVAILABLE,
                flags::UPSTREAM_CONNECTION_FAILURE,
                "upstream_reset_before_response_started{connection_timeout}".into(),
                format!("{RESET_BODY}connection timeout"),
            ),
            Self::ConnectionTermination => (
                StatusCode::SERVICE_UNAVAILABLE,
                flags::UPSTREAM_CONNECTION_TERMINATION,
                "upstream_reset_before_response_started{connection_termination}".into(),
                format!("{RESET_BODY}connection termination"),
            ),
            Self::RemoteReset => (
                StatusCode::SERVICE_UNAVAILABLE,
                flags::UPSTREAM_REMOTE_RESET,
                "upstream_reset_before_response_started{remote_reset}".into(),
                format!("{RESET_BODY}remote reset"),
            ),
            Self::ProtocolError => (
                StatusCode::SERVICE_UNAVAILABLE,
                flags::UPSTREAM_PROTOCOL_ERROR,
                "upstream_reset_before_response_started{protocol_error}".into(),
                format!("{RESET_BODY}protocol error"),
            ),
        }
    }

    /// The response, with [`UpstreamInfo`] attached. `info` carries the cluster, route and
    /// upstream address known so far; flags and code details are filled in here.
    pub fn into_response(self, mut info: UpstreamInfo) -> Response<Body> {
        let (status, flag, details, text) = self.parts();
        info.response_flags |= flag;
        info.code_details = details;
        let len = text.len();
        let mut resp = Response::new(full(Bytes::from(text)));
        *resp.status_mut() = status;
        if len > 0 {
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        }
        resp.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        resp.extensions_mut().insert(info);
        resp
    }
}
