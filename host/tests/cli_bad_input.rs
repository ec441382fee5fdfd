//! Bad input to the CLI: every case exits non-zero with one clear `error:` line saying what
//! and where, and nothing panics.

use std::time::Duration;

use failover_testkit::upstream::raw as upstream;
use failover_testkit::{BootstrapBuilder, Cluster, Launch, Listener, Output, Route, WasmPlugin};

const BIN: &str = env!("CARGO_BIN_EXE_failover-host");
const LIMIT: Duration = Duration::from_secs(60);

/// Runs the binary with `args` to its exit; a run that must be killed at `limit` fails the test.
fn run(args: &[&str], limit: Duration) -> Output {
    let out = Launch::new(BIN)
        .args(args)
        .run(limit)
        .expect("spawn failover-host");
    assert!(
        out.status.is_some(),
        "failover-host {args:?} did not finish within {limit:?}; stderr: {}",
        out.stderr
    );
    out
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

fn good_yaml() -> String {
    let (a, _) = upstream("alpha");
    BootstrapBuilder::one_route("127.0.0.1:0".parse().unwrap(), "alpha", &[("alpha", a)]).to_yaml()
}

/// `good_yaml()` with a Wasm HTTP filter `plugin` in front of the router (it is `http_filters[0]`).
fn with_wasm_filter(plugin: WasmPlugin) -> String {
    let (a, _) = upstream("alpha");
    BootstrapBuilder::new()
        .listener(
            Listener::new("test", "127.0.0.1:0".parse().unwrap())
                .route(Route::to_cluster("/", "alpha").timeout("5s"))
                .wasm_filter(plugin),
        )
        .cluster(Cluster::new("alpha", &[a]))
        .to_yaml()
}

/// Exit code ≠ 0, exactly one line on stderr starting with `error:`, containing every `expect`.
fn assert_fails(out: &Output, expect: &[&str]) {
    assert!(!out.success(), "expected failure; stderr: {}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "panic: {}", out.stderr);
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "expected one error line: {}", out.stderr);
    for e in expect {
        assert!(errors[0].contains(e), "{e:?} not in {:?}", errors[0]);
    }
}

#[test]
fn invalid_yaml_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    // Deliberately malformed YAML, which the bootstrap builder cannot write.
    let f = write(&dir, "bad.yaml", "static_resources:\n  listeners: [\n");
    let out = run(&["-c", &f], LIMIT);
    assert_fails(&out, &["bad.yaml:"]);
}

#[test]
fn unknown_field_names_its_path() {
    let dir = tempfile::tempdir().unwrap();
    // An unknown field the builder cannot write, patched into its output.
    let yaml = good_yaml().replace(
        "connect_timeout: 0.5s",
        "connect_timeout: 0.5s\n    circuit_breakers: {}",
    );
    let f = write(&dir, "typo.yaml", &yaml);
    let out = run(&["-c", &f], LIMIT);
    assert_fails(
        &out,
        &[
            "typo.yaml:",
            "static_resources.clusters[0]",
            "circuit_breakers",
        ],
    );
}

#[test]
fn missing_wasm_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = with_wasm_filter(WasmPlugin::new("f", "/nonexistent/failover_filter.wasm"));
    let f = write(&dir, "w.yaml", &yaml);
    let out = run(&["-c", &f], LIMIT);
    assert_fails(
        &out,
        &[
            "w.yaml",
            "vm_config.code.local.filename",
            "/nonexistent/failover_filter.wasm",
            "not found",
        ],
    );
    // The same through --wasm.
    let out = run(&["-c", &f, "--wasm", "/nonexistent/other.wasm"], LIMIT);
    assert_fails(&out, &["/nonexistent/other.wasm", "not found"]);
}

#[test]
fn plugin_that_rejects_its_config_stops_startup_with_its_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = wat::parse_str(
        r#"(module
          (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 16) "bad config: endpoints missing")
          (global $heap (mut i32) (i32.const 1024))
          (func (export "proxy_abi_version_0_2_1"))
          (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
            (local $p i32)
            (local.set $p (global.get $heap))
            (global.set $heap (i32.add (global.get $heap) (local.get $n)))
            (local.get $p))
          (func (export "proxy_on_context_create") (param i32 i32))
          (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
          (func (export "proxy_on_configure") (param i32 i32) (result i32)
            (drop (call $log (i32.const 4) (i32.const 16) (i32.const 29)))
            (i32.const 0)))"#,
    )
    .unwrap();
    let wasm_path = dir.path().join("reject.wasm");
    std::fs::write(&wasm_path, wasm).unwrap();
    let yaml = with_wasm_filter(WasmPlugin::new("rejecter", &wasm_path.to_string_lossy()));
    let f = write(&dir, "r.yaml", &yaml);
    let out = run(&["-c", &f], LIMIT);
    assert_fails(&out, &["rejecter", "bad config: endpoints missing"]);
}

