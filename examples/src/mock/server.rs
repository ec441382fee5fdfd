//! The mock server: accept loop (which can stop listening for `refuse`), per-connection tasks
//! (which can be reset or cut), the schedule driver, and the request handler.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use super::body::MockBody;
use super::respond;
use super::stats::{InFlight, ModeSnapshot, Recorder};
use super::{FailMode, MockStats, RequestRecord, Schedule};

/// How long the mock waits after queueing its last bytes before cutting or resetting, so those
/// bytes reach the client first (a cut that loses them would be a different fault).
const FLUSH_GRACE: Duration = Duration::from_millis(50);

/// Options for [`spawn_with`].
#[derive(Debug, Clone)]
pub struct MockOptions {
    /// Name sent in `x-mock-name` and in the healthy body, so callers see who answered.
    pub name: String,
    /// How many requests the request log keeps (oldest dropped first); 0 disables the log.
    pub log_capacity: usize,
    /// Whether the request log keeps request headers (turn off for benchmarks).
    pub record_headers: bool,
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions {
            name: "mock".to_string(),
            log_capacity: 10_000,
            record_headers: true,
        }
    }
}

impl MockOptions {
    /// Default options with this name.
    pub fn named(name: impl Into<String>) -> Self {
        MockOptions {
            name: name.into(),
            ..MockOptions::default()
        }
    }
}

/// State shared by the handle and every task of one mock.
struct Shared {
    name: String,
    addr: SocketAddr,
    recorder: Arc<Recorder>,
    mode_tx: watch::Sender<ModeSnapshot>,
    /// Serialises mode changes and remembers the installed schedule.
    schedule: Mutex<(u64, Schedule)>,
    /// The last mode epoch the accept loop has acted on (so `set_mode(Refuse)` can wait until
    /// the listener is really closed).
    accept_epoch: watch::Sender<u64>,
    /// Bumped to ask every connection to close once idle (entering `refuse`).
    close_idle: watch::Sender<u64>,
    shutdown: watch::Sender<bool>,
}

impl Shared {
    /// Make `mode` the answering mode now.
    fn apply(&self, mode: FailMode) -> u64 {
        let mut sched = self.schedule.lock().unwrap_or_else(|p| p.into_inner());
        sched.0 += 1;
        let snap = ModeSnapshot {
            epoch: sched.0,
            down: mode.is_down(),
            label: Arc::from(mode.to_string()),
            mode: Arc::new(mode),
        };
        self.recorder.mode_applied(&snap, &sched.1.to_string());
        let refuse = matches!(*snap.mode, FailMode::Refuse);
        let epoch = snap.epoch;
        tracing::debug!(mock = %self.name, mode = %snap.label, "mode applied");
        self.mode_tx.send_replace(snap);
        if refuse {
            self.close_idle.send_modify(|g| *g += 1);
        }
        epoch
    }
}

/// Handle to a running mock upstream. Cheap to clone; the server stops when
/// [`MockUpstream::shutdown`] is called or the last clone is dropped.
#[derive(Clone)]
pub struct MockUpstream {
    inner: Arc<Handle>,
}

struct Handle {
    shared: Arc<Shared>,
    driver: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
        if let Some(d) = self.driver.lock().unwrap_or_else(|p| p.into_inner()).take() {
            d.abort();
        }
    }
}

/// Start a mock named "mock" on `addr` (port 0 picks a free port) with `schedule`, on the
/// caller's tokio runtime.
///
/// # Errors
/// When the address cannot be bound.
pub async fn spawn(addr: SocketAddr, schedule: Schedule) -> io::Result<MockUpstream> {
    spawn_with(addr, schedule, MockOptions::default()).await
}

