//! The local status endpoint: the queue, the counters and each endpoint's state as JSON, for
//! sources in `status.allow_from` only. Header values (where secrets live) are never included.

use std::net::{IpAddr, SocketAddr};

use crate::config::Config;
use crate::fleet::FleetStatus;
use crate::json::{Kind, Value};
use crate::state::{QueueEntry, Record, Stats};

/// Parses a `source.address` property (`1.2.3.4:5678`, `[::1]:80`, or a bare IP).
pub fn parse_source(text: &str) -> Option<IpAddr> {
    let t = text.trim();
    t.parse::<SocketAddr>()
        .map(|s| s.ip())
        .or_else(|_| t.parse::<IpAddr>())
        .ok()
}

/// True when the source may see the status page. An unknown source never may.
pub fn allowed(config: &Config, source: Option<&str>) -> bool {
    match source.and_then(parse_source) {
        Some(ip) => config.status_page.allow_from.iter().any(|c| c.contains(ip)),
        None => false,
    }
}

/// True when `path` (with any query) is the status path.
pub fn is_status_path(config: &Config, path: &str) -> bool {
    path.split('?').next() == Some(config.status_page.path.as_str())
}

/// The status document. `fleet` is the syncer's last snapshot when fleet mode is on (`None`
/// while no round has run yet: the page then says "not connected"). Its text
/// (`to_string()`) has every object's keys sorted, as the page had when serde_json built it.
pub fn render(config: &Config, record: &Record, now_ms: u64, fleet: Option<&FleetStatus>) -> Value {
    let endpoints: Vec<Value> = config
        .endpoints
        .iter()
        .map(|e| {
            let name = e.id.as_str();
            let headers = e
                .request_headers
                .iter()
                .map(|(n, _)| Value::str(n))
                .collect();
            let mut fields = vec![
                ("name", Value::str(name)),
                ("cluster", Value::str(&e.cluster)),
                ("group", Value::str(&e.group)),
                ("weight", Value::u64(u64::from(e.weight))),
                ("headers_set", Value::new(Kind::Array(headers))),
            ];
            match record.queue.get(name) {
                Some(q) => fields.extend([
                    ("state", Value::str("parked")),
                    ("parked_since_ms", Value::u64(q.since_ms)),
                    ("reason", Value::str(&q.reason)),
                    ("failures_seen", Value::u64(q.failures)),
                    ("last_check_ms", Value::u64(q.last_check_ms)),
                    (
                        "next_check_ms",
                        Value::u64(q.next_check_ms.max(q.not_before_ms)),
                    ),
                    ("failed_checks", Value::u64(u64::from(q.checks))),
                    ("ok_streak", Value::u64(u64::from(q.ok_streak))),
                    ("retry_after_until_ms", Value::u64(q.not_before_ms)),
                ]),
                None => fields.extend([
                    ("state", Value::str("healthy")),
                    (
                        "strikes",
                        Value::u64(u64::from(record.strikes.get(name).copied().unwrap_or(0))),
                    ),
                ]),
            }
            Value::object(fields)
        })
        .collect();
    let fleet = match (&config.fleet, fleet) {
        (None, _) => Value::object(vec![("enabled", Value::bool(false))]),
        (Some(f), snapshot) => {
            let mut blank = FleetStatus::default();
            let s = match snapshot {
                Some(s) => s,
                None => {
                    blank.member = f.member.clone().unwrap_or_default();
                    &blank
                }
            };
            s.render(config.endpoints.iter().map(|e| e.id.as_str()), record)
        }
    };
    let queue = record
        .queue
        .iter()
        .map(|(name, q)| (name.as_str(), queue_entry(q)))
        .collect();
    Value::object(vec![
        ("now_ms", Value::u64(now_ms)),
        ("fleet", fleet),
        ("queue_size", Value::u64(record.queue.len() as u64)),
        ("queue", Value::object(queue)),
        ("stats", stats(&record.stats)),
        ("endpoints", Value::new(Kind::Array(endpoints))),
        (
            "verifier",
            Value::object(vec![
                ("lease_owner", Value::str(&record.lease.owner)),
                ("lease_until_ms", Value::u64(record.lease.until_ms)),
            ]),
        ),
    ])
}

fn queue_entry(q: &QueueEntry) -> Value {
    Value::object(vec![
        ("since_ms", Value::u64(q.since_ms)),
        ("reason", Value::str(&q.reason)),
        ("last_check_ms", Value::u64(q.last_check_ms)),
        ("next_check_ms", Value::u64(q.next_check_ms)),
        ("checks", Value::u64(u64::from(q.checks))),
        ("ok_streak", Value::u64(u64::from(q.ok_streak))),
        ("failures", Value::u64(q.failures)),
        ("not_before_ms", Value::u64(q.not_before_ms)),
        ("probe_until_ms", Value::u64(q.probe_until_ms)),
    ])
}

