//! The bootstraps we ship decode under Envoy's schema.

use std::path::PathBuf;

use failover_envoy_schema::{validate_file, PluginKind};

fn repo_file(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

#[test]
fn shipped_envoy_yaml_is_valid() {
    let validated = match validate_file(&repo_file("envoy/envoy.yaml")) {
        Ok(v) => v,
        Err(e) => panic!("envoy/envoy.yaml: {e}"),
    };
    let plugins = validated.plugins();
    for p in plugins {
        eprintln!("{p:#?}");
    }
    assert_eq!(plugins.len(), 2);
}
