//! Envoy's WASI allowlist — these 15 functions of `wasi_snapshot_preview1` (and the same under
//! `wasi_unstable`), with Envoy's behaviour, and nothing more:
//!
//! `args_get args_sizes_get clock_time_get environ_get environ_sizes_get fd_close
//! fd_fdstat_get fd_prestat_dir_name fd_prestat_get fd_read fd_seek fd_write path_open
//! proc_exit random_get`.
//!
//! Why nothing more: Envoy releases in the field link imports strictly, so a module that needs
//! any other WASI function fails to load there; refusing it here too (see
//! [`crate::vm::PluginVm::start`]) keeps "works in the host" meaning "works in Envoy".
//!
//! Behaviour (proxy-wasm-cpp-host `src/exports.cc`): fd 1 → info log, fd 2 → error log, other
//! fds EBADF; `fd_read` ENOSYS; `fd_seek` and `fd_close` succeed (Envoy only traces them);
//! `fd_fdstat_get` on fd 1/2 reports an all-zero fdstat with the `fd_write` right, EBADF
//! elsewhere; `path_open` ENOENT and no preopens (`fd_prestat_get` EBADF,
//! `fd_prestat_dir_name` ENOSYS); no arguments; the environment is only the plugin's
//! `vm_config.environment_variables`; clocks realtime and monotonic only; `random_get` at most
//! 64 KiB per call; `proc_exit` only traces and returns.
//!
//! While `_initialize`/`main` run, the calls every Envoy with the start-up restriction allows
//! (cpp-host `66b3b7d` onwards) are allowed: `fd_write`, args, environ, `clock_time_get`,
//! `random_get`, `fd_prestat_get`, `fd_prestat_dir_name`. The others trap
//! ("restricted_callback") — `fd_fdstat_get` included, which only cpp-host `c4d7bb0`
//! (Dec 2024) and later allow, so a module calling it at start-up fails in older Envoys.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use wasmtime::{Caller, Linker};

use crate::abi::log::plugin_log;
use crate::abi::memory;
use crate::abi::restricted;
use crate::abi::state::HostState;

/// The two module names Envoy registers the allowlist under.
pub const WASI_MODULES: [&str; 2] = ["wasi_snapshot_preview1", "wasi_unstable"];

const SUCCESS: i32 = 0;
const EBADF: i32 = 8;
const EINVAL: i32 = 28;
const ENOENT: i32 = 44;
const ENOSYS: i32 = 52;
const ENOTSUP: i32 = 58;

/// Envoy's cap on one `random_get`.
const MAX_RANDOM: u32 = 64 * 1024;

fn is_stdio(fd: i32) -> bool {
    fd == 1 || fd == 2
}

/// `KEY=VALUE\0` strings of the plugin's environment.
fn environ(state: &HostState) -> Vec<Vec<u8>> {
    state
        .spec
        .environment
        .iter()
        .map(|(k, v)| {
            let mut s = format!("{k}={v}").into_bytes();
            s.push(0);
            s
        })
        .collect()
}

fn monotonic_nanos() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Registers the allowlist under both module names.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    for module in WASI_MODULES {
        add_module(linker, module)?;
    }
    Ok(())
}

