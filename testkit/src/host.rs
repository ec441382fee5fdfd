//! The one launcher of the `failover-host` process: [`Launch`] says which binary, arguments,
//! environment and bootstrap; [`Host`] is the running process (its output lines, its admin
//! `/ready` and `/stats`, signals, exit), killed when dropped; [`Launch::run`] runs it to exit.
//!
//! The kit never links the host: the test passes the binary's path, which is
//! `env!("CARGO_BIN_EXE_failover-host")` inside the host package and [`host_binary`] elsewhere.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::failover::Setup;
use crate::send::get;

/// Path of the `failover-host` binary next to the running test executable, (re)built once per
/// test process: `cargo test -p failover-tests` alone does not rebuild another package's
/// binary, and a stale host would embed a stale filter. For tests outside the host package.
///
/// # Panics
/// When the test executable's directory is unknown or `cargo build` fails.
pub fn host_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe()
            .unwrap_or_else(|e| panic!("the test executable's path is unknown: {e}"));
        let dir = exe
            .parent()
            .and_then(|d| {
                if d.ends_with("deps") {
                    d.parent()
                } else {
                    Some(d)
                }
            })
            .unwrap_or_else(|| panic!("no target dir above {}", exe.display()))
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
        let status = cmd
            .status()
            .unwrap_or_else(|e| panic!("run cargo build: {e}"));
        assert!(status.success(), "cargo build -p failover-host failed");
        dir.join("failover-host")
    })
    .clone()
}

/// A free loopback port (bound and released; good enough for tests on one machine). Never
/// the same port twice in one test process: the kernel may hand a just-released port out again,
/// and a host given one port for both its listener and its admin cannot start.
///
/// # Panics
/// When no loopback port can be bound.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut seen = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("bind 127.0.0.1:0: {e}"));
        if !seen.contains(&port) {
            seen.push(port);
            return port;
        }
    }
}

/// A loopback address on a [`free_port`].
pub fn free_addr() -> SocketAddr {
    ([127, 0, 0, 1], free_port()).into()
}

/// How to start the host: binary, arguments, environment, and optionally a bootstrap to write
/// to a temporary file and pass as `-c FILE` (before the other arguments). `RUST_LOG` is always
/// removed from the inherited environment, so only what a test sets counts.
#[derive(Debug, Clone)]
pub struct Launch {
    bin: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    config: Option<String>,
    listen: SocketAddr,
    admin: SocketAddr,
}

/// The address a [`Host`] reports for a listener the launch did not name.
pub const UNKNOWN_ADDR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::UNSPECIFIED,
    0,
));

impl Launch {
    /// The binary `bin` with no arguments.
    pub fn new(bin: impl AsRef<Path>) -> Self {
        Self {
            bin: bin.as_ref().to_path_buf(),
            args: Vec::new(),
            env: Vec::new(),
            config: None,
            listen: UNKNOWN_ADDR,
            admin: UNKNOWN_ADDR,
        }
    }

    /// Adds command-line arguments.
    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// Sets environment variables for the process.
    pub fn envs<K: AsRef<OsStr>, V: AsRef<OsStr>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.env.extend(
            vars.into_iter()
                .map(|(k, v)| (k.as_ref().to_os_string(), v.as_ref().to_os_string())),
        );
        self
    }

    /// The bootstrap text, written to `bootstrap.yaml` in a temporary directory the [`Host`]
    /// keeps (for reloads), passed as `-c`.
    pub fn config(mut self, yaml: impl Into<String>) -> Self {
        self.config = Some(yaml.into());
        self
    }

    /// The listener and admin addresses the bootstrap uses (what [`Host::listen`] and
    /// [`Host::admin`] report; [`UNKNOWN_ADDR`] otherwise, see [`Host::wait_addr`]).
    pub fn addresses(mut self, listen: SocketAddr, admin: SocketAddr) -> Self {
        self.listen = listen;
        self.admin = admin;
        self
    }

    fn command(&self, config: Option<&Path>) -> Command {
        let mut cmd = Command::new(&self.bin);
        if let Some(path) = config {
            cmd.arg("-c").arg(path);
        }
        cmd.args(&self.args)
            .env_remove("RUST_LOG")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Starts the process, its stdout and stderr collected line by line.
    pub fn spawn(&self) -> std::io::Result<Host> {
        let dir = tempfile::tempdir()?;
        let config_path = dir.path().join("bootstrap.yaml");
        if let Some(yaml) = &self.config {
            std::fs::write(&config_path, yaml)?;
        }
        let mut child = self
            .command(self.config.as_ref().map(|_| config_path.as_path()))
            .spawn()?;
        let all = Lines::default();
        let stdout = Lines::default();
        let stderr = Lines::default();
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(collect(out, stdout.clone(), all.clone()));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(collect(err, stderr.clone(), all.clone()));
        }
        Ok(Host {
            child,
            all,
            stdout,
            stderr,
            readers,
            listen: self.listen,
            admin: self.admin,
            config_path,
            _dir: dir,
        })
    }

    /// Runs the process to its exit, killed after `limit` (then `status` is `None`).
    pub fn run(&self, limit: Duration) -> std::io::Result<Output> {
        let mut host = self.spawn()?;
        let status = host.try_wait_exit(limit);
        if status.is_none() {
            host.kill();
        }
        host.finish_reading();
        Ok(Output {
            status,
            stdout: host.stdout_text(),
            stderr: host.stderr_text(),
        })
    }
}

/// Output of a finished run.
#[derive(Debug)]
pub struct Output {
    /// Exit status; `None` when the run was killed at its time limit.
    pub status: Option<ExitStatus>,
    /// stdout.
    pub stdout: String,
    /// stderr.
    pub stderr: String,
}

