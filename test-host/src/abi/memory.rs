//! Reading and writing the module's linear memory.

use wasmtime::{bail, format_err, Extern, Result};

use super::C;

fn memory(caller: &mut C<'_>, call: &str) -> Result<wasmtime::Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Ok(m),
        _ => bail!("{call}: the module exports no linear memory named `memory`"),
    }
}

pub(crate) fn read(caller: &mut C<'_>, call: &str, ptr: i32, len: i32) -> Result<Vec<u8>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    let mem = memory(caller, call)?;
    let (p, l) = (ptr as u32 as usize, len as u32 as usize);
    let data = mem.data(&*caller);
    p.checked_add(l)
        .and_then(|end| data.get(p..end))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| {
            format_err!(
                "{call}: {l} bytes at {p:#x} lie outside linear memory ({} bytes)",
                data.len()
            )
        })
}

pub(super) fn read_str(
    caller: &mut C<'_>,
    call: &str,
    what: &str,
    ptr: i32,
    len: i32,
) -> Result<String> {
    let bytes = read(caller, call, ptr, len)?;
    String::from_utf8(bytes).map_err(|_| format_err!("{call}: {what} is not UTF-8"))
}

pub(crate) fn write(caller: &mut C<'_>, call: &str, ptr: i32, bytes: &[u8]) -> Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    let mem = memory(caller, call)?;
    let p = ptr as u32 as usize;
    let data = mem.data_mut(&mut *caller);
    let len = data.len();
    match p
        .checked_add(bytes.len())
        .and_then(|end| data.get_mut(p..end))
    {
        Some(dst) => {
            dst.copy_from_slice(bytes);
            Ok(())
        }
        None => bail!(
            "{call}: cannot write {} bytes at {p:#x}: outside linear memory ({len} bytes)",
            bytes.len()
        ),
    }
}

pub(crate) fn write_u32(caller: &mut C<'_>, call: &str, ptr: i32, v: u32) -> Result<()> {
    write(caller, call, ptr, &v.to_le_bytes())
}

pub(crate) fn write_u64(caller: &mut C<'_>, call: &str, ptr: i32, v: u64) -> Result<()> {
    write(caller, call, ptr, &v.to_le_bytes())
}

/// Copies `bytes` into memory the module allocates (`proxy_on_memory_allocate`, else `malloc`)
/// and writes the pointer and size to the module's return slots.
pub(super) fn hand_over(
    caller: &mut C<'_>,
    call: &str,
    bytes: &[u8],
    ret_ptr: i32,
    ret_len: i32,
) -> Result<()> {
    let alloc = ["proxy_on_memory_allocate", "malloc"]
        .iter()
        .find_map(|n| caller.get_export(n).and_then(Extern::into_func))
        .ok_or_else(|| {
            format_err!("{call}: the module exports neither proxy_on_memory_allocate nor malloc")
        })?;
    let alloc = alloc
        .typed::<i32, i32>(&*caller)
        .map_err(|e| format_err!("{call}: proxy_on_memory_allocate has the wrong type: {e}"))?;
    let len = i32::try_from(bytes.len())
        .map_err(|_| format_err!("{call}: {} bytes do not fit a wasm32 size", bytes.len()))?;
    let ptr = alloc.call(&mut *caller, len)?;
    if ptr == 0 {
        bail!("{call}: proxy_on_memory_allocate({len}) returned a null pointer");
    }
    write(caller, call, ptr, bytes)?;
    write_u32(caller, call, ret_ptr, ptr as u32)?;
    write_u32(caller, call, ret_len, len as u32)
}
