//! HTTP calls and the filter-chain driver with a WAT plugin: callbacks never re-enter the
//! module (an HTTP call answered at once still arrives after the dispatching call returned),
//! local replies, pause/resume at response headers, body buffering, response properties, and
//! on_log/on_delete always.

#[path = "wat/common.rs"]
mod common;

use std::cell::Cell;
use std::rc::Rc;

use bytes::Bytes;
use common::*;
use failover_host::stream::{run_filter_chain, Body, UpstreamInfo};
use failover_host::vm::{CallError, CallResponse, HostShared, PluginVm};
use http_body_util::{BodyExt, Full, StreamBody};

fn full(b: &'static str) -> Body {
    Full::new(Bytes::from(b))
        .map_err(|never| match never {})
        .boxed_unsync()
}

// ===== dispatch_http_call: no re-entrancy, response readable in the callback =====

fn dispatch_module() -> Vec<u8> {
    let headers = encode_map(&[(":method", "GET"), (":path", "/ping"), (":authority", "c1")]);
    module(&format!(
        r#"
 (global $in_configure (mut i32) (i32.const 0))
 (data (i32.const 0) "c1c2:statusdeliveredokbad")
 (data (i32.const 200) "{headers}")
 (func (export "proxy_on_configure") (param $ctx i32) (param $size i32) (result i32)
   (global.set $in_configure (i32.const 1))
   (call $expect (call $http_call (i32.const 0) (i32.const 2) (i32.const 200) (i32.const {hlen}) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 2000)) (i32.const 0) (i32.const 0))
   (call $expect (i32.load (i32.const 2000)) (i32.const 1) (i32.const 1))
   (call $expect (call $http_call (i32.const 2) (i32.const 2) (i32.const 200) (i32.const {hlen}) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 2000)) (i32.const 0) (i32.const 2))
   (global.set $in_configure (i32.const 0))
   (i32.eqz (global.get $failed)))
 (func (export "proxy_on_http_call_response") (param $ctx i32) (param $token i32) (param $nh i32) (param $bs i32) (param $nt i32)
   ;; Delivered only after on_configure returned.
   (call $expect (global.get $in_configure) (i32.const 0) (i32.const 3))
   (if (i32.eq (local.get $token) (i32.const 1))
     (then
       (call $expect (local.get $nh) (i32.const 1) (i32.const 4))
       (call $expect (local.get $bs) (i32.const 4) (i32.const 5))
       (call $expect (call $get_header (i32.const 6) (i32.const 4) (i32.const 7) (i32.const 2100) (i32.const 2104)) (i32.const 0) (i32.const 6))
       (call $expect (i32.load (i32.const 2104)) (i32.const 3) (i32.const 7))
       (call $expect (call $get_buffer (i32.const 4) (i32.const 0) (local.get $bs) (i32.const 2100) (i32.const 2104)) (i32.const 0) (i32.const 8))
       ;; "pong"
       (call $expect (i32.load (i32.load (i32.const 2100))) (i32.const 0x676e6f70) (i32.const 9)))
     (else
       ;; The failed call: 0 headers, nothing to read.
       (call $expect (local.get $nh) (i32.const 0) (i32.const 10))
       (call $expect (call $get_buffer (i32.const 4) (i32.const 0) (i32.const 10) (i32.const 2100) (i32.const 2104)) (i32.const 1) (i32.const 11))))
   ;; key "delivered" (9) + token digit; value ok/bad
   (i32.store8 (i32.const 100) (i32.const 0x64))
   (i32.store8 (i32.const 101) (i32.add (i32.const 48) (local.get $token)))
   (drop (call $set_shared (i32.const 100) (i32.const 2)
     (select (i32.const 22) (i32.const 20) (global.get $failed)) (select (i32.const 3) (i32.const 2) (global.get $failed))
     (i32.const 0))))
"#,
        headers = wat_bytes(&headers),
        hlen = headers.len(),
    ))
}

