//! The filter's hot path through the real host: the callbacks of one request (request headers,
//! response headers, response body, log/done/delete) of the embedded `failover` filter in a
//! worker VM, driven by the host's own filter-chain driver (`stream::run_filter_chain`), with a
//! canned upstream answer instead of a network hop.
//!
//! Cases (one engine, so the module is compiled once; each case its own `vm_id`, so one case's
//! record never leaks into another):
//! - `no_filter` — the same chain driver with no filter: the host's own share, to subtract.
//! - `record_unchanged` — 200 answers; the shared record never changes (the steady state: one
//!   shared-data `get`, no JSON parse expected).
//! - `record_changed` — the record is re-written (same bytes, new cas) before every request, so
//!   the filter must parse it every time (what a request pays right after another VM wrote).
//! - `failure_recorded` — 503 answers; each is recorded in the shared record (a strike: one CAS
//!   write), `failover.max_attempts` 1 so nothing is replayed.
//!
//! `cargo bench -p failover-host --bench hot_path` runs criterion. `... -- --callgrind CASE N`
//! runs N requests of CASE inside `measured` (after a warm-up) and exits: run it under
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*measured*'` for an
//! instruction count per request that noise does not move (bench/run does, with
//! `HOT_PATH_GO`, see `wait_for_go`, to skip instrumenting the start-up). `-- --quick` runs
//! every case a few hundred times without criterion (CI smoke run).
//! `FAILOVER_BENCH_WASM=path.wasm` benches another build of the filter.

/// The allocator `failover-host` ships with (host/src/main.rs), so the counts match the binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion};
use failover_host::stream::{run_filter_chain, Body, UpstreamInfo};
use failover_host::vm::{
    CallError, CallRequest, CallResponse, ClusterManager, DownstreamInfo, HostShared, PluginSpec,
    PluginVm, VmRole, WasmCode, EMBEDDED_FILTER,
};
use http_body_util::{BodyExt, Full};

const RECORD_KEY: &str = "failover.v1";
const CASES: [&str; 4] = [
    "no_filter",
    "record_unchanged",
    "record_changed",
    "failure_recorded",
];

/// The plugin JSON: two endpoints of one group (a weighted choice per request, as in
/// production); a failure threshold nobody reaches and one attempt, so `failure_recorded` adds a
/// strike per request and the record keeps the same shape.
const PLUGIN_CONFIG: &str = r#"{
  "endpoints": [
    { "name": "a", "cluster": "upstream_a", "group": "primary", "weight": 1 },
    { "name": "b", "cluster": "upstream_b", "group": "primary", "weight": 1 }
  ],
  "route_header": "x-failover-cluster",
  "failure": { "statuses": ["5xx", 429], "threshold": 4294967295 },
  "failover": { "max_attempts": 1 }
}"#;

const ANSWER: &str = r#"{"id":"msg_bench","type":"message","role":"assistant","model":"bench","content":[{"type":"text","text":"hello from the benchmark upstream"}],"stop_reason":"end_turn","usage":{"input_tokens":13,"output_tokens":7}}"#;

/// `dispatch_http_call` target; the cases never replay, so it only answers if asked.
struct Clusters;

impl ClusterManager for Clusters {
    fn has_cluster(&self, name: &str) -> bool {
        name == "upstream_a" || name == "upstream_b"
    }

