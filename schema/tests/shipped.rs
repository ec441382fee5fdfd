//! The bootstrap we ship decodes under Envoy's schema, and what the crate reports about it.

mod common;

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

#[test]
fn every_bootstrap_under_examples_configs_is_valid() {
    let dir = common::repo_file("examples/configs");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return; // no bootstraps there (yet): nothing to check
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_yaml = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        );
        if is_yaml {
            if let Err(e) = validate_file(&path) {
                panic!("{}: {e}", path.display());
            }
        }
    }
}
