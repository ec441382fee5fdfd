//! Rules of `envoy/FIDELITY.md` that the other `abi_*` tests do not cover, each checked against
//! what Envoy (proxy-wasm-cpp-host + `source/extensions/common/wasm/`) does:
//!
//! - start-up: the calls every restricting Envoy allows during `_initialize`/`main` (C1), the
//!   ones older Envoys trap, the order of the start functions (L2), `malloc` before
//!   `proxy_on_memory_allocate` and no allocator = refused (L4);
//! - WASI details: `fd_seek`/`fd_close` succeed, `fd_fdstat_get` reports Envoy's fdstat,
//!   `proc_exit` returns and is no plugin log line (C5, L16);
//! - HTTP calls belong to the root context: the answer arrives there, also after the stream
//!   that dispatched it ended (H5);
//! - a Pause from a headers callback holds back that direction's body callbacks until the
//!   stream is continued (C4, H7);
//! - the server starts Envoy's VMs: canary, one per worker, one on the main thread per HTTP
//!   filter (C2), the singleton; each runs on_vm_start + on_configure once, and every non-canary
//!   VM ticks on its own (V1–V5).

#[path = "wat/common.rs"]
mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use failover_host::stream::{run_filter_chain, Body, BoxError, UpstreamInfo};
use failover_host::vm::{
    CallError, CallRequest, CallResponse, ClusterManager, HostShared, VmError,
};
use http_body_util::{BodyExt, Full, StreamBody};

