//! In-request failover end to end (issue 5, "Prove"): the real `.wasm` in the real host, over
//! real HTTP, against mock upstreams that fail in the ways the filter must handle.

use std::collections::BTreeMap;
use std::time::Duration;

use failover_testkit::load::{self, ErrorKind, LoadConfig, Stop};
use failover_testkit::{is_parked, raw_request, stat, BODY};
use failover_testkit::{
    merge, mock, mock_upstream, plugin_config, send, Host, Setup, ROUTE_HEADER,
};
use serde_json::json;

/// Probes go to their own path so traffic and probes are told apart on the mocks; a long
/// interval keeps parked endpoints parked for the whole test.
fn quiet_verifier() -> serde_json::Value {
    json!({"verifier": {"interval_ms": 60000, "max_interval_ms": 60000, "request": {"path": "/probe"}}})
}

/// One endpoint refusing connections, one sending 200 headers and then resetting mid-body, one
/// healthy; 1 000 POSTs with bodies over 16 keep-alive connections spread over 4 worker VMs.
///
/// What Envoy semantics allow, and therefore what is asserted:
/// - a refused connection is a local 503 (UF) before anything went downstream: replayed, never
///   client-visible;
/// - a reset *after* the 200 headers went downstream cannot be replayed by any filter (design:
///   "responses that already started streaming are never replayed"; in Envoy the router resets the
///   downstream stream). The only client-visible failures allowed are therefore exactly the
///   requests that reached the mid-body-resetting endpoint as normal traffic before it was parked
///   — each of them a broken body, never a clean-looking answer — and the filter must park it
///   (the cut is an endpoint failure, counted once), so that number is small and bounded by the
///   requests in flight when the first cut was seen.
/// - everything else is a clean 200 from the healthy endpoint, and `total_failed == 2`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refusing_and_mid_body_resetting_endpoints_under_load() {
    let refusing = mock_upstream("refusing", mock::FailMode::Refuse.into()).await;
    let resetting = mock_upstream("resetting", mock::FailMode::ResetMidBody.into()).await;
    let good = mock_upstream("good", mock::Schedule::default()).await;
    // The resetting endpoint has the first priority group to itself, so the router (not a
    // replay) meets its cut first, deterministically; the refusing one comes next.
    let mut plugin = plugin_config(&[
        ("resetting", "resetting", "first"),
        ("refusing", "refusing", "second"),
        ("good", "good", "third"),
    ]);
    merge(&mut plugin, quiet_verifier());
    let host = Host::start(&Setup::new(
        plugin,
        &[
            ("refusing", refusing.addr()),
            ("resetting", resetting.addr()),
            ("good", good.addr()),
        ],
    ))
    .await;

    let mut cfg = LoadConfig::new(&format!("http://{}/v1/messages", host.listen))
        .expect("url")
        .post_json(BODY);
    cfg.concurrency = 16;
    cfg.stop = Stop::Requests(1000);
    cfg.timeout = Duration::from_secs(10);
    let report = tokio::time::timeout(Duration::from_secs(60), load::run(cfg))
        .await
        .expect("1000 requests within 60 s")
        .expect("load run");

    // Requests the router itself sent to the resetting endpoint carry the route header the
    // filter set; replays (dispatch_http_call) do not — a replay that meets the reset fails
    // before anything reached the client and moves on to the next endpoint.
    let routed_to_resetting = resetting
        .requests()
        .iter()
        .filter(|r| r.path == "/v1/messages" && r.header(ROUTE_HEADER) == Some("resetting"))
        .count() as u64;
    let status = host.status().await;
    assert_eq!(report.requests, 1000, "{report}");
    assert_eq!(
        report.failed, routed_to_resetting,
        "only requests whose 200 headers had already gone out may fail: {report}\n{status:#}"
    );
    assert_eq!(
        report.errors_of(ErrorKind::Body),
        report.failed,
        "a cut answer must never look complete, and nothing else may fail: {report}"
    );
    assert!(
        routed_to_resetting <= 16,
        "the resetting endpoint got {routed_to_resetting} requests: it was not parked when its \
         first answer broke off ({report})\n{status:#}"
    );
    assert_eq!(
        report.by_name.get("good").copied(),
        Some(report.ok),
        "{report}"
    );
    assert_eq!(stat(&status, "total_failed"), 2, "{status:#}");
    assert!(
        is_parked(&status, "refusing") && is_parked(&status, "resetting"),
        "{status:#}"
    );
    assert_eq!(
        host.count_lines(&["added to failure queue"]),
        2,
        "{}",
        host.logs()
    );
}

