//! The dependency audit (issue 8): the vendored RustSec snapshot is readable and really
//! catches a vulnerable version, and our own locked graph passes deny.toml.

use std::path::{Path, PathBuf};

use failover_dep_audit::{self as dep_audit, advisory, Level, Package};

fn root() -> PathBuf {
    // This crate is `tools/dep-audit/` in the workspace.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("workspace root")
        .to_path_buf()
}

fn snapshot() -> Vec<advisory::Advisory> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(root().join("deny/advisory-db/crates")).expect("snapshot") {
        for file in std::fs::read_dir(dir.expect("entry").path()).expect("crate dir") {
            let path = file.expect("file").path();
            let text = std::fs::read_to_string(&path).expect("read");
            out.push(advisory::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
        }
    }
    out
}

#[test]
fn the_vendored_snapshot_parses_and_catches_a_known_vulnerable_version() {
    let advisories = snapshot();
    assert!(advisories.len() > 50, "{} advisories", advisories.len());
    let policy = dep_audit::parse_policy(
        &std::fs::read_to_string(root().join("deny.toml")).expect("deny.toml"),
    )
    .expect("deny.toml parses");
    let old_tokio = Package {
        name: "tokio".into(),
        version: semver::Version::parse("1.8.0").expect("version"),
        license: Some("MIT".into()),
        license_file: None,
        source: Some("registry+https://github.com/rust-lang/crates.io-index".into()),
        workspace: false,
        unpublished: false,
        deps: vec![],
    };
    let found = dep_audit::check_advisories(&policy.advisories, &[old_tokio], &advisories);
    assert!(
        found
            .iter()
            .any(|f| f.level == Level::Error && f.message.starts_with("RUSTSEC-2021-0072")),
        "{found:?}"
    );
}

#[test]
fn our_locked_graph_passes_deny_toml() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dep-audit"))
        .arg("--root")
        .arg(root())
        .output()
        .expect("run dep-audit");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "dep-audit failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("licenses: "), "{stdout}");
    assert!(stdout.contains("dep-audit: ok"), "{stdout}");
}
