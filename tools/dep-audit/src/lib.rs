//! `dep-audit`: the checks of our `deny.toml` (licences, bans, sources, advisories) run offline
//! and fast, for CI machines that can neither install cargo-deny in time (33 minutes of build on
//! 2 cores) nor reach github.com for the RustSec database.
//!
//! Same policy file as `cargo deny check`; what it reads from it:
//! - `[licenses] allow`, `exceptions` (`{ name, allow }`), `private.ignore`;
//! - `[bans] deny` (`{ name }`, optional `version`), `multiple-versions`, `wildcards`,
//!   `allow-wildcard-paths`;
//! - `[sources] unknown-registry`, `unknown-git`, `allow-registry`, `allow-git`;
//! - `[advisories] ignore` (ids, or `{ id, reason }`), `unmaintained`, `unsound`
//!   (`all` / `workspace` / `transitive` / `none`, cargo-deny's v2 scopes).
//!
//! Not done here: `yanked` (needs the crates.io index, online) and the licence text detection
//! behind `confidence-threshold`; `cargo deny check` does both where it can run.
//! Advisories come from the vendored snapshot in `deny/advisory-db/` (`deny/refresh-advisories`).

pub mod advisory;
pub mod spdx;

mod checks;
mod graph;
mod policy;
#[cfg(test)]
mod tests;

pub use checks::*;
pub use graph::*;
pub use policy::*;