fn add_module(linker: &mut Linker<HostState>, m: &str) -> wasmtime::Result<()> {
    // ----- arguments and environment (allowed while initialising) -----
    linker.func_wrap(
        m,
        "args_sizes_get",
        |mut caller: Caller<'_, HostState>, argc: i32, size: i32| -> wasmtime::Result<i32> {
            memory::write_u32(&mut caller, argc, 0)?;
            memory::write_u32(&mut caller, size, 0)?;
            Ok(SUCCESS)
        },
    )?;
    linker.func_wrap(
        m,
        "args_get",
        |_: Caller<'_, HostState>, _argv: i32, _buf: i32| -> wasmtime::Result<i32> { Ok(SUCCESS) },
    )?;
    linker.func_wrap(
        m,
        "environ_sizes_get",
        |mut caller: Caller<'_, HostState>, count: i32, size: i32| -> wasmtime::Result<i32> {
            let env = environ(caller.data());
            let total: usize = env.iter().map(Vec::len).sum();
            memory::write_u32(&mut caller, count, env.len() as u32)?;
            memory::write_u32(&mut caller, size, total as u32)?;
            Ok(SUCCESS)
        },
    )?;
    linker.func_wrap(
        m,
        "environ_get",
        |mut caller: Caller<'_, HostState>, ptrs: i32, buf: i32| -> wasmtime::Result<i32> {
            let env = environ(caller.data());
            let mut at = buf as u32;
            for (i, entry) in env.iter().enumerate() {
                memory::write_u32(&mut caller, ptrs.wrapping_add((i * 4) as i32), at)?;
                memory::write(&mut caller, at as i32, entry)?;
                at = at.wrapping_add(entry.len() as u32);
            }
            Ok(SUCCESS)
        },
    )?;

    // ----- clocks and randomness (allowed while initialising) -----
    linker.func_wrap(
        m,
        "clock_time_get",
        |mut caller: Caller<'_, HostState>,
         id: i32,
         _precision: i64,
         ret: i32|
         -> wasmtime::Result<i32> {
            let nanos = match id {
                0 => SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0),
                1 => monotonic_nanos(),
                _ => return Ok(ENOTSUP),
            };
            memory::write_u64(&mut caller, ret, nanos)?;
            Ok(SUCCESS)
        },
    )?;
    linker.func_wrap(
        m,
        "random_get",
        |mut caller: Caller<'_, HostState>, buf: i32, len: i32| -> wasmtime::Result<i32> {
            let len = len as u32;
            if len > MAX_RANDOM {
                return Ok(EINVAL);
            }
            let mut bytes = vec![0u8; len as usize];
            if getrandom::getrandom(&mut bytes).is_err() {
                return Ok(ENOSYS);
            }
            memory::write(&mut caller, buf, &bytes)?;
            Ok(SUCCESS)
        },
    )?;

    // ----- file descriptors: only stdout/stderr, to the log -----
    linker.func_wrap(
        m,
        "fd_write",
        |mut caller: Caller<'_, HostState>,
         fd: i32,
         iovs: i32,
         iovs_len: i32,
         nwritten: i32|
         -> wasmtime::Result<i32> {
            if !is_stdio(fd) {
                return Ok(EBADF);
            }
            let count = iovs_len as u32;
            let table = memory::read(
                &mut caller,
                iovs,
                count.checked_mul(8).map(|n| n as i32).unwrap_or(-1),
            )?;
            let mut text = Vec::new();
            for iov in table.chunks_exact(8) {
                let ptr = u32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
                let len = u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
                text.extend_from_slice(&memory::read(&mut caller, ptr as i32, len as i32)?);
            }
            let written = text.len() as u32;
            let line = String::from_utf8_lossy(&text);
            let line = line.strip_suffix('\n').unwrap_or(&line);
            plugin_log(caller.data_mut(), if fd == 1 { 2 } else { 4 }, line);
            memory::write_u32(&mut caller, nwritten, written)?;
            Ok(SUCCESS)
        },
    )?;
    restricted!(linker.func_wrap(
        m,
        "fd_read",
        |caller: Caller<'_, HostState>, _: i32, _: i32, _: i32, _: i32| -> wasmtime::Result<i32> {
            Ok(ENOSYS)
        },
    ))?;
    restricted!(linker.func_wrap(
        m,
        "fd_close",
        |caller: Caller<'_, HostState>, _fd: i32| -> wasmtime::Result<i32> {
            // Envoy: `context->error("wasi_unstable fd_close")` (a trace line), then success.
            tracing::trace!(vm = %caller.data().label, "wasi_unstable fd_close");
            Ok(SUCCESS)
        },
    ))?;
    restricted!(linker.func_wrap(
        m,
        "fd_seek",
        |caller: Caller<'_, HostState>,
         _fd: i32,
         _: i64,
         _: i32,
         _: i32|
         -> wasmtime::Result<i32> {
            // Envoy: `context->error("wasi_unstable fd_seek")` (a trace line), then success
            // without writing the new offset.
            tracing::trace!(vm = %caller.data().label, "wasi_unstable fd_seek");
            Ok(SUCCESS)
        },
    ))?;
    restricted!(linker.func_wrap(
        m,
        "fd_fdstat_get",
        |mut caller: Caller<'_, HostState>, fd: i32, buf: i32| -> wasmtime::Result<i32> {
            if !is_stdio(fd) {
                return Ok(EBADF);
            }
            // Envoy's fdstat: all zero (filetype unknown, no flags) except the base rights,
            // which hold only `fd_write` (64).
            let mut stat = [0u8; 24];
            stat[8..16].copy_from_slice(&(1u64 << 6).to_le_bytes());
            memory::write(&mut caller, buf, &stat)?;
            Ok(SUCCESS)
        },
    ))?;
    linker.func_wrap(
        m,
        "fd_prestat_get",
        |_: Caller<'_, HostState>, _fd: i32, _buf: i32| -> wasmtime::Result<i32> {
            // Allowed during start-up in every Envoy that restricts it (wasi-libc looks for
            // preopens while initialising).
            Ok(EBADF)
        },
    )?;
    linker.func_wrap(
        m,
        "fd_prestat_dir_name",
        |_: Caller<'_, HostState>, _: i32, _: i32, _: i32| -> wasmtime::Result<i32> {
            // Allowed during start-up, like fd_prestat_get.
            Ok(ENOSYS)
        },
    )?;
    restricted!(linker.func_wrap(
        m,
        "path_open",
        |caller: Caller<'_, HostState>,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i64,
         _: i64,
         _: i32,
         _: i32|
         -> wasmtime::Result<i32> { Ok(ENOENT) },
    ))?;
    // Restricted: not in any Envoy's start-up allowlist.
    restricted!(linker.func_wrap(
        m,
        "proc_exit",
        |caller: Caller<'_, HostState>, code: i32| -> wasmtime::Result<()> {
            // Envoy: `context->error("wasi_unstable proc_exit")` — a trace line, not a plugin
            // log — and returns; the guest goes on (a Rust guest then hits `unreachable`).
            tracing::trace!(vm = %caller.data().label, code, "wasi_unstable proc_exit");
            Ok(())
        },
    ))?;
    Ok(())
}
