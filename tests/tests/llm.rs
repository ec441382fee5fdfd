//! LLM-aware failure handling end to end (issue 9, "Prove"): `retry-after` only ever moves later,
//! client errors never park, "everything parked" under both policies, and streamed answers that
//! break or carry `event: error`.

use std::time::{Duration, Instant};

use failover_testkit::load::{self, LoadConfig, Stop};
use failover_testkit::{endpoint, is_parked, send_partial, stat, HeldRequest, BODY, STREAM_BODY};
use failover_testkit::{eventually, merge, mock, mock_upstream, plugin_config, send, Host, Setup};
use serde_json::{json, Value};

const PROBE: &str = "/probe";

fn status_with(code: u16, headers: &[(&str, &str)]) -> mock::FailMode {
    mock::FailMode::Status {
        code,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: String::new(),
    }
}

/// A 429 with `retry-after: 3`, then healthy: no probe and no traffic reaches the endpoint
/// before 3 s, although the verifier interval is 300 ms. A second 429 with `retry-after: 1`
/// arriving during those 3 s (from a request that was already committed to the endpoint
/// before it was parked) does not bring the deadline forward.
///
/// `t0` is taken before the first 429 is even requested; the filter computes its deadline from
/// the moment it reads that answer, which is later, so "nothing before `t0` + 3 s" is a bound the
/// filter must meet, not a timing guess.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retry_after_is_honoured_and_a_shorter_one_never_wins() {
    let flaky = mock_upstream("flaky", status_with(429, &[("retry-after", "1")]).into()).await;
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

    // B: routed to flaky on its headers (flaky is not parked yet); the mock fixes its answer
    // (429, retry-after: 1) when the headers arrive, and answers once the body comes.
    let held = HeldRequest::start(host.listen, "/v1/messages", BODY.as_bytes())
        .await
        .expect("held request");
    flaky
        .wait_until(Duration::from_secs(5), |s| s.in_flight == 1)
        .await
        .unwrap_or_else(|s| panic!("the held request did not reach flaky: {s:?}"));

    // A: 429 with retry-after: 3 parks flaky until t0 + 3 s at the earliest.
    flaky
        .set_mode(status_with(429, &[("retry-after", "3")]))
        .await;
    let t0 = Instant::now();
    let a = send(host.listen, "POST", "/v1/messages", &[], BODY)
        .await
        .expect("request");
    assert_eq!(
        (a.status, a.header("x-mock-name")),
        (200, Some("good")),
        "{}",
        a.text()
    );
    assert_eq!(a.header("x-failover-tried"), Some("flaky, good"));
    let st = host.status().await;
    let deadline = endpoint(&st, "flaky")["retry_after_until_ms"]
        .as_u64()
        .unwrap_or(0);
    let now = st["now_ms"].as_u64().unwrap_or(0);
    assert!(
        deadline > now && deadline <= now + 3000,
        "retry_after_until_ms {deadline} vs now {now}: {st:#}"
    );
    assert!(
        endpoint(&st, "flaky")["next_check_ms"].as_u64() >= Some(deadline),
        "{st:#}"
    );
    // From now on flaky would answer healthily: anything reaching it early would show.
    flaky.set_mode(mock::FailMode::Healthy).await;

    // B's 429 with retry-after: 1 arrives about a second later.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let b = held.finish().await.expect("held request answer");
    assert_eq!(
        (b.status, b.header("x-mock-name")),
        (200, Some("good")),
        "{}",
        b.text()
    );
    assert_eq!(b.header("x-failover-tried"), Some("flaky, good"));
    let st = host.status().await;
    let e = endpoint(&st, "flaky");
    assert_eq!(e["state"], "parked", "{st:#}");
    assert_eq!(e["failures_seen"], 2, "the second 429 was recorded: {st:#}");
    assert_eq!(
        e["retry_after_until_ms"].as_u64(),
        Some(deadline),
        "the deadline moved: {st:#}"
    );
    assert!(e["next_check_ms"].as_u64() >= Some(deadline), "{st:#}");
    assert_eq!(stat(&st, "total_failed"), 1);
    // The same per-endpoint facts as Envoy stats (gauges set by the VM whose write landed).
    let stats = host.stats().await;
    let gauge = |name: &str| {
        stats
            .get(&format!("failover.endpoint.flaky.{name}"))
            .copied()
            .unwrap_or_else(|| panic!("no stat failover.endpoint.flaky.{name}: {stats:?}"))
    };
    assert_eq!(gauge("parked"), 1);
    assert_eq!(gauge("failures"), 2);
    assert_eq!(gauge("retry_after_until_ms"), deadline as i64, "{stats:?}");
    assert_eq!(
        Some(gauge("parked_since_ms")),
        e["parked_since_ms"].as_i64()
    );
    assert!(gauge("next_check_ms") >= deadline as i64, "{stats:?}");

    // Steady traffic until it is back; nothing may reach flaky before t0 + 3 s.
    let back = eventually(Duration::from_secs(8), || async {
        let r = send(host.listen, "POST", "/v1/messages", &[], BODY)
            .await
            .ok()?;
        (r.header("x-mock-name") == Some("flaky")).then_some(())
    })
    .await;
    assert!(
        back.is_some(),
        "flaky never came back: {:#}",
        host.status().await
    );
    // The log after t0: A itself (answered 429, retry-after: 3), then — not before A's arrival
    // + 3 s — the first probe, then traffic.
    let log = flaky.requests_since(t0);
    assert!(log.len() >= 3, "{log:?}");
    assert_eq!(
        (log[0].path.as_str(), log[0].mode.as_str()),
        ("/v1/messages", "status:429:retry-after=3"),
        "{log:?}"
    );
    let waited = log[1].at.duration_since(log[0].at);
    assert!(
        waited >= Duration::from_secs(3),
        "flaky was contacted ({}) {waited:?} after its 429 with retry-after: 3",
        log[1].path
    );
    assert_eq!(
        log[1].path, PROBE,
        "the verifier, not traffic, goes first: {log:?}"
    );
}

