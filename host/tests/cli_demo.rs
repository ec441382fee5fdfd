//! `failover-host demo --duration 13` runs non-interactively: mocks, proxy with the embedded
//! filter, traffic, then a plain-text summary and exit 0. Needs the real filter embedded (the
//! lead's `host/build.rs` builds it); with a placeholder module the demo reports that clearly.

use std::time::Duration;

use failover_testkit::Launch;

const BIN: &str = env!("CARGO_BIN_EXE_failover-host");

/// 13 s covers one whole outage of `flaky` (healthy 0–3 s, 503 from 3 s to 8 s, then healthy
/// again) plus a verifier round (every 2 s, backoff to 4 s): the summary must show failovers and
/// a recovery, not just counters at zero.
#[test]
fn demo_with_duration_runs_and_prints_a_plain_summary() {
    let out = Launch::new(BIN)
        .args(["demo", "--duration", "13"])
        .run(Duration::from_secs(150))
        .expect("spawn failover-host");
    assert!(
        out.status.is_some(),
        "demo did not finish within 150 s: {}",
        out.stderr
    );
    assert!(
        out.success(),
        "demo failed (is the real filter embedded?): {}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert!(!out.stdout.contains('\x1b'), "ANSI codes without a TTY");
    assert!(out.stdout.contains("demo finished"), "{}", out.stdout);
    let summary = out.stdout.rsplit("failover demo").next().unwrap_or("");
    let number_after = |prefix: &str| -> u64 {
        summary
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no `{prefix}` number in: {summary}"))
    };
    assert!(number_after("requests sent: ") > 0, "{summary}");
    assert!(summary.contains("total_failed="), "{summary}");
    assert!(
        number_after("failovers (requests the filter replayed on another endpoint): ") > 0,
        "no failover during flaky's outage: {summary}"
    );
    let counters = summary
        .split_whitespace()
        .find_map(|w| w.strip_prefix("total_recovered="))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no total_recovered= in: {summary}"));
    assert!(counters >= 1, "flaky was never recovered: {summary}");
    assert!(summary.contains("failure queue"), "{summary}");
    assert!(
        summary.contains("answered by:   ") && !summary.contains("answered by:   -"),
        "no answer from any mock: {summary}"
    );
}

/// Without `--duration` the demo runs until Ctrl-C; SIGINT (what the terminal sends) ends it
/// cleanly: exit 0, the final summary, no panic.
#[test]
fn demo_ends_cleanly_on_ctrl_c() {
    let mut demo = Launch::new(BIN)
        .args(["demo"])
        .spawn()
        .expect("spawn failover-host");
    // Wait for the first frame: traffic is flowing and the Ctrl-C handler is installed.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !demo.stdout_text().contains("requests sent: ") {
        if let Some(status) = demo.try_wait_exit(Duration::ZERO) {
            panic!("demo exited early ({status}): {}", demo.stderr_text());
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no frame within 120 s: {}",
            demo.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(2));
    demo.signal("INT");
    let status = demo.wait_exit(Duration::from_secs(30));
    let (stdout, stderr) = (demo.stdout_text(), demo.stderr_text());
    assert!(status.success(), "exit {status} after Ctrl-C: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stdout.ends_with("demo finished"), "{stdout}");
    assert!(stdout.contains("total_failed="), "{stdout}");
}

/// `demo --fleet`: three proxies, one throw-away etcd, one count per outage. Runs 13 s (one
/// whole outage of `flaky` and its recovery) and reads the summary: every answer 200, the fleet
/// counted as many outages as the proxies logged fleet `info` lines, and that number is exactly
/// the sum of the outages each proxy started (so no outage was counted by two proxies).
#[test]
fn fleet_demo_counts_each_outage_once_for_three_proxies() {
    if failover_testkit::etcd::etcd_binary().is_none() {
        eprintln!("SKIPPED: demo --fleet needs etcd (apt-get install -y etcd-server)");
        return;
    }
    let out = Launch::new(BIN)
        .args(["demo", "--fleet", "--duration", "13"])
        .run(Duration::from_secs(150))
        .expect("spawn failover-host");
    assert!(
        out.status.is_some(),
        "demo --fleet did not finish within 150 s: {}",
        out.stderr
    );
    assert!(out.success(), "demo --fleet failed: {}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    let summary = out
        .stdout
        .rsplit("failover fleet demo")
        .next()
        .unwrap_or("");
    assert!(out.stdout.contains("demo finished"), "{}", out.stdout);
    assert!(
        summary.contains("failed: 0   errors: 0"),
        "a client got an error: {summary}"
    );
    for p in ["proxy-a", "proxy-b", "proxy-c"] {
        let row = summary
            .lines()
            .find(|l| l.starts_with(p))
            .unwrap_or_else(|| panic!("no row for {p}: {summary}"));
        assert!(row.contains(" connected "), "{p} not connected: {row}");
    }
    let fleet_failed = summary
        .split("Fleet total_failed = ")
        .nth(1)
        .and_then(|r| r.split(':').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no fleet total_failed in: {summary}"));
    assert!(fleet_failed >= 1, "flaky was never parked: {summary}");
    let started = summary
        .lines()
        .find(|l| l.starts_with("flaky began failing"))
        .and_then(|l| l.rsplit(" = ").next())
        .and_then(|r| r.trim().trim_end_matches(").").parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no sum of outages started in: {summary}"));
    assert_eq!(started, fleet_failed, "{summary}");
    let info_lines = out
        .stderr
        .lines()
        .filter(|l| l.contains("INFO") && l.contains("parked fleet-wide"))
        .count() as u64;
    assert_eq!(
        info_lines, fleet_failed,
        "fleet info lines vs fleet total_failed\n{}",
        out.stderr
    );
}
