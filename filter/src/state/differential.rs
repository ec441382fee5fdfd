//! The shared record's JSON against the serde derive it replaced (issue 16): a mirror of the
//! old types with the old attributes, read and written by serde_json (dev-dependencies only).
//! Same bytes out, same records in, the same values accepted and refused.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{Lease, QueueEntry, Record, Stats};

/// The old types, under their old names (serde's messages name them).
mod old {
    use super::*;

    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(default)]
    pub(super) struct Stats {
        pub(super) total_failed: u64,
        pub(super) total_verified: u64,
        pub(super) total_recovered: u64,
        pub(super) total_still_failed: u64,
    }

    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(default)]
    pub(super) struct QueueEntry {
        pub(super) since_ms: u64,
        pub(super) reason: String,
        pub(super) last_check_ms: u64,
        pub(super) next_check_ms: u64,
        pub(super) checks: u32,
        pub(super) ok_streak: u32,
        pub(super) failures: u64,
        pub(super) not_before_ms: u64,
        pub(super) probe_until_ms: u64,
    }

    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(default)]
    pub(super) struct Lease {
        pub(super) owner: String,
        pub(super) until_ms: u64,
    }

    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    pub(super) struct Record {
        pub(super) queue: BTreeMap<String, QueueEntry>,
        pub(super) strikes: BTreeMap<String, u32>,
        pub(super) stats: Stats,
        pub(super) lease: Lease,
    }
}

fn old_decode(bytes: &[u8]) -> Result<old::Record, String> {
    if bytes.is_empty() {
        return Ok(old::Record::default());
    }
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err("the shared record is not a JSON object".into());
    }
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

fn to_old(r: &Record) -> old::Record {
    old::Record {
        queue: r
            .queue
            .iter()
            .map(|(k, e)| {
                let QueueEntry {
                    since_ms,
                    reason,
                    last_check_ms,
                    next_check_ms,
                    checks,
                    ok_streak,
                    failures,
                    not_before_ms,
                    probe_until_ms,
                } = e.clone();
                (
                    k.clone(),
                    old::QueueEntry {
                        since_ms,
                        reason,
                        last_check_ms,
                        next_check_ms,
                        checks,
                        ok_streak,
                        failures,
                        not_before_ms,
                        probe_until_ms,
                    },
                )
            })
            .collect(),
        strikes: r.strikes.clone(),
        stats: {
            let Stats {
                total_failed,
                total_verified,
                total_recovered,
                total_still_failed,
            } = r.stats;
            old::Stats {
                total_failed,
                total_verified,
                total_recovered,
                total_still_failed,
            }
        },
        lease: {
            let Lease { owner, until_ms } = r.lease.clone();
            old::Lease { owner, until_ms }
        },
    }
}

/// Both decoders agree: the same record, or both refuse with the same message.
fn check(bytes: &[u8]) {
    let ours = Record::decode(bytes);
    let theirs = old_decode(bytes);
    match (&ours, &theirs) {
        (Ok(o), Ok(t)) => assert_eq!(&to_old(o), t, "{:?}", String::from_utf8_lossy(bytes)),
        (Err(o), Err(t)) => assert_eq!(&o.to_string(), t, "{:?}", String::from_utf8_lossy(bytes)),
        _ => panic!(
            "{:?}: ours {ours:?}, serde {theirs:?}",
            String::from_utf8_lossy(bytes)
        ),
    }
}

fn valid() -> Value {
    json!({
        "queue": { "main": { "since_ms": 1, "reason": "status 503 via_upstream", "last_check_ms": 2,
                             "next_check_ms": 3, "checks": 1, "ok_streak": 0, "failures": 4,
                             "not_before_ms": 5, "probe_until_ms": 6 },
                   "b": { "reason": "\u{1} \" \\ é" } },
        "strikes": { "spare": 2, "x": 4294967295u32 },
        "stats": { "total_failed": 7, "total_verified": 8, "total_recovered": 9, "total_still_failed": 10 },
        "lease": { "owner": "failover-0badf00d", "until_ms": 11 }
    })
}

