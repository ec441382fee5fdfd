//! The seed's bug, end to end: two endpoints failing under concurrent load over 4 worker VMs
//! must be counted twice — not 26 times — with exactly two "added to failure queue" lines.

use std::time::Duration;

use failover_testkit::{eventually, merge, mock, mock_upstream, plugin_config, send, Host, Setup};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_failing_endpoints_under_load_are_counted_exactly_twice() {
    let bad1 = mock_upstream("bad1", mock::FailMode::status(503).into()).await;
    let bad2 = mock_upstream("bad2", mock::FailMode::status(503).into()).await;
    let good = mock_upstream("good", mock::Schedule::default()).await;
    let mut plugin = plugin_config(&[
        ("bad1", "bad1", "primary"),
        ("bad2", "bad2", "primary"),
        ("good", "good", "secondary"),
    ]);
    // Probes go to their own path so traffic and probes can be told apart on the mocks.
    merge(
        &mut plugin,
        json!({"verifier": {"interval_ms": 60000, "max_interval_ms": 60000, "request": {"path": "/probe"}}}),
    );
    let host = Host::start(&Setup::new(
        plugin,
        &[
            ("bad1", bad1.addr()),
            ("bad2", bad2.addr()),
            ("good", good.addr()),
        ],
    ))
    .await;

    // 256 concurrent POSTs over fresh connections: the kernel spreads them over the 4 workers.
    let tasks: Vec<_> = (0..256)
        .map(|i| {
            let addr = host.listen;
            tokio::spawn(async move {
                send(
                    addr,
                    "POST",
                    "/v1/messages",
                    &[("content-type", "application/json")],
                    format!("{{\"n\":{i}}}"),
                )
                .await
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        let a = t.await.expect("task").expect("request");
        assert_eq!(
            a.status,
            200,
            "client saw an error: {} {}",
            a.status,
            a.text()
        );
        ok += 1;
    }
    assert_eq!(ok, 256);

    let status = host.status().await;
    assert_eq!(status["stats"]["total_failed"], 2, "{status:#}");
    assert_eq!(status["queue_size"], 2, "{status:#}");
    assert_eq!(
        host.count_lines(&["added to failure queue"]),
        2,
        "{}",
        host.logs()
    );
    assert_eq!(
        host.count_lines(&["INFO", "\"bad1\" added to failure queue"]),
        1
    );
    assert_eq!(
        host.count_lines(&["INFO", "\"bad2\" added to failure queue"]),
        1
    );
    let insertions = eventually(Duration::from_secs(5), || async {
        let v = host.stat("failover.queue_insertions").await;
        (v == 2).then_some(v)
    })
    .await;
    assert_eq!(insertions, Some(2), "{:?}", host.stats().await);

    // From now on the parked endpoints get no normal traffic.
    let before = (
        bad1.stats().requests_on("/v1/messages"),
        bad2.stats().requests_on("/v1/messages"),
    );
    for i in 0..100 {
        let a = send(
            host.listen,
            "POST",
            "/v1/messages",
            &[],
            format!("{{\"again\":{i}}}"),
        )
        .await
        .expect("request");
        assert_eq!(a.status, 200);
        assert_eq!(a.header("x-mock-name"), Some("good"));
    }
    let after = (
        bad1.stats().requests_on("/v1/messages"),
        bad2.stats().requests_on("/v1/messages"),
    );
    assert_eq!(before, after, "a parked endpoint received traffic");
    let status = host.status().await;
    assert_eq!(status["stats"]["total_failed"], 2);
}
