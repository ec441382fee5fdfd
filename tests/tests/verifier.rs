//! The background verifier end to end (issue 5 "Prove", issue 9 probe validity): recovery time,
//! exactly one probe per interval over 4 worker VMs (lease) or from the singleton service, the
//! counters under a flapping endpoint, and probes that answer 200 without really being healthy.

use std::time::{Duration, Instant};

use failover_testkit::load::{self, LoadConfig, Stop};
use failover_testkit::{endpoint, is_parked, stat, BODY};
use failover_testkit::{eventually, merge, mock, mock_upstream, plugin_config, send, Host, Setup};
use serde_json::json;

const PROBE: &str = "/probe";

/// Arrival times of the probes a mock received, oldest first.
fn probe_times(m: &mock::MockUpstream) -> Vec<Instant> {
    m.requests()
        .iter()
        .filter(|r| r.path == PROBE)
        .map(|r| r.at)
        .collect()
}

/// A parked endpoint is probed once per interval — never twice, by any of the VMs that tick —
/// and is back in rotation within interval + timeout of answering again.
///
/// Timings: interval 1 000 ms with the back-off capped at the interval (so every gap should be
/// one interval), probe timeout 500 ms, ticks every 250 ms (interval / 4).
/// - "never two probes in one interval": consecutive probes are at least one interval apart
///   (less 50 ms for the two clocks involved: the filter schedules with the wall clock, the mock
///   stamps with the monotonic one), and the mock never has two probes in flight;
/// - "no interval without a probe": no gap reaches two intervals (generous: ticks are 250 ms);
/// - every probe is counted exactly once in `total_verified` / `total_still_failed`;
/// - recovery within interval + timeout, plus one tick period of timer granularity.
async fn probes_once_per_interval_and_recovers(singleton: bool) {
    const INTERVAL: u64 = 1000;
    const TIMEOUT: u64 = 500;
    const TICK: u64 = INTERVAL / 4;
    let flaky = mock_upstream("flaky", mock::FailMode::status(503).into()).await;
    let good = mock_upstream("good", mock::Schedule::default()).await;
    let mut plugin = plugin_config(&[("flaky", "flaky", "primary"), ("good", "good", "secondary")]);
    merge(
        &mut plugin,
        json!({"verifier": {"interval_ms": INTERVAL, "max_interval_ms": INTERVAL, "timeout_ms": TIMEOUT,
                            "request": {"path": PROBE, "method": "GET", "body": ""}}}),
    );
    let mut setup = Setup::new(plugin, &[("flaky", flaky.addr()), ("good", good.addr())]);
    setup.singleton_verifier = singleton;
    let host = Host::start(&setup).await;

    let a = send(host.listen, "POST", "/v1/messages", &[], BODY)
        .await
        .expect("request");
    assert_eq!(a.header("x-mock-name"), Some("good"));
    assert!(is_parked(&host.status().await, "flaky"));

    // Five probes while it keeps failing.
    let s = flaky
        .wait_until(Duration::from_secs(15), |s| s.requests_on(PROBE) >= 5)
        .await
        .unwrap_or_else(|s| panic!("fewer than 5 probes in 15 s: {s:?}\n{}", host.logs()));
    let times = probe_times(&flaky);
    for w in times.windows(2) {
        let gap = w[1].duration_since(w[0]);
        assert!(
            gap >= Duration::from_millis(INTERVAL - 50),
            "two probes {gap:?} apart (interval {INTERVAL} ms): {times:?}"
        );
        assert!(
            gap < Duration::from_millis(2 * INTERVAL),
            "a whole interval without a probe: {gap:?}"
        );
    }
    assert_eq!(s.in_flight_max, 1, "two probes in flight at once: {s:?}");
    assert_eq!(
        s.requests,
        s.requests_on(PROBE) + 1,
        "only probes reach a parked endpoint: {s:?}"
    );

    // Every probe is one check, counted once (wait for the last probe's verdict to land).
    let counted = eventually(Duration::from_secs(3), || async {
        let st = host.status().await;
        let probes = flaky.stats().requests_on(PROBE);
        (stat(&st, "total_verified") == probes && stat(&st, "total_still_failed") == probes)
            .then_some(st)
    })
    .await;
    assert!(
        counted.is_some(),
        "{:#}\nprobes: {}",
        host.status().await,
        flaky.stats().requests_on(PROBE)
    );
    let st = host.status().await;
    let owner = st["verifier"]["lease_owner"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if singleton {
        assert!(
            owner.starts_with("failover_verifier"),
            "the singleton must hold the lease: {st:#}"
        );
    } else {
        assert!(
            owner.starts_with("failover-"),
            "a worker VM must hold the lease: {st:#}"
        );
    }

    // It starts answering: back in rotation within interval + timeout (+ one tick).
    flaky.set_mode(mock::FailMode::Healthy).await;
    let healed = Instant::now();
    let recovered = eventually(Duration::from_secs(10), || async {
        (!is_parked(&host.status().await, "flaky")).then(Instant::now)
    })
    .await
    .expect("recovered at all");
    let took = recovered.duration_since(healed);
    assert!(
        took <= Duration::from_millis(INTERVAL + TIMEOUT + TICK),
        "recovery took {took:?} (interval {INTERVAL} + timeout {TIMEOUT} + tick {TICK})"
    );
    let a = send(host.listen, "POST", "/v1/messages", &[], BODY)
        .await
        .expect("request");
    assert_eq!(a.header("x-mock-name"), Some("flaky"), "back in rotation");
    let st = host.status().await;
    assert_eq!(
        (stat(&st, "total_recovered"), stat(&st, "total_failed")),
        (1, 1),
        "{st:#}"
    );
    assert_eq!(
        host.count_lines(&["INFO", "\"flaky\" recovered"]),
        1,
        "{}",
        host.logs()
    );
    let probes_after = probe_times(&flaky).len();
    tokio::time::sleep(Duration::from_millis(2 * INTERVAL)).await;
    assert_eq!(
        probe_times(&flaky).len(),
        probes_after,
        "a healthy endpoint is not probed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn worker_lease_probes_once_per_interval_and_recovers() {
    probes_once_per_interval_and_recovers(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn singleton_verifier_probes_once_per_interval_and_recovers() {
    probes_once_per_interval_and_recovers(true).await;
}

/// A probe answered 200 whose body is an error object, or not JSON at all, is not a recovery;
/// a real answer then is (so the setup can tell the two apart).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_200_with_an_error_body_is_not_recovery() {
    let flaky = mock_upstream("flaky", mock::FailMode::status(503).into()).await;
    let good = mock_upstream("good", mock::Schedule::default()).await;
    let mut plugin = plugin_config(&[("flaky", "flaky", "primary"), ("good", "good", "secondary")]);
    merge(
        &mut plugin,
        json!({"verifier": {"interval_ms": 300, "max_interval_ms": 300, "timeout_ms": 500,
                            "request": {"path": PROBE}}}),
    );
    let host = Host::start(&Setup::new(
        plugin,
        &[("flaky", flaky.addr()), ("good", good.addr())],
    ))
    .await;
    send(host.listen, "POST", "/v1/messages", &[], BODY)
        .await
        .expect("request");
    assert!(is_parked(&host.status().await, "flaky"));

    for mode in [
        mock::FailMode::error_body(),
        mock::FailMode::Status {
            code: 200,
            headers: vec![],
            body: r#"{"type":"error"}"#.into(),
        },
        mock::FailMode::Status {
            code: 200,
            headers: vec![],
            body: r#"{"error":{"message":"upstream down"}}"#.into(),
        },
        mock::FailMode::Status {
            code: 200,
            headers: vec![],
            body: "<html>502 Bad Gateway</html>".into(),
        },
    ] {
        flaky.set_mode(mode.clone()).await;
        let seen = flaky.stats().requests_on(PROBE);
        flaky
            .wait_until(Duration::from_secs(10), |s| {
                s.requests_on(PROBE) >= seen + 3
            })
            .await
            .unwrap_or_else(|s| panic!("no probes under {mode}: {s:?}"));
        // The third probe's verdict may still be in flight; the first two have landed.
        let st = host.status().await;
        assert!(
            is_parked(&st, "flaky"),
            "recovered by a 200 with body of {mode}: {st:#}"
        );
        assert_eq!(stat(&st, "total_recovered"), 0, "{st:#}");
        assert!(stat(&st, "total_still_failed") >= seen + 2, "{st:#}");
    }
    // Normal traffic never reached it meanwhile.
    assert_eq!(flaky.stats().requests_on("/v1/messages"), 1);

    flaky.set_mode(mock::FailMode::Healthy).await;
    let back = eventually(Duration::from_secs(5), || async {
        (!is_parked(&host.status().await, "flaky")).then_some(())
    })
    .await;
    assert!(
        back.is_some(),
        "a healthy probe did not recover it: {:#}",
        host.status().await
    );
    assert_eq!(stat(&host.status().await, "total_recovered"), 1);
}

/// A flapping endpoint under steady load for 32 s: the filter's counters equal the transitions
/// the endpoint really showed to the proxy, never more.
///
/// What "real transitions observed" means here. The mock applies a mode per epoch (1.5 s
/// healthy, 2 s failing with 503, repeated) and counts `down_transitions`: healthy→down changes
/// between consecutive epochs that at least one request saw, probes included. Once the filter
/// parks the endpoint, normal traffic stops and only probes reach it, with back-off (500 ms, 1 s,
/// 2 s, 3 s) — chosen so that some healthy epochs fall between two probes and are never seen:
/// - if a probe sees the next healthy epoch, the endpoint is recovered (`success_threshold` 1),
///   the mock counts down→healthy, traffic returns, and the next failing epoch is seen by
///   traffic at once (≈ 100 requests/s), parked again: one `total_failed` per mock
///   `down_transitions`;
/// - if no request sees a healthy epoch (the probe backed off past it), the mock sees
///   down→down — no transition — and the filter, which never saw it healthy, keeps it parked and
///   counts nothing. A down epoch the mock never showed to anyone is not counted by either.
///
/// Every recovery needs a healthy answer (which the mock sees) and every insertion needs a
/// failure after a recovery or at the start (which the mock sees as healthy→down), so with one
/// failure parking an endpoint both sides count the same events: `total_failed ==
/// down_transitions` and `total_recovered == up_transitions` exactly. They could only differ if
/// the filter mistook a healthy answer for a failure (e.g. a timeout under CPU starvation — the
/// 3 s attempt timeout is far above these answers) — which is exactly the kind of over-counting
/// this test must catch. `down_transitions <= scheduled_down_transitions` bounds both by what the
/// schedule really applied.
///
/// To compare at a quiet moment the load stops, the mock is set healthy for good and the test
/// waits for the endpoint to be recovered: after that nothing reaches it that could change
/// either side.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flapping_endpoint_counters_equal_the_transitions_it_really_showed() {
    let flaky = mock_upstream(
        "flaky",
        mock::Schedule::Flap {
            healthy_for: Duration::from_millis(1500),
            failing_for: Duration::from_secs(2),
            failing: mock::FailMode::status(503),
        },
    )
    .await;
    let good = mock_upstream("good", mock::Schedule::default()).await;
    let mut plugin = plugin_config(&[("flaky", "flaky", "primary"), ("good", "good", "secondary")]);
    merge(
        &mut plugin,
        json!({"verifier": {"interval_ms": 500, "max_interval_ms": 3000, "timeout_ms": 500,
                            "request": {"path": PROBE}}}),
    );
    let host = Host::start(&Setup::new(
        plugin,
        &[("flaky", flaky.addr()), ("good", good.addr())],
    ))
    .await;

    let mut cfg = LoadConfig::new(&format!("http://{}/v1/messages", host.listen))
        .expect("url")
        .post_json(BODY);
    cfg.concurrency = 4;
    cfg.rate = Some(100.0);
    cfg.stop = Stop::After(Duration::from_secs(32));
    let report = tokio::time::timeout(Duration::from_secs(45), load::run(cfg))
        .await
        .expect("the load run ends")
        .expect("load run");
    assert_eq!(
        report.failed, 0,
        "a client saw an error while a healthy endpoint existed: {report}"
    );
    assert!(report.requests >= 2000, "steady load: {report}");

    tokio::time::sleep(Duration::from_millis(500)).await; // abandoned requests finish
    flaky.set_mode(mock::FailMode::Healthy).await;
    let quiet = eventually(Duration::from_secs(6), || async {
        (!is_parked(&host.status().await, "flaky")).then_some(())
    })
    .await;
    assert!(
        quiet.is_some(),
        "not recovered after the flapping stopped: {:#}",
        host.status().await
    );

    let m = flaky.stats();
    let st = host.status().await;
    let (failed, recovered) = (stat(&st, "total_failed"), stat(&st, "total_recovered"));
    let context = format!("mock: {m:?}\nstatus: {st:#}\nload: {report}");
    eprintln!(
        "flap: scheduled down {}, observed down {} / up {}; total_failed {failed}, total_recovered {recovered}",
        m.scheduled_down_transitions, m.down_transitions, m.up_transitions
    );
    assert!(
        m.down_transitions >= 3,
        "the flapping was barely observed: {context}"
    );
    assert!(
        m.down_transitions <= m.scheduled_down_transitions,
        "{context}"
    );
    assert_eq!(
        failed, m.down_transitions,
        "total_failed vs down transitions: {context}"
    );
    assert_eq!(
        recovered, m.up_transitions,
        "total_recovered vs up transitions: {context}"
    );
    assert_eq!(
        host.count_lines(&["added to failure queue"]) as u64,
        failed,
        "{}",
        host.logs()
    );
    assert_eq!(host.stat("failover.queue_insertions").await as u64, failed);
    assert_eq!(endpoint(&st, "flaky")["state"], "healthy");
    // Both kinds of recovery count the same way: by a probe or by real traffic.
    assert_eq!(
        stat(&st, "total_verified"),
        stat(&st, "total_still_failed") + probe_recoveries(&host)
    );
}

/// Recoveries made by a passing check (one `info` line each).
fn probe_recoveries(host: &Host) -> u64 {
    host.count_lines(&["recovered: check passed"]) as u64
}
