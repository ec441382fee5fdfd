//! Unit tests of the VM types that need no module.

use super::*;

#[test]
fn host_shared_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<HostShared>();
}

#[test]
fn roles_read_like_envoy_log_prefixes() {
    assert_eq!(VmRole::Worker(2).to_string(), "worker 2");
    assert_eq!(VmRole::Canary.to_string(), "canary");
    assert_eq!(VmRole::Singleton.to_string(), "singleton");
    assert_eq!(VmRole::Main.to_string(), "main");
}
