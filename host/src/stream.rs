//! Drives one request through the plugins' HTTP contexts with Envoy's filter-chain semantics.
//!
//! ```text
//! downstream request
//!   │ on_request_headers  (filters in order)   Continue → next filter
//!   │                                           Pause    → StopAllIterationAndWatermark: nothing
//!   │                                                      of the request moves until
//!   │                                                      continue_stream(request); with
//!   │                                                      allow_on_headers_stop_iteration:
//!   │                                                      StopIteration (body callbacks go on)
//!   │                                           send_http_response → local reply (below)
//!   │ forward(request)    the router: routes on the headers as the filters left them
//!   │ on_request_body     (a task of its own, per chunk, also after the response began, until
//!   │                     the response is complete) Pause = StopIterationAndBuffer: the next
//!   │                     call sees the whole buffer; past the listener's buffer limit → 413
//!   ▼
//! upstream response (or the router's local reply, with UpstreamInfo → response.* properties)
//!   │ on_response_headers (filters in reverse)  Pause, as for the request; send_http_response
//!   │                                           replaces the response (sent directly)
//!   │ ── response headers go downstream: send_http_response now resets the stream ──
//!   │ on_response_body    (per chunk, as the body is polled; buffering past the limit → 500
//!   │                     before the headers went out, a reset after)
//!   ▼
//! on_log (access-log view), on_done, on_delete   always, also when the stream ends early
//!
//! local reply during the request phase: passes on_response_headers/on_response_body of the
//! filters that saw the request (in reverse), like Envoy's sendLocalReply via the filter chain;
//! during the response phase (before headers went downstream): sent directly, replacing it.
//! ```
//!
//! Every callback a host call causes (a local reply, a resume, an HTTP-call answer) is acted on
//! here, after the guest call returned — never re-entered.
//!
//! What each callback can reach ([`crate::abi::state::Reach`]) follows Envoy's
//! `source/extensions/common/wasm/context.cc`: a map or body is reachable while its callback
//! runs and while the filter keeps it paused; a Continue drops it; `continue_stream` drops the
//! request ones; response headers and trailers a filter paused stay reachable after it resumed
//! (Envoy never clears them). The driver keeps its own copy of everything it must pass on.
//!
//! A Pause from a *headers* callback is Envoy's `StopAllIterationAndWatermark` for ABI 0.2.x
//! (proxy-wasm-cpp-host `convertVmCallResultToFilterHeadersStatus`): no body or trailers
//! callback for that direction reaches any filter until the headers are continued; the body
//! waits (here: it is not read, so back-pressure does what Envoy's watermark does) and then flows
//! on. With the plugin's `allow_on_headers_stop_iteration` it is `StopIteration`: the headers are
//! held but the body keeps flowing into the filter's body callbacks; a Continue from one of them
//! (or from its trailers callback), or `continue_stream`, releases the headers and what the
//! filter buffered (`ActiveStreamFilterBase::commonHandleAfterDataCallback` in Envoy's
//! `source/common/http/filter_manager.cc`).

use std::cell::{Cell, RefCell};
use std::ops::Range;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, Empty, Full};

use crate::abi::state::{HeaderList, LocalReply, LogView, ResponseMeta, StreamState};
use crate::seam::DownstreamInfo;
use crate::vm::{Action, HttpStream, PluginVm, VmError};
// The seam type, under the path the public API has always used.
pub use crate::seam::UpstreamInfo;

/// Error type of [`Body`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type requests and responses carry through the chain.
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// Extension on a response produced because a plugin reset the stream (`close_stream`, or
/// `send_http_response` after the response started): the server should abort the downstream
/// connection instead of sending it.
#[derive(Clone, Copy, Debug, Default)]
pub struct StreamReset;

/// Code details of the 503 sent when a plugin VM has failed and `fail_open` is false.
pub const WASM_FAIL_DETAILS: &str = "wasm_fail_stream";

/// Envoy's default listener `per_connection_buffer_limit_bytes` (1 MiB).
pub const DEFAULT_BUFFER_LIMIT: usize = 1024 * 1024;

/// Code details of Envoy's 413 when a filter buffers more request body than the listener's
/// buffer limit (`StreamInfo::ResponseCodeDetails::RequestPayloadTooLarge`).
pub const REQUEST_TOO_LARGE_DETAILS: &str = "request_payload_too_large";

/// Code details of Envoy's 500 when a filter buffers more response body than the limit before
/// the response headers went out (`ResponsePayloadTooLarge`); after that the stream is reset.
pub const RESPONSE_TOO_LARGE_DETAILS: &str = "response_payload_too_large";

