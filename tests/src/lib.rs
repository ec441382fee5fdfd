//! Harness for the end-to-end suites: writes an Envoy bootstrap for a test, runs the real
//! `failover-host` binary on it (the real `.wasm` inside), waits for `/ready`, and gives the
//! test the proxy's address, the plugin's status document, the admin stats and the log lines.
//!
//! Everything is on loopback and bounded in time; the process is killed when the [`Host`] is
//! dropped.
#![allow(clippy::missing_panics_doc)]

pub mod dep_audit;
pub mod etcd;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

pub use failover_examples::{load, mock};

/// The header the filter writes and the routes read in every test bootstrap.
pub const ROUTE_HEADER: &str = "x-failover-cluster";

/// Path of the `failover-host` binary next to the test executable, (re)built once per test
/// process: `cargo test -p failover-tests` alone does not rebuild another package's binary, and
/// a stale host would embed a stale filter.
pub fn host_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        let dir = exe
            .parent()
            .and_then(|d| {
                if d.ends_with("deps") {
                    d.parent()
                } else {
                    Some(d)
                }
            })
            .expect("target dir")
            .to_path_buf();
        let profile = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "debug".into());
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "failover-host",
            "--bin",
            "failover-host",
        ]);
        if profile != "debug" {
            cmd.args(["--profile", &profile]);
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "cargo build -p failover-host failed");
        dir.join("failover-host")
    })
    .clone()
}

/// A free loopback port (bound and released; good enough for tests on one machine). Never
/// the same port twice in one test process: the kernel may hand a just-released port out again,
/// and a host given one port for both its listener and its admin cannot start.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut seen = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("bind 127.0.0.1:0");
        if !seen.contains(&port) {
            seen.push(port);
            return port;
        }
    }
}

/// A plugin config with quick, test-friendly timings; `endpoints` are `(name, cluster, group)`.
pub fn plugin_config(endpoints: &[(&str, &str, &str)]) -> Value {
    let eps: Vec<Value> = endpoints
        .iter()
        .map(|(name, cluster, group)| json!({"name": name, "cluster": cluster, "group": group}))
        .collect();
    json!({
        "endpoints": eps,
        "route_header": ROUTE_HEADER,
        "failover": { "max_attempts": 3, "max_request_bytes": 65536, "attempt_timeout_ms": 3000 },
        "verifier": { "interval_ms": 500, "max_interval_ms": 2000, "timeout_ms": 1000 },
        "when_all_queued": "least_recently_failed",
    })
}

/// Merges `patch` into `base` (objects recursively, everything else replaced).
pub fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The plugin JSON.
    pub plugin: Value,
    /// Clusters: name → address.
    pub clusters: Vec<(String, SocketAddr)>,
    /// Worker VMs.
    pub concurrency: usize,
    /// Add the singleton verifier service (`failover_verifier`).
    pub singleton_verifier: bool,
    /// Route timeout, Envoy duration syntax.
    pub route_timeout: String,
    /// Cluster connect timeout.
    pub connect_timeout: String,
    /// `--log-level`.
    pub log_level: String,
    /// `vm_config.environment_variables.key_values`.
    pub vm_env: Vec<(String, String)>,
    /// `--state-file`.
    pub state_file: Option<PathBuf>,
    /// `allow_on_headers_stop_iteration: true` in the Wasm filter's config (Envoy ≥ 1.35): a
    /// Pause at headers lets body callbacks go on. Needed by the plugin's `hold_headers`.
    pub stop_iteration_at_headers: bool,
    /// Clusters with no endpoint at all: the router answers them 503 UH (no healthy upstream).
    pub empty_clusters: Vec<String>,
}

impl Setup {
    /// Defaults: 4 workers, no singleton, 5 s route timeout, info logs.
    pub fn new(plugin: Value, clusters: &[(&str, SocketAddr)]) -> Self {
        Self {
            plugin,
            clusters: clusters.iter().map(|(n, a)| (n.to_string(), *a)).collect(),
            concurrency: 4,
            singleton_verifier: false,
            route_timeout: "5s".into(),
            connect_timeout: "0.5s".into(),
            log_level: "info".into(),
            vm_env: Vec::new(),
            state_file: None,
            stop_iteration_at_headers: false,
            empty_clusters: Vec::new(),
        }
    }

