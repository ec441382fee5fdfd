//! `mock-upstream`: an HTTP/1.1 upstream you can tell to fail, for demos, scripts and tests.
//!
//! Prints one JSON line on stdout once listening (`{"name":..,"listen":..,"control":..,
//! "mode":..}`) so a test that passes port 0 can read the real ports; runs until Ctrl-C/SIGTERM.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use failover_examples::mock::{self, MockOptions, Schedule};

const MODES: &str = "\
MODES (--mode and POST /mode on the control port):
  healthy                     200, LLM-style JSON naming this mock (SSE if the body has \"stream\":true)
  status:CODE[:name=value]... that status with those headers; body=TEXT last takes the rest
                              e.g. status:503   status:429:retry-after=3   status:529
                                   status:200:body={\"type\":\"error\"}
  error-body                  200 whose JSON body is {\"type\":\"error\",...}
  refuse                      stop listening: connections are refused
  reset                       read the request, close with RST before any header
  reset-mid-body              send headers and half the body, then RST
  hang                        read the request, never answer
  slow:BYTES_PER_SEC          healthy answer trickled at that rate
  delay:DURATION              healthy answer after DURATION (3s, 500ms)
  sse-cut:N                   SSE headers and N events, then the connection is cut
  sse-error                   SSE stream ending with an `event: error` frame
SCHEDULES:
  flap:HEALTHY_FOR:FAILING_FOR:MODE   e.g. flap:3s:3s:status:503 (starts healthy)
  steps:DUR=MODE;DUR=MODE;...          each mode for its duration, the last one forever

CONTROL API (--control ADDR):
  GET /stats   GET /requests[?since_ms=N]   GET /mode   POST /mode (body: a mode)   POST /reset

EXAMPLES:
  mock-upstream --listen 127.0.0.1:8001 --name a
  mock-upstream --listen 127.0.0.1:8002 --name b --mode flap:5s:5s:refuse --control 127.0.0.1:9002
  curl -d 'status:429:retry-after=3' 127.0.0.1:9002/mode";

/// A mock upstream HTTP/1.1 server that can be told to fail.
#[derive(Parser, Debug)]
#[command(name = "mock-upstream", version, after_help = MODES)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8001")]
    listen: SocketAddr,
    /// Name sent in the `x-mock-name` header and in the healthy body.
    #[arg(long, default_value = "mock")]
    name: String,
    /// Mode or schedule to start with (see MODES below).
    #[arg(long, default_value = "healthy")]
    mode: Schedule,
    /// Address for the control API (off if not given).
    #[arg(long)]
    control: Option<SocketAddr>,
    /// How many requests the request log keeps.
    #[arg(long, default_value_t = 10_000)]
    log_capacity: usize,
    /// Do not keep request headers in the request log (less work per request).
    #[arg(long)]
    no_record_headers: bool,
    /// Log filter (RUST_LOG syntax), e.g. info, debug.
    #[arg(long, default_value = "info")]
    log_level: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&args.log_level)
                .with_context(|| format!("invalid --log-level `{}`", args.log_level))?,
        )
        .with_writer(std::io::stderr)
        .init();
    let opts = MockOptions {
        name: args.name.clone(),
        log_capacity: args.log_capacity,
        record_headers: !args.no_record_headers,
    };
    let m = mock::spawn_with(args.listen, args.mode.clone(), opts)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let control = match args.control {
        Some(addr) => Some(
            mock::spawn_control(addr, m.clone())
                .await
                .with_context(|| format!("cannot listen on --control {addr}"))?,
        ),
        None => None,
    };
    let line = serde_json::json!({
        "name": args.name,
        "listen": m.addr().to_string(),
        "control": control.as_ref().map(|c| c.addr().to_string()),
        "mode": args.mode.to_string(),
    });
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    wait_for_signal().await?;
    tracing::info!("shutting down");
    if let Some(c) = control {
        c.shutdown();
    }
    m.shutdown();
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot wait for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}
