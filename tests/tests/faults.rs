//! The fault matrix: each fault against 4 worker VMs under steady concurrent load (8 keep-alive
//! client connections), one faulty endpoint `a` next to a healthy `b` in the same priority
//! group (except the last row, where both go down).
//! Each fault is held for 4 s; route timeout and `attempt_timeout_ms` are 2 s, the verifier
//! probes every 200 ms.
//!
//! For every fault the row reports, and the test asserts:
//! - **client errors**: requests that did not end as a clean 2xx. Goal 0 while `b` is healthy.
//!   Exceptions, decided here: a reset *after* the 200 headers went out cannot be replayed (the
//!   client already has part of the answer), so those requests fail — but only until the
//!   endpoint is parked, i.e. at most the requests already in flight to it; and while *every*
//!   endpoint is down the client gets errors by design (asserted: none once one is back).
//! - **total_failed vs down transitions**: `total_failed` must equal the healthy→down changes the
//!   mocks really saw (`MockStats::down_transitions`: a mode epoch counts when at least one
//!   request — traffic, replay or verifier probe — reached it; entering `refuse` counts at
//!   once). A parked endpoint gets no traffic, only probes, so a flap it goes through while
//!   parked and unprobed is neither seen by the mock nor counted by the filter — both sides agree
//!   by construction, and a second insertion needs a probe (or trial) to have seen it healthy.
//! - **recovery**: from the moment the fault ends until the endpoint is out of the queue
//!   (status page polled every 50 ms); for "all down, then one back", until the first client
//!   request succeeds again.
//!
//! The rows run one at a time (a shared lock) so they do not compete for the 2 cores; the
//! table is printed with `--nocapture`. Total ≈ 1–1.5 minutes.

use std::time::{Duration, Instant};

use failover_testkit::{eventually, load, merge, mock, mock_upstream, plugin_config, Host, Setup};
use mock::{FailMode, Schedule};
use serde_json::{json, Value};

/// One test at a time: they share two cores and the timeouts are short.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CLIENTS: usize = 8;
const FAULT_FOR: Duration = Duration::from_secs(4);
/// Route timeout and `attempt_timeout_ms`: short enough for the hang row, long enough that a
/// healthy endpoint on a busy 2-core machine is not mistaken for a hanging one.
const TIMEOUT_MS: u64 = 2000;

/// How the matrix treats client errors of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Errors {
    /// None at all.
    Zero,
    /// At most the requests in flight when the fault was first seen.
    InFlightOnly,
    /// Expected while everything is down; none after recovery.
    UntilRecovery,
}

struct Row {
    fault: &'static str,
    requests: u64,
    client_errors: u64,
    errors_after_recovery: u64,
    failovers: i64,
    total_failed: u64,
    down_transitions: u64,
    recovery: Option<Duration>,
    expect: Errors,
}

impl Row {
    fn print(&self) {
        println!(
            "| {:<34} | {:>8} | {:>13} | {:>9} | {:>12} | {:>16} | {:>11} |",
            "fault",
            "requests",
            "client errors",
            "failovers",
            "total_failed",
            "down transitions",
            "recovery"
        );
        println!(
            "| {:<34} | {:>8} | {:>13} | {:>9} | {:>12} | {:>16} | {:>11} |",
            self.fault,
            self.requests,
            self.client_errors,
            self.failovers,
            self.total_failed,
            self.down_transitions,
            self.recovery
                .map_or("-".to_string(), |d| format!("{} ms", d.as_millis())),
        );
    }
}

fn plugin() -> Value {
    let mut p = plugin_config(&[("a", "a", "primary"), ("b", "b", "primary")]);
    merge(
        &mut p,
        json!({
            "failure": { "threshold": 1 },
            "failover": { "max_attempts": 2, "attempt_timeout_ms": TIMEOUT_MS },
            "verifier": { "interval_ms": 200, "max_interval_ms": 800, "timeout_ms": 500,
                          "request": { "path": "/probe" } },
        }),
    );
    p
}

