//! Drives one request through the plugins' HTTP contexts with Envoy's filter-chain semantics.
//!
//! ```text
//! downstream request
//!   │ on_request_headers  (filters in order)   Continue → next filter
//!   │                                           Pause    → wait for continue_stream(request)
//!   │                                           send_http_response → local reply (below)
//!   │ forward(request)    the router: routes on the headers as the filters left them
//!   │ on_request_body     (concurrently, per chunk)  Pause = StopIterationAndBuffer: the chunk is
//!   │                     kept and the next call sees the whole buffer; at end of stream a Pause
//!   │                     waits for continue_stream(request)
//!   ▼
//! upstream response (or the router's local reply, with UpstreamInfo → response.* properties)
//!   │ on_response_headers (filters in reverse)  Pause → wait for continue_stream(response) or
//!   │                                           send_http_response (replaces the response)
//!   │ ── response headers go downstream: send_http_response now resets the stream ──
//!   │ on_response_body    (per chunk, as the body is polled)
//!   ▼
//! on_log, on_done, on_delete   always, also when the stream ends early (HttpStream's Drop)
//!
//! local reply during the request phase: passes on_response_headers/on_response_body of the
//! filters that saw the request (in reverse), like Envoy's sendLocalReply via the filter chain;
//! during the response phase (before headers went downstream): sent directly, replacing it.
//! ```
//!
//! Every callback a host call causes (a local reply, a resume, an HTTP-call answer) is acted on
//! here, after the guest call returned — never re-entered.
//!
//! A Pause from a *headers* callback is Envoy's `StopAllIterationAndWatermark` for ABI 0.2.x
//! (proxy-wasm-cpp-host `convertVmCallResultToFilterHeadersStatus`, unless the plugin sets
//! `allow_on_headers_stop_iteration`): no body or trailers callback for that direction reaches
//! any filter until the headers are continued; the body waits (here: it is not read, so
//! back-pressure does what Envoy's watermark does) and then flows on.

use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, Empty, Full};

use crate::abi::state::{HeaderList, LocalReply, RequestMeta, ResponseMeta, StreamState};
use crate::vm::{Action, DownstreamInfo, HttpStream, PluginVm, VmError};

/// Error type of [`Body`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type requests and responses carry through the chain.
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

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

/// Extension on a response produced because a plugin reset the stream (`close_stream`, or
/// `send_http_response` after the response started): the server should abort the downstream
/// connection instead of sending it.
#[derive(Clone, Copy, Debug, Default)]
pub struct StreamReset;

/// Code details of the 503 sent when a plugin VM has failed and `fail_open` is false.
pub const WASM_FAIL_DETAILS: &str = "wasm_fail_stream";

// ===== bodies =====

fn empty_body() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

fn full_body(bytes: Vec<u8>) -> Body {
    if bytes.is_empty() {
        return empty_body();
    }
    Full::new(Bytes::from(bytes))
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body fed by the request-body pump.
struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, BoxError>>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx.poll_recv(cx)
    }
}

#[derive(Debug)]
struct ResetError(&'static str);
impl std::fmt::Display for ResetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}
impl std::error::Error for ResetError {}

// ===== header conversions =====

fn request_meta(parts: &http::request::Parts) -> RequestMeta {
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    RequestMeta {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_else(|| "/".into()),
        host,
        scheme: parts.uri.scheme_str().unwrap_or("http").to_string(),
        protocol: format!("{:?}", parts.version),
        id: parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    }
}

/// Envoy's view of request headers: `:authority`, `:path`, `:method`, `:scheme`, then the rest
/// (`host` becomes `:authority`).
fn request_to_list(parts: &http::request::Parts, meta: &RequestMeta) -> HeaderList {
    let mut list: HeaderList = vec![
        (":authority".into(), meta.host.as_bytes().to_vec()),
        (":path".into(), meta.path.as_bytes().to_vec()),
        (":method".into(), meta.method.as_bytes().to_vec()),
        (":scheme".into(), meta.scheme.as_bytes().to_vec()),
    ];
    for (name, value) in &parts.headers {
        if name != http::header::HOST {
            list.push((name.as_str().to_string(), value.as_bytes().to_vec()));
        }
    }
    list
}

fn header_map(list: &HeaderList) -> http::HeaderMap {
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

fn pseudo<'a>(list: &'a HeaderList, name: &str) -> Option<&'a [u8]> {
    list.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_slice())
}

