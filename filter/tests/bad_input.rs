//! Bad input for the filter's pure logic: bounded-time property-based fuzzing on stable Rust,
//! the CI counterpart of the cargo-fuzz targets in `fuzz/` (which need nightly).
//!
//! Every entry point that reads outside data is driven with arbitrary bytes, arbitrary JSON,
//! and mutations of valid input, and must answer `Ok`/`Err`/`None` — never panic:
//! - `Config::parse` (the plugin configuration Envoy hands over), with `${ENV}` resolution;
//! - `Record::decode` (the shared record another VM — or a foreign plugin — wrote);
//! - the `retry-after` / rate-limit-reset header parsers;
//! - `classify::decode_status` / `decode_u64_le` (header bytes and host properties).
//!
//! The seed corpus in `fuzz/corpus/<target>/` is replayed here too, so a crash found by
//! cargo-fuzz and saved there becomes a regression test for everyone.
//!
//! `PROPTEST_CASES` scales the number of cases (default 256 per property, well under a
//! minute in a debug build).

use std::path::PathBuf;

use failover_filter::classify::{decode_status, decode_u64_le};
use failover_filter::config::{Config, ConfigError};
use failover_filter::retry_after::{
    deadline_ms, parse_go_duration_ms, parse_http_date_ms, parse_retry_after, parse_rfc3339_ms,
    MAX_DELAY_MS,
};
use failover_filter::state::Record;
use proptest::prelude::*;
use serde_json::{json, Value};

/// A value no error message may ever contain: every `${NAME}` resolves to it.
const SECRET: &str = "s3cr3t-value-never-printed";

fn env(_name: &str) -> Option<String> {
    Some(SECRET.to_string())
}

/// A config that parses, close to the design's example (so mutations reach deep fields).
fn valid_config() -> Value {
    json!({
        "endpoints": [
            { "name": "main", "cluster": "upstream_main", "group": "primary", "weight": 3,
              "request_headers": { "x-api-key": "${MAIN_API_KEY}" } },
            { "name": "spare", "cluster": "upstream_spare", "group": "primary", "weight": 1 },
            { "name": "backup", "cluster": "upstream_backup", "group": "secondary" }
        ],
        "route_header": "x-failover-cluster",
        "failure": { "statuses": ["5xx", 429], "response_flags": ["UT","UF","UR","UC","UH","URX"], "threshold": 1 },
        "failover": { "max_attempts": 3, "max_request_bytes": 1048576, "attempt_timeout_ms": 60000 },
        "verifier": { "interval_ms": 60000, "max_interval_ms": 600000, "timeout_ms": 10000,
                      "success_threshold": 1, "healthy_statuses": [200],
                      "request": { "method": "POST", "path": "/v1/messages",
                                   "headers": { "content-type": "application/json" },
                                   "body": "{}" } },
        "when_all_queued": "least_recently_failed",
        "status": { "path": "/failover/status", "allow_from": ["127.0.0.1/32", "::1/128"] }
    })
}

/// A valid shared record with every field set.
fn valid_record() -> Value {
    json!({
        "queue": { "main": { "since_ms": 1, "reason": "status 503 via_upstream", "last_check_ms": 2,
                             "next_check_ms": 3, "checks": 1, "ok_streak": 0, "failures": 4,
                             "not_before_ms": 5, "probe_until_ms": 6 } },
        "strikes": { "spare": 2 },
        "stats": { "total_failed": 7, "total_verified": 8, "total_recovered": 9, "total_still_failed": 10 },
        "lease": { "owner": "failover-0badf00d", "until_ms": 11 }
    })
}

/// Arbitrary JSON, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,24}".prop_map(Value::String),
        prop_oneof![
            Just("5xx"),
            Just("${X}"),
            Just("${"),
            Just(""),
            Just("UT"),
            Just("/p")
        ]
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every path (object keys and array indices) in `v`.
fn paths(v: &Value, here: &mut Vec<PathStep>, out: &mut Vec<Vec<PathStep>>) {
    out.push(here.clone());
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                here.push(PathStep::Key(k.clone()));
                paths(child, here, out);
                here.pop();
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                here.push(PathStep::Index(i));
                paths(child, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}

#[derive(Debug, Clone)]
enum PathStep {
    Key(String),
    Index(usize),
}

fn at<'a>(v: &'a mut Value, path: &[PathStep]) -> Option<&'a mut Value> {
    let mut cur = v;
    for step in path {
        cur = match step {
            PathStep::Key(k) => cur.get_mut(k)?,
            PathStep::Index(i) => cur.get_mut(*i)?,
        };
    }
    Some(cur)
}