#[tokio::test(flavor = "current_thread")]
async fn http_call_answered_at_once_is_delivered_after_the_call_returns() {
    init_logs();
    tokio::task::LocalSet::new()
        .run_until(async {
            let shared = HostShared::new().unwrap();
            let clusters = FakeClusters::new(&["c1", "c2"], |cluster, req| {
                assert!(req
                    .headers
                    .iter()
                    .any(|(n, v)| n == ":path" && v == b"/ping"));
                if cluster == "c1" {
                    Ok(CallResponse {
                        headers: vec![(":status".into(), b"200".to_vec())],
                        body: Bytes::from("pong"),
                        trailers: vec![],
                    })
                } else {
                    Err(CallError::ConnectFailure("refused".into()))
                }
            });
            let vm = match start(
                &shared,
                &spec("p", "vm", dispatch_module()),
                clusters.clone(),
            ) {
                Ok(vm) => vm,
                Err(e) => panic!("{e}"),
            };
            let sd = shared.shared_data().clone();
            assert!(
                eventually(|| sd.get("vm", "d1").is_ok() && sd.get("vm", "d2").is_ok()).await,
                "both answers delivered"
            );
            assert_eq!(sd.get("vm", "d1").unwrap().0, b"ok");
            assert_eq!(sd.get("vm", "d2").unwrap().0, b"ok");
            assert_eq!(clusters.calls.borrow().len(), 2);
            drop(vm);
        })
        .await;
}

// ===== the filter chain =====