/// Options of one listener's filter chain.
#[derive(Debug, Clone, Copy)]
pub struct ChainOptions {
    /// The listener's `per_connection_buffer_limit_bytes`: how much body one filter may buffer
    /// (Pause from a body callback) before Envoy answers 413 (request) or 500/reset (response)
    /// — `ActiveStreamDecoderFilter::requestDataTooLarge` and
    /// `ActiveStreamEncoderFilter::responseDataTooLarge` in `filter_manager.cc`.
    pub buffer_limit: usize,
}

impl Default for ChainOptions {
    fn default() -> Self {
        Self {
            buffer_limit: DEFAULT_BUFFER_LIMIT,
        }
    }
}

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

/// Envoy's name for the downstream protocol (`Http::Utility::getProtocolString`): `request.protocol`.
fn protocol_name(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 | http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

/// Envoy's view of request headers: `:authority`, `:path`, `:method`, `:scheme`, then the rest
/// (`host` becomes `:authority`).
fn request_to_list(parts: &http::request::Parts) -> HeaderList {
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

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
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
    fn reach_headers(self, st: &mut StreamState) -> &mut bool {
        match self {
            Dir::Request => &mut st.reach.request_headers,
            Dir::Response => &mut st.reach.response_headers,
        }
    }
    fn reach_body(self, st: &mut StreamState) -> &mut bool {
        match self {
            Dir::Request => &mut st.reach.request_body,
            Dir::Response => &mut st.reach.response_body,
        }
    }
    fn reach_trailers(self, st: &mut StreamState) -> &mut bool {
        match self {
            Dir::Request => &mut st.reach.request_trailers,
            Dir::Response => &mut st.reach.response_trailers,
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
    /// Envoy's answer when a filter buffers more than the limit in this direction.
    fn too_large(self) -> End {
        let (status, details, body): (u32, &str, &[u8]) = match self {
            Dir::Request => (413, REQUEST_TOO_LARGE_DETAILS, b"Payload Too Large"),
            Dir::Response => (500, RESPONSE_TOO_LARGE_DETAILS, b"Internal Server Error"),
        };
        End::LocalReply(LocalReply {
            status,
            details: details.into(),
            body: body.to_vec(),
            headers: Vec::new(),
        })
    }
}

/// How a stream ends before its normal course.
#[derive(Debug)]
enum End {
    /// A local reply (the plugin's, or Envoy's 413/500).
    LocalReply(LocalReply),
    /// The stream is reset.
    Reset,
    /// The VM failed and the plugin is not fail-open: 503.
    Fail,
}

/// What the driver does after a callback.
enum Step {
    Continue,
    Pause,
    End(End),
}

/// Where a body chunk ended up after passing filters.
enum Fed {
    /// Passed every filter of the range: send it on (possibly empty).
    Out(Vec<u8>),
    /// A filter is buffering it (StopIterationAndBuffer).
    Held,
    /// The filter at this position of the order ended the stream.
    End(usize, End),
}

/// What passed filters `order[..from]` and still has to pass `order[from..]`: `data`, then the
/// trailers if any; `eos` marks the end of the body.
#[derive(Default)]
struct Carry {
    from: usize,
    data: Vec<u8>,
    eos: bool,
    trailers: Option<HeaderList>,
}

impl Carry {
    fn pending(&self) -> bool {
        !self.data.is_empty() || self.eos || self.trailers.is_some()
    }
}

/// One unit of a body as it arrives.
enum Unit {
    Data(Vec<u8>, bool),
    Trailers(HeaderList),
    Error(BoxError),
    /// Nothing more will come.
    Finished,
}

/// A body read frame by frame; knows when its end has been handed out.
struct Source {
    body: Body,
    finished: bool,
}

impl Source {
    fn new(body: Body) -> Self {
        let finished = http_body::Body::is_end_stream(&body);
        Self { body, finished }
    }

    /// The next unit. Cancel-safe (it only polls the body).
    async fn next(&mut self) -> Unit {
        loop {
            if self.finished {
                return Unit::Finished;
            }
            match self.body.frame().await {
                None => {
                    self.finished = true;
                    return Unit::Data(Vec::new(), true);
                }
                Some(Err(e)) => {
                    self.finished = true;
                    return Unit::Error(e);
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let eos = http_body::Body::is_end_stream(&self.body);
                        self.finished = eos;
                        return Unit::Data(data.to_vec(), eos);
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            self.finished = true;
                            return Unit::Trailers(trailers_list(&trailers));
                        }
                    }
                },
            }
        }
    }
}

/// One request's streams (one per live filter) and what the phases share.
struct Chain {
    streams: Vec<HttpStream>,
    /// The filters that take part, in request order (indexes into `streams`).
    order: Vec<usize>,
    limit: usize,
    /// How many filters (of `order`) got their request headers: a local reply raised in the
    /// request phase passes their response callbacks.
    reached: Cell<usize>,
    /// Set once a response (upstream or local) exists: request-side ends are then "late".
    response_started: Cell<bool>,
    /// An end raised by the request-body task, for whoever drives the stream now.
    late: RefCell<Option<End>>,
    late_signal: tokio::sync::Notify,
    /// The task feeding the request body through the filters after `forward`.
    request_pump: RefCell<Option<tokio::task::JoinHandle<()>>>,
    /// What `on_log` will read (request as forwarded, response as sent).
    log: RefCell<LogView>,
}

impl Chain {
    fn take_late(&self) -> Option<End> {
        self.late.borrow_mut().take()
    }

    fn raise_late(&self, end: End) {
        *self.late.borrow_mut() = Some(end);
        self.late_signal.notify_one();
    }

    /// The response is complete (or the stream is over): Envoy drops further request data
    /// (`FilterManager::decodeData` returns once `local_complete_`).
    fn stop_request_pump(&self) {
        if let Some(handle) = self.request_pump.borrow_mut().take() {
            handle.abort();
        }
    }

    fn mark_headers_sent(&self) {
        for s in &self.streams {
            s.with(|st| st.response_headers_sent = true);
        }
    }

    fn set_response(&self, meta: &ResponseMeta) {
        for s in &self.streams {
            s.with(|st| st.response = Some(meta.clone()));
        }
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        // The streams end right after this (on_log, on_done, on_delete): hand them the
        // access-log view first.
        let mut view = Some(std::mem::take(self.log.get_mut()));
        let last = self.streams.len().saturating_sub(1);
        for (i, s) in self.streams.iter().enumerate() {
            let v = if i == last {
                view.take().unwrap_or_default()
            } else {
                view.clone().unwrap_or_default()
            };
            s.with(|st| st.log_view = v);
        }
    }
}

/// Stops the request-body task when dropped: when the response is complete, or when the
/// stream is abandoned (the client went away while the driver waited).
struct StopPump(Rc<Chain>);

impl Drop for StopPump {
    fn drop(&mut self) {
        self.0.stop_request_pump();
    }
}

/// A filter whose VM is gone: skipped if fail-open, else the stream fails.
fn dead(s: &HttpStream) -> Option<End> {
    (!s.is_live() && !s.vm().spec().fail_open).then_some(End::Fail)
}

/// Reads what the callback (and its host calls) decided.
fn outcome(chain: &Chain, s: &HttpStream, result: Result<Action, VmError>, dir: Dir) -> Step {
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
        return Step::End(End::Reset);
    }
    if let Some(lr) = local {
        return Step::End(End::LocalReply(lr));
    }
    if dir == Dir::Response && chain.response_started.get() {
        if let Some(end) = chain.take_late() {
            return Step::End(end);
        }
    }
    match result {
        Ok(Action::Continue) => Step::Continue,
        // continue_stream during the callback that returned Pause: already resumed.
        Ok(Action::Pause) if resumed => Step::Continue,
        Ok(Action::Pause) => Step::Pause,
        Err(_) if s.vm().spec().fail_open => Step::Continue,
        Err(_) => Step::End(End::Fail),
    }
}