/// Client-caused errors (400, 404, 413, 422) in storms of concurrent requests: the client gets
/// them as they are, the endpoint is never parked or struck, nothing fails over, every counter
/// stays 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_error_storms_never_park_and_never_fail_over() {
    let picky = mock_upstream("picky", mock::FailMode::status(400).into()).await;
    let good = mock_upstream("good", mock::Schedule::default()).await;
    let mut plugin = plugin_config(&[("picky", "picky", "primary"), ("good", "good", "secondary")]);
    merge(
        &mut plugin,
        json!({"verifier": {"interval_ms": 300, "max_interval_ms": 300, "request": {"path": PROBE}}}),
    );
    let host = Host::start(&Setup::new(
        plugin,
        &[("picky", picky.addr()), ("good", good.addr())],
    ))
    .await;

    for code in [400u16, 404, 413, 422, 400] {
        picky.set_mode(mock::FailMode::status(code)).await;
        let tasks: Vec<_> = (0..60)
            .map(|i| {
                let addr = host.listen;
                tokio::spawn(async move {
                    send(addr, "POST", "/v1/messages", &[], format!("{{\"n\":{i}}}")).await
                })
            })
            .collect();
        for t in tasks {
            let r = t.await.expect("task").expect("request");
            assert_eq!(
                (r.status, r.header("x-mock-name")),
                (code, Some("picky")),
                "{}",
                r.text()
            );
            assert!(
                r.text().contains("invalid_request_error") || r.text().contains("error"),
                "{}",
                r.text()
            );
            assert_eq!(
                r.header("x-failover-tried"),
                None,
                "a client error was failed over"
            );
        }
    }
    assert_eq!(good.stats().requests, 0, "a client error was replayed");
    assert_eq!(picky.stats().requests, 300);
    assert_eq!(picky.stats().requests_on(PROBE), 0);
    let st = host.status().await;
    assert_eq!(st["queue_size"], 0, "{st:#}");
    assert_eq!(
        st["stats"],
        json!({"total_failed": 0, "total_verified": 0, "total_recovered": 0, "total_still_failed": 0})
    );
    assert_eq!(endpoint(&st, "picky")["state"], "healthy");
    assert_eq!(endpoint(&st, "picky")["strikes"], 0, "{st:#}");
    for metric in [
        "failover.failovers",
        "failover.failures_observed",
        "failover.queue_insertions",
    ] {
        assert_eq!(host.stat(metric).await, 0, "{metric}");
    }
}

