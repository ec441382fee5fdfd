//! The plugin JSON inside our Envoy configs is accepted by the filter's own parser — the same
//! code that runs in the `.wasm` — and names only clusters the bootstrap defines.

mod common;

use failover_envoy_schema::validate_file;
use failover_filter::config::Config;

/// The environment Envoy would give the VM (`host_env_keys`), with a dummy key.
fn env_with_key(name: &str) -> Option<String> {
    (name == "ANTHROPIC_API_KEY").then(|| "test-key".to_owned())
}

#[test]
fn every_plugin_json_in_envoy_yaml_parses_and_names_existing_clusters() {
    let validated = validate_file(&common::repo_file("envoy/envoy.yaml"))
        .unwrap_or_else(|e| panic!("envoy/envoy.yaml: {e}"));
    assert!(!validated.plugins().is_empty());
    for plugin in validated.plugins() {
        let json = plugin
            .configuration_str()
            .unwrap_or_else(|| panic!("{}: configuration is not a string", plugin.path));
        let config = Config::parse(json.as_bytes(), &env_with_key)
            .unwrap_or_else(|e| panic!("{}.configuration: {e}", plugin.path));
        for endpoint in &config.endpoints {
            assert!(
                validated.static_clusters().contains(&endpoint.cluster),
                "{}: endpoint {} uses cluster {:?}, which the bootstrap does not define",
                plugin.path,
                endpoint.id,
                endpoint.cluster
            );
        }
    }
}

#[test]
fn plugin_json_needs_the_api_key_from_the_environment() {
    let validated = validate_file(&common::repo_file("envoy/envoy.yaml"))
        .unwrap_or_else(|e| panic!("envoy/envoy.yaml: {e}"));
    let plugin = &validated.plugins()[0];
    let json = plugin.configuration_str().unwrap_or_default();
    let err = Config::parse(json.as_bytes(), &|_| None);
    assert!(
        err.is_err(),
        "a missing ANTHROPIC_API_KEY must be a config error"
    );
}
