//! Shared data and shared queues: `proxy_{get,set}_shared_data`,
//! `proxy_{register,resolve,enqueue,dequeue}_shared_queue`.
//!
//! Shared data is namespaced by the plugin's `vm_id` and follows [`crate::shared_data`]'s
//! Envoy rules. Shared queues are kept (register/resolve/enqueue/dequeue work across VMs) but
//! `proxy_on_queue_ready` is not delivered: the filter does not use queues.

use wasmtime::{Caller, Linker};

use super::memory;
use super::state::HostState;
use super::AbiStatus;
use crate::shared_data::SharedDataError;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    restricted!(linker.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut caller: Caller<'_, HostState>,
         key_ptr: i32,
         key_len: i32,
         ret_ptr: i32,
         ret_size: i32,
         ret_cas: i32|
         -> wasmtime::Result<i32> {
            let key = memory::read_string(&mut caller, key_ptr, key_len)?;
            let state = caller.data();
            match state.shared.shared_data().get(&state.spec.vm_id, &key) {
                Ok((value, cas)) => {
                    memory::copy_out(&mut caller, &value, ret_ptr, ret_size)?;
                    memory::write_u32(&mut caller, ret_cas, cas)?;
                    Ok(AbiStatus::Ok.code())
                }
                Err(_) => Ok(AbiStatus::NotFound.code()),
            }
        },
    ))?;
    restricted!(linker.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut caller: Caller<'_, HostState>,
         key_ptr: i32,
         key_len: i32,
         value_ptr: i32,
         value_len: i32,
         cas: i32|
         -> wasmtime::Result<i32> {
            let key = memory::read_string(&mut caller, key_ptr, key_len)?;
            let value = memory::read(&mut caller, value_ptr, value_len)?;
            let state = caller.data();
            match state
                .shared
                .shared_data()
                .set(&state.spec.vm_id, &key, &value, cas as u32)
            {
                Ok(()) => Ok(AbiStatus::Ok.code()),
                Err(SharedDataError::CasMismatch) => Ok(AbiStatus::CasMismatch.code()),
                // `set` never reports NotFound; keep the SDK-accepted status anyway.
                Err(SharedDataError::NotFound) => Ok(AbiStatus::CasMismatch.code()),
            }
        },
    ))?;
    restricted!(linker.func_wrap(
        "env",
        "proxy_register_shared_queue",
        |mut caller: Caller<'_, HostState>,
         name_ptr: i32,
         name_len: i32,
         ret_id: i32|
         -> wasmtime::Result<i32> {
            let name = memory::read_string(&mut caller, name_ptr, name_len)?;
            let state = caller.data();
            let id = state.shared.queues().register(&state.spec.vm_id, &name);
            memory::write_u32(&mut caller, ret_id, id)?;
            Ok(AbiStatus::Ok.code())
        },
    ))?;
    restricted!(linker.func_wrap(
        "env",
        "proxy_resolve_shared_queue",
        |mut caller: Caller<'_, HostState>,
         vm_ptr: i32,
         vm_len: i32,
         name_ptr: i32,
         name_len: i32,
         ret_id: i32|
         -> wasmtime::Result<i32> {
            let vm_id = memory::read_string(&mut caller, vm_ptr, vm_len)?;
            let name = memory::read_string(&mut caller, name_ptr, name_len)?;
            match caller.data().shared.queues().resolve(&vm_id, &name) {
                Some(id) => {
                    memory::write_u32(&mut caller, ret_id, id)?;
                    Ok(AbiStatus::Ok.code())
                }
                None => Ok(AbiStatus::NotFound.code()),
            }
        },
    ))?;
    restricted!(linker.func_wrap(
        "env",
        "proxy_enqueue_shared_queue",
        |mut caller: Caller<'_, HostState>, id: i32, ptr: i32, len: i32| -> wasmtime::Result<i32> {
            let value = memory::read(&mut caller, ptr, len)?;
            Ok(
                match caller.data().shared.queues().enqueue(id as u32, value) {
                    Ok(()) => AbiStatus::Ok.code(),
                    Err(s) => s.code(),
                },
            )
        },
    ))?;
    restricted!(linker.func_wrap(
        "env",
        "proxy_dequeue_shared_queue",
        |mut caller: Caller<'_, HostState>,
         id: i32,
         ret_ptr: i32,
         ret_size: i32|
         -> wasmtime::Result<i32> {
            match caller.data().shared.queues().dequeue(id as u32) {
                Ok(v) => {
                    memory::copy_out(&mut caller, &v, ret_ptr, ret_size)?;
                    Ok(AbiStatus::Ok.code())
                }
                Err(s) => Ok(s.code()),
            }
        },
    ))?;
    Ok(())
}
