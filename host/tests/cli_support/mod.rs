//! Test support for the CLI tests: run the real binary with a time limit, capture its output,
//! find the addresses it logs.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_failover-host");

/// Output of a finished run.
pub struct Output {
    /// Exit status.
    pub status: ExitStatus,
    /// stdout.
    pub stdout: String,
    /// stderr.
    pub stderr: String,
}

/// Starts the binary with `args`, stdout and stderr piped (read them with [`collect`]).
pub fn spawn(args: &[&str]) -> Child {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn failover-host")
}

/// Runs the binary to completion, killing it after `limit`.
pub fn run(args: &[&str], limit: Duration) -> Output {
    let mut child = spawn(args);
    let out = collect(&mut child, "stdout");
    let err = collect(&mut child, "stderr");
    let status = wait_for_exit(&mut child, limit).unwrap_or_else(|| {
        panic!(
            "failover-host {args:?} did not finish within {limit:?}; stderr: {}",
            joined(&err)
        )
    });
    let stdout = joined(&out);
    let stderr = joined(&err);
    Output {
        status,
        stdout,
        stderr,
    }
}

/// Waits up to `limit` for `child` to exit; on time-out kills it and returns `None`. Gives the
/// readers of [`collect`] a moment to take the last lines.
pub fn wait_for_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(50));
    Some(status)
}

/// The lines [`collect`] has read so far, joined.
pub fn joined(lines: &Mutex<Vec<String>>) -> String {
    lines.lock().unwrap_or_else(|p| p.into_inner()).join("\n")
}

/// Collects one of `child`'s piped streams (`"stdout"` or `"stderr"`) line by line.
pub fn collect(child: &mut Child, which: &str) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l = lines.clone();
    let reader: Box<dyn std::io::Read + Send> = match which {
        "stdout" => Box::new(child.stdout.take().expect("stdout")),
        _ => Box::new(child.stderr.take().expect("stderr")),
    };
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            l.lock().unwrap().push(line);
        }
    });
    lines
}

/// A running server process; killed when dropped.
pub struct Running {
    /// The process.
    pub child: Child,
    /// Its stdout lines so far.
    pub stdout: Arc<Mutex<Vec<String>>>,
    /// Its stderr lines so far.
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl Running {
    /// Starts the binary with `args` (stdout and stderr captured).
    pub fn start(args: &[&str]) -> Self {
        let mut child = spawn(args);
        let stdout = collect(&mut child, "stdout");
        let stderr = collect(&mut child, "stderr");
        Self {
            child,
            stdout,
            stderr,
        }
    }

    /// Waits for a logged line containing `marker` followed by an address, and returns it.
    pub fn wait_addr(&mut self, marker: &str) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let found = self.stderr.lock().unwrap().iter().find_map(|l| {
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

    /// All stderr so far.
    pub fn stderr_text(&self) -> String {
        joined(&self.stderr)
    }

    /// Sends a signal by name (`HUP`, `TERM`, `INT`).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        wait_for_exit(&mut self.child, limit).unwrap_or_else(|| {
            panic!(
                "failover-host did not exit within {limit:?}: {}",
                self.stderr_text()
            )
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Repeats `f` until it returns `Some`, at most `limit`.
pub fn eventually<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
