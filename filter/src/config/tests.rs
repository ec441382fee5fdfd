use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "MAIN_API_KEY" => Some("sk-secret-123".into()),
        _ => None,
    }
}

pub(crate) const DESIGN_EXAMPLE: &str = r#"{
  "endpoints": [
    { "name": "main",   "cluster": "upstream_main",   "group": "primary",   "weight": 3,
      "request_headers": { "x-api-key": "${MAIN_API_KEY}" } },
    { "name": "spare",  "cluster": "upstream_spare",  "group": "primary",   "weight": 1 },
    { "name": "backup", "cluster": "upstream_backup", "group": "secondary" }
  ],
  "route_header": "x-failover-cluster",
  "failure":  { "statuses": ["5xx", 429], "response_flags": ["UT","UF","UR","UC","UH","URX"],
                "threshold": 1 },
  "failover": { "max_attempts": 3, "max_request_bytes": 1048576, "attempt_timeout_ms": 60000 },
  "verifier": { "interval_ms": 60000, "max_interval_ms": 600000, "timeout_ms": 10000,
                "success_threshold": 1, "healthy_statuses": [200],
                "request": { "method": "POST", "path": "/v1/messages",
                             "headers": { "content-type": "application/json" },
                             "body": "{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}" } },
  "when_all_queued": "least_recently_failed",
  "status": { "path": "/failover/status", "allow_from": ["127.0.0.1/32", "::1/128"] }
}"#;

fn err(json: &str) -> String {
    Config::parse(json.as_bytes(), &env)
        .unwrap_err()
        .to_string()
}

#[test]
fn hold_headers_must_agree_with_the_envoy_config() {
    let held = Config::parse(
        br#"{"endpoints":[{"name":"a","cluster":"ca"}],"failover":{"hold_headers":true}}"#,
        &|_| None,
    )
    .unwrap();
    let e = held
        .check_envoy_agreement(false, Some(1 << 20))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("failover.hold_headers") && e.contains("allow_on_headers_stop_iteration"),
        "{e}"
    );
    assert!(held.check_envoy_agreement(true, Some(1 << 20)).is_ok());
    let e = held
        .check_envoy_agreement(true, Some(1000))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("failover.max_request_bytes") && e.contains("1048576") && e.contains("1000"),
        "{e}"
    );
    let plain =
        Config::parse(br#"{"endpoints":[{"name":"a","cluster":"ca"}]}"#, &|_| None).unwrap();
    assert!(
        plain.check_envoy_agreement(false, Some(1000)).is_ok(),
        "nothing to agree on"
    );
}

#[test]
fn call_timeouts_over_envoys_limit_are_refused() {
    for field in ["attempt_timeout_ms", "stream_attempt_timeout_ms"] {
        let json = format!(
            r#"{{"endpoints":[{{"name":"a","cluster":"ca"}}],"failover":{{"{field}":2147483648}}}}"#
        );
        let e = Config::parse(json.as_bytes(), &|_| None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("failover.{field}")) && e.contains("2147483648"),
            "{e}"
        );
        let json = format!(
            r#"{{"endpoints":[{{"name":"a","cluster":"ca"}}],"failover":{{"{field}":2147483647}}}}"#
        );
        assert!(Config::parse(json.as_bytes(), &|_| None).is_ok());
    }
    let e = Config::parse(
        br#"{"endpoints":[{"name":"a","cluster":"ca"}],"verifier":{"timeout_ms":4294967296}}"#,
        &|_| None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("verifier.timeout_ms"), "{e}");
}

#[test]
fn design_example_parses() {
    let c = Config::parse(DESIGN_EXAMPLE.as_bytes(), &env).unwrap();
    assert_eq!(c.endpoints.len(), 3);
    assert_eq!(
        c.groups,
        vec![vec![EndpointIdx(0), EndpointIdx(1)], vec![EndpointIdx(2)]]
    );
    assert_eq!(c.endpoints[0].weight, 3);
    let (name, value) = &c.endpoints[0].request_headers[0];
    assert_eq!(name, "x-api-key");
    assert_eq!(value.expose(), "sk-secret-123");
    assert!(value.is_secret());
    assert!(
        !format!("{c:?}").contains("sk-secret-123"),
        "Debug must redact secrets"
    );
    assert!(c.failure.statuses.contains(503) && c.failure.statuses.contains(429));
    assert!(!c.failure.statuses.contains(400));
    assert_eq!(c.when_all_queued, AllQueuedPolicy::LeastRecentlyFailed);
}

