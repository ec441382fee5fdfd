//! Clusters, their endpoints and TLS, and data sources.

use std::net::IpAddr;

use base64::Engine as _;

use super::Resolver;
use crate::bootstrap::raw;
use crate::bootstrap::*;
use crate::error::ConfigError;

impl Resolver<'_> {
    pub(super) fn cluster(&self, path: &str, c: raw::Cluster) -> Result<Cluster, ConfigError> {
        if c.name.is_empty() {
            return Err(self.err(format!("{path}.name"), "must not be empty"));
        }
        let discovery = match c.type_.unwrap_or(raw::DiscoveryType::Static) {
            raw::DiscoveryType::Static => Discovery::Static,
            raw::DiscoveryType::StrictDns => Discovery::StrictDns,
            raw::DiscoveryType::LogicalDns => Discovery::LogicalDns,
        };
        let connect_timeout = match c.connect_timeout {
            None => DEFAULT_CONNECT_TIMEOUT,
            Some(t) => {
                let d = parse_duration(&t)
                    .map_err(|m| self.err(format!("{path}.connect_timeout"), m))?;
                if d.is_zero() {
                    return Err(
                        self.err(format!("{path}.connect_timeout"), "must be greater than 0s")
                    );
                }
                d
            }
        };
        let mut endpoints = Vec::new();
        if let Some(la) = c.load_assignment {
            for (i, group) in la.endpoints.into_iter().enumerate() {
                for (j, lb) in group.lb_endpoints.into_iter().enumerate() {
                    let p = format!("{path}.load_assignment.endpoints[{i}].lb_endpoints[{j}].endpoint.address.socket_address");
                    let sa = lb.endpoint.address.socket_address;
                    let port = self.port(&p, sa.port_value)?;
                    if port == 0 {
                        return Err(
                            self.err(format!("{p}.port_value"), "an upstream port is required")
                        );
                    }
                    if discovery == Discovery::Static && sa.address.parse::<IpAddr>().is_err() {
                        return Err(self.err(format!("{p}.address"), format!("{:?} is not an IP address (a STATIC cluster needs IPs; use STRICT_DNS for names)", sa.address)));
                    }
                    endpoints.push(HostPort {
                        host: sa.address,
                        port,
                    });
                }
            }
        }
        if discovery == Discovery::LogicalDns && endpoints.len() > 1 {
            return Err(self.err(
                format!("{path}.load_assignment"),
                "LOGICAL_DNS clusters take exactly one endpoint",
            ));
        }
        let tls = match c.transport_socket {
            None => None,
            Some(ts) => {
                if ts.name != "envoy.transport_sockets.tls" {
                    return Err(self.err(
                        format!("{path}.transport_socket.name"),
                        format!("unsupported transport socket {:?}", ts.name),
                    ));
                }
                Some(self.tls(
                    &format!("{path}.transport_socket.typed_config"),
                    ts.typed_config.0,
                )?)
            }
        };
        for key in c.typed_extension_protocol_options.keys() {
            if key != "envoy.extensions.upstreams.http.v3.HttpProtocolOptions" {
                return Err(self.err(
                    format!("{path}.typed_extension_protocol_options.{key}"),
                    "unsupported protocol options",
                ));
            }
        }
        Ok(Cluster {
            name: c.name,
            discovery,
            connect_timeout,
            dns_lookup_family: c.dns_lookup_family.unwrap_or(DnsLookupFamily::Auto),
            endpoints,
            tls,
        })
    }

    fn tls(&self, path: &str, t: raw::UpstreamTlsContext) -> Result<TlsConfig, ConfigError> {
        let mut alpn = Vec::new();
        let mut trusted_ca_pem = None;
        if let Some(ctx) = t.common_tls_context {
            for (i, p) in ctx.alpn_protocols.iter().enumerate() {
                if p != "http/1.1" {
                    return Err(self.err(
                        format!("{path}.common_tls_context.alpn_protocols[{i}]"),
                        format!("only http/1.1 is supported, not {p:?}"),
                    ));
                }
            }
            alpn = ctx.alpn_protocols;
            if let Some(ca) = ctx.validation_context.and_then(|v| v.trusted_ca) {
                let p = format!("{path}.common_tls_context.validation_context.trusted_ca");
                trusted_ca_pem = Some(self.data_source(&p, ca)?);
            }
        }
        Ok(TlsConfig {
            sni: t.sni,
            alpn,
            trusted_ca_pem,
        })
    }

    pub(super) fn data_source(
        &self,
        path: &str,
        d: raw::DataSource,
    ) -> Result<Vec<u8>, ConfigError> {
        match (d.filename, d.inline_bytes, d.inline_string) {
            (Some(f), None, None) => std::fs::read(&f).map_err(|e| {
                self.err(
                    format!("{path}.filename"),
                    format!("cannot read {f:?}: {e}"),
                )
            }),
            (None, Some(b), None) => base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .map_err(|e| self.err(format!("{path}.inline_bytes"), format!("not base64: {e}"))),
            (None, None, Some(s)) => Ok(s.into_bytes()),
            _ => Err(self.err(
                path,
                "exactly one of filename, inline_bytes, inline_string is required",
            )),
        }
    }
}
