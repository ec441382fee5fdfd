//! A small HTTP/1.1 load generator: N keep-alive connections, each sending one request at a
//! time, for a duration, a number of requests, or until stopped; optional total rate.
//!
//! Used by the host's `demo` (a steady traffic loop with a live view, through
//! [`LoadConfig::observer`] and [`LoadRun::snapshot`]), by the end-to-end tests (client-visible
//! errors, which upstream answered), and by the `loadgen` binary.
//!
//! ```no_run
//! # async fn demo() -> Result<(), failover_examples::load::LoadError> {
//! use failover_examples::load::{self, LoadConfig, Stop, MESSAGES_BODY};
//! let mut cfg = LoadConfig::new("http://127.0.0.1:10000/v1/messages")?.post_json(MESSAGES_BODY);
//! cfg.concurrency = 16;
//! cfg.stop = Stop::Requests(1_000);
//! let report = load::run(cfg).await?;
//! println!("{report}");           // ok/failed, by status, by x-mock-name, p50/p99
//! # Ok(()) }
//! ```

mod config;
mod histogram;
mod report;
mod runner;

pub use config::{LoadConfig, LoadError, Observer, Stop, MESSAGES_BODY};
pub use histogram::{Histogram, LatencySummary};
pub use report::{ErrorKind, LoadReport, Outcome};
pub use runner::{run, start, LoadRun};
