//! Fleet mode end to end: a real 3-member etcd cluster on loopback, three `failover-host`
//! processes with two worker VMs each, the real `.wasm`, mock upstreams.
//!
//! - the seed across the fleet: two failing endpoints are counted twice fleet-wide, logged
//!   with two fleet `info` lines, and reach every proxy's queue within two sync intervals;
//! - one prober fleet-wide: probes of a parked endpoint per interval, fleet vs no fleet;
//! - all of etcd down under load: no client error, local-only mode on the status page, and
//!   after the restart the fleet converges without counting anything twice.
//!
//! Skipped (with a message) only when `etcd` is not installed; CI installs `etcd-server`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use failover_testkit::etcd::{etcd_binary, EtcdCluster};
use failover_testkit::{
    eventually, free_addr, merge, mock, mock_upstream, plugin_config, send, Cluster, Host, Setup,
};
use serde_json::{json, Value};

const SYNC_MS: u64 = 200;
const PROXIES: usize = 3;

fn etcd_missing() -> bool {
    if etcd_binary().is_none() {
        eprintln!(
            "SKIPPED: fleet suites need a real etcd (Debian/Ubuntu: apt-get install -y etcd-server)"
        );
        return true;
    }
    false
}

/// The plugin config of every proxy; `fleet: None` runs them without fleet mode.
fn plugin(fleet: Option<Value>) -> Value {
    let mut p = plugin_config(&[
        ("bad1", "bad1", "primary"),
        ("bad2", "bad2", "primary"),
        ("good", "good", "secondary"),
    ]);
    merge(
        &mut p,
        json!({"verifier": {"interval_ms": 500, "max_interval_ms": 500, "timeout_ms": 300,
                            "request": {"path": "/probe"}}}),
    );
    if let Some(f) = fleet {
        merge(&mut p, json!({ "fleet": f }));
    }
    p
}

fn fleet_section(prefix: &str, member: &str) -> Value {
    json!({
        "cluster": "etcd",
        "key_prefix": prefix,
        "member": member,
        "sync_interval_ms": SYNC_MS,
        "timeout_ms": 150,
        "offline_after_ms": 1000,
        "probe_claim_ms": 1000,
    })
}

/// Starts one proxy: 2 workers, the three mocks, and (fleet mode) an `etcd` cluster with every
/// etcd member as an endpoint (the kit's bootstrap builder).
async fn proxy(plugin: Value, mocks: &[(&str, SocketAddr)], etcd: Option<&EtcdCluster>) -> Host {
    let mut setup = Setup::new(plugin, mocks);
    setup.concurrency = 2;
    let (listen, admin) = (free_addr(), free_addr());
    let mut builder = setup.builder(listen, admin);
    if let Some(etcd) = etcd {
        // Every etcd member is an endpoint of the one `etcd` cluster (round robin).
        builder = builder.cluster(Cluster::new("etcd", &etcd.clients()).connect_timeout("0.5s"));
    }
    let args = ["--concurrency", "2", "--log-level", "info"];
    Host::start_bootstrap(&builder.to_yaml(), listen, admin, &args, &[]).await
}

/// `n` concurrent POSTs spread over `hosts`; every answer must be 200.
async fn load(hosts: &[Host], n: usize, tag: &str) {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let addr = hosts[i % hosts.len()].listen;
            let body = format!("{{\"{tag}\":{i}}}");
            tokio::spawn(async move {
                send(
                    addr,
                    "POST",
                    "/v1/messages",
                    &[("content-type", "application/json")],
                    body,
                )
                .await
            })
        })
        .collect();
    for t in tasks {
        let a = t.await.expect("task").expect("request");
        assert_eq!(
            a.status,
            200,
            "client saw an error: {} {}",
            a.status,
            a.text()
        );
    }
}

fn fleet_info_lines(hosts: &[Host]) -> usize {
    hosts
        .iter()
        .map(|h| h.count_lines(&["INFO", "parked fleet-wide"]))
        .sum()
}

fn all_logs(hosts: &[Host]) -> String {
    hosts
        .iter()
        .enumerate()
        .map(|(i, h)| format!("=== proxy {i} ===\n{}", h.logs()))
        .collect::<Vec<_>>()
        .join("\n")
}

