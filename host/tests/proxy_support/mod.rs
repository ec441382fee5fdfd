//! Test support for the proxy tests: a raw HTTP/1.1 upstream on loopback whose behaviour is
//! chosen by the request path, and a bootstrap builder. No Wasm filter is involved.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the upstream saw.
#[derive(Default)]
pub struct Seen {
    /// Connections accepted.
    pub connections: AtomicUsize,
    /// Raw request heads, in order.
    pub heads: Mutex<Vec<String>>,
}

/// A raw upstream: `/hang` never answers, `/reset` closes the connection after reading the
/// request, `/garbage` answers something that is not HTTP, anything else gets 200 with a body
/// naming `name` and the path (keep-alive).
pub fn upstream(name: &'static str) -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            s.connections.fetch_add(1, Ordering::SeqCst);
            let s = s.clone();
            std::thread::spawn(move || serve(stream, name, &s));
        }
    });
    (addr, seen)
}

fn read_head(stream: &mut TcpStream) -> Option<String> {
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

fn serve(mut stream: TcpStream, name: &str, seen: &Seen) {
    loop {
        let Some(head) = read_head(&mut stream) else {
            return;
        };
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap_or(0))
            })
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        if stream.read_exact(&mut body).is_err() {
            return;
        }
        seen.heads.lock().unwrap().push(head.clone());
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        if path.starts_with("/hang") {
            std::thread::sleep(Duration::from_secs(30));
            return;
        }
        if path.starts_with("/reset") {
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return;
        }
        if path.starts_with("/garbage") {
            let _ = stream.write_all(b"this is not http\r\n\r\n");
            std::thread::sleep(Duration::from_millis(200));
            return;
        }
        let text = format!("{name} {path} {}", String::from_utf8_lossy(&body));
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: keep-alive\r\nkeep-alive: timeout=5\r\nx-upstream: {name}\r\n\r\n{text}",
            text.len()
        );
        if stream.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// A port nothing listens on.
pub fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = l.local_addr().expect("addr");
    drop(l);
    a
}

/// A cluster entry.
pub fn cluster(name: &str, endpoints: &[SocketAddr]) -> String {
    let eps: String = endpoints
        .iter()
        .map(|a| format!("\n        - endpoint: {{ address: {{ socket_address: {{ address: \"{}\", port_value: {} }} }} }}", a.ip(), a.port()))
        .collect();
    let lb = if endpoints.is_empty() {
        " []".to_string()
    } else {
        eps
    };
    format!(
        "\n  - name: {name}\n    connect_timeout: 0.5s\n    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:{lb}"
    )
}

/// A bootstrap with one listener on `listen` (port 0 allowed), the given routes
/// (`(prefix, "cluster: x" | "cluster_header: h", timeout)`), clusters, and optional admin.
pub fn bootstrap(
    listen: SocketAddr,
    routes: &[(&str, &str, &str)],
    clusters: &[String],
    admin: Option<SocketAddr>,
) -> String {
    let routes: String = routes
        .iter()
        .map(|(prefix, target, timeout)| format!("\n              - match: {{ prefix: \"{prefix}\" }}\n                route: {{ {target}, timeout: {timeout} }}"))
        .collect();
    let admin = admin
        .map(|a| {
            format!(
                "admin:\n  address: {{ socket_address: {{ address: \"{}\", port_value: {} }} }}\n",
                a.ip(),
                a.port()
            )
        })
        .unwrap_or_default();
    format!(
        r#"{admin}static_resources:
  listeners:
  - name: test
    address: {{ socket_address: {{ address: "{ip}", port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: test
          route_config:
            name: test_routes
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:{routes}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:{clusters}
"#,
        ip = listen.ip(),
        port = listen.port(),
        clusters = clusters.concat()
    )
}

/// Status, lower-cased headers, body.
pub type Answer = (u16, Vec<(String, String)>, String);

/// A minimal HTTP/1.1 client over one connection: sends `req` (a full request text) and
/// returns (status, headers lower-cased, body).
pub fn http(stream: &mut TcpStream, req: &str) -> std::io::Result<Answer> {
    stream.write_all(req.as_bytes())?;
    let head = read_head(stream)
        .ok_or_else(|| std::io::Error::other("connection closed before headers"))?;
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body)?;
    Ok((status, headers, String::from_utf8_lossy(&body).into_owned()))
}

/// One request on a fresh connection.
pub fn get(addr: SocketAddr, path: &str, extra: &str) -> Answer {
    let mut s = TcpStream::connect(addr).expect("connect to proxy");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    http(
        &mut s,
        &format!("GET {path} HTTP/1.1\r\nhost: test\r\n{extra}\r\n"),
    )
    .expect("answer")
}

/// The value of header `name`.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}