/// Waits until the paused filter resumes `dir`, sends a local reply, resets, or fails (or, in
/// the response phase, the request side ended the stream).
async fn wait_resume(chain: &Chain, s: &HttpStream, dir: Dir) -> Step {
    let signal = s.signal();
    let watch_late = dir == Dir::Response;
    loop {
        let notified = signal.notified();
        let late = chain.late_signal.notified();
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
            return Step::End(End::Reset);
        }
        if let Some(lr) = local {
            return Step::End(End::LocalReply(lr));
        }
        if watch_late && chain.response_started.get() {
            if let Some(end) = chain.take_late() {
                return Step::End(end);
            }
        }
        if resumed {
            return Step::Continue;
        }
        if !s.is_live() {
            return if s.vm().spec().fail_open {
                Step::Continue
            } else {
                Step::End(End::Fail)
            };
        }
        if watch_late {
            tokio::select! {
                () = notified => {}
                () = late => {}
            }
        } else {
            notified.await;
        }
    }
}

/// The headers as the filter of `s` left them, for the next one. After a Continue from the
/// headers callback the map is gone for the plugin (moved out); after a resume it stays
/// reachable where Envoy keeps it (copied).
fn take_headers(s: &HttpStream, dir: Dir, continued: bool) -> HeaderList {
    s.with(|st| {
        if continued {
            *dir.reach_headers(st) = false;
        }
        if *dir.reach_headers(st) {
            dir.headers(st).clone()
        } else {
            dir.headers(st).take()
        }
    })
    .flatten()
    .unwrap_or_default()
}

