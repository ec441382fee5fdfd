//! "What a callback can reach" (envoy/FIDELITY.md, rows R1–R24): a WAT plugin does, in every
//! callback, the things Envoy forbids outside the owning phase and records the statuses it gets;
//! each test runs one request through the chain and compares them with Envoy's answers
//! (`source/extensions/common/wasm/context.cc`, proxy-wasm-cpp-host `src/exports.cc`).
//!
//! A probe is 19 characters, one per call, `'0' + status` (so `2` = BAD_ARGUMENT), except the
//! all-pairs/buffer reads which give `E` (OK, empty) or `F` (OK, something):
//!
//! | # | call |
//! |---|------|
//! | 0 | get request header `:path` (map 0) |
//! | 1 | get all request headers |
//! | 2 | remove request header `x-none` (a write) |
//! | 3 | get response header `:status` (map 2) |
//! | 4 | get all response headers |
//! | 5 | remove response header `x-none` |
//! | 6 | get request body (buffer 0) |
//! | 7 | append nothing to the request body (a write) |
//! | 8 | get response body (buffer 1) |
//! | 9 | append nothing to the response body |
//! | 10 | get property `request.path` |
//! | 11 | get request trailer `x` (map 1) |
//! | 12 | get response trailer `x` (map 3) |
//! | 13 | get the plugin configuration (buffer 7) |
//! | 14 | get property `response.flags` |
//! | 15 | set property `p` |
//! | 16 | get HTTP-call response header `:status` (map 6) |
//! | 17 | remove HTTP-call response header `x-none` |
//! | 18 | get the HTTP-call response body (buffer 4) |
//!
//! The plugin's behaviour comes from its configuration, one character per callback:
//! `[request headers, request body, response headers, response body, request trailers]`;
//! see [`probe_module`].

#[path = "wat/common.rs"]
mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use failover_host::stream::{
    run_filter_chain, run_filter_chain_with, Body, BoxError, ChainOptions, UpstreamInfo,
};
use failover_host::vm::{CallError, CallRequest, CallResponse, HostShared, PluginVm};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};

const EXTRA_IMPORTS: &str = r#"
 (import "env" "proxy_get_header_map_pairs" (func $get_pairs (param i32 i32 i32) (result i32)))
 (import "env" "proxy_remove_header_map_value" (func $remove_header (param i32 i32 i32) (result i32)))
 (import "env" "proxy_add_header_map_value" (func $add_header (param i32 i32 i32 i32 i32) (result i32)))
 (import "env" "proxy_set_header_map_pairs" (func $set_pairs (param i32 i32 i32) (result i32)))
 (import "env" "proxy_set_property" (func $set_property (param i32 i32 i32 i32) (result i32)))
"#;