/// Start a mock with explicit options.
///
/// # Errors
/// When the address cannot be bound.
pub async fn spawn_with(
    addr: SocketAddr,
    schedule: Schedule,
    opts: MockOptions,
) -> io::Result<MockUpstream> {
    // Bind first even when starting in `refuse`, so the port is ours and known.
    let listener = bind(addr)?;
    let addr = listener.local_addr()?;
    let recorder = Arc::new(Recorder::new(
        &opts.name,
        opts.log_capacity,
        opts.record_headers,
    ));
    let initial = ModeSnapshot {
        epoch: 0,
        down: false,
        label: Arc::from("healthy"),
        mode: Arc::new(FailMode::Healthy),
    };
    let shared = Arc::new(Shared {
        name: opts.name,
        addr,
        recorder,
        mode_tx: watch::channel(initial).0,
        schedule: Mutex::new((0, schedule.clone())),
        accept_epoch: watch::channel(0).0,
        close_idle: watch::channel(0).0,
        shutdown: watch::channel(false).0,
    });
    tokio::spawn(accept_loop(Arc::clone(&shared), Some(listener)));
    let mock = MockUpstream {
        inner: Arc::new(Handle {
            shared,
            driver: Mutex::new(None),
        }),
    };
    mock.set_schedule(schedule).await;
    tracing::info!(mock = %mock.name(), %addr, "mock upstream listening");
    Ok(mock)
}

impl MockUpstream {
    /// The address the mock listens on (also while refusing: it binds it again afterwards).
    pub fn addr(&self) -> SocketAddr {
        self.inner.shared.addr
    }

    /// The mock's name.
    pub fn name(&self) -> &str {
        &self.inner.shared.name
    }

    /// Install a fixed mode. Returns once the mode answers new requests (for `refuse`: once
    /// the listener is closed; for leaving `refuse`: once it listens again).
    pub async fn set_mode(&self, mode: FailMode) {
        self.set_schedule(Schedule::Fixed(mode)).await;
    }

    /// Install a schedule; its clock starts now. Returns once its first mode is in force.
    pub async fn set_schedule(&self, schedule: Schedule) {
        let shared = &self.inner.shared;
        let epoch = {
            let mut d = self.inner.driver.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(old) = d.take() {
                old.abort();
            }
            shared.schedule.lock().unwrap_or_else(|p| p.into_inner()).1 = schedule.clone();
            let epoch = shared.apply(schedule.initial_mode());
            if !matches!(schedule, Schedule::Fixed(_)) {
                *d = Some(tokio::spawn(drive(Arc::clone(shared), schedule)));
            }
            epoch
        };
        self.wait_accept_epoch(epoch).await;
    }

    async fn wait_accept_epoch(&self, epoch: u64) {
        let mut rx = self.inner.shared.accept_epoch.subscribe();
        // Errors only if the accept loop is gone (shut down): nothing left to wait for.
        let _ = rx.wait_for(|e| *e >= epoch).await;
    }

    /// The mode answering right now.
    pub fn mode(&self) -> FailMode {
        (*self.inner.shared.mode_tx.borrow().mode).clone()
    }

    /// The installed schedule.
    pub fn schedule(&self) -> Schedule {
        self.inner
            .shared
            .schedule
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> MockStats {
        self.inner.shared.recorder.snapshot()
    }

    /// The request log (bounded by `MockOptions::log_capacity`), oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.inner.shared.recorder.requests(None)
    }

    /// Requests whose headers arrived at or after `since`.
    pub fn requests_since(&self, since: Instant) -> Vec<RequestRecord> {
        self.inner.shared.recorder.requests(Some(since))
    }

    /// When the first request at or after `since` arrived (optionally only on `path`).
    pub fn first_request_after(&self, since: Instant, path: Option<&str>) -> Option<Instant> {
        self.requests_since(since)
            .into_iter()
            .find(|r| path.is_none_or(|p| r.path == p))
            .map(|r| r.at)
    }

    /// Zero the counters and clear the log (the schedule keeps running).
    pub fn reset_stats(&self) {
        self.inner.shared.recorder.reset();
    }

    /// Poll the stats until `pred` holds or `timeout` passes; returns the last snapshot either
    /// way (`Ok` if the predicate held). Lets tests wait for traffic without fixed sleeps.
    ///
    /// # Errors
    /// `Err(last snapshot)` when `timeout` passed first.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&MockStats) -> bool,
    ) -> Result<MockStats, MockStats> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let s = self.stats();
            if pred(&s) {
                return Ok(s);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(s);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stop listening and close every connection. Idempotent.
    pub fn shutdown(&self) {
        self.inner.shared.shutdown.send_replace(true);
        if let Some(d) = self
            .inner
            .driver
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            d.abort();
        }
    }
}

