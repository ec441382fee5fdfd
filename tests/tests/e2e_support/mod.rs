//! Helpers shared by the failover, verifier, llm and lifecycle suites (kept here rather than in
//! the crate's `lib.rs`, which other suites also extend): raw HTTP/1.1 exchanges for requests a
//! client library would normalise (header case, repeated headers, hop-by-hop headers, a body held
//! back), answers whose body broke off, and status-document accessors.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use failover_tests::Answer;
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A healthy LLM-style request body.
pub const BODY: &str =
    r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"hi"}]}"#;

/// A streaming LLM request body (the mock answers with SSE).
pub const STREAM_BODY: &str =
    r#"{"model":"m","stream":true,"max_tokens":1,"messages":[{"role":"user","content":"hi"}]}"#;

/// Parses a complete HTTP/1.1 response (content-length, chunked, or read-to-close body).
pub fn parse_response(raw: &[u8]) -> Result<Answer, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {:?}", String::from_utf8_lossy(raw)))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let rest = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let find = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let body = if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)?
    } else if let Some(len) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        if rest.len() < len {
            return Err(format!("body cut: {} of {len} bytes", rest.len()));
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Answer {
        status,
        headers,
        body: Bytes::from(body),
    })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("chunked body cut inside a size line")?;
        let size_text = String::from_utf8_lossy(&data[..eol]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err("chunked body cut inside a chunk".into());
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Writes `request` (a complete HTTP/1.1 request text; send `connection: close`) on a fresh
/// connection and parses the answer read until the proxy closes. 15 s limit.
pub async fn raw_request(addr: SocketAddr, request: &[u8]) -> Result<Answer, String> {
    let fut = async {
        let mut s = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        s.write_all(request)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut out = Vec::new();
        s.read_to_end(&mut out)
            .await
            .map_err(|e| format!("read: {e}"))?;
        parse_response(&out)
    };
    tokio::time::timeout(Duration::from_secs(15), fut)
        .await
        .map_err(|_| "timed out after 15 s".to_string())?
}

/// A request whose headers are sent now and whose body is sent later (see [`HeldRequest::finish`]):
/// the proxy routes it on its headers, so it is committed to an upstream before the body exists.
pub struct HeldRequest {
    stream: TcpStream,
    body: Vec<u8>,
}

impl HeldRequest {
    /// Sends the head of `POST path` announcing `body.len()` bytes, and keeps the body back.
    pub async fn start(addr: SocketAddr, path: &str, body: &[u8]) -> Result<Self, String> {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: failover.test\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        stream
            .write_all(head.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        Ok(Self {
            stream,
            body: body.to_vec(),
        })
    }

    /// Sends the body and reads the answer (15 s limit).
    pub async fn finish(mut self) -> Result<Answer, String> {
        let fut = async {
            self.stream
                .write_all(&self.body)
                .await
                .map_err(|e| format!("write: {e}"))?;
            let mut out = Vec::new();
            self.stream
                .read_to_end(&mut out)
                .await
                .map_err(|e| format!("read: {e}"))?;
            parse_response(&out)
        };
        tokio::time::timeout(Duration::from_secs(15), fut)
            .await
            .map_err(|_| "timed out after 15 s".to_string())?
    }
}

/// An answer whose body may have broken off: what arrived, and the error that ended it.
#[derive(Debug, Clone)]
pub struct PartialAnswer {
    /// Status and headers, and the body bytes that arrived.
    pub answer: Answer,
    /// Why the body ended early, `None` when it ended cleanly.
    pub body_error: Option<String>,
}

/// Like [`failover_tests::send`], but a body that breaks off is returned as far as it came
/// (an error before headers is still an `Err`). 15 s limit.
pub async fn send_partial(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<PartialAnswer, String> {
    let body = body.to_string();
    let fut = async move {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(conn);
        let mut req = http::Request::builder()
            .method("POST")
            .uri(path)
            .header("host", "failover.test")
            .header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = resp.into_body();
        let mut got = Vec::new();
        let mut body_error = None;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    if let Some(d) = f.data_ref() {
                        got.extend_from_slice(d);
                    }
                }
                Err(e) => {
                    body_error = Some(e.to_string());
                    break;
                }
            }
        }
        Ok(PartialAnswer {
            answer: Answer {
                status,
                headers,
                body: Bytes::from(got),
            },
            body_error,
        })
    };
    tokio::time::timeout(Duration::from_secs(15), fut)
        .await
        .map_err(|_| "timed out after 15 s".to_string())?
}

/// The status document's entry for endpoint `name`.
pub fn endpoint<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["endpoints"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["name"] == name))
        .unwrap_or(&Value::Null)
}

/// True when the status document shows `name` parked.
pub fn is_parked(status: &Value, name: &str) -> bool {
    endpoint(status, name)["state"] == "parked"
}

/// A counter from the status document's `stats`.
pub fn stat(status: &Value, name: &str) -> u64 {
    status["stats"][name].as_u64().unwrap_or(0)
}
