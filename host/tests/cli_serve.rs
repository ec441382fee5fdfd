//! The server as users run it: admin `/ready` and `/stats`, SIGHUP reload, SIGTERM with the
//! final state-file save.

use std::time::Duration;

use failover_testkit::send::wire::{get, header};
use failover_testkit::upstream::{closed_port, raw as upstream};
use failover_testkit::{eventually_blocking, BootstrapBuilder, Launch};

const BIN: &str = env!("CARGO_BIN_EXE_failover-host");

#[test]
fn ready_and_stats_on_the_admin_listener() {
    let (a, _) = upstream("alpha");
    let any = "127.0.0.1:0".parse().unwrap();
    let yaml = BootstrapBuilder::one_route(any, "alpha", &[("alpha", a)])
        .admin(any)
        .to_yaml();
    let mut server = Launch::new(BIN)
        .config(yaml)
        .args(["--concurrency", "2"])
        .spawn()
        .expect("spawn failover-host");
    let admin = server.wait_addr("admin listening on ");
    let listener = server.wait_addr("\"test\" listening on ");
    let ready = eventually_blocking(Duration::from_secs(30), || {
        let (status, _, body) = get(admin, "/ready", "");
        (status == 200).then_some(body)
    });
    assert_eq!(ready.as_deref(), Some("LIVE\n"));
    // Traffic flows once ready.
    assert_eq!(get(listener, "/x", "").0, 200);
    let (status, _, body) = get(admin, "/stats", "");
    assert_eq!(status, 200);
    assert!(body.lines().any(|l| l == "server.live: 1"), "{body}");
    assert!(
        body.lines().all(|l| l.contains(": ")),
        "not `name: value` lines: {body}"
    );
    let (status, _, _) = get(admin, "/stats/prometheus", "");
    assert_eq!(status, 200);
    assert_eq!(get(admin, "/nope", "").0, 404);
    server.signal("TERM");
    assert!(
        server.wait_exit(Duration::from_secs(30)).success(),
        "{}",
        server.stderr_text()
    );
}

#[test]
fn sighup_reloads_the_config_without_dropping_the_process() {
    let (a, _) = upstream("alpha");
    let (b, _) = upstream("beta");
    let listen = closed_port();
    let clusters = [("alpha", a), ("beta", b)];
    let mut server = Launch::new(BIN)
        .config(BootstrapBuilder::one_route(listen, "alpha", &clusters).to_yaml())
        .args(["--concurrency", "2", "--drain-time-s", "1"])
        .spawn()
        .expect("spawn failover-host");
    server.wait_addr("listening on ");
    let (_, headers, _) = get(listen, "/", "");
    assert_eq!(header(&headers, "x-upstream"), Some("alpha"));

    // A broken config on SIGHUP is refused; the old one keeps serving. (Deliberately
    // malformed YAML, which the bootstrap builder cannot write.)
    server.reload("static_resources: [");
    let refused = eventually_blocking(Duration::from_secs(30), || {
        server.stderr_text().contains("reload failed").then_some(())
    });
    assert!(refused.is_some(), "{}", server.stderr_text());
    assert_eq!(header(&get(listen, "/", "").1, "x-upstream"), Some("alpha"));

    // A good new config takes over on the same port.
    server.reload(&BootstrapBuilder::one_route(listen, "beta", &clusters).to_yaml());
    let switched = eventually_blocking(Duration::from_secs(30), || {
        let (_, headers, _) = get(listen, "/", "");
        (header(&headers, "x-upstream") == Some("beta")).then_some(())
    });
    assert!(switched.is_some(), "{}", server.stderr_text());
    assert!(server.is_running(), "process exited on SIGHUP");
    server.signal("INT");
    assert!(
        server.wait_exit(Duration::from_secs(30)).success(),
        "{}",
        server.stderr_text()
    );
}

#[test]
fn sigterm_saves_the_state_file() {
    let (a, _) = upstream("alpha");
    let any = "127.0.0.1:0".parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let mut server = Launch::new(BIN)
        .config(BootstrapBuilder::one_route(any, "alpha", &[("alpha", a)]).to_yaml())
        .args(["--state-file".as_ref(), state.as_os_str()])
        .spawn()
        .expect("spawn failover-host");
    server.wait_addr("listening on ");
    assert!(!state.exists(), "nothing changed yet, nothing saved");
    server.signal("TERM");
    assert!(
        server.wait_exit(Duration::from_secs(30)).success(),
        "{}",
        server.stderr_text()
    );
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).expect("saved at shutdown")).unwrap();
    assert_eq!(saved["format"], "failover-host state v1");
    // No temp file is left next to it.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
