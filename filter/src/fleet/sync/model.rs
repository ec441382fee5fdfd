//! A model etcd for the model checks: one in-memory keyspace with etcd's rules, spoken to in
//! the JSON gateway's own shapes (so the codec is exercised too).
//!
//! etcd's rules that matter here: one store-wide revision counter that every write moves (a
//! put on *any* key); a key's `mod_revision` is the revision of its last put and its
//! `create_revision` that of its creation (0: missing); a txn evaluates its compares and runs
//! the success or the failure branch atomically; proto3 JSON leaves out zero values
//! (`succeeded: false`, absent `kvs`).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::super::base64;
use super::super::etcd::{RANGE_PATH, TXN_PATH};

#[derive(Debug, Clone)]
struct Entry {
    value: Vec<u8>,
    create_revision: i64,
    mod_revision: i64,
}

/// The keyspace.
#[derive(Debug)]
pub struct ModelEtcd {
    revision: i64,
    keys: BTreeMap<Vec<u8>, Entry>,
    /// A broken etcd that runs the success branch whatever the compares say: the model check
    /// must catch the lost updates it causes.
    pub ignore_compares: bool,
}

impl Default for ModelEtcd {
    fn default() -> Self {
        Self {
            revision: 1,
            keys: BTreeMap::new(),
            ignore_compares: false,
        }
    }
}

fn b64(v: &Value) -> Vec<u8> {
    v.as_str()
        .and_then(base64::decode)
        .expect("the client sends base64")
}

fn int64(v: &Value) -> i64 {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or(0)
}

impl ModelEtcd {
    /// A put from outside the fleet (another application's key): moves the global revision.
    pub fn put_other(&mut self, key: &[u8], value: &[u8]) {
        self.put(key.to_vec(), value.to_vec());
    }

    /// The stored value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<(Vec<u8>, i64)> {
        self.keys
            .get(key)
            .map(|e| (e.value.clone(), e.mod_revision))
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.revision += 1;
        let create_revision = self
            .keys
            .get(&key)
            .map_or(self.revision, |e| e.create_revision);
        self.keys.insert(
            key,
            Entry {
                value,
                create_revision,
                mod_revision: self.revision,
            },
        );
    }

    fn range(&self, key: &[u8]) -> Value {
        let mut out = json!({ "header": { "revision": self.revision.to_string() } });
        if let Some(e) = self.keys.get(key) {
            let mut kv = json!({
                "key": base64::encode(key),
                "create_revision": e.create_revision.to_string(),
                "mod_revision": e.mod_revision.to_string(),
                "version": "1",
            });
            if !e.value.is_empty() {
                kv["value"] = json!(base64::encode(&e.value));
            }
            out["kvs"] = json!([kv]);
            out["count"] = json!("1");
        }
        out
    }

    fn compare(&self, c: &Value) -> bool {
        let key = b64(&c["key"]);
        let entry = self.keys.get(&key);
        let (actual, wanted) = match c["target"].as_str() {
            Some("MOD") => (
                entry.map_or(0, |e| e.mod_revision),
                int64(&c["mod_revision"]),
            ),
            Some("CREATE") => (
                entry.map_or(0, |e| e.create_revision),
                int64(&c["create_revision"]),
            ),
            other => panic!("the model knows MOD and CREATE compares, not {other:?}"),
        };
        assert_eq!(c["result"], "EQUAL");
        actual == wanted
    }

    fn run_ops(&mut self, ops: &Value) -> Vec<Value> {
        let mut responses = Vec::new();
        for op in ops.as_array().expect("ops") {
            if let Some(put) = op.get("request_put") {
                self.put(b64(&put["key"]), b64(&put["value"]));
                responses.push(
                    json!({ "response_put": { "header": { "revision": self.revision.to_string() } } }),
                );
            } else if let Some(range) = op.get("request_range") {
                responses.push(json!({ "response_range": self.range(&b64(&range["key"])) }));
            } else {
                panic!("unknown op {op}");
            }
        }
        responses
    }

    /// Serves one gateway call: `(status, body)`.
    pub fn handle(&mut self, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let req: Value = serde_json::from_slice(body).expect("the client sends JSON");
        let answer = match path {
            RANGE_PATH => self.range(&b64(&req["key"])),
            TXN_PATH => {
                let ok = self.ignore_compares
                    || req["compare"]
                        .as_array()
                        .expect("compares")
                        .iter()
                        .all(|c| self.compare(c));
                let branch = if ok { &req["success"] } else { &req["failure"] };
                let responses = self.run_ops(branch);
                let mut out = json!({
                    "header": { "revision": self.revision.to_string() },
                    "responses": responses,
                });
                if ok {
                    out["succeeded"] = json!(true);
                }
                out
            }
            other => panic!("unknown path {other}"),
        };
        (200, answer.to_string().into_bytes())
    }
}
