//! Rules of `envoy/FIDELITY.md` that the other `abi_*` tests do not cover, each checked against
//! what Envoy (proxy-wasm-cpp-host + `source/extensions/common/wasm/`) does — loading and
//! linking (the streams and the server's VMs are in `abi_fidelity_streams.rs` and
//! `abi_fidelity_server.rs`):
//!
//! - start-up: the calls every restricting Envoy allows during `_initialize`/`main` (C1), the
//!   ones older Envoys trap, the order of the start functions (L2), `malloc` before
//!   `proxy_on_memory_allocate` and no allocator = refused (L4);
//! - WASI details: `fd_seek`/`fd_close` succeed, `fd_fdstat_get` reports Envoy's fdstat,
//!   `proc_exit` returns and is no plugin log line (C5, L16);
//! - linking (L5–L7); `dispatch_http_call` arguments (H4), statuses (T2), shared data (S8).

#[path = "wat/common.rs"]
mod common;

use common::*;
use failover_host::vm::{CallError, HostShared, VmError};

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