// ===== schedule driver =====

async fn drive(shared: Arc<Shared>, schedule: Schedule) {
    let start = tokio::time::Instant::now();
    match schedule {
        Schedule::Fixed(_) => {}
        Schedule::Flap {
            healthy_for,
            failing_for,
            failing,
        } => {
            // Sleep to absolute deadlines so the periods do not drift.
            let mut at = start;
            loop {
                at += healthy_for;
                tokio::time::sleep_until(at).await;
                shared.apply(failing.clone());
                at += failing_for;
                tokio::time::sleep_until(at).await;
                shared.apply(FailMode::Healthy);
            }
        }
        Schedule::Steps(steps) => {
            let mut at = start;
            for (i, (d, _)) in steps.iter().enumerate() {
                let Some((_, next)) = steps.get(i + 1) else {
                    break;
                };
                at += *d;
                tokio::time::sleep_until(at).await;
                shared.apply(next.clone());
            }
        }
    }
}

// ===== listening =====

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    sock.set_reuse_address(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    TcpListener::from_std(sock.into())
}

async fn accept_loop(shared: Arc<Shared>, mut listener: Option<TcpListener>) {
    let mut mode_rx = shared.mode_tx.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        if *shutdown.borrow_and_update() {
            break;
        }
        let (epoch, refuse) = {
            let m = mode_rx.borrow_and_update();
            (m.epoch, matches!(*m.mode, FailMode::Refuse))
        };
        let mut retry_bind = false;
        if refuse {
            listener = None;
        } else if listener.is_none() {
            match bind(shared.addr) {
                Ok(l) => listener = Some(l),
                Err(e) => {
                    tracing::warn!(mock = %shared.name, addr = %shared.addr, error = %e,
                        "cannot listen again; retrying");
                    retry_bind = true;
                }
            }
        }
        if !retry_bind {
            shared.accept_epoch.send_replace(epoch);
        }
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = mode_rx.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(20)), if retry_bind => {}
            res = accept(&listener), if listener.is_some() => match res {
                Ok((stream, _peer)) => {
                    shared.recorder.connection_accepted();
                    tokio::spawn(serve_connection(Arc::clone(&shared), stream));
                }
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(mock = %shared.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
    // Let waiters of set_mode go on even though we stopped.
    shared.accept_epoch.send_replace(u64::MAX);
}

async fn accept(listener: &Option<TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

// ===== one connection =====

/// Per-connection controls the handler uses to reset or cut its own connection.
struct ConnCtl {
    /// A dup of the socket, used only to set SO_LINGER; dropped when the connection ends.
    dup: Mutex<Option<std::net::TcpStream>>,
    kill: Notify,
}

impl ConnCtl {
    /// Close the connection with RST.
    fn reset(&self) {
        if let Some(dup) = self.dup.lock().unwrap_or_else(|p| p.into_inner()).take() {
            if let Err(e) = socket2::SockRef::from(&dup).set_linger(Some(Duration::ZERO)) {
                tracing::warn!(error = %e, "cannot set SO_LINGER 0");
            }
        }
        self.kill.notify_one();
    }

    /// Close the connection abruptly (FIN), whatever is in progress.
    fn cut(&self) {
        self.dup.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.kill.notify_one();
    }
}

async fn serve_connection(shared: Arc<Shared>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let dup = match stream.into_std().and_then(|s| {
        let d = s.try_clone()?;
        Ok((s, d))
    }) {
        Ok((s, d)) => match TcpStream::from_std(s) {
            Ok(s) => (s, d),
            Err(e) => {
                tracing::warn!(error = %e, "cannot register connection");
                return;
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot duplicate connection socket");
            return;
        }
    };
    let (stream, dup) = dup;
    let ctl = Arc::new(ConnCtl {
        dup: Mutex::new(Some(dup)),
        kill: Notify::new(),
    });
    let svc_shared = Arc::clone(&shared);
    let svc_ctl = Arc::clone(&ctl);
    let service = service_fn(move |req| handle(Arc::clone(&svc_shared), Arc::clone(&svc_ctl), req));
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    let mut conn = Box::pin(conn);
    let mut close_idle = shared.close_idle.subscribe();
    close_idle.borrow_and_update();
    let mut shutdown = shared.shutdown.subscribe();
    let mut graceful = false;
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "connection ended with error");
                }
                break;
            }
            _ = ctl.kill.notified() => break,
            r = close_idle.changed(), if !graceful => {
                if r.is_ok() {
                    graceful = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    // Drop hyper's side first, then our dup, so the socket really closes now (RST if a reset
    // set linger 0 on it).
    drop(conn);
    ctl.dup.lock().unwrap_or_else(|p| p.into_inner()).take();
}

// ===== the handler =====

async fn handle(
    shared: Arc<Shared>,
    ctl: Arc<ConnCtl>,
    req: Request<Incoming>,
) -> Result<Response<MockBody>, Infallible> {
    let at = Instant::now();
    let snap = shared.mode_tx.borrow().clone();
    let guard = shared.recorder.enter();
    let (parts, body) = req.into_parts();
    // Read the whole request first in every mode ("read the request, then fail").
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            tracing::debug!(error = %e, "request body failed");
            Bytes::new()
        }
    };
    shared
        .recorder
        .request(at, &parts, body.len() as u64, &snap);
    let name = shared.name.as_str();
    let healthy_json = || {
        respond::healthy_json(
            name,
            parts.method.as_str(),
            parts.uri.path(),
            body.len() as u64,
        )
    };
    let resp = match &*snap.mode {
        FailMode::Healthy => {
            if respond::wants_stream(&body) {
                let frames = respond::healthy_sse(name);
                stream_frames(&shared, guard, frames, None, None)
            } else {
                json_response(&shared, StatusCode::OK, healthy_json(), guard)
            }
        }
        FailMode::Delay { delay } => {
            tokio::time::sleep(*delay).await;
            json_response(&shared, StatusCode::OK, healthy_json(), guard)
        }
        FailMode::Slow { bytes_per_sec } => {
            slow_response(&shared, guard, healthy_json(), *bytes_per_sec)
        }
        FailMode::Status {
            code,
            headers,
            body: text,
        } => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let text = if text.is_empty() {
                respond::status_body(*code, name)
            } else {
                text.clone()
            };
            let mut resp = json_response(&shared, status, text, guard);
            for (k, v) in headers {
                if let (Ok(k), Ok(v)) = (
                    HeaderName::from_bytes(k.as_bytes()),
                    HeaderValue::from_str(v),
                ) {
                    resp.headers_mut().append(k, v);
                }
            }
            resp
        }
        FailMode::Refuse => {
            // A request on a connection accepted before `refuse`: close it unanswered.
            ctl.cut();
            return never(guard).await;
        }
        FailMode::ResetBeforeHeaders => {
            ctl.reset();
            return never(guard).await;
        }
        FailMode::Hang => return never(guard).await,
        FailMode::ResetMidBody => {
            let text = Bytes::from(healthy_json());
            let half = text.slice(..text.len() / 2);
            let (tx, b) = MockBody::channel(Some(guard));
            let ctl = Arc::clone(&ctl);
            tokio::spawn(async move {
                let _ = tx.send(half).await;
                tokio::time::sleep(FLUSH_GRACE).await;
                ctl.reset();
                // Keep the body open until the connection is gone so it never ends cleanly.
                tx.closed().await;
            });
            base_response(&shared, StatusCode::OK, "application/json", b)
        }
        FailMode::SseCut { events } => {
            let frames = sse_cycle(name, *events);
            stream_frames(&shared, guard, frames, None, Some(ctl))
        }
        FailMode::SseError => {
            let mut frames = respond::healthy_sse(name);
            frames.truncate(3);
            stream_frames(
                &shared,
                guard,
                frames,
                Some(respond::sse_error_frame()),
                None,
            )
        }
        FailMode::SseErrorFirst => stream_frames(
            &shared,
            guard,
            Vec::new(),
            Some(respond::sse_error_frame()),
            None,
        ),
        FailMode::SseSlow { events, gap } => {
            let frames = sse_cycle(name, *events);
            paced_frames(&shared, guard, frames, *gap)
        }
    };
    shared.recorder.answered(resp.status().as_u16());
    Ok(resp)
}