fn load_cfg(host: &Host) -> load::LoadConfig {
    let mut cfg = load::LoadConfig::new(&format!("http://{}/v1/messages", host.listen))
        .expect("url")
        .post_json(load::MESSAGES_BODY);
    cfg.concurrency = CLIENTS;
    cfg.stop = load::Stop::Manual;
    cfg.timeout = Duration::from_secs(10);
    cfg
}

async fn queued(host: &Host, name: &str) -> bool {
    host.status().await["queue"].get(name).is_some()
}

/// Waits until nothing is in flight at the mocks (the load was stopped), at most 5 s.
async fn settle(mocks: &[&mock::MockUpstream]) {
    for m in mocks {
        let _ = m
            .wait_until(Duration::from_secs(5), |s| s.in_flight == 0)
            .await;
    }
}

/// One faulty endpoint next to a healthy one: fault for `FAULT_FOR` under load, then healthy again.
async fn one_endpoint_fault(fault: &'static str, schedule: Schedule, expect: Errors) -> Row {
    let a = mock_upstream("a", Schedule::default()).await;
    let b = mock_upstream("b", Schedule::default()).await;
    let mut setup = Setup::new(plugin(), &[("a", a.addr()), ("b", b.addr())]);
    setup.route_timeout = format!("{}s", TIMEOUT_MS / 1000);
    let host = Host::start(&setup).await;

    let run = load::start(load_cfg(&host)).expect("load");
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.set_schedule(schedule).await;
    tokio::time::sleep(FAULT_FOR).await;
    a.set_mode(FailMode::Healthy).await;
    let healed = Instant::now();
    let recovery = if a.stats().down_transitions > 0 || queued(&host, "a").await {
        eventually(Duration::from_secs(10), || async {
            (!queued(&host, "a").await).then(|| healed.elapsed())
        })
        .await
    } else {
        None
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = stop(run).await;
    settle(&[&a, &b]).await;

    let status = host.status().await;
    let (sa, sb) = (a.stats(), b.stats());
    let row = Row {
        fault,
        requests: report.requests,
        client_errors: report.failed,
        errors_after_recovery: 0,
        failovers: host.stat("failover.failovers").await,
        total_failed: status["stats"]["total_failed"].as_u64().unwrap_or(u64::MAX),
        down_transitions: sa.down_transitions + sb.down_transitions,
        recovery,
        expect,
    };
    row.print();
    let context = format!(
        "{fault}: client report {}\nmock a {sa:?}\nmock b {sb:?}\nstatus {status:#}\nlogs:\n{}",
        brief(&report),
        host.logs()
    );
    check(&row, &context, &host);
    assert_eq!(
        sb.down_transitions, 0,
        "the healthy endpoint went down: {context}"
    );
    if recovery.is_none() && row.down_transitions > 0 {
        panic!("a never left the queue after the fault ended: {context}");
    }
    row
}

fn check(row: &Row, context: &str, host: &Host) {
    assert!(
        row.requests > 100,
        "too little load to mean anything: {context}"
    );
    match row.expect {
        Errors::Zero => assert_eq!(row.client_errors, 0, "client errors: {context}"),
        Errors::InFlightOnly => assert!(
            row.client_errors <= CLIENTS as u64,
            "{} client errors: more than the {CLIENTS} requests that can be in flight when the fault is first seen: {context}",
            row.client_errors
        ),
        Errors::UntilRecovery => {
            assert_eq!(row.errors_after_recovery, 0, "client errors after recovery: {context}")
        }
    }
    assert_eq!(
        row.total_failed, row.down_transitions,
        "total_failed must equal the down transitions the mocks saw: {context}"
    );
    assert_eq!(
        host.count_lines(&["added to failure queue"]) as u64,
        row.total_failed,
        "one info line per insertion: {context}"
    );
    assert_eq!(host.count_lines(&["panicked"]), 0, "{context}");
}

/// The load report without its histogram.
fn brief(r: &load::LoadReport) -> String {
    format!(
        "{} requests, {} ok, {} failed, statuses {:?}, by name {:?}, errors {:?}, {} abandoned",
        r.requests, r.ok, r.failed, r.by_status, r.by_name, r.errors, r.abandoned
    )
}

async fn stop(run: load::LoadRun) -> load::LoadReport {
    run.stop();
    run.wait().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused() {
    let _serial = SERIAL.lock().await;
    one_endpoint_fault("connection refused", FailMode::Refuse.into(), Errors::Zero).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_before_headers() {
    let _serial = SERIAL.lock().await;
    one_endpoint_fault(
        "reset before headers",
        FailMode::ResetBeforeHeaders.into(),
        Errors::Zero,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_mid_body() {
    let _serial = SERIAL.lock().await;
    one_endpoint_fault(
        "reset mid-body (after 200 headers)",
        FailMode::ResetMidBody.into(),
        Errors::InFlightOnly,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hang_past_the_route_timeout() {
    let _serial = SERIAL.lock().await;
    one_endpoint_fault(
        "hang past the 2 s route timeout",
        FailMode::Hang.into(),
        Errors::Zero,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_trickle_within_the_timeout_is_not_a_failure() {
    let _serial = SERIAL.lock().await;
    // The healthy answer (~400 bytes) at 2 000 bytes/s: slow, complete, not a failure.
    let row = one_endpoint_fault(
        "slow trickle (2000 B/s, completes)",
        FailMode::Slow {
            bytes_per_sec: 2000,
        }
        .into(),
        Errors::Zero,
    )
    .await;
    assert_eq!(row.total_failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_of_429_with_retry_after() {
    let _serial = SERIAL.lock().await;
    let mode: FailMode = "status:429:retry-after=1".parse().expect("mode");
    one_endpoint_fault("429 storm (retry-after: 1)", mode.into(), Errors::Zero).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_flapping() {
    let _serial = SERIAL.lock().await;
    let schedule: Schedule = "flap:500ms:500ms:status:503".parse().expect("schedule");
    let row = one_endpoint_fault("flapping (500 ms up / 500 ms 503)", schedule, Errors::Zero).await;
    assert!(
        row.down_transitions >= 2,
        "the flap was not seen more than once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_endpoints_down_then_one_back() {
    let _serial = SERIAL.lock().await;
    let a = mock_upstream("a", Schedule::default()).await;
    let b = mock_upstream("b", Schedule::default()).await;
    let mut setup = Setup::new(plugin(), &[("a", a.addr()), ("b", b.addr())]);
    setup.route_timeout = format!("{}s", TIMEOUT_MS / 1000);
    let host = Host::start(&setup).await;

    let run = load::start(load_cfg(&host)).expect("load");
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.set_mode(FailMode::status(503)).await;
    b.set_mode(FailMode::status(503)).await;
    tokio::time::sleep(FAULT_FOR).await;
    let during = run.snapshot();
    b.set_mode(FailMode::Healthy).await;
    let back = Instant::now();
    let ok_before = run.snapshot().ok;
    let recovery = eventually(Duration::from_secs(10), || {
        let ok = run.snapshot().ok;
        async move { (ok > ok_before).then(|| back.elapsed()) }
    })
    .await;
    // From here on one endpoint is healthy: no client may see an error.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let recovered = run.snapshot();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let report = stop(run).await;
    a.set_mode(FailMode::Healthy).await;
    settle(&[&a, &b]).await;

    let status = host.status().await;
    let (sa, sb) = (a.stats(), b.stats());
    let row = Row {
        fault: "all endpoints down, then b back",
        requests: report.requests,
        client_errors: report.failed,
        errors_after_recovery: report.failed - recovered.failed,
        failovers: host.stat("failover.failovers").await,
        total_failed: status["stats"]["total_failed"].as_u64().unwrap_or(u64::MAX),
        down_transitions: sa.down_transitions + sb.down_transitions,
        recovery,
        expect: Errors::UntilRecovery,
    };
    row.print();
    println!(
        "|   while all down: {} requests, {} failed, statuses {:?}",
        during.requests, during.failed, during.by_status
    );
    let context = format!(
        "client report {}\nmock a {sa:?}\nmock b {sb:?}\nstatus {status:#}\nlogs:\n{}",
        brief(&report),
        host.logs()
    );
    assert!(
        recovery.is_some(),
        "no client success after b came back: {context}"
    );
    assert!(
        during.failed > 0,
        "everything was down, yet no client saw an error: {context}"
    );
    check(&row, &context, &host);
    assert_eq!(row.total_failed, 2, "{context}");
}
