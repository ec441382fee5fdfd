//! The deployment files next to envoy.yaml that we cannot run here (no container engine, no
//! Kubernetes): checked for shape, and against envoy.yaml and the filter's config parser.

mod common;

use serde::Deserialize;
use serde_yaml_ng::Value;

use failover_envoy_schema::validate_file;
use failover_filter::config::Config;

fn yaml_documents(relative: &str) -> Vec<Value> {
    let path = common::repo_file(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{relative}: {e}")))
        .collect()
}

/// `value[a][b]…` as a string, failing the test with the path when absent.
fn str_at<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    let mut current = value;
    for key in path {
        current = current
            .get(key)
            .unwrap_or_else(|| panic!("missing {}", path.join(".")));
    }
    current
        .as_str()
        .unwrap_or_else(|| panic!("{} is not a string", path.join(".")))
}

fn env_with_key(name: &str) -> Option<String> {
    (name == "ANTHROPIC_API_KEY").then(|| "test-key".to_owned())
}

// ===== docker-compose.yaml =====

#[test]
fn compose_mounts_the_wasm_and_config_where_envoy_yaml_expects_them() {
    let docs = yaml_documents("envoy/docker-compose.yaml");
    assert_eq!(docs.len(), 1);
    let envoy = &docs[0]["services"]["envoy"];
    assert!(str_at(envoy, &["image"]).starts_with("envoyproxy/envoy:"));

    let mounts: Vec<&str> = envoy["volumes"]
        .as_sequence()
        .unwrap_or_else(|| panic!("services.envoy.volumes is not a list"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let validated = validate_file(&common::repo_file("envoy/envoy.yaml"))
        .unwrap_or_else(|e| panic!("envoy/envoy.yaml: {e}"));
    for plugin in validated.plugins() {
        let filename = plugin.code_filename.as_deref().unwrap_or_default();
        assert!(
            mounts.iter().any(|m| m.split(':').nth(1) == Some(filename)),
            "{}: {filename} is not mounted by docker-compose ({mounts:?})",
            plugin.path
        );
    }
    assert!(mounts
        .iter()
        .any(|m| m.starts_with("./envoy.yaml:/etc/envoy/envoy.yaml")));

    // The key the VMs read through host_env_keys reaches Envoy's environment.
    assert!(envoy["environment"].get("ANTHROPIC_API_KEY").is_some());

    // The mocks share Envoy's network namespace, so envoy.yaml's 127.0.0.1 clusters reach them.
    let mocks = &docs[0]["services"]["mocks"];
    assert_eq!(str_at(mocks, &["network_mode"]), "service:envoy");
    let command = serde_yaml_ng::to_string(&mocks["command"]).unwrap_or_default();
    for port in ["127.0.0.1:8081", "127.0.0.1:8082"] {
        assert!(command.contains(port), "mocks do not listen on {port}");
    }
}

// ===== docker-compose-fleet.yaml =====

/// The mounts of a compose service, as `host:container[:mode]` strings.
fn mounts(service: &Value, name: &str) -> Vec<String> {
    service["volumes"]
        .as_sequence()
        .unwrap_or_else(|| panic!("services.{name}.volumes is not a list"))
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

#[test]
fn fleet_compose_runs_two_proxies_on_one_etcd_and_one_set_of_mocks() {
    let mut docs = yaml_documents("envoy/docker-compose-fleet.yaml");
    assert_eq!(docs.len(), 1);
    // Compose applies YAML merge keys (`<<: *proxy`); so do we, before looking.
    docs[0]
        .apply_merge()
        .unwrap_or_else(|e| panic!("merge keys: {e}"));
    let services = &docs[0]["services"];
    let validated = validate_file(&common::repo_file("envoy/envoy-fleet.yaml"))
        .unwrap_or_else(|e| panic!("envoy/envoy-fleet.yaml: {e}"));

    let mut published = Vec::new();
    for name in ["proxy-a", "proxy-b"] {
        let proxy = &services[name];
        assert!(
            str_at(proxy, &["image"]).starts_with("envoyproxy/envoy:"),
            "{name}"
        );
        // Each proxy is its own fleet member: HOSTNAME (host_env_keys) is the service's hostname.
        assert_eq!(str_at(proxy, &["hostname"]), name);
        assert!(
            proxy["environment"].get("ANTHROPIC_API_KEY").is_some(),
            "{name}"
        );
        let m = mounts(proxy, name);
        assert!(
            m.iter()
                .any(|m| m.starts_with("./envoy-fleet.yaml:/etc/envoy/envoy.yaml")),
            "{name} does not run envoy-fleet.yaml: {m:?}"
        );
        for plugin in validated.plugins() {
            let filename = plugin.code_filename.as_deref().unwrap_or_default();
            assert!(
                m.iter().any(|m| m.split(':').nth(1) == Some(filename)),
                "{name}: {filename} is not mounted ({m:?})"
            );
        }
        let ports = serde_yaml_ng::to_string(&proxy["ports"]).unwrap_or_default();
        let host_port = ports
            .lines()
            .find_map(|l| {
                l.trim_start_matches("- ")
                    .trim_matches('\'')
                    .strip_suffix(":10000")
            })
            .unwrap_or_else(|| panic!("{name} does not publish its listener :10000: {ports}"))
            .to_owned();
        published.push(host_port);
    }
    assert_ne!(published[0], published[1], "both proxies on one host port");

    // envoy-fleet.yaml reaches etcd and the mocks on 127.0.0.1: they live in proxy-a's
    // namespace, and the relay gives proxy-b the same loopback addresses.
    let etcd = &services["etcd"];
    assert_eq!(str_at(etcd, &["network_mode"]), "service:proxy-a");
    let etcd_cmd = serde_yaml_ng::to_string(&etcd["command"]).unwrap_or_default();
    assert!(
        etcd_cmd.contains("--listen-client-urls=http://0.0.0.0:2379"),
        "{etcd_cmd}"
    );
    let mocks = &services["mocks"];
    assert_eq!(str_at(mocks, &["network_mode"]), "service:proxy-a");
    let relay = &services["relay"];
    assert_eq!(str_at(relay, &["network_mode"]), "service:proxy-b");
    let relay_cmd = serde_yaml_ng::to_string(&relay["command"]).unwrap_or_default();
    let mocks_cmd = serde_yaml_ng::to_string(&mocks["command"]).unwrap_or_default();
    for port in ["2379", "8081", "8082"] {
        assert!(
            relay_cmd.contains(&format!("TCP-LISTEN:{port},bind=127.0.0.1"))
                && relay_cmd.contains(&format!("TCP:proxy-a:{port}")),
            "the relay does not forward 127.0.0.1:{port} to proxy-a: {relay_cmd}"
        );
    }
    for port in ["0.0.0.0:8081", "0.0.0.0:8082"] {
        assert!(
            mocks_cmd.contains(port),
            "mocks do not listen on {port} (the relay needs it)"
        );
    }
    // …and those are the addresses envoy-fleet.yaml's clusters name.
    let fleet_yaml =
        std::fs::read_to_string(common::repo_file("envoy/envoy-fleet.yaml")).unwrap_or_default();
    for port in ["port_value: 2379", "port_value: 8081", "port_value: 8082"] {
        assert!(fleet_yaml.contains(port), "envoy-fleet.yaml has no {port}");
    }
}

// ===== istio-wasmplugin.yaml =====

fn istio_kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind} in istio-wasmplugin.yaml"))
}

#[test]
fn istio_plugin_config_is_accepted_by_the_filter_parser() {
    let docs = yaml_documents("envoy/istio-wasmplugin.yaml");
    let plugin = istio_kind(&docs, "WasmPlugin");
    assert_eq!(
        str_at(plugin, &["apiVersion"]),
        "extensions.istio.io/v1alpha1"
    );
    assert_eq!(str_at(plugin, &["spec", "pluginName"]), "failover");

    // Istio hands pluginConfig to the plugin as JSON text, like envoy.yaml's StringValue.
    let json = serde_json::to_vec(&plugin["spec"]["pluginConfig"]).unwrap_or_default();
    let config =
        Config::parse(&json, &env_with_key).unwrap_or_else(|e| panic!("pluginConfig: {e}"));
    assert_eq!(config.endpoints.len(), 3);

    let env = plugin["spec"]["vmConfig"]["env"]
        .as_sequence()
        .cloned()
        .unwrap_or_default();
    assert!(
        env.iter()
            .any(|e| e["name"].as_str() == Some("ANTHROPIC_API_KEY")
                && e["valueFrom"].as_str() == Some("HOST")),
        "vmConfig.env must pass ANTHROPIC_API_KEY from the proxy's environment"
    );
}

#[test]
fn istio_routes_every_endpoint_cluster_by_the_route_header() {
    let docs = yaml_documents("envoy/istio-wasmplugin.yaml");
    let json = serde_json::to_vec(&istio_kind(&docs, "WasmPlugin")["spec"]["pluginConfig"])
        .unwrap_or_default();
    let config =
        Config::parse(&json, &env_with_key).unwrap_or_else(|e| panic!("pluginConfig: {e}"));
    let routes = istio_kind(&docs, "VirtualService")["spec"]["http"]
        .as_sequence()
        .cloned()
        .unwrap_or_default();

    for endpoint in &config.endpoints {
        // Istio's cluster name: outbound|PORT|SUBSET|HOST.
        let parts: Vec<&str> = endpoint.cluster.split('|').collect();
        let [direction, port, _subset, host] = parts[..] else {
            panic!(
                "{}: {:?} is not an Istio cluster name",
                endpoint.id, endpoint.cluster
            );
        };
        assert_eq!(direction, "outbound");
        let route = routes
            .iter()
            .find(|r| {
                r["match"].as_sequence().is_some_and(|ms| {
                    ms.iter().any(|m| {
                        m["headers"]["x-failover-cluster"]["exact"].as_str()
                            == Some(endpoint.cluster.as_str())
                    })
                })
            })
            .unwrap_or_else(|| panic!("no VirtualService route matches {:?}", endpoint.cluster));
        let destination = &route["route"][0]["destination"];
        assert_eq!(destination["host"].as_str(), Some(host), "{}", endpoint.id);
        assert_eq!(
            destination["port"]["number"]
                .as_u64()
                .map(|p| p.to_string())
                .as_deref(),
            Some(port),
            "{}",
            endpoint.id
        );
    }
}