/// Mode = length of the plugin configuration: 0 pass-through, 1 local reply at request
/// headers, 2 pause at response headers + replace with an HTTP call's answer, 3 pause + resume,
/// 4 buffer the request body and prepend "X", 5 hold request and response headers with
/// StopIteration (the chain allows it) until the body: the request's whole body, the
/// response's first chunk.
fn chain_module() -> Vec<u8> {
    let headers = encode_map(&[
        (":method", "GET"),
        (":path", "/spare"),
        (":authority", "c1"),
    ]);
    let reply_headers = encode_map(&[("x-why", "test")]);
    module(&format!(
        r#"
 (global $mode (mut i32) (i32.const 0))
 (global $m_resp (mut i32) (i32.const 0))
 (global $m_log (mut i32) (i32.const 0))
 (global $m_delete (mut i32) (i32.const 0))
 (global $m_body_calls (mut i32) (i32.const 0))
 (global $m_body_size (mut i32) (i32.const 0))
 (global $stream (mut i32) (i32.const 0))
 (data (i32.const 0) "resp_headers")
 (data (i32.const 12) "log")
 (data (i32.const 16) "delete")
 (data (i32.const 24) "body_calls")
 (data (i32.const 36) "body_size")
 (data (i32.const 48) "denied")
 (data (i32.const 56) "response\00code")
 (data (i32.const 72) "response\00flags")
 (data (i32.const 88) "c1")
 (data (i32.const 92) "X")
 (data (i32.const 200) "{headers}")
 (data (i32.const 400) "{reply_headers}")
 (func $define (param $kind i32) (param $ptr i32) (param $len i32) (result i32)
   (drop (call $define_metric (local.get $kind) (local.get $ptr) (local.get $len) (i32.const 3000)))
   (i32.load (i32.const 3000)))
 (func $inc (param $id i32) (drop (call $increment_metric (local.get $id) (i64.const 1))))
 (func (export "proxy_on_configure") (param $ctx i32) (param $size i32) (result i32)
   (global.set $mode (local.get $size))
   (global.set $m_resp (call $define (i32.const 0) (i32.const 0) (i32.const 12)))
   (global.set $m_log (call $define (i32.const 0) (i32.const 12) (i32.const 3)))
   (global.set $m_delete (call $define (i32.const 0) (i32.const 16) (i32.const 6)))
   (global.set $m_body_calls (call $define (i32.const 0) (i32.const 24) (i32.const 10)))
   (global.set $m_body_size (call $define (i32.const 1) (i32.const 36) (i32.const 9)))
   (i32.const 1))
 (func (export "proxy_on_request_headers") (param $ctx i32) (param $n i32) (param $eos i32) (result i32)
   (if (i32.eq (global.get $mode) (i32.const 1))
     (then
       (drop (call $send_local (i32.const 403) (i32.const 0) (i32.const 0) (i32.const 48) (i32.const 6) (i32.const 400) (i32.const {rlen}) (i32.const -1)))
       (return (i32.const 1))))
   (if (i32.eq (global.get $mode) (i32.const 5)) (then (return (i32.const 1))))
   (i32.const 0))
 (func (export "proxy_on_request_body") (param $ctx i32) (param $size i32) (param $eos i32) (result i32)
   (call $inc (global.get $m_body_calls))
   (if (i32.eq (global.get $mode) (i32.const 4))
     (then
       (if (i32.eqz (local.get $eos)) (then (return (i32.const 1))))
       (drop (call $record_metric (global.get $m_body_size) (i64.extend_i32_u (local.get $size))))
       (drop (call $set_buffer (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 92) (i32.const 1)))))
   (if (i32.eq (global.get $mode) (i32.const 5))
     (then (if (i32.eqz (local.get $eos)) (then (return (i32.const 1))))))
   (i32.const 0))
 (func (export "proxy_on_response_body") (param $ctx i32) (param $size i32) (param $eos i32) (result i32)
   (i32.const 0))
 (func (export "proxy_on_response_headers") (param $ctx i32) (param $n i32) (param $eos i32) (result i32)
   (call $inc (global.get $m_resp))
   (if (i32.eq (global.get $mode) (i32.const 5)) (then (return (i32.const 1))))
   (if (i32.ge_u (global.get $mode) (i32.const 2))
     (then (if (i32.le_u (global.get $mode) (i32.const 3))
       (then
         (call $expect (call $get_property (i32.const 56) (i32.const 13) (i32.const 2000) (i32.const 2004)) (i32.const 0) (i32.const 0))
         (call $expect (i32.load (i32.const 2004)) (i32.const 8) (i32.const 1))
         (call $expect (i32.wrap_i64 (i64.load (i32.load (i32.const 2000)))) (i32.const 503) (i32.const 2))
         (call $expect (call $get_property (i32.const 72) (i32.const 14) (i32.const 2000) (i32.const 2004)) (i32.const 0) (i32.const 3))
         (call $expect (i32.wrap_i64 (i64.load (i32.load (i32.const 2000)))) (i32.const 0x20) (i32.const 4))
         (call $expect (call $http_call (i32.const 88) (i32.const 2) (i32.const 200) (i32.const {hlen}) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 2000)) (i32.const 0) (i32.const 5))
         (global.set $stream (local.get $ctx))
         (return (i32.const 1))))))
   (i32.const 0))
 (func (export "proxy_on_http_call_response") (param $ctx i32) (param $token i32) (param $nh i32) (param $bs i32) (param $nt i32)
   ;; Envoy delivers the answer on the root context; like the SDK, switch to the stream.
   (call $expect (local.get $ctx) (i32.const 1) (i32.const 6))
   (call $expect (call $set_effective (global.get $stream)) (i32.const 0) (i32.const 7))
   (if (i32.eq (global.get $mode) (i32.const 2))
     (then
       (drop (call $get_buffer (i32.const 4) (i32.const 0) (local.get $bs) (i32.const 2000) (i32.const 2004)))
       (drop (call $send_local (select (i32.const 500) (i32.const 200) (global.get $failed)) (i32.const 0) (i32.const 0) (i32.load (i32.const 2000)) (i32.load (i32.const 2004)) (i32.const 0) (i32.const 0) (i32.const -1))))
     (else (drop (call $continue_stream (i32.const 1))))))
 (func (export "proxy_on_log") (param $ctx i32) (call $inc (global.get $m_log)))
 (func (export "proxy_on_delete") (param $ctx i32) (call $inc (global.get $m_delete)))
"#,
        headers = wat_bytes(&headers),
        hlen = headers.len(),
        reply_headers = wat_bytes(&reply_headers),
        rlen = reply_headers.len(),
    ))
}

fn chain_vm(shared: &HostShared, mode: usize) -> Rc<PluginVm> {
    let mut s = spec("chain", "vm", chain_module());
    s.configuration = vec![b'm'; mode];
    s.allow_on_headers_stop_iteration = mode == 5;
    let clusters = FakeClusters::new(&["c1"], |_, _| {
        Ok(CallResponse {
            headers: vec![(":status".into(), b"200".to_vec())],
            body: Bytes::from("from spare"),
            trailers: vec![],
        })
    });
    match start(shared, &s, clusters) {
        Ok(vm) => vm,
        Err(e) => panic!("{e}"),
    }
}

