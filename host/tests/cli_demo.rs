//! `failover-host demo --duration 13` runs non-interactively: mocks, proxy with the embedded
//! filter, traffic, then a plain-text summary and exit 0. Needs the real filter embedded (the
//! lead's `host/build.rs` builds it); with a placeholder module the demo reports that clearly.

mod cli_support;

use std::time::Duration;

use cli_support::*;

/// 13 s covers one whole outage of `flaky` (healthy 0–3 s, 503 from 3 s to 8 s, then healthy
/// again) plus a verifier round (every 2 s, backoff to 4 s): the summary must show failovers and
/// a recovery, not just counters at zero.
#[test]
fn demo_with_duration_runs_and_prints_a_plain_summary() {
    let out = run(&["demo", "--duration", "13"], Duration::from_secs(150));
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
    let number_after = |prefix: &str| -> u64 {
        summary
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no `{prefix}` number in: {summary}"))
    };
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
    use std::process::Command;
    use std::time::Instant;

    let mut child = spawn(&["demo"]);
    let out = collect(&mut child, "stdout");
    let err = collect(&mut child, "stderr");
    let text = |lines: &std::sync::Arc<std::sync::Mutex<Vec<String>>>| {
        lines.lock().unwrap_or_else(|p| p.into_inner()).join("\n")
    };
    // Wait for the first frame: traffic is flowing and the Ctrl-C handler is installed.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !text(&out).contains("requests sent: ") {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("demo exited early ({status}): {}", text(&err));
        }
        assert!(
            Instant::now() < deadline,
            "no frame within 120 s: {}",
            text(&err)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(2));
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("demo did not stop within 30 s of Ctrl-C: {}", text(&err));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(50));
    let (stdout, stderr) = (text(&out), text(&err));
    assert!(status.success(), "exit {status} after Ctrl-C: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stdout.ends_with("demo finished"), "{stdout}");
    assert!(stdout.contains("total_failed="), "{stdout}");
}