    /// The bootstrap YAML for listener `listen` and admin `admin`.
    pub fn bootstrap(&self, listen: SocketAddr, admin: SocketAddr) -> String {
        let json = Value::String(self.plugin.to_string()).to_string();
        let env: String = self
            .vm_env
            .iter()
            .map(|(k, v)| format!("\n            {k}: {}", Value::String(v.clone())))
            .collect();
        let env_block = if self.vm_env.is_empty() {
            String::new()
        } else {
            format!(
                "\n          environment_variables:\n            key_values:{}",
                env.replace("\n            ", "\n              ")
            )
        };
        let plugin = |name: &str, indent: &str| {
            format!(
                "name: {name}\n{indent}root_id: {name}\n{indent}vm_config:\n{indent}  vm_id: failover_test\n{indent}  runtime: envoy.wasm.runtime.v8\n{indent}  code: {{ local: {{ filename: \"builtin:failover\" }} }}{env}\n{indent}configuration:\n{indent}  \"@type\": type.googleapis.com/google.protobuf.StringValue\n{indent}  value: {json}",
                env = env_block.replace("\n          ", &format!("\n{indent}  ")),
            )
        };
        let clusters: String = self
            .clusters
            .iter()
            .map(|(name, addr)| {
                format!(
                    "\n  - name: {name}\n    type: STATIC\n    connect_timeout: {ct}\n    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n        - endpoint: {{ address: {{ socket_address: {{ address: \"{ip}\", port_value: {port} }} }} }}",
                    ct = self.connect_timeout,
                    ip = addr.ip(),
                    port = addr.port()
                )
            })
            .chain(self.empty_clusters.iter().map(|name| {
                format!(
                    "\n  - name: {name}\n    type: STATIC\n    connect_timeout: {ct}\n    load_assignment:\n      cluster_name: {name}\n      endpoints: []",
                    ct = self.connect_timeout,
                )
            }))
            .collect();
        let stop_iteration = if self.stop_iteration_at_headers {
            "\n                allow_on_headers_stop_iteration: true"
        } else {
            ""
        };
        let singleton = if self.singleton_verifier {
            format!(
                "bootstrap_extensions:\n- name: envoy.bootstrap.wasm\n  typed_config:\n    \"@type\": type.googleapis.com/envoy.extensions.wasm.v3.WasmService\n    singleton: true\n    config:\n      {}\n",
                plugin("failover_verifier", "      ")
            )
        } else {
            String::new()
        };
        format!(
            r#"admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin_port} }} }}
static_resources:
  listeners:
  - name: main
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {listen_port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: main
          route_config:
            name: main
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster_header: {ROUTE_HEADER}, timeout: {timeout} }}
          http_filters:
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                {filter}{stop_iteration}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:{clusters}
{singleton}"#,
            admin_port = admin.port(),
            listen_port = listen.port(),
            timeout = self.route_timeout,
            filter = plugin("failover", "                "),
        )
    }
}

/// A running `failover-host`.
pub struct Host {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// The proxy listener.
    pub listen: SocketAddr,
    /// The admin listener.
    pub admin: SocketAddr,
    /// The bootstrap file (kept for reloads and restarts).
    pub config_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Host {
    /// Starts the host and waits until `/ready` answers 200 (at most 60 s).
    pub async fn start(setup: &Setup) -> Host {
        Host::start_with_env(setup, &[]).await
    }

    /// Waits for `/ready` == 200.
    pub async fn wait_ready(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(r) = get(self.admin, "/ready").await {
                if r.status == 200 {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "failover-host exited ({status}) before /ready:\n{}",
                    self.logs()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no /ready within {limit:?}:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// All output lines so far.
    pub fn logs(&self) -> String {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .join("\n")
    }

    /// Number of output lines containing every one of `needles`.
    pub fn count_lines(&self, needles: &[&str]) -> usize {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .count()
    }

    /// The plugin's status document (from 127.0.0.1, which `allow_from` admits by default).
    pub async fn status(&self) -> Value {
        let r = get(self.listen, "/failover/status")
            .await
            .expect("status request");
        assert_eq!(r.status, 200, "status page: {}", r.text());
        serde_json::from_slice(&r.body).expect("status JSON")
    }

    /// Admin `/stats` as name → value.
    pub async fn stats(&self) -> BTreeMap<String, i64> {
        let r = get(self.admin, "/stats").await.expect("admin /stats");
        r.text()
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(": ")?;
                Some((k.trim().to_string(), v.trim().parse().ok()?))
            })
            .collect()
    }

    /// A stat, 0 when absent.
    pub async fn stat(&self, name: &str) -> i64 {
        self.stats().await.get(name).copied().unwrap_or(0)
    }

    /// Sends a signal (`HUP`, `TERM`, `KILL`).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "no exit within {limit:?}:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status.
    pub status: u16,
    /// Headers (lowercase names).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Bytes,
}

impl Answer {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on a fresh connection, 15 s limit.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<Answer, String> {
    let fut = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(conn);
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "failover.test");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(body.into()))
            .map_err(|e| e.to_string())?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok(Answer {
            status,
            headers,
            body,
        })
    };
    tokio::time::timeout(Duration::from_secs(15), fut)
        .await
        .map_err(|_| "timed out after 15 s".to_string())?
}