/// The same shape with the three ways an endpoint can fail *before* its answer starts (refused
/// connection, reset before headers, 503): every one of the 1 000 POSTs gets a clean 200 from the
/// healthy endpoint, the failing endpoints are counted once each, and once parked they see no
/// more traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failures_before_the_answer_starts_are_never_client_visible() {
    let refusing = mock_upstream("refusing", mock::FailMode::Refuse.into()).await;
    let resetting = mock_upstream("resetting", mock::FailMode::ResetBeforeHeaders.into()).await;
    let erroring = mock_upstream("erroring", mock::FailMode::status(503).into()).await;
    let good = mock_upstream("good", mock::Schedule::default()).await;
    let mut plugin = plugin_config(&[
        ("refusing", "refusing", "primary"),
        ("resetting", "resetting", "primary"),
        ("erroring", "erroring", "primary"),
        ("good", "good", "secondary"),
    ]);
    merge(&mut plugin, quiet_verifier());
    merge(&mut plugin, json!({"failover": {"max_attempts": 4}}));
    let host = Host::start(&Setup::new(
        plugin,
        &[
            ("refusing", refusing.addr()),
            ("resetting", resetting.addr()),
            ("erroring", erroring.addr()),
            ("good", good.addr()),
        ],
    ))
    .await;

    let mut cfg = LoadConfig::new(&format!("http://{}/v1/messages", host.listen))
        .expect("url")
        .post_json(BODY);
    cfg.concurrency = 16;
    cfg.stop = Stop::Requests(1000);
    let report = tokio::time::timeout(Duration::from_secs(60), load::run(cfg))
        .await
        .expect("1000 requests within 60 s")
        .expect("load run");
    assert_eq!(
        (report.requests, report.ok, report.failed),
        (1000, 1000, 0),
        "{report}"
    );
    assert_eq!(
        report.by_name,
        BTreeMap::from([("good".to_string(), 1000)]),
        "{report}"
    );
    // Every request carried its body to the endpoint that answered it, replays included.
    let g = good.stats();
    assert_eq!(g.requests_on("/v1/messages"), 1000);
    assert_eq!(g.request_body_bytes, 1000 * BODY.len() as u64);

    let status = host.status().await;
    assert_eq!(stat(&status, "total_failed"), 3, "{status:#}");
    assert_eq!(status["queue_size"], 3, "{status:#}");
    assert_eq!(
        host.count_lines(&["added to failure queue"]),
        3,
        "{}",
        host.logs()
    );
    let before = (resetting.stats().requests, erroring.stats().requests);
    for _ in 0..50 {
        let a = send(host.listen, "POST", "/v1/messages", &[], BODY)
            .await
            .expect("request");
        assert_eq!((a.status, a.header("x-mock-name")), (200, Some("good")));
        assert_eq!(
            a.header("x-failover-tried"),
            None,
            "nothing to fail over from now"
        );
    }
    assert_eq!(
        before,
        (resetting.stats().requests, erroring.stats().requests)
    );
}