/// Stream SSE frames `gap` apart, then end cleanly.
fn paced_frames(
    shared: &Shared,
    guard: InFlight,
    frames: Vec<String>,
    gap: Duration,
) -> Response<MockBody> {
    let (tx, body) = MockBody::channel(Some(guard));
    tokio::spawn(async move {
        for (i, f) in frames.into_iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(gap).await;
            }
            if tx.send(Bytes::from(f)).await.is_err() {
                return;
            }
        }
    });
    base_response(shared, StatusCode::OK, "text/event-stream", body)
}

async fn never(guard: InFlight) -> Result<Response<MockBody>, Infallible> {
    // Pending until hyper drops this future (client gone or connection killed); the guard keeps
    // the request in flight until then.
    let _guard = guard;
    std::future::pending().await
}

/// `n` SSE frames: the start of a healthy stream, then as many deltas as needed.
fn sse_cycle(name: &str, n: usize) -> Vec<String> {
    let mut frames: Vec<String> = respond::healthy_sse(name).into_iter().take(2).collect();
    let mut i = 0;
    while frames.len() < n {
        frames.push(respond::delta(&format!("part{i} ")));
        i += 1;
    }
    frames.truncate(n);
    frames
}

fn base_response(
    shared: &Shared,
    status: StatusCode,
    content_type: &'static str,
    body: MockBody,
) -> Response<MockBody> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    if let Ok(v) = HeaderValue::from_str(&shared.name) {
        h.insert(HeaderName::from_static("x-mock-name"), v);
    }
    resp
}

