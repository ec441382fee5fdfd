//! `failover-host demo --duration 5` runs non-interactively: mocks, proxy with the embedded
//! filter, traffic, then a plain-text summary and exit 0. Needs the real filter embedded (the
//! lead's `host/build.rs` builds it); with a placeholder module the demo reports that clearly.

mod cli_support;

use std::time::Duration;

use cli_support::*;

#[test]
fn demo_with_duration_runs_and_prints_a_plain_summary() {
    let out = run(&["demo", "--duration", "5"], Duration::from_secs(120));
    assert!(
        out.status.success(),
        "demo failed (is the real filter embedded?): {}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert!(!out.stdout.contains('\x1b'), "ANSI codes without a TTY");
    assert!(out.stdout.contains("demo finished"), "{}", out.stdout);
    let summary = out.stdout.rsplit("failover demo").next().unwrap_or("");
    let sent: u64 = summary
        .lines()
        .find_map(|l| l.strip_prefix("requests sent: "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("a `requests sent:` line");
    assert!(sent > 0, "{summary}");
    assert!(summary.contains("total_failed="), "{summary}");
    assert!(summary.contains("failure queue"), "{summary}");
    assert!(
        summary.contains("answered by:   ") && !summary.contains("answered by:   -"),
        "no answer from any mock: {summary}"
    );
}
