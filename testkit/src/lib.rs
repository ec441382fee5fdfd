//! The one test kit of the workspace, for every test that runs `failover-host` as a process or
//! writes an Envoy bootstrap:
//!
//! - [`bootstrap`]: the bootstrap builder (listeners, routes, Wasm filters, clusters, admin,
//!   singleton services); no test writes bootstrap YAML by hand.
//! - [`host`]: [`Launch`] and [`Host`], the process (spawn, wait for `/ready` or a logged
//!   address, logs, signals, reload, exit), and [`host_binary`] for crates other than the host.
//! - [`send`]: the HTTP clients (hyper, raw bytes, and byte-level synchronous [`send::wire`]).
//! - [`upstream`]: upstreams to proxy to (a raw one, and the scriptable mock of
//!   `failover-examples`).
//! - [`eventually`]: bounded polling.
//! - [`etcd`]: a real etcd cluster on loopback (the fleet suites), killable member by member.
//! - [`failover`]: the failover filter's preset ([`Setup`], [`plugin_config`], status accessors).
//!
//! It does not depend on the `failover-host` library (a dev-dependency cycle would build the host
//! twice); tests of the host package pass `env!("CARGO_BIN_EXE_failover-host")` to [`Launch`].

#![deny(missing_docs)]

pub mod bootstrap;
pub mod etcd;
pub mod eventually;
pub mod failover;
pub mod host;
pub mod send;
pub mod upstream;

pub use bootstrap::{BootstrapBuilder, Cluster, Listener, Route, WasmPlugin};
pub use eventually::{eventually, eventually_blocking};
pub use failover::{
    endpoint, is_parked, merge, plugin_config, stat, Setup, BODY, ROUTE_HEADER, STREAM_BODY,
};
pub use host::{
    free_addr, free_port, host_binary, rss_kib, run_host_to_exit, Host, Launch, Output,
};
pub use send::{
    get, parse_response, raw_exchange, raw_request, send, send_partial, Answer, HeldRequest,
    PartialAnswer,
};
pub use upstream::{load, mock, mock_upstream};
