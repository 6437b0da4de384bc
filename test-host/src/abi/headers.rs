//! Header and trailer maps: the request, response and callout response maps.

use wasmtime::{format_err, Linker, Result};

use super::memory::{hand_over, read, read_str};
use super::{lower, note, VmState, BAD_ARGUMENT, C, NOT_FOUND, OK};
use crate::model::Headers;

pub(super) fn define(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        proxy_get_header_map_pairs,
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        proxy_set_header_map_pairs,
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        proxy_get_header_map_value,
    )?;
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        proxy_remove_header_map_value,
    )?;
    linker.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        proxy_replace_header_map_value,
    )?;
    linker.func_wrap(
        "env",
        "proxy_add_header_map_value",
        proxy_add_header_map_value,
    )?;
    Ok(())
}

fn proxy_get_header_map_pairs(mut c: C<'_>, t: i32, ret_ptr: i32, ret_len: i32) -> Result<i32> {
    const CALL: &str = "proxy_get_header_map_pairs";
    match with_map(&mut c, t, false, |m| serialize_map(m)) {
        Ok(bytes) => {
            hand_over(&mut c, CALL, &bytes, ret_ptr, ret_len)?;
            Ok(OK)
        }
        Err((s, why)) => Ok(note(&mut c, CALL, s, &why)),
    }
}

fn proxy_set_header_map_pairs(mut c: C<'_>, t: i32, ptr: i32, len: i32) -> Result<i32> {
    const CALL: &str = "proxy_set_header_map_pairs";
    let bytes = read(&mut c, CALL, ptr, len)?;
    let new = deserialize_map(CALL, &bytes)?;
    match with_map(&mut c, t, true, |m| *m = lower(new)) {
        Ok(()) => Ok(OK),
        Err((s, why)) => Ok(note(&mut c, CALL, s, &why)),
    }
}