/// Applies the filters' header list back onto the request head.
fn apply_request_list(parts: &mut http::request::Parts, list: &HeaderList) {
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

fn response_to_list(parts: &http::response::Parts) -> HeaderList {
    let mut list: HeaderList = vec![(":status".into(), parts.status.as_str().as_bytes().to_vec())];
    for (name, value) in &parts.headers {
        list.push((name.as_str().to_string(), value.as_bytes().to_vec()));
    }
    list
}

fn apply_response_list(parts: &mut http::response::Parts, list: &HeaderList) {
    if let Some(s) = pseudo(list, ":status").and_then(|s| http::StatusCode::from_bytes(s).ok()) {
        parts.status = s;
    }
    parts.headers = header_map(list);
}

fn local_reply_list(lr: &LocalReply) -> HeaderList {
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

fn local_reply_info(lr: &LocalReply) -> UpstreamInfo {
    UpstreamInfo {
        code_details: lr.details.clone(),
        ..UpstreamInfo::default()
    }
}

fn build_response(list: &HeaderList, body: Body, info: UpstreamInfo) -> http::Response<Body> {
    let (mut parts, ()) = http::Response::new(()).into_parts();
    apply_response_list(&mut parts, list);
    parts.extensions.insert(info);
    http::Response::from_parts(parts, body)
}

fn reset_response() -> http::Response<Body> {
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

fn fail_response() -> http::Response<Body> {
    let lr = LocalReply {
        status: 503,
        details: WASM_FAIL_DETAILS.into(),
        body: Vec::new(),
        headers: Vec::new(),
    };
    build_response(&local_reply_list(&lr), empty_body(), local_reply_info(&lr))
}

// ===== one step of one filter =====

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    Request,
    Response,
}

impl Dir {
    fn headers(self, st: &mut StreamState) -> &mut Option<HeaderList> {
        match self {
            Dir::Request => &mut st.request_headers,
            Dir::Response => &mut st.response_headers,
        }
    }
    fn changed(self, st: &mut StreamState) -> &mut bool {
        match self {
            Dir::Request => &mut st.request_headers_changed,
            Dir::Response => &mut st.response_headers_changed,
        }
    }
    fn body(self, st: &mut StreamState) -> &mut Option<Vec<u8>> {
        match self {
            Dir::Request => &mut st.request_body,
            Dir::Response => &mut st.response_body,
        }
    }
    fn trailers(self, st: &mut StreamState) -> &mut Option<HeaderList> {
        match self {
            Dir::Request => &mut st.request_trailers,
            Dir::Response => &mut st.response_trailers,
        }
    }
    fn resume(self, st: &mut StreamState) -> &mut bool {
        match self {
            Dir::Request => &mut st.resume_request,
            Dir::Response => &mut st.resume_response,
        }
    }
    fn call_headers(self, s: &HttpStream, n: usize, eos: bool) -> Result<Action, VmError> {
        match self {
            Dir::Request => s.on_request_headers(n, eos),
            Dir::Response => s.on_response_headers(n, eos),
        }
    }
    fn call_body(self, s: &HttpStream, n: usize, eos: bool) -> Result<Action, VmError> {
        match self {
            Dir::Request => s.on_request_body(n, eos),
            Dir::Response => s.on_response_body(n, eos),
        }
    }
    fn call_trailers(self, s: &HttpStream, n: usize) -> Result<Action, VmError> {
        match self {
            Dir::Request => s.on_request_trailers(n),
            Dir::Response => s.on_response_trailers(n),
        }
    }
}

/// What the driver does after a callback.
enum Step {
    Continue,
    Pause,
    LocalReply(LocalReply),
    Reset,
    /// The VM failed and the plugin is not fail-open: answer 503.
    Fail,
}

/// Reads what the callback (and its host calls) decided.
fn outcome(s: &HttpStream, result: Result<Action, VmError>, dir: Dir) -> Step {
    let (local, reset, resumed) = s
        .with(|st| {
            (
                st.local_reply.take(),
                st.reset,
                std::mem::take(dir.resume(st)),
            )
        })
        .unwrap_or((None, false, false));
    if reset {
        return Step::Reset;
    }
    if let Some(lr) = local {
        return Step::LocalReply(lr);
    }
    match result {
        Ok(Action::Continue) => Step::Continue,
        // continue_stream during the callback that returned Pause: already resumed.
        Ok(Action::Pause) if resumed => Step::Continue,
        Ok(Action::Pause) => Step::Pause,
        Err(_) if s.vm().spec().fail_open => Step::Continue,
        Err(_) => Step::Fail,
    }
}

/// Waits until the paused filter resumes `dir`, sends a local reply, resets, or fails.
async fn wait_resume(s: &HttpStream, dir: Dir) -> Step {
    let signal = s.signal();
    loop {
        let notified = signal.notified();
        let (local, reset, resumed) = s
            .with(|st| {
                (
                    st.local_reply.take(),
                    st.reset,
                    std::mem::take(dir.resume(st)),
                )
            })
            .unwrap_or((None, false, false));
        if reset {
            return Step::Reset;
        }
        if let Some(lr) = local {
            return Step::LocalReply(lr);
        }
        if resumed {
            return Step::Continue;
        }
        if !s.is_live() {
            return if s.vm().spec().fail_open {
                Step::Continue
            } else {
                Step::Fail
            };
        }
        notified.await;
    }
}

/// Runs the headers callback of one filter (waiting out a Pause). The headers stay in the
/// stream's state afterwards, where the plugin can still read them (request headers during the
/// response, as in Envoy) and where the driver takes them from ([`headers_of`]).
async fn run_headers(s: &HttpStream, dir: Dir, list: HeaderList, eos: bool) -> Step {
    let n = list.len();
    s.with(|st| {
        *dir.headers(st) = Some(list);
        *dir.changed(st) = false;
        *dir.resume(st) = false;
    });
    let result = dir.call_headers(s, n, eos);
    let mut step = outcome(s, result, dir);
    if matches!(step, Step::Pause) {
        step = wait_resume(s, dir).await;
    }
    step
}

/// A copy of the headers as the filter of `s` left them (for the next filter in the chain).
fn headers_of(s: &HttpStream, dir: Dir) -> HeaderList {
    s.with(|st| dir.headers(st).clone())
        .flatten()
        .unwrap_or_default()
}

/// Whether the filter of `s` changed its headers.
fn headers_changed(s: &HttpStream, dir: Dir) -> bool {
    s.with(|st| *dir.changed(st)).unwrap_or(false)
}

/// Where a body chunk ended up after passing the filters in `order`.
enum Fed {
    /// Passed every filter: send it on (possibly empty).
    Out(Vec<u8>),
    /// A filter is buffering it (StopIterationAndBuffer).
    Held,
    /// Filter at position `pos` of `order` sent a local reply.
    LocalReply(usize, LocalReply),
    Reset,
    Fail,
}

/// Passes one chunk through the filters in `order`; each filter's buffered data is kept in
/// its stream state, so the callback sees the whole buffer so far.
async fn feed(
    streams: &[HttpStream],
    order: &[usize],
    dir: Dir,
    mut chunk: Vec<u8>,
    eos: bool,
) -> Fed {
    for (pos, &i) in order.iter().enumerate() {
        let s = &streams[i];
        if !s.is_live() {
            continue;
        }
        let len = s
            .with(|st| {
                *dir.resume(st) = false;
                let buf = dir.body(st).get_or_insert_with(Vec::new);
                buf.extend_from_slice(&chunk);
                buf.len()
            })
            .unwrap_or(0);
        let result = dir.call_body(s, len, eos);
        let mut step = outcome(s, result, dir);
        if matches!(step, Step::Pause) && eos {
            step = wait_resume(s, dir).await;
        }
        match step {
            Step::Continue => {
                chunk = s
                    .with(|st| dir.body(st).take())
                    .flatten()
                    .unwrap_or_default()
            }
            Step::Pause => return Fed::Held,
            Step::LocalReply(lr) => return Fed::LocalReply(pos, lr),
            Step::Reset => return Fed::Reset,
            Step::Fail => return Fed::Fail,
        }
    }
    Fed::Out(chunk)
}

/// Passes trailers through the filters in `order` (a Pause on trailers is not waited for).
fn feed_trailers(
    streams: &[HttpStream],
    order: &[usize],
    dir: Dir,
    mut list: HeaderList,
) -> HeaderList {
    for &i in order {
        let s = &streams[i];
        if !s.is_live() {
            continue;
        }
        let n = list.len();
        s.with(|st| *dir.trailers(st) = Some(std::mem::take(&mut list)));
        let _ = dir.call_trailers(s, n);
        list = s
            .with(|st| dir.trailers(st).clone())
            .flatten()
            .unwrap_or_default();
    }
    list
}

fn trailers_list(map: &http::HeaderMap) -> HeaderList {
    map.iter()
        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
        .collect()
}

// ===== the chain =====

/// Runs the request through `filters` (in order) and the router `forward`, and the response
/// back through them (in reverse), with Envoy's semantics (module docs).
///
/// `forward` gets the request as the filters left it (headers possibly changed, body streamed
/// or buffered) and returns the upstream response or the router's local reply, with an
/// [`UpstreamInfo`] extension. The returned response's body is streamed through the filters'
/// `on_response_body` as it is polled; `on_log`/`on_done`/`on_delete` run when it ends or is
/// dropped. Must run inside the worker's `LocalSet` (the VMs are `Rc`).
pub async fn run_filter_chain<F, Fut>(
    filters: &[Rc<PluginVm>],
    downstream: DownstreamInfo,
    req: http::Request<Body>,
    forward: F,
) -> http::Response<Body>
where
    F: FnOnce(http::Request<Body>) -> Fut,
    Fut: std::future::Future<Output = http::Response<Body>>,
{
    let streams: Vec<HttpStream> = filters
        .iter()
        .map(|vm| vm.new_stream(downstream.clone()))
        .collect();
    let mut order: Vec<usize> = Vec::new();
    for (i, s) in streams.iter().enumerate() {
        if s.is_live() {
            order.push(i);
        } else if !s.vm().spec().fail_open {
            return fail_response();
        }
    }

    // ----- request headers -----
    let (mut parts, mut body) = req.into_parts();
    let meta = request_meta(&parts);
    let req_eos = http_body::Body::is_end_stream(&body);
    // Each filter gets the headers as the one before left them; the head is rebuilt from the
    // last filter's list only if some filter changed it (one copy per extra filter, none for one).
    let mut request_changed = false;
    for (pos, &i) in order.iter().enumerate() {
        let s = &streams[i];
        let list = match pos.checked_sub(1) {
            None => request_to_list(&parts, &meta),
            Some(prev) => headers_of(&streams[order[prev]], Dir::Request),
        };
        s.with(|st| st.request = Some(meta.clone()));
        let step = run_headers(s, Dir::Request, list, req_eos).await;
        request_changed |= headers_changed(s, Dir::Request);
        match step {
            Step::Continue => {}
            Step::Pause => unreachable_pause(),
            Step::LocalReply(lr) => {
                return local_reply_via_chain(streams, order[..=pos].to_vec(), lr).await
            }
            Step::Reset => return reset_response(),
            Step::Fail => return fail_response(),
        }
    }
    if let (true, Some(&last)) = (request_changed, order.last()) {
        streams[last].with(|st| {
            if let Some(list) = &st.request_headers {
                apply_request_list(&mut parts, list);
            }
        });
    }

    // ----- forward, with the request body pumped through the filters concurrently -----
    let response = if req_eos {
        forward(http::Request::from_parts(parts, empty_body())).await
    } else {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let fwd = forward(http::Request::from_parts(
            parts,
            ChannelBody { rx }.boxed_unsync(),
        ));
        let early = {
            let pump = pump_request(&streams, &order, &mut body, tx);
            tokio::pin!(fwd);
            tokio::pin!(pump);
            let mut pump_done = false;
            loop {
                tokio::select! {
                    r = &mut fwd => break Ok(r),
                    p = &mut pump, if !pump_done => match p {
                        Fed::Out(_) | Fed::Held => pump_done = true,
                        other => break Err(other),
                    },
                }
            }
        };
        match early {
            Ok(r) => r,
            Err(Fed::LocalReply(pos, lr)) => {
                let upto = order[..=pos].to_vec();
                return local_reply_via_chain(streams, upto, lr).await;
            }
            Err(Fed::Reset) => return reset_response(),
            Err(_) => return fail_response(),
        }
    };

    // ----- response headers -----
    let (mut rparts, rbody) = response.into_parts();
    let info = rparts
        .extensions
        .get::<UpstreamInfo>()
        .cloned()
        .unwrap_or_default();
    let rmeta = ResponseMeta {
        code: rparts.status.as_u16(),
        info,
    };
    let resp_eos = http_body::Body::is_end_stream(&rbody);
    let reverse: Vec<usize> = order.iter().rev().copied().collect();
    let mut response_changed = false;
    for (pos, &i) in reverse.iter().enumerate() {
        let s = &streams[i];
        let rlist = match pos.checked_sub(1) {
            None => response_to_list(&rparts),
            Some(prev) => headers_of(&streams[reverse[prev]], Dir::Response),
        };
        s.with(|st| st.response = Some(rmeta.clone()));
        let step = run_headers(s, Dir::Response, rlist, resp_eos).await;
        response_changed |= headers_changed(s, Dir::Response);
        match step {
            Step::Continue => {}
            Step::Pause => unreachable_pause(),
            Step::LocalReply(lr) => {
                // Headers not yet downstream: Envoy sends the reply directly, bypassing filters.
                mark_headers_sent(&streams);
                return build_response(
                    &local_reply_list(&lr),
                    full_body(lr.body.clone()),
                    local_reply_info(&lr),
                );
            }
            Step::Reset => return reset_response(),
            Step::Fail => return fail_response(),
        }
    }
    if let (true, Some(&last)) = (response_changed, reverse.last()) {
        streams[last].with(|st| {
            if let Some(list) = &st.response_headers {
                apply_response_list(&mut rparts, list);
            }
        });
    }
    mark_headers_sent(&streams);
    if resp_eos {
        drop(streams); // on_log / on_done / on_delete
        return http::Response::from_parts(rparts, empty_body());
    }
    http::Response::from_parts(rparts, response_body(streams, reverse, rbody))
}

/// `run_headers` never returns Pause (it waits it out).
fn unreachable_pause() {
    tracing::error!("internal: a paused filter was not waited for");
}

fn mark_headers_sent(streams: &[HttpStream]) {
    for s in streams {
        s.with(|st| st.response_headers_sent = true);
    }
}

/// Pumps the downstream request body through the filters into `tx` until it ends; returns
/// `Fed::Out` when done, or why it stopped.
async fn pump_request(
    streams: &[HttpStream],
    order: &[usize],
    body: &mut Body,
    tx: tokio::sync::mpsc::Sender<Result<Frame<Bytes>, BoxError>>,
) -> Fed {
    loop {
        let frame = body.frame().await;
        let eos = http_body::Body::is_end_stream(body);
        match frame {
            None => {
                return match feed(streams, order, Dir::Request, Vec::new(), true).await {
                    Fed::Out(chunk) => {
                        if !chunk.is_empty() {
                            let _ = tx.send(Ok(Frame::data(Bytes::from(chunk)))).await;
                        }
                        Fed::Out(Vec::new())
                    }
                    other => other,
                };
            }
            Some(Err(e)) => {
                let _ = tx.send(Err(e)).await;
                return Fed::Out(Vec::new());
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => match feed(streams, order, Dir::Request, data.to_vec(), eos).await {
                    Fed::Out(chunk) => {
                        if !chunk.is_empty()
                            && tx.send(Ok(Frame::data(Bytes::from(chunk)))).await.is_err()
                        {
                            return Fed::Out(Vec::new());
                        }
                        if eos {
                            return Fed::Out(Vec::new());
                        }
                    }
                    Fed::Held => {
                        if eos {
                            return Fed::Held;
                        }
                    }
                    other => return other,
                },
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        // End of stream: flush what filters still hold, then the trailers.
                        if let Fed::Out(chunk) =
                            feed(streams, order, Dir::Request, Vec::new(), false).await
                        {
                            if !chunk.is_empty() {
                                let _ = tx.send(Ok(Frame::data(Bytes::from(chunk)))).await;
                            }
                        }
                        let list =
                            feed_trailers(streams, order, Dir::Request, trailers_list(&trailers));
                        let _ = tx.send(Ok(Frame::trailers(header_map(&list)))).await;
                        return Fed::Out(Vec::new());
                    }
                }
            },
        }
    }
}

