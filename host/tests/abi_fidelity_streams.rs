//! Rules of `envoy/FIDELITY.md` about a request's stream, each checked against what Envoy
//! (proxy-wasm-cpp-host + `source/extensions/common/wasm/`) does:
//!
//! - HTTP calls belong to the root context: the answer arrives there, also after the stream
//!   that dispatched it ended (H5);
//! - a Pause from a headers callback holds back that direction's body callbacks until the
//!   stream is continued (C4, H7);
//! - `send_http_response` after the response started resets the stream (H8);
//! - routing sees the headers the filters left (H1);
//! - callbacks a module does not export count as Continue / done / nothing to do (L17).

#[path = "wat/common.rs"]
mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use failover_host::stream::{run_filter_chain, Body, BoxError, UpstreamInfo};
use failover_host::vm::{CallError, CallRequest, CallResponse, ClusterManager, HostShared};
use http_body_util::{BodyExt, Full, StreamBody};

// ===== HTTP calls belong to the root context (H5) =====

/// Clusters whose calls answer 200 only once the test opens the gate.
struct GatedClusters {
    gate: Rc<tokio::sync::Notify>,
    started: Cell<usize>,
}

impl GatedClusters {
    fn new() -> Rc<Self> {
        Rc::new(Self {
            gate: Rc::new(tokio::sync::Notify::new()),
            started: Cell::new(0),
        })
    }
}

