//! `loadgen`: a small HTTP/1.1 load generator (keep-alive connections, duration or count,
//! optional rate) that reports ok/failed, statuses, which upstream answered, and latency.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use failover_examples::load::{self, LoadConfig, Stop, MESSAGES_BODY};
use failover_examples::mock::mode::parse_duration;

/// Send HTTP/1.1 load to one URL and report what came back.
#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    version,
    after_help = "EXAMPLES:\n  loadgen http://127.0.0.1:10000/v1/messages -c 16 -d 10s --messages\n  \
                  loadgen http://127.0.0.1:8001/ -n 1000 --json"
)]
struct Args {
    /// Target URL (http:// only).
    url: String,
    /// Concurrent keep-alive connections.
    #[arg(short = 'c', long, default_value_t = 8)]
    concurrency: usize,
    /// Run for this long (e.g. 10s, 500ms).
    #[arg(short = 'd', long, value_parser = dur, conflicts_with = "requests")]
    duration: Option<Duration>,
    /// Send this many requests (default 1000 when no --duration).
    #[arg(short = 'n', long)]
    requests: Option<u64>,
    /// HTTP method (default GET, or POST with a body).
    #[arg(short = 'X', long)]
    method: Option<String>,
    /// Request body text.
    #[arg(long, conflicts_with_all = ["body_file", "messages"])]
    body: Option<String>,
    /// Read the request body from a file.
    #[arg(long, conflicts_with = "messages")]
    body_file: Option<std::path::PathBuf>,
    /// POST a minimal LLM messages request (JSON).
    #[arg(long)]
    messages: bool,
    /// Extra header `name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// Per-request time limit.
    #[arg(long, value_parser = dur, default_value = "10s")]
    timeout: Duration,
    /// Total requests per second (default: as fast as answers come).
    #[arg(long)]
    rate: Option<f64>,
    /// Response header tallied as "which upstream answered".
    #[arg(long, default_value = "x-mock-name")]
    name_header: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn dur(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let mut cfg = LoadConfig::new(&a.url)?;
    if a.messages {
        cfg = cfg.post_json(MESSAGES_BODY);
    } else if let Some(b) = &a.body {
        cfg.method = http::Method::POST;
        cfg.body = b.clone().into();
    } else if let Some(p) = &a.body_file {
        cfg.method = http::Method::POST;
        cfg.body = std::fs::read(p)
            .with_context(|| format!("cannot read --body-file {}", p.display()))?
            .into();
    }
    if let Some(m) = &a.method {
        cfg.method = m
            .parse()
            .with_context(|| format!("invalid --method `{m}`"))?;
    }
    for h in &a.headers {
        cfg = cfg.header_line(h)?;
    }
    cfg.concurrency = a.concurrency;
    cfg.timeout = a.timeout;
    cfg.rate = a.rate;
    cfg.name_header = a
        .name_header
        .parse()
        .with_context(|| format!("invalid --name-header `{}`", a.name_header))?;
    cfg.stop = match (a.duration, a.requests) {
        (Some(d), _) => Stop::After(d),
        (None, Some(n)) => Stop::Requests(n),
        (None, None) => Stop::Requests(1000),
    };
    let run = load::start(cfg)?;
    let report = tokio::select! {
        r = run.wait() => r,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
    };
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{report}");
    }
    Ok(())
}
