//! A worker's upstream clusters: endpoints (round-robin, DNS refreshed for DNS clusters), a
//! keep-alive connection list per endpoint ([`super::pool`]), and the mapping of upstream
//! failures to Envoy's local replies. Also the [`ClusterManager`] the Wasm VMs use for `dispatch_http_call`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::error::Error as _;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, Request, Response, Uri};
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::connector::{ConnectError, Connector};
use super::local_reply::LocalReply;
use super::pool::{HostPool, UpstreamError};
use crate::body::{full, Body, BoxError, DeadlineBody};
use crate::bootstrap::{Cluster, Discovery, DnsLookupFamily};
use crate::seam::{CallError, CallRequest, CallResponse, ClusterManager, UpstreamInfo};

/// How often DNS clusters re-resolve (Envoy's default `dns_refresh_rate`).
const DNS_REFRESH: Duration = Duration::from_secs(5);

/// One resolved host of a cluster, with its connections and what each request to it needs
/// already built (formatting and parsing the address per request cost ~2 k instructions of
/// every forwarded request, bench/PROFILE.md).
#[derive(Clone)]
pub struct Host {
    /// The address connected to.
    pub addr: SocketAddr,
    /// `addr` as a `Host` header value, for a request that came without one (HTTP/1.0).
    addr_header: HeaderValue,
    /// The DNS name the host came from (DNS clusters) as a `Host` header value, for
    /// `auto_host_rewrite`; `None` for static hosts or a name that is no header value.
    host_header: Option<HeaderValue>,
    /// Keep-alive connections to `addr`, shared by every clone of this host.
    pool: Rc<HostPool>,
}

impl Host {
    /// `pool`: the connections of an earlier resolution of the same address, kept.
    fn new(addr: SocketAddr, hostname: Option<&str>, pool: Option<Rc<HostPool>>) -> Option<Self> {
        let addr_header = HeaderValue::try_from(addr.to_string()).ok()?;
        Some(Self {
            addr,
            addr_header,
            host_header: hostname.and_then(|h| HeaderValue::from_str(h).ok()),
            pool: pool.unwrap_or_else(|| Rc::new(HostPool::new(addr))),
        })
    }
}

/// One cluster on one worker.
pub struct UpstreamCluster {
    config: Cluster,
    connector: Connector,
    /// Resolved hosts (with the DNS name they came from, for DNS clusters).
    hosts: RefCell<Vec<Host>>,
    next: Cell<usize>,
}

