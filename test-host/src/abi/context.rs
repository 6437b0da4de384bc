//! The effective context, `proxy_done` and foreign functions.

use wasmtime::{Linker, Result};

use super::memory::read;
use super::{note, VmState, BAD_ARGUMENT, C, NOT_FOUND, OK};

pub(super) fn define(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        proxy_set_effective_context,
    )?;
    linker.func_wrap("env", "proxy_done", proxy_done)?;
    linker.func_wrap(
        "env",
        "proxy_call_foreign_function",
        proxy_call_foreign_function,
    )?;
    Ok(())
}

fn proxy_set_effective_context(mut c: C<'_>, id: i32) -> Result<i32> {
    let worker = c.data().worker;
    let exists = c
        .data()
        .world()
        .contexts
        .get(&(id as u32))
        .is_some_and(|s| s.worker == worker);
    if exists {
        c.data_mut().effective = id as u32;
        Ok(OK)
    } else {
        Ok(note(
            &mut c,
            "proxy_set_effective_context",
            BAD_ARGUMENT,
            &format!("no context {id} on worker {worker}"),
        ))
    }
}

fn proxy_done(_c: C<'_>) -> Result<i32> {
    Ok(OK)
}

fn proxy_call_foreign_function(
    mut c: C<'_>,
    np: i32,
    nl: i32,
    _ap: i32,
    _al: i32,
    _rp: i32,
    _rl: i32,
) -> Result<i32> {
    const CALL: &str = "proxy_call_foreign_function";
    let name = String::from_utf8_lossy(&read(&mut c, CALL, np, nl)?).into_owned();
    Ok(note(
        &mut c,
        CALL,
        NOT_FOUND,
        &format!("no foreign function {name:?} in this host"),
    ))
}
