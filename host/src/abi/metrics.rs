//! Metrics: `proxy_define_metric`, `proxy_increment_metric`, `proxy_record_metric`,
//! `proxy_get_metric`, backed by the process-wide [`crate::metrics::Metrics`] (same name and
//! type from any VM is one stat; counter increments must be > 0).

use wasmtime::{Caller, Linker};

use super::memory;
use super::state::HostState;
use super::AbiStatus;
use crate::metrics::{MetricError, MetricKind};

fn status(e: MetricError) -> i32 {
    match e {
        MetricError::NotFound => AbiStatus::NotFound.code(),
        MetricError::BadArgument => AbiStatus::BadArgument.code(),
    }
}

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    restricted!(linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut caller: Caller<'_, HostState>,
         kind: i32,
         name_ptr: i32,
         name_len: i32,
         ret_id: i32|
         -> wasmtime::Result<i32> {
            let name = memory::read_string(&mut caller, name_ptr, name_len)?;
            let Some(kind) = MetricKind::from_abi(kind as u32) else {
                return Ok(AbiStatus::BadArgument.code());
            };
            let id = caller.data().shared.metrics().define(kind, &name);
            memory::write_u32(&mut caller, ret_id, id)?;
            Ok(AbiStatus::Ok.code())
        },
    ))?;
    restricted!(linker.func_wrap(
        "env",
        "proxy_increment_metric",
        |caller: Caller<'_, HostState>, id: i32, offset: i64| -> wasmtime::Result<i32> {
            Ok(
                match caller.data().shared.metrics().increment(id as u32, offset) {
                    Ok(()) => AbiStatus::Ok.code(),
                    Err(e) => status(e),
                },
            )
        },
    ))?;
    restricted!(linker.func_wrap(
        "env",
        "proxy_record_metric",
        |caller: Caller<'_, HostState>, id: i32, value: i64| -> wasmtime::Result<i32> {
            Ok(
                match caller
                    .data()
                    .shared
                    .metrics()
                    .record(id as u32, value as u64)
                {
                    Ok(()) => AbiStatus::Ok.code(),
                    // record's wrapper accepts NOT_FOUND only.
                    Err(_) => AbiStatus::NotFound.code(),
                },
            )
        },
    ))?;
    restricted!(linker.func_wrap(
        "env",
        "proxy_get_metric",
        |mut caller: Caller<'_, HostState>, id: i32, ret: i32| -> wasmtime::Result<i32> {
            match caller.data().shared.metrics().get(id as u32) {
                Ok(v) => {
                    memory::write_u64(&mut caller, ret, v)?;
                    Ok(AbiStatus::Ok.code())
                }
                Err(e) => Ok(status(e)),
            }
        },
    ))?;
    Ok(())
}
