//! Loading like Envoy: imports outside Envoy's set are refused with Envoy's message naming the
//! import; the ABI marker export is required; during `_initialize`/`main` only logging and a
//! few WASI calls are allowed — anything else traps ("restricted_callback").

#[path = "wat/common.rs"]
mod common;

use common::*;
use failover_host::vm::{HostShared, VmError};

#[test]
fn import_outside_envoys_wasi_allowlist_is_refused_naming_it() {
    let wasm = wat::parse_str(
        r#"(module
             (import "wasi_snapshot_preview1" "fd_filestat_get" (func (param i32 i32) (result i32)))
             (memory (export "memory") 1)
             (func (export "proxy_abi_version_0_2_1")))"#,
    )
    .unwrap();
    let shared = HostShared::new().unwrap();
    let err = start(&shared, &spec("p", "vm", wasm), FakeClusters::none())
        .err()
        .expect("must be refused");
    assert!(matches!(err, VmError::MissingImport { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("Failed to load Wasm module due to a missing import: wasi_snapshot_preview1.fd_filestat_get"),
        "{err}"
    );
}

#[test]
fn unknown_proxy_function_and_newer_wasi_functions_are_refused() {
    let shared = HostShared::new().unwrap();
    for (module, name) in [
        ("env", "proxy_does_not_exist"),
        ("wasi_snapshot_preview1", "poll_oneoff"),
        ("wasi_unstable", "sched_yield"),
    ] {
        let wasm = wat::parse_str(format!(
            r#"(module (import "{module}" "{name}" (func (result i32))) (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1")))"#
        ))
        .unwrap();
        let err = start(&shared, &spec("p", "vm", wasm), FakeClusters::none())
            .err()
            .expect("must be refused");
        assert!(
            err.to_string()
                .contains(&format!("missing import: {module}.{name}")),
            "{err}"
        );
    }
}

#[test]
fn every_allowlisted_import_links() {
    // The whole prelude imports from env, wasi_snapshot_preview1 and wasi_unstable.
    let shared = HostShared::new().unwrap();
    start(&shared, &spec("p", "vm", module("")), FakeClusters::none()).unwrap();
}

#[test]
fn missing_abi_version_export_is_refused() {
    let wasm = wat::parse_str(r#"(module (memory (export "memory") 1))"#).unwrap();
    let shared = HostShared::new().unwrap();
    let err = start(&shared, &spec("p", "vm", wasm), FakeClusters::none())
        .err()
        .expect("must be refused");
    assert!(
        err.to_string()
            .contains("Missing or unknown Proxy-Wasm ABI version"),
        "{err}"
    );
}

#[test]
fn restricted_calls_during_initialize_trap() {
    let shared = HostShared::new().unwrap();
    let cases = [
        ("proxy_get_shared_data", "(drop (call $get_shared (i32.const 0) (i32.const 1) (i32.const 2000) (i32.const 2004) (i32.const 2008)))"),
        ("proxy_define_metric", "(drop (call $define_metric (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 2000)))"),
        ("proxy_get_property", "(drop (call $get_property (i32.const 0) (i32.const 1) (i32.const 2000) (i32.const 2004)))"),
        ("proxy_set_tick_period_milliseconds", "(drop (call $set_tick (i32.const 10)))"),
        ("fd_read", "(drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 2000)))"),
    ];
    for (name, call) in cases {
        let wasm = module(&format!(
            r#"(data (i32.const 0) "k") (func (export "_initialize") {call})"#
        ));
        let err = start(&shared, &spec("p", "vm", wasm), FakeClusters::none())
            .err()
            .expect("must trap");
        let msg = err.to_string();
        assert!(matches!(err, VmError::Trap { .. }), "{name}: {msg}");
        assert!(
            msg.contains("restricted_callback")
                && msg.contains(name)
                && msg.contains("_initialize"),
            "{name}: {msg}"
        );
    }
}

#[test]
fn logging_clock_random_environ_and_stdout_are_allowed_during_initialize_and_main() {
    let wasm = module(
        r#"
        (data (i32.const 0) "hello from init")
        (data (i32.const 100) "\00\00\00\00\0f\00\00\00")
        (func $all
          (call $expect (call $proxy_log (i32.const 2) (i32.const 0) (i32.const 15)) (i32.const 0) (i32.const 0))
          (call $expect (call $clock_time_get (i32.const 0) (i64.const 1) (i32.const 2000)) (i32.const 0) (i32.const 1))
          (call $expect (call $random_get (i32.const 2000) (i32.const 16)) (i32.const 0) (i32.const 2))
          (call $expect (call $environ_sizes_get (i32.const 2000) (i32.const 2004)) (i32.const 0) (i32.const 3))
          (call $expect (call $args_sizes_get (i32.const 2000) (i32.const 2004)) (i32.const 0) (i32.const 4))
          (call $expect (call $fd_write (i32.const 1) (i32.const 100) (i32.const 1) (i32.const 2000)) (i32.const 0) (i32.const 5)))
        (func (export "_initialize") (call $all))
        (func (export "main") (param i32 i32) (result i32) (call $all) (i32.const 0))
        (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.eqz (global.get $failed)))
        "#,
    );
    let shared = HostShared::new().unwrap();
    if let Err(e) = start(&shared, &spec("p", "vm", wasm), FakeClusters::none()) {
        panic!("{e}");
    }
}

#[test]
fn on_configure_false_is_rejected_with_the_plugin_logs() {
    let wasm = module(
        r#"
        (data (i32.const 0) "endpoints[0].weight: must be > 0, got 0")
        (func (export "proxy_on_configure") (param i32 i32) (result i32)
          (drop (call $proxy_log (i32.const 4) (i32.const 0) (i32.const 39)))
          (i32.const 0))
        "#,
    );
    let shared = HostShared::new().unwrap();
    let err = start(&shared, &spec("failover", "vm", wasm), FakeClusters::none())
        .err()
        .expect("rejected");
    match &err {
        VmError::ConfigureRejected { plugin, logs } => {
            assert_eq!(plugin, "failover");
            assert_eq!(
                logs,
                &vec!["error: endpoints[0].weight: must be > 0, got 0".to_string()]
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(err
        .to_string()
        .contains("endpoints[0].weight: must be > 0, got 0"));
}

#[test]
fn on_configure_reads_the_plugin_configuration() {
    // Returns true only if the configuration buffer (type 7) is exactly `{"a":1}`.
    let wasm = module(
        r#"
        (func (export "proxy_on_configure") (param $ctx i32) (param $size i32) (result i32)
          (call $expect (local.get $size) (i32.const 7) (i32.const 0))
          (call $expect (call $get_buffer (i32.const 7) (i32.const 0) (local.get $size) (i32.const 2000) (i32.const 2004)) (i32.const 0) (i32.const 1))
          (call $expect (i32.load (i32.const 2004)) (i32.const 7) (i32.const 2))
          (call $expect (i32.load8_u (i32.add (i32.load (i32.const 2000)) (i32.const 5))) (i32.const 49) (i32.const 3))
          (i32.eqz (global.get $failed)))
        "#,
    );
    let mut s = spec("p", "vm", wasm);
    s.configuration = br#"{"a":1}"#.to_vec();
    let shared = HostShared::new().unwrap();
    if let Err(e) = start(&shared, &s, FakeClusters::none()) {
        panic!("{e}");
    }
}

#[test]
fn module_is_compiled_once_per_distinct_code() {
    let shared = HostShared::new().unwrap();
    let s = spec("p", "vm", module(""));
    let a = shared.load_module(&s).unwrap();
    let b = shared.load_module(&s).unwrap();
    assert!(wasmtime_same(&a, &b));
    let other = shared
        .load_module(&spec("q", "vm", module("(func)")))
        .unwrap();
    assert!(!wasmtime_same(&a, &other));
}

fn wasmtime_same(a: &wasmtime::Module, b: &wasmtime::Module) -> bool {
    wasmtime::Module::same(a, b)
}