/// Passes one chunk through `order[range]`; each filter's buffered data is kept in its stream
/// state, so the callback sees the whole buffer so far.
async fn feed(
    chain: &Chain,
    dir: Dir,
    order: &[usize],
    range: Range<usize>,
    mut chunk: Vec<u8>,
    eos: bool,
) -> Fed {
    for pos in range {
        let s = &chain.streams[order[pos]];
        if !s.is_live() {
            match dead(s) {
                Some(end) => return Fed::End(pos, end),
                None => continue,
            }
        }
        let (len, over) = s
            .with(|st| {
                let buffering = dir.body(st).is_some();
                let buf = dir.body(st).get_or_insert_with(Vec::new);
                buf.extend_from_slice(&chunk);
                let len = buf.len();
                *dir.reach_body(st) = true;
                *dir.resume(st) = false;
                (len, buffering && len > chain.limit)
            })
            .unwrap_or((0, false));
        if over {
            // The filter was buffering and the new data passes the limit: Envoy answers
            // before calling the filter again (`Context::decodeData`, `addDecodedData`).
            return Fed::End(pos, dir.too_large());
        }
        let result = dir.call_body(s, len, eos);
        let mut step = outcome(chain, s, result, dir);
        if matches!(step, Step::Pause) {
            let held = s
                .with(|st| dir.body(st).as_ref().map_or(0, Vec::len))
                .unwrap_or(0);
            if held > chain.limit {
                return Fed::End(pos, dir.too_large());
            }
            if eos {
                step = wait_resume(chain, s, dir).await;
            }
        }
        match step {
            Step::Continue => {
                chunk = s
                    .with(|st| {
                        *dir.reach_body(st) = false;
                        dir.body(st).take()
                    })
                    .flatten()
                    .unwrap_or_default();
            }
            Step::Pause => return Fed::Held,
            Step::End(end) => return Fed::End(pos, end),
        }
    }
    Fed::Out(chunk)
}

/// Passes trailers through `order[range]`. A filter holding body data lets it go when its
/// trailers continue (before the trailers); a Pause waits for `continue_stream`. Returns the
/// body data released on the way (it passed the rest of the range) and the trailers.
async fn feed_trailers(
    chain: &Chain,
    dir: Dir,
    order: &[usize],
    range: Range<usize>,
    mut list: HeaderList,
) -> Result<(Vec<u8>, HeaderList), (usize, End)> {
    let mut released = Vec::new();
    let end = range.end;
    for pos in range {
        let s = &chain.streams[order[pos]];
        if !s.is_live() {
            match dead(s) {
                Some(e) => return Err((pos, e)),
                None => continue,
            }
        }
        let n = list.len();
        s.with(|st| {
            *dir.trailers(st) = Some(std::mem::take(&mut list));
            *dir.reach_trailers(st) = true;
            *dir.resume(st) = false;
        });
        let result = dir.call_trailers(s, n);
        let mut step = outcome(chain, s, result, dir);
        let continued = matches!(step, Step::Continue);
        if matches!(step, Step::Pause) {
            step = wait_resume(chain, s, dir).await;
        }
        match step {
            Step::Continue => {
                let (trailers, held) = s
                    .with(|st| {
                        if continued {
                            *dir.reach_trailers(st) = false;
                        }
                        let trailers = if *dir.reach_trailers(st) {
                            dir.trailers(st).clone()
                        } else {
                            dir.trailers(st).take()
                        };
                        *dir.reach_body(st) = false;
                        (trailers, dir.body(st).take())
                    })
                    .unwrap_or((None, None));
                list = trailers.unwrap_or_default();
                if let Some(held) = held {
                    match feed(chain, dir, order, pos + 1..end, held, false).await {
                        Fed::Out(out) => released.extend_from_slice(&out),
                        Fed::Held => {}
                        Fed::End(p, e) => return Err((p, e)),
                    }
                }
            }
            Step::Pause => {}
            Step::End(e) => return Err((pos, e)),
        }
    }
    Ok((released, list))
}