/// Every endpoint fails: the client gets the last real upstream answer — the status and body of
/// the last endpoint tried — plus the header listing the endpoints tried, in order. No hang:
/// every request is bounded by `send`'s 15 s limit, far above the 3 s attempt timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn all_endpoints_failing_gives_the_last_real_answer_and_the_tried_list() {
    let status_with_body = |code: u16, body: &str| mock::FailMode::Status {
        code,
        headers: vec![("x-which".into(), body.into())],
        body: format!(r#"{{"type":"error","error":{{"type":"api_error","message":"{body}"}}}}"#),
    };
    let a = mock_upstream("a", status_with_body(500, "from-a").into()).await;
    let b = mock_upstream("b", status_with_body(502, "from-b").into()).await;
    let c = mock_upstream("c", status_with_body(503, "from-c").into()).await;
    let mut plugin = plugin_config(&[("a", "a", "g1"), ("b", "b", "g2"), ("c", "c", "g3")]);
    merge(&mut plugin, quiet_verifier());
    let host = Host::start(&Setup::new(
        plugin,
        &[("a", a.addr()), ("b", b.addr()), ("c", c.addr())],
    ))
    .await;

    // First request: a (router), then b and c (replays) — c's answer is the last real one.
    let first = send(host.listen, "POST", "/v1/messages", &[], BODY)
        .await
        .expect("request");
    assert_eq!(first.status, 503, "{}", first.text());
    assert!(first.text().contains("from-c"), "{}", first.text());
    assert_eq!(first.header("x-which"), Some("from-c"));
    assert_eq!(first.header("x-mock-name"), Some("c"));
    assert_eq!(first.header("x-failover-tried"), Some("a, b, c"));
    assert_eq!(
        first.header("x-failover-not-replayed"),
        None,
        "it was replayed"
    );
    let status = host.status().await;
    assert_eq!(stat(&status, "total_failed"), 3, "{status:#}");

    // Everything is parked now; `least_recently_failed` still tries them (one trial each at a
    // time), so concurrent clients get either a real upstream answer with the tried list, or —
    // when every trial slot is taken — the filter's 503. None hangs, none panics.
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let addr = host.listen;
            tokio::spawn(async move {
                send(addr, "POST", "/v1/messages", &[], format!("{{\"n\":{i}}}")).await
            })
        })
        .collect();
    for t in tasks {
        let r = t
            .await
            .expect("task")
            .expect("no hang, no broken connection");
        assert!(r.status >= 500, "{} {}", r.status, r.text());
        match r.header("x-mock-name") {
            Some(name) => {
                let tried = r.header("x-failover-tried").unwrap_or_default().to_string();
                assert!(
                    tried.split(", ").last() == Some(name),
                    "the answer must come from the last endpoint tried: {name} vs {tried:?}"
                );
                assert!(r.text().contains(&format!("from-{name}")), "{}", r.text());
            }
            None => assert!(
                r.text().contains("all_endpoints_parked"),
                "{} {}",
                r.status,
                r.text()
            ),
        }
    }
    assert!(!host.logs().contains("panicked"), "{}", host.logs());
    assert_eq!(stat(&host.status().await, "total_failed"), 3);
}

/// When the last endpoint tried refuses the connection, the replay's answer is the proxy's own
/// 503 (Envoy's async client turns a connect failure on `dispatch_http_call` into a local-reply
/// response, which the filter cannot tell from an upstream 503 — there are no `response.*`
/// properties for call answers). The client then gets that 503 with the full tried list: still
/// an answer, never a hang. A refusal *first* (through the router, flag UF) is replayed and the
/// client gets the last real answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refusing_endpoints_in_the_chain_still_give_an_answer_and_the_tried_list() {
    let a = mock_upstream("a", mock::FailMode::status(500).into()).await;
    let b = mock_upstream("b", mock::FailMode::status(502).into()).await;
    let c = mock_upstream("c", mock::FailMode::Refuse.into()).await;
    let mut plugin = plugin_config(&[("a", "a", "g1"), ("b", "b", "g2"), ("c", "c", "g3")]);
    merge(&mut plugin, quiet_verifier());
    let host = Host::start(&Setup::new(
        plugin,
        &[("a", a.addr()), ("b", b.addr()), ("c", c.addr())],
    ))
    .await;
    let r = send(host.listen, "POST", "/v1/messages", &[], BODY)
        .await
        .expect("request");
    assert_eq!(
        r.header("x-failover-tried"),
        Some("a, b, c"),
        "{}",
        r.text()
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("upstream connect error"), "{}", r.text());
    assert_eq!(stat(&host.status().await, "total_failed"), 3);

    // Refusing first, then two real failures: the client gets the last real answer (b's).
    let c2 = mock_upstream("c2", mock::FailMode::Refuse.into()).await;
    let a2 = mock_upstream("a2", mock::FailMode::status(500).into()).await;
    let b2 = mock_upstream("b2", mock::FailMode::status(502).into()).await;
    let mut plugin = plugin_config(&[("c2", "c2", "g1"), ("a2", "a2", "g2"), ("b2", "b2", "g3")]);
    merge(&mut plugin, quiet_verifier());
    let host = Host::start(&Setup::new(
        plugin,
        &[("a2", a2.addr()), ("b2", b2.addr()), ("c2", c2.addr())],
    ))
    .await;
    let r = send(host.listen, "POST", "/v1/messages", &[], BODY)
        .await
        .expect("request");
    assert_eq!(
        (r.status, r.header("x-mock-name")),
        (502, Some("b2")),
        "{}",
        r.text()
    );
    assert_eq!(r.header("x-failover-tried"), Some("c2, a2, b2"));
}

