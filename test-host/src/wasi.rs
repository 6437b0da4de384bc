//! The WASI preview1 calls a Rust `wasm32-wasip1` filter imports. Deterministic: clocks read
//! the host's virtual clock, `random_get` a seeded generator; stdout/stderr become log lines.

use wasmtime::{bail, Caller, Linker, Result};

use crate::abi::{read, write, write_u32, write_u64, VmState};
use crate::model::{Ctx, LogLevel, LogLine, LogSource};

const M: &str = "wasi_snapshot_preview1";
const SUCCESS: i32 = 0;
const EBADF: i32 = 8;
const EINVAL: i32 = 28;
const ESPIPE: i32 = 70;

type C<'a> = Caller<'a, VmState>;

fn flush_lines(c: &mut C<'_>, fd: i32) {
    let (worker, ctx) = (c.data().worker, c.data().effective);
    let state = c.data_mut();
    let buf = if fd == 1 {
        &mut state.stdout
    } else {
        &mut state.stderr
    };
    let mut lines = Vec::new();
    while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
        let line: Vec<u8> = buf.drain(..=pos).collect();
        lines.push(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned());
    }
    let mut world = state.world();
    for message in lines {
        world.log(LogLine {
            level: if fd == 1 {
                LogLevel::Info
            } else {
                LogLevel::Error
            },
            source: if fd == 1 {
                LogSource::Stdout
            } else {
                LogSource::Stderr
            },
            worker,
            context: Ctx(ctx),
            message,
        });
    }
}

pub(crate) fn define(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap(
        M,
        "fd_write",
        |mut c: C<'_>, fd: i32, iovs: i32, n: i32, ret: i32| -> Result<i32> {
            const CALL: &str = "fd_write";
            if fd != 1 && fd != 2 {
                return Ok(EBADF);
            }
            let mut total = 0u32;
            for i in 0..n {
                let iov = read(&mut c, CALL, iovs + i * 8, 8)?;
                let ptr = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
                let len = i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
                let bytes = read(&mut c, CALL, ptr, len)?;
                total += bytes.len() as u32;
                let state = c.data_mut();
                if fd == 1 {
                    state.stdout.extend_from_slice(&bytes);
                } else {
                    state.stderr.extend_from_slice(&bytes);
                }
            }
            flush_lines(&mut c, fd);
            write_u32(&mut c, CALL, ret, total)?;
            Ok(SUCCESS)
        },
    )?;
    linker.func_wrap(
        M,
        "fd_read",
        |mut c: C<'_>, fd: i32, _iovs: i32, _n: i32, ret: i32| -> Result<i32> {
            if fd != 0 {
                return Ok(EBADF);
            }
            // stdin is empty.
            write_u32(&mut c, "fd_read", ret, 0)?;
            Ok(SUCCESS)
        },
    )?;
    linker.func_wrap(M, "fd_close", |_c: C<'_>, _fd: i32| -> Result<i32> {
        Ok(EBADF)
    })?;
    linker.func_wrap(
        M,
        "fd_seek",
        |_c: C<'_>, fd: i32, _off: i64, _whence: i32, _ret: i32| -> Result<i32> {
            Ok(if (0..=2).contains(&fd) { ESPIPE } else { EBADF })
        },
    )?;
    linker.func_wrap(
        M,
        "fd_fdstat_get",
        |mut c: C<'_>, fd: i32, ret: i32| -> Result<i32> {
            if !(0..=2).contains(&fd) {
                return Ok(EBADF);
            }
            // filetype character_device (2), no flags, all rights.
            let mut stat = [0u8; 24];
            stat[0] = 2;
            stat[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
            stat[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
            write(&mut c, "fd_fdstat_get", ret, &stat)?;
            Ok(SUCCESS)
        },
    )?;
    // No preopened directories: EBADF ends the libc's preopen scan.
    linker.func_wrap(
        M,
        "fd_prestat_get",
        |_c: C<'_>, _fd: i32, _ret: i32| -> Result<i32> { Ok(EBADF) },
    )?;
    linker.func_wrap(
        M,
        "fd_prestat_dir_name",
        |_c: C<'_>, _fd: i32, _p: i32, _l: i32| -> Result<i32> { Ok(EBADF) },
    )?;
    for (sizes, get) in [
        ("environ_sizes_get", "environ_get"),
        ("args_sizes_get", "args_get"),
    ] {
        linker.func_wrap(
            M,
            sizes,
            move |mut c: C<'_>, count: i32, size: i32| -> Result<i32> {
                write_u32(&mut c, sizes, count, 0)?;
                write_u32(&mut c, sizes, size, 0)?;
                Ok(SUCCESS)
            },
        )?;
        linker.func_wrap(M, get, |_c: C<'_>, _a: i32, _b: i32| -> Result<i32> {
            Ok(SUCCESS)
        })?;
    }
    linker.func_wrap(
        M,
        "clock_time_get",
        |mut c: C<'_>, id: i32, _precision: i64, ret: i32| -> Result<i32> {
            if !(0..=3).contains(&id) {
                return Ok(EINVAL);
            }
            let now = c.data().world().now_ns;
            write_u64(&mut c, "clock_time_get", ret, now)?;
            Ok(SUCCESS)
        },
    )?;
    linker.func_wrap(
        M,
        "clock_res_get",
        |mut c: C<'_>, id: i32, ret: i32| -> Result<i32> {
            if !(0..=3).contains(&id) {
                return Ok(EINVAL);
            }
            write_u64(&mut c, "clock_res_get", ret, 1)?;
            Ok(SUCCESS)
        },
    )?;
    linker.func_wrap(
        M,
        "random_get",
        |mut c: C<'_>, ptr: i32, len: i32| -> Result<i32> {
            let mut bytes = Vec::with_capacity(len as u32 as usize + 8);
            {
                let mut world = c.data().world();
                while bytes.len() < len as u32 as usize {
                    bytes.extend_from_slice(&world.random_u64().to_le_bytes());
                }
            }
            bytes.truncate(len as u32 as usize);
            write(&mut c, "random_get", ptr, &bytes)?;
            Ok(SUCCESS)
        },
    )?;
    linker.func_wrap(M, "sched_yield", |_c: C<'_>| -> Result<i32> { Ok(SUCCESS) })?;
    linker.func_wrap(M, "proc_exit", |_c: C<'_>, code: i32| -> Result<()> {
        bail!("proc_exit({code}): the module asked to exit")
    })?;
    Ok(())
}