/// The probing plugin. Configuration characters (missing = '0'):
/// - 0 request headers: '0' Continue; '1' Pause + HTTP call, resumed from its answer; '2' Pause.
/// - 1 request body: '0' Continue; '1' Pause until the end, Continue at the end; '2' Pause,
///   at the end `continue_stream(request)` + Pause; '3' always Pause.
/// - 2 response headers: like 0 (resume with `continue_stream(response)`).
/// - 3 response body: like 1.
/// - 4 request trailers: '0' Continue; '1' Pause + HTTP call, resumed from its answer.
///
/// Every callback probes (tags rqh, rqb, rqt, rsh, rsb, rst, log, cfg, cal = in the call
/// answer before resuming, aft = after resuming, don = on_done) into shared data
/// `<tag><n>` (n-th time), vm_id "vm".
fn probe_module() -> Vec<u8> {
    let call = encode_map(&[(":method", "GET"), (":path", "/x"), (":authority", "c1")]);
    module_with(
        EXTRA_IMPORTS,
        &format!(
            r#"
 (global $stream (mut i32) (i32.const 0))
 (global $waiting (mut i32) (i32.const -1))
 (data (i32.const 100) ":path")
 (data (i32.const 106) ":status")
 (data (i32.const 114) "x-none")
 (data (i32.const 120) "request\00path")
 (data (i32.const 133) "response\00flags")
 (data (i32.const 148) "pvx")
 (data (i32.const 160) "rqhrqbrqtrshrsbrstlogcfgcalaftdon")
 (data (i32.const 300) "00000")
 (data (i32.const 400) "{call}")
 (data (i32.const 500) "c1")
 (func $st (param $i i32) (param $v i32)
   (i32.store8 (i32.add (i32.const 1100) (local.get $i)) (i32.add (i32.const 48) (local.get $v))))
 (func $ef (param $i i32) (param $r i32)
   (if (i32.eqz (local.get $r))
     (then (i32.store8 (i32.add (i32.const 1100) (local.get $i))
       (select (i32.const 70) (i32.const 69) (i32.load (i32.const 2004)))))
     (else (call $st (local.get $i) (local.get $r)))))
 (func $probe (param $k i32)
   (local $n i32)
   (call $st (i32.const 0) (call $get_header (i32.const 0) (i32.const 100) (i32.const 5) (i32.const 2000) (i32.const 2004)))
   (call $ef (i32.const 1) (call $get_pairs (i32.const 0) (i32.const 2000) (i32.const 2004)))
   (call $st (i32.const 2) (call $remove_header (i32.const 0) (i32.const 114) (i32.const 6)))
   (call $st (i32.const 3) (call $get_header (i32.const 2) (i32.const 106) (i32.const 7) (i32.const 2000) (i32.const 2004)))
   (call $ef (i32.const 4) (call $get_pairs (i32.const 2) (i32.const 2000) (i32.const 2004)))
   (call $st (i32.const 5) (call $remove_header (i32.const 2) (i32.const 114) (i32.const 6)))
   (call $ef (i32.const 6) (call $get_buffer (i32.const 0) (i32.const 0) (i32.const 100000) (i32.const 2000) (i32.const 2004)))
   (call $st (i32.const 7) (call $set_buffer (i32.const 0) (i32.const -1) (i32.const 0) (i32.const 0) (i32.const 0)))
   (call $ef (i32.const 8) (call $get_buffer (i32.const 1) (i32.const 0) (i32.const 100000) (i32.const 2000) (i32.const 2004)))
   (call $st (i32.const 9) (call $set_buffer (i32.const 1) (i32.const -1) (i32.const 0) (i32.const 0) (i32.const 0)))
   (call $st (i32.const 10) (call $get_property (i32.const 120) (i32.const 12) (i32.const 2000) (i32.const 2004)))
   (call $st (i32.const 11) (call $get_header (i32.const 1) (i32.const 150) (i32.const 1) (i32.const 2000) (i32.const 2004)))
   (call $st (i32.const 12) (call $get_header (i32.const 3) (i32.const 150) (i32.const 1) (i32.const 2000) (i32.const 2004)))
   (call $st (i32.const 13) (call $get_buffer (i32.const 7) (i32.const 0) (i32.const 100) (i32.const 2000) (i32.const 2004)))
   (call $st (i32.const 14) (call $get_property (i32.const 133) (i32.const 14) (i32.const 2000) (i32.const 2004)))
   (call $st (i32.const 15) (call $set_property (i32.const 148) (i32.const 1) (i32.const 149) (i32.const 1)))
   (call $st (i32.const 16) (call $get_header (i32.const 6) (i32.const 106) (i32.const 7) (i32.const 2000) (i32.const 2004)))
   (call $st (i32.const 17) (call $remove_header (i32.const 6) (i32.const 114) (i32.const 6)))
   (call $st (i32.const 18) (call $get_buffer (i32.const 4) (i32.const 0) (i32.const 100) (i32.const 2000) (i32.const 2004)))
   (memory.copy (i32.const 1140) (i32.add (i32.const 160) (i32.mul (local.get $k) (i32.const 3))) (i32.const 3))
   (local.set $n (i32.load8_u (i32.add (i32.const 200) (local.get $k))))
   (i32.store8 (i32.const 1143) (i32.add (i32.const 48) (local.get $n)))
   (i32.store8 (i32.add (i32.const 200) (local.get $k)) (i32.add (local.get $n) (i32.const 1)))
   (drop (call $set_shared (i32.const 1140) (i32.const 4) (i32.const 1100) (i32.const 19) (i32.const 0))))
 (func $mode (param $i i32) (result i32) (i32.load8_u (i32.add (i32.const 300) (local.get $i))))
 (func $dispatch (param $dir i32)
   (global.set $waiting (local.get $dir))
   (call $expect (call $http_call (i32.const 500) (i32.const 2) (i32.const 400) (i32.const {call_len}) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 2000)) (i32.const 0) (i32.const 0)))
 (func $headers (param $ctx i32) (param $i i32) (param $dir i32) (result i32)
   (global.set $stream (local.get $ctx))
   (if (i32.eq (call $mode (local.get $i)) (i32.const 49))
     (then (call $dispatch (local.get $dir)) (return (i32.const 1))))
   (i32.eq (call $mode (local.get $i)) (i32.const 50)))
 (func $body (param $i i32) (param $dir i32) (param $eos i32) (result i32)
   (local $m i32)
   (local.set $m (call $mode (local.get $i)))
   (if (i32.eq (local.get $m) (i32.const 51)) (then (return (i32.const 1))))
   (if (i32.eq (local.get $m) (i32.const 48)) (then (return (i32.const 0))))
   (if (i32.eqz (local.get $eos)) (then (return (i32.const 1))))
   (if (i32.eq (local.get $m) (i32.const 50))
     (then (drop (call $continue_stream (local.get $dir))) (return (i32.const 1))))
   (i32.const 0))
 (func (export "proxy_on_configure") (param $ctx i32) (param $size i32) (result i32)
   (if (i32.ne (call $get_buffer (i32.const 7) (i32.const 0) (i32.const 5) (i32.const 2000) (i32.const 2004)) (i32.const 0))
     (then (return (i32.const 0))))
   (memory.copy (i32.const 300) (i32.load (i32.const 2000)) (i32.load (i32.const 2004)))
   (call $probe (i32.const 7))
   (i32.const 1))
 (func (export "proxy_on_request_headers") (param $ctx i32) (param $n i32) (param $eos i32) (result i32)
   (call $probe (i32.const 0))
   (call $headers (local.get $ctx) (i32.const 0) (i32.const 0)))
 (func (export "proxy_on_request_body") (param $ctx i32) (param $size i32) (param $eos i32) (result i32)
   (call $probe (i32.const 1))
   (call $body (i32.const 1) (i32.const 0) (local.get $eos)))
 (func (export "proxy_on_request_trailers") (param $ctx i32) (param $n i32) (result i32)
   (call $probe (i32.const 2))
   (if (i32.eq (call $mode (i32.const 4)) (i32.const 49))
     (then (call $dispatch (i32.const 0)) (return (i32.const 1))))
   (i32.const 0))
 (func (export "proxy_on_response_headers") (param $ctx i32) (param $n i32) (param $eos i32) (result i32)
   (call $probe (i32.const 3))
   (call $headers (local.get $ctx) (i32.const 2) (i32.const 1)))
 (func (export "proxy_on_response_body") (param $ctx i32) (param $size i32) (param $eos i32) (result i32)
   (call $probe (i32.const 4))
   (call $body (i32.const 3) (i32.const 1) (local.get $eos)))
 (func (export "proxy_on_response_trailers") (param $ctx i32) (param $n i32) (result i32)
   (call $probe (i32.const 5))
   (i32.const 0))
 (func (export "proxy_on_http_call_response") (param $ctx i32) (param $token i32) (param $nh i32) (param $bs i32) (param $nt i32)
   (drop (call $set_effective (global.get $stream)))
   (call $probe (i32.const 8))
   (drop (call $continue_stream (global.get $waiting)))
   (call $probe (i32.const 9)))
 (func (export "proxy_on_log") (param $ctx i32) (call $probe (i32.const 6)))
 (func (export "proxy_on_done") (param $ctx i32) (result i32)
   (if (i32.ne (local.get $ctx) (i32.const 1)) (then (call $probe (i32.const 10))))
   (i32.const 1))
"#,
            call = wat_bytes(&call),
            call_len = call.len(),
        ),
    )
}

