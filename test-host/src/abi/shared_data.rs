//! Shared data: a key-value store across VMs with compare-and-swap.

use wasmtime::{Linker, Result};

use super::memory::{hand_over, read, read_str, write_u32};
use super::{VmState, C, CAS_MISMATCH, NOT_FOUND, OK};

pub(super) fn define(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap("env", "proxy_get_shared_data", proxy_get_shared_data)?;
    linker.func_wrap("env", "proxy_set_shared_data", proxy_set_shared_data)?;
    Ok(())
}

fn proxy_get_shared_data(
    mut c: C<'_>,
    kp: i32,
    kl: i32,
    ret_ptr: i32,
    ret_len: i32,
    ret_cas: i32,
) -> Result<i32> {
    const CALL: &str = "proxy_get_shared_data";
    let key = read_str(&mut c, CALL, "the key", kp, kl)?;
    let found = c
        .data()
        .world()
        .shared
        .get(&key)
        .map(|e| (e.value.clone(), e.cas));
    let status = match found {
        Some((value, cas)) => {
            hand_over(&mut c, CALL, &value, ret_ptr, ret_len)?;
            write_u32(&mut c, CALL, ret_cas, cas)?;
            OK
        }
        None => NOT_FOUND,
    };
    Ok(status)
}

fn proxy_set_shared_data(
    mut c: C<'_>,
    kp: i32,
    kl: i32,
    vp: i32,
    vl: i32,
    cas: i32,
) -> Result<i32> {
    const CALL: &str = "proxy_set_shared_data";
    let key = read_str(&mut c, CALL, "the key", kp, kl)?;
    let value = read(&mut c, CALL, vp, vl)?;
    let mut world = c.data().world();
    let cas = cas as u32;
    if cas != 0 {
        world.interfere(&key);
    }
    if let Some(entry) = world.shared.get(&key) {
        if cas != 0 && cas != entry.cas {
            world.cas_mismatches += 1;
            return Ok(CAS_MISMATCH);
        }
    }
    let next = world.bump_cas();
    world
        .shared
        .insert(key, crate::world::SharedEntry { value, cas: next });
    Ok(OK)
}
