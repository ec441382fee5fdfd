//! A mock upstream HTTP/1.1 server that can be told to fail.
//!
//! The failover filter's end-to-end tests, the host's `demo`, and the `mock-upstream` binary
//! all use it: start one with [`spawn`] (or [`spawn_with`] to name it), change what it answers
//! with [`MockUpstream::set_mode`] / [`MockUpstream::set_schedule`], and read what really
//! reached it with [`MockUpstream::stats`] and [`MockUpstream::requests`].
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use failover_examples::mock::{self, FailMode, MockOptions, Schedule};
//! let m = mock::spawn_with("127.0.0.1:0".parse().unwrap(), Schedule::default(),
//!                          MockOptions::named("a")).await?;
//! m.set_mode(FailMode::status(503)).await;   // every request now gets a 503
//! let s = m.stats();
//! println!("{} requests, {} down transitions", s.requests, s.down_transitions);
//! # Ok(()) }
//! ```
//!
//! Modules: [`mode`] (what to answer and the text syntax), `stats` (counters), `server`
//! (listening, connections, the handler), `respond` (answer texts), [`control`] (HTTP control API).

mod body;
pub mod control;
pub mod mode;
pub mod respond;
mod server;
mod stats;

pub use control::{spawn_control, ControlServer};
pub use mode::{FailMode, ModeParseError, Schedule};
pub use server::{spawn, spawn_with, MockOptions, MockUpstream};
pub use stats::{MockStats, RequestRecord};
