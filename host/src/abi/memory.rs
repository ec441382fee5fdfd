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

fn out_of_bounds(r: &std::ops::Range<usize>) -> wasmtime::Error {
    trap(format!(
        "guest memory access out of bounds: {}..{}",
        r.start, r.end
    ))
}

/// The `len` bytes at `ptr` in `bytes` (guest memory, as [`split`] returns it; `None` when
/// the module exports none); an out-of-bounds range traps. An empty range is never checked
/// (as [`read`]).
pub(crate) fn borrow_in(bytes: Option<&[u8]>, ptr: i32, len: i32) -> wasmtime::Result<&[u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    let bytes = bytes.ok_or_else(|| trap("the module exports no memory"))?;
    let r = range(ptr, len)?;
    bytes.get(r.clone()).ok_or_else(|| out_of_bounds(&r))
}

/// The `len` bytes at `ptr`, borrowed from guest memory (no copy), with the same checks as
/// [`read`]. For arguments a host function only compares or looks up: a copy per call was an
/// allocation and a free per call.
pub(crate) fn borrow<'a>(
    caller: &'a Caller<'_, HostState>,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    borrow_in(Some(memory(caller)?.data(caller)), ptr, len)
}

/// Guest memory to read arguments from and the store data to change, at once (for a host
/// function that looks an argument up in its state without copying it).
pub(crate) fn split<'a>(
    caller: &'a mut Caller<'_, HostState>,
) -> (Option<&'a [u8]>, &'a mut HostState) {
    match caller.data().memory {
        Some(mem) => {
            let (bytes, state) = mem.data_and_store_mut(caller);
            (Some(bytes), state)
        }
        None => (None, caller.data_mut()),
    }
}

/// Copies `len` bytes at `ptr` out of guest memory; an out-of-bounds range traps.
pub(crate) fn read(
    caller: &mut Caller<'_, HostState>,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<Vec<u8>> {
    borrow(caller, ptr, len).map(<[u8]>::to_vec)
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
    put(mem.data_mut(&mut *caller), ptr, data)
}

/// Writes non-empty `data` at `ptr` into `bytes` (guest memory); an out-of-bounds range traps.
fn put(bytes: &mut [u8], ptr: i32, data: &[u8]) -> wasmtime::Result<()> {
    let r = range(ptr, data.len() as i32)?;
    bytes
        .get_mut(r.clone())
        .ok_or_else(|| out_of_bounds(&r))?
        .copy_from_slice(data);
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

/// Hands `size` bytes the host keeps in its state to the guest without an intermediate copy:
/// allocates in the guest, then `fill` writes the bytes from the state straight into the
/// allocation (it returns false when it cannot fill exactly that many: the call traps).
/// Otherwise as [`copy_out`].
pub(crate) fn copy_out_from(
    caller: &mut Caller<'_, HostState>,
    size: usize,
    ptr_ptr: i32,
    size_ptr: i32,
    fill: impl FnOnce(&HostState, &mut [u8]) -> bool,
) -> wasmtime::Result<()> {
    let size32 = u32::try_from(size).map_err(|_| trap("value larger than 4 GiB"))?;
    let addr = if size > 0 {
        allocate(caller, size32)?
    } else {
        0
    };
    let mem = memory(caller)?;
    let (bytes, state) = mem.data_and_store_mut(&mut *caller);
    if size > 0 {
        let r = range(addr as i32, size32 as i32)?;
        let dest = bytes.get_mut(r.clone()).ok_or_else(|| out_of_bounds(&r))?;
        if !fill(state, dest) {
            return Err(trap(
                "the buffer changed while the guest allocated its copy",
            ));
        }
    }
    put(bytes, ptr_ptr, &addr.to_le_bytes())?;
    put(bytes, size_ptr, &size32.to_le_bytes())
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
    copy_out_from(caller, data.len(), ptr_ptr, size_ptr, |_, dest| {
        dest.copy_from_slice(data);
        true
    })
}
