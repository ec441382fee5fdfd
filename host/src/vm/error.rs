//! Why a VM could not be started or used, and which VM it is.

use std::fmt;
use std::path::PathBuf;

/// Why a VM could not be started or used. Messages name the plugin (and the import, the phase,
/// the plugin's own log lines) so a start-up failure is one clear line.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// The wasmtime engine could not be set up.
    #[error("wasm engine: {0}")]
    Engine(String),
    /// The `.wasm` file could not be read.
    #[error("plugin {plugin}: cannot read {}: {message}", path.display())]
    Read {
        /// Plugin name.
        plugin: String,
        /// The file named in the configuration.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
    /// The bytes are not a valid Wasm module.
    #[error("plugin {plugin}: failed to compile the Wasm module: {message}")]
    Compile {
        /// Plugin name.
        plugin: String,
        /// wasmtime's reason.
        message: String,
    },
    /// The module does not export `proxy_abi_version_0_2_1`.
    #[error("plugin {plugin}: Missing or unknown Proxy-Wasm ABI version")]
    AbiVersion {
        /// Plugin name.
        plugin: String,
    },
    /// The module imports something Envoy does not provide (Envoy's wording).
    #[error("plugin {plugin}: Failed to load Wasm module due to a missing import: {import}")]
    MissingImport {
        /// Plugin name.
        plugin: String,
        /// `module.name` of the import.
        import: String,
    },
    /// Instantiation failed for another reason (e.g. an import with the wrong signature).
    #[error("plugin {plugin}: failed to instantiate the Wasm module: {message}")]
    Instantiate {
        /// Plugin name.
        plugin: String,
        /// wasmtime's reason.
        message: String,
    },
    /// The module trapped (the VM is unusable afterwards, as in Envoy).
    #[error("plugin {plugin}: the Wasm module trapped in {during}: {message}")]
    Trap {
        /// Plugin name.
        plugin: String,
        /// Which callback or start function.
        during: String,
        /// The trap and its backtrace.
        message: String,
    },
    /// `proxy_on_vm_start` returned false.
    #[error("plugin {plugin}: on_vm_start failed{}", render_logs(.logs))]
    VmStartRejected {
        /// Plugin name.
        plugin: String,
        /// The plugin's log lines while starting.
        logs: Vec<String>,
    },
    /// `proxy_on_configure` returned false: the plugin rejected its configuration.
    #[error("plugin {plugin}: the plugin rejected its configuration (on_configure returned false){}", render_logs(.logs))]
    ConfigureRejected {
        /// Plugin name.
        plugin: String,
        /// The plugin's log lines while starting (its reason is usually among them).
        logs: Vec<String>,
    },
    /// The VM trapped earlier and is not called again.
    #[error("plugin {plugin}: the Wasm VM failed earlier and is not usable")]
    Failed {
        /// Plugin name.
        plugin: String,
    },
    /// A call into the VM while another one is running (a host bug; refused, not re-entered).
    #[error("plugin {plugin}: re-entrant call into the Wasm VM refused")]
    Busy {
        /// Plugin name.
        plugin: String,
    },
}

fn render_logs(logs: &[String]) -> String {
    if logs.is_empty() {
        String::new()
    } else {
        format!("; plugin log: {}", logs.join(" | "))
    }
}

/// Which VM this is (log prefix, and whether timers and HTTP calls run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmRole {
    /// The throw-away VM checked on the main thread before any worker starts.
    Canary,
    /// The VM of worker thread N.
    Worker(usize),
    /// The HTTP filter's VM on the main thread. Envoy sets the filter's thread-local slot on
    /// every worker *and* on the main thread, so each HTTP filter also has a VM there: it runs
    /// `on_vm_start`, `on_configure` and its ticks (and may dispatch HTTP calls), but never sees
    /// a request.
    Main,
    /// The singleton WasmService VM.
    Singleton,
}

impl fmt::Display for VmRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmRole::Canary => write!(f, "canary"),
            VmRole::Worker(n) => write!(f, "worker {n}"),
            VmRole::Main => write!(f, "main"),
            VmRole::Singleton => write!(f, "singleton"),
        }
    }
}