impl UpstreamCluster {
    fn new(config: Cluster) -> Result<Self, String> {
        let connector = Connector::new(config.connect_timeout, config.tls.as_ref())
            .map_err(|e| format!("cluster {:?}: {e}", config.name))?;
        let hosts = if config.discovery == Discovery::Static {
            config
                .endpoints
                .iter()
                .filter_map(|e| {
                    e.host
                        .parse()
                        .ok()
                        .and_then(|ip| Host::new(SocketAddr::new(ip, e.port), None, None))
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok(Self {
            config,
            connector,
            hosts: RefCell::new(hosts),
            next: Cell::new(0),
        })
    }

    /// The cluster name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The next host, round-robin; `None` when the cluster has none.
    pub fn pick(&self) -> Option<Host> {
        let hosts = self.hosts.borrow();
        if hosts.is_empty() {
            return None;
        }
        let i = self.next.get() % hosts.len();
        self.next.set(i.wrapping_add(1));
        Some(hosts[i].clone())
    }

    async fn resolve(&self) {
        let mut resolved = Vec::new();
        for ep in &self.config.endpoints {
            match tokio::net::lookup_host((ep.host.as_str(), ep.port)).await {
                Ok(addrs) => {
                    let mut addrs: Vec<SocketAddr> = addrs
                        .filter(|a| match self.config.dns_lookup_family {
                            DnsLookupFamily::V4Only => a.is_ipv4(),
                            DnsLookupFamily::V6Only => a.is_ipv6(),
                            _ => true,
                        })
                        .collect();
                    if self.config.dns_lookup_family == DnsLookupFamily::V4Preferred
                        && addrs.iter().any(|a| a.is_ipv4())
                    {
                        addrs.retain(|a| a.is_ipv4());
                    }
                    addrs.dedup();
                    if self.config.discovery == Discovery::LogicalDns {
                        addrs.truncate(1);
                    }
                    let hosts = self.hosts.borrow();
                    let kept =
                        |a: SocketAddr| hosts.iter().find(|h| h.addr == a).map(|h| h.pool.clone());
                    resolved.extend(
                        addrs
                            .into_iter()
                            .filter_map(|a| Host::new(a, Some(ep.host.as_str()), kept(a))),
                    );
                }
                Err(e) => {
                    tracing::warn!(cluster = %self.config.name, host = %ep.host, "DNS resolution failed: {e}")
                }
            }
        }
        *self.hosts.borrow_mut() = resolved;
    }

    /// Sends `req` to the next host and returns the upstream's answer, or Envoy's local reply
    /// when there is no host, the connection fails, or `timeout` passes before the headers.
    /// The response carries an [`UpstreamInfo`] extension either way.
    /// With `auto_host_rewrite`, `Host` becomes the host's DNS name (DNS clusters only).
    pub async fn send(
        &self,
        mut req: Request<Body>,
        timeout: Option<Duration>,
        auto_host_rewrite: bool,
        mut info: UpstreamInfo,
    ) -> Response<Body> {
        info.cluster_name = Some(self.config.name.clone());
        let Some(host) = self.pick() else {
            return LocalReply::NoHealthyUpstream.into_response(info);
        };
        if auto_host_rewrite {
            if let Some(v) = host.host_header {
                req.headers_mut().insert(http::header::HOST, v);
            }
        }
        info.upstream_address = Some(host.addr);
        if !req.headers().contains_key(http::header::HOST) {
            req.headers_mut()
                .insert(http::header::HOST, host.addr_header.clone());
        }
        // HTTP/1 upstream requests are origin-form; a client may have sent absolute-form.
        if req.uri().scheme().is_some() || req.uri().authority().is_some() {
            let origin = req.uri().path_and_query().map_or("/", |p| p.as_str());
            match Uri::try_from(origin) {
                Ok(uri) => *req.uri_mut() = uri,
                Err(_) => return LocalReply::RouteNotFound.into_response(info),
            }
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        let pending = host.pool.send(&self.connector, req);
        let result = match deadline {
            Some(d) => match tokio::time::timeout_at(d, pending).await {
                Ok(r) => r,
                Err(_) => return LocalReply::Timeout.into_response(info),
            },
            None => pending.await,
        };
        match result {
            Ok(resp) => {
                let (parts, incoming) = resp.into_parts();
                let body: Body = incoming.map_err(|e| Box::new(e) as BoxError).boxed_unsync();
                let body = match deadline {
                    Some(d) => DeadlineBody::new(body, d).boxed_unsync(),
                    None => body,
                };
                let mut resp = Response::from_parts(parts, body);
                info.code_details = "via_upstream".to_string();
                resp.extensions_mut().insert(info);
                resp
            }
            Err(e) => {
                let reply = classify(&e);
                tracing::debug!(cluster = %self.config.name, upstream = %host.addr, "upstream failure: {e:?}");
                reply.into_response(info)
            }
        }
    }
}

/// Maps an upstream failure to Envoy's reset reason.
fn classify(e: &UpstreamError) -> LocalReply {
    let h = match e {
        UpstreamError::Connect(ConnectError::Timeout) => return LocalReply::ConnectTimeout,
        UpstreamError::Connect(other) => {
            return LocalReply::ConnectFailure {
                transport: other.transport_reason(),
            }
        }
        UpstreamError::Http(h) => h,
    };
    if h.is_parse() || h.is_parse_status() || h.is_parse_too_large() {
        return LocalReply::ProtocolError;
    }
    if h.is_incomplete_message() || h.is_canceled() || h.is_closed() {
        return LocalReply::ConnectionTermination;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = h.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
            ) {
                return LocalReply::ConnectionTermination;
            }
        }
        source = s.source();
    }
    LocalReply::RemoteReset
}

// ===== all clusters of a worker =====

/// A worker's clusters (or the singleton's, or the canary's).
pub struct Clusters {
    by_name: HashMap<String, Rc<UpstreamCluster>>,
}

impl Clusters {
    /// Builds every cluster's pool. DNS clusters have no hosts until [`Clusters::start_dns`].
    ///
    /// # Errors
    /// A cluster's TLS settings are unusable.
    pub fn new(clusters: &[Cluster]) -> Result<Rc<Self>, String> {
        let mut by_name = HashMap::new();
        for c in clusters {
            by_name.insert(c.name.clone(), Rc::new(UpstreamCluster::new(c.clone())?));
        }
        Ok(Rc::new(Self { by_name }))
    }

    /// Starts resolving DNS clusters now and every 5 s (must run inside a `LocalSet`). The
    /// tasks end when the `Clusters` is dropped.
    pub fn start_dns(self: &Rc<Self>) {
        for cluster in self.by_name.values() {
            if cluster.config.discovery == Discovery::Static {
                continue;
            }
            let weak = Rc::downgrade(cluster);
            tokio::task::spawn_local(async move {
                loop {
                    let Some(c) = weak.upgrade() else { return };
                    c.resolve().await;
                    drop(c);
                    tokio::time::sleep(DNS_REFRESH).await;
                }
            });
        }
    }

    /// The cluster called `name`.
    pub fn get(&self, name: &str) -> Option<&Rc<UpstreamCluster>> {
        self.by_name.get(name)
    }
}

impl ClusterManager for Clusters {
    fn has_cluster(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    fn has_usable_host(&self, name: &str) -> bool {
        self.by_name
            .get(name)
            .is_some_and(|c| !c.hosts.borrow().is_empty())
    }

    fn call(
        &self,
        cluster: &str,
        request: CallRequest,
        timeout: Option<Duration>,
    ) -> Pin<Box<dyn Future<Output = Result<CallResponse, CallError>>>> {
        let Some(cluster) = self.by_name.get(cluster).cloned() else {
            let name = cluster.to_string();
            return Box::pin(
                async move { Err(CallError::Other(format!("unknown cluster {name:?}"))) },
            );
        };
        Box::pin(async move {
            let req = build_call_request(request).map_err(CallError::Other)?;
            let info = UpstreamInfo::default();
            // Like Envoy's async client, local replies (503 UF, 504 UT, ...) come back as answers.
            let resp = cluster.send(req, timeout, false, info).await;
            let (parts, body) = resp.into_parts();
            let (data, trailers) = collect_call_body(body).await?;
            let mut headers = vec![(
                ":status".to_string(),
                parts.status.as_str().as_bytes().to_vec(),
            )];
            headers.extend(
                parts
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec())),
            );
            Ok(CallResponse {
                headers,
                body: data,
                trailers,
            })
        })
    }
}

/// Turns a `dispatch_http_call` header list into a request (`:authority` becomes `Host`).
/// Envoy's async client keeps at most 32 MiB of a call's answer (`kBufferLimitForResponse`,
/// `source/common/http/async_client_impl.h`): more than that resets the call
/// (`AsyncRequestSharedImpl::onData`), and the plugin gets 0 headers
/// (`onFailure(ExceedResponseBufferLimit)`).
pub const CALL_RESPONSE_LIMIT: usize = 32 * 1024 * 1024;

/// Collects a call's answer body and trailers, failing past [`CALL_RESPONSE_LIMIT`].
async fn collect_call_body(
    mut body: Body,
) -> Result<(bytes::Bytes, Vec<(String, Vec<u8>)>), CallError> {
    let mut data = bytes::BytesMut::new();
    let mut trailers = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| CallError::Reset(e.to_string()))?;
        match frame.into_data() {
            Ok(chunk) => {
                if data.len() + chunk.len() > CALL_RESPONSE_LIMIT {
                    return Err(CallError::Reset(format!(
                        "the answer is over the async client's {CALL_RESPONSE_LIMIT}-byte limit"
                    )));
                }
                data.extend_from_slice(&chunk);
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers = t
                        .iter()
                        .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec()))
                        .collect();
                }
            }
        }
    }
    Ok((data.freeze(), trailers))
}

