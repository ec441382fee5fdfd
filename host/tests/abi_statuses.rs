//! Each host function returns only statuses the SDK 0.2.5 wrapper for it accepts (it panics on
//! any other), with the meaning Envoy gives them.

#[path = "wat/common.rs"]
mod common;

use common::*;
use failover_host::vm::HostShared;

fn statuses_module() -> Vec<u8> {
    let full = encode_map(&[(":method", "GET"), (":path", "/x"), (":authority", "a")]);
    let no_path = encode_map(&[(":method", "GET"), (":authority", "a")]);
    let body = format!(
        r#"
 (data (i32.const 0) "nope")
 (data (i32.const 8) "plugin_name")
 (data (i32.const 24) "source\00address")
 (data (i32.const 40) "clear_route_cache")
 (data (i32.const 60) "c1unknown")
 (data (i32.const 80) "q")
 (data (i32.const 200) "{full}")
 (data (i32.const 400) "{no_path}")
 (func (export "proxy_on_configure") (param $ctx i32) (param $size i32) (result i32)
   (local $id i32)
   (call $expect (call $get_property (i32.const 0) (i32.const 4) (i32.const 2000) (i32.const 2004)) (i32.const 1) (i32.const 0))
   (call $expect (call $get_property (i32.const 8) (i32.const 11) (i32.const 2000) (i32.const 2004)) (i32.const 0) (i32.const 1))
   (call $expect (i32.load (i32.const 2004)) (i32.const 1) (i32.const 2))
   (call $expect (call $get_property (i32.const 24) (i32.const 14) (i32.const 2000) (i32.const 2004)) (i32.const 1) (i32.const 3))
   ;; No request headers on the root context: one value of a missing map is BAD_ARGUMENT
   ;; (Envoy's Context::getHeaderMapValue), not NOT_FOUND.
   (call $expect (call $get_header (i32.const 0) (i32.const 0) (i32.const 4) (i32.const 2000) (i32.const 2004)) (i32.const 2) (i32.const 4))
   (call $expect (call $foreign (i32.const 40) (i32.const 17) (i32.const 0) (i32.const 0) (i32.const 2000) (i32.const 2004)) (i32.const 0) (i32.const 5))
   (call $expect (call $foreign (i32.const 0) (i32.const 4) (i32.const 0) (i32.const 0) (i32.const 2000) (i32.const 2004)) (i32.const 1) (i32.const 6))
   (call $expect (call $define_metric (i32.const 0) (i32.const 0) (i32.const 4) (i32.const 2000)) (i32.const 0) (i32.const 7))
   (local.set $id (i32.load (i32.const 2000)))
   (call $expect (call $increment_metric (local.get $id) (i64.const 0)) (i32.const 2) (i32.const 8))
   (call $expect (call $increment_metric (local.get $id) (i64.const 5)) (i32.const 0) (i32.const 9))
   (call $expect (call $get_metric (local.get $id) (i32.const 2008)) (i32.const 0) (i32.const 10))
   (call $expect (i32.load (i32.const 2008)) (i32.const 5) (i32.const 11))
   (call $expect (call $get_metric (i32.const 9999) (i32.const 2008)) (i32.const 1) (i32.const 12))
   (call $expect (call $increment_metric (i32.const 9999) (i64.const 1)) (i32.const 1) (i32.const 13))
   (call $expect (call $record_metric (i32.const 9999) (i64.const 1)) (i32.const 1) (i32.const 14))
   (call $expect (call $define_metric (i32.const 7) (i32.const 0) (i32.const 4) (i32.const 2000)) (i32.const 2) (i32.const 15))
   (call $expect (call $http_call (i32.const 62) (i32.const 7) (i32.const 200) (i32.const {full_len}) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1000) (i32.const 2000)) (i32.const 2) (i32.const 16))
   (call $expect (call $http_call (i32.const 60) (i32.const 2) (i32.const 400) (i32.const {no_path_len}) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1000) (i32.const 2000)) (i32.const 2) (i32.const 17))
   (call $expect (call $http_call (i32.const 60) (i32.const 2) (i32.const 200) (i32.const {full_len}) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1000) (i32.const 2000)) (i32.const 0) (i32.const 18))
   (call $expect (call $set_effective (i32.const 12345)) (i32.const 2) (i32.const 19))
   (call $expect (call $grpc_call (i32.const 60) (i32.const 2) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1000) (i32.const 2000)) (i32.const 10) (i32.const 20))
   (call $expect (call $dequeue (i32.const 999) (i32.const 2000) (i32.const 2004)) (i32.const 1) (i32.const 21))
   (call $expect (call $register_queue (i32.const 80) (i32.const 1) (i32.const 2000)) (i32.const 0) (i32.const 22))
   (call $expect (call $dequeue (i32.load (i32.const 2000)) (i32.const 2000) (i32.const 2004)) (i32.const 7) (i32.const 23))
   ;; The request body buffer always exists in Envoy (Context::getBuffer): OK and empty.
   (call $expect (call $get_buffer (i32.const 0) (i32.const 0) (i32.const 10) (i32.const 2000) (i32.const 2004)) (i32.const 0) (i32.const 24))
   (i32.eqz (global.get $failed)))
"#,
        full = wat_bytes(&full),
        no_path = wat_bytes(&no_path),
        full_len = full.len(),
        no_path_len = no_path.len(),
    );
    module(&body)
}

#[test]
fn statuses_are_the_ones_the_sdk_expects() {
    init_logs();
    let shared = HostShared::new().unwrap();
    // The canary never starts the HTTP call it dispatches (no LocalSet needed).
    let clusters = FakeClusters::new(&["c1"], |_, _| Err(failover_host::vm::CallError::Timeout));
    let vm = failover_host::vm::PluginVm::start(
        &shared,
        &spec("p", "vm", statuses_module()),
        failover_host::vm::VmRole::Canary,
        clusters.clone(),
    );
    if let Err(e) = vm {
        panic!("{e}");
    }
    assert!(
        clusters.calls.borrow().is_empty(),
        "a canary starts no HTTP calls"
    );
    let snap = shared.metrics().snapshot();
    assert_eq!(
        snap.iter().find(|m| m.name == "nope").map(|m| m.value),
        Some(5)
    );
}