#[test]
fn minimal_config_gets_defaults() {
    let c = Config::parse(br#"{"endpoints":[{"name":"a","cluster":"ca"}]}"#, &env).unwrap();
    assert_eq!(c.route_header, "x-failover-cluster");
    assert_eq!(c.failover.max_attempts, 3);
    assert_eq!(c.failover.max_request_bytes, 1 << 20);
    assert_eq!(c.verifier.interval_ms, 60_000);
    assert_eq!(c.verifier.request.path, "/v1/messages");
    assert_eq!(c.failure.threshold, 1);
    assert!(c.failure.response_flags.contains_any(0x20));
    assert_eq!(c.status_page.path, "/failover/status");
    assert_eq!(c.endpoints[0].group, "primary");
}

#[test]
fn unknown_fields_are_named_with_their_path() {
    let e = err(r#"{"endpoints":[{"name":"a","cluster":"ca","wieght":2}]}"#);
    assert!(e.contains("endpoints[0]") && e.contains("wieght"), "{e}");
    let e = err(r#"{"endpoints":[{"name":"a","cluster":"ca"}],"failover":{"max_atempts":2}}"#);
    assert!(e.contains("failover") && e.contains("max_atempts"), "{e}");
    let e = err(r#"{"endpoints":[{"name":"a","cluster":"ca"}],"extra":1}"#);
    assert!(e.contains("extra"), "{e}");
}

#[test]
fn bad_values_name_field_and_value() {
    let e = err(r#"{"endpoints":[{"name":"a","cluster":"ca","weight":0}]}"#);
    assert!(e.contains("endpoints[0].weight") && e.contains('0'), "{e}");
    let e = err(r#"{"endpoints":[{"name":"a","cluster":"ca"}],"failure":{"statuses":["6xx"]}}"#);
    assert!(
        e.contains("failure.statuses[0]") && e.contains("6xx"),
        "{e}"
    );
    let e =
        err(r#"{"endpoints":[{"name":"a","cluster":"ca"}],"failure":{"response_flags":["XX"]}}"#);
    assert!(
        e.contains("failure.response_flags[0]") && e.contains("XX"),
        "{e}"
    );
    let e = err(r#"{"endpoints":[{"name":"a","cluster":"ca"}],"when_all_queued":"panic"}"#);
    assert!(e.contains("when_all_queued") && e.contains("panic"), "{e}");
    let e = err(r#"{"endpoints":[{"name":"a b","cluster":"ca"}]}"#);
    assert!(e.contains("endpoints[0].name") && e.contains("a b"), "{e}");
    let e = err(r#"{"endpoints":[{"name":"a","cluster":"ca"},{"name":"a","cluster":"cb"}]}"#);
    assert!(e.contains("endpoints[1].name"), "{e}");
    let e = err(r#"{"endpoints":[]}"#);
    assert!(e.contains("endpoints"), "{e}");
    let e = err(
        r#"{"endpoints":[{"name":"a","cluster":"ca"}],"status":{"allow_from":["10.0.0.0/33"]}}"#,
    );
    assert!(
        e.contains("status.allow_from[0]") && e.contains("10.0.0.0/33"),
        "{e}"
    );
    let e = err(
        r#"{"endpoints":[{"name":"a","cluster":"ca"}],"verifier":{"interval_ms":5000,"max_interval_ms":1000}}"#,
    );
    assert!(e.contains("verifier.max_interval_ms"), "{e}");
    let e = err(r#"{"endpoints":[{"name":"a","cluster":"ca","group":"x"}],"groups":["y"]}"#);
    assert!(e.contains("groups[0]") && e.contains('y'), "{e}");
    let e = err(r#"{"endpoints":[{"name":"a","cluster":"ca","weight":-1}]}"#);
    assert!(e.contains("endpoints[0].weight"), "{e}");
}

#[test]
fn missing_env_is_an_error_without_leaking_values() {
    let e = err(
        r#"{"endpoints":[{"name":"a","cluster":"ca","request_headers":{"x-api-key":"${NOPE}"}}]}"#,
    );
    assert!(
        e.contains("endpoints[0].request_headers.x-api-key") && e.contains("NOPE"),
        "{e}"
    );
    let e = err(
        r#"{"endpoints":[{"name":"a","cluster":"ca","request_headers":{"x-api-key":"${MAIN_API_KEY"}}]}"#,
    );
    assert!(e.contains("closing"), "{e}");
    assert!(!e.contains("sk-secret"), "{e}");
}

#[test]
fn env_is_resolved_inside_text() {
    let c = Config::parse(
        br#"{"endpoints":[{"name":"a","cluster":"ca","request_headers":{"authorization":"Bearer ${MAIN_API_KEY}"}}]}"#,
        &env,
    )
    .unwrap();
    assert_eq!(
        c.endpoints[0].request_headers[0].1.expose(),
        "Bearer sk-secret-123"
    );
}

#[test]
fn hop_by_hop_and_pseudo_headers_cannot_be_configured() {
    let e = err(
        r#"{"endpoints":[{"name":"a","cluster":"ca","request_headers":{"connection":"close"}}]}"#,
    );
    assert!(e.contains("connection"), "{e}");
}

#[test]
fn malformed_json_never_panics() {
    for text in [
        "",
        "{",
        "[]",
        "null",
        "{\"endpoints\":{}}",
        "\u{0}",
        "{\"endpoints\":[{\"name\":1}]}",
    ] {
        assert!(Config::parse(text.as_bytes(), &env).is_err(), "{text:?}");
    }
    assert!(Config::parse(&[0xff, 0xfe, 0x00], &env).is_err());
}

#[test]
fn explicit_groups_reorder_priority() {
    let c = Config::parse(
        br#"{"endpoints":[{"name":"a","cluster":"ca","group":"g1"},{"name":"b","cluster":"cb","group":"g2"}],"groups":["g2","g1"]}"#,
        &env,
    )
    .unwrap();
    assert_eq!(c.groups, vec![vec![EndpointIdx(1)], vec![EndpointIdx(0)]]);
}

#[test]
fn cidr_matching() {
    let c = Cidr::parse("127.0.0.0/8").unwrap();
    assert!(c.contains("127.1.2.3".parse().unwrap()));
    assert!(!c.contains("128.0.0.1".parse().unwrap()));
    assert!(c.contains("::ffff:127.0.0.1".parse().unwrap()));
    let six = Cidr::parse("::1/128").unwrap();
    assert!(six.contains("::1".parse().unwrap()));
    assert!(!six.contains("::2".parse().unwrap()));
    assert!(Cidr::parse("10.0.0.1")
        .unwrap()
        .contains("10.0.0.1".parse().unwrap()));
    let odd = Cidr::parse("10.0.0.0/12").unwrap();
    assert!(odd.contains("10.15.255.255".parse().unwrap()));
    assert!(!odd.contains("10.16.0.0".parse().unwrap()));
    assert!(Cidr::parse("0.0.0.0/0")
        .unwrap()
        .contains("8.8.8.8".parse().unwrap()));
}

// ===== fleet =====

fn fleet(section: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let json = format!(r#"{{"endpoints":[{{"name":"a","cluster":"ca"}}],"fleet":{section}}}"#);
    Config::parse(json.as_bytes(), env)
}

fn fleet_err(section: &str) -> String {
    fleet(section, &|_| None).unwrap_err().to_string()
}

#[test]
fn fleet_absent_is_off() {
    let c = Config::parse(DESIGN_EXAMPLE.as_bytes(), &env).unwrap();
    assert_eq!(c.fleet, None);
}

#[test]
fn fleet_defaults() {
    let hostname = |n: &str| (n == "HOSTNAME").then(|| "pod-7".to_string());
    let f = fleet(r#"{"cluster":"etcd"}"#, &hostname)
        .unwrap()
        .fleet
        .unwrap();
    assert_eq!(f.cluster, "etcd");
    assert_eq!(f.key(), "/failover/v1");
    assert_eq!(f.member.as_deref(), Some("pod-7"), "from ${{HOSTNAME}}");
    assert_eq!(f.sync_interval_ms, 1000);
    assert_eq!(f.timeout_ms, 500);
    assert_eq!(f.offline_after_ms, 5000);
    assert_eq!(
        f.probe_claim_ms,
        10_000 + 2000,
        "verifier timeout + 2 intervals"
    );
    assert_eq!(f.authorization, None);
    // No HOSTNAME: the glue makes a name at start.
    let f = fleet(r#"{"cluster":"etcd"}"#, &|_| None)
        .unwrap()
        .fleet
        .unwrap();
    assert_eq!(f.member, None);
    assert_eq!(f.member_or("member-x"), "member-x");
    // A short interval gets a timeout below it.
    let f = fleet(r#"{"cluster":"etcd","sync_interval_ms":200}"#, &|_| None)
        .unwrap()
        .fleet
        .unwrap();
    assert_eq!((f.timeout_ms, f.offline_after_ms), (100, 1000));
}

#[test]
fn fleet_everything_set() {
    let env = |n: &str| match n {
        "ETCD_TOKEN" => Some("tok-secret".to_string()),
        "POD" => Some("gw-1".to_string()),
        _ => None,
    };
    let f = fleet(
        r#"{"cluster":"etcd","key_prefix":"/prod/llm/","member":"${POD}","sync_interval_ms":2000,
            "timeout_ms":300,"offline_after_ms":4000,"probe_claim_ms":20000,
            "authorization":"${ETCD_TOKEN}"}"#,
        &env,
    )
    .unwrap()
    .fleet
    .unwrap();
    assert_eq!(f.key(), "/prod/llm/v1");
    assert_eq!(f.member.as_deref(), Some("gw-1"));
    assert_eq!(
        (
            f.sync_interval_ms,
            f.timeout_ms,
            f.offline_after_ms,
            f.probe_claim_ms
        ),
        (2000, 300, 4000, 20_000)
    );
    let auth = f.authorization.unwrap();
    assert_eq!(auth.expose(), "tok-secret");
    assert!(!format!("{auth:?}").contains("tok-secret"), "never printed");
}

#[test]
fn fleet_errors_name_the_field_and_value() {
    let cases: &[(&str, &[&str])] = &[
        (r#"{}"#, &["fleet", "cluster"]),
        (r#"{"cluster":"e","surprise":1}"#, &["fleet", "surprise"]),
        (r#"{"cluster":" "}"#, &["fleet.cluster"]),
        (
            r#"{"cluster":"e","key_prefix":"failover"}"#,
            &["fleet.key_prefix", "\"failover\""],
        ),
        (r#"{"cluster":"e","key_prefix":"/"}"#, &["fleet.key_prefix"]),
        (
            r#"{"cluster":"e","member":"has space"}"#,
            &["fleet.member", "has space"],
        ),
        (
            r#"{"cluster":"e","member":"${NOPE}"}"#,
            &["fleet.member", "NOPE"],
        ),
        (
            r#"{"cluster":"e","sync_interval_ms":0}"#,
            &["fleet.sync_interval_ms", "0"],
        ),
        (
            r#"{"cluster":"e","sync_interval_ms":"1s"}"#,
            &["fleet.sync_interval_ms"],
        ),
        (
            r#"{"cluster":"e","timeout_ms":1000}"#,
            &["fleet.timeout_ms", "1000"],
        ),
        (
            r#"{"cluster":"e","timeout_ms":0}"#,
            &["fleet.timeout_ms", "0"],
        ),
        (
            r#"{"cluster":"e","offline_after_ms":999}"#,
            &["fleet.offline_after_ms", "999"],
        ),
        (
            r#"{"cluster":"e","probe_claim_ms":10000}"#,
            &["fleet.probe_claim_ms", "10000", "verifier.timeout_ms"],
        ),
        (
            r#"{"cluster":"e","authorization":"${MISSING}"}"#,
            &["fleet.authorization", "MISSING"],
        ),
        (
            r#"{"cluster":"e","authorization":""}"#,
            &["fleet.authorization"],
        ),
    ];
    for (section, needles) in cases {
        let e = fleet_err(section);
        for n in *needles {
            assert!(e.contains(n), "{section}: {e:?} lacks {n:?}");
        }
    }
}
