//! A tiny HTTP control API for a mock, on its own port, so scripts and other processes can
//! read its counters and change its mode:
//!
//! | request | answer |
//! |---|---|
//! | `GET /stats` | [`MockStats`](super::MockStats) as JSON |
//! | `GET /requests[?since_ms=N]` | the request log (records with `at_ms >= N`) as JSON |
//! | `GET /mode` | `{"mode": "...", "schedule": "..."}` |
//! | `POST /mode` (body: mode or schedule syntax) | 200 `{"schedule": "..."}`, or 400 `{"error": "..."}` |
//! | `POST /reset` | zero the counters, 200 |

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::{MockUpstream, Schedule};

/// A running control server; stops on [`ControlServer::shutdown`] or when dropped.
pub struct ControlServer {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
}

impl ControlServer {
    /// Where the control API listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop listening and close control connections.
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Serve the control API for `mock` on `addr` (port 0 picks a free port).
///
/// # Errors
/// When the address cannot be bound.
pub async fn spawn_control(addr: SocketAddr, mock: MockUpstream) -> io::Result<ControlServer> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = watch::channel(false);
    let mut stop = rx.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                res = listener.accept() => {
                    let Ok((stream, _)) = res else { continue };
                    let mock = mock.clone();
                    let mut rx = rx.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |req| route(mock.clone(), req));
                        let conn = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc);
                        tokio::select! {
                            _ = conn => {}
                            _ = rx.wait_for(|s| *s) => {}
                        }
                    });
                }
            }
        }
    });
    Ok(ControlServer { addr, shutdown: tx })
}

fn reply(status: StatusCode, v: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn query_u64(query: Option<&str>, key: &str) -> Option<u64> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
}

async fn route(
    mock: MockUpstream,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let resp = match (&parts.method, parts.uri.path()) {
        (&Method::GET, "/stats") => match serde_json::to_value(mock.stats()) {
            Ok(v) => reply(StatusCode::OK, &v),
            Err(e) => reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({"error": e.to_string()}),
            ),
        },
        (&Method::GET, "/requests") => {
            let since = query_u64(parts.uri.query(), "since_ms").unwrap_or(0);
            let recs: Vec<_> = mock
                .requests()
                .into_iter()
                .filter(|r| r.at_ms >= since)
                .collect();
            match serde_json::to_value(recs) {
                Ok(v) => reply(StatusCode::OK, &v),
                Err(e) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &json!({"error": e.to_string()}),
                ),
            }
        }
        (&Method::GET, "/mode") => reply(
            StatusCode::OK,
            &json!({"mode": mock.mode().to_string(), "schedule": mock.schedule().to_string()}),
        ),
        (&Method::POST, "/mode") => {
            let text = match body.collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => {
                    return Ok(reply(
                        StatusCode::BAD_REQUEST,
                        &json!({"error": e.to_string()}),
                    ))
                }
            };
            match std::str::from_utf8(&text)
                .map_err(|e| e.to_string())
                .and_then(|t| t.parse::<Schedule>().map_err(|e| e.to_string()))
            {
                Ok(s) => {
                    mock.set_schedule(s.clone()).await;
                    reply(StatusCode::OK, &json!({"schedule": s.to_string()}))
                }
                Err(e) => reply(StatusCode::BAD_REQUEST, &json!({"error": e})),
            }
        }
        (&Method::POST, "/reset") => {
            mock.reset_stats();
            reply(StatusCode::OK, &json!({"reset": true}))
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            &json!({"error": "not found; try GET /stats, GET /requests, GET|POST /mode, POST /reset"}),
        ),
    };
    Ok(resp)
}
