//! Logging: `proxy_log` and the log level.

use wasmtime::{Linker, Result};

use super::memory::{read, write_u32};
use super::{note, VmState, BAD_ARGUMENT, C, OK};
use crate::model::{Ctx, LogLevel, LogLine, LogSource};

pub(super) fn define(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap("env", "proxy_log", proxy_log)?;
    linker.func_wrap("env", "proxy_get_log_level", proxy_get_log_level)?;
    Ok(())
}

fn proxy_log(mut c: C<'_>, level: i32, ptr: i32, len: i32) -> Result<i32> {
    let msg = read(&mut c, "proxy_log", ptr, len)?;
    let Some(level) = LogLevel::from_abi(level) else {
        return Ok(note(
            &mut c,
            "proxy_log",
            BAD_ARGUMENT,
            &format!("log level {level} does not exist"),
        ));
    };
    let (worker, ctx) = (c.data().worker, c.data().effective);
    c.data().world().log(LogLine {
        level,
        source: LogSource::ProxyLog,
        worker,
        context: Ctx(ctx),
        message: String::from_utf8_lossy(&msg).into_owned(),
    });
    Ok(OK)
}

fn proxy_get_log_level(mut c: C<'_>, ret: i32) -> Result<i32> {
    let level = c.data().world().log_level.to_abi();
    write_u32(&mut c, "proxy_get_log_level", ret, level as u32)?;
    Ok(OK)
}