fn proxy_get_header_map_value(
    mut c: C<'_>,
    t: i32,
    kp: i32,
    kl: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> Result<i32> {
    const CALL: &str = "proxy_get_header_map_value";
    let key = read_str(&mut c, CALL, "the header name", kp, kl)?;
    match with_map(&mut c, t, false, |m| {
        crate::model::find(m, &key).map(str::to_owned)
    }) {
        Ok(Some(v)) => {
            hand_over(&mut c, CALL, v.as_bytes(), ret_ptr, ret_len)?;
            Ok(OK)
        }
        Ok(None) => Ok(NOT_FOUND),
        Err((s, why)) => Ok(note(&mut c, CALL, s, &why)),
    }
}

fn proxy_remove_header_map_value(mut c: C<'_>, t: i32, kp: i32, kl: i32) -> Result<i32> {
    const CALL: &str = "proxy_remove_header_map_value";
    let key = read_str(&mut c, CALL, "the header name", kp, kl)?;
    match with_map(&mut c, t, true, |m| {
        m.retain(|(n, _)| !n.eq_ignore_ascii_case(&key))
    }) {
        Ok(()) => Ok(OK),
        Err((s, why)) => Ok(note(&mut c, CALL, s, &why)),
    }
}

fn proxy_replace_header_map_value(
    c: C<'_>,
    t: i32,
    kp: i32,
    kl: i32,
    vp: i32,
    vl: i32,
) -> Result<i32> {
    put_value(
        c,
        "proxy_replace_header_map_value",
        true,
        t,
        (kp, kl),
        (vp, vl),
    )
}

fn proxy_add_header_map_value(c: C<'_>, t: i32, kp: i32, kl: i32, vp: i32, vl: i32) -> Result<i32> {
    put_value(
        c,
        "proxy_add_header_map_value",
        false,
        t,
        (kp, kl),
        (vp, vl),
    )
}

/// Adds a header; with `replace`, an existing header's first value is replaced and its other
/// values are dropped.
fn put_value(
    mut c: C<'_>,
    name: &str,
    replace: bool,
    t: i32,
    (kp, kl): (i32, i32),
    (vp, vl): (i32, i32),
) -> Result<i32> {
    let key = read_str(&mut c, name, "the header name", kp, kl)?.to_ascii_lowercase();
    let value = read_str(&mut c, name, "the header value", vp, vl)?;
    match with_map(&mut c, t, true, |m| {
        if replace {
            if let Some(pos) = m.iter().position(|(n, _)| *n == key) {
                m[pos].1 = value;
                m.retain({
                    let mut seen = false;
                    move |(n, _)| {
                        if *n != key {
                            return true;
                        }
                        let keep = !seen;
                        seen = true;
                        keep
                    }
                });
                return;
            }
        }
        m.push((key, value));
    }) {
        Ok(()) => Ok(OK),
        Err((s, why)) => Ok(note(&mut c, name, s, &why)),
    }
}

pub(super) fn serialize_map(map: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(map.len() as u32).to_le_bytes());
    for (n, v) in map {
        out.extend_from_slice(&(n.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (n, v) in map {
        out.extend_from_slice(n.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

pub(super) fn deserialize_map(call: &str, bytes: &[u8]) -> Result<Headers> {
    let bad = || {
        format_err!(
            "{call}: malformed serialized header map ({} bytes)",
            bytes.len()
        )
    };
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let u32_at = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let count = u32_at(0).ok_or_else(bad)?;
    let mut pos = count
        .checked_mul(8)
        .and_then(|n| n.checked_add(4))
        .ok_or_else(bad)?;
    let mut map = Vec::with_capacity(count.min(1024));
    for i in 0..count {
        let nlen = u32_at(4 + i * 8).ok_or_else(bad)?;
        let vlen = u32_at(8 + i * 8).ok_or_else(bad)?;
        let name = bytes.get(pos..pos + nlen).ok_or_else(bad)?;
        pos += nlen + 1;
        let value = bytes.get(pos..pos + vlen).ok_or_else(bad)?;
        pos += vlen + 1;
        let name = String::from_utf8(name.to_vec())
            .map_err(|_| format_err!("{call}: a header name is not UTF-8"))?;
        let value = String::from_utf8(value.to_vec())
            .map_err(|_| format_err!("{call}: the value of header {name} is not UTF-8"))?;
        map.push((name, value));
    }
    Ok(map)
}

#[derive(Clone, Copy)]
enum MapSel {
    RequestHeaders,
    RequestTrailers,
    ResponseHeaders,
    ResponseTrailers,
    CallHeaders,
    CallTrailers,
}

fn map_sel(t: i32) -> std::result::Result<MapSel, String> {
    Ok(match t {
        0 => MapSel::RequestHeaders,
        1 => MapSel::RequestTrailers,
        2 => MapSel::ResponseHeaders,
        3 => MapSel::ResponseTrailers,
        4 | 5 => {
            return Err(format!(
                "map type {t} (gRPC metadata) is not supported by this host"
            ))
        }
        6 => MapSel::CallHeaders,
        7 => MapSel::CallTrailers,
        _ => return Err(format!("map type {t} does not exist")),
    })
}

/// Runs `f` on the selected header map, or returns (status, why).
fn with_map<R>(
    caller: &mut C<'_>,
    map_type: i32,
    write: bool,
    f: impl FnOnce(&mut Headers) -> R,
) -> std::result::Result<R, (i32, String)> {
    let sel = map_sel(map_type).map_err(|w| (BAD_ARGUMENT, w))?;
    let state = caller.data_mut();
    match sel {
        MapSel::CallHeaders | MapSel::CallTrailers => {
            if write {
                return Err((BAD_ARGUMENT, "callout response maps are read-only".into()));
            }
            let Some(resp) = state.call_response.as_mut() else {
                return Err((
                    NOT_FOUND,
                    "callout response maps exist only inside proxy_on_http_call_response".into(),
                ));
            };
            Ok(f(match sel {
                MapSel::CallHeaders => &mut resp.headers,
                _ => &mut resp.trailers,
            }))
        }
        _ => {
            let ctx = state.effective;
            let mut world = state.world();
            let Some(stream) = world.stream_mut(ctx) else {
                return Err((NOT_FOUND, format!("context {ctx} is not an HTTP stream")));
            };
            match sel {
                MapSel::RequestHeaders | MapSel::RequestTrailers => {
                    if write && stream.forwarded {
                        return Err((
                            BAD_ARGUMENT,
                            "the request was already forwarded upstream".into(),
                        ));
                    }
                    Ok(f(match sel {
                        MapSel::RequestHeaders => &mut stream.request.headers,
                        _ => &mut stream.request.trailers,
                    }))
                }
                _ => {
                    let delivered = stream.response_delivered;
                    let Some(resp) = stream.response.as_mut() else {
                        return Err((NOT_FOUND, "no response has arrived on this stream".into()));
                    };
                    if write && delivered {
                        return Err((
                            BAD_ARGUMENT,
                            "the response was already sent downstream".into(),
                        ));
                    }
                    Ok(f(match sel {
                        MapSel::ResponseHeaders => &mut resp.headers,
                        _ => &mut resp.trailers,
                    }))
                }
            }
        }
    }
}
