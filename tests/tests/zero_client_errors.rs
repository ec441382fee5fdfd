//! No client error while a healthy endpoint exists (issue 14), end to end: the real `.wasm` in
//! the host, which keeps request maps only while their callback runs, as Envoy does.
//!
//! - The seed with replays on: one endpoint answering 503, one refusing connections, one
//!   healthy; hundreds of concurrent POSTs → every answer 200, `total_failed == 2`.
//! - With `hold_headers` (Envoy ≥ 1.35, `allow_on_headers_stop_iteration: true`): the first
//!   endpoint refuses, has no healthy host, or times out — on *every* request (the failure
//!   threshold is out of reach, so it is never parked and every request needs a replay) — with
//!   bodies of 0 B to 1 MiB − 1, sent in one write or slowly after the headers: 0 client errors.
//! - Without it: a request whose body comes slowly is never stalled; the cost is as documented
//!   (the local reply may beat the body: `x-failover-not-replayed: request-body-incomplete`).
//! - Event streams: an `event: error` as the first event is failed over before the client sees
//!   anything; a replayed stream longer than `attempt_timeout_ms` arrives whole and parks
//!   nothing; a replay that runs out of *our* budget is not the endpoint's failure.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use failover_testkit::{is_parked, stat, HeldRequest, BODY, STREAM_BODY};
use failover_testkit::{merge, mock, mock_upstream, plugin_config, send, Answer, Host, Setup};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

/// Probes on their own path and far apart: a parked endpoint stays parked for the test.
fn quiet_verifier() -> Value {
    json!({"verifier": {"interval_ms": 60000, "max_interval_ms": 60000, "request": {"path": "/probe"}}})
}

/// A JSON body of exactly `len` bytes (0 means none).
fn body_of(len: usize) -> Vec<u8> {
    if len == 0 {
        return Vec::new();
    }
    let head = br#"{"model":"m","pad":""#;
    let tail = br#""}"#;
    let mut b = head.to_vec();
    b.resize(len.saturating_sub(tail.len()).max(head.len()), b'x');
    b.extend_from_slice(tail);
    b.truncate(len);
    b
}

/// How a request is sent.
#[derive(Clone, Copy, Debug)]
enum Sending {
    /// Headers and body in one go.
    OneWrite,
    /// The body 5 ms after the headers.
    Slowly,
}

async fn post(addr: SocketAddr, body: Vec<u8>, how: Sending) -> Result<Answer, String> {
    match how {
        Sending::OneWrite => {
            send(
                addr,
                "POST",
                "/v1/messages",
                &[("content-type", "application/json")],
                body,
            )
            .await
        }
        Sending::Slowly => {
            let held = HeldRequest::start(addr, "/v1/messages", &body).await?;
            tokio::time::sleep(Duration::from_millis(5)).await;
            held.finish().await
        }
    }
}