/// The headers of `order[h]` are held (StopIteration): the body keeps flowing through
/// `order[..=h]` until that filter lets it go (a Continue from its body or trailers callback,
/// or `continue_stream`). On return `carry` holds what passed `order[h]`.
async fn held(
    chain: &Chain,
    dir: Dir,
    order: &[usize],
    h: usize,
    carry: &mut Carry,
    src: &mut Source,
) -> Result<(), (usize, End)> {
    let s = &chain.streams[order[h]];
    // First what an earlier held filter let through.
    if carry.pending() {
        let c = std::mem::take(carry);
        if let Some(done) = pass_carry(chain, dir, order, c, h + 1).await? {
            *carry = done;
            return Ok(());
        }
    }
    loop {
        let unit = tokio::select! {
            step = wait_resume(chain, s, dir) => {
                return match step {
                    Step::End(e) => Err((h, e)),
                    Step::Continue | Step::Pause => {
                        let data = s
                            .with(|st| {
                                *dir.reach_body(st) = false;
                                dir.body(st).take()
                            })
                            .flatten()
                            .unwrap_or_default();
                        *carry = Carry { from: h + 1, data, eos: false, trailers: None };
                        Ok(())
                    }
                };
            }
            unit = src.next(), if !src.finished => unit,
        };
        // Fed outside the select: a resume arriving meanwhile waits for the next round.
        match unit {
            Unit::Data(data, eos) => match feed(chain, dir, order, 0..h + 1, data, eos).await {
                Fed::Out(data) => {
                    *carry = Carry {
                        from: h + 1,
                        data,
                        eos,
                        trailers: None,
                    };
                    return Ok(());
                }
                Fed::Held => {}
                Fed::End(pos, e) => return Err((pos, e)),
            },
            Unit::Trailers(list) => {
                let (data, list) = feed_trailers(chain, dir, order, 0..h + 1, list).await?;
                *carry = Carry {
                    from: h + 1,
                    data,
                    eos: true,
                    trailers: Some(list),
                };
                return Ok(());
            }
            Unit::Error(e) => {
                tracing::debug!("body failed while a filter held the headers: {e}");
                return Err((h, End::Reset));
            }
            Unit::Finished => {}
        }
    }
}

/// Feeds `c` through `order[c.from..to]`. `Some(carry)` if everything passed (what now has to
/// pass `order[to..]`), `None` if a filter holds it.
async fn pass_carry(
    chain: &Chain,
    dir: Dir,
    order: &[usize],
    c: Carry,
    to: usize,
) -> Result<Option<Carry>, (usize, End)> {
    let mut out = Carry {
        from: to,
        ..Carry::default()
    };
    if !c.data.is_empty() || (c.eos && c.trailers.is_none()) {
        let eos = c.eos && c.trailers.is_none();
        match feed(chain, dir, order, c.from..to, c.data, eos).await {
            Fed::Out(data) => {
                out.data = data;
                out.eos = eos;
            }
            Fed::Held => {
                if c.trailers.is_none() {
                    return Ok(None);
                }
            }
            Fed::End(pos, e) => return Err((pos, e)),
        }
    }
    if let Some(list) = c.trailers {
        let (data, list) = feed_trailers(chain, dir, order, c.from..to, list).await?;
        out.data.extend_from_slice(&data);
        out.eos = true;
        out.trailers = Some(list);
    }
    Ok(Some(out))
}

/// Runs the headers of `dir` through `order`, waiting out pauses (and, for a filter allowed
/// to StopIteration, feeding it the body meanwhile). Returns the headers as the last filter
/// left them, the body that already went through some filters, and whether any filter
/// changed the headers.
async fn headers_pass(
    chain: &Chain,
    dir: Dir,
    order: &[usize],
    mut list: HeaderList,
    eos: bool,
    src: &mut Source,
) -> Result<(HeaderList, Carry, bool), (usize, End)> {
    let mut carry = Carry::default();
    let mut changed = false;
    for (pos, &i) in order.iter().enumerate() {
        let s = &chain.streams[i];
        if !s.is_live() {
            match dead(s) {
                Some(e) => return Err((pos, e)),
                None => continue,
            }
        }
        if dir == Dir::Request {
            chain.reached.set(pos + 1);
        }
        let n = list.len();
        s.with(|st| {
            *dir.headers(st) = Some(std::mem::take(&mut list));
            *dir.changed(st) = false;
            *dir.resume(st) = false;
            *dir.reach_headers(st) = true;
        });
        let result = dir.call_headers(s, n, eos);
        match outcome(chain, s, result, dir) {
            Step::Continue => list = take_headers(s, dir, true),
            Step::Pause if s.vm().spec().allow_on_headers_stop_iteration => {
                held(chain, dir, order, pos, &mut carry, src).await?;
                list = take_headers(s, dir, false);
            }
            Step::Pause => match wait_resume(chain, s, dir).await {
                Step::End(e) => return Err((pos, e)),
                Step::Continue | Step::Pause => list = take_headers(s, dir, false),
            },
            Step::End(e) => return Err((pos, e)),
        }
        changed |= s.with(|st| *dir.changed(st)).unwrap_or(false);
    }
    Ok((list, carry, changed))
}