/// `base` with the node at a (pseudo-randomly chosen) path replaced by `with`, or removed.
fn mutate(base: &Value, pick: usize, with: Value, remove: bool) -> Value {
    let mut out = Vec::new();
    paths(base, &mut Vec::new(), &mut out);
    let path = &out[pick % out.len()];
    let mut v = base.clone();
    if remove && !path.is_empty() {
        let (last, parent) = path.split_last().expect("non-empty");
        if let Some(p) = at(&mut v, parent) {
            match (p, last) {
                (Value::Object(m), PathStep::Key(k)) => {
                    m.remove(k);
                }
                (Value::Array(a), PathStep::Index(i)) if *i < a.len() => {
                    a.remove(*i);
                }
                _ => {}
            }
        }
    } else if let Some(node) = at(&mut v, path) {
        *node = with;
    }
    v
}

// ===== the properties, shared with the corpus replay =====

/// The plugin config parser: no panic, errors name a path, never print a resolved secret.
fn check_config(bytes: &[u8]) {
    match Config::parse(bytes, &env) {
        Ok(c) => {
            assert!(!c.endpoints.is_empty());
            assert!(c.failover.max_attempts >= 1 && c.failure.threshold >= 1);
            // A debug print of a whole config must not show a secret header value either.
            assert!(
                !format!("{c:?}").contains(SECRET),
                "Debug of a Config shows a secret"
            );
        }
        Err(e) => {
            let text = e.to_string();
            assert!(text.starts_with("plugin config: "), "{text}");
            assert!(
                !text.contains(SECRET),
                "config error prints a resolved ${{ENV}} value: {text}"
            );
            match &e {
                ConfigError::Shape { path, .. } | ConfigError::Invalid { path, .. } => {
                    // The path is empty only when the offending key itself is `""`.
                    assert!(
                        !path.is_empty() || text.contains("field ``"),
                        "error without a field path: {text}"
                    )
                }
            }
        }
    }
}

/// The shared record decoder: no panic; what decodes re-encodes to an equal record.
fn check_record(bytes: &[u8]) {
    if let Ok(r) = Record::decode(bytes) {
        let again = Record::decode(&r.encode()).expect("an encoded record decodes");
        assert_eq!(again, r);
    }
}

/// The header parsers: no panic; a deadline is never further than the clamp.
fn check_retry_after(text: &str, now: u64) {
    let _ = parse_retry_after(text, now);
    let _ = parse_http_date_ms(text);
    let _ = parse_rfc3339_ms(text);
    let _ = parse_go_duration_ms(text);
    for status in [429u16, 503, 529, 500] {
        let headers = vec![
            ("retry-after".to_string(), text.to_string()),
            (
                "anthropic-ratelimit-requests-reset".to_string(),
                text.to_string(),
            ),
            ("x-ratelimit-reset-tokens".to_string(), text.to_string()),
        ];
        if let Some(d) = deadline_ms(status, &headers, now) {
            assert!(
                d <= now.saturating_add(MAX_DELAY_MS),
                "{text:?} -> {d} (now {now})"
            );
        }
        let only_resets = &headers[1..];
        if let Some(d) = deadline_ms(status, only_resets, now) {
            assert!(
                d <= now.saturating_add(MAX_DELAY_MS),
                "{text:?} -> {d} (now {now})"
            );
        }
    }
}

/// Status decoding: `None` or a real HTTP status.
fn check_status(bytes: &[u8]) {
    if let Some(s) = decode_status(bytes) {
        assert!((100..=599).contains(&s), "{bytes:?} -> {s}");
    }
    assert_eq!(decode_u64_le(bytes).is_some(), bytes.len() == 8);
}

