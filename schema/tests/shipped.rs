//! The bootstrap we ship decodes under Envoy's schema, and what the crate reports about it.

mod common;

use std::path::{Path, PathBuf};

use failover_envoy_schema::{validate_file, PluginConfiguration, PluginKind};

#[test]
fn shipped_envoy_yaml_is_valid_and_has_filter_and_singleton_verifier() {
    let validated = validate_file(&common::repo_file("envoy/envoy.yaml"))
        .unwrap_or_else(|e| panic!("envoy/envoy.yaml: {e}"));
    let plugins = validated.plugins();
    assert_eq!(plugins.len(), 2, "{plugins:#?}");

    let filter = &plugins[0];
    assert_eq!(filter.kind, PluginKind::HttpFilter);
    assert_eq!(
        filter.path,
        "static_resources.listeners[0].filter_chains[0].filters[0].typed_config\
         .http_filters[0].typed_config.config"
    );
    assert_eq!(filter.root_id, "failover");

    let verifier = &plugins[1];
    assert_eq!(verifier.kind, PluginKind::Service { singleton: true });
    assert_eq!(verifier.path, "bootstrap_extensions[0].typed_config.config");
    assert_eq!(verifier.root_id, "failover_verifier");

    // One vm_id, so one shared-data namespace: the verifier sees the filter's failure queue.
    assert_eq!(filter.vm_id, "failover");
    assert_eq!(verifier.vm_id, filter.vm_id);
    // The path docker-compose mounts (and failover-host's --wasm replaces).
    for plugin in plugins {
        assert_eq!(
            plugin.code_filename.as_deref(),
            Some("/etc/envoy/failover_filter.wasm")
        );
        assert!(
            matches!(&plugin.configuration, PluginConfiguration::String(s) if s.contains("\"endpoints\"")),
            "{}: configuration must be a StringValue with the plugin JSON",
            plugin.path
        );
    }
    assert_eq!(filter.configuration, verifier.configuration);
    assert_eq!(validated.static_clusters(), ["anthropic", "spare", "mock"]);
}

/// YAML files that are not Envoy bootstraps, checked by `deploy_files.rs` instead. Any other
/// YAML under `envoy/` or `examples/` must be a bootstrap, so a new one cannot slip past.
const NOT_BOOTSTRAPS: [&str; 3] = [
    "envoy/docker-compose.yaml",
    "envoy/docker-compose-fleet.yaml",
    "envoy/istio-wasmplugin.yaml",
];

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()));
    for entry in entries {
        let path = entry
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path);
        }
    }
}

/// Every bootstrap we ship — `envoy/` and `examples/`, subfolders included — decodes under
/// Envoy's schema, its plugin JSON passes the filter's own parser, and each plugin's
/// `route_header` is the header the route reads its cluster from (a mismatch would route
/// every request to no cluster at all, which no schema can see), and its `hold_headers` agrees
/// with the Wasm config's `allow_on_headers_stop_iteration` and the listener's buffer limit.
#[test]
fn every_shipped_bootstrap_is_valid_and_routes_by_the_plugins_header() {
    let root = common::repo_file("");
    let mut files = Vec::new();
    for dir in ["envoy", "examples"] {
        yaml_files(&root.join(dir), &mut files);
    }
    files.sort();
    let mut bootstraps = Vec::new();
    for path in &files {
        let relative = path
            .strip_prefix(&root)
            .unwrap_or(path)
            .to_string_lossy()
            .replace('\\', "/");
        if NOT_BOOTSTRAPS.contains(&relative.as_str()) {
            continue;
        }
        let validated = validate_file(path).unwrap_or_else(|e| panic!("{relative}: {e}"));
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{relative}: {e}"));
        let plugins = validated.plugins();
        assert!(!plugins.is_empty(), "{relative}: no failover plugin in it");
        for plugin in plugins {
            let PluginConfiguration::String(json) = &plugin.configuration else {
                panic!("{relative}: {} has no plugin JSON", plugin.path);
            };
            let config =
                failover_filter::config::Config::parse(json.as_bytes(), &|_| Some("set".into()))
                    .unwrap_or_else(|e| panic!("{relative}: {}: {e}", plugin.path));
            config
                .check_envoy_agreement(
                    plugin.allow_on_headers_stop_iteration,
                    plugin.buffer_limit_bytes.map(u64::from),
                )
                .unwrap_or_else(|e| panic!("{relative}: {}: {e}", plugin.path));
            let header = config.route_header.as_str();
            assert!(
                text.contains(&format!("cluster_header: {header}")),
                "{relative}: the plugin sets `{header}` but no route reads its cluster from it"
            );
        }
        bootstraps.push(relative);
    }
    assert!(
        bootstraps.contains(&"envoy/envoy.yaml".to_string())
            && bootstraps.contains(&"envoy/envoy-fleet.yaml".to_string())
            && bootstraps.contains(&"examples/configs/two-mocks.yaml".to_string()),
        "the scan missed a shipped bootstrap: {bootstraps:?}"
    );
}
