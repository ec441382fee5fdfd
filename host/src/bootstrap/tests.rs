//! Tests of the bootstrap parser: the supported subset, defaults, and errors naming the field.

use super::*;

const GOOD: &str = r#"
static_resources:
  listeners:
  - name: main
    address: { socket_address: { address: 127.0.0.1, port_value: 10000 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          codec_type: AUTO
          route_config:
            name: local
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/fixed" }
                route: { cluster: a, timeout: 0.25s }
              - match: { prefix: "/" }
                route: { cluster_header: X-Failover-Cluster, timeout: 0s }
          http_filters:
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: failover
                root_id: failover
                vm_config:
                  vm_id: failover
                  runtime: envoy.wasm.runtime.v8
                  code: { local: { filename: "builtin:failover" } }
                  environment_variables: { key_values: { A: "1" } }
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: '{"endpoints":[]}'
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: a
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: a
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 9001 } } }
  - name: b
    type: STRICT_DNS
    load_assignment:
      cluster_name: b
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: localhost, port_value: 443 } } }
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        sni: api.example.com
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
bootstrap_extensions:
- name: envoy.bootstrap.wasm
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.wasm.v3.WasmService
    singleton: true
    config:
      name: verifier
      root_id: failover_verifier
      vm_config: { vm_id: failover, runtime: envoy.wasm.runtime.v8, code: { local: { inline_string: "x" } } }
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: 9901 } }
"#;

fn parse_str(text: &str) -> Result<Bootstrap, ConfigError> {
    parse(Path::new("test.yaml"), text, &LoadOptions::default())
}

#[test]
fn buffer_limit_and_stop_iteration_flag_default_as_in_envoy_and_can_be_set() {
    let b = parse_str(GOOD).expect("valid");
    assert_eq!(b.listeners[0].buffer_limit, 1024 * 1024);
    assert!(
        !b.listeners[0].wasm_filters[0]
            .spec
            .allow_on_headers_stop_iteration
    );
    let text = GOOD
            .replace(
                "    filter_chains:\n",
                "    per_connection_buffer_limit_bytes: 2048\n    filter_chains:\n",
            )
            .replace(
                "                root_id: failover\n",
                "                root_id: failover\n                allow_on_headers_stop_iteration: true\n",
            );
    let b = parse_str(&text).expect("valid");
    assert_eq!(b.listeners[0].buffer_limit, 2048);
    assert!(
        b.listeners[0].wasm_filters[0]
            .spec
            .allow_on_headers_stop_iteration
    );
    assert!(
        parse_str(&text.replace(
            "allow_on_headers_stop_iteration: true",
            "allow_on_headers_stop_iteration: sometimes"
        ))
        .is_err(),
        "a BoolValue is a bool"
    );
}

#[test]
fn parses_the_supported_subset() {
    let b = parse_str(GOOD).expect("valid");
    assert_eq!(b.listeners.len(), 1);
    let l = &b.listeners[0];
    assert_eq!(l.address, "127.0.0.1:10000".parse().unwrap());
    assert_eq!(l.wasm_filters.len(), 1);
    let w = &l.wasm_filters[0].spec;
    assert_eq!(w.code, WasmCode::Embedded);
    assert_eq!(w.configuration, br#"{"endpoints":[]}"#);
    assert_eq!(w.environment, vec![("A".to_string(), "1".to_string())]);
    let routes = &l.virtual_hosts[0].routes;
    assert_eq!(routes[0].timeout, Some(Duration::from_millis(250)));
    assert!(
        matches!(&routes[1].target, RouteTarget::ClusterHeader(h) if h == "x-failover-cluster")
    );
    assert_eq!(routes[1].timeout, None);
    assert_eq!(b.clusters[0].connect_timeout, Duration::from_secs(1));
    assert_eq!(b.clusters[1].discovery, Discovery::StrictDns);
    assert_eq!(b.clusters[1].connect_timeout, DEFAULT_CONNECT_TIMEOUT);
    assert_eq!(
        b.clusters[1].tls.as_ref().and_then(|t| t.sni.as_deref()),
        Some("api.example.com")
    );
    assert_eq!(b.services.len(), 1);
    assert_eq!(
        b.services[0].spec.code,
        WasmCode::Bytes(std::sync::Arc::from(b"x".to_vec()))
    );
    assert_eq!(b.admin, Some("127.0.0.1:9901".parse().unwrap()));
}

#[test]
fn unknown_field_names_path_and_line() {
    let text = GOOD.replace(
        "                route: { cluster: a, timeout: 0.25s }",
        "                route: { clusterr: a }",
    );
    let e = parse_str(&text).unwrap_err();
    assert!(e.field.contains("static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[0].route"), "{e}");
    assert!(e.message.contains("clusterr"), "{e}");
    assert!(e.location.is_some(), "{e}");
}

#[test]
fn unknown_field_inside_a_buffered_any_names_its_path() {
    let text = GOOD.replace(
        "        sni: api.example.com",
        "        sni: api.example.com\n        snii: x",
    );
    let e = parse_str(&text).unwrap_err();
    assert!(e.to_string().contains("snii"), "{e}");
    assert!(e.field.contains("transport_socket.typed_config"), "{e}");
}

#[test]
fn bad_values_are_errors_naming_the_field() {
    let cases = [
        (
            "connect_timeout: 1s",
            "connect_timeout: 1000",
            "connect_timeout",
        ),
        ("type: STATIC", "type: STATIK", "type"),
        (
            "route: { cluster: a, timeout: 0.25s }",
            "route: { cluster: nope }",
            "unknown cluster",
        ),
        (
            "runtime: envoy.wasm.runtime.v8\n",
            "runtime: v9\n",
            "runtime",
        ),
        (
            "filename: \"builtin:failover\"",
            "filename: /nonexistent/failover_filter.wasm",
            "not found",
        ),
        (
            "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
            "type.googleapis.com/envoy.extensions.filters.http.routerr.v3.Router",
            "unsupported \"@type\"",
        ),
    ];
    for (from, to, expect) in cases {
        assert!(GOOD.contains(from), "{from}");
        let e = parse_str(&GOOD.replacen(from, to, 1)).unwrap_err();
        assert!(e.to_string().contains(expect), "{from} -> {to}: {e}");
    }
}

#[test]
fn invalid_yaml_and_duplicate_keys_are_errors_with_a_line() {
    let e = parse_str("static_resources: [").unwrap_err();
    assert!(e.location.is_some(), "{e}");
    let e = parse_str("admin: {}\nadmin: {}\n").unwrap_err();
    assert!(e.message.contains("duplicate"), "{e}");
}