/// Every endpoint parked under `when_all_queued: "reject"`: 503, a JSON body naming the reason,
/// and `retry-after` equal to the seconds (rounded up) until the earliest moment any endpoint
/// may be tried again — here b's own `retry-after: 5`, earlier than a's 7 and later than the 2 s
/// verifier interval. Nothing reaches the upstreams for a rejected request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn all_parked_with_reject_answers_503_with_the_earliest_retry_after() {
    let a = mock_upstream("a", status_with(503, &[("retry-after", "7")]).into()).await;
    let b = mock_upstream("b", status_with(503, &[("retry-after", "5")]).into()).await;
    let mut plugin = plugin_config(&[("a", "a", "g1"), ("b", "b", "g2")]);
    merge(
        &mut plugin,
        json!({"when_all_queued": "reject",
               "verifier": {"interval_ms": 2000, "max_interval_ms": 8000, "request": {"path": PROBE}}}),
    );
    let host = Host::start(&Setup::new(plugin, &[("a", a.addr()), ("b", b.addr())])).await;

    let first = send(host.listen, "POST", "/v1/messages", &[], BODY)
        .await
        .expect("request");
    assert_eq!(
        (first.status, first.header("x-mock-name")),
        (503, Some("b")),
        "last real answer: {}",
        first.text()
    );
    assert_eq!(first.header("x-failover-tried"), Some("a, b"));

    let expected = |st: &Value| -> u64 {
        let now = st["now_ms"].as_u64().unwrap_or(0);
        let earliest = ["a", "b"]
            .iter()
            .filter_map(|n| endpoint(st, n)["next_check_ms"].as_u64())
            .min()
            .unwrap_or(0);
        earliest.saturating_sub(now).div_ceil(1000).max(1)
    };
    let before = host.status().await;
    assert!(
        is_parked(&before, "a") && is_parked(&before, "b"),
        "{before:#}"
    );
    let upstream_before = (a.stats().requests, b.stats().requests);
    let r = send(host.listen, "POST", "/v1/messages", &[], BODY)
        .await
        .expect("request");
    let after = host.status().await;
    assert_eq!(r.status, 503, "{}", r.text());
    let retry: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("numeric retry-after");
    assert!(
        (expected(&after)..=expected(&before)).contains(&retry),
        "retry-after {retry}, expected between {} and {}: {before:#}",
        expected(&after),
        expected(&before)
    );
    assert!((4..=5).contains(&retry), "b asked for 5 s: {retry}");
    let body: Value = serde_json::from_slice(&r.body).expect("JSON body");
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "all_endpoints_parked", "{body}");
    assert_eq!(r.header("x-mock-name"), None);
    assert_eq!(
        (a.stats().requests, b.stats().requests),
        upstream_before,
        "a rejected request reached an upstream"
    );
    assert_eq!(host.stat("failover.rejected").await, 1);
    assert_eq!(stat(&after, "total_failed"), 2);
}

