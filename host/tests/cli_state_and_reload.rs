//! The state file (atomic save, load, corrupt) and reload keeping the shared data, through
//! the library API the CLI uses.

use std::time::Duration;

use failover_host::bootstrap::{parse, LoadOptions};
use failover_host::server::{ServeOptions, Server};
use failover_host::shared_data::SharedData;
use failover_host::state_file;
use failover_testkit::send::wire::{get, header};
use failover_testkit::upstream::{closed_port, raw as upstream};
use failover_testkit::BootstrapBuilder;

#[test]
fn save_then_load_round_trips_every_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let store = SharedData::new();
    store
        .set("failover", "failover.v1", br#"{"queue":{}}"#, 0)
        .unwrap();
    store.set("other", "bin", &[0, 159, 146, 150], 0).unwrap();
    let (_, cas) = store.get("failover", "failover.v1").unwrap();
    state_file::save(&path, &store.snapshot()).unwrap();

    let restored = SharedData::new();
    assert!(state_file::restore_into(&path, &restored).unwrap());
    assert_eq!(
        restored.get("failover", "failover.v1").unwrap(),
        (br#"{"queue":{}}"#.to_vec(), cas)
    );
    assert_eq!(
        restored.get("other", "bin").unwrap().0,
        vec![0, 159, 146, 150]
    );
    // A stale cas still mismatches after the restore, a fresh one matches.
    assert!(restored
        .set("failover", "failover.v1", b"x", cas.wrapping_add(100))
        .is_err());
    assert!(restored.set("failover", "failover.v1", b"x", cas).is_ok());
}

#[test]
fn missing_file_means_empty_and_corrupt_files_are_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    assert!(!state_file::restore_into(&path, &SharedData::new()).unwrap());
    for bad in [
        "",
        "{",
        "[]",
        r#"{"format":"something else","shared_data":{"next_cas":1,"namespaces":{}}}"#,
        r#"{"format":"failover-host state v1","shared_data":{"next_cas":1,"namespaces":{"a":{"k":{"base64":"***","cas":3}}}}}"#,
    ] {
        std::fs::write(&path, bad).unwrap();
        let err = state_file::restore_into(&path, &SharedData::new()).unwrap_err();
        assert!(err.to_string().contains("corrupt"), "{bad}: {err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), bad);
    }
}

#[test]
fn save_replaces_atomically_and_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let store = SharedData::new();
    for i in 0..20u8 {
        store.set("ns", "k", &[b'a' + i], 0).unwrap();
        state_file::save(&path, &store.snapshot()).unwrap();
        // Every version on disk is complete and loadable.
        let loaded = state_file::load(&path).unwrap().unwrap();
        assert_eq!(
            loaded.namespaces["ns"]["k"].text.as_deref(),
            Some(((b'a' + i) as char).to_string().as_str())
        );
    }
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["state.json".to_string()]);
}

#[test]
fn changes_are_saved_without_waiting_for_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let (a, _) = upstream("alpha");
    let yaml =
        BootstrapBuilder::one_route("127.0.0.1:0".parse().unwrap(), "alpha", &[("alpha", a)])
            .to_yaml();
    let b = parse("t.yaml".as_ref(), &yaml, &LoadOptions::default()).unwrap();
    let server = Server::start(
        b,
        ServeOptions {
            concurrency: 1,
            state_file: Some(path.clone()),
            drain_time: Duration::from_secs(1),
        },
    )
    .unwrap();
    server
        .shared()
        .shared_data()
        .set("failover", "failover.v1", b"{\"n\":1}", 0)
        .unwrap();
    let saved = (0..200).find_map(|_| {
        std::thread::sleep(Duration::from_millis(50));
        state_file::load(&path).ok().flatten().filter(|s| {
            s.namespaces
                .get("failover")
                .is_some_and(|n| n.contains_key("failover.v1"))
        })
    });
    assert!(saved.is_some(), "not saved on change");
    server.shutdown();
}

#[test]
fn reload_keeps_the_shared_data_and_switches_routes() {
    let (a, _) = upstream("alpha");
    let (b, _) = upstream("beta");
    let listen = closed_port();
    let clusters = [("alpha", a), ("beta", b)];
    let opts = ServeOptions {
        concurrency: 2,
        state_file: None,
        drain_time: Duration::from_secs(1),
    };
    let first = parse(
        "t.yaml".as_ref(),
        &BootstrapBuilder::one_route(listen, "alpha", &clusters).to_yaml(),
        &LoadOptions::default(),
    )
    .unwrap();
    let mut server = Server::start(first, opts).unwrap();
    server
        .shared()
        .shared_data()
        .set("failover", "failover.v1", b"queue", 0)
        .unwrap();
    let before = server
        .shared()
        .shared_data()
        .get("failover", "failover.v1")
        .unwrap();
    assert_eq!(header(&get(listen, "/", "").1, "x-upstream"), Some("alpha"));

    let second = parse(
        "t.yaml".as_ref(),
        &BootstrapBuilder::one_route(listen, "beta", &clusters).to_yaml(),
        &LoadOptions::default(),
    )
    .unwrap();
    server.reload(second).unwrap();
    assert_eq!(
        server
            .shared()
            .shared_data()
            .get("failover", "failover.v1")
            .unwrap(),
        before
    );
    let switched = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        header(&get(listen, "/", "").1, "x-upstream") == Some("beta")
    });
    assert!(switched);
    server.shutdown();
}