fn probe_vm(shared: &HostShared, config: &str, allow_stop_iteration: bool) -> Rc<PluginVm> {
    let mut s = spec("probe", "vm", probe_module());
    s.configuration = format!("{config:0<5}").into_bytes();
    s.allow_on_headers_stop_iteration = allow_stop_iteration;
    let clusters = FakeClusters::new(&["c1"], |_, _| {
        Ok(CallResponse {
            headers: vec![(":status".into(), b"200".to_vec())],
            body: Bytes::from("call body"),
            trailers: vec![],
        })
    });
    match start(shared, &s, clusters) {
        Ok(vm) => vm,
        Err(e) => panic!("{e}"),
    }
}

/// The probe recorded under `key`, or "-" if that callback never ran.
fn probe(shared: &HostShared, key: &str) -> String {
    shared
        .shared_data()
        .get("vm", key)
        .map(|(v, _)| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_else(|_| "-".into())
}

/// How many times callback `tag` probed.
fn probes(shared: &HostShared, tag: &str) -> usize {
    (0..10)
        .take_while(|n| probe(shared, &format!("{tag}{n}")) != "-")
        .count()
}

fn full(b: &'static str) -> Body {
    Full::new(Bytes::from(b))
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body of `chunks`, optionally followed by trailers.
fn chunked(chunks: &[&'static str], trailers: Option<(&'static str, &'static str)>) -> Body {
    let mut frames: Vec<Result<Frame<Bytes>, BoxError>> = chunks
        .iter()
        .map(|c| Ok(Frame::data(Bytes::from(*c))))
        .collect();
    if let Some((k, v)) = trailers {
        let mut map = http::HeaderMap::new();
        map.insert(k, http::HeaderValue::from_static(v));
        frames.push(Ok(Frame::trailers(map)));
    }
    StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
}

/// A body fed by the test through the returned sender.
fn channel_body() -> (
    tokio::sync::mpsc::Sender<Result<Frame<Bytes>, BoxError>>,
    Body,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (tx, StreamBody::new(stream).boxed_unsync())
}

fn data(s: &'static str) -> Result<Frame<Bytes>, BoxError> {
    Ok(Frame::data(Bytes::from(s)))
}

fn request(body: Body) -> http::Request<Body> {
    http::Request::builder()
        .method("POST")
        .uri("/x?q=1")
        .header("host", "front")
        .body(body)
        .unwrap()
}

fn upstream(status: u16, body: Body) -> http::Response<Body> {
    let mut resp = http::Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(body)
        .unwrap();
    resp.extensions_mut().insert(UpstreamInfo {
        code_details: "via_upstream".into(),
        ..Default::default()
    });
    resp
}

async fn body_text(resp: http::Response<Body>) -> Result<String, BoxError> {
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Fails (instead of hanging) when the chain stalls where Envoy would not.
async fn within<F: std::future::Future>(f: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(10), f).await {
        Ok(out) => out,
        Err(_) => panic!("the stream stalled"),
    }
}

fn local<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&rt, f)
}

// ===== R1–R10: maps, bodies and properties per phase, everything continued =====

/// Probes of a request that continues everywhere: a body, an upstream answer with a body.
#[test]
fn every_callback_reaches_only_what_envoy_hands_it() {
    init_logs();
    local(async {
        let shared = HostShared::new().unwrap();
        let vm = probe_vm(&shared, "00000", false);
        let resp = within(run_filter_chain(
            &[vm],
            downstream(),
            request(chunked(&["hello"], None)),
            |req| async move {
                let got = req.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(&got[..], b"hello");
                upstream(200, full("answer"))
            },
        ))
        .await;
        assert_eq!(body_text(resp).await.unwrap(), "answer");
        assert!(eventually(|| probe(&shared, "don0") != "-").await);

        //                                    0123456789012345678
        // The root context in on_configure: no stream maps, no stream info, configuration
        // readable; set_property NOT_FOUND.
        assert_eq!(probe(&shared, "cfg0"), "2E22E2E2E2122011221");
        // Request headers: map 0 live; no response yet (flags 0); bodies empty and
        // read-only; the configuration is gone.
        assert_eq!(probe(&shared, "rqh0"), "0F02E2E2E2022100221");
        // Request body: the headers are gone (BAD_ARGUMENT, request.path NOT_FOUND); the
        // request body is live and writable.
        assert_eq!(probe(&shared, "rqb0"), "2E22E2F0E2122100221");
        // Response headers: only map 2 is live.
        assert_eq!(probe(&shared, "rsh0"), "2E20F0E2E2122100221");
        // Response body: only buffer 1.
        assert_eq!(probe(&shared, "rsb0"), "2E22E2E2F0122100221");
        // on_log: the request as forwarded and the response as sent, read-only; a map that
        // is not there (request trailers never, response trailers: none came) is NOT_FOUND.
        assert_eq!(probe(&shared, "log0"), "0F20F2E2E2011100121");
        // on_done: nothing.
        assert_eq!(probe(&shared, "don0"), "2E22E2E2E2122100221");
    });
}

// Note: the probe strings above are checked character by character in the table of
// envoy/FIDELITY.md ("What a callback can reach").

// ===== R2/R3: pausing keeps the map; continue_stream drops the request maps =====

#[test]
fn paused_request_headers_stay_reachable_until_continue_stream() {
    init_logs();
    local(async {
        let shared = HostShared::new().unwrap();
        let vm = probe_vm(&shared, "10000", false);
        let resp = within(run_filter_chain(
            &[vm],
            downstream(),
            request(full("")),
            |_| async move { upstream(200, full("ok")) },
        ))
        .await;
        assert_eq!(resp.status(), 200);
        assert!(eventually(|| probe(&shared, "don0") != "-").await);
        // In the call answer (effective context = the stream): the paused request headers
        // are still there, and so is the call's answer (maps 6, buffer 4).
        assert_eq!(probe(&shared, "cal0"), "0F02E2E2E2022100020");
        // After continue_stream(request): gone at once, in the same callback.
        assert_eq!(probe(&shared, "aft0"), "2E22E2E2E2122100020");
    });
}

#[test]
fn paused_response_headers_stay_reachable_after_the_resume() {
    init_logs();
    local(async {
        let shared = HostShared::new().unwrap();
        let vm = probe_vm(&shared, "00100", false);
        let resp = within(run_filter_chain(
            &[vm],
            downstream(),
            request(full("")),
            |_| async move { upstream(200, full("body")) },
        ))
        .await;
        assert_eq!(body_text(resp).await.unwrap(), "body");
        assert!(eventually(|| probe(&shared, "don0") != "-").await);
        assert_eq!(probe(&shared, "cal0"), "2E20F0E2E2122100020");
        // continue_stream(response) drops the request maps only: Envoy never clears the
        // response headers of a filter that paused them.
        assert_eq!(probe(&shared, "aft0"), "2E20F0E2E2122100020");
        // ... and they stay readable in the response body callback.
        assert_eq!(probe(&shared, "rsb0"), "2E20F0E2F0122100221");
    });
}

// ===== R4: a body paused with StopIterationAndBuffer stays reachable =====

#[test]
fn a_buffering_body_stays_reachable_until_it_continues() {
    init_logs();
    local(async {
        let shared = HostShared::new().unwrap();
        let vm = probe_vm(&shared, "01000", false);
        let resp = within(run_filter_chain(
            &[vm],
            downstream(),
            request(chunked(&["ab", "cd", "ef"], None)),
            |req| async move {
                let got = req.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(
                    &got[..],
                    b"abcdef",
                    "the buffered body reaches the router whole"
                );
                upstream(200, full("ok"))
            },
        ))
        .await;
        assert_eq!(body_text(resp).await.unwrap(), "ok");
        assert!(eventually(|| probe(&shared, "don0") != "-").await);
        // "ab", "cd", "ef", then the end of the body: the last call sees all of it.
        assert_eq!(probes(&shared, "rqb"), 4);
        assert_eq!(probe(&shared, "rqb3"), "2E22E2F0E2122100221");
    });
}

// ===== R11: trailers =====

#[test]
fn a_pause_from_a_trailers_callback_holds_the_trailers_until_continue_stream() {
    init_logs();
    local(async {
        let shared = HostShared::new().unwrap();
        let vm = probe_vm(&shared, "00001", false);
        let seen = Rc::new(Cell::new(false));
        let s = seen.clone();
        let resp = within(run_filter_chain(
            &[vm],
            downstream(),
            request(chunked(&["x"], Some(("x", "1")))),
            |req| async move {
                let collected = req.into_body().collect().await.unwrap();
                s.set(collected.trailers().is_some_and(|t| t.get("x").is_some()));
                upstream(200, full("ok"))
            },
        ))
        .await;
        assert_eq!(resp.status(), 200);
        assert!(seen.get(), "the trailers went on after continue_stream");
        assert!(eventually(|| probe(&shared, "don0") != "-").await);
        // In on_request_trailers: map 1 is live (the trailer `x` is found).
        assert_eq!(&probe(&shared, "rqt0")[11..12], "0");
        // While paused (call answer): still there; after continue_stream: gone.
        assert_eq!(&probe(&shared, "cal0")[11..12], "0");
        assert_eq!(&probe(&shared, "aft0")[11..12], "2");
        // Order: the answer to the call came after the trailers callback paused.
        assert!(probe(&shared, "rqt1") == "-");
    });
}

// ===== R14–R17: StopIteration vs StopAllIterationAndWatermark, buffering limits =====

/// With `allow_on_headers_stop_iteration`, a Pause at request headers is StopIteration: the
/// body keeps flowing into the filter (which still reaches the held headers), and
/// `continue_stream(request)` sends headers and the buffered body on together.
#[test]
fn stop_iteration_lets_the_body_flow_while_the_headers_are_held() {
    init_logs();
    local(async {
        let shared = HostShared::new().unwrap();
        let vm = probe_vm(&shared, "22000", true);
        let forwarded = Rc::new(Cell::new(0));
        let f = forwarded.clone();
        let resp = within(run_filter_chain(
            &[vm],
            downstream(),
            request(chunked(&["ab", "cd"], None)),
            |req| async move {
                f.set(f.get() + 1);
                let got = req.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(&got[..], b"abcd");
                upstream(200, full("ok"))
            },
        ))
        .await;
        assert_eq!(body_text(resp).await.unwrap(), "ok");
        assert_eq!(forwarded.get(), 1);
        assert!(eventually(|| probe(&shared, "don0") != "-").await);
        assert_eq!(probes(&shared, "rqb"), 3, "ab, cd, end of body");
        // The held request headers are reachable from the body callbacks.
        assert_eq!(probe(&shared, "rqb0"), "0F02E2F0E2022100221");
        assert_eq!(probe(&shared, "rqb2"), "0F02E2F0E2022100221");
    });
}

/// A Continue from a body callback releases headers held with StopIteration (and, as in
/// Envoy, does not drop the request headers: only `continue_stream` does).
#[test]
fn a_body_continue_releases_headers_held_with_stop_iteration() {
    init_logs();
    local(async {
        let shared = HostShared::new().unwrap();
        let vm = probe_vm(&shared, "20000", true);
        let resp = within(run_filter_chain(
            &[vm],
            downstream(),
            request(chunked(&["ab", "cd"], None)),
            |req| async move {
                let got = req.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(&got[..], b"abcd");
                upstream(200, full("ok"))
            },
        ))
        .await;
        assert_eq!(body_text(resp).await.unwrap(), "ok");
        assert!(eventually(|| probe(&shared, "don0") != "-").await);
        assert_eq!(&probe(&shared, "rqb2")[..1], "0");
    });
}

/// Without the flag the same plugin stalls, as in Envoy: StopAllIterationAndWatermark stops
/// the body callbacks too, so the plugin never sees the body it waits for.
#[test]
fn without_the_flag_a_pause_at_request_headers_stops_the_body_callbacks() {
    init_logs();
    local(async {
        let shared = HostShared::new().unwrap();
        let vm = probe_vm(&shared, "22000", false);
        let forwarded = Rc::new(Cell::new(false));
        let f = forwarded.clone();
        let filters = [vm];
        let chain = run_filter_chain(
            &filters,
            downstream(),
            request(chunked(&["ab", "cd"], None)),
            |_| async move {
                f.set(true);
                upstream(200, full("ok"))
            },
        );
        let stalled = tokio::time::timeout(Duration::from_millis(500), chain).await;
        assert!(stalled.is_err(), "the request must stall");
        assert!(!forwarded.get());
        assert_eq!(probes(&shared, "rqh"), 1);
        assert_eq!(probes(&shared, "rqb"), 0, "no body callback while paused");
    });
}

/// Buffering the request body (Pause from on_http_request_body) past the listener's
/// `per_connection_buffer_limit_bytes` is Envoy's 413 `request_payload_too_large`, sent
/// through the filter chain; at the limit exactly it passes.
#[test]
fn buffering_the_request_body_past_the_limit_is_a_413() {
    init_logs();
    local(async {
        let limit = ChainOptions { buffer_limit: 10 };
        // Exactly 10 bytes buffered: fine.
        let shared = HostShared::new().unwrap();
        let vm = probe_vm(&shared, "01000", false);
        let resp = within(run_filter_chain_with(
            &[vm],
            limit,
            downstream(),
            request(chunked(&["abcde", "fghij"], None)),
            |req| async move {
                let got = req.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(got.len(), 10);
                upstream(200, full("ok"))
            },
        ))
        .await;
        assert_eq!(resp.status(), 200);

        // 11 bytes: 413 before the filter sees the chunk that passes the limit.
        let shared = HostShared::new().unwrap();
        let vm = probe_vm(&shared, "01000", false);
        let resp = within(run_filter_chain_with(
            &[vm],
            limit,
            downstream(),
            request(chunked(&["abcde", "fghijk"], None)),
            |req| async move {
                let _ = req.into_body().collect().await;
                upstream(200, full("ok"))
            },
        ))
        .await;
        assert_eq!(resp.status(), 413);
        let info = resp.extensions().get::<UpstreamInfo>().cloned().unwrap();
        assert_eq!(info.code_details, "request_payload_too_large");
        assert_eq!(body_text(resp).await.unwrap(), "Payload Too Large");
        assert!(eventually(|| probe(&shared, "don0") != "-").await);
        assert_eq!(probes(&shared, "rqb"), 1, "the filter is not called again");
        assert_eq!(
            probes(&shared, "rsh"),
            1,
            "the 413 passes the response callbacks"
        );
    });
}

/// Response side: before the headers went out (held with StopIteration) the answer is a 500
/// `response_payload_too_large`; after they went out, a reset.
#[test]
fn buffering_the_response_body_past_the_limit_is_a_500_or_a_reset() {
    init_logs();
    local(async {
        let limit = ChainOptions { buffer_limit: 8 };
        let shared = HostShared::new().unwrap();
        let vm = probe_vm(&shared, "00230", true);
        let resp = within(run_filter_chain_with(
            &[vm],
            limit,
            downstream(),
            request(full("")),
            |_| async move { upstream(200, chunked(&["abcde", "fghij"], None)) },
        ))
        .await;
        assert_eq!(resp.status(), 500);
        let info = resp.extensions().get::<UpstreamInfo>().cloned().unwrap();
        assert_eq!(info.code_details, "response_payload_too_large");
        assert_eq!(body_text(resp).await.unwrap(), "Internal Server Error");

        let shared = HostShared::new().unwrap();
        let vm = probe_vm(&shared, "00030", false);
        let resp = within(run_filter_chain_with(
            &[vm],
            limit,
            downstream(),
            request(full("")),
            |_| async move { upstream(200, chunked(&["abcde", "fghij"], None)) },
        ))
        .await;
        assert_eq!(resp.status(), 200, "the headers went out before the body");
        assert!(body_text(resp).await.is_err(), "then the stream is reset");
    });
}

/// With the flag, a Pause at response headers holds them while the body flows into the
/// filter (the SSE case: wait for the first event), until `continue_stream(response)`.
#[test]
fn stop_iteration_at_response_headers_holds_them_until_the_filter_continues() {
    init_logs();
    local(async {
        let shared = HostShared::new().unwrap();
        let vm = probe_vm(&shared, "00220", true);
        let (tx, body) = channel_body();
        let filters = [vm];
        let chain = run_filter_chain(&filters, downstream(), request(full("")), |_| async move {
            upstream(200, body)
        });
        tokio::pin!(chain);
        tx.send(data("event: a\n")).await.unwrap();
        let early = tokio::time::timeout(Duration::from_millis(300), &mut chain).await;
        assert!(
            early.is_err(),
            "the headers are held while the body is buffered"
        );
        assert!(eventually(|| probes(&shared, "rsb") == 1).await);
        // The held response headers are reachable from the body callback.
        assert_eq!(&probe(&shared, "rsb0")[3..6], "0F0");
        tx.send(data("data: b\n\n")).await.unwrap();
        drop(tx);
        let resp = within(chain).await;
        assert_eq!(body_text(resp).await.unwrap(), "event: a\ndata: b\n\n");
    });
}

// ===== R18: the request body keeps flowing after the response began =====

#[test]
fn the_request_body_reaches_the_filter_after_the_response_began_until_it_is_complete() {
    init_logs();
    local(async {
        let shared = HostShared::new().unwrap();
        let vm = probe_vm(&shared, "00000", false);
        let (req_tx, req_body) = channel_body();
        let (resp_tx, resp_body) = channel_body();
        let resp = within(run_filter_chain(
            &[vm],
            downstream(),
            request(req_body),
            |_| async move {
                // An upstream that answers before the request body is complete.
                upstream(200, resp_body)
            },
        ))
        .await;
        assert_eq!(resp.status(), 200);
        req_tx.send(data("a")).await.unwrap();
        req_tx.send(data("b")).await.unwrap();
        assert!(
            eventually(|| probes(&shared, "rqb") == 2).await,
            "on_http_request_body keeps being called after the response began"
        );
        resp_tx.send(data("done")).await.unwrap();
        drop(resp_tx);
        assert_eq!(body_text(resp).await.unwrap(), "done");
        // The response is complete: Envoy drops further request data.
        let _ = req_tx.send(data("c")).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(probes(&shared, "rqb"), 2);
    });
}

// ===== R19–R24: the rest =====

/// Checks in on_configure (root), on_request_headers and on_request_body; each callback
/// stores "ok" or "bad" (the failed check is logged as "check <letter> got <status>").
fn misc_module() -> Vec<u8> {
    let call = encode_map(&[(":method", "GET"), (":path", "/x"), (":authority", "empty")]);
    module_with(
        EXTRA_IMPORTS,
        &format!(
            r#"
 (global $done_body (mut i32) (i32.const 0))
 (data (i32.const 100) ":path")
 (data (i32.const 106) "/edited")
 (data (i32.const 120) "request\00path")
 (data (i32.const 140) "request\00protocol")
 (data (i32.const 170) "h")
 (data (i32.const 180) "<>NR")
 (data (i32.const 190) "pv")
 (data (i32.const 200) "empty")
 (data (i32.const 210) "okbad")
 (data (i32.const 220) "cfgrqhrqbproto")
 (data (i32.const 400) "{call}")
 (func $result (param $key i32)
   (drop (call $set_shared (local.get $key) (i32.const 3)
     (select (i32.const 212) (i32.const 210) (global.get $failed))
     (select (i32.const 3) (i32.const 2) (global.get $failed)) (i32.const 0)))
   (global.set $failed (i32.const 0)))
 (func (export "proxy_on_configure") (param $ctx i32) (param $size i32) (result i32)
   (local $id i32)
   ;; A: log level above critical → BAD_ARGUMENT; B: critical is fine.
   (call $expect (call $proxy_log (i32.const 6) (i32.const 210) (i32.const 2)) (i32.const 2) (i32.const 0))
   (call $expect (call $proxy_log (i32.const 5) (i32.const 210) (i32.const 2)) (i32.const 0) (i32.const 1))
   ;; C: a histogram cannot be incremented; D: it can be recorded.
   (call $expect (call $define_metric (i32.const 2) (i32.const 170) (i32.const 1) (i32.const 2000)) (i32.const 0) (i32.const 2))
   (local.set $id (i32.load (i32.const 2000)))
   (call $expect (call $increment_metric (local.get $id) (i64.const 1)) (i32.const 2) (i32.const 2))
   (call $expect (call $record_metric (local.get $id) (i64.const 1)) (i32.const 0) (i32.const 3))
   ;; E: set_property on the root context → NOT_FOUND.
   (call $expect (call $set_property (i32.const 190) (i32.const 1) (i32.const 191) (i32.const 1)) (i32.const 1) (i32.const 4))
   ;; F: the plugin configuration is readable here.
   (call $expect (call $get_buffer (i32.const 7) (i32.const 0) (i32.const 10) (i32.const 2000) (i32.const 2004)) (i32.const 0) (i32.const 5))
   ;; G: a call to a cluster without hosts → INTERNAL_FAILURE at once.
   (call $expect (call $http_call (i32.const 200) (i32.const 5) (i32.const 400) (i32.const {call_len}) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 2000)) (i32.const 10) (i32.const 6))
   ;; H: buffer type 9 does not exist; I: the VM configuration is read-only.
   (call $expect (call $get_buffer (i32.const 9) (i32.const 0) (i32.const 10) (i32.const 2000) (i32.const 2004)) (i32.const 2) (i32.const 7))
   (call $expect (call $set_buffer (i32.const 6) (i32.const 0) (i32.const 0) (i32.const 180) (i32.const 1)) (i32.const 2) (i32.const 8))
   ;; J: a local reply from the root context is accepted and does nothing.
   (call $expect (call $send_local (i32.const 403) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const -1)) (i32.const 0) (i32.const 9))
   ;; K: stream type 7 does not exist; L: map type 8 neither.
   (call $expect (call $continue_stream (i32.const 7)) (i32.const 2) (i32.const 10))
   (call $expect (call $get_pairs (i32.const 8) (i32.const 2000) (i32.const 2004)) (i32.const 2) (i32.const 11))
   (call $result (i32.const 220))
   (i32.const 1))
 (func (export "proxy_on_request_headers") (param $ctx i32) (param $n i32) (param $eos i32) (result i32)
   ;; A: edit :path; B: request.path shows the edit ("/edi...").
   (call $expect (call $replace_header (i32.const 0) (i32.const 100) (i32.const 5) (i32.const 106) (i32.const 7)) (i32.const 0) (i32.const 0))
   (call $expect (call $get_property (i32.const 120) (i32.const 12) (i32.const 2000) (i32.const 2004)) (i32.const 0) (i32.const 1))
   (call $expect (i32.eq (i32.load (i32.load (i32.const 2000))) (i32.const 0x6964652f)) (i32.const 1) (i32.const 2))
   ;; C: request.protocol, kept as is.
   (call $expect (call $get_property (i32.const 140) (i32.const 16) (i32.const 2000) (i32.const 2004)) (i32.const 0) (i32.const 3))
   (drop (call $set_shared (i32.const 229) (i32.const 5) (i32.load (i32.const 2000)) (i32.load (i32.const 2004)) (i32.const 0)))
   ;; D: the plugin configuration is not readable here.
   (call $expect (call $get_buffer (i32.const 7) (i32.const 0) (i32.const 10) (i32.const 2000) (i32.const 2004)) (i32.const 1) (i32.const 4))
   (call $result (i32.const 223))
   (i32.const 0))
 (func (export "proxy_on_request_body") (param $ctx i32) (param $size i32) (param $eos i32) (result i32)
   (if (i32.or (global.get $done_body) (i32.eqz (local.get $size))) (then (return (i32.const 0))))
   (global.set $done_body (i32.const 1))
   ;; A: in the middle, B: a partial replace from 0 → BAD_ARGUMENT; C: prepend, D: append.
   (call $expect (call $set_buffer (i32.const 0) (i32.const 1) (i32.const 1) (i32.const 182) (i32.const 1)) (i32.const 2) (i32.const 0))
   (call $expect (call $set_buffer (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 182) (i32.const 1)) (i32.const 2) (i32.const 1))
   (call $expect (call $set_buffer (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 180) (i32.const 1)) (i32.const 0) (i32.const 2))
   (call $expect (call $set_buffer (i32.const 0) (i32.const -1) (i32.const 0) (i32.const 181) (i32.const 1)) (i32.const 0) (i32.const 3))
   ;; E: the body is now "<abc>".
   (call $expect (call $get_buffer (i32.const 0) (i32.const 0) (i32.const 100) (i32.const 2000) (i32.const 2004)) (i32.const 0) (i32.const 4))
   (call $expect (i32.load (i32.const 2004)) (i32.const 5) (i32.const 5))
   (call $result (i32.const 226))
   (i32.const 0))
"#,
            call = wat_bytes(&call),
            call_len = call.len(),
        ),
    )
}

