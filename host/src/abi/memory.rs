//! Checked access to guest memory, and handing data to the guest.
//!
//! Why one place: every host function reads arguments from and writes results into linear
//! memory; doing the bounds checks once means a bad pointer is always a trap (never a host
//! panic, never a silent partial write). Data the host returns is copied into memory the guest
//! allocates with its `malloc` export, else `proxy_on_memory_allocate` (Envoy's order; the Rust
//! SDK exports the latter and frees the copy with `Vec::from_raw_parts`).

use wasmtime::Caller;

use super::state::HostState;

fn trap(msg: impl Into<String>) -> wasmtime::Error {
    wasmtime::Error::msg(msg.into())
}

fn memory(caller: &Caller<'_, HostState>) -> wasmtime::Result<wasmtime::Memory> {
    caller
        .data()
        .memory
        .ok_or_else(|| trap("the module exports no memory"))
}

fn range(ptr: i32, len: i32) -> wasmtime::Result<std::ops::Range<usize>> {
    let start = ptr as u32 as usize;
    let len = len as u32 as usize;
    let end = start
        .checked_add(len)
        .ok_or_else(|| trap("guest pointer overflows"))?;
    Ok(start..end)
}

/// Copies `len` bytes at `ptr` out of guest memory; an out-of-bounds range traps.
pub(crate) fn read(
    caller: &mut Caller<'_, HostState>,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<Vec<u8>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    let mem = memory(caller)?;
    let r = range(ptr, len)?;
    mem.data(&*caller)
        .get(r.clone())
        .map(<[u8]>::to_vec)
        .ok_or_else(|| {
            trap(format!(
                "guest memory access out of bounds: {}..{}",
                r.start, r.end
            ))
        })
}

/// Reads a UTF-8 string argument; invalid UTF-8 is replaced (names are compared, not trusted).
pub(crate) fn read_string(
    caller: &mut Caller<'_, HostState>,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<String> {
    let bytes = read(caller, ptr, len)?;
    Ok(String::from_utf8(bytes)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

/// Writes `data` at `ptr`; an out-of-bounds range traps.
pub(crate) fn write(
    caller: &mut Caller<'_, HostState>,
    ptr: i32,
    data: &[u8],
) -> wasmtime::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    let mem = memory(caller)?;
    let r = range(ptr, data.len() as i32)?;
    let slot = mem
        .data_mut(&mut *caller)
        .get_mut(r.clone())
        .ok_or_else(|| {
            trap(format!(
                "guest memory access out of bounds: {}..{}",
                r.start, r.end
            ))
        })?;
    slot.copy_from_slice(data);
    Ok(())
}

/// Writes a little-endian u32 (guest `usize`, pointers, ids).
pub(crate) fn write_u32(
    caller: &mut Caller<'_, HostState>,
    ptr: i32,
    value: u32,
) -> wasmtime::Result<()> {
    write(caller, ptr, &value.to_le_bytes())
}

/// Writes a little-endian u64.
pub(crate) fn write_u64(
    caller: &mut Caller<'_, HostState>,
    ptr: i32,
    value: u64,
) -> wasmtime::Result<()> {
    write(caller, ptr, &value.to_le_bytes())
}

/// Allocates `size` bytes in the guest through `malloc` or `proxy_on_memory_allocate`.
fn allocate(caller: &mut Caller<'_, HostState>, size: u32) -> wasmtime::Result<u32> {
    let alloc = caller
        .data()
        .alloc
        .clone()
        .ok_or_else(|| trap("the module exports no malloc or proxy_on_memory_allocate"))?;
    let ptr = alloc.call(&mut *caller, size)?;
    if ptr == 0 {
        return Err(trap(format!(
            "the module's allocator returned null for {size} bytes"
        )));
    }
    Ok(ptr)
}

/// Hands `data` to the guest: allocates a copy and writes its address and size to
/// `ptr_ptr`/`size_ptr`. Empty data is returned as a null pointer and size 0, as Envoy does
/// (the SDK reads that as "no value": e.g. `(None, Some(cas))` for an emptied shared-data key).
pub(crate) fn copy_out(
    caller: &mut Caller<'_, HostState>,
    data: &[u8],
    ptr_ptr: i32,
    size_ptr: i32,
) -> wasmtime::Result<()> {
    let size = u32::try_from(data.len()).map_err(|_| trap("value larger than 4 GiB"))?;
    let mut addr = 0u32;
    if size > 0 {
        addr = allocate(caller, size)?;
        write(caller, addr as i32, data)?;
    }
    write_u32(caller, ptr_ptr, addr)?;
    write_u32(caller, size_ptr, size)
}