impl Output {
    /// True when the process exited by itself with status 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// stdout, then stderr.
    pub fn combined(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Lines read from the process so far.
type Lines = Arc<Mutex<Vec<String>>>;

fn collect(
    stream: impl Read + Send + 'static,
    own: Lines,
    all: Lines,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            all.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(line.clone());
            own.lock().unwrap_or_else(|p| p.into_inner()).push(line);
        }
    })
}

fn joined(lines: &Lines) -> String {
    lines.lock().unwrap_or_else(|p| p.into_inner()).join("\n")
}

/// A running `failover-host`; killed when dropped.
pub struct Host {
    child: Child,
    all: Lines,
    stdout: Lines,
    stderr: Lines,
    readers: Vec<std::thread::JoinHandle<()>>,
    /// The proxy listener ([`UNKNOWN_ADDR`] when the launch did not say).
    pub listen: SocketAddr,
    /// The admin listener ([`UNKNOWN_ADDR`] when the launch did not say).
    pub admin: SocketAddr,
    /// The bootstrap file (kept for reloads and restarts; absent if the launch had none).
    pub config_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Host {
    /// Starts the failover filter as `setup` says (on the binary [`host_binary`]) and waits
    /// until `/ready` answers 200 (at most 60 s).
    pub async fn start(setup: &Setup) -> Host {
        Host::start_with_env(setup, &[]).await
    }

    /// [`Host::start`] with extra environment variables for the host process (e.g. `RUST_LOG`
    /// to get the plugin's `trace` lines without the Wasm compiler's own trace output, which
    /// makes a debug build take minutes to start).
    pub async fn start_with_env(setup: &Setup, env: &[(&str, &str)]) -> Host {
        let (listen, admin) = (free_addr(), free_addr());
        let mut args: Vec<OsString> = vec![
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

    /// Starts [`host_binary`] on any bootstrap text (a shipped file, say) whose listener is
    /// `listen` and admin listener `admin`, with extra command-line `args` and environment
    /// `env` (plus `NO_COLOR=1`), and waits for `/ready` (at most 60 s).
    pub async fn start_bootstrap(
        yaml: &str,
        listen: SocketAddr,
        admin: SocketAddr,
        args: &[impl AsRef<OsStr>],
        env: &[(&str, &str)],
    ) -> Host {
        let launch = Launch::new(host_binary())
            .config(yaml)
            .addresses(listen, admin)
            .args(args)
            .envs([("NO_COLOR", "1")])
            .envs(env.iter().copied());
        let mut host = launch
            .spawn()
            .unwrap_or_else(|e| panic!("spawn failover-host: {e}"));
        host.wait_ready(Duration::from_secs(60)).await;
        host
    }

    /// Waits for the admin `/ready` == 200; panics with the logs when the process exits first
    /// or `limit` passes.
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

    /// Waits (at most 60 s) for a stderr line containing `marker` followed by an address (how
    /// the host logs the ports it got for port 0), and returns it.
    pub fn wait_addr(&mut self, marker: &str) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let found = self
                .stderr
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .find_map(|l| {
                    let rest = &l[l.find(marker)? + marker.len()..];
                    rest.split_whitespace().next()?.parse().ok()
                });
            if let Some(a) = found {
                return a;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "failover-host exited ({status}) before logging {marker:?}: {}",
                    self.stderr_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {marker:?} line: {}",
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// All output lines so far (stdout and stderr, in the order they were read).
    pub fn logs(&self) -> String {
        joined(&self.all)
    }

    /// stdout so far.
    pub fn stdout_text(&self) -> String {
        joined(&self.stdout)
    }

    /// stderr so far.
    pub fn stderr_text(&self) -> String {
        joined(&self.stderr)
    }

    /// Number of output lines containing every one of `needles`.
    pub fn count_lines(&self, needles: &[&str]) -> usize {
        self.all
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
            .unwrap_or_else(|e| panic!("status request: {e}"));
        assert_eq!(r.status, 200, "status page: {}", r.text());
        serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("status JSON: {e}"))
    }

    /// Admin `/stats` as name → value.
    pub async fn stats(&self) -> BTreeMap<String, i64> {
        let r = get(self.admin, "/stats")
            .await
            .unwrap_or_else(|e| panic!("admin /stats: {e}"));
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

    /// Sends a signal by name (`HUP`, `TERM`, `INT`, `KILL`).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} failed");
    }

    /// Writes `yaml` over the bootstrap file and sends `SIGHUP` (the reload users do).
    pub fn reload(&self, yaml: &str) {
        std::fs::write(&self.config_path, yaml)
            .unwrap_or_else(|e| panic!("rewrite {}: {e}", self.config_path.display()));
        self.signal("HUP");
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit, at most `limit`; `None` if it is still running then.
    pub fn try_wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit; panics with the logs after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let status = self.try_wait_exit(limit);
        let status = status.unwrap_or_else(|| panic!("no exit within {limit:?}:\n{}", self.logs()));
        self.finish_reading();
        status
    }

    /// After the exit: waits for the readers to take the last lines (the pipes close with
    /// the process).
    fn finish_reading(&mut self) {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }

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

impl Drop for Host {
    fn drop(&mut self) {
        self.kill();
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

/// Runs [`host_binary`] with `args` (and `NO_COLOR=1`) until it exits, killed after `limit`: its
/// exit status (`None` if it had to be killed) and everything it printed. For start-up errors.
pub fn run_host_to_exit(args: &[&OsStr], limit: Duration) -> (Option<ExitStatus>, String) {
    let out = Launch::new(host_binary())
        .args(args)
        .envs([("NO_COLOR", "1")])
        .run(limit)
        .unwrap_or_else(|e| panic!("spawn failover-host: {e}"));
    let text = out.combined();
    (out.status, text)
}
