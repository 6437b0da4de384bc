//! Properties, looked up on the stream first, then on the plugin.

use wasmtime::{Linker, Result};

use super::memory::{hand_over, read};
use super::{VmState, C, NOT_FOUND, OK};

pub(super) fn define(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap("env", "proxy_get_property", proxy_get_property)?;
    linker.func_wrap("env", "proxy_set_property", proxy_set_property)?;
    Ok(())
}

fn proxy_get_property(mut c: C<'_>, pp: i32, pl: i32, ret_ptr: i32, ret_len: i32) -> Result<i32> {
    const CALL: &str = "proxy_get_property";
    let path = property_path(&read(&mut c, CALL, pp, pl)?);
    match property(&mut c, &path) {
        Some(v) => {
            hand_over(&mut c, CALL, &v, ret_ptr, ret_len)?;
            Ok(OK)
        }
        None => Ok(NOT_FOUND),
    }
}

fn proxy_set_property(mut c: C<'_>, pp: i32, pl: i32, vp: i32, vl: i32) -> Result<i32> {
    const CALL: &str = "proxy_set_property";
    let path = property_path(&read(&mut c, CALL, pp, pl)?);
    let value = read(&mut c, CALL, vp, vl)?;
    let ctx = c.data().effective;
    let mut world = c.data().world();
    match world.stream_mut(ctx) {
        Some(s) => {
            s.properties.insert(path, value);
        }
        None => {
            world.plugin_properties.insert(path, value);
        }
    }
    Ok(OK)
}

/// Property lookup: the stream's properties, then the plugin's.
fn property(caller: &mut C<'_>, path: &str) -> Option<Vec<u8>> {
    let ctx = caller.data().effective;
    let world = caller.data().world();
    world
        .stream(ctx)
        .and_then(|s| s.properties.get(path).cloned())
        .or_else(|| world.plugin_properties.get(path).cloned())
}

fn property_path(bytes: &[u8]) -> String {
    bytes
        .split(|b| *b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect::<Vec<_>>()
        .join(".")
}
