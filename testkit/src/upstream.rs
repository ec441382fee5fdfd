//! Upstreams for the tests. [`raw`] is a byte-level HTTP/1.1 server whose behaviour the
//! request path picks (hang, reset, garbage), for the proxy tests that need no Wasm filter;
//! [`mock_upstream`] is the scriptable mock of `failover-examples` (schedules of failures,
//! LLM-style answers) that the end-to-end suites put behind the filter.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use failover_examples::{load, mock};

use crate::send::wire::read_head;

/// Starts a mock upstream on a free loopback port.
///
/// # Panics
/// When it cannot bind (a broken test machine, not a test failure to handle).
pub async fn mock_upstream(name: &str, schedule: mock::Schedule) -> mock::MockUpstream {
    mock::spawn_with(
        ([127, 0, 0, 1], 0).into(),
        schedule,
        mock::MockOptions::named(name),
    )
    .await
    .unwrap_or_else(|e| panic!("spawn mock upstream {name}: {e}"))
}

/// What a [`raw`] upstream saw.
#[derive(Default)]
pub struct Seen {
    /// Connections accepted.
    pub connections: AtomicUsize,
    /// Raw request heads, in order.
    pub heads: Mutex<Vec<String>>,
}

/// A raw upstream on a free loopback port: `/hang` never answers, `/reset` closes the
/// connection after reading the request, `/garbage` answers something that is not HTTP,
/// anything else gets 200 with a body naming `name` and the path (keep-alive) and header
/// `x-upstream: name`.
///
/// # Panics
/// When it cannot bind a loopback port.
pub fn raw(name: &'static str) -> (SocketAddr, Arc<Seen>) {
    let listener =
        TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind upstream {name}: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("address of upstream {name}: {e}"));
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
        seen.heads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(head.clone());
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

/// A loopback address nothing listens on (bound, then released).
///
/// # Panics
/// When it cannot bind a loopback port.
pub fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    l.local_addr().unwrap_or_else(|e| panic!("address: {e}"))
}
