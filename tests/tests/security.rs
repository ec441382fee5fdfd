//! Security properties, end to end (real host, real `.wasm`):
//! - a client-supplied route header, in any case and repeated, never selects the upstream;
//! - the status page answers only `status.allow_from`; everyone else gets a plain 404 that
//!   looks like nothing is there (and never reaches an upstream);
//! - API keys from `${ENV}` reach the upstream but never the logs (at `trace`), the status
//!   JSON, the admin stats, client answers, or error messages;
//! - a replay goes only to endpoints of the config, and carries no hop-by-hop header.

use std::time::Duration;

use failover_testkit::{
    get, merge, mock, mock_upstream, plugin_config, raw_exchange, run_host_to_exit, send, Host,
    Setup,
};
use serde_json::json;

/// Sends a raw HTTP/1.1 request (exact header case and repetition) and returns the answer text.
async fn raw(host: &Host, head: &str, body: &str) -> String {
    let req = format!(
        "{head}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let out = raw_exchange(host.listen, req.as_bytes(), Duration::from_secs(15))
        .await
        .unwrap_or_else(|e| panic!("raw request failed: {e}\n{req}"));
    String::from_utf8_lossy(&out).into_owned()
}

fn header_of<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    let head = answer.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_route_header_never_selects_the_upstream() {
    let a = mock_upstream("a", mock::Schedule::default()).await;
    let b = mock_upstream("b", mock::Schedule::default()).await;
    // A cluster the bootstrap defines but the plugin config does not list.
    let stranger = mock_upstream("stranger", mock::Schedule::default()).await;
    let plugin = plugin_config(&[("a", "a", "primary"), ("b", "b", "secondary")]);
    let host = Host::start(&Setup::new(
        plugin,
        &[
            ("a", a.addr()),
            ("b", b.addr()),
            ("stranger", stranger.addr()),
        ],
    ))
    .await;

    let variants = [
        "x-failover-cluster: stranger\r\n",
        "X-Failover-Cluster: stranger\r\n",
        "X-FAILOVER-CLUSTER: b\r\n",
        "x-FaIlOvEr-ClUsTeR: stranger\r\n",
        "x-failover-cluster: stranger\r\nX-Failover-Cluster: b\r\n",
        "X-Failover-Cluster: b\r\nx-failover-cluster: stranger\r\nX-FAILOVER-CLUSTER: stranger\r\n",
        "x-failover-cluster: stranger, b\r\n",
        "x-failover-cluster:stranger\r\n",
        "x-failover-cluster: \r\n",
    ];
    let mut sent = 0;
    for v in variants {
        for _ in 0..4 {
            let head = format!("POST /v1/messages HTTP/1.1\r\nHost: failover.test\r\nContent-Type: application/json\r\n{v}");
            let answer = raw(&host, &head, "{\"n\":1}").await;
            assert!(
                answer.starts_with("HTTP/1.1 200"),
                "variant {v:?}: {answer}"
            );
            assert_eq!(
                header_of(&answer, "x-mock-name"),
                Some("a"),
                "variant {v:?} chose the upstream: {answer}"
            );
            sent += 1;
        }
    }
    // Through a regular client library too (lowercased, one copy).
    for _ in 0..8 {
        let r = send(
            host.listen,
            "POST",
            "/v1/messages",
            &[("x-failover-cluster", "stranger")],
            "{}",
        )
        .await
        .expect("request");
        assert_eq!(r.header("x-mock-name"), Some("a"));
        sent += 1;
    }
    assert_eq!(a.stats().requests_on("/v1/messages"), sent);
    assert_eq!(
        stranger.stats().requests,
        0,
        "a client reached a cluster the config does not list"
    );
    assert_eq!(
        b.stats().requests,
        0,
        "a client chose the secondary endpoint"
    );
    // What reached `a` carries exactly one route header, the filter's.
    for r in a.requests() {
        let copies: Vec<_> = r
            .headers
            .iter()
            .filter(|(k, _)| k == "x-failover-cluster")
            .collect();
        assert_eq!(copies.len(), 1, "{r:?}");
        assert_eq!(copies[0].1, "a", "{r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_answers_only_allow_from() {
    let a = mock_upstream("a", mock::Schedule::default()).await;
    let mut plugin = plugin_config(&[("a", "a", "primary")]);
    merge(
        &mut plugin,
        json!({ "status": { "allow_from": ["10.0.0.0/8"] } }),
    );
    let host = Host::start(&Setup::new(plugin, &[("a", a.addr())])).await;

    type Attempt<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
    let attempts: [Attempt; 6] = [
        ("GET", "/failover/status", &[]),
        ("GET", "/failover/status?format=json", &[]),
        ("HEAD", "/failover/status", &[]),
        ("POST", "/failover/status", &[]),
        // Forwarding headers are the client's word, not the connection's source.
        (
            "GET",
            "/failover/status",
            &[("x-forwarded-for", "10.1.2.3")],
        ),
        (
            "GET",
            "/failover/status",
            &[("x-real-ip", "10.1.2.3"), ("forwarded", "for=10.1.2.3")],
        ),
    ];
    for (method, path, headers) in attempts {
        let r = send(host.listen, method, path, headers, "")
            .await
            .expect("request");
        assert_eq!(r.status, 404, "{method} {path} {headers:?}: {}", r.text());
        let text = r.text();
        assert!(
            !text.contains("queue")
                && !text.contains("total_failed")
                && !text.contains("endpoints"),
            "the refusal leaks the document: {text}"
        );
        assert!(
            r.header("x-mock-name").is_none(),
            "the status path reached an upstream"
        );
    }
    assert_eq!(
        a.stats().requests,
        0,
        "the status path was proxied upstream"
    );
    // Other paths still work from the same source (the 404 is the status page's, not a block).
    let r = get(host.listen, "/v1/models").await.expect("request");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-mock-name"), Some("a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_from_env_never_leak() {
    const MAIN_KEY: &str = "sk-main-7f3c9a1e5b2d4c6f8a0e";
    const SPARE_KEY: &str = "sk-spare-0d9e8c7b6a5f4e3d2c1b";
    let a = mock_upstream("a", mock::FailMode::status(503).into()).await;
    let b = mock_upstream("b", mock::Schedule::default()).await;
    let mut plugin = plugin_config(&[("a", "a", "primary"), ("b", "b", "secondary")]);
    merge(
        &mut plugin,
        json!({
            "endpoints": [
                { "name": "a", "cluster": "a", "group": "primary",
                  "request_headers": { "x-api-key": "${MAIN_API_KEY}" } },
                { "name": "b", "cluster": "b", "group": "secondary",
                  "request_headers": { "authorization": "Bearer ${SPARE_API_KEY}" } },
            ],
            "verifier": { "interval_ms": 200, "max_interval_ms": 400,
                          "request": { "path": "/probe", "headers": { "x-probe-key": "${MAIN_API_KEY}" } } },
        }),
    );
    let mut setup = Setup::new(plugin, &[("a", a.addr()), ("b", b.addr())]);
    setup.log_level = "trace".into();
    setup.vm_env = vec![
        ("MAIN_API_KEY".into(), MAIN_KEY.into()),
        ("SPARE_API_KEY".into(), SPARE_KEY.into()),
    ];
    // Plugin and proxy at trace; the Wasm compiler's own trace lines would only slow start-up.
    let host = Host::start_with_env(
        &setup,
        &[(
            "RUST_LOG",
            "trace,wasmtime=info,cranelift=info,regalloc2=info",
        )],
    )
    .await;

    // Failures, replays, parking, probes, recovery: every path that logs.
    let mut answers = Vec::new();
    for i in 0..20 {
        let r = send(
            host.listen,
            "POST",
            "/v1/messages",
            &[("x-api-key", "client-key")],
            format!("{{\"n\":{i}}}"),
        )
        .await
        .expect("request");
        assert_eq!(r.status, 200, "{}", r.text());
        answers.push(r);
    }
    a.set_mode(mock::FailMode::Healthy).await;
    let recovered = failover_testkit::eventually(Duration::from_secs(10), || async {
        (host.status().await["queue_size"] == 0).then_some(())
    })
    .await;
    assert!(recovered.is_some(), "{}", host.logs());
    for i in 0..10 {
        answers.push(
            send(
                host.listen,
                "POST",
                "/v1/messages",
                &[],
                format!("{{\"m\":{i}}}"),
            )
            .await
            .expect("request"),
        );
    }

    // Positive control: the keys really were used.
    let a_reqs = a.requests();
    assert!(
        a_reqs
            .iter()
            .any(|r| r.header("x-api-key") == Some(MAIN_KEY)),
        "the key never reached a"
    );
    assert!(
        a_reqs
            .iter()
            .all(|r| r.header("x-api-key") != Some("client-key")),
        "the client's key was not replaced"
    );
    assert!(a_reqs
        .iter()
        .any(|r| r.path == "/probe" && r.header("x-probe-key") == Some(MAIN_KEY)));
    let bearer = format!("Bearer {SPARE_KEY}");
    assert!(b
        .requests()
        .iter()
        .any(|r| r.header("authorization") == Some(bearer.as_str())));

    let logs = host.logs();
    assert!(
        logs.contains("TRACE") || logs.contains("DEBUG"),
        "not running at trace level?"
    );
    let status = host.status().await.to_string();
    let stats = get(host.admin, "/stats").await.expect("stats").text();
    let prom = get(host.admin, "/stats/prometheus")
        .await
        .expect("prometheus")
        .text();
    for key in [MAIN_KEY, SPARE_KEY] {
        // The whole key, and a distinctive middle part (catches partial or escaped copies).
        for needle in [key, &key[8..20]] {
            assert!(!logs.contains(needle), "a key is in the logs:\n{logs}");
            assert!(
                !status.contains(needle),
                "a key is in the status page: {status}"
            );
            assert!(
                !stats.contains(needle) && !prom.contains(needle),
                "a key is in the stats"
            );
            for r in &answers {
                assert!(!r.text().contains(needle), "a key is in a client answer");
                assert!(
                    r.headers.iter().all(|(_, v)| !v.contains(needle)),
                    "a key is in a client header"
                );
            }
        }
    }
    println!("secrets: {} log lines at trace checked, status page, /stats, /stats/prometheus, {} answers", logs.lines().count(), answers.len());
}

#[test]
fn config_errors_never_print_a_key() {
    const KEY: &str = "sk-bad-\n91c2e7d05a4b";
    let a: std::net::SocketAddr = ([127, 0, 0, 1], 9).into();
    let mut plugin = plugin_config(&[("a", "a", "primary")]);
    merge(
        &mut plugin,
        json!({ "endpoints": [ { "name": "a", "cluster": "a", "request_headers": { "x-api-key": "${BAD_KEY}" } } ] }),
    );
    let mut setup = Setup::new(plugin, &[("a", a)]);
    setup.vm_env = vec![("BAD_KEY".into(), KEY.into())];
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bootstrap.yaml");
    let addr = |p| std::net::SocketAddr::from(([127, 0, 0, 1], p));
    std::fs::write(
        &path,
        setup.bootstrap(
            addr(failover_testkit::free_port()),
            addr(failover_testkit::free_port()),
        ),
    )
    .expect("write");
    let (status, out) = run_host_to_exit(
        &[
            "-c".as_ref(),
            path.as_os_str(),
            "--log-level".as_ref(),
            "debug".as_ref(),
        ],
        Duration::from_secs(60),
    );
    assert!(
        status.is_some_and(|s| !s.success()),
        "a plugin with a bad header value was accepted:\n{out}"
    );
    assert!(
        out.contains("request_headers"),
        "the error does not name the field:\n{out}"
    );
    assert!(
        !out.contains("91c2e7d05a4b"),
        "the error prints the key:\n{out}"
    );
    assert!(!out.contains("panicked"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_stays_inside_the_config_and_drops_hop_by_hop_headers() {
    let a = mock_upstream("a", mock::FailMode::status(503).into()).await;
    let b = mock_upstream("b", mock::Schedule::default()).await;
    let stranger = mock_upstream("stranger", mock::Schedule::default()).await;
    let mut plugin = plugin_config(&[("a", "a", "primary"), ("b", "b", "secondary")]);
    // `a` stays in rotation (threshold far away), so every request fails over a -> b by replay.
    merge(
        &mut plugin,
        json!({ "failure": { "threshold": 1000 }, "failover": { "max_attempts": 3 } }),
    );
    let host = Host::start(&Setup::new(
        plugin,
        &[
            ("a", a.addr()),
            ("b", b.addr()),
            ("stranger", stranger.addr()),
        ],
    ))
    .await;

    let hop = [
        "Connection: close, X-Hop-Nominated",
        "X-Hop-Nominated: 1",
        "Keep-Alive: timeout=5",
        "Proxy-Connection: keep-alive",
        "Proxy-Authorization: Basic c2VjcmV0",
        "TE: trailers",
        "Trailer: X-Checksum",
        "X-Failover-Cluster: stranger",
    ];
    let n = 12;
    for i in 0..n {
        let head = format!(
            "POST /v1/messages HTTP/1.1\r\nHost: failover.test\r\nContent-Type: application/json\r\nX-Normal: kept-{i}\r\n{}\r\n",
            hop.join("\r\n")
        );
        let body = format!("{{\"n\":{i}}}");
        // `raw` adds its own `Connection: close`; a second Connection line is legal and merges.
        let answer = raw(&host, &head, &body).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert_eq!(header_of(&answer, "x-mock-name"), Some("b"), "{answer}");
        assert_eq!(
            header_of(&answer, "x-failover-tried"),
            Some("a, b"),
            "{answer}"
        );
    }
    assert_eq!(
        stranger.stats().requests,
        0,
        "a replay or a client reached a cluster outside the config"
    );
    let replays = b.requests();
    assert_eq!(
        replays.len(),
        n,
        "every request must have been replayed to b exactly once"
    );
    for r in &replays {
        assert!(
            r.header("x-normal").is_some_and(|v| v.starts_with("kept-")),
            "end-to-end header lost: {r:?}"
        );
        let i = r
            .header("x-normal")
            .and_then(|v| v.strip_prefix("kept-"))
            .unwrap_or_default();
        assert_eq!(
            r.body_len,
            format!("{{\"n\":{i}}}").len() as u64,
            "the replayed body differs: {r:?}"
        );
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "proxy-authorization",
            "te",
            "trailer",
            "upgrade",
            "x-hop-nominated",
            "transfer-encoding",
        ] {
            assert!(
                r.header(name).is_none(),
                "hop-by-hop header {name:?} was replayed: {r:?}"
            );
        }
        assert_ne!(r.header("x-failover-cluster"), Some("stranger"), "{r:?}");
    }
    // The router's own attempt (to `a`) is the host's forwarding, which follows Envoy: it
    // drops the connection-level headers Envoy drops (and those `Connection` nominates), and
    // forwards `te: trailers`, `trailer` and `proxy-authorization` (Envoy does not strip them).
    for r in a.requests() {
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "upgrade",
            "x-hop-nominated",
        ] {
            assert!(
                r.header(name).is_none(),
                "hop-by-hop header {name:?} forwarded by the router: {r:?}"
            );
        }
    }
}