fn misc_vm(shared: &HostShared) -> Rc<PluginVm> {
    let clusters = Rc::new(FakeClusters {
        names: vec!["empty".into()],
        respond: Box::new(
            |_: &str, _: &CallRequest| -> Result<CallResponse, CallError> {
                panic!("a call to a cluster without hosts must not start")
            },
        ),
        calls: Default::default(),
        unusable: vec!["empty".into()],
    });
    match start(shared, &spec("misc", "vm", misc_module()), clusters) {
        Ok(vm) => vm,
        Err(e) => panic!("{e}"),
    }
}

fn result(shared: &HostShared, key: &str) -> String {
    probe(shared, key)
}

#[test]
fn root_context_rules_logs_metrics_and_calls_to_clusters_without_hosts() {
    init_logs();
    local(async {
        let shared = HostShared::new().unwrap();
        let _vm = misc_vm(&shared);
        assert_eq!(result(&shared, "cfg"), "ok");
        let snap = shared.metrics().snapshot();
        let h = snap.iter().find(|m| m.name == "h").map(|m| m.value);
        assert_eq!(h, Some(1), "the histogram holds the recorded value only");
    });
}

#[test]
fn request_properties_show_the_filters_edits_and_body_writes_follow_envoys_rules() {
    init_logs();
    local(async {
        let shared = HostShared::new().unwrap();
        let vm = misc_vm(&shared);
        let resp = within(run_filter_chain(
            std::slice::from_ref(&vm),
            downstream(),
            request(chunked(&["abc"], None)),
            |req| async move {
                assert_eq!(req.uri().path(), "/edited");
                let got = req.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(&got[..], b"<abc>");
                upstream(200, full("ok"))
            },
        ))
        .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(result(&shared, "rqh"), "ok");
        assert_eq!(result(&shared, "rqb"), "ok");
        assert_eq!(result(&shared, "proto"), "HTTP/1.1");

        let mut h2 = request(full(""));
        *h2.version_mut() = http::Version::HTTP_2;
        let resp = within(run_filter_chain(&[vm], downstream(), h2, |_| async move {
            upstream(200, full("ok"))
        }))
        .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(result(&shared, "proto"), "HTTP/2", "not HTTP/2.0");
    });
}
