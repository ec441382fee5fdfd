//! Keep-alive HTTP/1 connections to one upstream host, on one worker.
//!
//! Why not hyper-util's pooled client: it keys its pool by `(Scheme, Authority)` and hashes
//! that key with SipHash byte by byte three times per request (checkout, reuse, return), and
//! returns every connection through a spawned task. Replacing it saved ~8 k instructions of
//! every forwarded request (bench/PROFILE.md, "The upstream pool"). Here a cluster already knows the
//! host it picked, so each host owns its list and nothing is looked up.
//!
//! A connection stays in the list while it is in use: hyper's `SendRequest::is_ready` says
//! when the previous exchange is over (the response body was read to the end), so no task has
//! to wait for that and hand it back. A request takes the oldest ready connection; connections
//! the upstream closed are dropped on the way. A connection that was ready but turns out closed
//! when the request is handed to it gives the request back unsent, and the next one is tried —
//! a race with the upstream's keep-alive timeout must not become a client error. Once the
//! request is on the wire, a failure is the caller's (Envoy's `UC`/`UF` local replies).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use super::connector::{ConnectError, Connector};
use crate::body::Body;

/// Connections kept per host (busy or idle): past that, a connection is closed after its
/// exchange instead of going back to the list.
const MAX_CONNECTIONS: usize = 1024;
/// A connection last handed a request this long ago is closed instead of reused (when a
/// request next walks the list: an idle host's connections stay open until then, or until the
/// upstream closes them).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why an upstream exchange failed before the response headers.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection could be made.
    #[error("{0}")]
    Connect(#[from] ConnectError),
    /// The connection failed or the upstream answered something that is not HTTP/1.
    #[error("{0}")]
    Http(#[from] hyper::Error),
}

/// One connection in a host's list.
struct Pooled {
    sender: SendRequest<Body>,
    /// When a request was last handed to it.
    last_used: Instant,
}

/// The connections of one host.
pub struct HostPool {
    addr: SocketAddr,
    conns: RefCell<Vec<Pooled>>,
}

impl HostPool {
    /// An empty list for `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            conns: RefCell::new(Vec::new()),
        }
    }

    /// Connections in the list now (busy or idle).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.conns.borrow().len()
    }

    /// Sends `req` (origin-form URI, `Host` set) on a ready connection, or on a new one from
    /// `connector`, and returns the response head as soon as it arrives.
    ///
    /// # Errors
    /// The connection could not be made, or failed before the response headers.
    pub async fn send(
        &self,
        connector: &Connector,
        mut req: Request<Body>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        while let Some(mut sender) = self.checkout() {
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    self.checkin(sender);
                    return Ok(resp);
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) => {
                        tracing::debug!(upstream = %self.addr, "pooled connection closed before the request was sent; trying the next: {}", e.error());
                        req = unsent;
                    }
                    None => return Err(e.into_error().into()),
                },
            }
        }
        let io = connector.connect(self.addr).await?;
        let (mut sender, conn) = http1::handshake(TokioIo::new(io)).await?;
        let addr = self.addr;
        tokio::task::spawn_local(async move {
            if let Err(e) = conn.await {
                tracing::debug!(upstream = %addr, "upstream connection ended: {e}");
            }
        });
        let resp = sender.send_request(req).await?;
        self.checkin(sender);
        Ok(resp)
    }

    /// Takes the oldest ready connection out of the list, dropping closed and expired ones.
    fn checkout(&self) -> Option<SendRequest<Body>> {
        let mut conns = self.conns.borrow_mut();
        let mut now = None;
        let mut i = 0;
        while i < conns.len() {
            let c = &conns[i];
            if c.sender.is_closed() {
                conns.remove(i);
            } else if c.sender.is_ready() {
                let now = *now.get_or_insert_with(Instant::now);
                let pooled = conns.remove(i);
                if now.duration_since(pooled.last_used) < IDLE_TIMEOUT {
                    return Some(pooled.sender);
                }
            } else {
                i += 1;
            }
        }
        None
    }

    /// Puts a connection that just carried a request back at the end of the list.
    fn checkin(&self, sender: SendRequest<Body>) {
        let mut conns = self.conns.borrow_mut();
        if conns.len() < MAX_CONNECTIONS {
            conns.push(Pooled {
                sender,
                last_used: Instant::now(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// How the test upstream ends each exchange.
    #[derive(Clone, Copy)]
    enum After {
        /// Keeps the connection for the next request.
        KeepAlive,
        /// Closes the socket right after the response, without saying so.
        Close,
        /// Sends the second half of the body 100 ms after the first (the connection is busy
        /// until then), and keeps the connection.
        SlowBody,
    }

    /// An HTTP/1.1 upstream on loopback answering `ok` to every request; counts connections.
    async fn upstream(after: After) -> (SocketAddr, Rc<Cell<usize>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Rc::new(Cell::new(0));
        let count = accepted.clone();
        tokio::task::spawn_local(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                count.set(count.get() + 1);
                tokio::task::spawn_local(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    loop {
                        let Ok(n) = sock.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        head.extend_from_slice(&buf[..n]);
                        if !head.windows(4).any(|w| w == b"\r\n\r\n") {
                            continue;
                        }
                        head.clear();
                        let reply: &[u8] = match after {
                            After::SlowBody => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\no",
                            _ => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
                        };
                        if sock.write_all(reply).await.is_err() {
                            return;
                        }
                        if let After::SlowBody = after {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            if sock.write_all(b"k").await.is_err() {
                                return;
                            }
                        }
                        if let After::Close = after {
                            return;
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    fn get() -> Request<Body> {
        Request::builder()
            .uri("/")
            .header(http::header::HOST, "test")
            .body(crate::body::empty())
            .unwrap()
    }

    /// One exchange, its body read to the end (which frees the connection).
    async fn exchange(pool: &HostPool, connector: &Connector) -> Result<Vec<u8>, UpstreamError> {
        let resp = pool.send(connector, get()).await?;
        Ok(resp.into_body().collect().await?.to_bytes().to_vec())
    }

    fn run(test: impl std::future::Future<Output = ()>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tokio::task::LocalSet::new().block_on(&rt, test);
    }

    fn connector() -> Connector {
        Connector::new(Duration::from_secs(2), None).unwrap()
    }

    /// Lets the connection tasks see what the last exchange left (end of body, a close).
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    /// `n` exchanges one after the other, each answered `ok`, settling after each.
    async fn exchanges_in_turn(pool: &HostPool, connector: &Connector, n: usize) {
        for _ in 0..n {
            assert_eq!(exchange(pool, connector).await.unwrap(), b"ok");
            settle().await;
        }
    }

    #[test]
    fn sequential_requests_share_one_connection() {
        run(async {
            let (addr, accepted) = upstream(After::KeepAlive).await;
            let (pool, connector) = (HostPool::new(addr), connector());
            exchanges_in_turn(&pool, &connector, 5).await;
            assert_eq!(accepted.get(), 1);
            assert_eq!(pool.len(), 1);
        });
    }

    #[test]
    fn a_busy_connection_is_not_handed_a_second_request() {
        run(async {
            let (addr, accepted) = upstream(After::SlowBody).await;
            let (pool, connector) = (HostPool::new(addr), connector());
            // Two response heads in hand, neither body complete: both connections are busy.
            let first = pool.send(&connector, get()).await.unwrap();
            let second = pool.send(&connector, get()).await.unwrap();
            assert_eq!(accepted.get(), 2);
            for resp in [first, second] {
                let body = resp.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(&body[..], b"ok");
            }
            settle().await;
            // Both free again: the next two go to them, one after the other.
            exchanges_in_turn(&pool, &connector, 2).await;
            assert_eq!(accepted.get(), 2);
            assert_eq!(pool.len(), 2);
        });
    }

    #[test]
    fn a_connection_the_upstream_closed_is_dropped_and_the_request_goes_on_a_new_one() {
        run(async {
            let (addr, accepted) = upstream(After::Close).await;
            let (pool, connector) = (HostPool::new(addr), connector());
            exchanges_in_turn(&pool, &connector, 3).await;
            assert_eq!(accepted.get(), 3);
            // The closed ones left the list as the next request walked it.
            assert_eq!(pool.len(), 1);
        });
    }

    #[test]
    fn a_refused_connection_is_a_connect_error() {
        run(async {
            let addr = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap()
            };
            let pool = HostPool::new(addr);
            let err = exchange(&pool, &connector()).await.unwrap_err();
            assert!(
                matches!(err, UpstreamError::Connect(ConnectError::Io(_))),
                "{err:?}"
            );
            assert_eq!(pool.len(), 0);
        });
    }
}
