//! The `env.proxy_*` host functions of proxy-wasm ABI 0.2.1, one file per area.
//!
//! Each file has an `add_to_linker` that is a flat list of `func_wrap` calls (most of them
//! through [`restricted!`], which adds the start-up restriction). They share two
//! rules, both from Envoy and the Rust SDK 0.2.5:
//!
//! - A bad guest pointer is a trap (the guest is broken); anything the guest could legitimately
//!   meet (a missing key, a cas mismatch) is a [`AbiStatus`] — the one Envoy returns, also where
//!   the SDK's wrapper does not accept it and panics (a header read from a map that is gone is
//!   BAD_ARGUMENT in Envoy, so it is here: a module that touches what its callback cannot reach
//!   fails under this host as it would in Envoy). Only statuses of the spec are used.
//! - No host function calls back into the guest (except `proxy_on_memory_allocate`): effects
//!   that cause callbacks are recorded in [`state::HostState`] and delivered by the runtime
//!   (the VM) after the current guest call returns.
//!
//! Nothing here imports the runtime that uses it (the VM, the stream driver, the server): the
//! types both sides exchange live in [`crate::seam`], and the host functions reach the
//! process-wide state only through [`state::ProcessStores`], the projection of it the runtime
//! hands each VM's store data (as wasmtime's own `add_to_linker`s link over a state they
//! describe, never over the embedder).

/// `restricted!(linker.func_wrap(module, name, closure))`: the same registration behind
/// Envoy's "restricted_callback" check. While the module initializes, a call traps
/// ([`state::HostState::check_not_restricted`], naming the function) before the closure's body
/// runs. The name is written once, so the trap always names the function that was called.
/// Functions allowed during start-up (`proxy_log`, the WASI clock, random, environment …) use
/// plain `func_wrap`.
///
/// The closure is written as for `func_wrap`: its first parameter the `Caller` (optionally
/// `mut`), every parameter typed, the return type `wasmtime::Result<_>`.
macro_rules! restricted {
    ($linker:ident.func_wrap($module:expr, $name:expr,
     |mut $caller:ident: $caller_ty:ty $(, $arg:tt: $arg_ty:ty)*| -> $ret:ty $body:block $(,)?)) => {
        $linker.func_wrap($module, $name, |mut $caller: $caller_ty $(, $arg: $arg_ty)*| -> $ret {
            $caller.data().check_not_restricted($name)?;
            $body
        })
    };
    ($linker:ident.func_wrap($module:expr, $name:expr,
     |$caller:ident: $caller_ty:ty $(, $arg:tt: $arg_ty:ty)*| -> $ret:ty $body:block $(,)?)) => {
        $linker.func_wrap($module, $name, |$caller: $caller_ty $(, $arg: $arg_ty)*| -> $ret {
            $caller.data().check_not_restricted($name)?;
            $body
        })
    };
}
pub(crate) use restricted;

pub(crate) mod body_buffer;
pub(crate) mod buffers;
pub(crate) mod foreign;
pub(crate) mod headers;
pub(crate) mod http_call;
pub(crate) mod log;
pub(crate) mod memory;
pub(crate) mod metrics;
pub(crate) mod properties;
mod queues;
pub(crate) mod shared_data;
pub(crate) mod state;
pub(crate) mod stream_control;
pub(crate) mod timers;

use wasmtime::Linker;

use state::HostState;

/// The statuses of ABI 0.2.1 (the SDK's `AbiStatus` enum has exactly these; no 6, 11 or 12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum AbiStatus {
    Ok = 0,
    NotFound = 1,
    BadArgument = 2,
    #[allow(dead_code)]
    SerializationFailure = 3,
    #[allow(dead_code)]
    ParseFailure = 4,
    Empty = 7,
    CasMismatch = 8,
    InternalFailure = 10,
}

impl AbiStatus {
    /// The value returned to the guest.
    pub(crate) fn code(self) -> i32 {
        self as i32
    }
}

/// Registers every `env.proxy_*` function the Rust SDK 0.2.5 imports.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    log::add_to_linker(linker)?;
    buffers::add_to_linker(linker)?;
    headers::add_to_linker(linker)?;
    properties::add_to_linker(linker)?;
    shared_data::add_to_linker(linker)?;
    http_call::add_to_linker(linker)?;
    timers::add_to_linker(linker)?;
    metrics::add_to_linker(linker)?;
    stream_control::add_to_linker(linker)?;
    foreign::add_to_linker(linker)?;
    Ok(())
}
