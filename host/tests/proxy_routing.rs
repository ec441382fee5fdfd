//! The proxy end to end without a Wasm filter: routing by prefix, `cluster_header`, keep-alive
//! pools, hop-by-hop headers, and Envoy's local replies as the client sees them.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::Duration;

use failover_host::bootstrap::{parse, LoadOptions};
use failover_host::server::{ServeOptions, Server};
use failover_testkit::send::wire::{get, header, http};
use failover_testkit::upstream::{closed_port, raw as upstream};
use failover_testkit::{BootstrapBuilder, Cluster, Listener, Route};

fn start(yaml: &str) -> (Server, SocketAddr) {
    let b = parse("test.yaml".as_ref(), yaml, &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let server = Server::start(
        b,
        ServeOptions {
            concurrency: 2,
            state_file: None,
            drain_time: Duration::from_secs(1),
        },
    )
    .expect("start");
    let addr = server.listener_addrs()[0].1;
    (server, addr)
}

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[test]
fn routes_by_prefix_and_by_cluster_header() {
    let (a, _) = upstream("alpha");
    let (b, _) = upstream("beta");
    let yaml = BootstrapBuilder::new()
        .listener(
            Listener::new("test", any())
                .route(Route::to_cluster("/fixed", "alpha").timeout("5s"))
                .route(Route::by_header("/", "x-pick").timeout("5s")),
        )
        .cluster(Cluster::new("alpha", &[a]))
        .cluster(Cluster::new("beta", &[b]))
        .to_yaml();
    let (server, addr) = start(&yaml);

    let (status, headers, body) = get(addr, "/fixed/x?q=1", "");
    assert_eq!(status, 200);
    assert_eq!(body, "alpha /fixed/x?q=1 ");
    assert_eq!(header(&headers, "x-upstream"), Some("alpha"));

    let (status, _, body) = get(addr, "/other", "x-pick: beta\r\n");
    assert_eq!((status, body.as_str()), (200, "beta /other "));

    // cluster_header missing or naming an unknown cluster: Envoy's 503 cluster_not_found, empty body.
    let (status, _, body) = get(addr, "/other", "");
    assert_eq!((status, body.as_str()), (503, ""));
    let (status, _, _) = get(addr, "/other", "x-pick: nope\r\n");
    assert_eq!(status, 503);
    server.shutdown();
}

#[test]
fn no_matching_route_is_404() {
    let (a, _) = upstream("alpha");
    let yaml = BootstrapBuilder::new()
        .listener(
            Listener::new("test", any()).route(Route::to_cluster("/only", "alpha").timeout("5s")),
        )
        .cluster(Cluster::new("alpha", &[a]))
        .to_yaml();
    let (server, addr) = start(&yaml);
    let (status, _, body) = get(addr, "/elsewhere", "");
    assert_eq!((status, body.as_str()), (404, ""));
    server.shutdown();
}

#[test]
fn keep_alive_reuses_upstream_connections_and_strips_hop_by_hop_headers() {
    let (a, seen) = upstream("alpha");
    let yaml = BootstrapBuilder::one_route(any(), "alpha", &[("alpha", a)]).to_yaml();
    let (server, addr) = start(&yaml);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for i in 0..5 {
        let req = format!("POST /k{i} HTTP/1.1\r\nhost: test\r\nconnection: keep-alive, x-secret\r\nx-secret: 1\r\ncontent-length: 2\r\n\r\nhi");
        let (status, headers, body) = http(&mut s, &req).expect("answer on the same connection");
        assert_eq!(status, 200);
        assert_eq!(body, format!("alpha /k{i} hi"));
        // The upstream's keep-alive header is connection-scoped: not forwarded.
        assert_eq!(header(&headers, "keep-alive"), None);
    }
    // One downstream connection on one worker → one pooled upstream connection.
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
    let heads = seen.heads.lock().unwrap().clone();
    for h in &heads {
        let lower = h.to_ascii_lowercase();
        assert!(
            !lower.contains("x-secret"),
            "hop-by-hop header forwarded: {h}"
        );
        assert!(lower.contains("x-forwarded-proto: http"), "{h}");
        assert!(lower.contains("x-request-id:"), "{h}");
        assert!(
            lower.contains("host: test"),
            "Host must be the client's: {h}"
        );
    }
    server.shutdown();
}

#[test]
fn round_robin_over_endpoints() {
    let (a, seen_a) = upstream("one");
    let (b, seen_b) = upstream("two");
    let yaml = BootstrapBuilder::new()
        .listener(Listener::new("test", any()).route(Route::to_cluster("/", "both").timeout("5s")))
        .cluster(Cluster::new("both", &[a, b]))
        .to_yaml();
    let (server, addr) = start(&yaml);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut names = Vec::new();
    for _ in 0..4 {
        let (_, headers, _) = http(&mut s, "GET / HTTP/1.1\r\nhost: test\r\n\r\n").unwrap();
        names.push(header(&headers, "x-upstream").unwrap_or("?").to_string());
    }
    assert_eq!(seen_a.heads.lock().unwrap().len(), 2, "{names:?}");
    assert_eq!(seen_b.heads.lock().unwrap().len(), 2, "{names:?}");
    assert_ne!(names[0], names[1]);
    server.shutdown();
}

#[test]
fn upstream_failures_become_envoys_local_replies() {
    let (a, _) = upstream("alpha");
    let dead = closed_port();
    let yaml = BootstrapBuilder::new()
        .listener(
            Listener::new("test", any())
                .route(Route::to_cluster("/dead", "dead").timeout("5s"))
                .route(Route::to_cluster("/empty", "empty").timeout("5s"))
                .route(Route::to_cluster("/", "alpha").timeout("0.3s")),
        )
        .cluster(Cluster::new("alpha", &[a]))
        .cluster(Cluster::new("dead", &[dead]))
        .cluster(Cluster::new("empty", &[]))
        .to_yaml();
    let (server, addr) = start(&yaml);

    let (status, _, body) = get(addr, "/hang", "");
    assert_eq!((status, body.as_str()), (504, "upstream request timeout"));

    let (status, _, body) = get(addr, "/dead", "");
    assert_eq!(status, 503);
    assert!(body.starts_with("upstream connect error or disconnect/reset before headers. reset reason: connection failure"), "{body}");

    let (status, _, body) = get(addr, "/reset", "");
    assert_eq!(status, 503);
    assert!(
        body.ends_with("reset reason: connection termination"),
        "{body}"
    );

    let (status, _, body) = get(addr, "/empty", "");
    assert_eq!((status, body.as_str()), (503, "no healthy upstream"));

    // After all that, the healthy path still works.
    let (status, _, _) = get(addr, "/fine", "");
    assert_eq!(status, 200);
    server.shutdown();
}

#[test]
fn dns_cluster_with_auto_host_rewrite_sends_the_dns_name_as_host() {
    // The upstream's Host header and request target come from what the cluster resolved: the
    // DNS name with auto_host_rewrite, the client's Host otherwise (built once per resolved host).
    let (a, seen) = upstream("alpha");
    let yaml = BootstrapBuilder::new()
        .listener(Listener::new("test", any()).route(Route::to_cluster("/", "alpha").timeout("5s")))
        .cluster(Cluster::new("alpha", &[a]))
        .to_yaml()
        .replace("type: STATIC", "type: STRICT_DNS")
        .replace(
            &format!("address: \"127.0.0.1\", port_value: {}", a.port()),
            &format!("address: \"localhost\", port_value: {}", a.port()),
        )
        .replace(
            "route: { cluster: alpha",
            "route: { auto_host_rewrite: true, cluster: alpha",
        );
    assert!(
        yaml.contains("\"localhost\"") && yaml.contains("auto_host_rewrite"),
        "{yaml}"
    );
    let (server, addr) = start(&yaml);
    // STRICT_DNS resolves in the background: wait, bounded, for the first answer from alpha.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (status, _, body) = get(addr, "/x", "");
        if status == 200 || std::time::Instant::now() > deadline {
            assert_eq!(status, 200, "{body}");
            break body;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(body, "alpha /x ");
    let heads = seen.heads.lock().unwrap().clone();
    let last = heads.last().expect("alpha saw the request");
    let host = last
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("host:")
                .map(|v| v.trim().to_string())
        })
        .expect("a host header");
    assert_eq!(host, "localhost", "{last}");
    assert!(last.starts_with("GET /x HTTP/1.1"), "{last}");
    server.shutdown();
}
