//! Timers: `proxy_set_tick_period_milliseconds`.
//!
//! Each VM has its own tick stream on its own thread (as each Envoy worker does). The period is
//! recorded here and the timer (re)armed by the VM after the guest call returns; 0 stops it.

use wasmtime::{Caller, Linker};

use super::state::{Deferred, HostState};
use super::AbiStatus;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    restricted!(linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut caller: Caller<'_, HostState>, period_ms: i32| -> wasmtime::Result<i32> {
            caller
                .data_mut()
                .deferred
                .push(Deferred::SetTick(period_ms as u32));
            Ok(AbiStatus::Ok.code())
        },
    ))?;
    Ok(())
}
