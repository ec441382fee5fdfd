//! Mistakes Envoy would refuse are refused here too, and the message says where.
//!
//! Each test breaks the shipped bootstrap in one place, so the rest of the file is known to be
//! valid and the error can only come from the change.

mod common;

use common::mutated;
use failover_envoy_schema::{validate_file, validate_yaml, SchemaError};

/// Validates and returns the error, failing the test if the text was accepted.
fn rejected(text: &str) -> SchemaError {
    match validate_yaml(text) {
        Ok(v) => panic!("accepted: {v:?}"),
        Err(e) => {
            eprintln!("{e}");
            e
        }
    }
}

fn assert_mentions(err: &SchemaError, parts: &[&str]) {
    let message = err.to_string();
    for part in parts {
        assert!(
            message.contains(part),
            "{message:?} does not mention {part:?}"
        );
    }
}

const ROUTE: &str = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config\
                     .route_config.virtual_hosts[0].routes[0].route";
const FILTERS: &str = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config\
                       .http_filters";

#[test]
fn misspelt_field_in_route_names_field_and_path() {
    let err = rejected(&mutated(
        "cluster_header: x-failover",
        "clusterr_header: x-failover",
    ));
    assert!(matches!(err, SchemaError::Schema { .. }), "{err:?}");
    assert_mentions(&err, &[ROUTE, "unrecognized field name 'clusterr_header'"]);
    assert!(err.location().is_some(), "no line/column in {err}");
}

#[test]
fn misspelt_field_inside_wasm_any_payload() {
    let err = rejected(&mutated(
        "vm_config: &failover_vm",
        "vm_confg: &failover_vm",
    ));
    assert_mentions(
        &err,
        &[&format!("{FILTERS}[0].typed_config.config"), "'vm_confg'"],
    );
}

#[test]
fn misspelt_field_inside_tls_context() {
    let err = rejected(&mutated(
        "sni: api.anthropic.com",
        "snii: api.anthropic.com",
    ));
    assert_mentions(
        &err,
        &[
            "static_resources.clusters[0].transport_socket.typed_config",
            "'snii'",
        ],
    );
}

#[test]
fn bad_enum_name() {
    let err = rejected(&mutated("type: STATIC", "type: STATIK"));
    assert_mentions(&err, &["static_resources.clusters[1].type", "'STATIK'"]);
}

#[test]
fn unknown_type_url() {
    let err = rejected(&mutated("http.router.v3.Router", "http.routerr.v3.Router"));
    assert_mentions(
        &err,
        &[
            &format!("{FILTERS}[1].typed_config"),
            "'envoy.extensions.filters.http.routerr.v3.Router' not found",
        ],
    );
}

#[test]
fn two_members_of_one_oneof() {
    let err = rejected(&mutated(
        "cluster_header: x-failover-cluster",
        "cluster_header: x-failover-cluster\n                            cluster: mock",
    ));
    assert_mentions(&err, &[ROUTE, "oneof 'cluster_specifier'"]);
}

#[test]
fn duplicate_key_is_refused_not_silently_overwritten() {
    let err = rejected(&mutated(
        "connect_timeout: 5s",
        "connect_timeout: 5s\n      connect_timeout: 7s",
    ));
    assert!(matches!(err, SchemaError::Yaml { .. }), "{err:?}");
    assert_mentions(&err, &["duplicate entry", "connect_timeout"]);
}

#[test]
fn wrong_value_type() {
    let err = rejected(&mutated("port_value: 8081", "port_value: eighty"));
    assert_mentions(
        &err,
        &["static_resources.clusters[1].load_assignment.endpoints[0].lb_endpoints[0]"],
    );
}

#[test]
fn yaml_syntax_error_has_location() {
    let err = rejected(&mutated(
        "socket_address: { address: 127.0.0.1, port_value: 9901 }",
        "socket_address: { address: 127.0.0.1",
    ));
    assert!(matches!(err, SchemaError::Yaml { .. }), "{err:?}");
    assert!(err.location().is_some(), "{err}");
}

// ===== validate.rules (protoc-gen-validate) =====

#[test]
fn empty_cluster_name_breaks_min_len() {
    let err = rejected(&mutated("- name: spare", "- name: \"\""));
    assert!(matches!(err, SchemaError::Rule { .. }), "{err:?}");
    assert_mentions(&err, &["static_resources.clusters[1].name", "at least 1"]);
}

#[test]
fn zero_connect_timeout_breaks_positive_duration() {
    let err = rejected(&mutated("connect_timeout: 1s", "connect_timeout: 0s"));
    assert_mentions(
        &err,
        &[
            "static_resources.clusters[1].connect_timeout",
            "> 0s",
            "got 0s",
        ],
    );
}

#[test]
fn empty_stat_prefix_inside_any_payload() {
    let err = rejected(&mutated("stat_prefix: ingress_http", "stat_prefix: \"\""));
    assert_mentions(&err, &["filters[0].typed_config.stat_prefix"]);
}

#[test]
fn route_without_cluster_specifier_breaks_required_oneof() {
    let err = rejected(&mutated(
        "cluster_header: x-failover-cluster",
        "priority: DEFAULT",
    ));
    assert_mentions(&err, &[ROUTE, "cluster_specifier", "required"]);
}

#[test]
fn undefined_enum_number() {
    let err = rejected(&mutated("codec_type: AUTO", "codec_type: 7"));
    assert_mentions(&err, &["codec_type", "not a defined value"]);
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let err = match validate_file("does/not/exist.yaml".as_ref()) {
        Ok(v) => panic!("accepted: {v:?}"),
        Err(e) => e,
    };
    assert!(matches!(err, SchemaError::Io { .. }), "{err:?}");
    assert_mentions(&err, &["does/not/exist.yaml"]);
}
