//! `failover-host`: the CLI. Mirrors Envoy's (`-c`, `--concurrency`, `--mode`,
//! `--log-level`) plus `--state-file`, `--wasm`, and the `demo` and `wasm` subcommands.
//! Every failure is one line on stderr and a non-zero exit code.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand, ValueEnum};
use failover_host::bootstrap::{self, LoadOptions, WasmCode};
use failover_host::server::{self, ServeOptions, Server};
use failover_host::vm::VmError;

mod startup_memory;

/// mimalloc instead of glibc malloc: a proxied request makes dozens of small, short-lived
/// allocations across worker threads, where glibc's fastbin consolidation showed up as the
/// largest single cost per request (bench/PROFILE.md). The library keeps the system allocator
/// so embedders choose their own.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "failover-host",
    version,
    about = "Runs the failover proxy-wasm filter without Envoy, with Envoy's semantics"
)]
struct Cli {
    /// Envoy bootstrap YAML.
    #[arg(short = 'c', long = "config-path")]
    config: Option<PathBuf>,
    /// Worker threads (default: number of cores).
    #[arg(long)]
    concurrency: Option<usize>,
    /// `serve` runs the proxy; `validate` checks the config, loads its modules and exits 0/1.
    #[arg(long, value_enum, default_value_t = Mode::Serve)]
    mode: Mode,
    /// trace, debug, info, warning, error, critical, off.
    #[arg(short = 'l', long, default_value = "info")]
    log_level: String,
    /// Keep the shared data (the failure queue) in this file across restarts.
    #[arg(long)]
    state_file: Option<PathBuf>,
    /// Use this .wasm for every plugin instead of `code.local` (`builtin` = the embedded filter).
    #[arg(long)]
    wasm: Option<String>,
    /// Seconds old connections get to finish after a reload or at shutdown.
    #[arg(long, default_value_t = 5)]
    drain_time_s: u64,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    Serve,
    Validate,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Mock upstreams (one flaky), the proxy with the built-in filter, traffic, a live view.
    Demo {
        /// Stop after this many seconds and print a summary (default: until Ctrl-C).
        #[arg(long)]
        duration: Option<u64>,
        /// Worker threads of the demo proxy (of each proxy with --fleet).
        #[arg(long, default_value_t = 2)]
        concurrency: usize,
        /// Fleet mode: several proxies sharing one failure queue in etcd; the screen shows
        /// that each outage is counted once fleet-wide. Starts a throw-away etcd from the
        /// `etcd` on PATH (Debian/Ubuntu: apt-get install etcd-server) unless --etcd is given.
        #[arg(long)]
        fleet: bool,
        /// With --fleet: how many proxies.
        #[arg(long, default_value_t = 3, requires = "fleet", value_parser = clap::value_parser!(u16).range(2..=26))]
        proxies: u16,
        /// With --fleet: use this etcd (http://IP:PORT) instead of starting one.
        #[arg(long, requires = "fleet")]
        etcd: Option<String>,
    },
    /// Write the embedded filter module to a file (for Envoy, or a config's `filename`).
    Wasm {
        /// Output path.
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_logging(&cli.log_level) {
        eprintln!("error: {e:#}");
        return ExitCode::from(1);
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let line = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {line}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(level: &str) -> anyhow::Result<()> {
    let directive = match level {
        "trace" | "debug" | "info" | "error" | "off" => level,
        "warn" | "warning" => "warn",
        "critical" => "error",
        other => bail!("--log-level: unknown level {other:?} (trace, debug, info, warning, error, critical, off)"),
    };
    // At debug/trace the compiler's own tracing (wasmtime, Cranelift) would drown the plugin's
    // lines and slow start-up by a minute; `RUST_LOG` still overrides everything.
    let directive = match directive {
        "trace" | "debug" => format!("{directive},wasmtime=info,cranelift=info,regalloc2=info"),
        other => other.to_string(),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(directive));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(true)
        .init();
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Wasm { out }) => {
            std::fs::write(&out, failover_host::vm::EMBEDDED_FILTER)
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!(
                "wrote {} ({} bytes)",
                out.display(),
                failover_host::vm::EMBEDDED_FILTER.len()
            );
            Ok(())
        }
        Some(Command::Demo {
            duration,
            concurrency,
            fleet,
            proxies,
            etcd,
        }) => failover_host::demo::run(failover_host::demo::DemoOptions {
            duration: duration.map(Duration::from_secs),
            concurrency,
            fleet: fleet.then(|| failover_host::demo::FleetOptions {
                proxies: usize::from(proxies),
                etcd,
            }),
        }),
        None => {
            let Some(config) = cli.config.clone() else {
                bail!("no configuration: pass -c FILE (an Envoy bootstrap YAML), or run `failover-host demo`");
            };
            let wasm_override = cli.wasm.as_deref().map(|w| match w {
                "builtin" | bootstrap::BUILTIN_WASM => WasmCode::Embedded,
                path => WasmCode::File(PathBuf::from(path)),
            });
            match cli.mode {
                Mode::Validate => validate(&config, wasm_override),
                Mode::Serve => {
                    let load = LoadOptions {
                        wasm_override,
                        skip_file_checks: false,
                    };
                    let opts = ServeOptions {
                        concurrency: cli
                            .concurrency
                            .unwrap_or_else(server::default_concurrency)
                            .max(1),
                        state_file: cli.state_file,
                        drain_time: Duration::from_secs(cli.drain_time_s),
                    };
                    serve(config, load, opts)
                }
            }
        }
    }
}

/// `--mode validate`: Envoy's own schema (failover-envoy-schema), then the subset this host
/// runs, then every plugin's module loaded as Envoy loads it (read, compiled, ABI version,
/// imports; none of its code runs). Like Envoy, prints `configuration '<file>' OK` and exits 0,
/// or the error and exits 1.
fn validate(config: &std::path::Path, wasm_override: Option<WasmCode>) -> anyhow::Result<()> {
    let validated = failover_envoy_schema::validate_file(config)
        .map_err(|e| anyhow::anyhow!("{}: {e}", config.display()))?;
    // What the failover config must agree on with the Envoy config around it (hold_headers vs
    // allow_on_headers_stop_iteration, max_request_bytes vs the listener's buffer limit).
    for plugin in validated.plugins() {
        let Some(json) = plugin.configuration_str() else {
            continue;
        };
        // Only our filter's JSON parses here; `${ENV}` values do not matter for this check.
        let Ok(cfg) =
            failover_filter::config::Config::parse(json.as_bytes(), &|_| Some("set".into()))
        else {
            continue;
        };
        cfg.check_envoy_agreement(
            plugin.allow_on_headers_stop_iteration,
            plugin.buffer_limit_bytes.map(u64::from),
        )
        .map_err(|e| anyhow::anyhow!("{}: {}: {e}", config.display(), plugin.path))?;
    }
    let overridden = wasm_override.is_some();
    let load = LoadOptions {
        wasm_override,
        skip_file_checks: true,
    };
    let b = bootstrap::load(config, &load)
        .context("valid for Envoy, but failover-host cannot run it")?;
    check_modules(&b, overridden)?;
    // The failover filter's own config check, natively (the same parser as in the .wasm), with
    // the environment the VM would get. Other modules' configs are theirs to judge.
    for plugin in b
        .listeners
        .iter()
        .flat_map(|l| &l.wasm_filters)
        .chain(&b.services)
    {
        if is_failover_filter(&plugin.spec.code) {
            let env = |name: &str| {
                plugin
                    .spec
                    .environment
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            };
            failover_filter::config::Config::parse(&plugin.spec.configuration, &env).map_err(
                |e| anyhow::anyhow!("{}: {}: {e}", config.display(), plugin.config_path),
            )?;
        }
    }
    println!("configuration '{}' OK", config.display());
    Ok(())
}

/// Envoy's validation loads every Wasm module: a missing, unreadable or invalid `.wasm` fails
/// it, naming the field and the file. The embedded module is part of this binary and skipped.
fn check_modules(b: &bootstrap::Bootstrap, overridden: bool) -> anyhow::Result<()> {
    let shared = failover_host::vm::HostShared::new()?;
    let clusters = failover_host::proxy::Clusters::new(&b.clusters)
        .map_err(|e| anyhow::anyhow!("{}: {e}", b.file.display()))?;
    for plugin in b
        .listeners
        .iter()
        .flat_map(|l| &l.wasm_filters)
        .chain(&b.services)
    {
        let field = match (&plugin.spec.code, overridden) {
            (WasmCode::Embedded, _) => continue,
            (WasmCode::File(_), true) => "--wasm".to_string(),
            (WasmCode::File(_), false) => {
                format!("{}.vm_config.code.local.filename", plugin.config_path)
            }
            (WasmCode::Bytes(_), _) => format!("{}.vm_config.code.local", plugin.config_path),
        };
        let fail = |problem: String| anyhow::anyhow!("{}: {field}: {problem}", b.file.display());
        if let Some(problem) = match &plugin.spec.code {
            WasmCode::File(path) => bootstrap::wasm_file_problem(path),
            _ => None,
        } {
            return Err(fail(problem));
        }
        let cm: std::rc::Rc<dyn failover_host::seam::ClusterManager> = clusters.clone();
        shared
            .check_module(&plugin.spec, cm)
            .map_err(|e| match (&plugin.spec.code, &e) {
                // A read error names the file already.
                (WasmCode::File(path), e) if !matches!(e, VmError::Read { .. }) => {
                    fail(format!("Wasm module {}: {e}", path.display()))
                }
                _ => fail(e.to_string()),
            })?;
    }
    Ok(())
}

/// True for the embedded filter or a file that looks like its build output.
fn is_failover_filter(code: &WasmCode) -> bool {
    match code {
        WasmCode::Embedded => true,
        WasmCode::File(path) => path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains("failover")),
        WasmCode::Bytes(_) => false,
    }
}

fn serve(config: PathBuf, load: LoadOptions, opts: ServeOptions) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the main runtime")?;
    let server = rt.block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        // Handlers first: a SIGHUP during start-up must not kill the process.
        let mut hup = signal(SignalKind::hangup()).context("cannot install the SIGHUP handler")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
        let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
        let bootstrap = bootstrap::load(&config, &load)?;
        let mut server = {
            let _purge = startup_memory::EagerPurge::begin();
            Server::start(bootstrap, opts)?
        };
        tracing::info!("failover-host ready");
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading {}", config.display());
                    let _purge = startup_memory::EagerPurge::begin();
                    let result = bootstrap::load(&config, &load).map_err(anyhow::Error::from).and_then(|b| server.reload(b).map_err(anyhow::Error::from));
                    if let Err(e) = result {
                        tracing::error!("reload failed, keeping the running configuration: {e:#}");
                    }
                }
                _ = int.recv() => break,
                _ = term.recv() => break,
            }
        }
        tracing::info!("shutting down");
        Ok::<_, anyhow::Error>(server)
    })?;
    server.shutdown();
    Ok(())
}
