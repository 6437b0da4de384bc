//! The clock and the tick timer.

use wasmtime::{bail, Linker, Result};

use super::memory::write_u64;
use super::{VmState, C, OK};

pub(super) fn define(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        proxy_get_current_time_nanoseconds,
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        proxy_set_tick_period_milliseconds,
    )?;
    Ok(())
}

fn proxy_get_current_time_nanoseconds(mut c: C<'_>, ret: i32) -> Result<i32> {
    let now = c.data().world().now_ns;
    write_u64(&mut c, "proxy_get_current_time_nanoseconds", ret, now)?;
    Ok(OK)
}

fn proxy_set_tick_period_milliseconds(c: C<'_>, period: i32) -> Result<i32> {
    let ctx = c.data().effective;
    let mut world = c.data().world();
    let now = world.now_ns;
    let root = match world.contexts.get(&ctx) {
        Some(state) if state.root == 0 => ctx,
        Some(state) => state.root,
        None => bail!("proxy_set_tick_period_milliseconds: no context {ctx}"),
    };
    if let Some(state) = world.contexts.get_mut(&root) {
        let period_ns = u64::from(period as u32) * 1_000_000;
        state.tick = (period_ns > 0).then_some((period_ns, now + period_ns));
    }
    Ok(OK)
}
