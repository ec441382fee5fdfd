//! The serde model of the subset of Envoy's v3 bootstrap that `failover-host` runs.
//!
//! Field names are the proto field names (snake_case) exactly as Envoy's YAML uses them.
//! Every struct denies unknown fields: a field we do not implement is an error naming its
//! path, never silently ignored. The `typed_config` payloads (`Any` with an `@type`) are
//! decoded by `super::any`, which picks the message type from the `@type` URL.
//!
//! Some fields are accepted only because Envoy accepts them and they change nothing here
//! (e.g. `codec_type: AUTO`, `lb_policy: ROUND_ROBIN`), so they are never read.
#![allow(dead_code)]

mod cluster;
mod common;
mod listener;
mod wasm;

use serde::Deserialize;

pub use cluster::*;
pub use common::*;
pub use listener::*;
pub use wasm::*;

/// `envoy.config.bootstrap.v3.Bootstrap`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bootstrap {
    /// Listeners and clusters.
    #[serde(default)]
    pub static_resources: StaticResources,
    /// `envoy.bootstrap.wasm` services (the singleton verifier).
    #[serde(default)]
    pub bootstrap_extensions: Vec<BootstrapExtension>,
    /// The admin listener.
    pub admin: Option<Admin>,
}

/// `static_resources`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticResources {
    /// Downstream listeners.
    #[serde(default)]
    pub listeners: Vec<Listener>,
    /// Upstream clusters.
    #[serde(default)]
    pub clusters: Vec<Cluster>,
}

/// `admin`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// Where the admin listener binds.
    pub address: Address,
}