/// A request body over `failover.max_request_bytes` is streamed to the upstream without being
/// kept, so it cannot be replayed: the client gets the failing endpoint's own answer (with the
/// tried header naming only that endpoint) and the spare endpoint never sees the request. A body
/// of exactly the limit is still replayed. The failure itself is still recorded.
///
/// `failure.threshold` is set high so the failing endpoint is never parked and every request
/// meets it first — the test is about replay, not parking.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn body_over_the_limit_is_passed_through_and_not_replayed() {
    let bad = mock_upstream("bad", mock::FailMode::status(503).into()).await;
    let good = mock_upstream("good", mock::Schedule::default()).await;
    let mut plugin = plugin_config(&[("bad", "bad", "primary"), ("good", "good", "secondary")]);
    merge(&mut plugin, quiet_verifier());
    merge(
        &mut plugin,
        json!({"failover": {"max_request_bytes": 1024}, "failure": {"threshold": 1000}}),
    );
    let host = Host::start(&Setup::new(
        plugin,
        &[("bad", bad.addr()), ("good", good.addr())],
    ))
    .await;

    let body_of = |n: usize| format!("{{\"pad\":\"{}\"}}", "x".repeat(n - 10));
    assert_eq!(body_of(1024).len(), 1024);

    let over = send(host.listen, "POST", "/v1/messages", &[], body_of(1025))
        .await
        .expect("request");
    assert_eq!(
        (over.status, over.header("x-mock-name")),
        (503, Some("bad")),
        "{}",
        over.text()
    );
    assert_eq!(over.header("x-failover-tried"), Some("bad"));
    assert_eq!(
        over.header("x-failover-not-replayed"),
        Some("request-body-over-limit")
    );
    assert_eq!(
        good.stats().requests,
        0,
        "a body over the limit was replayed"
    );
    assert_eq!(
        bad.stats().request_body_bytes,
        1025,
        "the whole body reached the upstream"
    );

    let big = send(host.listen, "POST", "/v1/messages", &[], body_of(64 * 1024))
        .await
        .expect("request");
    assert_eq!((big.status, big.header("x-mock-name")), (503, Some("bad")));
    assert_eq!(
        good.stats().requests,
        0,
        "a body over the limit was replayed"
    );

    let at_limit = send(host.listen, "POST", "/v1/messages", &[], body_of(1024))
        .await
        .expect("request");
    assert_eq!(
        (at_limit.status, at_limit.header("x-mock-name")),
        (200, Some("good")),
        "{}",
        at_limit.text()
    );
    assert_eq!(at_limit.header("x-failover-tried"), Some("bad, good"));
    let g = good.stats();
    assert_eq!(
        (g.requests, g.request_body_bytes),
        (1, 1024),
        "the replay carried the whole body"
    );

    let status = host.status().await;
    assert_eq!(
        status["endpoints"][0]["strikes"], 3,
        "every failure was recorded: {status:#}"
    );
    assert_eq!(host.stat("failover.failovers").await, 1);
}

/// A client-supplied route header — any case, repeated, naming a real cluster that is not an
/// endpoint — never selects the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_supplied_route_header_never_selects_the_upstream() {
    let good = mock_upstream("good", mock::Schedule::default()).await;
    let secret = mock_upstream("secret", mock::Schedule::default()).await;
    let mut plugin = plugin_config(&[("good", "good", "primary")]);
    merge(&mut plugin, quiet_verifier());
    // `internal` is a cluster the proxy knows but the plugin does not offer.
    let host = Host::start(&Setup::new(
        plugin,
        &[("good", good.addr()), ("internal", secret.addr())],
    ))
    .await;

    for headers in [
        "x-failover-cluster: internal\r\n",
        "X-Failover-Cluster: internal\r\n",
        "X-FAILOVER-CLUSTER: internal\r\n",
        "x-failover-cluster: internal\r\nX-Failover-Cluster: internal\r\n",
        "x-failover-cluster: internal, internal\r\n",
        "x-failover-cluster: \r\nx-failover-cluster: internal\r\n",
    ] {
        let req = format!(
            "POST /v1/messages HTTP/1.1\r\nhost: failover.test\r\n{headers}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
            BODY.len()
        );
        let a = raw_request(host.listen, req.as_bytes())
            .await
            .expect("request");
        assert_eq!(
            (a.status, a.header("x-mock-name")),
            (200, Some("good")),
            "{headers:?}: {}",
            a.text()
        );
    }
    assert_eq!(secret.stats().requests, 0, "a client chose the upstream");
    // The route header the upstream sees is the filter's, exactly once.
    for r in good.requests() {
        let values: Vec<_> = r
            .headers
            .iter()
            .filter(|(k, _)| k == "x-failover-cluster")
            .collect();
        assert_eq!(values.len(), 1, "{:?}", r.headers);
        assert_eq!(values[0].1, "good");
    }
}

