//! Shared helpers for the `abi_*` tests: a WAT prelude (every import the tests use, memory, a
//! bump allocator, the ABI marker, an `$expect` check) and fake clusters.
#![allow(dead_code)]

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use failover_host::vm::{
    CallError, CallRequest, CallResponse, ClusterManager, DownstreamInfo, HostShared, PluginSpec,
    PluginVm, VmError, VmRole, WasmCode,
};

/// Every import the tests use (imports must precede definitions in WAT).
pub const IMPORTS: &str = r#"
 (import "env" "proxy_log" (func $proxy_log (param i32 i32 i32) (result i32)))
 (import "env" "proxy_get_shared_data" (func $get_shared (param i32 i32 i32 i32 i32) (result i32)))
 (import "env" "proxy_set_shared_data" (func $set_shared (param i32 i32 i32 i32 i32) (result i32)))
 (import "env" "proxy_get_property" (func $get_property (param i32 i32 i32 i32) (result i32)))
 (import "env" "proxy_get_header_map_value" (func $get_header (param i32 i32 i32 i32 i32) (result i32)))
 (import "env" "proxy_replace_header_map_value" (func $replace_header (param i32 i32 i32 i32 i32) (result i32)))
 (import "env" "proxy_get_buffer_bytes" (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
 (import "env" "proxy_set_buffer_bytes" (func $set_buffer (param i32 i32 i32 i32 i32) (result i32)))
 (import "env" "proxy_http_call" (func $http_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
 (import "env" "proxy_send_local_response" (func $send_local (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
 (import "env" "proxy_continue_stream" (func $continue_stream (param i32) (result i32)))
 (import "env" "proxy_call_foreign_function" (func $foreign (param i32 i32 i32 i32 i32 i32) (result i32)))
 (import "env" "proxy_define_metric" (func $define_metric (param i32 i32 i32 i32) (result i32)))
 (import "env" "proxy_increment_metric" (func $increment_metric (param i32 i64) (result i32)))
 (import "env" "proxy_record_metric" (func $record_metric (param i32 i64) (result i32)))
 (import "env" "proxy_get_metric" (func $get_metric (param i32 i32) (result i32)))
 (import "env" "proxy_set_tick_period_milliseconds" (func $set_tick (param i32) (result i32)))
 (import "env" "proxy_set_effective_context" (func $set_effective (param i32) (result i32)))
 (import "env" "proxy_grpc_call" (func $grpc_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
 (import "env" "proxy_register_shared_queue" (func $register_queue (param i32 i32 i32) (result i32)))
 (import "env" "proxy_dequeue_shared_queue" (func $dequeue (param i32 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
 (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
 (import "wasi_unstable" "fd_write" (func $fd_write_unstable (param i32 i32 i32 i32) (result i32)))
"#;

/// Memory (0..1000 test data, 1000.. check message, 2000..4000 scratch, heap from 32768), the
/// allocator, the ABI marker and `$expect (got want id)`: on a mismatch it logs
/// "check <'A'+id> got <'0'+got>" at error level and sets `$failed`.
pub const RUNTIME: &str = r#"
 (memory (export "memory") 2)
 (global $heap (mut i32) (i32.const 32768))
 (global $failed (mut i32) (i32.const 0))
 (data (i32.const 1000) "check ? got ?")
 (func (export "proxy_abi_version_0_2_1"))
 (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
   (local $p i32)
   (local.set $p (global.get $heap))
   (global.set $heap (i32.add (global.get $heap)
     (i32.and (i32.add (local.get $n) (i32.const 7)) (i32.const -8))))
   (local.get $p))
 (func $expect (param $got i32) (param $want i32) (param $id i32)
   (if (i32.ne (local.get $got) (local.get $want))
     (then
       (i32.store8 (i32.const 1006) (i32.add (i32.const 65) (local.get $id)))
       (i32.store8 (i32.const 1012) (i32.add (i32.const 48) (local.get $got)))
       (drop (call $proxy_log (i32.const 4) (i32.const 1000) (i32.const 13)))
       (global.set $failed (i32.const 1)))))
"#;

/// A complete module: prelude + `body` (functions, exports, data).
pub fn module(body: &str) -> Vec<u8> {
    let text = format!("(module {IMPORTS} {RUNTIME} {body})");
    match wat::parse_str(&text) {
        Ok(b) => b,
        Err(e) => panic!("test WAT does not parse: {e}"),
    }
}

/// Like [`module`], with more imports (`extra`, WAT import lines) after the prelude's.
pub fn module_with(extra: &str, body: &str) -> Vec<u8> {
    let text = format!("(module {IMPORTS} {extra} {RUNTIME} {body})");
    match wat::parse_str(&text) {
        Ok(b) => b,
        Err(e) => panic!("test WAT does not parse: {e}"),
    }
}

/// A plugin spec for in-memory bytes.
pub fn spec(name: &str, vm_id: &str, wasm: Vec<u8>) -> PluginSpec {
    PluginSpec {
        name: name.into(),
        root_id: format!("{name}_root"),
        vm_id: vm_id.into(),
        configuration: b"{}".to_vec(),
        vm_configuration: Vec::new(),
        environment: Vec::new(),
        code: WasmCode::Bytes(Arc::from(wasm)),
        fail_open: false,
        allow_on_headers_stop_iteration: false,
    }
}

/// How a fake cluster answers a call.
pub type Responder = Box<dyn Fn(&str, &CallRequest) -> Result<CallResponse, CallError>>;

/// Clusters answering every call at once with `respond` (or failing for unknown clusters).
pub struct FakeClusters {
    pub names: Vec<String>,
    pub respond: Responder,
    pub calls: RefCell<Vec<(String, CallRequest)>>,
    /// Clusters that exist but have no host (a call to them fails at once).
    pub unusable: Vec<String>,
}

impl FakeClusters {
    pub fn new(
        names: &[&str],
        respond: impl Fn(&str, &CallRequest) -> Result<CallResponse, CallError> + 'static,
    ) -> Rc<Self> {
        Rc::new(Self {
            names: names.iter().map(|s| s.to_string()).collect(),
            respond: Box::new(respond),
            calls: RefCell::new(Vec::new()),
            unusable: Vec::new(),
        })
    }

    pub fn none() -> Rc<Self> {
        Self::new(&[], |_, _| Err(CallError::Other("no clusters".into())))
    }
}

impl ClusterManager for FakeClusters {
    fn has_cluster(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }
    fn has_usable_host(&self, name: &str) -> bool {
        !self.unusable.iter().any(|n| n == name)
    }
    fn call(
        &self,
        cluster: &str,
        request: CallRequest,
        _timeout: Option<Duration>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<CallResponse, CallError>>>> {
        let result = (self.respond)(cluster, &request);
        self.calls.borrow_mut().push((cluster.to_string(), request));
        Box::pin(std::future::ready(result))
    }
}

/// Starts `spec` as worker 0 with `clusters`.
pub fn start(
    shared: &HostShared,
    spec: &PluginSpec,
    clusters: Rc<dyn ClusterManager>,
) -> Result<Rc<PluginVm>, VmError> {
    PluginVm::start(shared, spec, VmRole::Worker(0), clusters)
}

/// A downstream from loopback.
pub fn downstream() -> DownstreamInfo {
    DownstreamInfo {
        source: "127.0.0.1:40000".parse().unwrap(),
        destination: "127.0.0.1:10000".parse().unwrap(),
        request_id: None,
    }
}

/// Shows the host's logs when a test fails.
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("debug,cranelift_codegen=warn,wasmtime=warn,cranelift=warn")
        .try_init();
}

/// The value of metric `name` (0 when not defined): what the test modules count with.
pub fn metric(shared: &HostShared, name: &str) -> i64 {
    shared
        .metrics()
        .snapshot()
        .iter()
        .find(|m| m.name == name)
        .map(|m| m.value)
        .unwrap_or(0)
}

/// Waits (bounded) until `cond` holds, yielding to the LocalSet in between. In-process, not
/// `failover_testkit::eventually`: the VM's tasks run on this thread's LocalSet, so the loop
/// yields to them instead of sleeping 50 ms between checks.
pub async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let wait = async {
        while !cond() {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .is_ok()
}

/// `bytes` as a WAT string literal body (`\xx` escapes).
pub fn wat_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:02x}")).collect()
}

/// The proxy-wasm map encoding: the host's own encoder, which its unit tests pin to the SDK's
/// `serialize_map` fixture byte for byte.
pub fn encode_map(pairs: &[(&str, &str)]) -> Vec<u8> {
    let owned: Vec<(String, Vec<u8>)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
    failover_host::headers::encode(&owned)
}

/// The encoded headers of a `GET /x` call to cluster `c1`.
pub fn call_headers() -> Vec<u8> {
    encode_map(&[(":method", "GET"), (":path", "/x"), (":authority", "c1")])
}
