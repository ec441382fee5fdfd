//! Between hyper's heads and the ABI's header lists, and the responses the driver builds
//! itself (a plugin's local reply, a reset, the 503 of a failed VM).

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;

use super::{StreamReset, WASM_FAIL_DETAILS};
use crate::abi::state::{HeaderList, PluginReply};
use crate::body::{self, Body, BoxError, ResetError};
use crate::seam::UpstreamInfo;

/// Envoy's name for the downstream protocol (`Http::Utility::getProtocolString`): `request.protocol`.
pub(super) fn protocol_name(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 | http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

/// Envoy's view of request headers: `:authority`, `:path`, `:method`, `:scheme`, then the rest
/// (`host` becomes `:authority`).
pub(super) fn request_to_list(parts: &http::request::Parts) -> HeaderList {
    let host = parts
        .headers
        .get(http::header::HOST)
        .map(|v| v.as_bytes().to_vec())
        .or_else(|| {
            parts
                .uri
                .authority()
                .map(|a| a.as_str().as_bytes().to_vec())
        })
        .unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| b"/".to_vec(), |p| p.as_str().as_bytes().to_vec());
    let mut list: HeaderList = vec![
        (":authority".into(), host),
        (":path".into(), path),
        (":method".into(), parts.method.as_str().as_bytes().to_vec()),
        (
            ":scheme".into(),
            parts.uri.scheme_str().unwrap_or("http").as_bytes().to_vec(),
        ),
    ];
    for (name, value) in &parts.headers {
        if name != http::header::HOST {
            list.push((name.as_str().to_string(), value.as_bytes().to_vec()));
        }
    }
    list
}

pub(super) fn header_map(list: &HeaderList) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (name, value) in list {
        if name.starts_with(':') {
            continue;
        }
        match (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_bytes(value),
        ) {
            (Ok(n), Ok(v)) => {
                map.append(n, v);
            }
            _ => tracing::debug!(header = %name, "invalid header set by a plugin: dropped"),
        }
    }
    map
}

pub(super) fn pseudo<'a>(list: &'a HeaderList, name: &str) -> Option<&'a [u8]> {
    list.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_slice())
}

/// Applies the filters' header list back onto the request head.
pub(super) fn apply_request_list(parts: &mut http::request::Parts, list: &HeaderList) {
    if let Some(m) = pseudo(list, ":method").and_then(|m| http::Method::from_bytes(m).ok()) {
        parts.method = m;
    }
    if let Some(p) = pseudo(list, ":path").and_then(|p| http::uri::PathAndQuery::try_from(p).ok()) {
        let mut uri = http::uri::Parts::default();
        uri.path_and_query = Some(p);
        if let Ok(u) = http::Uri::from_parts(uri) {
            parts.uri = u;
        }
    }
    parts.headers = header_map(list);
    if let Some(host) =
        pseudo(list, ":authority").and_then(|a| http::HeaderValue::from_bytes(a).ok())
    {
        parts.headers.insert(http::header::HOST, host);
    }
}

pub(super) fn response_to_list(parts: &http::response::Parts) -> HeaderList {
    let mut list: HeaderList = vec![(":status".into(), parts.status.as_str().as_bytes().to_vec())];
    for (name, value) in &parts.headers {
        list.push((name.as_str().to_string(), value.as_bytes().to_vec()));
    }
    list
}

pub(super) fn apply_response_list(parts: &mut http::response::Parts, list: &HeaderList) {
    if let Some(s) = pseudo(list, ":status").and_then(|s| http::StatusCode::from_bytes(s).ok()) {
        parts.status = s;
    }
    parts.headers = header_map(list);
}

pub(super) fn local_reply_list(lr: &PluginReply) -> HeaderList {
    let mut list: HeaderList = vec![(":status".into(), lr.status.to_string().into_bytes())];
    list.extend(
        lr.headers
            .iter()
            .filter(|(n, _)| !n.starts_with(':'))
            .cloned(),
    );
    if !lr.body.is_empty() && !list.iter().any(|(n, _)| n == "content-type") {
        list.push(("content-type".into(), b"text/plain".to_vec()));
    }
    list
}

pub(super) fn local_reply_info(lr: &PluginReply) -> UpstreamInfo {
    UpstreamInfo {
        code_details: lr.details.clone(),
        ..UpstreamInfo::default()
    }
}

pub(super) fn build_response(
    list: &HeaderList,
    body: Body,
    info: UpstreamInfo,
) -> http::Response<Body> {
    let (mut parts, ()) = http::Response::new(()).into_parts();
    apply_response_list(&mut parts, list);
    parts.extensions.insert(info);
    http::Response::from_parts(parts, body)
}

pub(super) fn reset_response() -> http::Response<Body> {
    let body = futures_util::stream::once(async {
        Err::<Frame<Bytes>, BoxError>(Box::new(ResetError("stream reset by a Wasm plugin")))
    });
    let mut resp = http::Response::new(http_body_util::StreamBody::new(body).boxed_unsync());
    *resp.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
    resp.extensions_mut().insert(StreamReset);
    resp.extensions_mut().insert(UpstreamInfo {
        code_details: "wasm_stream_reset".into(),
        ..UpstreamInfo::default()
    });
    resp
}

pub(super) fn fail_response() -> http::Response<Body> {
    let lr = PluginReply {
        status: 503,
        details: WASM_FAIL_DETAILS.into(),
        body: Vec::new(),
        headers: Vec::new(),
    };
    build_response(&local_reply_list(&lr), body::empty(), local_reply_info(&lr))
}

pub(super) fn trailers_list(map: &http::HeaderMap) -> HeaderList {
    map.iter()
        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
        .collect()
}