fn stats(s: &Stats) -> Value {
    Value::object(vec![
        ("total_failed", Value::u64(s.total_failed)),
        ("total_verified", Value::u64(s.total_verified)),
        ("total_recovered", Value::u64(s.total_recovered)),
        ("total_still_failed", Value::u64(s.total_still_failed)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Failure;

    fn config() -> Config {
        Config::parse(
            br#"{"endpoints":[{"name":"main","cluster":"cm","request_headers":{"x-api-key":"${K}"}},{"name":"spare","cluster":"cs"}]}"#,
            &|n| (n == "K").then(|| "sk-very-secret".to_string()),
        )
        .unwrap()
    }

    #[test]
    fn only_allowed_sources() {
        let c = config();
        assert!(allowed(&c, Some("127.0.0.1:5555")));
        assert!(allowed(&c, Some("[::1]:80")));
        assert!(!allowed(&c, Some("10.1.2.3:80")));
        assert!(!allowed(&c, Some("garbage")));
        assert!(!allowed(&c, None));
        assert!(is_status_path(&c, "/failover/status?x=1"));
        assert!(!is_status_path(&c, "/failover/status/x"));
    }

    #[test]
    fn shows_the_queue_and_never_secrets() {
        let c = config();
        let mut r = Record::default();
        r.record_failure(&Failure {
            id: "main",
            reason: "status 503 via_upstream",
            now_ms: 10,
            threshold: 1,
            interval_ms: 1000,
            not_before_ms: Some(5000),
        });
        let text = render(&c, &r, 20, None).to_string();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(!text.contains("sk-very-secret"), "{text}");
        assert_eq!(v["queue_size"], 1);
        assert_eq!(v["stats"]["total_failed"], 1);
        assert_eq!(v["endpoints"][0]["state"], "parked");
        assert_eq!(v["endpoints"][0]["reason"], "status 503 via_upstream");
        assert_eq!(v["endpoints"][0]["next_check_ms"], 5000);
        assert_eq!(v["endpoints"][0]["headers_set"][0], "x-api-key");
        assert_eq!(v["endpoints"][1]["state"], "healthy");
    }

    /// The page as serde_json's `json!` built it before issue 16 (its map sorts keys).
    fn old_render(config: &Config, record: &Record, now_ms: u64) -> String {
        use serde_json::json;
        let endpoints: Vec<serde_json::Value> = config
            .endpoints
            .iter()
            .map(|e| {
                let name = e.id.as_str();
                let mut v = json!({
                    "name": name,
                    "cluster": e.cluster,
                    "group": e.group,
                    "weight": e.weight,
                    "headers_set": e.request_headers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
                });
                match record.queue.get(name) {
                    Some(q) => {
                        v["state"] = json!("parked");
                        v["parked_since_ms"] = json!(q.since_ms);
                        v["reason"] = json!(q.reason);
                        v["failures_seen"] = json!(q.failures);
                        v["last_check_ms"] = json!(q.last_check_ms);
                        v["next_check_ms"] = json!(q.next_check_ms.max(q.not_before_ms));
                        v["failed_checks"] = json!(q.checks);
                        v["ok_streak"] = json!(q.ok_streak);
                        v["retry_after_until_ms"] = json!(q.not_before_ms);
                    }
                    None => {
                        v["state"] = json!("healthy");
                        v["strikes"] = json!(record.strikes.get(name).copied().unwrap_or(0));
                    }
                }
                v
            })
            .collect();
        let queue: serde_json::Map<String, serde_json::Value> = record
            .queue
            .iter()
            .map(|(k, q)| {
                (
                    k.clone(),
                    json!({
                        "since_ms": q.since_ms, "reason": q.reason, "last_check_ms": q.last_check_ms,
                        "next_check_ms": q.next_check_ms, "checks": q.checks, "ok_streak": q.ok_streak,
                        "failures": q.failures, "not_before_ms": q.not_before_ms,
                        "probe_until_ms": q.probe_until_ms,
                    }),
                )
            })
            .collect();
        let s = &record.stats;
        json!({
            "now_ms": now_ms,
            "fleet": { "enabled": false },
            "queue_size": record.queue.len(),
            "queue": queue,
            "stats": { "total_failed": s.total_failed, "total_verified": s.total_verified,
                       "total_recovered": s.total_recovered, "total_still_failed": s.total_still_failed },
            "endpoints": endpoints,
            "verifier": { "lease_owner": record.lease.owner, "lease_until_ms": record.lease.until_ms },
        })
        .to_string()
    }

    #[test]
    fn the_page_is_byte_for_byte_what_serde_json_printed() {
        let c = config();
        let mut r = Record::default();
        assert_eq!(render(&c, &r, 7, None).to_string(), old_render(&c, &r, 7));
        r.record_failure(&Failure {
            id: "main",
            reason: "status 503 \"quoted\" \u{1} via_upstream",
            now_ms: 10,
            threshold: 1,
            interval_ms: 1000,
            not_before_ms: Some(5000),
        });
        r.strikes.insert("spare".into(), 2);
        r.stats.total_verified = 3;
        r.lease.owner = "vm-1".into();
        r.lease.until_ms = 99;
        assert_eq!(render(&c, &r, 20, None).to_string(), old_render(&c, &r, 20));
    }
}
