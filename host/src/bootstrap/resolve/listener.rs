//! Listeners, their HTTP connection manager, virtual hosts and routes.

use super::Resolver;
use crate::bootstrap::raw;
use crate::bootstrap::*;
use crate::error::ConfigError;

impl Resolver<'_> {
    pub(super) fn listener(
        &self,
        path: &str,
        l: raw::Listener,
        clusters: &[Cluster],
    ) -> Result<Listener, ConfigError> {
        let address = self.ip_address(
            &format!("{path}.address.socket_address"),
            &l.address.socket_address,
        )?;
        if l.filter_chains.len() != 1 {
            return Err(self.err(
                format!("{path}.filter_chains"),
                format!(
                    "exactly one filter chain is supported, found {}",
                    l.filter_chains.len()
                ),
            ));
        }
        let chain = l
            .filter_chains
            .into_iter()
            .next()
            .ok_or_else(|| self.err(format!("{path}.filter_chains"), "missing"))?;
        let fpath = format!("{path}.filter_chains[0].filters");
        if chain.filters.len() != 1 {
            return Err(self.err(&fpath, format!("exactly one network filter (the HTTP connection manager) is supported, found {}", chain.filters.len())));
        }
        let filter = chain
            .filters
            .into_iter()
            .next()
            .ok_or_else(|| self.err(&fpath, "missing"))?;
        if filter.name != "envoy.filters.network.http_connection_manager" {
            return Err(self.err(
                format!("{fpath}[0].name"),
                format!("unsupported network filter {:?}", filter.name),
            ));
        }
        let raw::ListenerFilterConfig::Hcm(hcm) = filter.typed_config;
        let hpath = format!("{fpath}[0].typed_config");
        let mut wasm_filters = Vec::new();
        let n = hcm.http_filters.len();
        let mut saw_router = false;
        for (i, f) in hcm.http_filters.into_iter().enumerate() {
            let p = format!("{hpath}.http_filters[{i}]");
            match f.typed_config {
                raw::HttpFilterConfig::Wasm(w) => {
                    if f.name != "envoy.filters.http.wasm" {
                        return Err(self.err(
                            format!("{p}.name"),
                            format!(
                                "a Wasm filter must be named envoy.filters.http.wasm, not {:?}",
                                f.name
                            ),
                        ));
                    }
                    wasm_filters.push(self.plugin(&format!("{p}.typed_config.config"), w.config)?);
                }
                raw::HttpFilterConfig::Router(_) => {
                    if f.name != "envoy.filters.http.router" {
                        return Err(self.err(
                            format!("{p}.name"),
                            format!(
                                "the router must be named envoy.filters.http.router, not {:?}",
                                f.name
                            ),
                        ));
                    }
                    if i + 1 != n {
                        return Err(self.err(&p, "the router must be the last HTTP filter"));
                    }
                    saw_router = true;
                }
            }
        }
        if !saw_router {
            return Err(self.err(
                format!("{hpath}.http_filters"),
                "the last HTTP filter must be envoy.filters.http.router",
            ));
        }
        let rpath = format!("{hpath}.route_config");
        let mut virtual_hosts = Vec::new();
        for (i, vh) in hcm.route_config.virtual_hosts.into_iter().enumerate() {
            virtual_hosts.push(self.virtual_host(
                &format!("{rpath}.virtual_hosts[{i}]"),
                vh,
                clusters,
            )?);
        }
        Ok(Listener {
            name: l.name,
            address,
            stat_prefix: hcm.stat_prefix,
            route_config_name: hcm.route_config.name,
            virtual_hosts,
            wasm_filters,
            buffer_limit: l
                .per_connection_buffer_limit_bytes
                .unwrap_or(DEFAULT_BUFFER_LIMIT),
        })
    }

    fn virtual_host(
        &self,
        path: &str,
        vh: raw::VirtualHost,
        clusters: &[Cluster],
    ) -> Result<VirtualHost, ConfigError> {
        if vh.domains.is_empty() {
            return Err(self.err(format!("{path}.domains"), "at least one domain is required"));
        }
        let mut routes = Vec::new();
        for (i, r) in vh.routes.into_iter().enumerate() {
            let p = format!("{path}.routes[{i}]");
            let target = match (r.route.cluster, r.route.cluster_header) {
                (Some(c), None) => {
                    if !clusters.iter().any(|k| k.name == c) {
                        return Err(self.err(format!("{p}.route.cluster"), format!("unknown cluster {c:?}")));
                    }
                    RouteTarget::Cluster(c)
                }
                (None, Some(h)) => {
                    if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                        return Err(self.err(format!("{p}.route.cluster_header"), format!("{h:?} is not a header name")));
                    }
                    RouteTarget::ClusterHeader(h.to_ascii_lowercase())
                }
                (Some(_), Some(_)) => return Err(self.err(format!("{p}.route"), "multiple fields provided for oneof 'cluster_specifier' (cluster, cluster_header)")),
                (None, None) => return Err(self.err(format!("{p}.route"), "one of cluster or cluster_header is required")),
            };
            let timeout = match r.route.timeout {
                None => Some(DEFAULT_ROUTE_TIMEOUT),
                Some(t) => {
                    let d = parse_duration(&t)
                        .map_err(|m| self.err(format!("{p}.route.timeout"), m))?;
                    (!d.is_zero()).then_some(d)
                }
            };
            routes.push(Route {
                name: r.name,
                prefix: r.match_.prefix,
                target,
                timeout,
                auto_host_rewrite: r.route.auto_host_rewrite,
            });
        }
        Ok(VirtualHost {
            name: vh.name,
            domains: vh
                .domains
                .into_iter()
                .map(|d| d.to_ascii_lowercase())
                .collect(),
            routes,
        })
    }
}