/// `GET path`.
pub async fn get(addr: SocketAddr, path: &str) -> Result<Answer, String> {
    send(addr, "GET", path, &[], Bytes::new()).await
}

/// Polls `f` every 50 ms until it returns `Some`, at most `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts a mock upstream on a free loopback port.
pub async fn mock_upstream(name: &str, schedule: mock::Schedule) -> mock::MockUpstream {
    mock::spawn_with(
        ([127, 0, 0, 1], 0).into(),
        schedule,
        mock::MockOptions::named(name),
    )
    .await
    .expect("spawn mock upstream")
}

// ===== helpers for the hardening suites (faults, soak, state_kill, security, bad_input) =====

impl Host {
    /// The host's process id (for `/proc/PID/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The host's resident set size in KiB; `None` once the process is gone.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid())
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// `VmRSS` of a process in KiB, read from `/proc/PID/status` (Linux); `None` when unreadable.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Runs `failover-host` with `args` until it exits (killed after `limit`): its exit status
/// (`None` if it had to be killed) and everything it printed. For start-up errors.
pub fn run_host_to_exit(
    args: &[&std::ffi::OsStr],
    limit: Duration,
) -> (Option<std::process::ExitStatus>, String) {
    let mut child = Command::new(host_binary())
        .args(args)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn failover-host");
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|mut s| {
        std::thread::spawn(move || {
            let mut out = String::new();
            let mut buf = Vec::new();
            let _ = std::io::Read::read_to_end(&mut s, &mut buf);
            out.push_str(&String::from_utf8_lossy(&buf));
            out
        })
    })
    .collect();
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let output = readers
        .into_iter()
        .filter_map(|r| r.join().ok())
        .collect::<Vec<_>>()
        .join("\n");
    (status, output)
}

/// Writes `bytes` on a fresh TCP connection and reads until the peer closes or `limit` passes:
/// for requests no well-behaved client library would send (invalid UTF-8, broken framing).
pub async fn raw_exchange(
    addr: SocketAddr,
    bytes: &[u8],
    limit: Duration,
) -> Result<Vec<u8>, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        s.write_all(bytes)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match s.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                // A reset after (part of) an answer is still an answer.
                Err(_) if !out.is_empty() => break,
                Err(e) => return Err(format!("read: {e}")),
            }
        }
        Ok(out)
    };
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) => Err(format!("no close within {limit:?}")),
    }
}

impl Host {
    /// [`Host::start`] with extra environment variables for the host process (e.g. `RUST_LOG`
    /// to get the plugin's `trace` lines without the Wasm compiler's own trace output, which
    /// makes a debug build take minutes to start).
    pub async fn start_with_env(setup: &Setup, env: &[(&str, &str)]) -> Host {
        let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let mut args: Vec<std::ffi::OsString> = vec![
            "--concurrency".into(),
            setup.concurrency.to_string().into(),
            "--log-level".into(),
            setup.log_level.clone().into(),
        ];
        if let Some(state) = &setup.state_file {
            args.extend(["--state-file".into(), state.clone().into()]);
        }
        Host::start_bootstrap(&setup.bootstrap(listen, admin), listen, admin, &args, env).await
    }

    /// Starts the host on any bootstrap text (a shipped file, say) whose listener is `listen`
    /// and admin listener `admin`, with extra command-line `args` and environment `env`.
    pub async fn start_bootstrap(
        yaml: &str,
        listen: SocketAddr,
        admin: SocketAddr,
        args: &[impl AsRef<std::ffi::OsStr>],
        env: &[(&str, &str)],
    ) -> Host {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("bootstrap.yaml");
        std::fs::write(&config_path, yaml).expect("write bootstrap");
        let mut cmd = Command::new(host_binary());
        cmd.arg("-c")
            .arg(&config_path)
            .args(args)
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn failover-host");
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                }
            });
        }
        let mut host = Host {
            child,
            lines,
            listen,
            admin,
            config_path,
            _dir: dir,
        };
        host.wait_ready(Duration::from_secs(60)).await;
        host
    }
}
