//! The host side of proxy-wasm ABI 0.2.1 (module `env`), checked against the Rust SDK 0.2.5
//! import list. Misuse returns the status Envoy would return *and* is recorded in
//! [`crate::Host::abi_errors`] with the call's name; memory faults trap with the call's name.

use std::sync::{Arc, Mutex, MutexGuard};

use wasmtime::{bail, format_err, Caller, Extern, Linker, Result};

use crate::model::{Call, Ctx, Headers, LocalResponse, LogLevel, LogLine, LogSource, MetricKind};
use crate::world::{Event, Message, Queue, World};

pub(crate) const OK: i32 = 0;
pub(crate) const NOT_FOUND: i32 = 1;
pub(crate) const BAD_ARGUMENT: i32 = 2;
pub(crate) const EMPTY: i32 = 7;
pub(crate) const CAS_MISMATCH: i32 = 8;

/// Which callback a VM is executing, for the spec's phase rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Callback {
    Idle,
    Initialize,
    ContextCreate,
    VmStart,
    Configure,
    RequestHeaders,
    RequestBody,
    RequestTrailers,
    ResponseHeaders,
    ResponseBody,
    ResponseTrailers,
    HttpCallResponse,
    Tick,
    QueueReady,
    Log,
    Done,
    Delete,
}

/// The data of one wasmtime `Store`: one VM instance (an Envoy worker thread).
pub(crate) struct VmState {
    pub world: Arc<Mutex<World>>,
    pub worker: usize,
    pub effective: u32,
    pub callback: Callback,
    /// The callout response being delivered by `proxy_on_http_call_response`.
    pub call_response: Option<Message>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl VmState {
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }
}

type C<'a> = Caller<'a, VmState>;

// ---- memory helpers ------------------------------------------------------------------------

fn memory(caller: &mut C<'_>, call: &str) -> Result<wasmtime::Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Ok(m),
        _ => bail!("{call}: the module exports no linear memory named `memory`"),
    }
}

pub(crate) fn read(caller: &mut C<'_>, call: &str, ptr: i32, len: i32) -> Result<Vec<u8>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    let mem = memory(caller, call)?;
    let (p, l) = (ptr as u32 as usize, len as u32 as usize);
    let data = mem.data(&*caller);
    p.checked_add(l)
        .and_then(|end| data.get(p..end))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| {
            format_err!(
                "{call}: {l} bytes at {p:#x} lie outside linear memory ({} bytes)",
                data.len()
            )
        })
}

fn read_str(caller: &mut C<'_>, call: &str, what: &str, ptr: i32, len: i32) -> Result<String> {
    let bytes = read(caller, call, ptr, len)?;
    String::from_utf8(bytes).map_err(|_| format_err!("{call}: {what} is not UTF-8"))
}

pub(crate) fn write(caller: &mut C<'_>, call: &str, ptr: i32, bytes: &[u8]) -> Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    let mem = memory(caller, call)?;
    let p = ptr as u32 as usize;
    let data = mem.data_mut(&mut *caller);
    let len = data.len();
    match p
        .checked_add(bytes.len())
        .and_then(|end| data.get_mut(p..end))
    {
        Some(dst) => {
            dst.copy_from_slice(bytes);
            Ok(())
        }
        None => bail!(
            "{call}: cannot write {} bytes at {p:#x}: outside linear memory ({len} bytes)",
            bytes.len()
        ),
    }
}

pub(crate) fn write_u32(caller: &mut C<'_>, call: &str, ptr: i32, v: u32) -> Result<()> {
    write(caller, call, ptr, &v.to_le_bytes())
}

pub(crate) fn write_u64(caller: &mut C<'_>, call: &str, ptr: i32, v: u64) -> Result<()> {
    write(caller, call, ptr, &v.to_le_bytes())
}