/// A local reply raised while the request was being decoded: runs through the response
/// callbacks of the filters that saw the request (in reverse), as Envoy's
/// `sendLocalReply` via the filter chain does.
async fn local_reply_via_chain(
    streams: Vec<HttpStream>,
    upto: Vec<usize>,
    lr: LocalReply,
) -> http::Response<Body> {
    let info = local_reply_info(&lr);
    let rmeta = ResponseMeta {
        code: u16::try_from(lr.status).unwrap_or(500),
        info: info.clone(),
    };
    let reverse: Vec<usize> = upto.iter().rev().copied().collect();
    let mut list = local_reply_list(&lr);
    let eos = lr.body.is_empty();
    for &i in &reverse {
        let s = &streams[i];
        s.with(|st| st.response = Some(rmeta.clone()));
        let step = run_headers(s, Dir::Response, list, eos).await;
        list = headers_of(s, Dir::Response);
        match step {
            Step::Continue | Step::Pause => {}
            Step::LocalReply(second) => {
                tracing::debug!(
                    status = second.status,
                    "second local reply while sending one: ignored"
                );
            }
            Step::Reset => return reset_response(),
            Step::Fail => return fail_response(),
        }
    }
    mark_headers_sent(&streams);
    let body = if eos {
        Vec::new()
    } else {
        match feed(&streams, &reverse, Dir::Response, lr.body.clone(), true).await {
            Fed::Out(b) => b,
            Fed::Held => Vec::new(),
            Fed::Reset | Fed::LocalReply(..) => return reset_response(),
            Fed::Fail => return fail_response(),
        }
    };
    drop(streams);
    build_response(&list, full_body(body), info)
}

