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