fn json_response(
    shared: &Shared,
    status: StatusCode,
    text: String,
    guard: InFlight,
) -> Response<MockBody> {
    base_response(
        shared,
        status,
        "application/json",
        MockBody::full(text, Some(guard)),
    )
}

fn slow_response(
    shared: &Shared,
    guard: InFlight,
    text: String,
    bytes_per_sec: u64,
) -> Response<MockBody> {
    let bytes_per_sec = bytes_per_sec.max(1);
    let chunk = usize::try_from((bytes_per_sec / 20).max(1)).unwrap_or(1);
    let pause = Duration::from_secs_f64(chunk as f64 / bytes_per_sec as f64);
    let (tx, body) = MockBody::channel(Some(guard));
    let data = Bytes::from(text);
    tokio::spawn(async move {
        let mut off = 0;
        while off < data.len() {
            let end = (off + chunk).min(data.len());
            if tx.send(data.slice(off..end)).await.is_err() {
                return;
            }
            off = end;
            if off < data.len() {
                tokio::time::sleep(pause).await;
            }
        }
    });
    base_response(shared, StatusCode::OK, "application/json", body)
}

/// Stream SSE frames, then optionally a final frame, then either end cleanly or (with `cut`)
/// cut the connection without ending the chunked body.
fn stream_frames(
    shared: &Shared,
    guard: InFlight,
    frames: Vec<String>,
    last: Option<String>,
    cut: Option<Arc<ConnCtl>>,
) -> Response<MockBody> {
    let (tx, body) = MockBody::channel(Some(guard));
    tokio::spawn(async move {
        for f in frames.into_iter().chain(last) {
            if tx.send(Bytes::from(f)).await.is_err() {
                return;
            }
        }
        if let Some(ctl) = cut {
            tokio::time::sleep(FLUSH_GRACE).await;
            ctl.cut();
            // Keep the body open until the connection is gone so it never ends cleanly.
            tx.closed().await;
        }
    });
    base_response(shared, StatusCode::OK, "text/event-stream", body)
}