proptest! {
    #[test]
    fn config_from_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_config(&bytes);
    }

    #[test]
    fn config_from_arbitrary_json(v in any_json()) {
        check_config(v.to_string().as_bytes());
    }

    #[test]
    fn config_with_one_field_mutated(pick in any::<usize>(), with in any_json(), remove in any::<bool>()) {
        check_config(mutate(&valid_config(), pick, with, remove).to_string().as_bytes());
    }

    #[test]
    fn config_with_bytes_flipped(pos in any::<usize>(), byte in any::<u8>()) {
        let mut text = valid_config().to_string().into_bytes();
        let i = pos % text.len();
        text[i] = byte;
        check_config(&text);
    }

    #[test]
    fn record_from_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_record(&bytes);
    }

    #[test]
    fn record_with_one_field_mutated(pick in any::<usize>(), with in any_json(), remove in any::<bool>()) {
        check_record(mutate(&valid_record(), pick, with, remove).to_string().as_bytes());
    }

    #[test]
    fn retry_after_from_arbitrary_text(text in ".{0,40}", now in any::<u64>()) {
        check_retry_after(&text, now);
    }

    #[test]
    fn retry_after_from_date_like_text(
        text in "[A-Za-z]{3}, [0-9]{1,20} [A-Za-z]{3} -?[0-9]{1,20} [0-9]{1,3}:[0-9]{1,3}:[0-9]{1,3} GMT",
        now in any::<u64>(),
    ) {
        check_retry_after(&text, now);
    }

    #[test]
    fn retry_after_from_rfc3339_like_text(
        text in "-?[0-9]{1,20}-[0-9]{1,3}-[0-9]{1,3}[Tt ][0-9]{1,3}:[0-9]{1,3}:[0-9]{1,3}(\\.[0-9]{0,12})?([Zz]|[+-][0-9]{1,3}:[0-9]{1,3})",
        now in any::<u64>(),
    ) {
        check_retry_after(&text, now);
    }

    #[test]
    fn retry_after_from_duration_like_text(text in "([0-9.]{1,12}(ms|s|m|h|us|ns)?){1,4}", now in any::<u64>()) {
        check_retry_after(&text, now);
    }

    #[test]
    fn status_from_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..16)) {
        check_status(&bytes);
    }
}

// ===== the seed corpus (shared with cargo-fuzz) =====

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {} missing: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let out: Vec<_> = files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).expect("read corpus file");
            (p, bytes)
        })
        .collect();
    assert!(!out.is_empty(), "corpus {} is empty", dir.display());
    out
}

#[test]
fn corpus_plugin_config() {
    for (path, bytes) in corpus("plugin_config") {
        eprintln!("{}", path.display());
        check_config(&bytes);
    }
}

#[test]
fn corpus_shared_record() {
    for (path, bytes) in corpus("shared_record") {
        eprintln!("{}", path.display());
        check_record(&bytes);
    }
}

#[test]
fn corpus_retry_after() {
    for (path, bytes) in corpus("retry_after") {
        eprintln!("{}", path.display());
        let text = String::from_utf8_lossy(&bytes);
        for now in [0, 1_700_000_000_000, u64::MAX] {
            check_retry_after(&text, now);
        }
    }
}

#[test]
fn corpus_status() {
    for (path, bytes) in corpus("decode_status") {
        eprintln!("{}", path.display());
        check_status(&bytes);
    }
}

// ===== specific inputs that once were, or could be, trouble =====

#[test]
fn the_valid_seeds_are_valid() {
    // Guards the generators: mutations start from input that parses.
    assert!(Config::parse(valid_config().to_string().as_bytes(), &env).is_ok());
    assert!(Record::decode(valid_record().to_string().as_bytes()).is_ok());
}

#[test]
fn foreign_or_corrupt_records_are_errors_not_panics() {
    for bad in [
        &b"{"[..],
        b"null",
        b"[]",
        b"\"failover\"",
        b"{\"queue\": []}",
        b"{\"stats\": {\"total_failed\": -1}}",
        b"{\"stats\": {\"total_failed\": 18446744073709551616}}",
        b"\xff\xfe\x00",
        b"{\"queue\": {\"a\": {\"checks\": 4294967296}}}",
    ] {
        assert!(
            Record::decode(bad).is_err(),
            "{:?} decoded",
            String::from_utf8_lossy(bad)
        );
    }
    // An empty value is what the SDK's remove leaves: a fresh record, not an error.
    assert_eq!(Record::decode(b"").ok(), Some(Record::default()));
}

#[test]
fn extreme_dates_do_not_overflow() {
    let mut panicked = Vec::new();
    for text in [
        "Sun, 06 Nov 9223372036854775807 08:49:37 GMT",
        "Sun, 31 Dec 99999999999999 23:59:60 GMT",
        "9223372036854775807-12-31T23:59:60Z",
        "99999999999999-12-31T23:59:59.999+23:59",
        "1970-01-01T00:00:00-99999999999999:00",
        "1970-01-01T00:00:00+9223372036854775807:9223372036854775807",
        "18446744073709551615",
        "1e308",
        "99999999999999999999999h",
    ] {
        for now in [0, u64::MAX] {
            let result = std::panic::catch_unwind(|| check_retry_after(text, now));
            if result.is_err() {
                panicked.push(format!("{text:?} (now {now})"));
            }
        }
    }
    assert!(
        panicked.is_empty(),
        "the retry-after parsers panicked on: {panicked:#?}"
    );
}
