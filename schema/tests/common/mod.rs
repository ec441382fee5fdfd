//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::path::PathBuf;

/// A file of the repository, by its path from the root.
pub fn repo_file(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

/// The shipped bootstrap's text.
pub fn shipped_yaml() -> String {
    let path = repo_file("envoy/envoy.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The shipped bootstrap with the first occurrence of `from` replaced by `to`; fails the test
/// when `from` is not there, so a changed fixture cannot make a mutation test vacuous.
pub fn mutated(from: &str, to: &str) -> String {
    let text = shipped_yaml();
    assert!(
        text.contains(from),
        "envoy/envoy.yaml no longer contains {from:?}"
    );
    text.replacen(from, to, 1)
}
