//! Rules of `envoy/FIDELITY.md` about the VMs the server starts, each checked against what
//! Envoy (proxy-wasm-cpp-host + `source/extensions/common/wasm/`) does:
//!
//! - the server starts Envoy's VMs: canary, one per worker, one on the main thread per HTTP
//!   filter (C2), the singleton; each runs on_vm_start + on_configure once, and every non-canary
//!   VM ticks on its own (V1–V5);
//! - environment variables: keys are unique, missing host keys are skipped (L12).

#[path = "wat/common.rs"]
mod common;

use std::time::Duration;

use common::*;
use failover_testkit::bootstrap::{BootstrapBuilder, Cluster, Listener, Route, WasmPlugin};

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
    vm_counter_with_env(wasm_path, &[], &[])
}

/// The counter module as an HTTP filter (`counter`, configuration `f`) and as a singleton
/// service (`counter_service`, configuration `s`) in one VM id; the filter's VM gets the
/// environment `key_values` and `host_env_keys`.
fn vm_counter_with_env(
    wasm_path: &std::path::Path,
    key_values: &[(String, String)],
    host_env_keys: &[&str],
) -> String {
    let path = wasm_path.to_string_lossy();
    let plugin = |name: &str| WasmPlugin::new(name, &path).vm_id("counter").root_id(name);
    BootstrapBuilder::new()
        .listener(
            Listener::new("main", ([127, 0, 0, 1], 0).into())
                .stat_prefix("ingress")
                .route_config_name("local")
                .route(Route::to_cluster("/", "a"))
                .wasm_filter(
                    plugin("counter")
                        .configuration("f")
                        .env(key_values)
                        .host_env_keys(host_env_keys),
                ),
        )
        .cluster(Cluster::new("a", &[([127, 0, 0, 1], 9).into()]).connect_timeout("1s"))
        .singleton_service(plugin("counter_service").configuration("s"))
        .to_yaml()
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

// ===== environment (L12) =====

#[test]
fn environment_keys_must_be_unique_and_missing_host_keys_are_skipped() {
    use failover_host::bootstrap::{parse, LoadOptions};

    let dir = tempfile::tempdir().unwrap();
    let wasm_path = dir.path().join("counter.wasm");
    std::fs::write(&wasm_path, module(VM_COUNTER)).unwrap();
    let yaml_path = dir.path().join("envoy.yaml");
    let with_env = |host_env_keys: &[&str]| {
        vm_counter_with_env(
            &wasm_path,
            &[("A".to_string(), "1".to_string())],
            host_env_keys,
        )
    };
    // The variable is surely not set: Envoy skips it without an error.
    let ok = with_env(&["FAILOVER_FIDELITY_UNSET_VARIABLE"]);
    match parse(&yaml_path, &ok, &LoadOptions::default()) {
        Ok(b) => assert_eq!(
            b.listeners[0].wasm_filters[0].spec.environment,
            vec![("A".to_string(), "1".to_string())]
        ),
        Err(e) => panic!("{e}"),
    }
    let dup = with_env(&["A"]);
    let err = parse(&yaml_path, &dup, &LoadOptions::default())
        .expect_err("a duplicated key is a config error in Envoy");
    assert!(err.to_string().contains("duplicated"), "{err}");
}
