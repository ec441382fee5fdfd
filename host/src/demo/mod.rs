//! `failover-host demo`: two in-process mock upstreams (`flaky` fails with 503 on a schedule,
//! `steady` is always healthy), the proxy with the embedded filter and a built-in config
//! (2 workers, singleton verifier), a traffic loop, and a live view redrawn twice a second.
//! Ctrl-C (or `--duration`) ends it cleanly with a summary. Without a TTY the output is
//! plain text: one frame per second, no ANSI codes.

mod config;
mod traffic;
mod view;

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use failover_examples::mock::{self, FailMode, MockOptions, MockUpstream, Schedule};

use crate::bootstrap::{self, LoadOptions};
use crate::server::{ServeOptions, Server};

pub use config::{bootstrap_yaml, plugin_json, ROUTE_HEADER, VM_ID};

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Stop after this long (`None`: until Ctrl-C).
    pub duration: Option<Duration>,
    /// Proxy worker threads.
    pub concurrency: usize,
}

/// The shared record key the filter keeps its queue and counters under.
pub const RECORD_KEY: &str = "failover.v1";

/// Runs the demo.
///
/// # Errors
/// A mock or the proxy cannot start (e.g. the embedded filter rejects the demo config).
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

    let yaml = bootstrap_yaml(flaky.addr(), steady.addr());
    let b = bootstrap::parse("<demo>".as_ref(), &yaml, &LoadOptions::default())?;
    let server = Server::start(
        b,
        ServeOptions {
            concurrency: opts.concurrency.max(1),
            state_file: None,
            drain_time: Duration::from_secs(1),
        },
    )?;
    let proxy = server
        .listener_addrs()
        .first()
        .map(|(_, a)| *a)
        .context("the demo proxy has no listener")?;

    let tty = std::io::stdout().is_terminal();
    let tally = Arc::new(Mutex::new(traffic::Tally::default()));
    let started = Instant::now();
    rt.block_on(async {
        let traffic = traffic::run(proxy, 4, Duration::from_millis(50), tally.clone());
        tokio::pin!(traffic);
        let stop = async {
            match opts.duration {
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
                _ = tick.tick() => draw(&server, &[&flaky, &steady], &tally, started, tty),
            }
        }
    });
    // A Ctrl-C during the shutdown below should not kill the process half-way.
    let final_text = frame_text(&server, &[&flaky, &steady], &tally, started);
    server.shutdown();
    drop(rt);
    let mut out = std::io::stdout().lock();
    if tty {
        let _ = write!(out, "\x1b[2J\x1b[H");
    }
    let _ = writeln!(out, "{final_text}");
    let _ = writeln!(out, "demo finished");
    Ok(())
}

fn frame_text(
    server: &Server,
    mocks: &[&MockUpstream],
    tally: &Mutex<traffic::Tally>,
    started: Instant,
) -> String {
    let tally = tally.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let record = server
        .shared()
        .shared_data()
        .get(VM_ID, RECORD_KEY)
        .ok()
        .and_then(|(v, _)| serde_json::from_slice(&v).ok());
    let metrics = server
        .shared()
        .metrics()
        .snapshot()
        .into_iter()
        .filter(|m| m.name.contains("failover"))
        .map(|m| (m.name, m.value))
        .collect();
    let mocks = mocks
        .iter()
        .map(|m| {
            let s = m.stats();
            (s.name, s.mode, s.requests)
        })
        .collect();
    view::render(&view::Frame {
        elapsed: started.elapsed(),
        tally: &tally,
        mocks,
        record,
        metrics,
    })
}

fn draw(
    server: &Server,
    mocks: &[&MockUpstream],
    tally: &Mutex<traffic::Tally>,
    started: Instant,
    tty: bool,
) {
    let text = frame_text(server, mocks, tally, started);
    let mut out = std::io::stdout().lock();
    if tty {
        let _ = write!(out, "\x1b[2J\x1b[H{text}");
    } else {
        let _ = writeln!(out, "{text}");
    }
    let _ = out.flush();
}