/// Copies `bytes` into memory the module allocates (`proxy_on_memory_allocate`, else `malloc`)
/// and writes the pointer and size to the module's return slots.
fn hand_over(
    caller: &mut C<'_>,
    call: &str,
    bytes: &[u8],
    ret_ptr: i32,
    ret_len: i32,
) -> Result<()> {
    let alloc = ["proxy_on_memory_allocate", "malloc"]
        .iter()
        .find_map(|n| caller.get_export(n).and_then(Extern::into_func))
        .ok_or_else(|| {
            format_err!("{call}: the module exports neither proxy_on_memory_allocate nor malloc")
        })?;
    let alloc = alloc
        .typed::<i32, i32>(&*caller)
        .map_err(|e| format_err!("{call}: proxy_on_memory_allocate has the wrong type: {e}"))?;
    let len = i32::try_from(bytes.len())
        .map_err(|_| format_err!("{call}: {} bytes do not fit a wasm32 size", bytes.len()))?;
    let ptr = alloc.call(&mut *caller, len)?;
    if ptr == 0 {
        bail!("{call}: proxy_on_memory_allocate({len}) returned a null pointer");
    }
    write(caller, call, ptr, bytes)?;
    write_u32(caller, call, ret_ptr, ptr as u32)?;
    write_u32(caller, call, ret_len, len as u32)
}

// ---- header map (de)serialisation ----------------------------------------------------------

