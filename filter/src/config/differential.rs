//! Our config reader against the serde derive it replaced (issue 16): the same shapes as
//! before, with serde's `#[derive(Deserialize)]` attributes, read through serde_json and
//! serde_path_to_error (dev-dependencies only). Every shape error must come out with the same
//! path and the same message, and what serde accepted we accept.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{Config, ConfigError};

// ===== the shapes as serde read them before =====

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct RawEndpoint {
    name: String,
    cluster: String,
    #[serde(default)]
    group: Option<String>,
    #[serde(default = "one")]
    weight: u64,
    #[serde(default)]
    authority: Option<String>,
    #[serde(default)]
    request_headers: BTreeMap<String, String>,
}

fn one() -> u64 {
    1
}

#[derive(Deserialize)]
#[serde(untagged)]
#[allow(dead_code)]
enum StatusItem {
    Code(u64),
    Text(String),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
#[allow(dead_code)]
struct RawFailure {
    statuses: Vec<StatusItem>,
    response_flags: Vec<String>,
    threshold: u64,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
#[allow(dead_code)]
struct RawFailover {
    max_attempts: u64,
    max_request_bytes: u64,
    attempt_timeout_ms: u64,
    stream_attempt_timeout_ms: u64,
    tried_header: String,
    hold_headers: bool,
    first_event_timeout_ms: u64,
    first_event_max_bytes: u64,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
#[allow(dead_code)]
struct RawProbe {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    body: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
#[allow(dead_code)]
struct RawVerifier {
    interval_ms: u64,
    max_interval_ms: u64,
    timeout_ms: u64,
    success_threshold: u64,
    healthy_statuses: Vec<StatusItem>,
    healthy_body_contains: Option<String>,
    request: RawProbe,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
#[allow(dead_code)]
struct RawStatus {
    path: String,
    allow_from: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct RawFleet {
    cluster: String,
    #[serde(default)]
    key_prefix: String,
    #[serde(default)]
    member: Option<String>,
    #[serde(default)]
    sync_interval_ms: u64,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    offline_after_ms: Option<u64>,
    #[serde(default)]
    probe_claim_ms: Option<u64>,
    #[serde(default)]
    authorization: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct RawConfig {
    endpoints: Vec<RawEndpoint>,
    #[serde(default)]
    groups: Option<Vec<String>>,
    #[serde(default)]
    route_header: String,
    #[serde(default)]
    failure: RawFailure,
    #[serde(default)]
    failover: RawFailover,
    #[serde(default)]
    verifier: RawVerifier,
    #[serde(default)]
    when_all_queued: String,
    #[serde(default)]
    status: RawStatus,
    #[serde(default)]
    fleet: Option<RawFleet>,
}

/// The shape error serde gave, as `Config::parse` reported it.
fn serde_shape(json: &[u8]) -> Option<(String, String)> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let read: Result<RawConfig, _> = serde_path_to_error::deserialize(&mut de);
    match read {
        Err(e) => Some((e.path().to_string(), e.into_inner().to_string())),
        Ok(_) => de.end().err().map(|e| (".".to_string(), e.to_string())),
    }
}

fn check(json: &[u8]) {
    let ours = match Config::parse(json, &|_| Some("v".into())) {
        Err(ConfigError::Shape { path, message }) => Some((path, message)),
        _ => None,
    };
    assert_eq!(
        ours,
        serde_shape(json),
        "{:?}",
        String::from_utf8_lossy(json)
    );
}

fn valid() -> Value {
    json!({
        "endpoints": [
            { "name": "main", "cluster": "upstream_main", "group": "primary", "weight": 3,
              "authority": "api.example.com",
              "request_headers": { "x-api-key": "${MAIN_API_KEY}", "x-b": "2" } },
            { "name": "spare", "cluster": "upstream_spare", "group": "primary", "weight": 1 },
            { "name": "backup", "cluster": "upstream_backup", "group": "secondary" }
        ],
        "groups": ["primary", "secondary"],
        "route_header": "x-failover-cluster",
        "failure": { "statuses": ["5xx", 429], "response_flags": ["UT","UF"], "threshold": 1 },
        "failover": { "max_attempts": 3, "max_request_bytes": 1048576, "attempt_timeout_ms": 60000,
                      "stream_attempt_timeout_ms": 600000, "tried_header": "x-t", "hold_headers": false,
                      "first_event_timeout_ms": 1000, "first_event_max_bytes": 4096 },
        "verifier": { "interval_ms": 60000, "max_interval_ms": 600000, "timeout_ms": 10000,
                      "success_threshold": 1, "healthy_statuses": [200], "healthy_body_contains": "ok",
                      "request": { "method": "POST", "path": "/v1/messages",
                                   "headers": { "content-type": "application/json" }, "body": "{}" } },
        "when_all_queued": "least_recently_failed",
        "status": { "path": "/failover/status", "allow_from": ["127.0.0.1/32"] },
        "fleet": { "cluster": "etcd", "key_prefix": "/f", "member": "m", "sync_interval_ms": 1000,
                   "timeout_ms": 100, "offline_after_ms": 5000, "probe_claim_ms": 20000,
                   "authorization": "t" }
    })
}

#[test]
fn hand_picked_shape_errors_read_as_before() {
    for text in [
        r#"{"endpoints":[{"name":"a","cluster":"ca"}],"failover":{"max_attempts":1.5}}"#,
        r#"{"endpoints":[{"name":"a","cluster":"ca"}],"failover":{"max_attempts":-1}}"#,
        r#"{"endpoints":[{"name":"a","cluster":"ca"}],"failover":{"max_attempts":"3"}}"#,
        r#"{"endpoints":[{"name":"a","cluster":"ca"}],"failover":{"max_attempts":null}}"#,
        r#"{"endpoints":[{"name":"a","cluster":"ca"}],"failover":{"max_attempts":[3]}}"#,
        r#"{"endpoints":[{"name":"a","cluster":"ca"}],"failover":{"max_attempts":{}}}"#,
        r#"{"endpoints":[{"name":"a","cluster":"ca"}],"failover":{"max_attempts":18446744073709551616}}"#,
        r#"{"endpoints":[{"name":"a","cluster":"ca"}],"failover":{"max_attempts":1e400}}"#,
        r#"{"endpoints":[{"name":"a","cluster":"ca"}],"failover":{"hold_headers":1}}"#,
        r#"{"endpoints":[{"name":"a","cluster":"ca"}],"failover":[3, 100, 1000]}"#,
        r#"{"endpoints":[{"name":"a","cluster":"ca"}],"failover":[1,2,3,4,"x",true,5,6,7]}"#,
        r#"{"endpoints":[{"name":"a","cluster":"ca"}],"failover":[1.5]}"#,
        r#"{"endpoints":[{"name":"a","cluster":"ca"}],"failover":3}"#,
        r#"{"endpoints":[{"name":"a","cluster":"ca"}],"failover":null}"#,
        r#"{"endpoints":[{"name":"a","cluster":"ca","wieght":2}]}"#,
        r#"{"endpoints":[{"name":"a","cluster":"ca","name":"b"}]}"#,
        r#"{"endpoints":[{"name":"a"}]}"#,
        r#"{"endpoints":[{"cluster":"a"}]}"#,
        r#"{"endpoints":[["a"]]}"#,
        r#"{"endpoints":[["a", "ca", null, 2, null, {}]]}"#,
        r#"{"endpoints":[["a", "ca", null, 2, null, {}, 7]]}"#,
        r#"{"endpoints":[{"name":"a","cluster":"ca","request_headers":{"x":1}}]}"#,
        r#"{"endpoints":[{"name":"a","cluster":"ca","request_headers":[]}]}"#,
        r#"{"endpoints":[{"name":"a","cluster":"ca","group":7}]}"#,
        r#"{"endpoints":{}}"#,
        r#"{"endpoints":"a"}"#,
        r#"{"":1}"#,
        r#"{}"#,
        r#"[]"#,
        r#"[[]]"#,
        r#"null"#,
        r#"7"#,
        r#""x""#,
        r#"{"endpoints":[{"name":"a","cluster":"ca"}],"failure":{"statuses":[-1]}}"#,
        r#"{"endpoints":[{"name":"a","cluster":"ca"}],"failure":{"statuses":[1.5, 2]}}"#,
        r#"{"endpoints":[{"name":"a","cluster":"ca"}],"failure":{"statuses":[[500]]}}"#,
        r#"{"endpoints":[{"name":"a","cluster":"ca"}],"failure":{"statuses":"5xx"}}"#,
        r#"{"endpoints":[{"name":"a","cluster":"ca"}],"failure":{"response_flags":[1]}}"#,
        r#"{"endpoints":[{"name":"a","cluster":"ca"}],"groups":null}"#,
        r#"{"endpoints":[{"name":"a","cluster":"ca"}],"groups":[1]}"#,
        r#"{"endpoints":[{"name":"a","cluster":"ca"}],"fleet":null}"#,
        r#"{"endpoints":[{"name":"a","cluster":"ca"}],"fleet":{}}"#,
        r#"{"endpoints":[{"name":"a","cluster":"ca"}],"fleet":{"cluster":"e","timeout_ms":null}}"#,
        r#"{"endpoints":[{"name":"a","cluster":"ca"}],"fleet":{"cluster":"e","timeout_ms":-5}}"#,
        r#"{"endpoints":[{"name":"a","cluster":"ca"}],"fleet":{"cluster":"e","surprise":1}}"#,
        r#"{"endpoints":[{"name":"a","cluster":"ca"}],"verifier":{"request":{"headers":{"a":null}}}}"#,
        r#"{"endpoints":[{"name":"a","cluster":"ca"}],"verifier":{"healthy_body_contains":null}}"#,
        r#"{"endpoints":[{"name":"a","cluster":"ca"}],"verifier":{"request":{"extra":1}}}"#,
        r#"{"endpoints":[{"name":"a","cluster":"ca"}],"failover":{"max_attempts":1,"max_attempts":2}}"#,
        r#"{"endpoints":[{"name":"a","cluster":"ca"}]} x"#,
        r#"{"endpoints":[{"name":"a","cluster":"ca"}]}  "#,
        "{\n  \"endpoints\": [\n    {\"name\": \"a\",\n     \"cluster\": 5}\n  ]\n}",
        r#"{"endpoints":[{"name":"a","cluster":"ca"}"#,
        r#"{"endpoints":[{"name":"a","cluster":"ca"},"#,
        r#"{"endpoints":[{"name":"a","cluster":"ca",}]}"#,
        r#"{"endpoints":[{"name":"a","cluster":"ca"}],}"#,
        r#"{"endpoints":[{"name":"a","cluster":"c\qa"}]}"#,
        r#"{"endpoints":[{"name":"a","clu\qster":"ca"}]}"#,
        r#"{"endpoints":[{"name":"a" "cluster":"ca"}]}"#,
        r#"{"endpoints":[{"name":"a","cluster":"ca"} {}]}"#,
        r#"{"endpoints" [{"name":"a","cluster":"ca"}]}"#,
        "",
        "{",
    ] {
        check(text.as_bytes());
    }
}

/// Every path (object keys and array indices) in `v`.
fn paths(v: &Value, here: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    out.push(here.clone());
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                here.push(Step::Key(k.clone()));
                paths(child, here, out);
                here.pop();
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                here.push(Step::Index(i));
                paths(child, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}

#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

fn mutate(base: &Value, pick: usize, with: Value, remove: bool, rename: bool) -> Value {
    let mut all = Vec::new();
    paths(base, &mut Vec::new(), &mut all);
    let path = &all[pick % all.len()];
    let mut v = base.clone();
    let Some((last, parent)) = path.split_last() else {
        return with;
    };
    let mut node = &mut v;
    for step in parent {
        node = match step {
            Step::Key(k) => &mut node[k.as_str()],
            Step::Index(i) => &mut node[*i],
        };
    }
    match (node, last) {
        (Value::Object(m), Step::Key(k)) if remove || rename => {
            let old = m.remove(k);
            if let (true, Some(old)) = (rename, old) {
                m.insert(format!("{k}x"), old);
            }
        }
        (Value::Array(a), Step::Index(i)) if remove && *i < a.len() => {
            a.remove(*i);
        }
        (Value::Object(m), Step::Key(k)) => {
            m.insert(k.clone(), with);
        }
        (Value::Array(a), Step::Index(i)) if *i < a.len() => a[*i] = with,
        _ => {}
    }
    v
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        // Floats of up to 15 significant digits: their name in an error is exact. (Longer
        // ones can differ in the last digit: serde_json's float reading is not correctly
        // rounded, and we name the digits as written; see `json::read::float_text`.)
        (-1_000_000_000_000i64..1_000_000_000_000).prop_map(|n| json!(n as f64 / 1000.0)),
        (-20i32..=20).prop_map(|e| serde_json::from_str::<Value>(&format!("1.5e{e}")).unwrap()),
        Just(json!(1.5)),
        Just(json!(2.0)),
        ".{0,8}".prop_map(Value::String),
        Just(json!("5xx")),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn mutated_configs_read_as_before(
        pick in any::<usize>(),
        with in any_json(),
        remove in any::<bool>(),
        rename in any::<bool>(),
        pretty in any::<bool>(),
    ) {
        let v = mutate(&valid(), pick, with, remove, rename);
        let text = if pretty {
            serde_json::to_string_pretty(&v).unwrap()
        } else {
            v.to_string()
        };
        check(text.as_bytes());
    }

    #[test]
    fn truncated_configs_read_as_before(cut in any::<usize>(), pretty in any::<bool>()) {
        // Syntax errors at every point of a real config: the same message, position and path.
        let text = if pretty {
            serde_json::to_string_pretty(&valid()).unwrap()
        } else {
            valid().to_string()
        };
        let cut = cut % (text.len() + 1);
        check(&text.as_bytes()[..cut]);
    }
}
