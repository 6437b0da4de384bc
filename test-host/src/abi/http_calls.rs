//! HTTP callouts.

use wasmtime::{Linker, Result};

use super::headers::deserialize_map;
use super::memory::{read, read_str, write_u32};
use super::{lower, note, VmState, BAD_ARGUMENT, C, OK};
use crate::model::{Call, Ctx};

pub(super) fn define(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap("env", "proxy_http_call", proxy_http_call)?;
    Ok(())
}

// The ABI fixes the arguments.
#[allow(clippy::too_many_arguments)]
fn proxy_http_call(
    mut c: C<'_>,
    up: i32,
    ul: i32,
    hp: i32,
    hl: i32,
    bp: i32,
    bl: i32,
    tp: i32,
    tl: i32,
    timeout: i32,
    ret: i32,
) -> Result<i32> {
    const CALL: &str = "proxy_http_call";
    let cluster = read_str(&mut c, CALL, "the upstream name", up, ul)?;
    let headers = lower(deserialize_map(CALL, &read(&mut c, CALL, hp, hl)?)?);
    let body = read(&mut c, CALL, bp, bl)?;
    let trailers = lower(deserialize_map(CALL, &read(&mut c, CALL, tp, tl)?)?);
    for required in [":method", ":path", ":authority"] {
        if crate::model::find(&headers, required).is_none() {
            return Ok(note(
                &mut c,
                CALL,
                BAD_ARGUMENT,
                &format!("headers lack required {required} (call to cluster {cluster})"),
            ));
        }
    }
    let (worker, ctx) = (c.data().worker, c.data().effective);
    let token = {
        let mut world = c.data().world();
        if let Some(known) = &world.clusters {
            if !known.contains(&cluster) {
                drop(world);
                return Ok(note(
                    &mut c,
                    CALL,
                    BAD_ARGUMENT,
                    &format!("unknown cluster {cluster:?}"),
                ));
            }
        }
        let token = world.next_token();
        let timeout_ms = timeout as u32;
        let deadline_ns = if timeout_ms == 0 {
            u64::MAX
        } else {
            world.now_ns + u64::from(timeout_ms) * 1_000_000
        };
        world.calls.insert(
            token.0,
            Call {
                token,
                context: Ctx(ctx),
                worker,
                cluster,
                headers,
                body,
                trailers,
                timeout_ms,
                deadline_ns,
            },
        );
        token
    };
    write_u32(&mut c, CALL, ret, token.0)?;
    Ok(OK)
}
