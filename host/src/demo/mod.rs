//! `failover-host demo`: two in-process mock upstreams (`flaky` fails with 503 on a schedule,
//! `steady` is always healthy), the proxy with the embedded filter and a built-in config
//! (2 workers, singleton verifier), a traffic loop, and a live view redrawn twice a second.
//! Ctrl-C (or `--duration`) ends it cleanly with a summary. Without a TTY the output is
//! plain text: one frame per second, no ANSI codes. `demo --fleet` runs three such proxies
//! sharing one failure queue through etcd (`fleet.rs`).

mod config;
mod etcd;
mod fleet;
mod traffic;
mod view;

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use failover_examples::mock::{self, FailMode, MockOptions, MockUpstream, Schedule};

use crate::bootstrap::{self, LoadOptions};
use crate::server::{ServeOptions, Server};

pub use config::{
    bootstrap_yaml, fleet_bootstrap_yaml, plugin_json, FleetSetup, ROUTE_HEADER, VM_ID,
};

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Stop after this long (`None`: until Ctrl-C).
    pub duration: Option<Duration>,
    /// Proxy worker threads (per proxy).
    pub concurrency: usize,
    /// Fleet mode: several proxies sharing one failure queue in etcd (`None`: one proxy).
    pub fleet: Option<FleetOptions>,
}

/// `demo --fleet` settings.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// How many proxies (each with `concurrency` workers).
    pub proxies: usize,
    /// The etcd to use (`http://IP:PORT`); `None`: start one from the `etcd` on `PATH`.
    pub etcd: Option<String>,
}

/// The shared record key the filter keeps its queue and counters under.
pub const RECORD_KEY: &str = "failover.v1";

/// Runs the demo.
///
/// # Errors
/// A mock, etcd or a proxy cannot start (e.g. the embedded filter rejects the demo config).
pub fn run(opts: DemoOptions) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the demo runtime")?;
    let local: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    let flaky_schedule = Schedule::Flap {
        healthy_for: Duration::from_secs(3),
        failing_for: Duration::from_secs(5),
        failing: FailMode::status(503),
    };
    let (flaky, steady) = rt
        .block_on(async {
            let flaky =
                mock::spawn_with(local, flaky_schedule, MockOptions::named("flaky")).await?;
            let steady =
                mock::spawn_with(local, Schedule::default(), MockOptions::named("steady")).await?;
            Ok::<_, std::io::Error>((flaky, steady))
        })
        .context("cannot start the mock upstreams")?;
    match &opts.fleet {
        None => run_single(&rt, &opts, &flaky, &steady),
        Some(fleet) => fleet::run(&rt, &opts, fleet, &flaky, &steady),
    }
}

/// One proxy, the original demo.
fn run_single(
    rt: &tokio::runtime::Runtime,
    opts: &DemoOptions,
    flaky: &MockUpstream,
    steady: &MockUpstream,
) -> anyhow::Result<()> {
    let yaml = bootstrap_yaml(flaky.addr(), steady.addr());
    let b = bootstrap::parse("<demo>".as_ref(), &yaml, &LoadOptions::default())?;
    let server = Server::start(b, serve_options(opts))?;
    let proxy = first_listener(&server)?;
    let tally = Arc::new(Mutex::new(traffic::Tally::default()));
    let started = Instant::now();
    let mocks = [flaky, steady];
    let frame = || frame_text(&server, &mocks, &tally, started);
    watch(rt, opts.duration, vec![proxy], 4, &tally, &frame);
    // A Ctrl-C during the shutdown below should not kill the process half-way.
    let final_text = frame();
    server.shutdown();
    finish(&final_text);
    Ok(())
}

fn serve_options(opts: &DemoOptions) -> ServeOptions {
    ServeOptions {
        concurrency: opts.concurrency.max(1),
        state_file: None,
        drain_time: Duration::from_secs(1),
    }
}

fn first_listener(server: &Server) -> anyhow::Result<std::net::SocketAddr> {
    server
        .listener_addrs()
        .first()
        .map(|(_, a)| *a)
        .context("the demo proxy has no listener")
}

/// Runs the traffic loops against `proxies` and redraws `frame` until `duration` ends or
/// Ctrl-C: twice a second on a terminal, once a second (plain lines) otherwise.
fn watch(
    rt: &tokio::runtime::Runtime,
    duration: Option<Duration>,
    proxies: Vec<std::net::SocketAddr>,
    loops: usize,
    tally: &Arc<Mutex<traffic::Tally>>,
    frame: &dyn Fn() -> String,
) {
    let tty = std::io::stdout().is_terminal();
    rt.block_on(async {
        let traffic = traffic::run(proxies, loops, Duration::from_millis(50), tally.clone());
        tokio::pin!(traffic);
        let stop = async {
            match duration {
                Some(d) => tokio::time::sleep(d).await,
                None => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        };
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(Duration::from_millis(if tty { 500 } else { 1000 }));
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = &mut traffic => break,
                _ = tick.tick() => draw(&frame(), tty),
            }
        }
    });
}

/// Prints the last frame and the closing line.
fn finish(final_text: &str) {
    let mut out = std::io::stdout().lock();
    if std::io::stdout().is_terminal() {
        let _ = write!(out, "\x1b[2J\x1b[H");
    }
    let _ = writeln!(out, "{final_text}");
    let _ = writeln!(out, "demo finished");
}

/// (name, mode label, requests received) of each mock, for the screen.
fn mock_rows(mocks: &[&MockUpstream]) -> Vec<(String, String, u64)> {
    mocks
        .iter()
        .map(|m| {
            let s = m.stats();
            (s.name, s.mode, s.requests)
        })
        .collect()
}

/// A JSON value the filter keeps in `server`'s shared data under `key`.
fn shared_json(server: &Server, key: &str) -> Option<serde_json::Value> {
    server
        .shared()
        .shared_data()
        .get(VM_ID, key)
        .ok()
        .and_then(|(v, _)| serde_json::from_slice(&v).ok())
}

fn frame_text(
    server: &Server,
    mocks: &[&MockUpstream],
    tally: &Mutex<traffic::Tally>,
    started: Instant,
) -> String {
    let tally = tally.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let metrics = server
        .shared()
        .metrics()
        .snapshot()
        .into_iter()
        .filter(|m| m.name.contains("failover"))
        .map(|m| (m.name, m.value))
        .collect();
    view::render(&view::Frame {
        elapsed: started.elapsed(),
        tally: &tally,
        mocks: mock_rows(mocks),
        record: shared_json(server, RECORD_KEY),
        metrics,
    })
}

fn draw(text: &str, tty: bool) {
    let mut out = std::io::stdout().lock();
    if tty {
        let _ = write!(out, "\x1b[2J\x1b[H{text}");
    } else {
        let _ = writeln!(out, "{text}");
    }
    let _ = out.flush();
}
