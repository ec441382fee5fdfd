//! The failure queue across the host's lifecycle (issue 4 "Prove", end to end through the real
//! binary and the real filter): it survives a SIGHUP reload of a changed config file; it survives
//! a restart with `--state-file` (graceful stop or SIGKILL after the change was saved); without a
//! state file a restart forgets it.

use std::path::Path;
use std::time::Duration;

use failover_testkit::{
    eventually, get, merge, mock, mock_upstream, plugin_config, send, Host, Setup,
};
use failover_testkit::{is_parked, stat, BODY};
use serde_json::json;

/// Two endpoints, `bad` (always 503, first) and `good`; probes on `/probe` once a minute, so a
/// parked `bad` stays parked for the whole test.
async fn setup() -> (mock::MockUpstream, mock::MockUpstream, Setup) {
    let bad = mock_upstream("bad", mock::FailMode::status(503).into()).await;
    let good = mock_upstream("good", mock::Schedule::default()).await;
    let mut plugin = plugin_config(&[("bad", "bad", "primary"), ("good", "good", "secondary")]);
    merge(
        &mut plugin,
        json!({"verifier": {"interval_ms": 60000, "max_interval_ms": 60000, "request": {"path": "/probe"}}}),
    );
    let setup = Setup::new(plugin, &[("bad", bad.addr()), ("good", good.addr())]);
    (bad, good, setup)
}

/// Parks `bad` with one request and checks the record says so.
async fn park_bad(host: &Host) {
    let a = send(host.listen, "POST", "/v1/messages", &[], BODY)
        .await
        .expect("request");
    assert_eq!(
        (a.status, a.header("x-mock-name")),
        (200, Some("good")),
        "{}",
        a.text()
    );
    let st = host.status().await;
    assert!(is_parked(&st, "bad"), "{st:#}");
    assert_eq!(stat(&st, "total_failed"), 1);
}

