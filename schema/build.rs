//! Compiles the part of Envoy's protobuf API that our bootstraps use into a descriptor set.
//!
//! The `.proto` files are not in this repository: they are read from the `envoy-types` package
//! in the cargo registry (see `Cargo.toml` for why that package is declared but never built).
//! Where that package lives is asked from `cargo metadata`, which also downloads it when it is
//! missing, so a fresh checkout with an empty cargo home still builds. Setting
//! `FAILOVER_ENVOY_PROTO_DIR` to a directory laid out like `envoy-types/proto` skips the lookup
//! (for offline or vendored builds).
//!
//! Output: `$OUT_DIR/envoy_descriptors.bin`, an encoded `FileDescriptorSet` holding the roots
//! below and everything they import.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The package whose `proto/` directory holds Envoy's API with its dependencies.
const PROTO_PACKAGE: &str = "envoy-types";

/// Environment override: a directory with `data-plane-api/`, `xds/`, … like `envoy-types/proto`.
const PROTO_DIR_ENV: &str = "FAILOVER_ENVOY_PROTO_DIR";

/// Include directories inside the package's `proto/` directory (imports resolve against these).
const INCLUDE_DIRS: &[&str] = &[
    "data-plane-api",
    "xds",
    "protoc-gen-validate",
    "googleapis",
    "cel-spec/proto",
    "opentelemetry-proto",
    "client_model",
];

/// The files whose messages our YAML uses, directly or as an `Any` (`@type`) payload. A
/// `typed_config` naming a type outside this closure is reported as "message … not found".
const ROOTS: &[&str] = &[
    "envoy/config/bootstrap/v3/bootstrap.proto",
    "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
    "envoy/extensions/filters/http/wasm/v3/wasm.proto",
    "envoy/extensions/filters/http/router/v3/router.proto",
    "envoy/extensions/wasm/v3/wasm.proto",
    "envoy/extensions/transport_sockets/tls/v3/tls.proto",
    "google/protobuf/wrappers.proto",
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed={PROTO_DIR_ENV}");
    if let Err(message) = run() {
        // A build script reports failure by exiting non-zero; the message is shown verbatim.
        eprintln!("error: failover-envoy-schema: {message}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let proto_dir = match env::var_os(PROTO_DIR_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => locate_package_proto_dir()?,
    };
    let includes: Vec<PathBuf> = INCLUDE_DIRS.iter().map(|d| proto_dir.join(d)).collect();
    if let Some(missing) = includes.iter().find(|d| !d.is_dir()) {
        return Err(format!(
            "{} has no {} directory; expected the layout of the `{PROTO_PACKAGE}` package's proto/",
            proto_dir.display(),
            missing.display()
        ));
    }

    let started = Instant::now();
    let mut compiler = protox::Compiler::new(&includes).map_err(|e| e.to_string())?;
    compiler.include_imports(true).include_source_info(false);
    compiler.open_files(ROOTS).map_err(|e| {
        format!(
            "compiling Envoy's .proto files from {}: {e}",
            proto_dir.display()
        )
    })?;
    let encoded = compiler.encode_file_descriptor_set();

    let out = PathBuf::from(env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?)
        .join("envoy_descriptors.bin");
    fs::write(&out, &encoded).map_err(|e| format!("writing {}: {e}", out.display()))?;
    // Kept next to the output rather than printed: a cargo warning on every build is noise.
    let stats = format!(
        "files: {}\nbytes: {}\ncompile: {:?}\nproto_dir: {}\n",
        compiler.files().count(),
        encoded.len(),
        started.elapsed(),
        proto_dir.display()
    );
    let stats_path = out.with_file_name("envoy_descriptors.stats");
    fs::write(&stats_path, stats).map_err(|e| format!("writing {}: {e}", stats_path.display()))?;
    for root in ROOTS.iter().filter(|r| !r.starts_with("google/protobuf/")) {
        println!(
            "cargo:rerun-if-changed={}",
            proto_dir.join("data-plane-api").join(root).display()
        );
    }
    Ok(())
}

/// Finds `<envoy-types package>/proto` through `cargo metadata` for this workspace, which
/// resolves the version pinned in `Cargo.lock` and downloads the package if it is not cached.
fn locate_package_proto_dir() -> Result<PathBuf, String> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest_dir = env::var_os("CARGO_MANIFEST_DIR").ok_or("CARGO_MANIFEST_DIR is not set")?;
    let manifest = Path::new(&manifest_dir).join("Cargo.toml");
    let output = Command::new(&cargo)
        .arg("metadata")
        .args(["--format-version", "1", "--manifest-path"])
        .arg(&manifest)
        .output()
        .map_err(|e| {
            format!("running `cargo metadata` to find the `{PROTO_PACKAGE}` package: {e}")
        })?;
    if !output.status.success() {
        return Err(format!(
            "`cargo metadata` failed while looking for the `{PROTO_PACKAGE}` package (it holds \
             Envoy's .proto files; set {PROTO_DIR_ENV} to its proto/ directory to build \
             offline):\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("`cargo metadata` printed invalid JSON: {e}"))?;
    let packages = metadata["packages"]
        .as_array()
        .ok_or("`cargo metadata` lists no packages")?;
    let manifest_path = packages
        .iter()
        .find(|p| p["name"] == PROTO_PACKAGE)
        .and_then(|p| p["manifest_path"].as_str())
        .ok_or_else(|| {
            format!(
                "the `{PROTO_PACKAGE}` package is not in this workspace's dependency graph; \
                 schema/Cargo.toml must declare it (it holds Envoy's .proto files), or set \
                 {PROTO_DIR_ENV}"
            )
        })?;
    let proto_dir = Path::new(manifest_path)
        .parent()
        .map(|p| p.join("proto"))
        .ok_or("`cargo metadata` gave a manifest path without a parent directory")?;
    if !proto_dir.is_dir() {
        return Err(format!(
            "{} does not exist: the `{PROTO_PACKAGE}` package was found but has no proto/ \
             directory (was its version changed?)",
            proto_dir.display()
        ));
    }
    Ok(proto_dir)
}
