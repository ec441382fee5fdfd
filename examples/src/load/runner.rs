//! The workers: one keep-alive HTTP/1.1 connection each (`hyper::client::conn::http1`), one
//! request at a time, reconnecting after any failure.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::config::{LoadConfig, LoadError, Stop};
use super::report::{ErrorKind, LoadReport, Outcome};

/// Pause after a failed connect, so a refusing target does not turn the load generator into a
/// busy loop on a shared machine.
const CONNECT_BACKOFF: Duration = Duration::from_millis(5);

struct RunShared {
    cfg: LoadConfig,
    workers: Vec<Mutex<LoadReport>>,
    stop: watch::Sender<bool>,
    claimed: AtomicU64,
    started: Instant,
    ended: Mutex<Option<Instant>>,
}

/// A load run in progress. Dropping it stops the run.
pub struct LoadRun {
    shared: Arc<RunShared>,
    tasks: Vec<JoinHandle<()>>,
}

/// Start a load run on the current tokio runtime.
///
/// # Errors
/// When the configuration is invalid.
pub fn start(cfg: LoadConfig) -> Result<LoadRun, LoadError> {
    cfg.validate()?;
    let n = cfg.concurrency;
    let shared = Arc::new(RunShared {
        workers: (0..n).map(|_| Mutex::new(LoadReport::default())).collect(),
        cfg,
        stop: watch::channel(false).0,
        claimed: AtomicU64::new(0),
        started: Instant::now(),
        ended: Mutex::new(None),
    });
    let mut tasks: Vec<JoinHandle<()>> = (0..n)
        .map(|i| tokio::spawn(worker(Arc::clone(&shared), i)))
        .collect();
    if let Stop::After(d) = shared.cfg.stop {
        let s = Arc::clone(&shared);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(d).await;
            s.stop.send_replace(true);
        }));
    }
    Ok(LoadRun { shared, tasks })
}

/// Run to completion and return the report.
///
/// # Errors
/// When the configuration is invalid.
pub async fn run(cfg: LoadConfig) -> Result<LoadReport, LoadError> {
    Ok(start(cfg)?.wait().await)
}

impl LoadRun {
    /// The totals so far.
    pub fn snapshot(&self) -> LoadReport {
        let mut r = LoadReport::default();
        for w in &self.shared.workers {
            r.merge(&w.lock().unwrap_or_else(|p| p.into_inner()));
        }
        let end = self
            .shared
            .ended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or_else(Instant::now);
        r.finish(end.saturating_duration_since(self.shared.started));
        r
    }

    /// Ask every worker to stop now (requests in flight are abandoned).
    pub fn stop(&self) {
        self.shared.stop.send_replace(true);
    }

    /// Whether every worker has finished.
    pub fn is_finished(&self) -> bool {
        self.tasks
            .iter()
            .take(self.shared.cfg.concurrency)
            .all(|t| t.is_finished())
    }

    /// Wait until the run ends (by its [`Stop`] condition or [`LoadRun::stop`]) and return the
    /// final report.
    pub async fn wait(mut self) -> LoadReport {
        let workers: Vec<_> = self.tasks.drain(..self.shared.cfg.concurrency).collect();
        for t in workers {
            if let Err(e) = t.await {
                tracing::warn!(error = %e, "load worker ended abnormally");
            }
        }
        *self.shared.ended.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        self.shared.stop.send_replace(true);
        self.snapshot()
    }
}

impl Drop for LoadRun {
    fn drop(&mut self) {
        self.shared.stop.send_replace(true);
    }
}

async fn worker(shared: Arc<RunShared>, index: usize) {
    let cfg = &shared.cfg;
    let mut stop = shared.stop.subscribe();
    let interval = cfg
        .rate
        .map(|r| Duration::from_secs_f64(cfg.concurrency as f64 / r));
    // Spread the workers' first requests over one interval.
    let mut next = tokio::time::Instant::now()
        + interval.map_or(Duration::ZERO, |i| {
            i.mul_f64(index as f64 / cfg.concurrency as f64)
        });
    let mut conn: Option<SendRequest<Full<Bytes>>> = None;
    let authority = cfg.authority();
    let path = cfg
        .url
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let host = HeaderValue::from_str(cfg.url.authority().map_or("localhost", |a| a.as_str()))
        .unwrap_or_else(|_| HeaderValue::from_static("localhost"));
    let report = &shared.workers[index];

    loop {
        if *stop.borrow() {
            break;
        }
        if let Some(i) = interval {
            let now = tokio::time::Instant::now();
            if next + i < now {
                next = now; // too far behind: do not burst to catch up
            }
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            next += i;
        }
        if let Stop::Requests(n) = cfg.stop {
            if shared.claimed.fetch_add(1, Ordering::SeqCst) >= n {
                break;
            }
        }
        let one = one_request(cfg, &mut conn, &authority, &path, &host, report);
        let outcome = tokio::select! {
            o = one => o,
            _ = stop.wait_for(|s| *s) => {
                report.lock().unwrap_or_else(|p| p.into_inner()).abandoned += 1;
                break;
            }
        };
        if outcome.error == Some(ErrorKind::Connect) {
            tokio::time::sleep(CONNECT_BACKOFF).await;
        }
        report
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(&outcome);
        if let Some(obs) = &cfg.observer {
            obs(&outcome);
        }
    }
}

