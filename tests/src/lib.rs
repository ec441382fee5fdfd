//! The end-to-end suites of `failover` live in `tests/`: the real `.wasm` in the real
//! `failover-host` binary, over real HTTP, against mock upstreams. Everything they share (the
//! bootstrap builder, the host process, the HTTP senders, the mocks, `eventually`) is the
//! `failover-testkit` crate; this library is empty on purpose.