impl ClusterManager for GatedClusters {
    fn has_cluster(&self, name: &str) -> bool {
        name == "c1"
    }
    fn call(
        &self,
        _cluster: &str,
        _request: CallRequest,
        _timeout: Option<Duration>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<CallResponse, CallError>>>> {
        self.started.set(self.started.get() + 1);
        let gate = self.gate.clone();
        Box::pin(async move {
            gate.notified().await;
            Ok(CallResponse {
                headers: vec![(":status".into(), b"200".to_vec())],
                body: Bytes::from("late"),
                trailers: vec![],
            })
        })
    }
}

fn full(b: &'static str) -> Body {
    Full::new(Bytes::from(b))
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn chunked(chunks: [&'static str; 3]) -> Body {
    let frames = chunks.map(|c| Ok::<_, BoxError>(http_body::Frame::data(Bytes::from(c))));
    StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
}

fn request(body: Body) -> http::Request<Body> {
    http::Request::builder()
        .method("POST")
        .uri("/x")
        .header("host", "front")
        .body(body)
        .unwrap()
}

fn upstream(body: Body) -> http::Response<Body> {
    let mut resp = http::Response::builder().status(200).body(body).unwrap();
    resp.extensions_mut().insert(UpstreamInfo {
        code_details: "via_upstream".into(),
        ..Default::default()
    });
    resp
}

/// Lets every ready task on the LocalSet run (a host that wrongly delivers something while
/// the test waits gets every chance to do it).
async fn settle() {
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
}

fn root_call_module() -> Vec<u8> {
    let h = call_headers();
    module(&format!(
        r#"
        (global $m_answers (mut i32) (i32.const 0))
        (global $m_ctx (mut i32) (i32.const 0))
        (global $m_delete (mut i32) (i32.const 0))
        (data (i32.const 0) "answersanswer_ctxdeletec1")
        (data (i32.const 200) "{h}")
        (func (export "proxy_on_configure") (param i32 i32) (result i32)
          (drop (call $define_metric (i32.const 0) (i32.const 0) (i32.const 7) (i32.const 3000)))
          (global.set $m_answers (i32.load (i32.const 3000)))
          (drop (call $define_metric (i32.const 1) (i32.const 7) (i32.const 10) (i32.const 3000)))
          (global.set $m_ctx (i32.load (i32.const 3000)))
          (drop (call $define_metric (i32.const 0) (i32.const 17) (i32.const 6) (i32.const 3000)))
          (global.set $m_delete (i32.load (i32.const 3000)))
          (i32.const 1))
        (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
          (call $expect (call $http_call (i32.const 23) (i32.const 2) (i32.const 200) (i32.const {hlen}) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 2000)) (i32.const 0) (i32.const 0))
          (i32.const 0))
        (func (export "proxy_on_delete") (param i32)
          (drop (call $increment_metric (global.get $m_delete) (i64.const 1))))
        (func (export "proxy_on_http_call_response") (param $ctx i32) (param i32 i32 i32 i32)
          (drop (call $record_metric (global.get $m_ctx) (i64.extend_i32_u (local.get $ctx))))
          (drop (call $increment_metric (global.get $m_answers) (i64.const 1))))
        "#,
        h = wat_bytes(&h),
        hlen = h.len(),
    ))
}

#[tokio::test(flavor = "current_thread")]
async fn http_call_answer_arrives_on_the_root_context_after_the_stream_ended() {
    init_logs();
    tokio::task::LocalSet::new()
        .run_until(async {
            let shared = HostShared::new().unwrap();
            let clusters = GatedClusters::new();
            let vm = match start(
                &shared,
                &spec("p", "vm", root_call_module()),
                clusters.clone(),
            ) {
                Ok(vm) => vm,
                Err(e) => panic!("{e}"),
            };
            let resp = run_filter_chain(
                std::slice::from_ref(&vm),
                downstream(),
                request(full("")),
                |_| async { upstream(full("ok")) },
            )
            .await;
            let _ = resp.into_body().collect().await;
            assert!(
                eventually(|| metric(&shared, "delete") == 1).await,
                "the stream ended"
            );
            assert_eq!(clusters.started.get(), 1, "the call was started");
            clusters.gate.notify_one();
            assert!(
                eventually(|| metric(&shared, "answers") == 1).await,
                "the answer still arrives: the call belongs to the root context"
            );
            assert_eq!(
                metric(&shared, "answer_ctx"),
                1,
                "delivered on the root context (id 1)"
            );
            drop(vm);
        })
        .await;
}

// ===== Pause from a headers callback holds the body back (C4) =====

/// Mode (configuration length) 1: pause at request headers; 2: at response headers. The pause
/// ends when the HTTP call's answer arrives (the test opens the gate). Body callbacks count
/// into `body_calls`, and into `body_while_paused` when the headers are still held.
fn pause_module() -> Vec<u8> {
    let h = call_headers();
    module(&format!(
        r#"
        (global $mode (mut i32) (i32.const 0))
        (global $paused (mut i32) (i32.const 0))
        (global $stream (mut i32) (i32.const 0))
        (global $m_calls (mut i32) (i32.const 0))
        (global $m_paused (mut i32) (i32.const 0))
        (data (i32.const 0) "body_callsbody_while_pausedc1")
        (data (i32.const 200) "{h}")
        (func (export "proxy_on_configure") (param i32) (param $size i32) (result i32)
          (global.set $mode (local.get $size))
          (drop (call $define_metric (i32.const 0) (i32.const 0) (i32.const 10) (i32.const 3000)))
          (global.set $m_calls (i32.load (i32.const 3000)))
          (drop (call $define_metric (i32.const 0) (i32.const 10) (i32.const 17) (i32.const 3000)))
          (global.set $m_paused (i32.load (i32.const 3000)))
          (i32.const 1))
        (func $pause (param $ctx i32) (result i32)
          (global.set $stream (local.get $ctx))
          (global.set $paused (i32.const 1))
          (call $expect (call $http_call (i32.const 27) (i32.const 2) (i32.const 200) (i32.const {hlen}) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 2000)) (i32.const 0) (i32.const 0))
          (i32.const 1))
        (func $body (result i32)
          (drop (call $increment_metric (global.get $m_calls) (i64.const 1)))
          (if (global.get $paused)
            (then (drop (call $increment_metric (global.get $m_paused) (i64.const 1)))))
          (i32.const 0))
        (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
          (if (result i32) (i32.eq (global.get $mode) (i32.const 1))
            (then (call $pause (local.get $ctx))) (else (i32.const 0))))
        (func (export "proxy_on_response_headers") (param $ctx i32) (param i32 i32) (result i32)
          (if (result i32) (i32.eq (global.get $mode) (i32.const 2))
            (then (call $pause (local.get $ctx))) (else (i32.const 0))))
        (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
          (if (result i32) (i32.eq (global.get $mode) (i32.const 1))
            (then (call $body)) (else (i32.const 0))))
        (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32)
          (if (result i32) (i32.eq (global.get $mode) (i32.const 2))
            (then (call $body)) (else (i32.const 0))))
        (func (export "proxy_on_http_call_response") (param i32 i32 i32 i32 i32)
          (call $expect (call $set_effective (global.get $stream)) (i32.const 0) (i32.const 1))
          (global.set $paused (i32.const 0))
          ;; continue_stream: 0 = request, 1 = response
          (call $expect (call $continue_stream (i32.sub (global.get $mode) (i32.const 1))) (i32.const 0) (i32.const 2)))
        "#,
        h = wat_bytes(&h),
        hlen = h.len(),
    ))
}

