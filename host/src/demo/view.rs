//! The demo's screen: what the traffic loop saw, what the mocks received, and the shared
//! failure record (`failover.v1`) the filter keeps — queue with reasons and the four counters.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value;

use super::traffic::Tally;

/// Everything one frame shows.
pub struct Frame<'a> {
    /// Time since the demo started.
    pub elapsed: Duration,
    /// Client-side counts.
    pub tally: &'a Tally,
    /// (mock name, mode label, requests it received).
    pub mocks: Vec<(String, String, u64)>,
    /// The shared record, if the filter wrote one.
    pub record: Option<Value>,
    /// The filter's metrics (name, value).
    pub metrics: Vec<(String, i64)>,
}

/// The four counters of the shared record, in display order.
pub const COUNTERS: [&str; 4] = [
    "total_failed",
    "total_verified",
    "total_recovered",
    "total_still_failed",
];

/// Reads a counter from the record (0 when absent).
pub fn counter(record: Option<&Value>, name: &str) -> u64 {
    u64_at(record.and_then(|r| r.get("stats")), name)
}

/// Renders a frame as plain text lines.
pub fn render(f: &Frame<'_>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "failover demo — {:.1}s   (Ctrl-C to stop)",
        f.elapsed.as_secs_f64()
    );
    let _ = writeln!(out);
    traffic_lines(&mut out, f.tally);
    let replayed = f
        .metrics
        .iter()
        .find(|(k, _)| k == "failover.failovers")
        .map(|(_, v)| v.to_string());
    let _ = writeln!(
        out,
        "failovers (requests the filter replayed on another endpoint): {}",
        replayed.unwrap_or_else(|| "-".into())
    );
    let _ = writeln!(out);
    upstream_lines(&mut out, &f.mocks);
    let record = f.record.as_ref();
    let _ = writeln!(out, "failure queue (shared data key failover.v1):");
    match record
        .and_then(|r| r.get("queue"))
        .and_then(Value::as_object)
    {
        Some(q) if !q.is_empty() => {
            for (name, entry) in q {
                let reason = entry.get("reason").and_then(Value::as_str).unwrap_or("?");
                let checks = entry.get("checks").and_then(Value::as_u64).unwrap_or(0);
                let _ = writeln!(out, "  {name:<8} reason: {reason}   checks: {checks}");
            }
        }
        _ => {
            let _ = writeln!(out, "  (empty)");
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "counters: {}", counters_line(record));
    if !f.metrics.is_empty() {
        let m: Vec<String> = f.metrics.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(out, "metrics:  {}", m.join("  "));
    }
    out
}

/// What the client loops saw.
fn traffic_lines(out: &mut String, t: &Tally) {
    let _ = writeln!(
        out,
        "requests sent: {}   ok: {}   failed: {}   errors: {}",
        t.sent, t.ok, t.failed, t.errors
    );
    let answered: Vec<String> = t
        .answered_by
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let _ = writeln!(
        out,
        "answered by:   {}",
        if answered.is_empty() {
            "-".to_string()
        } else {
            answered.join("  ")
        }
    );
    let _ = writeln!(
        out,
        "answers from the fallback (flaky failing or queued): {}",
        t.failovers
    );
}

fn upstream_lines(out: &mut String, mocks: &[(String, String, u64)]) {
    let _ = writeln!(out, "upstreams:");
    for (name, mode, requests) in mocks {
        let _ = writeln!(out, "  {name:<8} mode {mode:<12} received {requests}");
    }
    let _ = writeln!(out);
}

/// `total_failed=…  total_verified=…  …` of a record (local or fleet: both keep `stats`).
fn counters_line(record: Option<&Value>) -> String {
    COUNTERS
        .iter()
        .map(|c| format!("{c}={}", counter(record, c)))
        .collect::<Vec<_>>()
        .join("  ")
}

