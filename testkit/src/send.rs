//! The one HTTP client kit of the tests. [`send`] and [`get`] go through hyper, like a
//! well-behaved client; [`raw_request`], [`raw_exchange`] and [`HeldRequest`] write bytes a
//! client library would normalise (header case, broken framing, a body held back); [`wire`] is
//! the same at the byte level for synchronous tests (keep-alive on one connection).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status.
    pub status: u16,
    /// Headers (lowercase names).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Bytes,
}

impl Answer {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Opens a hyper HTTP/1 client connection to `addr` and sends `method path` with `headers`
/// (after `host: failover.test`) and `body`: the response, its body not read yet.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<http::Response<hyper::body::Incoming>, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "failover.test");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
    sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))
}

/// Status and headers of `resp` (lowercase names), and its body.
fn split(
    resp: http::Response<hyper::body::Incoming>,
) -> (u16, Vec<(String, String)>, hyper::body::Incoming) {
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
    (status, headers, resp.into_body())
}

/// One request on a fresh connection, 15 s limit.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<Answer, String> {
    let fut = async {
        let (status, headers, body) =
            split(request(addr, method, path, headers, body.into()).await?);
        let body = body
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok(Answer {
            status,
            headers,
            body,
        })
    };
    tokio::time::timeout(Duration::from_secs(15), fut)
        .await
        .map_err(|_| "timed out after 15 s".to_string())?
}

/// `GET path`.
pub async fn get(addr: SocketAddr, path: &str) -> Result<Answer, String> {
    send(addr, "GET", path, &[], Bytes::new()).await
}

/// An answer whose body may have broken off: what arrived, and the error that ended it.
#[derive(Debug, Clone)]
pub struct PartialAnswer {
    /// Status and headers, and the body bytes that arrived.
    pub answer: Answer,
    /// Why the body ended early, `None` when it ended cleanly.
    pub body_error: Option<String>,
}

/// Like [`send`] for a JSON `POST`, but a body that breaks off is returned as far as it came
/// (an error before headers is still an `Err`). 15 s limit.
pub async fn send_partial(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<PartialAnswer, String> {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    let body = Bytes::from(body.to_string());
    let fut = async move {
        let (status, headers, mut body) = split(request(addr, "POST", path, &all, body).await?);
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

/// Parses a complete HTTP/1.1 response (content-length, chunked, or read-to-close body).
pub fn parse_response(raw: &[u8]) -> Result<Answer, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {:?}", String::from_utf8_lossy(raw)))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let rest = &raw[split + 4..];
    let (status, headers) = parse_head(&head)?;
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

/// A fresh connection to `addr` with `bytes` written on it.
async fn connect_and_write(addr: SocketAddr, bytes: &[u8]) -> Result<TcpStream, String> {
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    s.write_all(bytes)
        .await
        .map_err(|e| format!("write: {e}"))?;
    Ok(s)
}

/// Writes `request` (a complete HTTP/1.1 request text; send `connection: close`) on a fresh
/// connection and parses the answer read until the proxy closes. 15 s limit.
pub async fn raw_request(addr: SocketAddr, request: &[u8]) -> Result<Answer, String> {
    let fut = async {
        let mut s = connect_and_write(addr, request).await?;
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
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: failover.test\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let stream = connect_and_write(addr, head.as_bytes()).await?;
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

/// Writes `bytes` on a fresh TCP connection and reads until the peer closes or `limit` passes:
/// for requests no well-behaved client library would send (invalid UTF-8, broken framing).
pub async fn raw_exchange(
    addr: SocketAddr,
    bytes: &[u8],
    limit: Duration,
) -> Result<Vec<u8>, String> {
    let fut = async {
        let mut s = connect_and_write(addr, bytes).await?;
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match s.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                // A reset after (part of) an answer is still an answer.
                Err(_) if !out.is_empty() => break,
                Err(e) => return Err(format!("read: {e}")),
            }
        }
        Ok(out)
    };
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) => Err(format!("no close within {limit:?}")),
    }
}

/// Status line and headers of a response head (`\r\n`-separated, without the blank line):
/// the status and the headers with lowercase names.
fn parse_head(head: &str) -> Result<(u16, Vec<(String, String)>), String> {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok((status, headers))
}

/// Byte-level HTTP/1.1 for synchronous tests: one request at a time on a connection the test
/// holds (keep-alive, pipelining by hand), content-length bodies only.
pub mod wire {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::time::Duration;

    /// Status, lower-cased headers, body.
    pub type Answer = (u16, Vec<(String, String)>, String);

    /// Reads up to and including the blank line that ends a head; `None` if the peer closes
    /// (or fails) first.
    pub fn read_head(stream: &mut TcpStream) -> Option<String> {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte) {
                Ok(1) => buf.push(byte[0]),
                _ => return None,
            }
        }
        Some(String::from_utf8_lossy(&buf).into_owned())
    }

    /// Sends `req` (a full request text) on `stream` and returns (status, headers lower-cased,
    /// body).
    pub fn http(stream: &mut TcpStream, req: &str) -> std::io::Result<Answer> {
        stream.write_all(req.as_bytes())?;
        let head = read_head(stream)
            .ok_or_else(|| std::io::Error::other("connection closed before headers"))?;
        let (status, headers) = super::parse_head(&head).map_err(std::io::Error::other)?;
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body)?;
        Ok((status, headers, String::from_utf8_lossy(&body).into_owned()))
    }

    /// `GET path` on a fresh connection, `extra` header lines (each ending `\r\n`) added,
    /// 10 s read limit. A test step, so it panics (naming the request) when no answer comes.
    pub fn get(addr: SocketAddr, path: &str, extra: &str) -> Answer {
        let answer = TcpStream::connect(addr).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            http(
                &mut s,
                &format!("GET {path} HTTP/1.1\r\nhost: test\r\n{extra}\r\n"),
            )
        });
        answer.unwrap_or_else(|e| panic!("GET {path} from {addr}: {e}"))
    }

    /// The value of header `name` (lowercase) in `headers`.
    pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}
