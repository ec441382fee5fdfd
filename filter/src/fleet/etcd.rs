//! etcd v3 over its JSON gateway (grpc-gateway), as plain request bodies and parsed answers, so
//! the glue only has to `dispatch_http_call` them.
//!
//! The shapes follow etcd's `rpc.proto` JSON mapping (checked against etcd's
//! `Documentation/dev-guide/apispec/swagger/rpc.swagger.json` and `api_grpc_gateway.md`):
//! - bytes (`key`, `value`) are base64; int64 (`mod_revision`, `create_revision`, `revision`)
//!   are decimal strings; enums are their names (`"MOD"`, `"CREATE"`, `"EQUAL"`);
//! - proto3 JSON leaves out zero values: a missing key's range answer has no `kvs`, a failed
//!   txn has no `succeeded`, and `count` may be absent;
//! - `POST /v3/kv/range` `{"key"}`; `POST /v3/kv/txn` `{"compare":[…],"success":[{"request_put":
//!   …}],"failure":[{"request_range":…}]}` answering `{"succeeded":true,"responses":[…]}` or, on
//!   a failed compare, the failure branch's `response_range` with the current value.
//!
//! Checked against a real etcd 3.4.23 (Debian `etcd-server`): its gateway accepts these
//! snake_case request fields (protobuf JSON also allows camelCase) and answers in snake_case
//! (`mod_revision`, `response_range`); the parser also takes the camelCase spelling, which a
//! gateway configured without `OrigName` would send. `tests/tests/fleet.rs` runs against it.
//!
//! Nothing here panics on a bad answer: every surprise is an [`EtcdError`].

use super::base64;
use crate::json::{self, Kind, Value, Writer};

/// Path of the range call (etcd ≥ 3.4; 3.3 only had `/v3beta`).
pub const RANGE_PATH: &str = "/v3/kv/range";
/// Path of the txn call.
pub const TXN_PATH: &str = "/v3/kv/txn";

/// A key's current value and the revision that last modified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    /// The stored bytes.
    pub value: Vec<u8>,
    /// The revision of its last modification: what the next txn compares against.
    pub mod_revision: i64,
}

/// The answer to a txn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOutcome {
    /// The compare held and the put landed at `revision` (the key's new `mod_revision`).
    Succeeded {
        /// The store revision after the txn.
        revision: i64,
    },
    /// Someone wrote first: the failure branch read the current value (`None`: key missing).
    Failed {
        /// The key as it is now.
        current: Option<Kv>,
    },
}

/// An etcd answer that is not what a healthy etcd sends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdError {
    /// A non-200 status (or none: the call failed or timed out); `message` is the gateway's
    /// error text when it sent one.
    #[error("etcd answered {status:?}: {message}")]
    Status {
        /// HTTP status, `None` when there was no answer.
        status: Option<u16>,
        /// The gateway's `message`/`error` field, or a description.
        message: String,
    },
    /// A 200 whose body is not the expected JSON shape.
    #[error("etcd answer not understood: {0}")]
    Shape(String),
}

// ===== requests =====
//
// Written field by field: fields go out in this order whatever happens elsewhere, so the golden
// bytes in the tests are the bytes on the wire.

/// Body of `POST /v3/kv/range` reading `key`.
pub fn range_request(key: &str) -> Vec<u8> {
    let mut w = Writer::new();
    w.begin_object();
    w.field_str("key", &base64::encode(key.as_bytes()));
    w.end_object();
    w.into_bytes()
}

/// Body of `POST /v3/kv/txn`: put `value` at `key` if its `mod_revision` is still `expected`
/// (`None`: only if the key is still missing, `create_revision == 0`); otherwise read it.
pub fn txn_request(key: &str, expected: Option<i64>, value: &[u8]) -> Vec<u8> {
    let key64 = base64::encode(key.as_bytes());
    let mut w = Writer::new();
    w.begin_object();
    w.key("compare");
    w.begin_array();
    w.begin_object();
    w.field_str("key", &key64);
    match expected {
        Some(rev) => {
            w.field_str("target", "MOD");
            w.field_str("result", "EQUAL");
            w.field_str("mod_revision", &rev.to_string());
        }
        None => {
            w.field_str("target", "CREATE");
            w.field_str("result", "EQUAL");
            w.field_str("create_revision", "0");
        }
    }
    w.end_object();
    w.end_array();
    w.key("success");
    w.begin_array();
    w.begin_object();
    w.key("request_put");
    w.begin_object();
    w.field_str("key", &key64);
    w.field_str("value", &base64::encode(value));
    w.end_object();
    w.end_object();
    w.end_array();
    w.key("failure");
    w.begin_array();
    w.begin_object();
    w.key("request_range");
    w.begin_object();
    w.field_str("key", &key64);
    w.end_object();
    w.end_object();
    w.end_array();
    w.end_object();
    w.into_bytes()
}