#[test]
fn port_in_use_names_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let (a, _) = upstream("alpha");
    let yaml = BootstrapBuilder::one_route(addr, "alpha", &[("alpha", a)]).to_yaml();
    let dir = tempfile::tempdir().unwrap();
    let f = write(&dir, "p.yaml", &yaml);
    let out = run(&["-c", &f], LIMIT);
    assert_fails(&out, &[&format!("cannot listen on {addr}")]);
}

#[test]
fn corrupt_state_file_stops_startup_and_is_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(&dir, "c.yaml", &good_yaml());
    let state = write(&dir, "state.json", "{ this is not json");
    let out = run(&["-c", &f, "--state-file", &state], LIMIT);
    assert_fails(&out, &["state.json", "corrupt"]);
    assert_eq!(
        std::fs::read_to_string(&state).unwrap(),
        "{ this is not json"
    );
}

#[test]
fn missing_config_and_bad_flags_are_errors() {
    let out = run(&[], LIMIT);
    assert_fails(&out, &["-c FILE"]);
    let out = run(&["-c", "/nonexistent/envoy.yaml"], LIMIT);
    assert_fails(&out, &["/nonexistent/envoy.yaml", "cannot read"]);
    let out = run(
        &["-c", "/nonexistent/envoy.yaml", "--log-level", "loud"],
        LIMIT,
    );
    assert_fails(&out, &["--log-level"]);
}

#[test]
fn validate_mode_accepts_a_good_config_and_rejects_a_typo() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(&dir, "good.yaml", &good_yaml());
    let out = run(&["--mode", "validate", "-c", &f], LIMIT);
    assert!(out.success(), "{}", out.stderr);
    assert!(out.stdout.contains("OK"), "{}", out.stdout);
    // A misspelt field the builder cannot write, patched into its output.
    let f = write(
        &dir,
        "typo.yaml",
        &good_yaml().replace("stat_prefix: test", "stat_prefixx: test"),
    );
    let out = run(&["--mode", "validate", "-c", &f], LIMIT);
    assert_fails(&out, &["typo.yaml", "stat_prefixx"]);
}

/// `failover.hold_headers` pauses at request headers; without the Wasm config's
/// `allow_on_headers_stop_iteration` Envoy would stop the body too and every request would
/// stall, so validation refuses it, naming the field and the missing flag.
#[test]
fn validate_refuses_hold_headers_without_envoys_stop_iteration_flag() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/configs/two-mocks.yaml"),
    )
    .unwrap();
    let held = shipped.replace(
        r#""failover": { "max_attempts": 2,"#,
        r#""failover": { "hold_headers": true, "max_attempts": 2,"#,
    );
    assert_ne!(held, shipped, "the shipped file changed shape");
    let f = write(&dir, "held.yaml", &held);
    let out = run(&["--mode", "validate", "-c", &f], LIMIT);
    assert_fails(
        &out,
        &[
            "held.yaml",
            "failover.hold_headers",
            "allow_on_headers_stop_iteration",
        ],
    );
    // The shipped file itself (no hold) validates.
    let f = write(&dir, "plain.yaml", &shipped);
    let out = run(&["--mode", "validate", "-c", &f], LIMIT);
    assert!(out.success(), "{}", out.stderr);
}

/// The other direction: `allow_on_headers_stop_iteration` without `failover.hold_headers` is a
/// forgotten option (the flag does nothing for the filter then); refused, naming both.
#[test]
fn validate_mode_refuses_stop_iteration_without_hold_headers() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/configs/two-mocks.yaml"),
    )
    .unwrap();
    let from = "                        root_id: failover\n";
    assert!(shipped.contains(from), "two-mocks.yaml changed");
    let flagged = shipped.replacen(
        from,
        "                        root_id: failover\n                        allow_on_headers_stop_iteration: true\n",
        1,
    );
    let f = write(&dir, "flag.yaml", &flagged);
    let out = run(&["--mode", "validate", "-c", &f], LIMIT);
    assert_fails(
        &out,
        &[
            "flag.yaml",
            "failover.hold_headers",
            "allow_on_headers_stop_iteration: true",
        ],
    );
}

