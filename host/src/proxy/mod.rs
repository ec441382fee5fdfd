//! The proxy: what Envoy's listener, HTTP connection manager, router and cluster manager do
//! for the bootstrap subset we run.
//!
//! - [`listener`]: `SO_REUSEPORT` sockets, accept loop, HTTP/1.1 keep-alive, the request path
//!   (Wasm filters via [`crate::stream::run_filter_chain`], then the router).
//! - [`router`]: virtual host and prefix route, `cluster` / `cluster_header`, route timeout.
//! - [`cluster`]: per-worker clusters, round-robin, upstream failure → local reply, and the
//!   [`crate::seam::ClusterManager`] for `dispatch_http_call`.
//! - [`pool`]: keep-alive HTTP/1 connections per upstream host.
//! - [`connector`]: TCP + optional TLS (rustls, SNI).
//! - [`local_reply`]: Envoy's local replies, response flags and code details.

pub mod cluster;
pub mod connector;
pub mod listener;
pub mod local_reply;
pub mod pool;
pub mod router;

pub use cluster::Clusters;
pub use listener::{bind_reuseport, drained, serve, ListenerContext};
pub use local_reply::{flags, LocalReply};
pub use router::Router;
