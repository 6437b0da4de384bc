//! Buffers: the request, response and callout bodies and the configurations.

use wasmtime::{Linker, Result};

use super::memory::{hand_over, read};
use super::{note, Callback, VmState, BAD_ARGUMENT, C, NOT_FOUND, OK};

pub(super) fn define(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap("env", "proxy_get_buffer_bytes", proxy_get_buffer_bytes)?;
    linker.func_wrap("env", "proxy_set_buffer_bytes", proxy_set_buffer_bytes)?;
    Ok(())
}

fn proxy_get_buffer_bytes(
    mut c: C<'_>,
    t: i32,
    start: i32,
    max: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> Result<i32> {
    const CALL: &str = "proxy_get_buffer_bytes";
    let (start, max) = (start as u32 as usize, max as u32 as usize);
    match with_buffer(&mut c, t, false, |b| {
        let from = start.min(b.len());
        let to = from.saturating_add(max).min(b.len());
        b[from..to].to_vec()
    }) {
        Ok(bytes) => {
            hand_over(&mut c, CALL, &bytes, ret_ptr, ret_len)?;
            Ok(OK)
        }
        Err((status, why)) => Ok(note(&mut c, CALL, status, &why)),
    }
}

fn proxy_set_buffer_bytes(
    mut c: C<'_>,
    t: i32,
    start: i32,
    size: i32,
    ptr: i32,
    len: i32,
) -> Result<i32> {
    const CALL: &str = "proxy_set_buffer_bytes";
    let data = read(&mut c, CALL, ptr, len)?;
    let (start, size) = (start as u32 as usize, size as u32 as usize);
    // Envoy's rules: prepend (0,0), replace all (0, >=len), append (start >= len).
    match with_buffer(&mut c, t, true, |b| {
        if start == 0 && size == 0 {
            b.splice(0..0, data);
            true
        } else if start == 0 && size >= b.len() {
            *b = data;
            true
        } else if start >= b.len() {
            b.extend_from_slice(&data);
            true
        } else {
            false
        }
    }) {
        Ok(true) => Ok(OK),
        Ok(false) => Ok(note(
            &mut c,
            CALL,
            BAD_ARGUMENT,
            "Envoy only supports prepend (0,0), replace-all (0,>=len) and append (start>=len)",
        )),
        Err((status, why)) => Ok(note(&mut c, CALL, status, &why)),
    }
}

/// Runs `f` on the selected buffer, or returns (status, why).
fn with_buffer<R>(
    caller: &mut C<'_>,
    buffer_type: i32,
    write: bool,
    f: impl FnOnce(&mut Vec<u8>) -> R,
) -> std::result::Result<R, (i32, String)> {
    let state = caller.data_mut();
    let cb = state.callback;
    match buffer_type {
        0 | 1 => {
            let ctx = state.effective;
            let mut world = state.world();
            let Some(stream) = world.stream_mut(ctx) else {
                return Err((NOT_FOUND, format!("context {ctx} is not an HTTP stream")));
            };
            if buffer_type == 0 {
                let readable = cb == Callback::RequestBody
                    || (stream.body_seen && stream.paused && !stream.forwarded);
                if !readable {
                    return Err((
                        NOT_FOUND,
                        "the request body is readable only in proxy_on_request_body or while \
                         the stream is paused from it"
                            .into(),
                    ));
                }
                if write && stream.forwarded {
                    return Err((BAD_ARGUMENT, "the request was already forwarded".into()));
                }
                Ok(f(&mut stream.request.body))
            } else {
                let readable = cb == Callback::ResponseBody || stream.response_paused;
                match stream.response.as_mut() {
                    Some(resp) if readable => Ok(f(&mut resp.body)),
                    _ => Err((
                        NOT_FOUND,
                        "the response body is readable only in proxy_on_response_body or while \
                         the response is paused from it"
                            .into(),
                    )),
                }
            }
        }
        4 => {
            if write {
                return Err((BAD_ARGUMENT, "the callout response body is read-only".into()));
            }
            match state.call_response.as_mut() {
                Some(resp) => Ok(f(&mut resp.body)),
                None => Err((
                    NOT_FOUND,
                    "the callout response body exists only inside proxy_on_http_call_response"
                        .into(),
                )),
            }
        }
        6 | 7 => {
            if write {
                return Err((BAD_ARGUMENT, "configuration buffers are read-only".into()));
            }
            let (want, name) = if buffer_type == 6 {
                (Callback::VmStart, "VM configuration is readable only in proxy_on_vm_start")
            } else {
                (
                    Callback::Configure,
                    "plugin configuration is readable only in proxy_on_configure",
                )
            };
            if cb != want {
                return Err((NOT_FOUND, name.into()));
            }
            let mut world = state.world();
            let buf = if buffer_type == 6 {
                &mut world.vm_config
            } else {
                &mut world.plugin_config
            };
            Ok(f(buf))
        }
        2 | 3 | 5 | 8 => Err((
            NOT_FOUND,
            format!("buffer type {buffer_type} (network, gRPC or call data) is not supported by this host"),
        )),
        _ => Err((BAD_ARGUMENT, format!("buffer type {buffer_type} does not exist"))),
    }
}