async fn paused_headers_hold_the_body(mode: usize) {
    let shared = HostShared::new().unwrap();
    let clusters = GatedClusters::new();
    let mut s = spec("pause", "vm", pause_module());
    s.configuration = vec![b'm'; mode];
    let vm = match start(&shared, &s, clusters.clone()) {
        Ok(vm) => vm,
        Err(e) => panic!("{e}"),
    };
    let req_body = if mode == 1 {
        chunked(["aaa", "bbb", "ccc"])
    } else {
        full("")
    };
    let chain = tokio::task::spawn_local(async move {
        let resp = run_filter_chain(
            &[vm],
            downstream(),
            request(req_body),
            move |req| async move {
                let got = req.into_body().collect().await.unwrap().to_bytes();
                assert!(mode != 1 || &got[..] == b"aaabbbccc", "router got {got:?}");
                upstream(if mode == 2 {
                    chunked(["xxx", "yyy", "zzz"])
                } else {
                    full("ok")
                })
            },
        )
        .await;
        resp.into_body().collect().await.unwrap().to_bytes()
    });
    assert!(
        eventually(|| clusters.started.get() == 1).await,
        "the headers callback paused and dispatched its call"
    );
    settle().await;
    assert_eq!(
        metric(&shared, "body_calls"),
        0,
        "no body callback while the headers are paused (StopAllIterationAndWatermark)"
    );
    clusters.gate.notify_one();
    let body = match tokio::time::timeout(Duration::from_secs(10), chain).await {
        Ok(Ok(b)) => b,
        other => panic!("the stream did not finish after the resume: {other:?}"),
    };
    if mode == 2 {
        assert_eq!(&body[..], b"xxxyyyzzz");
    } else {
        assert_eq!(&body[..], b"ok");
    }
    assert!(
        metric(&shared, "body_calls") >= 1,
        "the body flows after the resume"
    );
    assert_eq!(metric(&shared, "body_while_paused"), 0);
}

#[tokio::test(flavor = "current_thread")]
async fn pause_at_request_headers_holds_request_body_callbacks() {
    init_logs();
    tokio::task::LocalSet::new()
        .run_until(paused_headers_hold_the_body(1))
        .await;
}

#[tokio::test(flavor = "current_thread")]
async fn pause_at_response_headers_holds_response_body_callbacks() {
    init_logs();
    tokio::task::LocalSet::new()
        .run_until(paused_headers_hold_the_body(2))
        .await;
}

// ===== send_http_response after the response started (H8) =====

#[tokio::test(flavor = "current_thread")]
async fn send_http_response_after_response_headers_went_downstream_resets_the_stream() {
    init_logs();
    let wasm = module(
        r#"
        (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32)
          (drop (call $send_local (i32.const 500) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const -1)))
          (i32.const 0))
        "#,
    );
    tokio::task::LocalSet::new()
        .run_until(async {
            let shared = HostShared::new().unwrap();
            let vm = match start(&shared, &spec("p", "vm", wasm), FakeClusters::none()) {
                Ok(vm) => vm,
                Err(e) => panic!("{e}"),
            };
            let resp = run_filter_chain(&[vm], downstream(), request(full("")), |_| async {
                upstream(chunked(["a", "b", "c"]))
            })
            .await;
            assert_eq!(
                resp.status(),
                200,
                "the upstream's headers already went out"
            );
            let body = resp.into_body().collect().await;
            assert!(
                body.is_err(),
                "all Envoy can do now is reset the stream: {:?}",
                body.map(|b| b.to_bytes())
            );
        })
        .await;
}