// ===== answers =====

/// Parses the answer to [`range_request`]: `Ok(None)` when the key is missing.
///
/// # Errors
/// A non-200 status, or a body that is not a range answer.
pub fn parse_range(status: Option<u16>, body: &[u8]) -> Result<Option<Kv>, EtcdError> {
    let v = ok_json(status, body)?;
    first_kv(&v)
}

/// Parses the answer to [`txn_request`].
///
/// # Errors
/// A non-200 status, or a body that is not a txn answer.
pub fn parse_txn(status: Option<u16>, body: &[u8]) -> Result<TxnOutcome, EtcdError> {
    let v = ok_json(status, body)?;
    let succeeded = match v.get("succeeded").map(|s| &s.kind) {
        None | Some(Kind::Null) => false,
        Some(Kind::Bool(b)) => *b,
        Some(_) => {
            let other = v.get("succeeded").map(Value::to_string).unwrap_or_default();
            return Err(EtcdError::Shape(format!("succeeded is {other}")));
        }
    };
    if succeeded {
        let revision = v
            .get("header")
            .and_then(|h| h.get("revision"))
            .and_then(int64)
            .ok_or_else(|| EtcdError::Shape("a succeeded txn without header.revision".into()))?;
        return Ok(TxnOutcome::Succeeded { revision });
    }
    let range = v
        .get("responses")
        .and_then(Value::as_array)
        .and_then(|r| {
            r.iter()
                .find_map(|op| op.get("response_range").or_else(|| op.get("responseRange")))
        })
        .ok_or_else(|| EtcdError::Shape("a failed txn without its response_range".into()))?;
    Ok(TxnOutcome::Failed {
        current: first_kv(range)?,
    })
}

fn ok_json(status: Option<u16>, body: &[u8]) -> Result<Value, EtcdError> {
    let parsed: Option<Value> = json::parse(body).ok();
    if status != Some(200) {
        let message = parsed
            .as_ref()
            .and_then(|v| v.get("message").or_else(|| v.get("error")))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(body);
                text.chars().take(200).collect()
            });
        return Err(EtcdError::Status { status, message });
    }
    match parsed {
        Some(v) if v.is_object() => Ok(v),
        _ => Err(EtcdError::Shape("the body is not a JSON object".into())),
    }
}

/// The first `kvs` entry of a range answer; `None` when `kvs` is absent or empty.
fn first_kv(range: &Value) -> Result<Option<Kv>, EtcdError> {
    let kv = match range.get("kvs") {
        None => return Ok(None),
        Some(kvs) => match &kvs.kind {
            Kind::Null => return Ok(None),
            Kind::Array(kvs) => match kvs.first() {
                None => return Ok(None),
                Some(kv) => kv,
            },
            _ => return Err(EtcdError::Shape(format!("kvs is {kvs}"))),
        },
    };
    let value = match kv.get("value") {
        None => Vec::new(),
        Some(value) => match &value.kind {
            // An empty value is left out like every proto3 default.
            Kind::Null => Vec::new(),
            Kind::Str(s) => {
                base64::decode(s).ok_or_else(|| EtcdError::Shape("value is not base64".into()))?
            }
            _ => return Err(EtcdError::Shape(format!("value is {value}"))),
        },
    };
    let mod_revision = kv
        .get("mod_revision")
        .or_else(|| kv.get("modRevision"))
        .and_then(int64)
        .filter(|r| *r > 0)
        .ok_or_else(|| EtcdError::Shape("a kv without a positive mod_revision".into()))?;
    Ok(Some(Kv {
        value,
        mod_revision,
    }))
}

/// An int64 as the gateway writes it: a decimal string (numbers accepted too).
fn int64(v: &Value) -> Option<i64> {
    match &v.kind {
        Kind::Str(s) => s.parse().ok(),
        _ => v.as_i64(),
    }
}

#[cfg(test)]
mod tests;
