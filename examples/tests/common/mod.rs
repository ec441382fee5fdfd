//! A plain hyper client for the tests: one fresh connection per request, every step bounded.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Upper bound for any single step of a test.
pub const STEP: Duration = Duration::from_secs(10);

/// Where a request failed, as a client sees it.
#[derive(Debug)]
pub enum Failure {
    Connect(std::io::Error),
    BeforeHeaders(hyper::Error),
    Timeout,
}

pub fn local() -> SocketAddr {
    "127.0.0.1:0".parse().expect("valid address")
}

/// Send one request on a new connection; returns the response with its body still streaming.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    timeout: Duration,
) -> Result<Response<Incoming>, Failure> {
    let fut = async {
        let stream = TcpStream::connect(addr).await.map_err(Failure::Connect)?;
        let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(Failure::BeforeHeaders)?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("valid request");
        tx.send_request(req).await.map_err(Failure::BeforeHeaders)
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(Failure::Timeout),
    }
}

/// GET `path` and read the whole body (bounded by STEP).
pub async fn get(addr: SocketAddr, path: &str) -> Result<(http::response::Parts, Bytes), String> {
    let resp = send(addr, "GET", path, &[], "", STEP)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let (parts, body) = resp.into_parts();
    let bytes = tokio::time::timeout(STEP, body.collect())
        .await
        .map_err(|_| "body timeout".to_string())?
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((parts, bytes))
}

/// Read body frames until the end or an error; returns the data received and the error, if any.
pub async fn read_frames(mut body: Incoming) -> (Vec<Bytes>, Option<hyper::Error>) {
    let mut frames = Vec::new();
    loop {
        match tokio::time::timeout(STEP, body.frame()).await {
            Err(_) => panic!("body did not end or fail within {STEP:?}"),
            Ok(None) => return (frames, None),
            Ok(Some(Err(e))) => return (frames, Some(e)),
            Ok(Some(Ok(f))) => {
                if let Ok(d) = f.into_data() {
                    frames.push(d);
                }
            }
        }
    }
}

/// The io::ErrorKind at the root of a hyper error, if any.
pub fn io_kind(e: &hyper::Error) -> Option<std::io::ErrorKind> {
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        src = s.source();
    }
    None
}

/// POST `body` to `addr` + `path` (text), bounded by STEP; returns status and body text.
pub async fn post_text(addr: SocketAddr, path: &str, body: &str) -> (u16, String) {
    let resp = send(addr, "POST", path, &[], body, STEP)
        .await
        .expect("control request answered");
    let status = resp.status().as_u16();
    let bytes = tokio::time::timeout(STEP, resp.into_body().collect())
        .await
        .expect("body in time")
        .expect("body complete")
        .to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}
