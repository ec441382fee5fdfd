//! `failover-host demo --fleet`: three proxies (each its own process-like [`Server`]: own
//! shared data, own workers, own singleton verifier and syncer) in front of the same two mocks,
//! sharing one failure queue in etcd. Traffic is spread over all of them; the screen shows each
//! proxy's local queue and counters next to the fleet record, and that the fleet counts every
//! outage of `flaky` once, however many proxies saw it.

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use failover_examples::mock::MockUpstream;

use super::etcd::DemoEtcd;
use super::view::{self, FleetFrame, ProxyRow};
use super::{
    finish, first_listener, mock_rows, serve_options, shared_json, traffic, watch, DemoOptions,
    FleetOptions, RECORD_KEY,
};
use crate::bootstrap::{self, LoadOptions};
use crate::server::Server;
use failover_filter::fleet::status::STATUS_KEY;

use super::config::{fleet_bootstrap_yaml, FleetSetup, FLEET_SYNC_INTERVAL_MS};

/// One demo proxy.
struct Proxy {
    member: String,
    addr: SocketAddr,
    server: Server,
}

/// Runs the fleet demo (see the module docs).
pub(super) fn run(
    rt: &tokio::runtime::Runtime,
    opts: &DemoOptions,
    fleet: &FleetOptions,
    flaky: &MockUpstream,
    steady: &MockUpstream,
) -> anyhow::Result<()> {
    let n = fleet.proxies.clamp(2, 26);
    let etcd = rt.block_on(async {
        match &fleet.etcd {
            Some(url) => DemoEtcd::external(url).await,
            None => DemoEtcd::start().await,
        }
    })?;
    // A fresh prefix per run: a rerun against the same etcd starts from an empty record.
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let key_prefix = format!("/failover-demo-{since_epoch}");
    let mut proxies = Vec::with_capacity(n);
    for i in 0..n {
        let member = format!("proxy-{}", char::from(b'a' + i as u8));
        let setup = FleetSetup {
            etcd: etcd.client,
            key_prefix: key_prefix.clone(),
            member: member.clone(),
        };
        let yaml = fleet_bootstrap_yaml(flaky.addr(), steady.addr(), &setup);
        let b = bootstrap::parse("<demo --fleet>".as_ref(), &yaml, &LoadOptions::default())?;
        let server = Server::start(b, serve_options(opts))
            .with_context(|| format!("{member}: cannot start"))?;
        let addr = first_listener(&server)?;
        proxies.push(Proxy {
            member,
            addr,
            server,
        });
    }

    let tally = Arc::new(Mutex::new(traffic::Tally::default()));
    let started = Instant::now();
    let header = format!(
        "{n} proxies × {} workers, one failure queue in {}, key {key_prefix}/v1",
        opts.concurrency.max(1),
        etcd.describe()
    );
    let mocks = [flaky, steady];
    // Failing phases of `flaky` the screen has seen begin (sampled at every frame).
    let phases = Cell::new((false, 0u64));
    let frame = || {
        let rows = mock_rows(&mocks);
        let failing = rows
            .iter()
            .any(|(name, mode, _)| name == "flaky" && mode != "healthy");
        let (was, count) = phases.get();
        let count = count + u64::from(failing && !was);
        phases.set((failing, count));
        let tally = tally.lock().unwrap_or_else(|p| p.into_inner()).clone();
        view::render_fleet(&FleetFrame {
            elapsed: started.elapsed(),
            header: &header,
            tally: &tally,
            mocks: rows,
            proxies: proxies.iter().map(proxy_row).collect(),
            flaky_failing_phases: count,
        })
    };
    let addrs = proxies.iter().map(|p| p.addr).collect();
    watch(rt, opts.duration, addrs, 2 * n, &tally, &frame);
    // Traffic has stopped; let the rounds in flight land so that the summary shows the fleet
    // as every proxy will leave it (parks seen just before the stop reach etcd first).
    // (The mocks run on `rt`: sleep inside it so that they keep answering meanwhile.)
    rt.block_on(async {
        tokio::time::sleep(Duration::from_millis(3 * FLEET_SYNC_INTERVAL_MS)).await;
    });
    let final_text = frame();
    // Stop the proxies side by side: each drains for up to a second.
    let stopping: Vec<_> = proxies
        .into_iter()
        .map(|p| std::thread::spawn(move || p.server.shutdown()))
        .collect();
    for s in stopping {
        let _ = s.join();
    }
    drop(etcd);
    finish(&final_text);
    Ok(())
}

fn proxy_row(p: &Proxy) -> ProxyRow {
    let metric = |name: &str| {
        p.server
            .shared()
            .metrics()
            .snapshot()
            .into_iter()
            .find(|m| m.name == name)
            .map_or(0, |m| m.value)
    };
    ProxyRow {
        member: p.member.clone(),
        addr: p.addr,
        record: shared_json(&p.server, RECORD_KEY),
        fleet: shared_json(&p.server, STATUS_KEY),
        claimed_probes: metric("failover.fleet.claimed_probes"),
    }
}