#[test]
fn hand_picked_records_read_as_before() {
    for text in [
        "",
        " ",
        "{}",
        "[]",
        " [1]",
        "null",
        "{\"queue\":[]}",
        "{\"queue\":null}",
        "{\"queue\":{\"a\":[]}}",
        "{\"queue\":{\"a\":[1,\"r\"]}}",
        "{\"queue\":{\"a\":[1,\"r\",1,1,1,1,1,1,1,1]}}",
        "{\"queue\":{\"a\":{\"checks\":4294967296}}}",
        "{\"queue\":{\"a\":{\"checks\":-1}}}",
        "{\"queue\":{\"a\":{\"unknown\":[{}]}}}",
        "{\"queue\":{\"a\":{\"since_ms\":1,\"since_ms\":2}}}",
        "{\"queue\":{\"a\":{}},\"queue\":{}}",
        "{\"queue\":{\"a\":{\"since_ms\":1},\"a\":{\"since_ms\":2}}}",
        "{\"strikes\":{\"a\":1.0}}",
        "{\"stats\":{\"total_failed\":-1}}",
        "{\"stats\":{\"total_failed\":18446744073709551616}}",
        "{\"stats\":{\"total_failed\":18446744073709551615}}",
        "{\"stats\":[1,2,3,4]}",
        "{\"stats\":[1,2,3,4,5]}",
        "{\"lease\":{\"owner\":null}}",
        "{\"surprise\":1}",
        "{\"queue\":{}} x",
        "{\"queue\":{}}\n",
        "{",
    ] {
        check(text.as_bytes());
    }
    check(b"\xff\xfe\x00");
    check(b"{\"lease\":{\"owner\":\"\xff\"}}");
}

#[test]
fn encoding_is_byte_for_byte_what_serde_wrote() {
    let r = Record::decode(valid().to_string().as_bytes()).unwrap();
    assert_eq!(r.encode(), serde_json::to_vec(&to_old(&r)).unwrap());
    let empty = Record::default();
    assert_eq!(
        String::from_utf8(empty.encode()).unwrap(),
        r#"{"queue":{},"strikes":{},"stats":{"total_failed":0,"total_verified":0,"total_recovered":0,"total_still_failed":0},"lease":{"owner":"","until_ms":0}}"#
    );
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<u32>().prop_map(|n| json!(n)),
        Just(json!(1.5)),
        ".{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{0,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn mutated_records_read_as_before(
        section in 0usize..4,
        key in prop_oneof![Just("main".to_string()), "[a-z_]{0,16}"],
        with in any_json(),
        nested in any::<bool>(),
    ) {
        let mut v = valid();
        let name = ["queue", "strikes", "stats", "lease"][section];
        if nested && section == 0 {
            v["queue"]["main"][key.as_str()] = with;
        } else if nested {
            v[name][key.as_str()] = with;
        } else {
            v[key.as_str()] = with;
        }
        check(v.to_string().as_bytes());
        check(serde_json::to_string_pretty(&v).unwrap().as_bytes());
    }

    #[test]
    fn records_round_trip_to_serdes_bytes(
        queue in prop::collection::btree_map(".{0,6}", (any::<u64>(), ".{0,12}", any::<u32>(), any::<u32>()), 0..4),
        strikes in prop::collection::btree_map(".{0,6}", any::<u32>(), 0..4),
        stats in any::<(u64, u64, u64, u64)>(),
        owner in ".{0,10}",
    ) {
        let mut r = Record::default();
        for (k, (since, reason, checks, ok)) in queue {
            r.queue.insert(k, QueueEntry { since_ms: since, reason, checks, ok_streak: ok, ..QueueEntry::default() });
        }
        r.strikes = strikes;
        r.stats = Stats { total_failed: stats.0, total_verified: stats.1, total_recovered: stats.2, total_still_failed: stats.3 };
        r.lease.owner = owner;
        let bytes = r.encode();
        prop_assert_eq!(&bytes, &serde_json::to_vec(&to_old(&r)).unwrap());
        prop_assert_eq!(Record::decode(&bytes).unwrap(), r);
    }
}