struct Fleet {
    etcd: EtcdCluster,
    hosts: Vec<Host>,
    bad1: mock::MockUpstream,
    bad2: mock::MockUpstream,
    good: mock::MockUpstream,
    key: String,
}

async fn start_fleet(prefix: &str, with_fleet: bool) -> Fleet {
    let etcd = EtcdCluster::start(3).await;
    let bad1 = mock_upstream("bad1", mock::FailMode::status(503).into()).await;
    let bad2 = mock_upstream("bad2", mock::FailMode::status(503).into()).await;
    let good = mock_upstream("good", mock::Schedule::default()).await;
    let mocks = [
        ("bad1", bad1.addr()),
        ("bad2", bad2.addr()),
        ("good", good.addr()),
    ];
    let mut hosts = Vec::new();
    for i in 0..PROXIES {
        let fleet = with_fleet.then(|| fleet_section(prefix, &format!("proxy{i}")));
        hosts.push(proxy(plugin(fleet), &mocks, Some(&etcd)).await);
    }
    Fleet {
        etcd,
        hosts,
        bad1,
        bad2,
        good,
        key: format!("{prefix}/v1"),
    }
}

impl Fleet {
    async fn record(&self) -> Value {
        self.etcd.get_json(&self.key).await.unwrap_or(Value::Null)
    }

