//! The server as users run it: admin `/ready` and `/stats`, SIGHUP reload, SIGTERM with the
//! final state-file save.

mod cli_support;
mod proxy_support;

use std::time::Duration;

use cli_support::*;
use proxy_support::*;

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

#[test]
fn ready_and_stats_on_the_admin_listener() {
    let (a, _) = upstream("alpha");
    let any = "127.0.0.1:0".parse().unwrap();
    let yaml = bootstrap(
        any,
        &[("/", "cluster: alpha", "5s")],
        &[cluster("alpha", &[a])],
        Some(any),
    );
    let dir = tempfile::tempdir().unwrap();
    let f = write(&dir, "c.yaml", &yaml);
    let mut server = Running::start(&["-c", &f, "--concurrency", "2"]);
    let admin = server.wait_addr("admin listening on ");
    let listener = server.wait_addr("\"test\" listening on ");
    let ready = eventually(Duration::from_secs(30), || {
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
        server.wait(Duration::from_secs(30)).success(),
        "{}",
        server.stderr_text()
    );
}

#[test]
fn sighup_reloads_the_config_without_dropping_the_process() {
    let (a, _) = upstream("alpha");
    let (b, _) = upstream("beta");
    let listen = closed_port();
    let clusters = [cluster("alpha", &[a]), cluster("beta", &[b])];
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        &dir,
        "c.yaml",
        &bootstrap(listen, &[("/", "cluster: alpha", "5s")], &clusters, None),
    );
    let mut server = Running::start(&["-c", &f, "--concurrency", "2", "--drain-time-s", "1"]);
    server.wait_addr("listening on ");
    let (_, headers, _) = get(listen, "/", "");
    assert_eq!(header(&headers, "x-upstream"), Some("alpha"));

    // A broken config on SIGHUP is refused; the old one keeps serving.
    std::fs::write(&f, "static_resources: [").unwrap();
    server.signal("HUP");
    let refused = eventually(Duration::from_secs(30), || {
        server.stderr_text().contains("reload failed").then_some(())
    });
    assert!(refused.is_some(), "{}", server.stderr_text());
    assert_eq!(header(&get(listen, "/", "").1, "x-upstream"), Some("alpha"));

    // A good new config takes over on the same port.
    std::fs::write(
        &f,
        bootstrap(listen, &[("/", "cluster: beta", "5s")], &clusters, None),
    )
    .unwrap();
    server.signal("HUP");
    let switched = eventually(Duration::from_secs(30), || {
        let (_, headers, _) = get(listen, "/", "");
        (header(&headers, "x-upstream") == Some("beta")).then_some(())
    });
    assert!(switched.is_some(), "{}", server.stderr_text());
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "process exited on SIGHUP"
    );
    server.signal("INT");
    assert!(
        server.wait(Duration::from_secs(30)).success(),
        "{}",
        server.stderr_text()
    );
}

#[test]
fn sigterm_saves_the_state_file() {
    let (a, _) = upstream("alpha");
    let any = "127.0.0.1:0".parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        &dir,
        "c.yaml",
        &bootstrap(
            any,
            &[("/", "cluster: alpha", "5s")],
            &[cluster("alpha", &[a])],
            None,
        ),
    );
    let state = dir.path().join("state.json");
    let mut server = Running::start(&["-c", &f, "--state-file", &state.to_string_lossy()]);
    server.wait_addr("listening on ");
    assert!(!state.exists(), "nothing changed yet, nothing saved");
    server.signal("TERM");
    assert!(
        server.wait(Duration::from_secs(30)).success(),
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
