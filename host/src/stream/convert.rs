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
    // Sized once: growing it header by header cost ~250 instructions per request.
    let mut list: HeaderList = Vec::with_capacity(4 + parts.headers.len());
    list.extend([
        (":authority".into(), host),
        (":path".into(), path),
        (":method".into(), parts.method.as_str().as_bytes().to_vec()),
        (
            ":scheme".into(),
            parts.uri.scheme_str().unwrap_or("http").as_bytes().to_vec(),
        ),
    ]);
    for (name, value) in &parts.headers {
        if name != http::header::HOST {
            list.push((name.as_str().to_string(), value.as_bytes().to_vec()));
        }
    }
    list
}

pub(super) fn header_map(list: &HeaderList) -> http::HeaderMap {
    rebuild_header_map(list, &http::HeaderMap::new(), None)
}

/// The map [`header_map`] builds from `list`, taking each name and value already parsed from
/// `old` (the map the list was made from, without the `skip` header) while the list still
/// holds `old`'s entries in `old`'s order. A plugin usually adds or changes one header: parsing
/// and copying every other name and value again cost ~1.5 k instructions per request.
fn rebuild_header_map(
    list: &HeaderList,
    old: &http::HeaderMap,
    skip: Option<&http::HeaderName>,
) -> http::HeaderMap {
    let mut map = http::HeaderMap::with_capacity(list.len());
    let mut old = old
        .iter()
        .filter(|(name, _)| Some(*name) != skip)
        .peekable();
    for (name, value) in list {
        if name.starts_with(':') {
            continue;
        }
        let parsed = match old.next_if(|(n, _)| n.as_str() == name.as_str()) {
            Some((n, v)) if v.as_bytes() == value.as_slice() => {
                (Ok(n.clone()), Ok(unflagged(v.clone())))
            }
            Some((n, _)) => (Ok(n.clone()), http::HeaderValue::from_bytes(value)),
            None => (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_bytes(value),
            ),
        };
        match parsed {
            (Ok(n), Ok(v)) => {
                map.append(n, v);
            }
            _ => tracing::debug!(header = %name, "invalid header set by a plugin: dropped"),
        }
    }
    map
}

/// A reused value as `HeaderValue::from_bytes` would have made it (not marked sensitive).
fn unflagged(mut value: http::HeaderValue) -> http::HeaderValue {
    value.set_sensitive(false);
    value
}

pub(super) fn pseudo<'a>(list: &'a HeaderList, name: &str) -> Option<&'a [u8]> {
    list.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_slice())
}

/// Applies the filters' header list back onto the request head.
pub(super) fn apply_request_list(parts: &mut http::request::Parts, list: &HeaderList) {
    let method = pseudo(list, ":method").filter(|m| *m != parts.method.as_str().as_bytes());
    if let Some(m) = method.and_then(|m| http::Method::from_bytes(m).ok()) {
        parts.method = m;
    }
    let path = pseudo(list, ":path").filter(|p| !is_origin_form(&parts.uri, p));
    if let Some(p) = path.and_then(|p| http::uri::PathAndQuery::try_from(p).ok()) {
        let mut uri = http::uri::Parts::default();
        uri.path_and_query = Some(p);
        if let Ok(u) = http::Uri::from_parts(uri) {
            parts.uri = u;
        }
    }
    let old = std::mem::take(&mut parts.headers);
    parts.headers = rebuild_header_map(list, &old, Some(&http::header::HOST));
    let host = pseudo(list, ":authority").and_then(|a| match old.get(http::header::HOST) {
        Some(h) if h.as_bytes() == a => Some(unflagged(h.clone())),
        _ => http::HeaderValue::from_bytes(a).ok(),
    });
    if let Some(host) = host {
        parts.headers.insert(http::header::HOST, host);
    }
}

/// True when `uri` is exactly the origin-form URI `path` parses to: re-parsing it would give
/// the same `Uri`.
fn is_origin_form(uri: &http::Uri, path: &[u8]) -> bool {
    uri.scheme().is_none()
        && uri.authority().is_none()
        && uri
            .path_and_query()
            .is_some_and(|p| p.as_str().as_bytes() == path)
}

pub(super) fn response_to_list(parts: &http::response::Parts) -> HeaderList {
    let mut list: HeaderList = Vec::with_capacity(1 + parts.headers.len());
    list.push((":status".into(), parts.status.as_str().as_bytes().to_vec()));
    for (name, value) in &parts.headers {
        list.push((name.as_str().to_string(), value.as_bytes().to_vec()));
    }
    list
}

pub(super) fn apply_response_list(parts: &mut http::response::Parts, list: &HeaderList) {
    if let Some(s) = pseudo(list, ":status").and_then(|s| http::StatusCode::from_bytes(s).ok()) {
        parts.status = s;
    }
    let old = std::mem::take(&mut parts.headers);
    parts.headers = rebuild_header_map(list, &old, None);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn request(raw: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().uri("/a?b=1");
        for (n, v) in raw {
            b = b.header(*n, *v);
        }
        b.body(())
            .map(|r| r.into_parts().0)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// What `apply_request_list` did before it reused parsed names and values: a map built
    /// from the list alone, then `host` from `:authority`.
    fn from_scratch(list: &HeaderList) -> Vec<(String, Vec<u8>)> {
        let mut map = header_map(list);
        if let Some(h) = pseudo(list, ":authority") {
            map.insert(
                http::header::HOST,
                http::HeaderValue::from_bytes(h).unwrap(),
            );
        }
        map.iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn reusing_the_old_map_builds_what_the_list_alone_builds() {
        let raw = [
            ("host", "h"),
            ("accept", "*/*"),
            ("x-a", "1"),
            ("x-a", "2"),
            ("x-b", "3"),
        ];
        let edits: [&dyn Fn(&mut HeaderList); 6] = [
            &|_| {},
            &|l| l.push(("x-route".into(), b"up".to_vec())),
            &|l| crate::abi::headers::replace(l, "x-a".into(), b"9".to_vec()),
            &|l| l.retain(|(n, _)| n != "accept"),
            &|l| {
                l.insert(5, ("x-new".into(), b"n".to_vec()));
                l.push(("host".into(), b"other".to_vec()));
            },
            &|l| {
                l[0].1 = b"changed".to_vec();
                l[1].1 = b"/c".to_vec();
                l.push(("bad name".into(), b"v".to_vec()));
            },
        ];
        for edit in edits {
            let mut parts = request(&raw);
            let mut list = request_to_list(&parts);
            edit(&mut list);
            apply_request_list(&mut parts, &list);
            let got: Vec<_> = parts
                .headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect();
            assert_eq!(got, from_scratch(&list));
            let path = pseudo(&list, ":path").unwrap();
            assert_eq!(parts.uri.to_string().as_bytes(), path);
        }
    }
}
