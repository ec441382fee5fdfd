//! Examples and test tools for `failover`: a mock upstream that can be told to fail
//! ([`mock`]) and a small load generator ([`load`]). The host's `demo` uses both in-process;
//! the end-to-end tests use them in-process or spawn the `mock-upstream` and `loadgen`
//! binaries.
#![deny(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod load;
pub mod mock;
