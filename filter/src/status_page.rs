//! The local status endpoint: the queue, the counters and each endpoint's state as JSON, for
//! sources in `status.allow_from` only. Header values (where secrets live) are never included.

use std::net::{IpAddr, SocketAddr};

use serde_json::{json, Value};

use crate::config::Config;
use crate::fleet::FleetStatus;
use crate::state::Record;

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
/// while no round has run yet: the page then says "not connected").
pub fn render(config: &Config, record: &Record, now_ms: u64, fleet: Option<&FleetStatus>) -> Value {
    let endpoints: Vec<Value> = config
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
    let fleet = match (&config.fleet, fleet) {
        (None, _) => json!({ "enabled": false }),
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
    json!({
        "now_ms": now_ms,
        "fleet": fleet,
        "queue_size": record.queue.len(),
        "queue": record.queue,
        "stats": record.stats,
        "endpoints": endpoints,
        "verifier": { "lease_owner": record.lease.owner, "lease_until_ms": record.lease.until_ms },
    })
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
        let v = render(&c, &r, 20, None);
        let text = v.to_string();
        assert!(!text.contains("sk-very-secret"), "{text}");
        assert_eq!(v["queue_size"], 1);
        assert_eq!(v["stats"]["total_failed"], 1);
        assert_eq!(v["endpoints"][0]["state"], "parked");
        assert_eq!(v["endpoints"][0]["reason"], "status 503 via_upstream");
        assert_eq!(v["endpoints"][0]["next_check_ms"], 5000);
        assert_eq!(v["endpoints"][0]["headers_set"][0], "x-api-key");
        assert_eq!(v["endpoints"][1]["state"], "healthy");
    }
}