fn failed(kind: ErrorKind, start: Instant) -> Outcome {
    Outcome {
        status: None,
        name: None,
        error: Some(kind),
        latency: start.elapsed(),
        headers: http::HeaderMap::new(),
        body: Bytes::new(),
    }
}

async fn connect(
    authority: &str,
    report: &Mutex<LoadReport>,
) -> Result<SendRequest<Full<Bytes>>, ErrorKind> {
    let stream = TcpStream::connect(authority)
        .await
        .map_err(|_| ErrorKind::Connect)?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| ErrorKind::Connect)?;
    tokio::spawn(async move {
        // Ends when the connection closes; errors show up on the request side.
        let _ = conn.await;
    });
    report.lock().unwrap_or_else(|p| p.into_inner()).connections += 1;
    Ok(sender)
}

async fn one_request(
    cfg: &LoadConfig,
    conn: &mut Option<SendRequest<Full<Bytes>>>,
    authority: &str,
    path: &str,
    host: &HeaderValue,
    report: &Mutex<LoadReport>,
) -> Outcome {
    let start = Instant::now();
    match tokio::time::timeout(
        cfg.timeout,
        exchange(cfg, conn, authority, path, host, report, start),
    )
    .await
    {
        Ok(o) => o,
        Err(_) => {
            *conn = None;
            failed(ErrorKind::Timeout, start)
        }
    }
}

async fn exchange(
    cfg: &LoadConfig,
    conn: &mut Option<SendRequest<Full<Bytes>>>,
    authority: &str,
    path: &str,
    host: &HeaderValue,
    report: &Mutex<LoadReport>,
    start: Instant,
) -> Outcome {
    // A pooled connection the server closed while idle is not a failure: reconnect once.
    let mut pooled = conn.take();
    if let Some(s) = pooled.as_mut() {
        if s.ready().await.is_err() {
            pooled = None;
        }
    }
    let mut sender = match pooled {
        Some(s) => s,
        None => match connect(authority, report).await {
            Ok(mut s) => {
                if s.ready().await.is_err() {
                    return failed(ErrorKind::NoResponse, start);
                }
                s
            }
            Err(k) => return failed(k, start),
        },
    };
    let mut req = Request::new(Full::new(cfg.body.clone()));
    *req.method_mut() = cfg.method.clone();
    *req.uri_mut() = match path.parse() {
        Ok(u) => u,
        Err(_) => return failed(ErrorKind::NoResponse, start),
    };
    let h = req.headers_mut();
    h.insert(http::header::HOST, host.clone());
    for (k, v) in &cfg.headers {
        h.append(k.clone(), v.clone());
    }
    let resp = match sender.send_request(req).await {
        Ok(r) => r,
        Err(_) => return failed(ErrorKind::NoResponse, start),
    };
    let (parts, body) = resp.into_parts();
    let status = parts.status.as_u16();
    let name = parts
        .headers
        .get(&cfg.name_header)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (body, error) = match body.collect().await {
        Ok(b) => {
            let b = b.to_bytes();
            let e = classify_body(&parts.headers, status, &b);
            (b, e)
        }
        Err(_) => (Bytes::new(), Some(ErrorKind::Body)),
    };
    if error != Some(ErrorKind::Body) {
        *conn = Some(sender);
    }
    Outcome {
        status: Some(status),
        name,
        error,
        latency: start.elapsed(),
        headers: parts.headers,
        body,
    }
}

/// Spot the failures that come with a 2xx: an SSE `event: error` frame, or a JSON error object.
fn classify_body(headers: &http::HeaderMap, status: u16, body: &[u8]) -> Option<ErrorKind> {
    let ct = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.starts_with("text/event-stream") {
        let has_error = body
            .split(|b| *b == b'\n')
            .any(|line| line.strip_suffix(b"\r").unwrap_or(line) == b"event: error");
        return has_error.then_some(ErrorKind::ErrorEvent);
    }
    if (200..300).contains(&status) && ct.starts_with("application/json") {
        let is_error = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(|t| t == "error"))
            .unwrap_or(false);
        return is_error.then_some(ErrorKind::ErrorBody);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct(v: &'static str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(v));
        h
    }

    #[test]
    fn body_classification() {
        let sse = ct("text/event-stream");
        assert_eq!(
            classify_body(
                &sse,
                200,
                b"event: a\ndata: {}\n\nevent: error\ndata: {}\n\n"
            ),
            Some(ErrorKind::ErrorEvent)
        );
        assert_eq!(
            classify_body(&sse, 200, b"event: message_stop\ndata: {}\n\n"),
            None
        );
        let json = ct("application/json");
        assert_eq!(
            classify_body(&json, 200, br#"{"type":"error"}"#),
            Some(ErrorKind::ErrorBody)
        );
        assert_eq!(classify_body(&json, 200, br#"{"type":"message"}"#), None);
        assert_eq!(classify_body(&json, 503, br#"{"type":"error"}"#), None);
    }
}