    /// Waits until every proxy is connected to the fleet.
    async fn connected(&self, limit: Duration) {
        for (i, h) in self.hosts.iter().enumerate() {
            let ok = eventually(limit, || async {
                let s = h.status().await;
                (s["fleet"]["connected"] == true).then_some(())
            })
            .await;
            assert!(
                ok.is_some(),
                "proxy {i} never connected:\n{}",
                all_logs(&self.hosts)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_seed_across_the_fleet_is_counted_and_logged_exactly_twice() {
    if etcd_missing() {
        return;
    }
    let f = start_fleet("/test-seed", true).await;
    f.connected(Duration::from_secs(10)).await;

    // Phase 1: the outage is seen by proxy 0 only; the others learn it from the fleet.
    load(&f.hosts[..1], 64, "seed").await;
    let parked_at = Instant::now();
    let fleet_has_both = eventually(Duration::from_secs(5), || async {
        let r = f.record().await;
        (r["endpoints"]["bad1"]["state"] == "parked" && r["endpoints"]["bad2"]["state"] == "parked")
            .then_some(())
    })
    .await;
    assert!(fleet_has_both.is_some(), "{}", all_logs(&f.hosts));
    let in_fleet = parked_at.elapsed();
    let mut worst = Duration::ZERO;
    for (i, h) in f.hosts.iter().enumerate().skip(1) {
        let t0 = Instant::now();
        let ok = eventually(Duration::from_secs(5), || async {
            (h.status().await["queue_size"] == 2).then_some(())
        })
        .await;
        assert!(
            ok.is_some(),
            "proxy {i} never adopted:\n{}",
            all_logs(&f.hosts)
        );
        worst = worst.max(t0.elapsed());
    }
    eprintln!(
        "MEASURED: fleet record has both parks {in_fleet:?} after the load; \
         slowest proxy adopted them {worst:?} after that (sync interval {SYNC_MS} ms)"
    );
    assert!(
        worst <= Duration::from_millis(2 * SYNC_MS + 150),
        "adoption took {worst:?}"
    );

    // Phase 2: traffic over every proxy; the adopted parks get no normal traffic.
    let before = (
        f.bad1.stats().requests_on("/v1/messages"),
        f.bad2.stats().requests_on("/v1/messages"),
    );
    load(&f.hosts, 90, "spread").await;
    let after = (
        f.bad1.stats().requests_on("/v1/messages"),
        f.bad2.stats().requests_on("/v1/messages"),
    );
    assert_eq!(before, after, "a fleet-parked endpoint received traffic");

    let r = f.record().await;
    assert_eq!(r["stats"]["total_failed"], 2, "{r:#}");
    assert_eq!(fleet_info_lines(&f.hosts), 2, "{}", all_logs(&f.hosts));
    for (i, h) in f.hosts.iter().enumerate() {
        let s = h.status().await;
        assert_eq!(s["queue_size"], 2, "proxy {i}: {s:#}");
        assert_eq!(s["fleet"]["stats"]["total_failed"], 2, "proxy {i}: {s:#}");
        assert_eq!(s["fleet"]["endpoints"][0]["fleet_state"], "parked", "{s:#}");
        assert_eq!(s["fleet"]["endpoints"][0]["local_state"], "parked", "{s:#}");
        if i > 0 {
            // Adopted, not observed: no local count.
            assert_eq!(s["stats"]["total_failed"], 0, "proxy {i}: {s:#}");
        }
        assert_eq!(h.stat("failover.fleet.connected").await, 1, "proxy {i}");
        assert!(h.stat("failover.fleet.syncs").await > 0, "proxy {i}");
    }
    let _ = &f.good;
}

/// Probes of one parked endpoint during `window`, counted on the mock.
async fn probes_during(f: &Fleet, window: Duration) -> u64 {
    let before = f.bad1.stats().requests_on("/probe");
    tokio::time::sleep(window).await;
    f.bad1.stats().requests_on("/probe") - before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_prober_per_interval_fleet_wide() {
    if etcd_missing() {
        return;
    }
    let window = Duration::from_secs(5);
    let intervals = window.as_millis() as u64 / 500;

    let f = start_fleet("/test-probes", true).await;
    f.connected(Duration::from_secs(10)).await;
    load(&f.hosts, 60, "park").await;
    tokio::time::sleep(Duration::from_millis(4 * SYNC_MS)).await;
    let fleet = probes_during(&f, window).await;
    let r = f.record().await;
    drop(f);

    let n = start_fleet("/test-probes-off", false).await;
    load(&n.hosts, 60, "park").await;
    tokio::time::sleep(Duration::from_millis(4 * SYNC_MS)).await;
    let alone = probes_during(&n, window).await;
    eprintln!(
        "MEASURED: probes of one parked endpoint in {window:?} ({intervals} intervals of 500 ms): \
         fleet mode {fleet}, without fleet mode {alone} ({PROXIES} proxies)"
    );
    assert!(fleet >= 2, "fleet mode stopped probing: {fleet}; {r:#}");
    assert!(
        fleet <= intervals + 1,
        "more than one probe per interval: {fleet}; {r:#}"
    );
    assert!(
        alone >= 2 * intervals,
        "without fleet mode every proxy probes: {alone}"
    );
    assert!(
        r["stats"]["total_still_failed"].as_u64().unwrap_or(0) >= 2,
        "{r:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_down_under_load_means_local_mode_then_convergence_without_double_counting() {
    if etcd_missing() {
        return;
    }
    let mut f = start_fleet("/test-down", true).await;
    f.connected(Duration::from_secs(10)).await;
    load(&f.hosts, 60, "park").await;
    let ok = eventually(Duration::from_secs(5), || async {
        (f.record().await["stats"]["total_failed"] == 2).then_some(())
    })
    .await;
    assert!(ok.is_some(), "{}", all_logs(&f.hosts));

    // Counted from here: a proxy slow to start may have said "offline" once already.
    let warns_before: Vec<usize> = f
        .hosts
        .iter()
        .map(|h| h.count_lines(&["WARN", "local-only mode"]))
        .collect();
    let backs_before: Vec<usize> = f
        .hosts
        .iter()
        .map(|h| h.count_lines(&["INFO", "etcd reachable again"]))
        .collect();
    for i in 0..3 {
        f.etcd.stop(i);
    }
    let down_at = Instant::now();
    // Under load while etcd is down: never an error.
    while down_at.elapsed() < Duration::from_millis(2500) {
        load(&f.hosts, 30, "down").await;
    }
    for (i, h) in f.hosts.iter().enumerate() {
        let s = h.status().await;
        assert_eq!(s["fleet"]["connected"], false, "proxy {i}: {s:#}");
        assert_eq!(s["fleet"]["local_mode"], true, "proxy {i}: {s:#}");
        assert!(s["fleet"]["sync_errors"].as_u64().unwrap_or(0) > 0, "{s:#}");
        assert_eq!(s["queue_size"], 2, "still parked locally: {s:#}");
        assert_eq!(h.stat("failover.fleet.connected").await, 0, "proxy {i}");
        assert_eq!(
            h.count_lines(&["WARN", "local-only mode"]) - warns_before[i],
            1,
            "proxy {i}:\n{}",
            h.logs()
        );
    }

    for i in 0..3 {
        f.etcd.restart(i);
    }
    f.etcd.wait_healthy(Duration::from_secs(20)).await;
    let back = Instant::now();
    f.connected(Duration::from_secs(10)).await;
    eprintln!(
        "MEASURED: every proxy back in fleet mode {:?} after etcd was healthy",
        back.elapsed()
    );
    load(&f.hosts, 60, "after").await;
    tokio::time::sleep(Duration::from_millis(3 * SYNC_MS)).await;
    let r = f.record().await;
    assert_eq!(r["stats"]["total_failed"], 2, "counted twice: {r:#}");
    assert_eq!(fleet_info_lines(&f.hosts), 2, "{}", all_logs(&f.hosts));
    for (i, h) in f.hosts.iter().enumerate() {
        assert_eq!(
            h.count_lines(&["INFO", "etcd reachable again"]) - backs_before[i],
            1,
            "proxy {i}:\n{}",
            h.logs()
        );
        assert_eq!(h.status().await["queue_size"], 2, "proxy {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_etcd_member_killed_under_load_and_a_claim_holder_killed() {
    if etcd_missing() {
        return;
    }
    let mut f = start_fleet("/test-kill", true).await;
    f.connected(Duration::from_secs(10)).await;

    // One etcd member killed (-9) while the outage starts: quorum holds, still exactly once.
    f.etcd.kill(0);
    load(&f.hosts, 90, "park").await;
    let ok = eventually(Duration::from_secs(5), || async {
        (f.record().await["stats"]["total_failed"] == 2).then_some(())
    })
    .await;
    assert!(ok.is_some(), "{}\n{}", all_logs(&f.hosts), f.etcd.logs());
    load(&f.hosts, 60, "more").await;
    tokio::time::sleep(Duration::from_millis(3 * SYNC_MS)).await;
    assert_eq!(f.record().await["stats"]["total_failed"], 2);
    assert_eq!(fleet_info_lines(&f.hosts), 2, "{}", all_logs(&f.hosts));
    for (i, h) in f.hosts.iter().enumerate() {
        let s = h.status().await;
        assert_eq!(s["fleet"]["connected"], true, "proxy {i}: {s:#}");
        assert_eq!(s["queue_size"], 2, "proxy {i}: {s:#}");
    }

    // kill -9 the proxy holding a probe claim: another one probes once the claim expires.
    let holder = eventually(Duration::from_secs(5), || async {
        let r = f.record().await;
        r["endpoints"]["bad1"]["claim"]["member"]
            .as_str()
            .map(str::to_string)
    })
    .await
    .expect("a probe claim on bad1");
    let idx: usize = holder
        .trim_start_matches("proxy")
        .parse()
        .expect("member name");
    f.hosts[idx].signal("KILL");
    let killed_at = Instant::now();
    let other = eventually(Duration::from_secs(6), || async {
        let r = f.record().await;
        let m = r["endpoints"]["bad1"]["claim"]["member"]
            .as_str()?
            .to_string();
        (m != holder).then_some(m)
    })
    .await;
    assert!(
        other.is_some(),
        "no other member claimed bad1 after {holder} died:\n{}",
        all_logs(&f.hosts)
    );
    eprintln!(
        "MEASURED: {} took over probing bad1 {:?} after {holder} was killed (probe_claim_ms 1000)",
        other.unwrap_or_default(),
        killed_at.elapsed()
    );
    let before = f.bad1.stats().requests_on("/probe");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        f.bad1.stats().requests_on("/probe") > before,
        "nobody probes bad1 any more"
    );
}
