//! The control API, in-process and through the `mock-upstream` binary.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use failover_examples::mock::{self, MockOptions, Schedule};
use tokio::io::AsyncBufReadExt;

#[tokio::test]
async fn control_api_reads_stats_and_changes_modes() {
    let m = mock::spawn_with(local(), Schedule::default(), MockOptions::named("c"))
        .await
        .expect("mock starts");
    let ctl = mock::spawn_control(local(), m.clone())
        .await
        .expect("control starts");
    let c = ctl.addr();

    get(m.addr(), "/v1/messages").await.expect("answered");
    let (parts, body) = get(c, "/stats").await.expect("stats");
    assert_eq!(parts.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["requests"], 1);
    assert_eq!(v["name"], "c");
    assert_eq!(v["by_path"]["/v1/messages"], 1);

    let (code, text) = post_text(c, "/mode", "status:429:retry-after=3").await;
    assert_eq!(code, 200, "{text}");
    let (parts, _) = get(m.addr(), "/v1/messages").await.expect("answered");
    assert_eq!(parts.status, 429);
    assert_eq!(parts.headers["retry-after"], "3");

    let (code, text) = post_text(c, "/mode", "bogus").await;
    assert_eq!(code, 400);
    assert!(text.contains("unknown mode"), "{text}");
    let (_, body) = get(c, "/mode").await.expect("mode");
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(
        v["mode"], "status:429:retry-after=3",
        "bad input changed nothing"
    );

    let (code, _) = post_text(c, "/mode", "flap:1s:1s:refuse").await;
    assert_eq!(code, 200);
    let (_, body) = get(c, "/mode").await.expect("mode");
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["schedule"], "flap:1s:1s:refuse");

    let (_, body) = get(c, "/requests?since_ms=0").await.expect("requests");
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v.as_array().map(Vec::len), Some(2));
    assert_eq!(v[1]["mode"], "status:429:retry-after=3");

    let (code, _) = post_text(c, "/reset", "").await;
    assert_eq!(code, 200);
    assert_eq!(m.stats().requests, 0);
    let (parts, _) = get(c, "/nope").await.expect("answered");
    assert_eq!(parts.status, 404);
}

struct Child(tokio::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

#[tokio::test]
async fn binary_prints_its_ports_and_obeys_the_control_api() {
    let mut child = Child(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_mock-upstream"))
            .args(["--listen", "127.0.0.1:0", "--control", "127.0.0.1:0"])
            .args(["--name", "bin", "--mode", "status:503"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("binary starts"),
    );
    let stdout = child.0.stdout.take().expect("stdout piped");
    let mut line = String::new();
    tokio::time::timeout(STEP, tokio::io::BufReader::new(stdout).read_line(&mut line))
        .await
        .expect("ready line in time")
        .expect("ready line");
    let v: serde_json::Value = serde_json::from_str(&line).expect("json ready line");
    let listen: std::net::SocketAddr = v["listen"].as_str().expect("listen").parse().expect("addr");
    let control: std::net::SocketAddr = v["control"]
        .as_str()
        .expect("control")
        .parse()
        .expect("addr");
    assert_eq!(v["mode"], "status:503");

    let (parts, _) = get(listen, "/").await.expect("answered");
    assert_eq!(parts.status, 503);
    assert_eq!(parts.headers["x-mock-name"], "bin");
    let (code, _) = post_text(control, "/mode", "healthy").await;
    assert_eq!(code, 200);
    let (parts, _) = get(listen, "/").await.expect("answered");
    assert_eq!(parts.status, 200);
    let (_, body) = get(control, "/stats").await.expect("stats");
    let s: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(s["requests"], 2);
    assert_eq!(s["down_transitions"], 1);
    assert_eq!(s["up_transitions"], 1);
    child.0.start_kill().expect("kill");
    let _ = tokio::time::timeout(STEP, child.0.wait()).await;
}

#[tokio::test]
async fn binary_rejects_a_bad_mode_with_a_clear_error() {
    let out = tokio::time::timeout(
        STEP,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_mock-upstream"))
            .args(["--listen", "127.0.0.1:0", "--mode", "status:42"])
            .output(),
    )
    .await
    .expect("exits in time")
    .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("status:42"), "{err}");
    assert!(err.contains("100..=999"), "{err}");
}

#[tokio::test]
async fn loadgen_binary_reports_json() {
    let m = mock::spawn_with(local(), Schedule::default(), MockOptions::named("lg"))
        .await
        .expect("mock starts");
    let url = format!("http://{}/v1/messages", m.addr());
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args([url.as_str(), "-c", "4", "-n", "200", "--messages", "--json"])
            .output(),
    )
    .await
    .expect("exits in time")
    .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(v["requests"], 200);
    assert_eq!(v["ok"], 200);
    assert_eq!(v["by_name"]["lg"], 200);
    let s = m.stats();
    assert_eq!(s.requests, 200);
    assert_eq!(s.by_method.get("POST"), Some(&200));
    assert!(
        s.connections <= 4,
        "keep-alive: {} connections",
        s.connections
    );
}