/// WASI imports the common prelude does not have.
const MORE_WASI: &str = r#"
 (import "wasi_snapshot_preview1" "fd_seek" (func $fd_seek (param i32 i64 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
 (import "wasi_snapshot_preview1" "fd_fdstat_get" (func $fd_fdstat_get (param i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "fd_prestat_get" (func $fd_prestat_get (param i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "fd_prestat_dir_name" (func $fd_prestat_dir_name (param i32 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
 (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
 (import "wasi_unstable" "fd_prestat_get" (func $fd_prestat_get_unstable (param i32 i32) (result i32)))
"#;

fn metric(shared: &HostShared, name: &str) -> i64 {
    shared
        .metrics()
        .snapshot()
        .iter()
        .find(|m| m.name == name)
        .map(|m| m.value)
        .unwrap_or(0)
}

// ===== start-up (C1, L2, L4) =====

#[test]
fn start_up_allows_the_calls_every_restricting_envoy_allows() {
    // wasi-libc may look for preopens while initialising: Envoy has allowed fd_prestat_get and
    // fd_prestat_dir_name during start-up since the restriction exists (cpp-host 66b3b7d).
    let wasm = module_with(
        MORE_WASI,
        r#"
        (func $init
          (call $expect (call $fd_prestat_get (i32.const 3) (i32.const 2000)) (i32.const 8) (i32.const 0))
          (call $expect (call $fd_prestat_dir_name (i32.const 3) (i32.const 2000) (i32.const 16)) (i32.const 52) (i32.const 1))
          (call $expect (call $fd_prestat_get_unstable (i32.const 3) (i32.const 2000)) (i32.const 8) (i32.const 2))
          (call $expect (call $args_get (i32.const 2000) (i32.const 2100)) (i32.const 0) (i32.const 3)))
        (func (export "_initialize") (call $init))
        (func (export "main") (param i32 i32) (result i32) (call $init) (i32.const 0))
        (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.eqz (global.get $failed)))
        "#,
    );
    let shared = HostShared::new().unwrap();
    if let Err(e) = start(&shared, &spec("p", "vm", wasm), FakeClusters::none()) {
        panic!("{e}");
    }
}

#[test]
fn start_up_traps_the_calls_older_envoys_restrict() {
    // Not in the allowlist of cpp-host 66b3b7d..c4d7bb0 (fd_fdstat_get only since c4d7bb0,
    // the others never): trapping them keeps "starts in the host" = "starts in every Envoy".
    let shared = HostShared::new().unwrap();
    let cases = [
        ("fd_fdstat_get", "(drop (call $fd_fdstat_get (i32.const 1) (i32.const 2000)))"),
        ("fd_seek", "(drop (call $fd_seek (i32.const 1) (i64.const 0) (i32.const 0) (i32.const 2000)))"),
        ("fd_close", "(drop (call $fd_close (i32.const 3)))"),
        ("proc_exit", "(call $proc_exit (i32.const 0))"),
        ("path_open", "(drop (call $path_open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 4) (i32.const 0) (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 2000)))"),
    ];
    for (name, call) in cases {
        let wasm = module_with(
            MORE_WASI,
            &format!(r#"(func (export "_initialize") {call})"#),
        );
        let err = start(&shared, &spec("p", "vm", wasm), FakeClusters::none())
            .err()
            .unwrap_or_else(|| panic!("{name} during _initialize must trap"));
        let msg = err.to_string();
        assert!(matches!(err, VmError::Trap { .. }), "{name}: {msg}");
        assert!(
            msg.contains("restricted_callback") && msg.contains(name),
            "{name}: {msg}"
        );
    }
}

/// Each start function appends its digit to `$g` (`$g * 10 + d`): the value spells the order.
fn run_start_functions(exports: &str, want: i32) {
    let wasm = module(&format!(
        r#"
        (global $g (mut i32) (i32.const 0))
        (func $step (param $d i32)
          (global.set $g (i32.add (i32.mul (global.get $g) (i32.const 10)) (local.get $d))))
        {exports}
        (func (export "proxy_on_configure") (param i32 i32) (result i32)
          (i32.eq (global.get $g) (i32.const {want})))
        "#
    ));
    let shared = HostShared::new().unwrap();
    if let Err(e) = start(&shared, &spec("p", "vm", wasm), FakeClusters::none()) {
        panic!("start functions {exports}: expected order {want}: {e}");
    }
}

#[test]
fn start_functions_run_in_envoys_order() {
    let initialize = r#"(func (export "_initialize") (call $step (i32.const 1)))"#;
    let main = r#"(func (export "main") (param i32 i32) (result i32) (call $step (i32.const 2)) (i32.const 0))"#;
    let start = r#"(func (export "_start") (call $step (i32.const 3)))"#;
    // _initialize, then main; _start is not run when _initialize exists.
    run_start_functions(&format!("{initialize} {main} {start}"), 12);
    run_start_functions(initialize, 1);
    // No _initialize: _start only (main is not called on its own).
    run_start_functions(&format!("{main} {start}"), 3);
}

#[test]
fn malloc_is_preferred_over_proxy_on_memory_allocate() {
    // The prelude exports proxy_on_memory_allocate (heap from 32768); malloc hands out 60000..
    let wasm = module(
        r#"
        (global $mheap (mut i32) (i32.const 60000))
        (func (export "malloc") (param $n i32) (result i32)
          (local $p i32)
          (local.set $p (global.get $mheap))
          (global.set $mheap (i32.add (global.get $mheap) (local.get $n)))
          (local.get $p))
        (data (i32.const 0) "plugin_name")
        (func (export "proxy_on_configure") (param i32 i32) (result i32)
          (call $expect (call $get_property (i32.const 0) (i32.const 11) (i32.const 2000) (i32.const 2004)) (i32.const 0) (i32.const 0))
          (call $expect (i32.load (i32.const 2000)) (i32.const 60000) (i32.const 1))
          (i32.eqz (global.get $failed)))
        "#,
    );
    let shared = HostShared::new().unwrap();
    if let Err(e) = start(&shared, &spec("p", "vm", wasm), FakeClusters::none()) {
        panic!("{e}");
    }
}

#[test]
fn module_without_an_allocator_is_refused_at_load() {
    let wasm = wat::parse_str(
        r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
                   (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1)))"#,
    )
    .unwrap();
    let shared = HostShared::new().unwrap();
    let err = start(&shared, &spec("p", "vm", wasm), FakeClusters::none())
        .err()
        .expect("refused");
    assert!(
        err.to_string()
            .contains("Wasm module is missing malloc function"),
        "{err}"
    );
}

// ===== WASI details (C5, L16) =====

#[test]
fn fd_seek_fd_close_fdstat_and_proc_exit_behave_like_envoy() {
    let wasm = module_with(
        MORE_WASI,
        r#"
        (func (export "proxy_on_configure") (param i32 i32) (result i32)
          (call $expect (call $fd_seek (i32.const 1) (i64.const 0) (i32.const 0) (i32.const 2000)) (i32.const 0) (i32.const 0))
          (call $expect (call $fd_seek (i32.const 5) (i64.const 0) (i32.const 0) (i32.const 2000)) (i32.const 0) (i32.const 1))
          (call $expect (call $fd_close (i32.const 3)) (i32.const 0) (i32.const 2))
          ;; Envoy writes all 24 bytes: zero except the base rights = fd_write (64).
          (memory.fill (i32.const 2100) (i32.const 0xff) (i32.const 24))
          (call $expect (call $fd_fdstat_get (i32.const 1) (i32.const 2100)) (i32.const 0) (i32.const 3))
          (call $expect (i64.eqz (i64.load (i32.const 2100))) (i32.const 1) (i32.const 4))
          (call $expect (i64.eq (i64.load (i32.const 2108)) (i64.const 64)) (i32.const 1) (i32.const 5))
          (call $expect (i64.eqz (i64.load (i32.const 2116))) (i32.const 1) (i32.const 6))
          (call $expect (call $fd_fdstat_get (i32.const 3) (i32.const 2100)) (i32.const 8) (i32.const 7))
          ;; proc_exit returns to the guest and is no plugin log line (Envoy traces it).
          (call $proc_exit (i32.const 3))
          ;; Reject, so the test sees every plugin log line.
          (i32.const 0))
        "#,
    );
    let shared = HostShared::new().unwrap();
    match start(&shared, &spec("p", "vm", wasm), FakeClusters::none()).err() {
        Some(VmError::ConfigureRejected { logs, .. }) => {
            assert!(
                logs.is_empty(),
                "no failed check, no proc_exit line: {logs:?}"
            );
        }
        other => panic!("expected the rejection after all checks, got {other:?}"),
    }
}

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

fn call_headers() -> Vec<u8> {
    encode_map(&[(":method", "GET"), (":path", "/x"), (":authority", "c1")])
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

// ===== the server starts Envoy's set of VMs (V1–V5, C2) =====

/// Counts, per plugin (its configuration is one letter), how many VMs ran on_configure
/// (`configured_<letter>`) and how many tick (`ticking_<letter>`, once per VM), and how many
/// VMs ran on_vm_start (`vm_start`).
const VM_COUNTER: &str = r#"
 (global $ticked (mut i32) (i32.const 0))
 (global $m_tick (mut i32) (i32.const 0))
 (data (i32.const 100) "configured_?")
 (data (i32.const 120) "ticking_?")
 (data (i32.const 140) "vm_start")
 (func $count (param $ptr i32) (param $len i32)
   (drop (call $define_metric (i32.const 0) (local.get $ptr) (local.get $len) (i32.const 3000)))
   (drop (call $increment_metric (i32.load (i32.const 3000)) (i64.const 1))))
 (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
   (call $count (i32.const 140) (i32.const 8))
   (i32.const 1))
 (func (export "proxy_on_configure") (param i32) (param $size i32) (result i32)
   (drop (call $get_buffer (i32.const 7) (i32.const 0) (local.get $size) (i32.const 3000) (i32.const 3004)))
   (i32.store8 (i32.const 111) (i32.load8_u (i32.load (i32.const 3000))))
   (i32.store8 (i32.const 128) (i32.load8_u (i32.load (i32.const 3000))))
   (call $count (i32.const 100) (i32.const 12))
   (drop (call $define_metric (i32.const 0) (i32.const 120) (i32.const 9) (i32.const 3000)))
   (global.set $m_tick (i32.load (i32.const 3000)))
   (drop (call $set_tick (i32.const 5)))
   (i32.const 1))
 (func (export "proxy_on_tick") (param i32)
   (if (i32.eqz (global.get $ticked))
     (then
       (global.set $ticked (i32.const 1))
       (drop (call $increment_metric (global.get $m_tick) (i64.const 1))))))
"#;

fn vm_counter_bootstrap(wasm_path: &std::path::Path) -> String {
    let path = wasm_path.display();
    format!(
        r#"
static_resources:
  listeners:
  - name: main
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            name: local
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: a }}
          http_filters:
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: counter
                root_id: counter
                vm_config:
                  vm_id: counter
                  runtime: envoy.wasm.runtime.v8
                  code: {{ local: {{ filename: "{path}" }} }}
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: f
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: a
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: a
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: 9 }} }} }}
bootstrap_extensions:
- name: envoy.bootstrap.wasm
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.wasm.v3.WasmService
    singleton: true
    config:
      name: counter_service
      root_id: counter_service
      vm_config: {{ vm_id: counter, runtime: envoy.wasm.runtime.v8, code: {{ local: {{ filename: "{path}" }} }} }}
      configuration:
        "@type": type.googleapis.com/google.protobuf.StringValue
        value: s
"#
    )
}

#[test]
fn server_starts_canary_workers_main_thread_and_singleton_vms() {
    use failover_host::bootstrap::{parse, LoadOptions};
    use failover_host::server::{ServeOptions, Server};

    init_logs();
    const WORKERS: i64 = 2;
    let dir = tempfile::tempdir().unwrap();
    let wasm_path = dir.path().join("counter.wasm");
    std::fs::write(&wasm_path, module(VM_COUNTER)).unwrap();
    let yaml_path = dir.path().join("envoy.yaml");
    let yaml = vm_counter_bootstrap(&wasm_path);
    let bootstrap = match parse(&yaml_path, &yaml, &LoadOptions::default()) {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    };
    let server = match Server::start(
        bootstrap,
        ServeOptions {
            concurrency: WORKERS as usize,
            state_file: None,
            drain_time: Duration::from_millis(100),
        },
    ) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let shared = server.shared().clone();
    // Every non-canary VM ticks on its own: the filter on each worker and on the main thread,
    // the service on the main thread. Bounded wait.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while (metric(&shared, "ticking_f") < WORKERS + 1 || metric(&shared, "ticking_s") < 1)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let counts = [
        "configured_f",
        "configured_s",
        "ticking_f",
        "ticking_s",
        "vm_start",
    ]
    .map(|n| metric(&shared, n));
    server.shutdown();
    assert_eq!(
        counts,
        [
            // canary + one per worker + the main thread's
            WORKERS + 2,
            // canary + the singleton
            2,
            // the canary never ticks
            WORKERS + 1,
            1,
            // one root context per VM: on_vm_start once each
            WORKERS + 4,
        ],
        "[configured_f, configured_s, ticking_f, ticking_s, vm_start]"
    );
}

// ===== linking (L5–L7) =====

/// Envoy's 15 WASI functions (Envoy ≥ 1.21) with their preview1 signatures.
const WASI_15: [(&str, &str); 15] = [
    ("args_get", "(param i32 i32) (result i32)"),
    ("args_sizes_get", "(param i32 i32) (result i32)"),
    ("clock_time_get", "(param i32 i64 i32) (result i32)"),
    ("environ_get", "(param i32 i32) (result i32)"),
    ("environ_sizes_get", "(param i32 i32) (result i32)"),
    ("fd_close", "(param i32) (result i32)"),
    ("fd_fdstat_get", "(param i32 i32) (result i32)"),
    ("fd_prestat_dir_name", "(param i32 i32 i32) (result i32)"),
    ("fd_prestat_get", "(param i32 i32) (result i32)"),
    ("fd_read", "(param i32 i32 i32 i32) (result i32)"),
    ("fd_seek", "(param i32 i64 i32 i32) (result i32)"),
    ("fd_write", "(param i32 i32 i32 i32) (result i32)"),
    (
        "path_open",
        "(param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)",
    ),
    ("proc_exit", "(param i32)"),
    ("random_get", "(param i32 i32) (result i32)"),
];

fn bare_module(imports: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module {imports} (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
             (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#
    ))
    .unwrap()
}

#[test]
fn the_fifteen_wasi_functions_link_under_both_names_and_newer_ones_do_not() {
    let shared = HostShared::new().unwrap();
    let mut imports = String::new();
    for m in ["wasi_snapshot_preview1", "wasi_unstable"] {
        for (name, sig) in WASI_15 {
            imports.push_str(&format!(r#"(import "{m}" "{name}" (func {sig}))"#));
        }
    }
    if let Err(e) = start(
        &shared,
        &spec("p", "vm", bare_module(&imports)),
        FakeClusters::none(),
    ) {
        panic!("{e}");
    }
    // Envoy ≥ 1.33 only: refused, so a module that starts here starts in every Envoy ≥ 1.21.
    for (name, sig) in [
        ("fd_fdstat_set_flags", "(param i32 i32) (result i32)"),
        ("sched_yield", "(result i32)"),
        ("poll_oneoff", "(param i32 i32 i32 i32) (result i32)"),
    ] {
        let m = bare_module(&format!(
            r#"(import "wasi_snapshot_preview1" "{name}" (func {sig}))"#
        ));
        match start(&shared, &spec("p", "vm", m), FakeClusters::none()) {
            Err(VmError::MissingImport { import, .. }) => {
                assert_eq!(import, format!("wasi_snapshot_preview1.{name}"))
            }
            other => panic!("{name}: expected MissingImport, got {:?}", other.err()),
        }
    }
}

// ===== dispatch_http_call arguments (H4), statuses (T2), shared data (S8) =====

#[test]
fn dispatch_http_call_timeout_of_2_pow_31_ms_or_more_is_bad_argument() {
    let h = call_headers();
    let wasm = module(&format!(
        r#"
        (data (i32.const 0) "c1")
        (data (i32.const 200) "{h}")
        (func $call (param $timeout i32) (result i32)
          (call $http_call (i32.const 0) (i32.const 2) (i32.const 200) (i32.const {hlen}) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (local.get $timeout) (i32.const 2000)))
        (func (export "proxy_on_configure") (param i32 i32) (result i32)
          (call $expect (call $call (i32.const -1)) (i32.const 2) (i32.const 0))
          (call $expect (call $call (i32.const 0x80000000)) (i32.const 2) (i32.const 1))
          (call $expect (call $call (i32.const 0x7fffffff)) (i32.const 0) (i32.const 2))
          (call $expect (call $call (i32.const 0)) (i32.const 0) (i32.const 3))
          (i32.eqz (global.get $failed)))
        "#,
        h = wat_bytes(&h),
        hlen = h.len(),
    ));
    let shared = HostShared::new().unwrap();
    // A canary starts no call, so no LocalSet is needed.
    let clusters = FakeClusters::new(&["c1"], |_, _| Err(CallError::Timeout));
    if let Err(e) = failover_host::vm::PluginVm::start(
        &shared,
        &spec("p", "vm", wasm),
        failover_host::vm::VmRole::Canary,
        clusters,
    ) {
        panic!("{e}");
    }
}

#[test]
fn bad_guest_pointer_fails_the_vm() {
    // Envoy answers INVALID_MEMORY_ACCESS (6), on which the Rust SDK panics (= trap): either way
    // the VM is gone. The host traps directly and never hands out a 6.
    let wasm = module(
        r#"
        (func (export "proxy_on_configure") (param i32 i32) (result i32)
          (drop (call $get_shared (i32.const 0x7ffffff0) (i32.const 64) (i32.const 2000) (i32.const 2004) (i32.const 2008)))
          (i32.const 1))
        "#,
    );
    let shared = HostShared::new().unwrap();
    let err = start(&shared, &spec("p", "vm", wasm), FakeClusters::none())
        .err()
        .expect("must fail");
    assert!(matches!(err, VmError::Trap { .. }), "{err}");
}

#[test]
fn shared_data_values_have_no_size_limit() {
    // 60 000 bytes of linear memory (whatever is there) under one key.
    let wasm = module(
        r#"
        (data (i32.const 900) "big")
        (func (export "proxy_on_configure") (param i32 i32) (result i32)
          (call $expect (call $set_shared (i32.const 900) (i32.const 3) (i32.const 0) (i32.const 60000) (i32.const 0)) (i32.const 0) (i32.const 0))
          (call $expect (call $get_shared (i32.const 900) (i32.const 3) (i32.const 2000) (i32.const 2004) (i32.const 2008)) (i32.const 0) (i32.const 1))
          (call $expect (i32.eq (i32.load (i32.const 2004)) (i32.const 60000)) (i32.const 1) (i32.const 2))
          (i32.eqz (global.get $failed)))
        "#,
    );
    let shared = HostShared::new().unwrap();
    if let Err(e) = start(&shared, &spec("p", "vm", wasm), FakeClusters::none()) {
        panic!("{e}");
    }
    let (value, _) = shared.shared_data().get("vm", "big").unwrap();
    assert_eq!(value.len(), 60_000);
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

// ===== environment (L12) =====

#[test]
fn environment_keys_must_be_unique_and_missing_host_keys_are_skipped() {
    use failover_host::bootstrap::{parse, LoadOptions};

    let dir = tempfile::tempdir().unwrap();
    let wasm_path = dir.path().join("counter.wasm");
    std::fs::write(&wasm_path, module(VM_COUNTER)).unwrap();
    let yaml_path = dir.path().join("envoy.yaml");
    let with_env = |env: &str| {
        vm_counter_bootstrap(&wasm_path).replacen(
            "                  vm_id: counter\n",
            &format!("                  vm_id: counter\n                  environment_variables: {env}\n"),
            1,
        )
    };
    // The variable is surely not set: Envoy skips it without an error.
    let ok = with_env(
        r#"{ key_values: { A: "1" }, host_env_keys: [FAILOVER_FIDELITY_UNSET_VARIABLE] }"#,
    );
    match parse(&yaml_path, &ok, &LoadOptions::default()) {
        Ok(b) => assert_eq!(
            b.listeners[0].wasm_filters[0].spec.environment,
            vec![("A".to_string(), "1".to_string())]
        ),
        Err(e) => panic!("{e}"),
    }
    let dup = with_env(r#"{ key_values: { A: "1" }, host_env_keys: [A] }"#);
    let err = parse(&yaml_path, &dup, &LoadOptions::default())
        .expect_err("a duplicated key is a config error in Envoy");
    assert!(err.to_string().contains("duplicated"), "{err}");
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
