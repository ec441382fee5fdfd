//! Foreign functions: `proxy_call_foreign_function`.
//!
//! Only `clear_route_cache` exists (OK, no result): routing here happens after the filters ran,
//! so the route is always computed from the headers the filter set. Any other name is
//! NOT_FOUND, as in an Envoy that does not register it.

use wasmtime::{Caller, Linker};

use super::memory;
use super::state::HostState;
use super::AbiStatus;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    restricted!(linker.func_wrap(
        "env",
        "proxy_call_foreign_function",
        |mut caller: Caller<'_, HostState>,
         name_ptr: i32,
         name_len: i32,
         args_ptr: i32,
         args_len: i32,
         ret_ptr: i32,
         ret_size: i32|
         -> wasmtime::Result<i32> {
            // Compared in place (no copy): only an exact `clear_route_cache` matches, as the
            // name read as a string did (a lossy decoding never equals it). The arguments are
            // unused, but a bad pointer still traps.
            let name = memory::borrow(&caller, name_ptr, name_len)?;
            memory::borrow(&caller, args_ptr, args_len)?;
            match name {
                b"clear_route_cache" => {
                    memory::copy_out(&mut caller, &[], ret_ptr, ret_size)?;
                    Ok(AbiStatus::Ok.code())
                }
                _ => Ok(AbiStatus::NotFound.code()),
            }
        },
    ))?;
    Ok(())
}
