//! Downstream side: `SO_REUSEPORT` sockets (one per worker, the kernel spreads connections),
//! the accept loop, HTTP/1.1 keep-alive connections, and the per-request path
//! filters → router.
//!
//! ```text
//! accept ─ http1 conn ─ request ─▶ run_filter_chain(wasm filters…) ─▶ Router::forward ─▶ cluster pool
//!                                   on_request_headers/body            route by prefix,
//!                                   ◀─ on_response_headers/body ◀──── cluster / cluster_header
//! ```

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use http::{HeaderValue, Request};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::router::Router;
use crate::seam::DownstreamInfo;
use crate::stream::{run_filter_chain_with, Body, BoxError, ChainOptions, StreamReset};
use crate::vm::PluginVm;

/// The service error that makes hyper drop a connection whose stream a plugin reset.
#[derive(Debug, thiserror::Error)]
#[error("stream reset by a Wasm plugin")]
struct ResetByPlugin;

/// Binds `count` listening sockets on `addr` with `SO_REUSEPORT` (port 0: the first one
/// picks the port, the others share it).
///
/// # Errors
/// The address cannot be bound (e.g. in use by a socket without `SO_REUSEPORT`).
pub fn bind_reuseport(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::TcpListener>> {
    let mut out = Vec::with_capacity(count);
    let mut addr = addr;
    for _ in 0..count.max(1) {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        let listener: std::net::TcpListener = socket.into();
        addr = listener.local_addr()?;
        out.push(listener);
    }
    Ok(out)
}

/// What serving one listener on one worker needs.
pub struct ListenerContext {
    /// The listener's name (logs).
    pub name: String,
    /// The bound address (`destination.address` falls back to it).
    pub local_addr: SocketAddr,
    /// The Wasm HTTP filters, in order.
    pub filters: Vec<Rc<PluginVm>>,
    /// The router.
    pub router: Rc<Router>,
    /// The listener's `per_connection_buffer_limit_bytes` and other filter-chain options.
    pub chain: ChainOptions,
}

/// Resolves once `drain` holds `true`, or once its sender is gone (nobody is left to stop
/// us: drain too).
///
/// The `watch::Ref` that `wait_for` returns holds the channel's read lock, so it is dropped
/// here, before the caller awaits anything else. Kept alive across `conn.await` (a `_` pattern
/// in `select!` does not drop it), it made the stopper's next `send` wait for the connection to
/// finish; and a writer waiting on the lock blocks every new reader, so the next `wait_for` on
/// the worker blocked the whole worker thread, with the lock holder on it: a deadlock that
/// kept the old listening socket open and SIGTERM from ending the process (issue 14 item 5).
pub async fn drained(drain: &mut watch::Receiver<bool>) {
    let _ = drain.wait_for(|d| *d).await;
}

/// Accepts and serves connections until `drain` becomes true, then lets open connections
/// finish their current request (closing keep-alive) for at most `drain_time`.
///
/// `listener` may be a duplicate of a socket the next generation also accepts on (a reload):
/// dropping it then stops this worker's accepting without closing the socket, and connections
/// still in its accept queue go to the new workers.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ctx: Rc<ListenerContext>,
    mut drain: watch::Receiver<bool>,
    drain_time: Duration,
) {
    let mut conns = JoinSet::new();
    let conn_drain = drain.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    conns.spawn_local(serve_connection(stream, peer, ctx.clone(), conn_drain.clone(), drain_time));
                }
                Err(e) => {
                    tracing::warn!(listener = %ctx.name, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            () = drained(&mut drain) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    // Closes this descriptor only; a socket shared with a newer generation stays open.
    drop(listener);
    let _ = tokio::time::timeout(drain_time, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    conns.abort_all();
}

/// How long a draining connection that has not sent its first request yet may still send it.
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    ctx: Rc<ListenerContext>,
    mut drain: watch::Receiver<bool>,
    drain_time: Duration,
) {
    // The address this connection really reached (the listener may be bound to 0.0.0.0).
    let local = stream.local_addr().unwrap_or(ctx.local_addr);
    let service_ctx = ctx.clone();
    // A permit once a request has arrived (hyper calls the service when it has read a head).
    let request_seen = Rc::new(tokio::sync::Notify::new());
    let seen = request_seen.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        seen.notify_one();
        let ctx = service_ctx.clone();
        async move {
            let resp = handle(ctx, peer, local, req).await;
            if resp.extensions().get::<StreamReset>().is_some() {
                // A plugin reset the stream: abort the connection instead of answering.
                return Err(Box::new(ResetByPlugin) as BoxError);
            }
            Ok(resp)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = drained(&mut drain) => {
            // hyper's graceful shutdown closes a connection on which nothing has been read yet
            // at once, even when its request is already in the socket buffer: a client that
            // connected just before the drain would get no answer. Envoy answers a request on
            // a draining listener (adding `connection: close`), so wait, bounded, for the first
            // request; once one has arrived the shutdown only turns keep-alive off.
            let first = tokio::select! {
                r = conn.as_mut() => Some(r),
                () = request_seen.notified() => None,
                () = tokio::time::sleep(FIRST_REQUEST_GRACE.min(drain_time)) => None,
            };
            match first {
                Some(r) => r,
                None => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(listener = %ctx.name, %peer, "downstream connection ended: {e}");
    }
}

async fn handle(
    ctx: Rc<ListenerContext>,
    peer: SocketAddr,
    local: SocketAddr,
    req: Request<Incoming>,
) -> http::Response<Body> {
    let mut req: Request<Body> = req.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed_unsync());
    let request_id = match req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
    {
        Some(id) => id.to_string(),
        None => {
            let id = new_request_id();
            if let Ok(v) = HeaderValue::from_str(&id) {
                req.headers_mut().insert("x-request-id", v);
            }
            id
        }
    };
    let router = ctx.router.clone();
    if ctx.filters.is_empty() {
        return router.forward(req).await;
    }
    let downstream = DownstreamInfo {
        source: peer,
        destination: local,
        request_id: Some(request_id),
    };
    run_filter_chain_with(
        &ctx.filters,
        ctx.chain,
        downstream,
        req,
        move |r| async move { router.forward(r).await },
    )
    .await
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id() as u64);
    h.finish() | 1
}

fn next_u64() -> u64 {
    RNG.with(|r| {
        // xorshift64*: request ids need uniqueness, not cryptographic strength.
        let mut x = r.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        r.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

/// A UUID-v4-shaped request id, as Envoy generates for `x-request-id`.
fn new_request_id() -> String {
    let a = next_u64();
    let b = next_u64();
    let a = (a & 0xffff_ffff_ffff_0fff) | 0x4000;
    let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    uuid_text(a, b)
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` from 128 bits, written digit by digit: `format!`
/// with five width specs cost 5 % of a pass-through request (bench/PROFILE.md).
fn uuid_text(hi: u64, lo: u64) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 36];
    let mut pos = 0;
    for (i, nibble) in (0..32).map(|i| {
        let word = if i < 16 { hi } else { lo };
        (i, (word >> (60 - 4 * (i % 16))) & 0xf)
    }) {
        if matches!(i, 8 | 12 | 16 | 20) {
            out[pos] = b'-';
            pos += 1;
        }
        out[pos] = HEX[nibble as usize];
        pos += 1;
    }
    // Hex digits and dashes only: always ASCII.
    String::from_utf8(out.to_vec()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_text_matches_the_formatted_layout() {
        for (a, b) in [
            (0u64, 0u64),
            (u64::MAX, 1),
            (0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210),
        ] {
            let expected = format!(
                "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                a >> 32,
                (a >> 16) & 0xffff,
                a & 0xffff,
                b >> 48,
                b & 0xffff_ffff_ffff
            );
            assert_eq!(uuid_text(a, b), expected);
        }
    }
}
