//! Envoy's WASI behaviour: fd 1 → info log, fd 2 → error log, other fds EBADF; fd_read ENOSYS;
//! path_open ENOENT; random_get ≤ 64 KiB; realtime/monotonic clocks only; args empty; environ
//! only the plugin's `environment`.

#[path = "wat/common.rs"]
mod common;

use common::*;
use failover_host::vm::{HostShared, VmError};

const WASI: &str = r#"
 (data (i32.const 0) "to stdout\n")
 (data (i32.const 16) "to stderr")
 (data (i32.const 32) "unstable")
 (data (i32.const 100) "\00\00\00\00\0a\00\00\00")
 (data (i32.const 108) "\10\00\00\00\09\00\00\00")
 (data (i32.const 116) "\20\00\00\00\08\00\00\00")
 (func (export "proxy_on_configure") (param $ctx i32) (param $size i32) (result i32)
   (call $expect (call $fd_write (i32.const 1) (i32.const 100) (i32.const 1) (i32.const 2000)) (i32.const 0) (i32.const 0))
   (call $expect (i32.load (i32.const 2000)) (i32.const 10) (i32.const 1))
   (call $expect (call $fd_write (i32.const 2) (i32.const 108) (i32.const 1) (i32.const 2000)) (i32.const 0) (i32.const 2))
   (call $expect (call $fd_write (i32.const 3) (i32.const 108) (i32.const 1) (i32.const 2000)) (i32.const 8) (i32.const 3))
   (call $expect (call $fd_write_unstable (i32.const 1) (i32.const 116) (i32.const 1) (i32.const 2000)) (i32.const 0) (i32.const 4))
   (call $expect (call $fd_read (i32.const 0) (i32.const 100) (i32.const 1) (i32.const 2000)) (i32.const 52) (i32.const 5))
   (call $expect (call $path_open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 4) (i32.const 0) (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 2000)) (i32.const 44) (i32.const 6))
   (call $expect (call $random_get (i32.const 40000) (i32.const 65537)) (i32.const 28) (i32.const 7))
   (call $expect (call $random_get (i32.const 40000) (i32.const 65536)) (i32.const 0) (i32.const 8))
   (call $expect (call $clock_time_get (i32.const 0) (i64.const 1) (i32.const 2000)) (i32.const 0) (i32.const 9))
   (call $expect (i64.eqz (i64.load (i32.const 2000))) (i32.const 0) (i32.const 10))
   (call $expect (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 2000)) (i32.const 0) (i32.const 11))
   (call $expect (i32.eqz (call $clock_time_get (i32.const 2) (i64.const 1) (i32.const 2000))) (i32.const 0) (i32.const 12))
   (call $expect (call $args_sizes_get (i32.const 2000) (i32.const 2004)) (i32.const 0) (i32.const 13))
   (call $expect (i32.or (i32.load (i32.const 2000)) (i32.load (i32.const 2004))) (i32.const 0) (i32.const 14))
   (call $expect (call $environ_sizes_get (i32.const 2000) (i32.const 2004)) (i32.const 0) (i32.const 15))
   (call $expect (i32.load (i32.const 2000)) (i32.const 1) (i32.const 16))
   (call $expect (i32.load (i32.const 2004)) (i32.const 8) (i32.const 17))
   (call $expect (call $environ_get (i32.const 2100) (i32.const 2200)) (i32.const 0) (i32.const 18))
   (call $expect (i32.load (i32.const 2100)) (i32.const 2200) (i32.const 19))
   ;; "FOO=bar\0" little-endian: "FOO=" = 0x3d4f4f46, "bar\0" = 0x00726162
   (call $expect (i32.load (i32.const 2200)) (i32.const 0x3d4f4f46) (i32.const 20))
   (call $expect (i32.load (i32.const 2204)) (i32.const 0x00726162) (i32.const 21))
   ;; Reject, so the test gets the captured log lines.
   (i32.const 0))
"#;

#[test]
fn fd_routing_environ_args_clocks_random_files() {
    let mut s = spec("p", "vm", module(WASI));
    s.environment = vec![("FOO".into(), "bar".into())];
    let shared = HostShared::new().unwrap();
    match start(&shared, &s, FakeClusters::none()).err() {
        Some(VmError::ConfigureRejected { logs, .. }) => {
            assert_eq!(
                logs,
                vec!["info: to stdout", "error: to stderr", "info: unstable"]
            );
        }
        other => panic!("{other:?}"),
    }
}
