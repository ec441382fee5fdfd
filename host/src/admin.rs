//! The admin listener (Envoy's `admin.address`): `/stats` (Envoy's text format,
//! `name: value`), `/stats/prometheus`, `/ready` (200 `LIVE` once the workers listen, 503
//! before and while draining). Runs on its own thread so a busy worker never delays it.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use crate::error::StartError;
use crate::metrics::{MetricKind, MetricSample, Metrics};

/// The server's life stage, as `/ready` reports it.
#[derive(Clone)]
pub struct ServerState(Arc<AtomicU8>);

impl Default for ServerState {
    fn default() -> Self {
        Self(Arc::new(AtomicU8::new(PRE_INITIALIZING)))
    }
}

const PRE_INITIALIZING: u8 = 0;
const LIVE: u8 = 1;
const DRAINING: u8 = 2;

impl ServerState {
    /// Workers are listening.
    pub fn set_live(&self) {
        self.0.store(LIVE, Ordering::SeqCst);
    }
    /// Shutting down.
    pub fn set_draining(&self) {
        self.0.store(DRAINING, Ordering::SeqCst);
    }
    /// Envoy's name for the stage.
    pub fn name(&self) -> &'static str {
        match self.0.load(Ordering::SeqCst) {
            LIVE => "LIVE",
            DRAINING => "DRAINING",
            _ => "PRE_INITIALIZING",
        }
    }
}

/// A running admin listener; stops when dropped.
pub struct AdminHandle {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AdminHandle {
    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for AdminHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Binds `addr` and serves the admin endpoints on a new thread.
///
/// # Errors
/// [`StartError::Bind`] when the address cannot be bound.
pub fn spawn(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    state: ServerState,
) -> Result<AdminHandle, StartError> {
    let bind_err = |source| StartError::Bind {
        what: "admin".into(),
        addr,
        source,
    };
    let std_listener = std::net::TcpListener::bind(addr).map_err(bind_err)?;
    std_listener.set_nonblocking(true).map_err(bind_err)?;
    let bound = std_listener.local_addr().map_err(bind_err)?;
    let (stop, mut stop_rx) = watch::channel(false);
    let thread = std::thread::Builder::new()
        .name("admin".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("admin: cannot start runtime: {e}");
                    return;
                }
            };
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else { return };
                loop {
                    tokio::select! {
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let metrics = metrics.clone();
                            let state = state.clone();
                            tokio::spawn(async move {
                                let svc = service_fn(move |req| {
                                    let r = respond(&req, &metrics, &state);
                                    async move { Ok::<_, Infallible>(r) }
                                });
                                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                            });
                        }
                        _ = stop_rx.wait_for(|s| *s) => break,
                    }
                }
            });
        })
        .map_err(|e| StartError::Internal(format!("cannot start the admin thread: {e}")))?;
    tracing::info!("admin listening on {bound}");
    Ok(AdminHandle {
        addr: bound,
        stop,
        thread: Some(thread),
    })
}

fn respond(
    req: &Request<Incoming>,
    metrics: &Metrics,
    state: &ServerState,
) -> Response<Full<Bytes>> {
    let (status, body) = match req.uri().path() {
        "/ready" => {
            let name = state.name();
            let status = if name == "LIVE" {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (status, format!("{name}\n"))
        }
        "/stats" => (StatusCode::OK, stats_text(&metrics.snapshot(), state)),
        "/stats/prometheus" => (StatusCode::OK, stats_prometheus(&metrics.snapshot())),
        _ => (
            StatusCode::NOT_FOUND,
            "invalid path. admin commands are: /ready /stats /stats/prometheus\n".to_string(),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    resp
}

/// Envoy's `/stats` text format: one `name: value` line per stat, sorted by name.
/// Histograms show their count and sum.
pub fn stats_text(samples: &[MetricSample], state: &ServerState) -> String {
    let mut lines: Vec<String> = samples
        .iter()
        .map(|s| match s.kind {
            MetricKind::Histogram if s.value == 0 => format!("{}: No recorded values", s.name),
            MetricKind::Histogram => format!("{}: count={} sum={}", s.name, s.value, s.sum),
            _ => format!("{}: {}", s.name, s.value),
        })
        .collect();
    lines.push(format!("server.live: {}", u8::from(state.name() == "LIVE")));
    lines.sort();
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// Prometheus text exposition: names prefixed `envoy_`, characters outside `[a-zA-Z0-9_]`
/// replaced by `_`, as Envoy does.
pub fn stats_prometheus(samples: &[MetricSample]) -> String {
    let mut sorted: Vec<&MetricSample> = samples.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = String::new();
    for s in sorted {
        let name: String = format!("envoy_{}", s.name)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let _ = match s.kind {
            MetricKind::Counter => writeln!(out, "# TYPE {name} counter\n{name}{{}} {}", s.value),
            MetricKind::Gauge => writeln!(out, "# TYPE {name} gauge\n{name}{{}} {}", s.value),
            MetricKind::Histogram => writeln!(
                out,
                "# TYPE {name} histogram\n{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum{{}} {}\n{name}_count{{}} {}",
                s.value, s.sum, s.value
            ),
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str, kind: MetricKind, value: i64, sum: u64) -> MetricSample {
        MetricSample {
            name: name.into(),
            kind,
            value,
            sum,
        }
    }

    #[test]
    fn text_format_is_name_colon_value_sorted() {
        let s = vec![
            sample("b.total", MetricKind::Counter, 3, 0),
            sample("a.queue", MetricKind::Gauge, -1, 0),
            sample("c.h", MetricKind::Histogram, 2, 10),
        ];
        let text = stats_text(&s, &ServerState::default());
        assert_eq!(
            text,
            "a.queue: -1\nb.total: 3\nc.h: count=2 sum=10\nserver.live: 0\n"
        );
    }

    #[test]
    fn prometheus_names_are_sanitised_and_typed() {
        let text = stats_prometheus(&[sample("failover.total_failed", MetricKind::Counter, 2, 0)]);
        assert_eq!(
            text,
            "# TYPE envoy_failover_total_failed counter\nenvoy_failover_total_failed{} 2\n"
        );
    }
}