/// A replayed request never carries hop-by-hop headers (the fixed list and those nominated by
/// `connection`), keeps the client's end-to-end headers and body, and carries the endpoint's
/// `request_headers` — here an API key resolved from `${ENV}` — replacing any client copy. The key
/// never appears in the host's output (debug level) nor in the status document.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replays_drop_hop_by_hop_headers_and_carry_the_endpoint_secret_without_leaking_it() {
    const BAD_KEY: &str = "sk-bad-3f9a1c77e2d54b0f";
    const GOOD_KEY: &str = "sk-good-8c21d4e9a0b67f13";
    let bad = mock_upstream("bad", mock::FailMode::status(503).into()).await;
    let good = mock_upstream("good", mock::Schedule::default()).await;
    let mut plugin = plugin_config(&[("bad", "bad", "primary"), ("good", "good", "secondary")]);
    merge(&mut plugin, quiet_verifier());
    merge(
        &mut plugin,
        json!({"endpoints": [
            {"name": "bad", "cluster": "bad", "group": "primary",
             "request_headers": {"x-api-key": "${BAD_KEY}"}},
            {"name": "good", "cluster": "good", "group": "secondary",
             "request_headers": {"x-api-key": "${GOOD_KEY}", "anthropic-version": "2023-06-01"}}
        ]}),
    );
    let mut setup = Setup::new(plugin, &[("bad", bad.addr()), ("good", good.addr())]);
    setup.vm_env = vec![
        ("BAD_KEY".into(), BAD_KEY.into()),
        ("GOOD_KEY".into(), GOOD_KEY.into()),
    ];
    setup.log_level = "debug".into();
    let host = Host::start(&setup).await;

    let req = format!(
        "POST /v1/messages?beta=true HTTP/1.1\r\nhost: failover.test\r\ncontent-type: application/json\r\n\
         x-api-key: client-own-key\r\nx-custom: kept\r\nconnection: close, x-nominated\r\n\
         x-nominated: dropped\r\nkeep-alive: timeout=5\r\nproxy-authorization: Basic Zm9vOmJhcg==\r\n\
         te: trailers\r\nproxy-connection: keep-alive\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let a = raw_request(host.listen, req.as_bytes())
        .await
        .expect("request");
    assert_eq!(
        (a.status, a.header("x-mock-name")),
        (200, Some("good")),
        "{}",
        a.text()
    );
    assert_eq!(a.header("x-failover-tried"), Some("bad, good"));

    // First attempt (through the router) carried bad's key, not the client's.
    let first = bad.requests();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].header("x-api-key"), Some(BAD_KEY));
    // The replay.
    let replays = good.requests();
    assert_eq!(replays.len(), 1, "one replay");
    let r = &replays[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v1/messages");
    assert_eq!(r.body_len, BODY.len() as u64, "the replay carried the body");
    assert_eq!(r.header("x-api-key"), Some(GOOD_KEY), "{:?}", r.headers);
    assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(r.header("x-custom"), Some("kept"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.headers.iter().filter(|(k, _)| k == "x-api-key").count(),
        1,
        "the client's copy must be replaced, not added to: {:?}",
        r.headers
    );
    for hop in [
        "x-nominated",
        "keep-alive",
        "proxy-authorization",
        "te",
        "proxy-connection",
        "upgrade",
    ] {
        assert_eq!(
            r.header(hop),
            None,
            "{hop} was forwarded on the replay: {:?}",
            r.headers
        );
    }
    assert_ne!(
        r.header("connection").map(|v| v.contains("x-nominated")),
        Some(true),
        "{:?}",
        r.headers
    );

    // The host's output is read by a thread of the test; on a loaded machine it can lag the
    // requests: wait (bounded) until the debug lines of these requests are in before asserting
    // what they do not contain.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while host.count_lines(&["DEBUG"]) == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = host.status().await;
    let text = status.to_string();
    for key in [BAD_KEY, GOOD_KEY] {
        assert!(!text.contains(key), "secret in the status document: {text}");
        assert!(
            !host.logs().contains(key),
            "secret in the log:\n{}",
            host.logs()
        );
    }
    // The status document does say which headers are set, by name.
    assert_eq!(
        status["endpoints"][1]["headers_set"],
        json!(["anthropic-version", "x-api-key"])
    );
    assert!(
        host.count_lines(&["DEBUG"]) > 0,
        "debug logging was on: {}",
        host.logs()
    );
}
