//! What the router attaches to each response for the filters: Envoy's response flags and code
//! details (`UpstreamInfo`), checked on `Router::forward` directly on a worker-like LocalSet.

use std::net::SocketAddr;
use std::rc::Rc;

use bytes::Bytes;
use failover_host::body::full;
use failover_host::bootstrap::{parse, LoadOptions};
use failover_host::proxy::{flags, Clusters, Router};
use failover_host::stream::UpstreamInfo;
use failover_testkit::upstream::{closed_port, raw as upstream};
use failover_testkit::{BootstrapBuilder, Cluster, Listener, Route};

fn forward_all(yaml: &str, requests: &[(&str, &[(&str, &str)])]) -> Vec<(u16, UpstreamInfo)> {
    let b = parse("test.yaml".as_ref(), yaml, &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let clusters = Clusters::new(&b.clusters).unwrap();
        let router = Router::new(&b.listeners[0], clusters);
        let mut out = Vec::new();
        for (path, headers) in requests {
            let mut req = http::Request::get(*path).header("host", "test");
            for (k, v) in *headers {
                req = req.header(*k, *v);
            }
            let resp = router.forward(req.body(full(Bytes::new())).unwrap()).await;
            let info = resp
                .extensions()
                .get::<UpstreamInfo>()
                .cloned()
                .expect("every response carries UpstreamInfo");
            out.push((resp.status().as_u16(), info));
        }
        out
    })
}

#[test]
fn flags_and_code_details_match_envoy() {
    let (a, _) = upstream("alpha");
    let dead = closed_port();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let yaml = BootstrapBuilder::new()
        .listener(
            Listener::new("test", any)
                .route(Route::to_cluster("/dead", "dead").timeout("5s"))
                .route(Route::to_cluster("/empty", "empty").timeout("5s"))
                .route(Route::by_header("/pick", "x-pick").timeout("5s"))
                .route(Route::to_cluster("/", "alpha").timeout("0.3s")),
        )
        .cluster(Cluster::new("alpha", &[a]))
        .cluster(Cluster::new("dead", &[dead]))
        .cluster(Cluster::new("empty", &[]))
        .to_yaml();
    let results = forward_all(
        &yaml,
        &[
            ("/ok", &[]),
            ("/hang", &[]),
            ("/dead", &[]),
            ("/reset", &[]),
            ("/garbage", &[]),
            ("/empty", &[]),
            ("/pick", &[]),
            ("/pick", &[("x-pick", "alpha")]),
        ],
    );
    let expect: [(u16, u64, &str); 8] = [
        (200, 0, "via_upstream"),
        (504, flags::UPSTREAM_REQUEST_TIMEOUT, "response_timeout"),
        (
            503,
            flags::UPSTREAM_CONNECTION_FAILURE,
            "upstream_reset_before_response_started{connection_failure,delayed_connect_error:_111}",
        ),
        (
            503,
            flags::UPSTREAM_CONNECTION_TERMINATION,
            "upstream_reset_before_response_started{connection_termination}",
        ),
        (
            503,
            flags::UPSTREAM_PROTOCOL_ERROR,
            "upstream_reset_before_response_started{protocol_error}",
        ),
        (503, flags::NO_HEALTHY_UPSTREAM, "no_healthy_upstream"),
        (503, flags::NO_CLUSTER_FOUND, "cluster_not_found"),
        (200, 0, "via_upstream"),
    ];
    for (i, ((status, info), (es, ef, ed))) in results.iter().zip(expect).enumerate() {
        assert_eq!(
            (*status, info.response_flags, info.code_details.as_str()),
            (es, ef, ed),
            "request {i}: {info:?}"
        );
    }
    // Where the request went is reported too.
    assert_eq!(results[0].1.upstream_address, Some(a));
    assert_eq!(results[0].1.cluster_name.as_deref(), Some("alpha"));
    assert_eq!(results[2].1.upstream_address, Some(dead));
    assert_eq!(results[7].1.cluster_name.as_deref(), Some("alpha"));
    assert_eq!(results[0].1.route_name.as_deref(), Some("test_routes"));
}

#[test]
fn no_route_is_nr_404() {
    let (a, _) = upstream("alpha");
    let yaml = BootstrapBuilder::new()
        .listener(
            Listener::new("test", "127.0.0.1:0".parse().unwrap())
                .route(Route::to_cluster("/only", "alpha").timeout("5s")),
        )
        .cluster(Cluster::new("alpha", &[a]))
        .to_yaml();
    let results = forward_all(&yaml, &[("/nope", &[])]);
    assert_eq!(results[0].0, 404);
    assert_eq!(results[0].1.response_flags, flags::NO_ROUTE_FOUND);
    assert_eq!(results[0].1.code_details, "route_not_found");
}

#[test]
fn dispatch_http_call_goes_through_the_cluster() {
    use failover_host::vm::{CallRequest, ClusterManager};
    let (a, seen) = upstream("alpha");
    let yaml =
        BootstrapBuilder::one_route("127.0.0.1:0".parse().unwrap(), "alpha", &[("alpha", a)])
            .to_yaml();
    let b = parse("test.yaml".as_ref(), &yaml, &LoadOptions::default()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    let (ok, unknown) = local.block_on(&rt, async {
        let clusters: Rc<Clusters> = Clusters::new(&b.clusters).unwrap();
        assert!(clusters.has_cluster("alpha") && !clusters.has_cluster("beta"));
        let req = CallRequest {
            headers: vec![
                (":method".into(), b"POST".to_vec()),
                (":path".into(), b"/probe".to_vec()),
                (":authority".into(), b"api.example".to_vec()),
                ("x-check".into(), b"1".to_vec()),
            ],
            body: Bytes::from_static(b"ping"),
            trailers: vec![],
        };
        let ok = clusters
            .call("alpha", req, Some(std::time::Duration::from_secs(5)))
            .await;
        let unknown = clusters.call("beta", CallRequest::default(), None).await;
        (ok, unknown)
    });
    let resp = ok.expect("answer");
    assert!(
        resp.headers
            .contains(&(":status".to_string(), b"200".to_vec())),
        "{:?}",
        resp.headers
    );
    assert_eq!(&resp.body[..], b"alpha /probe ping");
    assert!(unknown.is_err());
    let head = seen.heads.lock().unwrap()[0].to_ascii_lowercase();
    assert!(head.starts_with("post /probe http/1.1"), "{head}");
    assert!(
        head.contains("host: api.example") && head.contains("x-check: 1"),
        "{head}"
    );
}
