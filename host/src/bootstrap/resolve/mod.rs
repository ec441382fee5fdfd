//! Resolution: the raw serde model into the typed [`Bootstrap`], one `impl Resolver` per part
//! of the config, every error naming its field path.

mod cluster;
mod listener;
mod plugin;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use super::raw;
use super::*;
use crate::error::ConfigError;

pub(super) struct Resolver<'a> {
    pub(super) file: &'a Path,
    pub(super) opts: &'a LoadOptions,
}

impl Resolver<'_> {
    fn err(&self, field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::field(self.file, field, message)
    }

    pub(super) fn bootstrap(&self, raw: raw::Bootstrap) -> Result<Bootstrap, ConfigError> {
        let mut clusters: Vec<Cluster> = Vec::new();
        for (i, c) in raw.static_resources.clusters.into_iter().enumerate() {
            let path = format!("static_resources.clusters[{i}]");
            let cluster = self.cluster(&path, c)?;
            if clusters.iter().any(|o| o.name == cluster.name) {
                return Err(self.err(
                    format!("{path}.name"),
                    format!("duplicate cluster name {:?}", cluster.name),
                ));
            }
            clusters.push(cluster);
        }
        let mut listeners: Vec<Listener> = Vec::new();
        for (i, l) in raw.static_resources.listeners.into_iter().enumerate() {
            let path = format!("static_resources.listeners[{i}]");
            let listener = self.listener(&path, l, &clusters)?;
            if listeners
                .iter()
                .any(|o| o.address == listener.address && listener.address.port() != 0)
            {
                return Err(self.err(
                    format!("{path}.address"),
                    format!("two listeners on {}", listener.address),
                ));
            }
            listeners.push(listener);
        }
        let mut services = Vec::new();
        for (i, ext) in raw.bootstrap_extensions.into_iter().enumerate() {
            let path = format!("bootstrap_extensions[{i}]");
            if ext.name != "envoy.bootstrap.wasm" {
                return Err(self.err(
                    format!("{path}.name"),
                    format!(
                        "unsupported bootstrap extension {:?} (only envoy.bootstrap.wasm)",
                        ext.name
                    ),
                ));
            }
            let svc = *ext.typed_config.0;
            if !svc.singleton {
                return Err(self.err(
                    format!("{path}.typed_config.singleton"),
                    "only singleton: true Wasm services are supported",
                ));
            }
            services.push(self.plugin(&format!("{path}.typed_config.config"), svc.config)?);
        }
        let admin = match raw.admin {
            Some(a) => {
                Some(self.ip_address("admin.address.socket_address", &a.address.socket_address)?)
            }
            None => None,
        };
        Ok(Bootstrap {
            file: self.file.to_path_buf(),
            listeners,
            clusters,
            services,
            admin,
        })
    }

    fn ip_address(&self, path: &str, sa: &raw::SocketAddress) -> Result<SocketAddr, ConfigError> {
        let ip: IpAddr = sa.address.parse().map_err(|_| {
            self.err(
                format!("{path}.address"),
                format!("{:?} is not an IP address", sa.address),
            )
        })?;
        let port = self.port(path, sa.port_value)?;
        Ok(SocketAddr::new(ip, port))
    }

    fn port(&self, path: &str, value: u32) -> Result<u16, ConfigError> {
        u16::try_from(value).map_err(|_| {
            self.err(
                format!("{path}.port_value"),
                format!("{value} is not a port"),
            )
        })
    }
}