    fn call(
        &self,
        _cluster: &str,
        _request: CallRequest,
        _timeout: Option<Duration>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<CallResponse, CallError>>>> {
        Box::pin(std::future::ready(Ok(CallResponse {
            headers: vec![(":status".into(), b"200".to_vec())],
            body: Bytes::from_static(ANSWER.as_bytes()),
            trailers: Vec::new(),
        })))
    }
}

fn wasm_code() -> WasmCode {
    match std::env::var_os("FAILOVER_BENCH_WASM") {
        Some(path) => WasmCode::File(path.into()),
        None => WasmCode::Embedded,
    }
}

fn has_proxy_wasm_abi() -> bool {
    if std::env::var_os("FAILOVER_BENCH_WASM").is_some() {
        return true;
    }
    let marker = b"proxy_abi_version_0_2_1";
    EMBEDDED_FILTER.windows(marker.len()).any(|w| w == marker)
}

fn spec(vm_id: &str) -> PluginSpec {
    PluginSpec {
        name: "failover".into(),
        root_id: "failover".into(),
        vm_id: vm_id.into(),
        configuration: PLUGIN_CONFIG.as_bytes().to_vec(),
        vm_configuration: Vec::new(),
        environment: Vec::new(),
        code: wasm_code(),
        fail_open: false,
        allow_on_headers_stop_iteration: false,
    }
}

fn downstream() -> DownstreamInfo {
    DownstreamInfo {
        source: std::net::SocketAddr::from(([127, 0, 0, 1], 40000)),
        destination: std::net::SocketAddr::from(([127, 0, 0, 1], 10000)),
        request_id: None,
    }
}

fn empty() -> Body {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn request() -> http::Request<Body> {
    let mut req = http::Request::new(empty());
    *req.uri_mut() = http::Uri::from_static("/v1/messages");
    req.headers_mut()
        .insert(http::header::HOST, http::HeaderValue::from_static("bench"));
    req.headers_mut().insert(
        http::header::USER_AGENT,
        http::HeaderValue::from_static("hot-path-bench"),
    );
    req
}

fn answer(status: u16) -> http::Response<Body> {
    let body = Full::new(Bytes::from_static(ANSWER.as_bytes()))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut resp = http::Response::new(body);
    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp.extensions_mut().insert(UpstreamInfo {
        response_flags: 0,
        code_details: "via_upstream".into(),
        cluster_name: Some("upstream_a".into()),
        ..Default::default()
    });
    resp
}

/// One case, set up: its own host state, its VM (absent for `no_filter`), its runtime.
struct Case {
    name: &'static str,
    vm_id: String,
    shared: HostShared,
    vms: Vec<Rc<PluginVm>>,
    status: u16,
    rewrite_record: bool,
    rt: tokio::runtime::Runtime,
    local: tokio::task::LocalSet,
}

impl Case {
    fn new(name: &'static str, shared: &HostShared) -> Self {
        let shared = shared.clone();
        let vm_id = format!("failover-{name}");
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => panic!("cannot create a runtime: {e}"),
        };
        let local = tokio::task::LocalSet::new();
        let vms = if name == "no_filter" {
            Vec::new()
        } else {
            let started = local.block_on(&rt, async {
                PluginVm::start(&shared, &spec(&vm_id), VmRole::Worker(0), Rc::new(Clusters))
            });
            match started {
                Ok(vm) => vec![vm],
                Err(e) => panic!("the filter does not start: {e}"),
            }
        };
        let case = Case {
            name,
            vm_id,
            shared,
            vms,
            status: if name == "failure_recorded" { 503 } else { 200 },
            rewrite_record: name == "record_changed",
            rt,
            local,
        };
        // Warm-up: the record exists, caches are filled, lazy host state is allocated.
        case.requests(64);
        case
    }

    /// Sends `n` requests, one after the other, each completely (body read, stream ended).
    fn requests(&self, n: u64) -> Duration {
        self.local.block_on(&self.rt, async {
            let start = Instant::now();
            for _ in 0..n {
                self.one().await;
            }
            start.elapsed()
        })
    }

    async fn one(&self) {
        if self.rewrite_record {
            // Same bytes, new cas: the filter's cached copy is stale and must be re-read.
            let data = self.shared.shared_data();
            if let Ok((value, _)) = data.get(&self.vm_id, RECORD_KEY) {
                let _ = data.set(&self.vm_id, RECORD_KEY, &value, 0);
            }
        }
        let status = self.status;
        let resp = run_filter_chain(&self.vms, downstream(), request(), |req| async move {
            black_box(&req);
            answer(status)
        })
        .await;
        let got = resp.status().as_u16();
        match resp.into_body().collect().await {
            Ok(body) => {
                black_box(body.to_bytes());
            }
            Err(e) => panic!("{}: response body failed: {e}", self.name),
        }
        if got != status {
            panic!("{}: expected {status}, the chain answered {got}", self.name);
        }
        // Let the deferred end-of-stream callbacks (on_log, on_done, on_delete) run, as the
        // worker's event loop would between requests.
        tokio::task::yield_now().await;
    }
}

/// The measured window for callgrind (`--toggle-collect='*measured*'`).
#[inline(never)]
fn measured(case: &Case, n: u64) -> Duration {
    case.requests(n)
}

/// With `HOT_PATH_GO=FILE`: say "ready" and wait (bounded) until FILE exists. bench/run starts
/// valgrind with instrumentation off (so compiling the module is not slowed down 50×), switches
/// it on with `callgrind_control -i on`, then creates FILE.
fn wait_for_go() {
    let Some(go) = std::env::var_os("HOT_PATH_GO") else {
        return;
    };
    println!("ready");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !std::path::Path::new(&go).exists() {
        if Instant::now() > deadline {
            eprintln!("HOT_PATH_GO: {go:?} did not appear within 120 s; measuring anyway");
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn record_after(case: &Case) -> String {
    match case.shared.shared_data().get(&case.vm_id, RECORD_KEY) {
        Ok((v, cas)) => format!("cas {cas}: {}", String::from_utf8_lossy(&v)),
        Err(e) => format!("({e:?})"),
    }
}

fn host() -> HostShared {
    match HostShared::new() {
        Ok(s) => s,
        Err(e) => panic!("cannot create the host: {e}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let shared = host();
    let filter_ok = has_proxy_wasm_abi();
    let cases: Vec<&'static str> = CASES
        .iter()
        .copied()
        .filter(|c| *c == "no_filter" || filter_ok)
        .collect();
    if !filter_ok {
        eprintln!("NOTE: the embedded filter is still the placeholder module (no proxy-wasm ABI): only `no_filter` runs");
    }

    if let Some(pos) = args.iter().position(|a| a == "--callgrind") {
        let name = args.get(pos + 1).map(String::as_str).unwrap_or("");
        let n: u64 = args
            .get(pos + 2)
            .and_then(|s| s.parse().ok())
            .unwrap_or(1000);
        let Some(&case) = cases.iter().find(|c| **c == name) else {
            eprintln!("--callgrind CASE N: CASE is one of {cases:?}");
            std::process::exit(2);
        };
        let c = Case::new(case, &shared);
        wait_for_go();
        let took = measured(&c, n);
        println!("{case}: {n} requests in {took:?}");
        println!("record after: {}", record_after(&c));
        return;
    }

    if args.iter().any(|a| a == "--quick") {
        for &name in &cases {
            let c = Case::new(name, &shared);
            let n = 500;
            let took = c.requests(n);
            println!(
                "{name}: {:.2} µs/request ({n} requests, wall time, not a measurement)",
                took.as_secs_f64() * 1e6 / n as f64
            );
        }
        return;
    }

    let mut criterion = Criterion::default().configure_from_args();
    {
        let mut group = criterion.benchmark_group("hot_path");
        for &name in &cases {
            let c = Case::new(name, &shared);
            group.bench_with_input(BenchmarkId::from_parameter(name), &c, |b, c| {
                b.iter_custom(|iters| c.requests(iters))
            });
        }
        group.finish();
    }
    criterion.final_summary();
}
