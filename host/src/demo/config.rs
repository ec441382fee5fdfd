//! The demo's built-in bootstrap: one listener (port 0), the failover filter from the
//! embedded module, a `cluster_header` route, one cluster per mock, the singleton verifier —
//! and for `demo --fleet` an `etcd` cluster and the plugin's `fleet` section.

use std::net::SocketAddr;

/// The shared-data namespace (`vm_id`) of the demo's plugins.
pub const VM_ID: &str = "failover_demo";
/// The header the filter writes and the route reads.
pub const ROUTE_HEADER: &str = "x-failover-cluster";

/// Fleet mode settings of one demo proxy.
#[derive(Debug, Clone)]
pub struct FleetSetup {
    /// etcd's client address.
    pub etcd: SocketAddr,
    /// `fleet.key_prefix`.
    pub key_prefix: String,
    /// `fleet.member`: this proxy's name in the fleet record.
    pub member: String,
}

/// The demo's sync interval: half the default, so that a park reaches every proxy within a
/// second while you watch.
pub const FLEET_SYNC_INTERVAL_MS: u64 = 500;

/// The plugin JSON (design.md, "Plugin configuration"): `flaky` is preferred, `steady` is
/// the fallback; the verifier re-checks parked endpoints every 2 s.
pub fn plugin_json() -> String {
    plugin_value(None).to_string()
}

fn plugin_value(fleet: Option<&FleetSetup>) -> serde_json::Value {
    let mut plugin = serde_json::json!({
        "endpoints": [
            { "name": "flaky",  "cluster": "flaky",  "group": "primary" },
            { "name": "steady", "cluster": "steady", "group": "secondary" }
        ],
        "route_header": ROUTE_HEADER,
        "failure": { "statuses": ["5xx", 429], "response_flags": ["UT", "UF", "UR", "UC", "UH", "URX"], "threshold": 1 },
        "failover": { "max_attempts": 2, "max_request_bytes": 65536, "attempt_timeout_ms": 5000 },
        "verifier": { "interval_ms": 2000, "max_interval_ms": 4000, "timeout_ms": 1000,
                      "success_threshold": 1, "healthy_statuses": [200],
                      "request": { "method": "POST", "path": "/v1/messages",
                                   "headers": { "content-type": "application/json" },
                                   "body": "{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}" } },
        "when_all_queued": "least_recently_failed",
        "status": { "path": "/failover/status", "allow_from": ["127.0.0.1/32", "::1/128"] }
    });
    if let Some(f) = fleet {
        plugin["fleet"] = serde_json::json!({
            "cluster": "etcd",
            "key_prefix": f.key_prefix,
            "member": f.member,
            "sync_interval_ms": FLEET_SYNC_INTERVAL_MS,
        });
    }
    plugin
}

fn yaml_string(s: &str) -> String {
    // JSON strings are valid YAML double-quoted scalars.
    serde_json::Value::String(s.to_string()).to_string()
}

fn cluster(name: &str, addr: SocketAddr) -> String {
    format!(
        r#"
  - name: {name}
    type: STATIC
    connect_timeout: 0.5s
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: "{ip}", port_value: {port} }} }} }}"#,
        ip = addr.ip(),
        port = addr.port()
    )
}

/// The bootstrap YAML for mocks at `flaky` and `steady`.
pub fn bootstrap_yaml(flaky: SocketAddr, steady: SocketAddr) -> String {
    bootstrap(flaky, steady, None)
}

/// The bootstrap YAML of one `demo --fleet` proxy.
pub fn fleet_bootstrap_yaml(flaky: SocketAddr, steady: SocketAddr, fleet: &FleetSetup) -> String {
    bootstrap(flaky, steady, Some(fleet))
}

fn bootstrap(flaky: SocketAddr, steady: SocketAddr, fleet: Option<&FleetSetup>) -> String {
    let json = plugin_value(fleet).to_string();
    let plugin = |name: &str, root_id: &str| {
        format!(
            r#"name: {name}
        root_id: {root_id}
        vm_config:
          vm_id: {VM_ID}
          runtime: envoy.wasm.runtime.v8
          code: {{ local: {{ filename: "builtin:failover" }} }}
        configuration:
          "@type": type.googleapis.com/google.protobuf.StringValue
          value: {json}"#,
            json = yaml_string(&json)
        )
    };
    format!(
        r#"static_resources:
  listeners:
  - name: demo
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: demo
          route_config:
            name: demo
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster_header: {ROUTE_HEADER}, timeout: 5s }}
          http_filters:
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                {filter}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:{flaky_cluster}{steady_cluster}{etcd_cluster}
bootstrap_extensions:
- name: envoy.bootstrap.wasm
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.wasm.v3.WasmService
    singleton: true
    config:
        {verifier}
"#,
        filter = plugin("failover", "failover").replace("\n        ", "\n                "),
        verifier = plugin("failover_verifier", "failover_verifier"),
        flaky_cluster = cluster("flaky", flaky),
        steady_cluster = cluster("steady", steady),
        etcd_cluster = fleet.map(|f| cluster("etcd", f.etcd)).unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::{parse, LoadOptions, RouteTarget, WasmCode};

    #[test]
    fn the_demo_config_is_a_valid_bootstrap() {
        let yaml = bootstrap_yaml(
            "127.0.0.1:1001".parse().unwrap(),
            "127.0.0.1:1002".parse().unwrap(),
        );
        let b = parse("demo.yaml".as_ref(), &yaml, &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        assert_eq!(b.clusters.len(), 2);
        assert_eq!(b.services.len(), 1);
        let f = &b.listeners[0].wasm_filters[0].spec;
        assert_eq!(f.code, WasmCode::Embedded);
        assert_eq!(f.vm_id, VM_ID);
        assert_eq!(f.configuration, plugin_json().into_bytes());
        assert!(
            matches!(&b.listeners[0].virtual_hosts[0].routes[0].target, RouteTarget::ClusterHeader(h) if h == ROUTE_HEADER)
        );
    }

    #[test]
    fn the_fleet_demo_config_adds_the_etcd_cluster_and_the_fleet_section() {
        let fleet = FleetSetup {
            etcd: "127.0.0.1:2379".parse().unwrap(),
            key_prefix: "/failover-demo".into(),
            member: "proxy-b".into(),
        };
        let yaml = fleet_bootstrap_yaml(
            "127.0.0.1:1001".parse().unwrap(),
            "127.0.0.1:1002".parse().unwrap(),
            &fleet,
        );
        let b = parse("demo.yaml".as_ref(), &yaml, &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        assert_eq!(b.clusters.len(), 3);
        let f = &b.listeners[0].wasm_filters[0].spec;
        let plugin: serde_json::Value = serde_json::from_slice(&f.configuration).unwrap();
        assert_eq!(plugin["fleet"]["cluster"], "etcd");
        assert_eq!(plugin["fleet"]["member"], "proxy-b");
        assert_eq!(plugin["fleet"]["key_prefix"], "/failover-demo");
        assert_eq!(b.services[0].spec.configuration, f.configuration);
    }
}