/// Every endpoint parked under `least_recently_failed`: requests go to the endpoint parked
/// longest ago one at a time (the others get the filter's 503 meanwhile), so the parked endpoint
/// never has more than one request in flight — trials and probes share one slot. 16 clients push
/// as fast as they can.
///
/// Phase 1, the endpoint keeps failing (instant 503): the mock's `in_flight_max` stays 1 while
/// trials go on one after another. (Trials end by the upstream's own answer: a trial cut by the
/// proxy's timeout would leave the mock counting a connection the proxy already abandoned until
/// it notices the close — a race in the measurement, not in the filter.)
/// Phase 2, it answers healthily but slowly (1 s): one trial (or probe) gets through; nothing
/// else reaches it until that answer is complete, on the mock's own clock; the success recovers
/// it and traffic flows normally.
///
/// The verifier interval is short (500 ms) because the filter lets a trial through only when the
/// endpoint is due for a check (`Record::claim_probe` → `is_due`, which includes
/// `next_check_ms`); with a long interval every request is rejected until the next check (see
/// `sequential_requests_are_each_a_trial_without_waiting_for_the_verifier` and the report).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn least_recently_failed_sends_one_request_at_a_time() {
    let only = mock_upstream("only", mock::FailMode::status(503).into()).await;
    let mut plugin = plugin_config(&[("only", "only", "primary")]);
    merge(
        &mut plugin,
        json!({"verifier": {"interval_ms": 500, "max_interval_ms": 500, "timeout_ms": 2000,
                            "request": {"path": PROBE}}}),
    );
    let host = Host::start(&Setup::new(plugin, &[("only", only.addr())])).await;
    let first = send(host.listen, "POST", "/v1/messages", &[], BODY)
        .await
        .expect("request");
    assert_eq!(
        (first.status, first.header("x-mock-name")),
        (503, Some("only"))
    );
    assert!(is_parked(&host.status().await, "only"));

    let push = |secs: u64| {
        let mut cfg = LoadConfig::new(&format!("http://{}/v1/messages", host.listen))
            .expect("url")
            .post_json(BODY);
        cfg.concurrency = 16;
        cfg.stop = Stop::After(Duration::from_secs(secs));
        cfg.timeout = Duration::from_secs(5);
        async move {
            tokio::time::timeout(Duration::from_secs(secs + 10), load::run(cfg))
                .await
                .expect("load run ends")
                .expect("load run")
        }
    };

    // Phase 1: failing trials, one at a time.
    let report = push(3).await;
    let s = only.stats();
    assert_eq!(
        s.in_flight_max, 1,
        "more than one request in flight to the parked endpoint: {s:?}\n{report}"
    );
    assert!(
        s.requests >= 4,
        "trials went on one after another: {s:?}\n{report}"
    );
    assert_eq!(
        report.by_status.keys().copied().collect::<Vec<_>>(),
        vec![503],
        "{report}"
    );
    assert!(
        report.by_name.get("only").copied().unwrap_or(0) >= 2,
        "clients got the endpoint's own answers from trials: {report}"
    );
    assert_eq!(stat(&host.status().await, "total_failed"), 1);

    // A trial in flight when the load stopped was abandoned by its client; its slot stays
    // claimed until its attempt timeout (3 s). Start phase 2 with the slot free.
    let free = eventually(Duration::from_secs(5), || async {
        let st = host.status().await;
        let until = st["queue"]["only"]["probe_until_ms"].as_u64().unwrap_or(0);
        (until <= st["now_ms"].as_u64().unwrap_or(0)).then_some(())
    })
    .await;
    assert!(
        free.is_some(),
        "the trial slot was never released: {:#}",
        host.status().await
    );

    // Phase 2: slow but healthy. The first request to arrive is the only one until it is answered.
    only.set_mode(mock::FailMode::Delay {
        delay: Duration::from_secs(1),
    })
    .await;
    let t1 = Instant::now();
    let report = push(4).await;
    let log = only.requests_since(t1);
    assert!(
        log.len() >= 2,
        "{log:?}\n{report}\n{:#}\n{}",
        host.status().await,
        host.logs()
            .lines()
            .filter(|l| !l.contains("DEBUG"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let second_after = log[1].at.duration_since(log[0].at);
    assert!(
        second_after >= Duration::from_secs(1),
        "a second request reached the parked endpoint {second_after:?} after the first, before its 1 s answer: {report}"
    );
    assert!(
        report.ok > 0,
        "{report}\n{:?}\n{:#}\n{}",
        log.iter()
            .map(|r| (r.path.clone(), r.at.duration_since(t1)))
            .collect::<Vec<_>>(),
        host.status().await,
        host.logs()
            .lines()
            .filter(|l| !l.contains("DEBUG"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let st = host.status().await;
    assert!(
        !is_parked(&st, "only"),
        "a successful trial or probe recovers it: {st:#}"
    );
    assert_eq!(stat(&st, "total_recovered"), 1);
    assert_eq!(stat(&st, "total_failed"), 1);
}

/// `least_recently_failed` with everything parked and a long verifier interval: requests sent one
/// after another are each a trial — "one request at a time", not "one request per verifier
/// interval" — so the client gets the parked endpoint's real answer (here its 503, with the tried
/// header), not the filter's reject. Only a `retry-after` deadline (tested above) or a trial in
/// flight may hold a trial back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sequential_requests_are_each_a_trial_without_waiting_for_the_verifier() {
    let only = mock_upstream("only", mock::FailMode::status(503).into()).await;
    let mut plugin = plugin_config(&[("only", "only", "primary")]);
    merge(
        &mut plugin,
        json!({"verifier": {"interval_ms": 60000, "max_interval_ms": 60000, "request": {"path": PROBE}}}),
    );
    let host = Host::start(&Setup::new(plugin, &[("only", only.addr())])).await;
    let mut answers = Vec::new();
    for _ in 0..10 {
        let r = send(host.listen, "POST", "/v1/messages", &[], BODY)
            .await
            .expect("request");
        answers.push((
            r.status,
            r.header("x-mock-name").map(str::to_string),
            r.header("x-failover-tried").map(str::to_string),
        ));
    }
    let trials = only.stats().requests_on("/v1/messages");
    assert_eq!(
        trials, 10,
        "sequential requests to the only (parked) endpoint were rejected instead of tried: {answers:?}\n{:#}",
        host.status().await
    );
    for a in &answers {
        assert_eq!(
            a,
            &(503, Some("only".to_string()), Some("only".to_string()))
        );
    }
    assert_eq!(stat(&host.status().await, "total_failed"), 1);
}

/// 100 concurrent streams from `source`; returns every answer.
async fn hundred_streams(host: &Host) -> Vec<failover_testkit::PartialAnswer> {
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let addr = host.listen;
            tokio::spawn(async move { send_partial(addr, "/v1/messages", &[], STREAM_BODY).await })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("task").expect("headers arrived"));
    }
    out
}

/// The SSE event names in `body`, in order.
fn events(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("event:"))
        .map(|e| e.trim().to_string())
        .collect()
}

/// A streamed answer (SSE) cut after its headers and two events: the client's stream never looks
/// complete, nothing is replayed, and the endpoint is counted once although 100 such streams ran
/// at once.
///
/// "Never looks complete": the two events, then either an `event: error` frame (issue 9's wish)
/// or a broken transfer (no final chunk). In Envoy the router resets the downstream stream when
/// the upstream resets after the response started, before any filter could append a frame, so
/// the broken transfer is what an Envoy client gets; the filter learns of the cut in `on_log`
/// (UC/UR flags) and counts it. What must never happen is a clean end without `message_stop`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sse_cut_mid_stream_ends_with_an_error_event_and_counts_once() {
    let cut = mock_upstream("cut", mock::FailMode::SseCut { events: 2 }.into()).await;
    let good = mock_upstream("good", mock::Schedule::default()).await;
    let mut plugin = plugin_config(&[("cut", "cut", "primary"), ("good", "good", "secondary")]);
    merge(
        &mut plugin,
        json!({"verifier": {"interval_ms": 60000, "max_interval_ms": 60000, "request": {"path": PROBE}}}),
    );
    let host = Host::start(&Setup::new(
        plugin,
        &[("cut", cut.addr()), ("good", good.addr())],
    ))
    .await;

    let answers = hundred_streams(&host).await;
    let mut from_cut = 0;
    for p in &answers {
        let a = &p.answer;
        assert_eq!(a.status, 200);
        let ev = events(&a.text());
        match a.header("x-mock-name") {
            Some("cut") => {
                from_cut += 1;
                assert!(
                    ev.starts_with(&[
                        "message_start".to_string(),
                        "content_block_start".to_string()
                    ]),
                    "{}",
                    a.text()
                );
                assert!(
                    !ev.contains(&"message_stop".to_string()),
                    "replayed or completed: {}",
                    a.text()
                );
                let error_event = ev.len() == 3 && ev[2] == "error";
                assert!(
                    (ev.len() == 2 && p.body_error.is_some()) || error_event,
                    "a cut stream looked complete: {:?} {}",
                    p.body_error,
                    a.text()
                );
            }
            Some("good") => {
                assert_eq!(p.body_error, None);
                assert_eq!(
                    ev.last().map(String::as_str),
                    Some("message_stop"),
                    "{}",
                    a.text()
                );
            }
            other => panic!("answer from {other:?}: {}", a.text()),
        }
    }
    assert!(from_cut >= 1);
    assert_eq!(
        good.stats().requests as usize,
        100 - from_cut,
        "a stream that had started was replayed"
    );
    let st = host.status().await;
    assert_eq!(stat(&st, "total_failed"), 1, "{st:#}");
    assert!(is_parked(&st, "cut"), "{st:#}");
    assert_eq!(
        host.count_lines(&["INFO", "\"cut\" added to failure queue"]),
        1,
        "{}",
        host.logs()
    );
    // Parked: new streams go to the healthy endpoint and end cleanly.
    let p = send_partial(host.listen, "/v1/messages", &[], STREAM_BODY)
        .await
        .expect("stream");
    assert_eq!(p.answer.header("x-mock-name"), Some("good"));
    assert_eq!(
        events(&p.answer.text()).last().map(String::as_str),
        Some("message_stop")
    );
}