/// Where a pump sends what passed every filter.
enum Sink<'a> {
    /// Into a body channel (the upstream request, or the downstream response).
    Channel(&'a tokio::sync::mpsc::Sender<Result<Frame<Bytes>, BoxError>>),
    /// Into memory (a local reply's body).
    Collect(&'a mut Vec<u8>),
}

impl Sink<'_> {
    /// False when the receiver is gone.
    async fn data(&mut self, data: Vec<u8>) -> bool {
        if data.is_empty() {
            return true;
        }
        match self {
            Sink::Channel(tx) => tx.send(Ok(Frame::data(Bytes::from(data)))).await.is_ok(),
            Sink::Collect(out) => {
                out.extend_from_slice(&data);
                true
            }
        }
    }

    async fn trailers(&mut self, list: &HeaderList) {
        if let Sink::Channel(tx) = self {
            let _ = tx.send(Ok(Frame::trailers(header_map(list)))).await;
        }
    }
}

/// Feeds the rest of a body through all filters of `order` into `sink`: first `carry`, then
/// what `src` still has. The response side also stops when the client goes away (Envoy's DC
/// flag) or the request side ended the stream.
async fn pump(
    chain: &Chain,
    dir: Dir,
    order: &[usize],
    carry: Carry,
    mut src: Source,
    mut sink: Sink<'_>,
) -> Result<(), (usize, End)> {
    let n = order.len();
    if carry.pending() {
        let eos = carry.eos;
        if let Some(done) = pass_carry(chain, dir, order, carry, n).await? {
            let alive = sink.data(done.data).await;
            if let Some(list) = done.trailers {
                if dir == Dir::Response {
                    chain.log.borrow_mut().response_trailers = Some(list.clone());
                }
                sink.trailers(&list).await;
                return Ok(());
            }
            if eos || (!alive && dir == Dir::Response) {
                return Ok(());
            }
        }
    }
    loop {
        let unit = match &sink {
            Sink::Channel(tx) if dir == Dir::Response => {
                let tx = *tx;
                tokio::select! {
                    unit = src.next() => unit,
                    () = tx.closed() => {
                        // The client went away: Envoy's DC flag, visible in on_log.
                        mark_ended_early(chain, DOWNSTREAM_DISCONNECT, "downstream_remote_disconnect");
                        return Ok(());
                    }
                    () = chain.late_signal.notified() => match chain.take_late() {
                        Some(end) => return Err((0, end)),
                        None => continue,
                    },
                }
            }
            _ => src.next().await,
        };
        match unit {
            Unit::Finished => return Ok(()),
            Unit::Data(data, eos) => match feed(chain, dir, order, 0..n, data, eos).await {
                Fed::Out(out) => {
                    if !sink.data(out).await && dir == Dir::Response {
                        mark_ended_early(
                            chain,
                            DOWNSTREAM_DISCONNECT,
                            "downstream_remote_disconnect",
                        );
                        return Ok(());
                    }
                    if eos {
                        return Ok(());
                    }
                }
                Fed::Held => {}
                Fed::End(pos, e) => return Err((pos, e)),
            },
            Unit::Trailers(list) => {
                let (data, list) = feed_trailers(chain, dir, order, 0..n, list).await?;
                sink.data(data).await;
                if dir == Dir::Response {
                    chain.log.borrow_mut().response_trailers = Some(list.clone());
                }
                sink.trailers(&list).await;
                return Ok(());
            }
            Unit::Error(e) => {
                if dir == Dir::Response {
                    // The upstream cut the body after headers went out: Envoy's UC flag and
                    // details, visible to on_log (the filter counts it as an endpoint failure).
                    mark_ended_early(
                        chain,
                        UPSTREAM_CONNECTION_TERMINATION,
                        "upstream_reset_after_response_started{connection_termination}",
                    );
                }
                if let Sink::Channel(tx) = &sink {
                    let _ = tx.send(Err(e)).await;
                }
                return Ok(());
            }
        }
    }
}

fn trailers_list(map: &http::HeaderMap) -> HeaderList {
    map.iter()
        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
        .collect()
}

/// Envoy's `UC` response flag.
const UPSTREAM_CONNECTION_TERMINATION: u64 = 0x40;
/// Envoy's `DC` response flag.
const DOWNSTREAM_DISCONNECT: u64 = 0x4000;

