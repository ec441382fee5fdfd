//! Builds `failover-filter` for `wasm32-wasip1` and hands its path to the host as
//! `FAILOVER_FILTER_WASM`, so `cargo run -p failover-host` and `cargo test` need no manual
//! build step (the substrate-wasm-builder pattern).
//!
//! The nested cargo uses its own target dir (`target/wasm-filter`), so it never waits on the
//! lock the outer build holds, and the workspace's `wasm` profile (size first: issue 16,
//! bench/WASM_SIZE.md). Set `FAILOVER_WASM=/path/to/filter.wasm` to embed a prebuilt module
//! instead.
//!
//! If binaryen's `wasm-opt` is available — named by `WASM_OPT`, or else found on `PATH` — the
//! module is shrunk further with `wasm-opt -Oz` (which also validates its output); without it
//! the step is skipped with a warning. `WASM_OPT=off` skips it silently.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip1";
/// The cargo profile the filter is built with (`[profile.wasm]` in the workspace Cargo.toml).
const PROFILE: &str = "wasm";
/// The Wasm features rustc's `wasm32-wasip1` output uses; wasm-opt must be told to allow them.
const WASM_OPT_FEATURES: [&str; 4] = [
    "--enable-bulk-memory",
    "--enable-sign-ext",
    "--enable-mutable-globals",
    "--enable-nontrapping-float-to-int",
];

fn main() {
    if env::var_os("CARGO_FEATURE_RUNTIME").is_none() {
        // Only the parsers are built (the fuzz targets): nothing embeds the filter.
        return;
    }
    println!("cargo:rerun-if-env-changed=FAILOVER_WASM");
    println!("cargo:rerun-if-env-changed=WASM_OPT");
    if let Ok(prebuilt) = env::var("FAILOVER_WASM") {
        println!("cargo:rerun-if-changed={prebuilt}");
        println!("cargo:rustc-env=FAILOVER_FILTER_WASM={prebuilt}");
        return;
    }

    let manifest_dir =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .parent()
        .expect("host/ lives inside the workspace")
        .to_path_buf();
    for watched in [
        "filter/src",
        "filter/Cargo.toml",
        "Cargo.lock",
        "Cargo.toml",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    ensure_target_installed();

    let target_dir = workspace.join("target").join("wasm-filter");
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&workspace)
        .args([
            "build",
            "--profile",
            PROFILE,
            "-p",
            "failover-filter",
            "--lib",
            "--target",
            TARGET,
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    // The outer build's flags and target settings are for the host, not for the module.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_LLVM_COV",
        "LLVM_PROFILE_FILE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("could not run `{cargo}` to build the filter: {e}"));
    if !status.success() {
        panic!("building failover-filter for {TARGET} failed (see the errors above)");
    }

    let wasm = target_dir
        .join(TARGET)
        .join(PROFILE)
        .join("failover_filter.wasm");
    if !wasm.exists() {
        panic!(
            "the filter build succeeded but {} is missing",
            wasm.display()
        );
    }
    let wasm = optimise(&wasm);
    println!("cargo:rustc-env=FAILOVER_FILTER_WASM={}", wasm.display());
}

/// Runs `wasm-opt -Oz` over the module when binaryen is available and returns the module to
/// embed: the optimised one, or `wasm` itself when the step is skipped. An explicitly named
/// `WASM_OPT` that fails stops the build; a `wasm-opt` merely found on `PATH` that fails only
/// warns.
fn optimise(wasm: &Path) -> PathBuf {
    let (tool, explicit) = match env::var("WASM_OPT") {
        Ok(v) if v == "off" || v == "0" => return wasm.to_path_buf(),
        Ok(v) if !v.is_empty() => (PathBuf::from(v), true),
        _ => match find_on_path("wasm-opt") {
            Some(found) => (found, false),
            None => {
                println!(
                    "cargo:warning=wasm-opt not found: embedding the filter without `wasm-opt -Oz` \
                     (apt-get install binaryen, or npm install binaryen and put node_modules/.bin on PATH or set WASM_OPT; \
                     WASM_OPT=off silences this)"
                );
                return wasm.to_path_buf();
            }
        },
    };
    let out = wasm.with_file_name("failover_filter.opt.wasm");
    let result = Command::new(&tool)
        .arg("-Oz")
        .args(WASM_OPT_FEATURES)
        .arg(wasm)
        .arg("-o")
        .arg(&out)
        .status();
    match result {
        Ok(status) if status.success() && out.exists() => out,
        other => {
            let why = match other {
                Ok(status) => format!("exited with {status}"),
                Err(e) => e.to_string(),
            };
            if explicit {
                panic!("WASM_OPT={}: `wasm-opt -Oz` failed: {why}", tool.display());
            }
            println!(
                "cargo:warning={}: `wasm-opt -Oz` failed ({why}); embedding the unoptimised filter",
                tool.display()
            );
            wasm.to_path_buf()
        }
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Fails early with the one command that fixes a missing target, instead of a wall of
/// "can't find crate for `core`" errors.
fn ensure_target_installed() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| PathBuf::from(s.trim()));
    if let Some(sysroot) = sysroot {
        let lib = sysroot.join("lib").join("rustlib").join(TARGET);
        if !Path::new(&lib).exists() {
            panic!(
                "\n\nThe Rust target {TARGET} is not installed; failover-host embeds the filter built for it.\n\
                 Run:\n\n    rustup target add {TARGET}\n\nthen build again.\n"
            );
        }
    }
}
