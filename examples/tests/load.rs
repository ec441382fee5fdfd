//! The load generator against the mock in each mode.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use failover_examples::load::{self, ErrorKind, LoadConfig, Stop, MESSAGES_BODY};
use failover_examples::mock::{self, FailMode, MockOptions, Schedule};

async fn mock_in(mode: FailMode) -> mock::MockUpstream {
    mock::spawn_with(local(), Schedule::Fixed(mode), MockOptions::named("m"))
        .await
        .expect("mock starts")
}

fn cfg(m: &mock::MockUpstream, n: u64) -> LoadConfig {
    let mut c = LoadConfig::new(&format!("http://{}/v1/messages", m.addr()))
        .expect("valid url")
        .post_json(MESSAGES_BODY)
        .header_line("x-api-key: k1")
        .expect("valid header");
    c.concurrency = 8;
    c.stop = Stop::Requests(n);
    c.timeout = Duration::from_secs(5);
    c
}

async fn run(c: LoadConfig) -> load::LoadReport {
    tokio::time::timeout(Duration::from_secs(60), load::run(c))
        .await
        .expect("run ends in time")
        .expect("valid config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_run_counts_everything_once_over_keep_alive() {
    let m = mock_in(FailMode::Healthy).await;
    let r = run(cfg(&m, 500)).await;
    assert_eq!((r.requests, r.ok, r.failed, r.abandoned), (500, 500, 0, 0));
    assert_eq!(r.by_status.get(&200), Some(&500));
    assert_eq!(r.by_name.get("m"), Some(&500));
    assert!(r.errors.is_empty());
    assert_eq!(r.latency.count, 500);
    assert!(r.latency.p50_us <= r.latency.p99_us && r.latency.p99_us <= r.latency.max_us);
    let s = m.stats();
    assert_eq!(s.requests, 500);
    assert_eq!(s.requests_with_header("x-api-key"), 500);
    assert_eq!(s.request_body_bytes, 500 * MESSAGES_BODY.len() as u64);
    assert_eq!(s.connections, r.connections);
    assert!(
        r.connections <= 8,
        "{} connections for 8 workers",
        r.connections
    );
    assert!(s.in_flight_max <= 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_lands_in_its_own_bucket() {
    let cases = [
        (FailMode::status(503), None, Some(503)),
        (FailMode::Refuse, Some(ErrorKind::Connect), None),
        (
            FailMode::ResetBeforeHeaders,
            Some(ErrorKind::NoResponse),
            None,
        ),
        (FailMode::ResetMidBody, Some(ErrorKind::Body), Some(200)),
        (
            FailMode::SseCut { events: 2 },
            Some(ErrorKind::Body),
            Some(200),
        ),
        (FailMode::SseError, Some(ErrorKind::ErrorEvent), Some(200)),
        (
            FailMode::error_body(),
            Some(ErrorKind::ErrorBody),
            Some(200),
        ),
    ];
    for (mode, kind, status) in cases {
        let m = mock_in(mode.clone()).await;
        let r = run(cfg(&m, 20)).await;
        assert_eq!(r.requests, 20, "{mode}");
        assert_eq!(r.ok, 0, "{mode}");
        assert_eq!(r.failed, 20, "{mode}");
        if let Some(k) = kind {
            assert_eq!(r.errors_of(k), 20, "{mode}: {:?}", r.errors);
        }
        if let Some(s) = status {
            assert_eq!(r.by_status.get(&s), Some(&20), "{mode}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hang_ends_in_timeouts() {
    let m = mock_in(FailMode::Hang).await;
    let mut c = cfg(&m, 4);
    c.concurrency = 4;
    c.timeout = Duration::from_millis(200);
    let r = run(c).await;
    assert_eq!(r.errors_of(ErrorKind::Timeout), 4);
    m.wait_until(STEP, |s| s.in_flight == 0)
        .await
        .expect("the mock sees the clients go");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_stop_and_observer() {
    let m = mock_in(FailMode::Healthy).await;
    let seen = Arc::new(AtomicU64::new(0));
    let mut c = cfg(&m, 0);
    c.stop = Stop::Manual;
    c.rate = Some(200.0);
    let s2 = Arc::clone(&seen);
    c.observer = Some(Arc::new(move |o: &load::Outcome| {
        assert!(o.is_ok());
        s2.fetch_add(1, Ordering::SeqCst);
    }));
    let run = load::start(c).expect("valid");
    m.wait_until(STEP, |s| s.requests >= 20)
        .await
        .expect("traffic flows");
    let live = run.snapshot();
    assert!(live.requests > 0);
    run.stop();
    let r = tokio::time::timeout(STEP, run.wait()).await.expect("stops");
    assert_eq!(seen.load(Ordering::SeqCst), r.requests);
    assert!(r.requests >= live.requests);
    assert_eq!(r.ok, r.requests);
}

#[tokio::test]
async fn invalid_settings_are_errors() {
    let mut c = LoadConfig::new("http://127.0.0.1:1/").expect("valid url");
    c.concurrency = 0;
    assert!(load::start(c).is_err());
}