/// `good_yaml()` with one Wasm HTTP filter named `name` whose module is the file `wasm` (with a
/// configuration the failover filter accepts, for `--wasm builtin`).
fn yaml_with_wasm_file(name: &str, wasm: &str) -> String {
    with_wasm_filter(
        WasmPlugin::new(name, wasm)
            .configuration(r#"{"endpoints":[{"name":"a","cluster":"alpha"}]}"#),
    )
}

const FILENAME_FIELD: &str = "http_filters[0].typed_config.config.vm_config.code.local.filename";

/// Envoy's validation loads every Wasm module, so `--mode validate` fails on a `.wasm` that is
/// missing, not a file, unreadable, not Wasm, or not a proxy-wasm module, naming the field and
/// the file; `--wasm builtin` replaces the file, `--wasm PATH` is named as `--wasm`.
#[test]
fn validate_mode_loads_the_wasm_module_and_names_the_field_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("module.wasm");
    let wasm_s = wasm.to_string_lossy().into_owned();
    let f = write(&dir, "v.yaml", &yaml_with_wasm_file("m", &wasm_s));
    let validate = |extra: &[&str]| {
        let mut args = vec!["--mode", "validate", "-c", &f];
        args.extend_from_slice(extra);
        run(&args, LIMIT)
    };

    // Missing.
    let out = validate(&[]);
    assert_fails(&out, &["v.yaml", FILENAME_FIELD, &wasm_s, "not found"]);
    // `--wasm builtin` does not need it; a `--wasm` file that is missing is named as `--wasm`.
    let out = validate(&["--wasm", "builtin"]);
    assert!(out.success(), "{}", out.stderr);
    assert!(out.stdout.contains("OK"), "{}", out.stdout);
    let other = dir.path().join("other.wasm").to_string_lossy().into_owned();
    let out = validate(&["--wasm", &other]);
    assert_fails(&out, &["v.yaml", "--wasm", &other, "not found"]);

    // Not a regular file.
    std::fs::create_dir(&wasm).unwrap();
    let out = validate(&[]);
    assert_fails(&out, &[FILENAME_FIELD, &wasm_s, "not a regular file"]);
    std::fs::remove_dir(&wasm).unwrap();

    // Not Wasm at all.
    std::fs::write(&wasm, "this is not a wasm module").unwrap();
    let out = validate(&[]);
    assert_fails(&out, &[FILENAME_FIELD, &wasm_s, "failed to compile"]);

    // Wasm, but not a proxy-wasm module: no ABI version export; an import Envoy lacks.
    std::fs::write(&wasm, wat::parse_str("(module)").unwrap()).unwrap();
    let out = validate(&[]);
    assert_fails(
        &out,
        &[
            FILENAME_FIELD,
            &wasm_s,
            "Missing or unknown Proxy-Wasm ABI version",
        ],
    );
    std::fs::write(
        &wasm,
        wat::parse_str(
            r#"(module
              (import "env" "proxy_no_such_call" (func))
              (func (export "proxy_abi_version_0_2_1")))"#,
        )
        .unwrap(),
    )
    .unwrap();
    let out = validate(&[]);
    assert_fails(
        &out,
        &[
            FILENAME_FIELD,
            &wasm_s,
            "missing import: env.proxy_no_such_call",
        ],
    );

    // The real filter (as `failover-host wasm --out` writes it) loads.
    let out = run(&["wasm", "--out", &wasm_s], LIMIT);
    assert!(out.success(), "{}", out.stderr);
    let out = validate(&[]);
    assert!(out.success(), "{}", out.stderr);
    assert!(out.stdout.contains("OK"), "{}", out.stdout);

    // Unreadable. Permissions do not stop root, so only where they stop this process too;
    // /proc/self/mem is a file whose read fails for everyone (EIO at offset 0).
    let mut perms = std::fs::metadata(&wasm).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o000);
    std::fs::set_permissions(&wasm, perms).unwrap();
    if std::fs::read(&wasm).is_err() {
        let out = validate(&[]);
        assert_fails(&out, &[FILENAME_FIELD, &wasm_s, "cannot read"]);
    }
    let out = validate(&["--wasm", "/proc/self/mem"]);
    assert_fails(&out, &["--wasm", "/proc/self/mem", "cannot read"]);
}
