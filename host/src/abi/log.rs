//! Logging and time: `proxy_log`, `proxy_get_log_level`, `proxy_get_current_time_nanoseconds`.
//!
//! Plugin lines go to `tracing` with target `wasm` as `[<plugin> <role>] <message>` (message
//! kept intact on one line so tests can grep it); while the VM starts they are also captured
//! for `VmError::ConfigureRejected`.

use std::time::{SystemTime, UNIX_EPOCH};

use tracing::level_filters::LevelFilter;
use wasmtime::{Caller, Linker};

use super::memory;
use super::state::HostState;
use super::AbiStatus;

/// Emits one plugin log line at proxy-wasm `level` (0 trace … 5 critical).
pub(crate) fn plugin_log(state: &mut HostState, level: u32, message: &str) {
    let label = &state.label;
    let plugin = &state.spec.name;
    let vm = &state.spec.vm_id;
    match level {
        0 => tracing::trace!(target: "wasm", plugin = %plugin, vm = %vm, "[{label}] {message}"),
        1 => tracing::debug!(target: "wasm", plugin = %plugin, vm = %vm, "[{label}] {message}"),
        2 => tracing::info!(target: "wasm", plugin = %plugin, vm = %vm, "[{label}] {message}"),
        3 => tracing::warn!(target: "wasm", plugin = %plugin, vm = %vm, "[{label}] {message}"),
        _ => tracing::error!(target: "wasm", plugin = %plugin, vm = %vm, "[{label}] {message}"),
    }
    if let Some(lines) = state.captured_logs.as_mut() {
        let name = match level {
            0 => "trace",
            1 => "debug",
            2 => "info",
            3 => "warn",
            4 => "error",
            _ => "critical",
        };
        lines.push(format!("{name}: {message}"));
    }
}

/// The proxy-wasm level matching the host's current `tracing` filter.
fn current_level() -> u32 {
    match LevelFilter::current() {
        LevelFilter::TRACE => 0,
        LevelFilter::DEBUG => 1,
        LevelFilter::INFO => 2,
        LevelFilter::WARN => 3,
        LevelFilter::ERROR => 4,
        _ => 5,
    }
}

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_log",
        |mut caller: Caller<'_, HostState>,
         level: i32,
         ptr: i32,
         len: i32|
         -> wasmtime::Result<i32> {
            // cpp-host `exports.cc` `log`: a level above critical (5) is BAD_ARGUMENT, checked
            // before anything is read or logged (Envoy's own `Context::log` would panic on it).
            if level as u32 > 5 {
                return Ok(AbiStatus::BadArgument.code());
            }
            let message = memory::read(&mut caller, ptr, len)?;
            let message = String::from_utf8_lossy(&message);
            plugin_log(caller.data_mut(), level as u32, &message);
            Ok(AbiStatus::Ok.code())
        },
    )?;
    restricted!(linker.func_wrap(
        "env",
        "proxy_get_log_level",
        |mut caller: Caller<'_, HostState>, ret: i32| -> wasmtime::Result<i32> {
            memory::write_u32(&mut caller, ret, current_level())?;
            Ok(AbiStatus::Ok.code())
        },
    ))?;
    restricted!(linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut caller: Caller<'_, HostState>, ret: i32| -> wasmtime::Result<i32> {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            memory::write_u64(&mut caller, ret, now)?;
            Ok(AbiStatus::Ok.code())
        },
    ))?;
    Ok(())
}