/// One proxy of `demo --fleet`, as its status page would show it.
pub struct ProxyRow {
    /// Its `fleet.member` name.
    pub member: String,
    /// Its listener.
    pub addr: std::net::SocketAddr,
    /// Its local shared record (`failover.v1`).
    pub record: Option<Value>,
    /// Its syncer's last snapshot (`failover.fleet.status.v1`).
    pub fleet: Option<Value>,
    /// `failover.fleet.claimed_probes`: probes it sent under a fleet claim.
    pub claimed_probes: i64,
}

/// Everything one `demo --fleet` frame shows.
pub struct FleetFrame<'a> {
    /// Time since the demo started.
    pub elapsed: Duration,
    /// The line under the title: proxies, workers, etcd, key.
    pub header: &'a str,
    /// Client-side counts (all proxies).
    pub tally: &'a Tally,
    /// (mock name, mode label, requests it received).
    pub mocks: Vec<(String, String, u64)>,
    /// The proxies.
    pub proxies: Vec<ProxyRow>,
    /// Failing phases of `flaky` seen begin so far.
    pub flaky_failing_phases: u64,
}

/// The unsigned integer at `key` of a JSON object (0 when absent or not one).
fn u64_at(v: Option<&Value>, key: &str) -> u64 {
    v.and_then(|v| v.get(key))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// Renders a `demo --fleet` frame as plain text lines.
pub fn render_fleet(f: &FleetFrame<'_>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "failover fleet demo — {:.1}s   (Ctrl-C to stop)",
        f.elapsed.as_secs_f64()
    );
    let _ = writeln!(out, "{}", f.header);
    let _ = writeln!(out);
    traffic_lines(&mut out, f.tally);
    let _ = writeln!(out);
    upstream_lines(&mut out, &f.mocks);
    let _ = writeln!(
        out,
        "proxy     listener          etcd link   syncs  local queue    local total_failed  outages started  adopted  claimed probes"
    );
    for p in &f.proxies {
        let fleet = p.fleet.as_ref();
        let link = match fleet {
            None => "starting",
            Some(s) if s["connected"] == true => "connected",
            Some(s) if s["local_mode"] == true => "LOCAL-ONLY",
            Some(_) => "connecting",
        };
        let queue: Vec<&str> = p
            .record
            .as_ref()
            .and_then(|r| r.get("queue"))
            .and_then(Value::as_object)
            .map(|q| q.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let queue = if queue.is_empty() {
            "-".to_string()
        } else {
            queue.join(",")
        };
        let _ = writeln!(
            out,
            "{:<9} {:<17} {link:<11} {:<6} {queue:<14} {:<19} {:<16} {:<8} {}",
            p.member,
            p.addr.to_string(),
            u64_at(fleet, "syncs"),
            counter(p.record.as_ref(), "total_failed"),
            u64_at(fleet, "outages_started"),
            u64_at(fleet, "adopted"),
            p.claimed_probes,
        );
    }
    let _ = writeln!(out);
    // The freshest snapshot holds the fleet record as the fleet last saw it.
    let freshest = f
        .proxies
        .iter()
        .filter_map(|p| p.fleet.as_ref())
        .max_by_key(|s| u64_at(Some(s), "last_sync_ms"));
    let record = freshest.and_then(|s| s.get("record"));
    let _ = writeln!(out, "fleet record (etcd):");
    match record
        .and_then(|r| r.get("endpoints"))
        .and_then(Value::as_object)
    {
        Some(eps) if !eps.is_empty() => {
            for (name, e) in eps {
                let state = e.get("state").and_then(Value::as_str).unwrap_or("?");
                let claim = e
                    .get("claim")
                    .and_then(|c| c.get("member"))
                    .and_then(Value::as_str)
                    .unwrap_or("-");
                let _ = writeln!(
                    out,
                    "  {name:<8} {state:<8} outage {}   parked by {}   probe claim {claim}   reason: {}",
                    u64_at(Some(e), "generation"),
                    e.get("first_member").and_then(Value::as_str).unwrap_or("-"),
                    e.get("reason").and_then(Value::as_str).unwrap_or("-"),
                );
            }
        }
        _ => {
            let _ = writeln!(out, "  (no endpoint has failed yet)");
        }
    }
    let _ = writeln!(out, "fleet counters: {}", counters_line(record));
    let _ = writeln!(out);
    let started: u64 = f
        .proxies
        .iter()
        .map(|p| u64_at(p.fleet.as_ref(), "outages_started"))
        .sum();
    let per_proxy: Vec<String> = f
        .proxies
        .iter()
        .map(|p| {
            format!(
                "{} {}",
                p.member,
                u64_at(p.fleet.as_ref(), "outages_started")
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "flaky began failing {} time(s). Fleet total_failed = {}: one count per outage for {} proxies \
         (outages started, one info line each: {} = {started}).",
        f.flaky_failing_phases,
        counter(record, "total_failed"),
        f.proxies.len(),
        per_proxy.join(" + "),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_queue_and_counters_from_the_record() {
        let record: Value = serde_json::from_str(
            r#"{"queue":{"flaky":{"reason":"status 503 via_upstream","checks":2}},
                "stats":{"total_failed":1,"total_verified":2,"total_recovered":0,"total_still_failed":2}}"#,
        )
        .unwrap();
        let tally = Tally::default();
        let text = render(&Frame {
            elapsed: Duration::from_secs(3),
            tally: &tally,
            mocks: vec![("flaky".into(), "status:503".into(), 7)],
            record: Some(record),
            metrics: vec![],
        });
        assert!(
            text.contains("flaky    reason: status 503 via_upstream   checks: 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "total_failed=1  total_verified=2  total_recovered=0  total_still_failed=2"
            ),
            "{text}"
        );
        assert!(text.contains("received 7"), "{text}");
    }

    #[test]
    fn the_fleet_frame_shows_each_proxy_and_the_fleet_count() {
        let snapshot = |started: u64, adopted: u64| -> Value {
            serde_json::json!({
                "connected": true, "syncs": 9, "last_sync_ms": 100 + started,
                "outages_started": started, "adopted": adopted,
                "record": { "endpoints": { "flaky": {
                    "state": "parked", "generation": 1, "first_member": "proxy-a",
                    "reason": "status 503", "claim": { "member": "proxy-b", "until_ms": 9 } } },
                  "stats": { "total_failed": 1 } }
            })
        };
        let local: Value = serde_json::from_str(
            r#"{"queue":{"flaky":{"reason":"status 503","checks":0}},"stats":{"total_failed":1}}"#,
        )
        .unwrap();
        let tally = Tally::default();
        let rows = vec![
            ProxyRow {
                member: "proxy-a".into(),
                addr: "127.0.0.1:1".parse().unwrap(),
                record: Some(local.clone()),
                fleet: Some(snapshot(1, 0)),
                claimed_probes: 0,
            },
            ProxyRow {
                member: "proxy-b".into(),
                addr: "127.0.0.1:2".parse().unwrap(),
                record: Some(local),
                fleet: Some(snapshot(0, 1)),
                claimed_probes: 2,
            },
        ];
        let text = render_fleet(&FleetFrame {
            elapsed: Duration::from_secs(5),
            header: "2 proxies",
            tally: &tally,
            mocks: vec![],
            proxies: rows,
            flaky_failing_phases: 1,
        });
        assert!(
            text.contains("flaky    parked   outage 1   parked by proxy-a   probe claim proxy-b"),
            "{text}"
        );
        assert!(text.contains("fleet counters: total_failed=1"), "{text}");
        assert!(
            text.contains("Fleet total_failed = 1: one count per outage for 2 proxies"),
            "{text}"
        );
        assert!(text.contains("proxy-a 1 + proxy-b 0 = 1"), "{text}");
    }
}
