//! Routing (Envoy's router filter, the last HTTP filter): virtual host by `Host`, first route
//! whose prefix matches, cluster from `cluster` or the `cluster_header` request header (read
//! *after* the Wasm filters ran, since they set it), route timeout, hop-by-hop headers.

use std::rc::Rc;
use std::time::Duration;

use http::{header, HeaderValue, Request, Response};

use super::cluster::Clusters;
use super::local_reply::LocalReply;
use crate::body::Body;
use crate::bootstrap::{Listener, Route, RouteTarget, VirtualHost};
use crate::headers::strip_hop_by_hop;
use crate::seam::UpstreamInfo;

/// One listener's route table bound to a worker's clusters.
pub struct Router {
    route_config_name: String,
    virtual_hosts: Vec<VirtualHost>,
    clusters: Rc<Clusters>,
}

impl Router {
    /// A router for `listener` over `clusters`.
    pub fn new(listener: &Listener, clusters: Rc<Clusters>) -> Self {
        Self {
            route_config_name: listener.route_config_name.clone(),
            virtual_hosts: listener.virtual_hosts.clone(),
            clusters,
        }
    }

    /// Finds the route for a request (virtual host by `Host`, then path prefix).
    pub fn route(&self, req: &Request<Body>) -> Option<&Route> {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()))
            .unwrap_or("")
            .to_ascii_lowercase();
        let vh = select_virtual_host(&self.virtual_hosts, &host)?;
        let path = req.uri().path();
        vh.routes.iter().find(|r| path.starts_with(&r.prefix))
    }

    /// Sends the request where its route says, returning the upstream answer or Envoy's local
    /// reply; the response always carries an [`UpstreamInfo`].
    pub async fn forward(&self, mut req: Request<Body>) -> Response<Body> {
        let mut info = UpstreamInfo {
            route_name: Some(self.route_config_name.clone()),
            ..UpstreamInfo::default()
        };
        let Some(route) = self.route(&req) else {
            return LocalReply::RouteNotFound.into_response(info);
        };
        if let Some(name) = &route.name {
            info.route_name = Some(name.clone());
        }
        let cluster_name = match &route.target {
            RouteTarget::Cluster(c) => Some(c.clone()),
            RouteTarget::ClusterHeader(h) => req
                .headers()
                .get(h.as_str())
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        };
        let Some(cluster) = cluster_name.as_deref().and_then(|c| self.clusters.get(c)) else {
            info.cluster_name = cluster_name;
            return LocalReply::ClusterNotFound.into_response(info);
        };
        let timeout: Option<Duration> = route.timeout;
        prepare_upstream_request(&mut req, timeout);
        let mut resp = cluster
            .send(req, timeout, route.auto_host_rewrite, info)
            .await;
        strip_hop_by_hop(resp.headers_mut());
        resp
    }
}

/// Envoy's virtual host selection: exact, then longest `*.suffix`/`suffix`, then longest
/// `prefix*`, then `*`. A port in `Host` must match a domain with that port or be absent.
fn select_virtual_host<'a>(vhs: &'a [VirtualHost], host: &str) -> Option<&'a VirtualHost> {
    let mut best: Option<(u8, usize, &VirtualHost)> = None;
    for vh in vhs {
        for d in &vh.domains {
            let rank = if d == host {
                Some((4, d.len()))
            } else if d == "*" {
                Some((1, 0))
            } else if let Some(suffix) = d.strip_prefix('*') {
                host.ends_with(suffix).then_some((3, d.len()))
            } else if let Some(prefix) = d.strip_suffix('*') {
                host.starts_with(prefix).then_some((2, d.len()))
            } else {
                None
            };
            if let Some((class, len)) = rank {
                if best.is_none_or(|(c, l, _)| (class, len) > (c, l)) {
                    best = Some((class, len, vh));
                }
            }
        }
    }
    best.map(|(_, _, vh)| vh)
}

/// Removes hop-by-hop headers (and those the `Connection` header names), adds the headers
/// Envoy adds upstream.
fn prepare_upstream_request(req: &mut Request<Body>, timeout: Option<Duration>) {
    strip_hop_by_hop(req.headers_mut());
    let headers = req.headers_mut();
    if !headers.contains_key("x-forwarded-proto") {
        headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    }
    if let Some(t) = timeout {
        headers.insert(
            "x-envoy-expected-rq-timeout-ms",
            HeaderValue::from(t.as_millis() as u64),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vh(name: &str, domains: &[&str]) -> VirtualHost {
        VirtualHost {
            name: name.into(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            routes: vec![],
        }
    }

    #[test]
    fn virtual_host_precedence_follows_envoy() {
        let vhs = vec![
            vh("any", &["*"]),
            vh("prefix", &["api.*"]),
            vh("suffix", &["*.example.com"]),
            vh("exact", &["api.example.com"]),
        ];
        let pick = |h: &str| select_virtual_host(&vhs, h).map(|v| v.name.as_str());
        assert_eq!(pick("api.example.com"), Some("exact"));
        assert_eq!(pick("www.example.com"), Some("suffix"));
        assert_eq!(pick("api.other.org"), Some("prefix"));
        assert_eq!(pick("other"), Some("any"));
        assert!(select_virtual_host(&vhs[1..2], "nothing").is_none());
    }
}
