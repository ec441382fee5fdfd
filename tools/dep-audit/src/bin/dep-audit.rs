//! `dep-audit`: enforces `deny.toml` on our locked dependency graph, offline — licences,
//! bans, sources, and advisories from the vendored RustSec snapshot in `deny/advisory-db/`.
//! What it covers and what it leaves to `cargo deny check`: `failover_dep_audit`.
//!
//! `cargo run -p failover-dep-audit --bin dep-audit [-- --root DIR]`; exit 1 on any error finding.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{bail, Context as _};
use failover_dep_audit::{self as dep_audit, advisory, Finding, Level};

fn workspace_root() -> PathBuf {
    // This crate is `tools/dep-audit/` in the workspace.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn load_advisories(dir: &Path) -> anyhow::Result<Vec<advisory::Advisory>> {
    let crates = dir.join("crates");
    let mut out = Vec::new();
    let entries = std::fs::read_dir(&crates)
        .with_context(|| format!("reading the advisory snapshot {}", crates.display()))?;
    for entry in entries {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(entry.path())? {
            let path = file?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("md") {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            out.push(advisory::parse(&text).with_context(|| format!("{}", path.display()))?);
        }
    }
    Ok(out)
}

fn snapshot_date(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("SNAPSHOT"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("date: ").map(str::to_string))
        })
        .unwrap_or_else(|| "unknown date".into())
}

fn print(findings: &[Finding]) -> (usize, usize) {
    for f in findings {
        let level = match f.level {
            Level::Error => "error",
            Level::Warning => "warning",
        };
        println!("{level}[{}] {}", f.check, f.message);
    }
    let errors = findings.iter().filter(|f| f.level == Level::Error).count();
    (errors, findings.len() - errors)
}

fn run() -> anyhow::Result<bool> {
    let started = Instant::now();
    let mut args = std::env::args().skip(1);
    let mut root = workspace_root();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--root" => root = PathBuf::from(args.next().context("--root needs a directory")?),
            "-h" | "--help" => {
                println!("usage: dep-audit [--root WORKSPACE_DIR]\nChecks deny.toml (licenses, bans, sources, advisories from deny/advisory-db) offline.");
                return Ok(true);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    let policy_path = root.join("deny.toml");
    let policy_text = std::fs::read_to_string(&policy_path)
        .with_context(|| format!("reading {}", policy_path.display()))?;
    let policy = dep_audit::parse_policy(&policy_text)
        .with_context(|| format!("{}", policy_path.display()))?;

    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--manifest-path",
        ])
        .arg(root.join("Cargo.toml"))
        .output()
        .context("running cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("cargo metadata printed no JSON")?;
    let pkgs = dep_audit::packages(&metadata)?;

    let snapshot = root.join("deny/advisory-db");
    let advisories = load_advisories(&snapshot)?;

    let mut errors = 0;
    let (lic, checked) = dep_audit::check_licenses(&policy.licenses, &pkgs);
    let (e, w) = print(&lic);
    errors += e;
    println!("licenses: {checked} crates checked, {e} errors, {w} warnings");
    let (e, w) = print(&dep_audit::check_bans(&policy.bans, &pkgs));
    errors += e;
    println!("bans: {e} errors, {w} warnings");
    let (e, w) = print(&dep_audit::check_sources(&policy.sources, &pkgs));
    errors += e;
    println!("sources: {e} errors, {w} warnings");
    let (e, w) = print(&dep_audit::check_advisories(
        &policy.advisories,
        &pkgs,
        &advisories,
    ));
    errors += e;
    println!(
        "advisories: {} advisories of the snapshot ({}) against {} packages: {e} errors, {w} warnings",
        advisories.len(),
        snapshot_date(&snapshot),
        pkgs.len()
    );
    println!(
        "dep-audit: {} in {} ms (not checked offline: yanked versions; run `cargo deny check` where it can run)",
        if errors == 0 { "ok" } else { "FAILED" },
        started.elapsed().as_millis()
    );
    Ok(errors == 0)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("dep-audit: {e:#}");
            ExitCode::from(2)
        }
    }
}