/// Records on every stream that the response ended early, as Envoy's stream info does, so
/// `response.flags` / `response.code_details` read in `on_log` tell who cut it.
fn mark_ended_early(chain: &Chain, flag: u64, details: &str) {
    for s in &chain.streams {
        s.with(|st| {
            if let Some(r) = st.response.as_mut() {
                r.info.response_flags |= flag;
                r.info.code_details = details.to_string();
            }
        });
    }
}

// ===== the chain =====

/// [`run_filter_chain_with`] with the default options (1 MiB buffer limit).
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
    run_filter_chain_with(filters, ChainOptions::default(), downstream, req, forward).await
}

/// Runs the request through `filters` (in order) and the router `forward`, and the response
/// back through them (in reverse), with Envoy's semantics (module docs).
///
/// `forward` gets the request as the filters left it (headers possibly changed, body streamed
/// or buffered) and returns the upstream response or the router's local reply, with an
/// [`UpstreamInfo`] extension. The returned response's body is streamed through the filters'
/// `on_response_body` as it is polled; `on_log`/`on_done`/`on_delete` run when it ends or is
/// dropped. Must run inside the worker's `LocalSet` (the VMs are `Rc`).
pub async fn run_filter_chain_with<F, Fut>(
    filters: &[Rc<PluginVm>],
    options: ChainOptions,
    downstream: DownstreamInfo,
    req: http::Request<Body>,
    forward: F,
) -> http::Response<Body>
where
    F: FnOnce(http::Request<Body>) -> Fut,
    Fut: std::future::Future<Output = http::Response<Body>>,
{
    let (mut parts, body) = req.into_parts();
    let protocol = protocol_name(parts.version);
    let streams: Vec<HttpStream> = filters
        .iter()
        .map(|vm| vm.new_stream(downstream.clone()))
        .collect();
    let mut order: Vec<usize> = Vec::new();
    for (i, s) in streams.iter().enumerate() {
        s.with(|st| st.protocol = protocol);
        if s.is_live() {
            order.push(i);
        } else if !s.vm().spec().fail_open {
            return fail_response();
        }
    }
    let chain = Rc::new(Chain {
        streams,
        order,
        limit: options.buffer_limit,
        reached: Cell::new(0),
        response_started: Cell::new(false),
        late: RefCell::new(None),
        late_signal: tokio::sync::Notify::new(),
        request_pump: RefCell::new(None),
        log: RefCell::new(LogView::default()),
    });
    let order = chain.order.clone();

    // ----- request headers (and, for a filter holding them with StopIteration, body) -----
    let mut src = Source::new(body);
    let req_eos = src.finished;
    let head = headers_pass(
        &chain,
        Dir::Request,
        &order,
        request_to_list(&parts),
        req_eos,
        &mut src,
    )
    .await;
    let (list, carry, changed) = match head {
        Ok(head) => head,
        Err((pos, end)) => {
            chain.log.borrow_mut().request_headers = chain.streams[order[pos]]
                .with(|st| st.request_headers.clone())
                .flatten();
            return request_ended(&chain, end).await;
        }
    };
    if changed {
        apply_request_list(&mut parts, &list);
    }
    chain.log.borrow_mut().request_headers = Some(list);

    // ----- forward; the request body goes on through the filters in a task of its own -----
    let stop = StopPump(chain.clone());
    let request = if src.finished && !carry.pending() {
        http::Request::from_parts(parts, empty_body())
    } else {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let task_chain = chain.clone();
        let handle = tokio::task::spawn_local(async move {
            let order = task_chain.order.clone();
            let sink = Sink::Channel(&tx);
            if let Err((_, end)) = pump(&task_chain, Dir::Request, &order, carry, src, sink).await {
                task_chain.raise_late(end);
            }
        });
        *chain.request_pump.borrow_mut() = Some(handle);
        http::Request::from_parts(parts, ChannelBody { rx }.boxed_unsync())
    };
    let fwd = forward(request);
    tokio::pin!(fwd);
    let response = loop {
        let late = chain.late_signal.notified();
        if let Some(end) = chain.take_late() {
            drop(stop);
            return request_ended(&chain, end).await;
        }
        tokio::select! {
            r = &mut fwd => break r,
            () = late => {}
        }
    };
    chain.response_started.set(true);

    // ----- response headers -----
    let (mut rparts, rbody) = response.into_parts();
    let info = rparts
        .extensions
        .get::<UpstreamInfo>()
        .cloned()
        .unwrap_or_default();
    chain.set_response(&ResponseMeta {
        code: rparts.status.as_u16(),
        info: info.clone(),
    });
    let mut rsrc = Source::new(rbody);
    let reverse: Vec<usize> = order.iter().rev().copied().collect();
    let head = headers_pass(
        &chain,
        Dir::Response,
        &reverse,
        response_to_list(&rparts),
        rsrc.finished,
        &mut rsrc,
    )
    .await;
    let (list, carry, changed) = match head {
        Ok(head) => head,
        // Headers not yet downstream: Envoy sends a reply directly, bypassing the filters.
        Err((_, end)) => return direct_end(&chain, end, info),
    };
    if changed {
        apply_response_list(&mut rparts, &list);
    }
    chain.log.borrow_mut().response_headers = Some(list);
    chain.mark_headers_sent();
    if rsrc.finished && !carry.pending() {
        drop(stop);
        drop(chain); // on_log / on_done / on_delete (unless the request body task still runs)
        return http::Response::from_parts(rparts, empty_body());
    }
    let body = response_body(chain, reverse, carry, rsrc, stop);
    http::Response::from_parts(rparts, body)
}