/// Envoy's `UC` response flag.
const UPSTREAM_CONNECTION_TERMINATION: u64 = 0x40;
/// Envoy's `DC` response flag.
const DOWNSTREAM_DISCONNECT: u64 = 0x4000;

/// Records on every stream that the response ended early, as Envoy's stream info does, so
/// `response.flags` / `response.code_details` read in `on_log` tell who cut it.
fn mark_ended_early(streams: &[HttpStream], flag: u64, details: &str) {
    for s in streams {
        s.with(|st| {
            if let Some(r) = st.response.as_mut() {
                r.info.response_flags |= flag;
                r.info.code_details = details.to_string();
            }
        });
    }
}

/// The response body, passed through the filters' `on_response_body` by a task on the
/// worker's `LocalSet` (the VMs are `!Send`, the body must be `Send`). The task owns the
/// streams: when the body ends, or the client goes away, they end (`on_log`, `on_done`,
/// `on_delete`).
fn response_body(streams: Vec<HttpStream>, reverse: Vec<usize>, mut upstream: Body) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
    tokio::task::spawn_local(async move {
        let reset = || -> BoxError {
            Box::new(ResetError(
                "stream reset by a Wasm plugin during the response body",
            ))
        };
        loop {
            let frame = tokio::select! {
                f = upstream.frame() => f,
                () = tx.closed() => {
                    // The client went away: Envoy's DC flag, visible in on_log.
                    mark_ended_early(&streams, DOWNSTREAM_DISCONNECT, "downstream_remote_disconnect");
                    break;
                }
            };
            let eos = http_body::Body::is_end_stream(&upstream);
            let (chunk, eos) = match frame {
                None => (Vec::new(), true),
                Some(Err(e)) => {
                    // The upstream cut the body after headers went out: Envoy's UC flag and
                    // details, visible to on_log (the filter counts it as an endpoint failure).
                    mark_ended_early(
                        &streams,
                        UPSTREAM_CONNECTION_TERMINATION,
                        "upstream_reset_after_response_started{connection_termination}",
                    );
                    let _ = tx.send(Err(e)).await;
                    break;
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => (data.to_vec(), eos),
                    Err(frame) => {
                        let Ok(trailers) = frame.into_trailers() else {
                            continue;
                        };
                        match feed(&streams, &reverse, Dir::Response, Vec::new(), false).await {
                            Fed::Out(held) if !held.is_empty() => {
                                let _ = tx.send(Ok(Frame::data(Bytes::from(held)))).await;
                            }
                            Fed::Out(_) | Fed::Held => {}
                            _ => {
                                let _ = tx.send(Err(reset())).await;
                                break;
                            }
                        }
                        let list = feed_trailers(
                            &streams,
                            &reverse,
                            Dir::Response,
                            trailers_list(&trailers),
                        );
                        let _ = tx.send(Ok(Frame::trailers(header_map(&list)))).await;
                        break;
                    }
                },
            };
            match feed(&streams, &reverse, Dir::Response, chunk, eos).await {
                Fed::Out(b) => {
                    if !b.is_empty() && tx.send(Ok(Frame::data(Bytes::from(b)))).await.is_err() {
                        break;
                    }
                }
                Fed::Held => {}
                Fed::LocalReply(..) | Fed::Reset | Fed::Fail => {
                    let _ = tx.send(Err(reset())).await;
                    break;
                }
            }
            if eos {
                break;
            }
        }
        drop(streams); // on_log / on_done / on_delete
    });
    ChannelBody { rx }.boxed_unsync()
}
