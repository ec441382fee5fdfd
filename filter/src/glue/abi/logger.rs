//! The `log` crate's backend: every record goes to the host with `proxy_log`, filtered first
//! by a level that follows the host's (`glue::host::follow_host_log_level`), so lines the host
//! would drop are never formatted. A panic (which aborts the VM) is logged at `critical` first,
//! so the reason reaches the host's log.

use log::{Level, LevelFilter, Log, Metadata, Record};

use super::vm;

/// The ABI's `critical` level: `log` has no such level, so only the panic hook uses it.
const CRITICAL: u32 = 5;

struct HostLogger;

static LOGGER: HostLogger = HostLogger;

impl Log for HostLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            Level::Trace => 0,
            Level::Debug => 1,
            Level::Info => 2,
            Level::Warn => 3,
            Level::Error => 4,
        };
        // A line without arguments is sent as it is, without a copy.
        match record.args().as_str() {
            Some(text) => vm::log(level, text),
            None => vm::log(level, &record.args().to_string()),
        }
    }

    fn flush(&self) {}
}

/// Installs the logger and the panic hook, at `trace` until the host's level is known. Called
/// once, from `_initialize` (only `proxy_log` is allowed there; this makes no other call).
pub fn init() {
    if log::set_logger(&LOGGER).is_ok() {
        std::panic::set_hook(Box::new(|info| vm::log(CRITICAL, &info.to_string())));
    }
    log::set_max_level(LevelFilter::Trace);
}

/// Follows a host log level given as the ABI's number (0 trace … 5 critical); `critical`
/// silences the `log` crate (it has no such level). An unknown number changes nothing.
pub fn set_level(raw: u32) {
    let filter = match raw {
        0 => LevelFilter::Trace,
        1 => LevelFilter::Debug,
        2 => LevelFilter::Info,
        3 => LevelFilter::Warn,
        4 => LevelFilter::Error,
        5 => LevelFilter::Off,
        _ => return,
    };
    log::set_max_level(filter);
}