// ===== routing sees the headers the filters left (H1) =====

#[tokio::test(flavor = "current_thread")]
async fn a_header_set_in_on_request_headers_reaches_the_router() {
    // Envoy clears the route cache after a 0.2.1 module changes request headers, so a
    // `cluster_header` route sees the new value; the host routes after the filters ran.
    init_logs();
    let wasm = module(
        r#"
        (data (i32.const 0) "x-pickbeta")
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (call $expect (call $replace_header (i32.const 0) (i32.const 0) (i32.const 6) (i32.const 6) (i32.const 4)) (i32.const 0) (i32.const 0))
          (i32.const 0))
        "#,
    );
    tokio::task::LocalSet::new()
        .run_until(async {
            let shared = HostShared::new().unwrap();
            let vm = match start(&shared, &spec("p", "vm", wasm), FakeClusters::none()) {
                Ok(vm) => vm,
                Err(e) => panic!("{e}"),
            };
            let mut req = request(full(""));
            req.headers_mut()
                .insert("x-pick", http::HeaderValue::from_static("alpha"));
            let seen = Rc::new(std::cell::RefCell::new(None));
            let s = seen.clone();
            let resp = run_filter_chain(&[vm], downstream(), req, move |req| async move {
                *s.borrow_mut() = req.headers().get("x-pick").cloned();
                upstream(full("ok"))
            })
            .await;
            let _ = resp.into_body().collect().await;
            assert_eq!(
                seen.borrow().as_ref().and_then(|v| v.to_str().ok()),
                Some("beta")
            );
        })
        .await;
}

// ===== callbacks a module does not export (L17) =====

#[tokio::test(flavor = "current_thread")]
async fn callbacks_a_module_does_not_export_count_as_continue_and_done() {
    // cpp-host looks every callback up once and treats a missing one as having nothing to do:
    // no `proxy_on_vm_start`/`proxy_on_configure` → started and configured, no body or trailers
    // callback → Continue, no `proxy_on_done` → done, no `proxy_on_log`/`proxy_on_delete` →
    // skipped. A module exporting only its header callbacks must serve stream after stream.
    init_logs();
    let wasm = module(
        r#"
        (data (i32.const 0) "headers")
        (func $count
          (drop (call $define_metric (i32.const 0) (i32.const 0) (i32.const 7) (i32.const 3000)))
          (drop (call $increment_metric (i32.load (i32.const 3000)) (i64.const 1))))
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (call $count)
          (i32.const 0))
        (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
          (call $count)
          (i32.const 0))
        "#,
    );
    tokio::task::LocalSet::new()
        .run_until(async {
            let shared = HostShared::new().unwrap();
            let vm = match start(&shared, &spec("p", "vm", wasm), FakeClusters::none()) {
                Ok(vm) => vm,
                Err(e) => panic!("a module without vm_start/configure starts: {e}"),
            };
            for round in 1..=3 {
                let resp = run_filter_chain(
                    std::slice::from_ref(&vm),
                    downstream(),
                    request(chunked(["aaa", "bbb", "ccc"])),
                    |req| async move {
                        let got = req.into_body().collect().await.unwrap().to_bytes();
                        assert_eq!(&got[..], b"aaabbbccc", "the request body passed on");
                        upstream(chunked(["x", "y", "z"]))
                    },
                )
                .await;
                assert_eq!(resp.status(), 200);
                let body = resp.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(&body[..], b"xyz", "the response body passed on");
                assert_eq!(
                    metric(&shared, "headers"),
                    2 * round,
                    "both header callbacks ran"
                );
            }
        })
        .await;
}