pub(crate) fn serialize_map(map: &[(String, String)]) -> Vec<u8> {
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

pub(crate) fn deserialize_map(call: &str, bytes: &[u8]) -> Result<Headers> {
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

// ---- maps and buffers by type --------------------------------------------------------------

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

fn note(caller: &mut C<'_>, call: &str, status: i32, why: &str) -> i32 {
    let ctx = caller.data().effective;
    let cb = caller.data().callback;
    caller
        .data()
        .world()
        .note(format!("{call}: {why} (in {cb:?}, context {ctx})"));
    status
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

// ---- the linker ------------------------------------------------------------------------------

pub(crate) fn define(linker: &mut Linker<VmState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_log",
        |mut c: C<'_>, level: i32, ptr: i32, len: i32| -> Result<i32> {
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
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_log_level",
        |mut c: C<'_>, ret: i32| -> Result<i32> {
            let level = c.data().world().log_level.to_abi();
            write_u32(&mut c, "proxy_get_log_level", ret, level as u32)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut c: C<'_>, ret: i32| -> Result<i32> {
            let now = c.data().world().now_ns;
            write_u64(&mut c, "proxy_get_current_time_nanoseconds", ret, now)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |c: C<'_>, period: i32| -> Result<i32> {
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
        },
    )?;

    // buffers
    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut c: C<'_>, t: i32, start: i32, max: i32, ret_ptr: i32, ret_len: i32| -> Result<i32> {
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
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut c: C<'_>, t: i32, start: i32, size: i32, ptr: i32, len: i32| -> Result<i32> {
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
        },
    )?;

    // header maps
    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut c: C<'_>, t: i32, ret_ptr: i32, ret_len: i32| -> Result<i32> {
            const CALL: &str = "proxy_get_header_map_pairs";
            match with_map(&mut c, t, false, |m| serialize_map(m)) {
                Ok(bytes) => {
                    hand_over(&mut c, CALL, &bytes, ret_ptr, ret_len)?;
                    Ok(OK)
                }
                Err((s, why)) => Ok(note(&mut c, CALL, s, &why)),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut c: C<'_>, t: i32, ptr: i32, len: i32| -> Result<i32> {
            const CALL: &str = "proxy_set_header_map_pairs";
            let bytes = read(&mut c, CALL, ptr, len)?;
            let new = deserialize_map(CALL, &bytes)?;
            match with_map(&mut c, t, true, |m| *m = lower(new)) {
                Ok(()) => Ok(OK),
                Err((s, why)) => Ok(note(&mut c, CALL, s, &why)),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut c: C<'_>, t: i32, kp: i32, kl: i32, ret_ptr: i32, ret_len: i32| -> Result<i32> {
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
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut c: C<'_>, t: i32, kp: i32, kl: i32| -> Result<i32> {
            const CALL: &str = "proxy_remove_header_map_value";
            let key = read_str(&mut c, CALL, "the header name", kp, kl)?;
            match with_map(&mut c, t, true, |m| {
                m.retain(|(n, _)| !n.eq_ignore_ascii_case(&key))
            }) {
                Ok(()) => Ok(OK),
                Err((s, why)) => Ok(note(&mut c, CALL, s, &why)),
            }
        },
    )?;
    for (name, replace) in [
        ("proxy_replace_header_map_value", true),
        ("proxy_add_header_map_value", false),
    ] {
        linker.func_wrap(
            "env",
            name,
            move |mut c: C<'_>, t: i32, kp: i32, kl: i32, vp: i32, vl: i32| -> Result<i32> {
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
            },
        )?;
    }

    // properties
    linker.func_wrap(
        "env",
        "proxy_get_property",
        |mut c: C<'_>, pp: i32, pl: i32, ret_ptr: i32, ret_len: i32| -> Result<i32> {
            const CALL: &str = "proxy_get_property";
            let path = property_path(&read(&mut c, CALL, pp, pl)?);
            match property(&mut c, &path) {
                Some(v) => {
                    hand_over(&mut c, CALL, &v, ret_ptr, ret_len)?;
                    Ok(OK)
                }
                None => Ok(NOT_FOUND),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_property",
        |mut c: C<'_>, pp: i32, pl: i32, vp: i32, vl: i32| -> Result<i32> {
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
        },
    )?;

    // shared data
    linker.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut c: C<'_>, kp: i32, kl: i32, ret_ptr: i32, ret_len: i32, ret_cas: i32| -> Result<i32> {
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
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut c: C<'_>, kp: i32, kl: i32, vp: i32, vl: i32, cas: i32| -> Result<i32> {
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
        },
    )?;

    // shared queues
    linker.func_wrap(
        "env",
        "proxy_register_shared_queue",
        |mut c: C<'_>, np: i32, nl: i32, ret: i32| -> Result<i32> {
            const CALL: &str = "proxy_register_shared_queue";
            let name = read_str(&mut c, CALL, "the queue name", np, nl)?;
            let (worker, ctx) = (c.data().worker, c.data().effective);
            let id = {
                let mut world = c.data().world();
                let root = match world.contexts.get(&ctx) {
                    Some(s) if s.root != 0 => s.root,
                    _ => ctx,
                };
                match world
                    .queues
                    .iter()
                    .position(|q| q.name == name && q.vm_id == "dynedge")
                {
                    Some(i) => {
                        world.queues[i].owner = (worker, root);
                        i + 1
                    }
                    None => {
                        world.queues.push(Queue {
                            name,
                            vm_id: "dynedge".into(),
                            owner: (worker, root),
                            items: Default::default(),
                        });
                        world.queues.len()
                    }
                }
            };
            write_u32(&mut c, CALL, ret, id as u32)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_resolve_shared_queue",
        |mut c: C<'_>, vp: i32, vl: i32, np: i32, nl: i32, ret: i32| -> Result<i32> {
            const CALL: &str = "proxy_resolve_shared_queue";
            let vm = read_str(&mut c, CALL, "the VM id", vp, vl)?;
            let name = read_str(&mut c, CALL, "the queue name", np, nl)?;
            let vm = if vm.is_empty() {
                "dynedge".to_owned()
            } else {
                vm
            };
            let id = c
                .data()
                .world()
                .queues
                .iter()
                .position(|q| q.name == name && q.vm_id == vm);
            match id {
                Some(i) => {
                    write_u32(&mut c, CALL, ret, i as u32 + 1)?;
                    Ok(OK)
                }
                None => Ok(NOT_FOUND),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_enqueue_shared_queue",
        |mut c: C<'_>, id: i32, vp: i32, vl: i32| -> Result<i32> {
            const CALL: &str = "proxy_enqueue_shared_queue";
            let value = read(&mut c, CALL, vp, vl)?;
            let found = {
                let mut world = c.data().world();
                let idx = (id as u32 as usize).wrapping_sub(1);
                match world.queues.get_mut(idx) {
                    Some(q) => {
                        q.items.push_back(value);
                        let (worker, root) = q.owner;
                        world.events.push_back(Event::QueueReady {
                            worker,
                            root,
                            queue: id as u32,
                        });
                        true
                    }
                    None => false,
                }
            };
            if found {
                Ok(OK)
            } else {
                Ok(note(
                    &mut c,
                    CALL,
                    NOT_FOUND,
                    &format!("no shared queue {id}"),
                ))
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_dequeue_shared_queue",
        |mut c: C<'_>, id: i32, ret_ptr: i32, ret_len: i32| -> Result<i32> {
            const CALL: &str = "proxy_dequeue_shared_queue";
            let item = {
                let mut world = c.data().world();
                let idx = (id as u32 as usize).wrapping_sub(1);
                world.queues.get_mut(idx).map(|q| q.items.pop_front())
            };
            match item {
                None => Ok(note(
                    &mut c,
                    CALL,
                    NOT_FOUND,
                    &format!("no shared queue {id}"),
                )),
                Some(None) => Ok(EMPTY),
                Some(Some(bytes)) => {
                    hand_over(&mut c, CALL, &bytes, ret_ptr, ret_len)?;
                    Ok(OK)
                }
            }
        },
    )?;

    // stream control
    linker.func_wrap(
        "env",
        "proxy_continue_stream",
        |mut c: C<'_>, t: i32| -> Result<i32> {
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
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_close_stream",
        |mut c: C<'_>, t: i32| -> Result<i32> {
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
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut c: C<'_>,
         status: i32,
         dp: i32,
         dl: i32,
         bp: i32,
         bl: i32,
         hp: i32,
         hl: i32,
         grpc: i32|
         -> Result<i32> {
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
        },
    )?;

    // HTTP callouts
    linker.func_wrap(
        "env",
        "proxy_http_call",
        |mut c: C<'_>,
         up: i32,
         ul: i32,
         hp: i32,
         hl: i32,
         bp: i32,
         bl: i32,
         tp: i32,
         tl: i32,
         timeout: i32,
         ret: i32|
         -> Result<i32> {
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
        },
    )?;

    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut c: C<'_>, id: i32| -> Result<i32> {
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
        },
    )?;
    linker.func_wrap("env", "proxy_done", |_c: C<'_>| -> Result<i32> { Ok(OK) })?;
    linker.func_wrap(
        "env",
        "proxy_call_foreign_function",
        |mut c: C<'_>, np: i32, nl: i32, _ap: i32, _al: i32, _rp: i32, _rl: i32| -> Result<i32> {
            const CALL: &str = "proxy_call_foreign_function";
            let name = String::from_utf8_lossy(&read(&mut c, CALL, np, nl)?).into_owned();
            Ok(note(
                &mut c,
                CALL,
                NOT_FOUND,
                &format!("no foreign function {name:?} in this host"),
            ))
        },
    )?;

    // metrics
    linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut c: C<'_>, t: i32, np: i32, nl: i32, ret: i32| -> Result<i32> {
            const CALL: &str = "proxy_define_metric";
            let name = read_str(&mut c, CALL, "the metric name", np, nl)?;
            let kind = match t {
                0 => MetricKind::Counter,
                1 => MetricKind::Gauge,
                2 => MetricKind::Histogram,
                _ => {
                    return Ok(note(
                        &mut c,
                        CALL,
                        BAD_ARGUMENT,
                        &format!("metric type {t} does not exist"),
                    ))
                }
            };
            let id = {
                let mut world = c.data().world();
                match world.metric_ids.get(&name).copied() {
                    Some(id) => {
                        let existing = world.metrics[id as usize - 1].kind;
                        if existing != kind {
                            drop(world);
                            return Ok(note(
                                &mut c,
                                CALL,
                                BAD_ARGUMENT,
                                &format!("metric {name} already defined as a {existing:?}"),
                            ));
                        }
                        id
                    }
                    None => {
                        world.metrics.push(crate::world::MetricState {
                            name: name.clone(),
                            kind,
                            value: 0,
                            samples: Vec::new(),
                        });
                        let id = world.metrics.len() as u32;
                        world.metric_ids.insert(name, id);
                        id
                    }
                }
            };
            write_u32(&mut c, CALL, ret, id)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_increment_metric",
        |mut c: C<'_>, id: i32, offset: i64| -> Result<i32> {
            const CALL: &str = "proxy_increment_metric";
            let why = {
                let mut world = c.data().world();
                match world.metrics.get_mut((id as u32 as usize).wrapping_sub(1)) {
                    None => Some((NOT_FOUND, format!("no metric {id}"))),
                    Some(m) => match m.kind {
                        MetricKind::Counter if offset < 0 => Some((
                            BAD_ARGUMENT,
                            format!("counter {} cannot be decremented ({offset})", m.name),
                        )),
                        MetricKind::Histogram => Some((
                            BAD_ARGUMENT,
                            format!("histogram {} takes proxy_record_metric", m.name),
                        )),
                        _ => {
                            m.value = m.value.wrapping_add_signed(offset);
                            None
                        }
                    },
                }
            };
            match why {
                None => Ok(OK),
                Some((s, why)) => Ok(note(&mut c, CALL, s, &why)),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_record_metric",
        |mut c: C<'_>, id: i32, value: i64| -> Result<i32> {
            const CALL: &str = "proxy_record_metric";
            let value = value as u64;
            let ok = {
                let mut world = c.data().world();
                match world.metrics.get_mut((id as u32 as usize).wrapping_sub(1)) {
                    None => false,
                    Some(m) => {
                        match m.kind {
                            MetricKind::Counter => m.value = m.value.wrapping_add(value),
                            MetricKind::Gauge => m.value = value,
                            MetricKind::Histogram => {
                                m.samples.push(value);
                                m.value = m.samples.len() as u64;
                            }
                        }
                        true
                    }
                }
            };
            if ok {
                Ok(OK)
            } else {
                Ok(note(&mut c, CALL, NOT_FOUND, &format!("no metric {id}")))
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_metric",
        |mut c: C<'_>, id: i32, ret: i32| -> Result<i32> {
            const CALL: &str = "proxy_get_metric";
            let got = {
                let world = c.data().world();
                match world.metrics.get((id as u32 as usize).wrapping_sub(1)) {
                    None => Err((NOT_FOUND, format!("no metric {id}"))),
                    Some(m) if m.kind == MetricKind::Histogram => Err((
                        BAD_ARGUMENT,
                        format!("histogram {} has no single value", m.name),
                    )),
                    Some(m) => Ok(m.value),
                }
            };
            match got {
                Ok(v) => {
                    write_u64(&mut c, CALL, ret, v)?;
                    Ok(OK)
                }
                Err((s, why)) => Ok(note(&mut c, CALL, s, &why)),
            }
        },
    )?;
    Ok(())
}

fn lower(headers: Headers) -> Headers {
    headers
        .into_iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v))
        .collect()
}

/// Why the host refuses an import it does not define; such imports trap when called.
pub(crate) fn refusal(module: &str, name: &str) -> String {
    if name.starts_with("proxy_grpc_") || name == "proxy_get_status" {
        format!("{module}.{name}: gRPC is not implemented by dynedge-test-host")
    } else if module == "wasi_snapshot_preview1" {
        format!("{module}.{name}: this WASI call is not provided by dynedge-test-host")
    } else {
        format!("{module}.{name}: unknown host call (not in proxy-wasm ABI 0.2.1)")
    }
}