fn build_call_request(call: CallRequest) -> Result<Request<Body>, String> {
    let mut method = None;
    let mut path = None;
    let mut builder = Request::builder();
    for (name, value) in &call.headers {
        match name.as_str() {
            ":method" => {
                method = Some(Method::from_bytes(value).map_err(|e| format!(":method: {e}"))?)
            }
            ":path" => path = Some(String::from_utf8_lossy(value).into_owned()),
            ":authority" => {
                builder = builder.header(
                    http::header::HOST,
                    HeaderValue::from_bytes(value).map_err(|e| format!(":authority: {e}"))?,
                )
            }
            n if n.starts_with(':') => {}
            n => {
                let name = HeaderName::from_bytes(n.as_bytes())
                    .map_err(|e| format!("header {n:?}: {e}"))?;
                let value =
                    HeaderValue::from_bytes(value).map_err(|e| format!("header {n:?}: {e}"))?;
                builder = builder.header(name, value);
            }
        }
    }
    let method = method.ok_or(":method is required")?;
    let path = path.ok_or(":path is required")?;
    let body: Body = full(call.body);
    builder
        .method(method)
        .uri(path)
        .body(body)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn body_of(chunks: usize, extra: usize) -> Body {
        let mib = Bytes::from(vec![b'x'; 1024 * 1024]);
        let mut frames: Vec<Result<http_body::Frame<Bytes>, BoxError>> = (0..chunks)
            .map(|_| Ok(http_body::Frame::data(mib.clone())))
            .collect();
        if extra > 0 {
            frames.push(Ok(http_body::Frame::data(Bytes::from(vec![b'y'; extra]))));
        }
        http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
    }

    /// Envoy's async client keeps 32 MiB of a call's answer and resets the call past that
    /// (the plugin then gets 0 headers).
    #[test]
    fn call_answers_over_32_mib_fail() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let (data, _) = collect_call_body(body_of(32, 0)).await.unwrap();
            assert_eq!(data.len(), CALL_RESPONSE_LIMIT);
            assert!(matches!(
                collect_call_body(body_of(32, 1)).await,
                Err(CallError::Reset(_))
            ));
        });
    }
}