/// Sends `plan` (body size, way of sending) with `concurrency` in flight; returns every
/// answer that was not a 200, with what it was.
async fn run_plan(
    addr: SocketAddr,
    plan: Vec<(usize, Sending)>,
    concurrency: usize,
) -> Vec<String> {
    let gate = Arc::new(Semaphore::new(concurrency));
    let mut tasks = Vec::new();
    for (len, how) in plan {
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.expect("semaphore");
            match post(addr, body_of(len), how).await {
                Ok(a) if a.status == 200 => None,
                Ok(a) => Some(format!(
                    "{len} B {how:?}: {} not-replayed={:?} tried={:?} {}",
                    a.status,
                    a.header("x-failover-not-replayed"),
                    a.header("x-failover-tried"),
                    a.text().chars().take(200).collect::<String>()
                )),
                Err(e) => Some(format!("{len} B {how:?}: {e}")),
            }
        }));
    }
    let mut bad = Vec::new();
    for t in tasks {
        if let Some(b) = t.await.expect("task") {
            bad.push(b);
        }
    }
    bad
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_with_replays_every_answer_is_200_and_each_broken_endpoint_counts_once() {
    let main = mock_upstream("main", mock::FailMode::status(503).into()).await;
    let spare = mock_upstream("spare", mock::FailMode::Refuse.into()).await;
    let backup = mock_upstream("backup", mock::Schedule::default()).await;
    let mut plugin = plugin_config(&[
        ("main", "main", "primary"),
        ("spare", "spare", "primary"),
        ("backup", "backup", "secondary"),
    ]);
    merge(&mut plugin, quiet_verifier());
    merge(&mut plugin, json!({"failover": {"hold_headers": true}}));
    let mut setup = Setup::new(
        plugin,
        &[
            ("main", main.addr()),
            ("spare", spare.addr()),
            ("backup", backup.addr()),
        ],
    );
    setup.stop_iteration_at_headers = true;
    let host = Host::start(&setup).await;

    let plan: Vec<(usize, Sending)> = (0..600)
        .map(|i| {
            let how = if i % 3 == 0 {
                Sending::Slowly
            } else {
                Sending::OneWrite
            };
            (2048, how)
        })
        .collect();
    let bad = run_plan(host.listen, plan, 64).await;
    let logs = host.logs();
    assert!(
        bad.is_empty(),
        "{} of 600 answers were not 200: {:?}\n{logs}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    let status = host.status().await;
    assert_eq!(stat(&status, "total_failed"), 2, "{status}\n{logs}");
    assert_eq!(
        host.count_lines(&["added to failure queue"]),
        2,
        "one info line per broken endpoint\n{logs}"
    );
    assert!(is_parked(&status, "main") && is_parked(&status, "spare"));
    assert!(
        !is_parked(&status, "backup"),
        "the healthy endpoint is never parked: {status}"
    );
    assert_eq!(
        host.count_lines(&["refused to send the replay"]),
        0,
        "every replay the filter built was a valid call\n{logs}"
    );
}

/// What breaks the first endpoint on every request.
#[derive(Clone, Copy, Debug)]
enum FirstBreaks {
    /// Connection refused: 503 UF.
    Refusing,
    /// A cluster with no endpoint: 503 UH ("no healthy upstream").
    NoHealthyHost,
    /// Never answers: the route timeout's 504 UT.
    TimingOut,
}

async fn held_requests_never_reach_the_client_as_errors(first: FirstBreaks) {
    let refusing = mock_upstream("first", mock::FailMode::Refuse.into()).await;
    let hanging = mock_upstream("first", mock::FailMode::Hang.into()).await;
    let good = mock_upstream("good", mock::Schedule::default()).await;
    let mut plugin = plugin_config(&[("first", "first", "primary"), ("good", "good", "fallback")]);
    merge(&mut plugin, quiet_verifier());
    merge(
        &mut plugin,
        json!({
            // Never parked: every request meets the broken endpoint first and needs a replay.
            "failure": {"threshold": 1000000},
            "failover": {"hold_headers": true, "max_request_bytes": 1048576},
        }),
    );
    let mut clusters = vec![("good", good.addr())];
    match first {
        FirstBreaks::Refusing => clusters.push(("first", refusing.addr())),
        FirstBreaks::TimingOut => clusters.push(("first", hanging.addr())),
        FirstBreaks::NoHealthyHost => {}
    }
    let mut setup = Setup::new(plugin, &clusters);
    setup.stop_iteration_at_headers = true;
    if matches!(first, FirstBreaks::NoHealthyHost) {
        setup.empty_clusters.push("first".into());
    }
    if matches!(first, FirstBreaks::TimingOut) {
        setup.route_timeout = "0.2s".into();
    }
    let host = Host::start(&setup).await;

    // 2 000 requests: every size sent both ways; the big bodies are fewer (each is 1 MiB).
    let sizes = [
        (0usize, 600),
        (2048, 600),
        (100 * 1024, 600),
        ((1 << 20) - 1, 200),
    ];
    let mut plan = Vec::new();
    for (len, n) in sizes {
        for i in 0..n {
            let how = if i % 2 == 0 {
                Sending::OneWrite
            } else {
                Sending::Slowly
            };
            plan.push((len, how));
        }
    }
    let bad = run_plan(host.listen, plan, 32).await;
    let logs = host.logs();
    assert!(
        bad.is_empty(),
        "{first:?}: {} of 2000 answers were not 200: {:?}\n{}",
        bad.len(),
        &bad[..bad.len().min(5)],
        logs.lines().rev().take(40).collect::<Vec<_>>().join("\n")
    );
    let status = host.status().await;
    assert!(!is_parked(&status, "good"), "{status}");
    assert_eq!(
        host.count_lines(&["refused to send the replay"]),
        0,
        "{first:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn held_requests_fail_over_from_a_refusing_endpoint() {
    held_requests_never_reach_the_client_as_errors(FirstBreaks::Refusing).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn held_requests_fail_over_from_a_cluster_without_healthy_hosts() {
    held_requests_never_reach_the_client_as_errors(FirstBreaks::NoHealthyHost).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn held_requests_fail_over_from_a_timing_out_endpoint() {
    held_requests_never_reach_the_client_as_errors(FirstBreaks::TimingOut).await;
}

/// Without `allow_on_headers_stop_iteration` the filter must not hold (Envoy would stop the
/// body too): a slow body is never stalled, and a local reply that beats it reaches the client
/// with the documented header — never a hang, never an unexplained error.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_the_envoy_flag_slow_bodies_are_never_stalled_and_the_cost_is_labelled() {
    let refusing = mock_upstream("first", mock::FailMode::Refuse.into()).await;
    let good = mock_upstream("good", mock::Schedule::default()).await;
    let mut plugin = plugin_config(&[("first", "first", "primary"), ("good", "good", "fallback")]);
    merge(&mut plugin, quiet_verifier());
    merge(&mut plugin, json!({"failure": {"threshold": 1000000}}));
    let host = Host::start(&Setup::new(
        plugin,
        &[("first", refusing.addr()), ("good", good.addr())],
    ))
    .await;
    let plan = (0..200).map(|_| (2048, Sending::Slowly)).collect();
    let bad = run_plan(host.listen, plan, 16).await;
    for b in &bad {
        assert!(
            b.contains(": 503 not-replayed=Some(\"request-body-incomplete\")"),
            "only the documented cost is allowed: {b}"
        );
    }
    // The same requests in one write are always replayable.
    let plan = (0..200).map(|_| (2048, Sending::OneWrite)).collect();
    let bad_one_write = run_plan(host.listen, plan, 16).await;
    assert!(
        bad_one_write
            .iter()
            .all(|b| b.contains("request-body-incomplete")),
        "{bad_one_write:?}"
    );
    eprintln!(
        "without the flag: {} of 200 slow-body requests and {} of 200 one-write requests got the local reply",
        bad.len(),
        bad_one_write.len()
    );
}

/// One POST of a JSON body, in one write.
async fn post_json(addr: SocketAddr, body: &str) -> Answer {
    post(addr, body.as_bytes().to_vec(), Sending::OneWrite)
        .await
        .expect("answer")
}

fn stream_setup(first: mock::MockUpstream, second: mock::MockUpstream, patch: Value) -> Setup {
    let mut plugin = plugin_config(&[
        ("first", "first", "primary"),
        ("second", "second", "fallback"),
    ]);
    merge(&mut plugin, quiet_verifier());
    merge(&mut plugin, patch);
    let mut setup = Setup::new(
        plugin,
        &[("first", first.addr()), ("second", second.addr())],
    );
    // Only what `hold_headers` needs: the other stream tests hold nothing.
    setup.stop_iteration_at_headers = setup.plugin["failover"]["hold_headers"] == json!(true);
    setup
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_as_the_first_event_is_failed_over_before_the_client_sees_it() {
    let first = mock_upstream("first", mock::FailMode::SseErrorFirst.into()).await;
    let second = mock_upstream("second", mock::Schedule::default()).await;
    let host = Host::start(&stream_setup(
        first.clone(),
        second.clone(),
        json!({"failover": {"hold_headers": true}}),
    ))
    .await;
    let a = post_json(host.listen, STREAM_BODY).await;
    let text = a.text();
    let logs = host.logs();
    assert_eq!(a.status, 200, "{text}\n{logs}");
    assert_eq!(a.header("x-mock-name"), Some("second"), "{text}");
    assert!(
        a.header("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream")),
        "{:?}",
        a.headers
    );
    assert!(text.contains("message_start"), "{text}");
    assert!(
        !text.contains("event: error"),
        "no error event reaches the client: {text}"
    );
    assert_eq!(a.header("x-failover-tried"), Some("first, second"));
    let status = host.status().await;
    assert_eq!(stat(&status, "total_failed"), 1, "{status}");
    assert!(is_parked(&status, "first"));
    assert_eq!(host.count_lines(&["added to failure queue"]), 1, "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_stream_longer_than_the_attempt_timeout_arrives_whole() {
    let first = mock_upstream("first", mock::FailMode::status(503).into()).await;
    // 25 events 100 ms apart: a 2.4 s stream, over the 1 s attempt timeout.
    let second = mock_upstream(
        "second",
        mock::FailMode::SseSlow {
            events: 25,
            gap: Duration::from_millis(100),
        }
        .into(),
    )
    .await;
    let host = Host::start(&stream_setup(
        first.clone(),
        second.clone(),
        json!({"failover": {"attempt_timeout_ms": 1000}}),
    ))
    .await;
    let a = post_json(host.listen, STREAM_BODY).await;
    let text = a.text();
    let logs = host.logs();
    assert_eq!(a.status, 200, "{text}\n{logs}");
    assert_eq!(
        text.matches("\n\n").count(),
        25,
        "every event arrives: {text}"
    );
    let status = host.status().await;
    assert!(!is_parked(&status, "second"), "{status}\n{logs}");
    assert_eq!(stat(&status, "total_failed"), 1, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_that_outlives_our_budget_is_not_the_endpoints_failure() {
    let first = mock_upstream("first", mock::FailMode::status(503).into()).await;
    let second = mock_upstream(
        "second",
        mock::FailMode::Delay {
            delay: Duration::from_millis(1500),
        }
        .into(),
    )
    .await;
    let host = Host::start(&stream_setup(
        first.clone(),
        second.clone(),
        json!({"failover": {"attempt_timeout_ms": 300}}),
    ))
    .await;
    let a = post_json(host.listen, BODY).await;
    let logs = host.logs();
    assert_eq!(a.status, 503, "the first endpoint's answer: {}", a.text());
    assert_eq!(a.header("x-failover-tried"), Some("first, second"));
    let status = host.status().await;
    assert!(!is_parked(&status, "second"), "{status}\n{logs}");
    assert_eq!(stat(&status, "total_failed"), 1);
    assert_eq!(
        host.count_lines(&["within the replay budget"]),
        1,
        "said once, at warn\n{logs}"
    );
}

/// A replay the host refuses to send (Envoy: `dispatch_http_call` to a cluster with no host is
/// InternalFailure, and no callback ever comes) is the filter's own error: one `error` line,
/// never counted against that endpoint, never named in the tried header, and the request goes
/// on to the next endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_the_host_refuses_is_not_the_endpoints_failure() {
    let first = mock_upstream("first", mock::FailMode::status(503).into()).await;
    let third = mock_upstream("third", mock::Schedule::default()).await;
    let mut plugin = plugin_config(&[
        ("first", "first", "a"),
        ("empty", "empty", "b"),
        ("third", "third", "c"),
    ]);
    merge(&mut plugin, quiet_verifier());
    let mut setup = Setup::new(plugin, &[("first", first.addr()), ("third", third.addr())]);
    setup.empty_clusters.push("empty".into());
    let host = Host::start(&setup).await;
    let a = post_json(host.listen, BODY).await;
    let logs = host.logs();
    assert_eq!(a.status, 200, "{}\n{logs}", a.text());
    assert_eq!(a.header("x-mock-name"), Some("third"));
    assert_eq!(a.header("x-failover-tried"), Some("first, third"), "{logs}");
    assert_eq!(
        host.count_lines(&["refused to send the replay to \"empty\""]),
        1,
        "{logs}"
    );
    let status = host.status().await;
    assert!(!is_parked(&status, "empty"), "{status}");
    assert_eq!(stat(&status, "total_failed"), 1, "{status}");
}