/// Sends `n` requests; all must be answered by `good` without touching `bad`.
async fn traffic_avoids_bad(host: &Host, bad: &mock::MockUpstream, n: usize) {
    let before = bad.stats().requests;
    for _ in 0..n {
        let a = send(host.listen, "POST", "/v1/messages", &[], BODY)
            .await
            .expect("request");
        assert_eq!((a.status, a.header("x-mock-name")), (200, Some("good")));
        assert_eq!(a.header("x-failover-tried"), None, "{:?}", a.headers);
    }
    assert_eq!(
        bad.stats().requests,
        before,
        "a parked endpoint received traffic"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_queue_survives_a_sighup_reload() {
    let (bad, good, setup) = setup().await;
    let spare = mock_upstream("spare", mock::Schedule::default()).await;
    let host = Host::start(&setup).await;
    park_bad(&host).await;
    let parked_since = host.status().await["queue"]["bad"]["since_ms"].clone();

    // A real change, written in place: a third endpoint (and its cluster) appears.
    let mut changed = setup.clone();
    merge(
        &mut changed.plugin,
        json!({"endpoints": [
            {"name": "bad", "cluster": "bad", "group": "primary"},
            {"name": "good", "cluster": "good", "group": "secondary"},
            {"name": "spare", "cluster": "spare", "group": "tertiary"}
        ]}),
    );
    changed.clusters.push(("spare".into(), spare.addr()));
    host.reload(&changed.bootstrap(host.listen, host.admin));
    let reloaded = eventually(Duration::from_secs(20), || async {
        let st = host.status().await;
        (st["endpoints"].as_array().map(Vec::len) == Some(3)).then_some(st)
    })
    .await
    .unwrap_or_else(|| panic!("the new config never took effect:\n{}", host.logs()));

    assert!(
        is_parked(&reloaded, "bad"),
        "the reload forgot the queue: {reloaded:#}"
    );
    assert_eq!(stat(&reloaded, "total_failed"), 1, "{reloaded:#}");
    assert_eq!(
        reloaded["queue"]["bad"]["since_ms"], parked_since,
        "re-parked instead of kept"
    );
    // Give the old generation time to drain, then check traffic on the new one only.
    tokio::time::sleep(Duration::from_millis(500)).await;
    traffic_avoids_bad(&host, &bad, 30).await;
    assert_eq!(spare.stats().requests, 0);
    assert_eq!(good.stats().requests_on("/v1/messages"), 31);
    assert_eq!(
        host.count_lines(&["added to failure queue"]),
        1,
        "{}",
        host.logs()
    );
}

/// The state file is written on change; `until` polls it for `needle`.
async fn state_file_mentions(path: &Path, needle: &str) -> bool {
    eventually(Duration::from_secs(10), || async {
        std::fs::read_to_string(path)
            .ok()
            .filter(|t| t.contains(needle))
            .map(|_| ())
    })
    .await
    .is_some()
}

async fn survives_restart(kill: bool) {
    let (bad, _good, mut setup) = setup().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state.json");
    setup.state_file = Some(state.clone());
    let mut host = Host::start(&setup).await;
    park_bad(&host).await;
    let since = host.status().await["queue"]["bad"]["since_ms"].clone();
    if kill {
        // No shutdown hook runs: only what was saved on change survives.
        assert!(
            state_file_mentions(&state, "failover.v1").await,
            "state file never written"
        );
        // The record is stored base64 or as text; wait until the saved copy is the one with the
        // queue entry (the host saves on every change).
        let saved = eventually(Duration::from_secs(10), || async {
            let text = std::fs::read_to_string(&state).ok()?;
            text.contains("since_ms").then_some(())
        })
        .await;
        assert!(
            saved.is_some(),
            "queue entry never saved: {}",
            std::fs::read_to_string(&state).unwrap_or_default()
        );
        host.signal("KILL");
    } else {
        host.signal("TERM");
    }
    host.wait_exit(Duration::from_secs(15));
    drop(host);

    let host = Host::start(&setup).await;
    let st = host.status().await;
    assert!(
        is_parked(&st, "bad"),
        "the restart forgot the queue: {st:#}\n{}",
        host.logs()
    );
    assert_eq!(stat(&st, "total_failed"), 1, "{st:#}");
    assert_eq!(st["queue"]["bad"]["since_ms"], since);
    traffic_avoids_bad(&host, &bad, 20).await;
    assert_eq!(
        host.count_lines(&["added to failure queue"]),
        0,
        "{}",
        host.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_queue_survives_a_graceful_restart_with_a_state_file() {
    survives_restart(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_queue_survives_sigkill_with_a_state_file() {
    survives_restart(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_state_file_a_restart_forgets_the_queue() {
    let (bad, _good, setup) = setup().await;
    let mut host = Host::start(&setup).await;
    park_bad(&host).await;
    host.signal("TERM");
    host.wait_exit(Duration::from_secs(15));
    drop(host);

    let host = Host::start(&setup).await;
    let st = host.status().await;
    assert_eq!(st["queue_size"], 0, "{st:#}");
    assert_eq!(stat(&st, "total_failed"), 0, "{st:#}");
    let before = bad.stats().requests_on("/v1/messages");
    let a = send(host.listen, "POST", "/v1/messages", &[], BODY)
        .await
        .expect("request");
    assert_eq!(
        a.header("x-failover-tried"),
        Some("bad, good"),
        "bad was tried again"
    );
    assert_eq!(bad.stats().requests_on("/v1/messages"), before + 1);
    assert_eq!(stat(&host.status().await, "total_failed"), 1);
}

/// A reload swaps the VMs while requests are in flight: the old generation drains, so a
/// request that started before SIGHUP (on a 2 s upstream) still gets its full answer, from the
/// endpoint it was sent to, and no endpoint is parked by the swap.
///
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_in_flight_during_a_reload_complete() {
    let slow = mock_upstream(
        "slow",
        mock::FailMode::Delay {
            delay: Duration::from_secs(2),
        }
        .into(),
    )
    .await;
    let setup = Setup::new(
        plugin_config(&[("slow", "slow", "primary")]),
        &[("slow", slow.addr())],
    );
    let host = Host::start(&setup).await;
    let in_flight: Vec<_> = (0..8)
        .map(|i| {
            let addr = host.listen;
            tokio::spawn(async move {
                send(addr, "POST", "/v1/messages", &[], format!("{{\"n\":{i}}}")).await
            })
        })
        .collect();
    // Every request has reached the upstream (and so passed the old VMs' filters) before HUP.
    let arrived = eventually(Duration::from_secs(10), || async {
        (slow.stats().requests >= 8).then_some(())
    })
    .await;
    assert!(arrived.is_some(), "requests never reached the upstream");
    host.signal("HUP");
    for t in in_flight {
        let a = t
            .await
            .expect("task")
            .unwrap_or_else(|e| panic!("request during reload: {e}\n{}", host.logs()));
        assert_eq!(a.status, 200, "{}\n{}", a.text(), host.logs());
        assert_eq!(a.header("x-mock-name"), Some("slow"));
    }
    let st = host.status().await;
    assert_eq!(stat(&st, "total_failed"), 0, "{st:#}");
    assert!(
        host.count_lines(&["reload"]) >= 1,
        "no reload in the logs:\n{}",
        host.logs()
    );
}

/// Listening TCP sockets on `port` (IPv4, from `/proc/net/tcp`; state `0A` = LISTEN).
fn listening_sockets(port: u16) -> usize {
    let needle = format!(":{port:04X} ");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.get(1)
                .is_some_and(|local| format!("{local} ").ends_with(&needle))
                && cols.get(3) == Some(&"0A")
        })
        .count()
}

/// Issue 14 item 5: reload after reload under traffic. Each round puts 8 requests on a slow
/// upstream, reloads while they are in flight, and then checks that all 8 are answered and
/// that new requests are answered by the new generation. Meanwhile a client sends
/// `Connection: close` requests back to back, across every reload: none of them may fail (a
/// listening socket closed with connections in its accept queue would reset them). At the end
/// the host has exactly one listening socket per worker and SIGTERM ends it promptly.
///
/// Before the fix the old workers deadlocked on the drain signal (a `watch::Ref` held across
/// `conn.await` while the stopper sent a second time), kept their sockets in the SO_REUSEPORT
/// group, and every request the kernel gave them hung; SIGTERM then waited for them forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_reloads_under_traffic_lose_no_request() {
    const ROUNDS: usize = 20;
    const IN_FLIGHT: usize = 8;
    let slow = mock_upstream(
        "slow",
        mock::FailMode::Delay {
            delay: Duration::from_millis(1000),
        }
        .into(),
    )
    .await;
    let setup = Setup::new(
        plugin_config(&[("slow", "slow", "primary")]),
        &[("slow", slow.addr())],
    );
    let mut host = Host::start(&setup).await;
    let listen = host.listen;

    // Connection: close traffic for the whole test: (answered, failures).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let closers: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0usize, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match send(
                        listen,
                        "GET",
                        "/failover/status",
                        &[("connection", "close")],
                        "",
                    )
                    .await
                    {
                        Ok(a) if a.status == 200 => ok += 1,
                        Ok(a) => failed.push(format!("status {}: {}", a.status, a.text())),
                        Err(e) => failed.push(e),
                    }
                }
                (ok, failed)
            })
        })
        .collect();

    for round in 0..ROUNDS {
        let before = slow.stats().requests;
        let in_flight: Vec<_> = (0..IN_FLIGHT)
            .map(|i| {
                tokio::spawn(async move {
                    send(
                        listen,
                        "POST",
                        "/v1/messages",
                        &[],
                        format!("{{\"n\":{i}}}"),
                    )
                    .await
                })
            })
            .collect();
        let arrived = eventually(Duration::from_secs(15), || async {
            (slow.stats().requests >= before + IN_FLIGHT as u64).then_some(())
        })
        .await;
        assert!(
            arrived.is_some(),
            "round {round}: only {} of {IN_FLIGHT} requests reached the upstream\n{}",
            slow.stats().requests - before,
            host.logs()
        );
        host.signal("HUP");
        let reloaded = eventually(Duration::from_secs(20), || async {
            (host.count_lines(&["configuration reloaded"]) > round).then_some(())
        })
        .await;
        assert!(
            reloaded.is_some(),
            "round {round}: no reload\n{}",
            host.logs()
        );
        for (i, t) in in_flight.into_iter().enumerate() {
            let a = t.await.expect("task").unwrap_or_else(|e| {
                panic!("round {round}: in-flight request {i}: {e}\n{}", host.logs())
            });
            assert_eq!(
                (a.status, a.header("x-mock-name")),
                (200, Some("slow")),
                "round {round}: in-flight request {i}: {}\n{}",
                a.text(),
                host.logs()
            );
        }
        // New requests after the reload: the new generation answers them.
        for i in 0..4 {
            let a = get(listen, "/failover/status")
                .await
                .unwrap_or_else(|e| panic!("round {round}: new request {i}: {e}\n{}", host.logs()));
            assert_eq!(a.status, 200, "round {round}: {}", a.text());
        }
    }

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut answered, mut failures) = (0, Vec::new());
    for c in closers {
        let (ok, failed) = c.await.expect("closer task");
        answered += ok;
        failures.extend(failed);
    }
    assert!(answered > 0, "the Connection: close client got no answer");
    assert!(
        failures.is_empty(),
        "{} of {} Connection: close requests failed across {ROUNDS} reloads: {:?}\n{}",
        failures.len(),
        answered + failures.len(),
        &failures[..failures.len().min(10)],
        host.logs()
    );
    eprintln!("{answered} Connection: close requests across {ROUNDS} reloads, 0 failed");

    let st = host.status().await;
    assert_eq!(stat(&st, "total_failed"), 0, "{st:#}");
    // The old generations are gone: one listening socket per worker, no more.
    let sockets = eventually(Duration::from_secs(10), || async {
        let n = listening_sockets(listen.port());
        (n == setup.concurrency).then_some(n)
    })
    .await;
    assert_eq!(
        sockets,
        Some(setup.concurrency),
        "listening sockets on {listen}: {}",
        listening_sockets(listen.port())
    );

    let t = std::time::Instant::now();
    host.signal("TERM");
    let status = host.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status}\n{}", host.logs());
    eprintln!("SIGTERM → exit in {:?}", t.elapsed());
}