/// A streamed answer that carries an `event: error` frame (an overloaded API mid-answer): the
/// client sees the error event, and the endpoint is counted once for 100 such streams at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sse_error_event_counts_once_for_a_hundred_streams() {
    let over = mock_upstream("over", mock::FailMode::SseError.into()).await;
    let good = mock_upstream("good", mock::Schedule::default()).await;
    let mut plugin = plugin_config(&[("over", "over", "primary"), ("good", "good", "secondary")]);
    merge(
        &mut plugin,
        json!({"verifier": {"interval_ms": 60000, "max_interval_ms": 60000, "request": {"path": PROBE}}}),
    );
    let host = Host::start(&Setup::new(
        plugin,
        &[("over", over.addr()), ("good", good.addr())],
    ))
    .await;

    let answers = hundred_streams(&host).await;
    let mut from_over = 0;
    for p in &answers {
        let a = &p.answer;
        let ev = events(&a.text());
        match a.header("x-mock-name") {
            Some("over") => {
                from_over += 1;
                assert_eq!(ev.last().map(String::as_str), Some("error"), "{}", a.text());
            }
            Some("good") => assert_eq!(
                ev.last().map(String::as_str),
                Some("message_stop"),
                "{}",
                a.text()
            ),
            other => panic!("answer from {other:?}: {}", a.text()),
        }
    }
    assert!(from_over >= 1);
    assert_eq!(
        good.stats().requests as usize,
        100 - from_over,
        "a stream that had started was replayed"
    );
    let st = host.status().await;
    assert_eq!(stat(&st, "total_failed"), 1, "{st:#}");
    assert!(is_parked(&st, "over"), "{st:#}");
    assert_eq!(
        host.count_lines(&["INFO", "\"over\" added to failure queue"]),
        1,
        "{}",
        host.logs()
    );
    let p = send_partial(host.listen, "/v1/messages", &[], STREAM_BODY)
        .await
        .expect("stream");
    assert_eq!(p.answer.header("x-mock-name"), Some("good"));
}
