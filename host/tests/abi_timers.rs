//! `proxy_set_tick_period_milliseconds` → `proxy_on_tick` on the VM's own thread; shutdown
//! runs on_done/on_delete of the root context and stops the timer.

#[path = "wat/common.rs"]
mod common;

use common::*;
use failover_host::vm::HostShared;

const TICKS: &str = r#"
 (global $m (mut i32) (i32.const 0))
 (global $d (mut i32) (i32.const 0))
 (data (i32.const 0) "ticksdone")
 (func (export "proxy_on_configure") (param i32 i32) (result i32)
   (drop (call $define_metric (i32.const 0) (i32.const 0) (i32.const 5) (i32.const 2000)))
   (global.set $m (i32.load (i32.const 2000)))
   (drop (call $define_metric (i32.const 0) (i32.const 5) (i32.const 4) (i32.const 2000)))
   (global.set $d (i32.load (i32.const 2000)))
   (call $expect (call $set_tick (i32.const 1)) (i32.const 0) (i32.const 0))
   (i32.eqz (global.get $failed)))
 (func (export "proxy_on_tick") (param $ctx i32)
   (call $expect (local.get $ctx) (i32.const 1) (i32.const 1))
   (if (i32.eqz (global.get $failed)) (then (drop (call $increment_metric (global.get $m) (i64.const 1))))))
 (func (export "proxy_on_done") (param i32) (result i32)
   (drop (call $increment_metric (global.get $d) (i64.const 1)))
   (i32.const 1))
"#;

#[tokio::test(flavor = "current_thread")]
async fn ticks_arrive_on_the_root_context_until_shutdown() {
    init_logs();
    tokio::task::LocalSet::new()
        .run_until(async {
            let shared = HostShared::new().unwrap();
            let vm = match start(
                &shared,
                &spec("t", "vm", module(TICKS)),
                FakeClusters::none(),
            ) {
                Ok(vm) => vm,
                Err(e) => panic!("{e}"),
            };
            let metrics = shared.metrics().clone();
            let count = |name: &str| {
                metrics
                    .snapshot()
                    .iter()
                    .find(|m| m.name == name)
                    .map(|m| m.value)
                    .unwrap_or(0)
            };
            assert!(
                eventually(|| count("ticks") >= 3).await,
                "ticks keep coming"
            );
            vm.shutdown();
            assert_eq!(
                count("done"),
                1,
                "shutdown runs on_done on the root context"
            );
            let after = count("ticks");
            // Let the (aborted) timer get a chance to run: it must not tick again.
            for _ in 0..50 {
                tokio::task::yield_now().await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            assert_eq!(count("ticks"), after, "no tick after shutdown");
        })
        .await;
}
