//! failover: a proxy-wasm filter that spreads traffic over several upstream endpoints, fails
//! over when one breaks, parks broken endpoints in a shared failure queue — counting each
//! failure exactly once across all Envoy worker VMs — and brings them back when a background
//! check sees them answer again.
//!
//! The decisions live in pure modules that never touch the ABI, so they are unit-tested
//! natively: [`config`], [`select`], [`classify`], [`state`], [`store`], [`retry_after`],
//! [`status`], [`probe`], and fleet mode's [`fleet`]. The proxy-wasm glue (root context, HTTP context, verifier) exists only
//! when built for `wasm32`.
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod attempt;
pub mod classify;
pub mod config;
pub mod envoy;
pub mod fleet;
pub mod json;
pub mod probe;
pub mod retry_after;
pub mod select;
pub mod state;
pub mod status_page;
pub mod store;

#[cfg(target_arch = "wasm32")]
mod glue;

// The ABI's byte encodings are plain functions: their golden-byte tests run natively.
#[cfg(all(test, not(target_arch = "wasm32")))]
#[path = "glue/abi/codec.rs"]
mod abi_codec;
