//! Stream control: continue, close, and local replies.

use wasmtime::{Linker, Result};

use super::headers::deserialize_map;
use super::memory::read;
use super::{lower, note, VmState, BAD_ARGUMENT, C, NOT_FOUND, OK};
use crate::model::LocalResponse;

pub(super) fn define(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap("env", "proxy_continue_stream", proxy_continue_stream)?;
    linker.func_wrap("env", "proxy_close_stream", proxy_close_stream)?;
    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        proxy_send_local_response,
    )?;
    Ok(())
}

fn proxy_continue_stream(mut c: C<'_>, t: i32) -> Result<i32> {
    const CALL: &str = "proxy_continue_stream";
    let ctx = c.data().effective;
    let why = {
        let mut world = c.data().world();
        match world.stream_mut(ctx) {
            None => Some((NOT_FOUND, format!("context {ctx} is not an HTTP stream"))),
            Some(s) => match t {
                0 => {
                    if s.local_response.is_some() || s.reset {
                        Some((
                            BAD_ARGUMENT,
                            "the stream already has a local reply or was reset".into(),
                        ))
                    } else {
                        s.paused = false;
                        if s.request_delivered {
                            s.forwarded = true;
                        }
                        None
                    }
                }
                1 => {
                    s.response_paused = false;
                    None
                }
                _ => Some((
                    NOT_FOUND,
                    format!("stream type {t} is not an HTTP stream type"),
                )),
            },
        }
    };
    match why {
        None => Ok(OK),
        Some((s, why)) => Ok(note(&mut c, CALL, s, &why)),
    }
}

fn proxy_close_stream(mut c: C<'_>, t: i32) -> Result<i32> {
    const CALL: &str = "proxy_close_stream";
    let ctx = c.data().effective;
    let ok = {
        let mut world = c.data().world();
        match world.stream_mut(ctx) {
            Some(s) if t == 0 || t == 1 => {
                s.reset = true;
                true
            }
            _ => false,
        }
    };
    if ok {
        Ok(OK)
    } else {
        Ok(note(
            &mut c,
            CALL,
            NOT_FOUND,
            &format!("no HTTP stream of type {t} in context {ctx}"),
        ))
    }
}

// The ABI fixes the arguments.
#[allow(clippy::too_many_arguments)]
fn proxy_send_local_response(
    mut c: C<'_>,
    status: i32,
    dp: i32,
    dl: i32,
    bp: i32,
    bl: i32,
    hp: i32,
    hl: i32,
    grpc: i32,
) -> Result<i32> {
    const CALL: &str = "proxy_send_local_response";
    let details = String::from_utf8_lossy(&read(&mut c, CALL, dp, dl)?).into_owned();
    let body = read(&mut c, CALL, bp, bl)?;
    let headers = lower(deserialize_map(CALL, &read(&mut c, CALL, hp, hl)?)?);
    let ctx = c.data().effective;
    let why = {
        let mut world = c.data().world();
        match world.stream_mut(ctx) {
            None => Some(format!("context {ctx} is not an HTTP stream")),
            Some(s) if s.local_response.is_some() => {
                Some("this stream already sent a local response".to_owned())
            }
            Some(s) => {
                s.local_response = Some(LocalResponse {
                    status: status as u32,
                    details,
                    headers,
                    body,
                    grpc_status: grpc,
                });
                s.paused = false;
                None
            }
        }
    };
    match why {
        None => Ok(OK),
        Some(why) => Ok(note(&mut c, CALL, BAD_ARGUMENT, &why)),
    }
}