/// The request side ended the stream before any response existed.
async fn request_ended(chain: &Rc<Chain>, end: End) -> http::Response<Body> {
    chain.stop_request_pump();
    match end {
        End::LocalReply(lr) => local_reply_via_chain(chain, lr).await,
        End::Reset => reset_response(),
        End::Fail => fail_response(),
    }
}

/// A reply sent straight to the client while response headers exist but have not gone out
/// (Envoy's `sendDirectLocalReply`), or a reset/503.
fn direct_end(chain: &Rc<Chain>, end: End, info: UpstreamInfo) -> http::Response<Body> {
    chain.stop_request_pump();
    match end {
        End::LocalReply(lr) => {
            let list = local_reply_list(&lr);
            chain.log.borrow_mut().response_headers = Some(list.clone());
            chain.mark_headers_sent();
            let info = UpstreamInfo {
                code_details: lr.details.clone(),
                ..info
            };
            build_response(&list, full_body(lr.body), info)
        }
        End::Reset => reset_response(),
        End::Fail => fail_response(),
    }
}

/// A local reply raised while the request was being decoded: runs through the response
/// callbacks of the filters that saw the request (in reverse), as Envoy's
/// `sendLocalReply` via the filter chain does.
async fn local_reply_via_chain(chain: &Rc<Chain>, lr: LocalReply) -> http::Response<Body> {
    chain.response_started.set(true);
    let info = local_reply_info(&lr);
    chain.set_response(&ResponseMeta {
        code: u16::try_from(lr.status).unwrap_or(500),
        info: info.clone(),
    });
    let upto: Vec<usize> = chain.order[..chain.reached.get()]
        .iter()
        .rev()
        .copied()
        .collect();
    let mut src = Source::new(full_body(lr.body.clone()));
    let eos = src.finished;
    let head = headers_pass(
        chain,
        Dir::Response,
        &upto,
        local_reply_list(&lr),
        eos,
        &mut src,
    )
    .await;
    let (list, carry, _) = match head {
        Ok(head) => head,
        Err((_, end)) => return direct_end(chain, end, info),
    };
    chain.log.borrow_mut().response_headers = Some(list.clone());
    chain.mark_headers_sent();
    let mut body = Vec::new();
    if let Err((_, end)) = pump(
        chain,
        Dir::Response,
        &upto,
        carry,
        src,
        Sink::Collect(&mut body),
    )
    .await
    {
        tracing::debug!(?end, "local reply ended while its body passed the filters");
        return reset_response();
    }
    build_response(&list, full_body(body), info)
}

/// The response body, passed through the filters' `on_response_body` by a task on the
/// worker's `LocalSet` (the VMs are `!Send`, the body must be `Send`). The task holds the
/// streams: when the body ends, or the client goes away, they end (`on_log`, `on_done`,
/// `on_delete`) and the request body stops flowing.
fn response_body(
    chain: Rc<Chain>,
    reverse: Vec<usize>,
    carry: Carry,
    src: Source,
    stop: StopPump,
) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
    tokio::task::spawn_local(async move {
        let result = pump(
            &chain,
            Dir::Response,
            &reverse,
            carry,
            src,
            Sink::Channel(&tx),
        )
        .await;
        if let Err((_, end)) = result {
            // The headers are out: whatever ended the stream, the client sees a reset.
            tracing::debug!(?end, "stream ended during the response body: reset");
            let _ = tx
                .send(Err(Box::new(ResetError(
                    "stream reset by a Wasm plugin during the response body",
                ))))
                .await;
        }
        drop(stop);
        drop(chain); // on_log / on_done / on_delete
    });
    ChannelBody { rx }.boxed_unsync()
}