fn request(body: Body) -> http::Request<Body> {
    http::Request::builder()
        .method("POST")
        .uri("/x")
        .header("host", "front")
        .body(body)
        .unwrap()
}

fn upstream(status: u16, flags: u64, body: &'static str) -> http::Response<Body> {
    let mut resp = http::Response::builder()
        .status(status)
        .body(full(body))
        .unwrap();
    resp.extensions_mut().insert(UpstreamInfo {
        response_flags: flags,
        code_details: "via_upstream".into(),
        ..Default::default()
    });
    resp
}

async fn body_text(resp: http::Response<Body>) -> String {
    String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn local_reply_at_request_headers_skips_the_router_and_passes_response_callbacks() {
    init_logs();
    tokio::task::LocalSet::new()
        .run_until(async {
            let shared = HostShared::new().unwrap();
            let vm = chain_vm(&shared, 1);
            let forwarded = Rc::new(Cell::new(false));
            let f = forwarded.clone();
            let resp =
                run_filter_chain(&[vm], downstream(), request(full("")), |_req| async move {
                    f.set(true);
                    upstream(200, 0, "upstream")
                })
                .await;
            assert!(
                !forwarded.get(),
                "the router must not run after a local reply"
            );
            assert_eq!(resp.status(), 403);
            assert_eq!(resp.headers().get("x-why").unwrap(), "test");
            assert_eq!(body_text(resp).await, "denied");
            assert_eq!(
                metric(&shared, "resp_headers"),
                1,
                "on_response_headers sees the local reply"
            );
            assert!(eventually(|| metric(&shared, "delete") == 1).await);
            assert_eq!(metric(&shared, "log"), 1);
        })
        .await;
}

#[tokio::test(flavor = "current_thread")]
async fn pause_at_response_headers_then_replace_with_an_http_call_answer() {
    init_logs();
    tokio::task::LocalSet::new()
        .run_until(async {
            let shared = HostShared::new().unwrap();
            let vm = chain_vm(&shared, 2);
            let calls = Rc::new(Cell::new(0));
            let c = calls.clone();
            let resp =
                run_filter_chain(&[vm], downstream(), request(full("")), |_req| async move {
                    c.set(c.get() + 1);
                    upstream(503, 0x20, "upstream failed")
                })
                .await;
            assert_eq!(calls.get(), 1);
            assert_eq!(resp.status(), 200);
            assert_eq!(body_text(resp).await, "from spare");
            // Envoy's sendDirectLocalReply: the replacement goes straight to the client; no
            // response callback sees it (only the upstream's answer was seen).
            assert_eq!(metric(&shared, "resp_headers"), 1);
            assert!(eventually(|| metric(&shared, "delete") == 1).await);
            assert_eq!(metric(&shared, "log"), 1);
        })
        .await;
}

#[tokio::test(flavor = "current_thread")]
async fn pause_at_response_headers_then_resume_keeps_the_upstream_answer() {
    init_logs();
    tokio::task::LocalSet::new()
        .run_until(async {
            let shared = HostShared::new().unwrap();
            let vm = chain_vm(&shared, 3);
            let resp =
                run_filter_chain(&[vm], downstream(), request(full("")), |_req| async move {
                    upstream(503, 0x20, "upstream failed")
                })
                .await;
            assert_eq!(resp.status(), 503);
            assert_eq!(body_text(resp).await, "upstream failed");
            assert!(eventually(|| metric(&shared, "delete") == 1).await);
        })
        .await;
}

#[tokio::test(flavor = "current_thread")]
async fn request_body_is_buffered_while_paused_and_the_edit_reaches_the_router() {
    init_logs();
    tokio::task::LocalSet::new()
        .run_until(async {
            let shared = HostShared::new().unwrap();
            let vm = chain_vm(&shared, 4);
            let chunks = ["aaa", "bbb", "ccc"].map(|c| {
                Ok::<_, failover_host::stream::BoxError>(http_body::Frame::data(Bytes::from(c)))
            });
            let body = StreamBody::new(futures_util::stream::iter(chunks)).boxed_unsync();
            let resp = run_filter_chain(&[vm], downstream(), request(body), |req| async move {
                let got = req.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(&got[..], b"Xaaabbbccc");
                upstream(200, 0, "ok")
            })
            .await;
            assert_eq!(resp.status(), 200);
            assert_eq!(body_text(resp).await, "ok");
            assert_eq!(
                metric(&shared, "body_size"),
                9,
                "the last call sees the whole buffered body"
            );
            assert!(metric(&shared, "body_calls") >= 2);
            assert!(eventually(|| metric(&shared, "delete") == 1).await);
        })
        .await;
}

#[tokio::test(flavor = "current_thread")]
async fn pass_through_streams_and_ends_every_context() {
    init_logs();
    tokio::task::LocalSet::new()
        .run_until(async {
            let shared = HostShared::new().unwrap();
            let vm = chain_vm(&shared, 0);
            for _ in 0..3 {
                let resp = run_filter_chain(
                    std::slice::from_ref(&vm),
                    downstream(),
                    request(full("hi")),
                    |req| async move {
                        assert_eq!(req.headers().get("host").unwrap(), "front");
                        upstream(200, 0, "hello")
                    },
                )
                .await;
                assert_eq!(body_text(resp).await, "hello");
            }
            assert!(eventually(|| metric(&shared, "delete") == 3).await);
            assert_eq!(metric(&shared, "log"), 3);
            assert_eq!(metric(&shared, "resp_headers"), 3);
        })
        .await;
}

/// The first frame of `body` if it is there without waiting (polled once, no yield to the
/// other tasks of the `LocalSet`).
fn ready_frame(body: &mut Body) -> Option<Bytes> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match http_body::Body::poll_frame(std::pin::Pin::new(body), &mut cx) {
        std::task::Poll::Ready(Some(Ok(frame))) => frame.into_data().ok(),
        _ => None,
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_body_released_with_held_headers_is_ready_when_the_headers_are_handed_on() {
    // A filter that held the headers (StopIteration) until the body released them: what it
    // passed is already in the body handed on with the headers, so the connection writes
    // both at once (before, the headers went out alone and the body after a task switch).
    init_logs();
    tokio::task::LocalSet::new()
        .run_until(async {
            let shared = HostShared::new().unwrap();
            let vm = chain_vm(&shared, 5);
            let chunks = ["aaa", "bbb"].map(|c| {
                Ok::<_, failover_host::stream::BoxError>(http_body::Frame::data(Bytes::from(c)))
            });
            let body = StreamBody::new(futures_util::stream::iter(chunks)).boxed_unsync();
            let mut resp = run_filter_chain(&[vm], downstream(), request(body), |req| async move {
                let mut body = req.into_body();
                assert_eq!(
                    ready_frame(&mut body).as_deref(),
                    Some(&b"aaa"[..]),
                    "the held request body is in the channel when the router gets the request"
                );
                let rest = body.collect().await.unwrap().to_bytes();
                assert_eq!(&rest[..], b"bbb");
                upstream(200, 0, "data: first\n\n")
            })
            .await;
            assert_eq!(resp.status(), 200);
            assert_eq!(
                ready_frame(resp.body_mut()).as_deref(),
                Some(&b"data: first\n\n"[..]),
                "the first response chunk is in the channel when the response is handed on"
            );
            assert!(eventually(|| metric(&shared, "delete") == 1).await);
            assert_eq!(metric(&shared, "resp_headers"), 1);
        })
        .await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_response_body_already_there_passes_the_filters_before_the_response_is_handed_on() {
    // A pass-through filter (mode 0): the upstream's answer is all there (it came in one read),
    // so on_response_body runs for it before the response goes to the connection, which then
    // writes headers and body at once; and since the body ended, so did the stream (on_log,
    // on_delete) — without any other task of the LocalSet running in between.
    init_logs();
    tokio::task::LocalSet::new()
        .run_until(async {
            let shared = HostShared::new().unwrap();
            let vm = chain_vm(&shared, 0);
            let mut resp = run_filter_chain(&[vm], downstream(), request(full("hi")), |_| async {
                upstream(200, 0, "{\"ok\":true}")
            })
            .await;
            assert_eq!(
                ready_frame(resp.body_mut()).as_deref(),
                Some(&b"{\"ok\":true}"[..]),
                "the whole answer is in the channel when the response is handed on"
            );
            assert_eq!(metric(&shared, "log"), 1, "the stream ended inline");
            assert_eq!(metric(&shared, "delete"), 1);
        })
        .await;
}
