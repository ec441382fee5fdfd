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
    record
        .and_then(|r| r.get("stats"))
        .and_then(|s| s.get(name))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// Renders a frame as plain text lines.
pub fn render(f: &Frame<'_>) -> String {
    let mut out = String::new();
    let t = f.tally;
    let _ = writeln!(
        out,
        "failover demo — {:.1}s   (Ctrl-C to stop)",
        f.elapsed.as_secs_f64()
    );
    let _ = writeln!(out);
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
    let _ = writeln!(out, "upstreams:");
    for (name, mode, requests) in &f.mocks {
        let _ = writeln!(out, "  {name:<8} mode {mode:<12} received {requests}");
    }
    let _ = writeln!(out);
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
    let counters: Vec<String> = COUNTERS
        .iter()
        .map(|c| format!("{c}={}", counter(record, c)))
        .collect();
    let _ = writeln!(out, "counters: {}", counters.join("  "));
    if !f.metrics.is_empty() {
        let m: Vec<String> = f.metrics.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(out, "metrics:  {}", m.join("  "));
    }
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
}
