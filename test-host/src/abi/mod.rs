//! The host side of proxy-wasm ABI 0.2.1 (module `env`), checked against the Rust SDK 0.2.5
//! import list. Misuse returns the status Envoy would return *and* is recorded in
//! [`crate::Host::abi_errors`] with the call's name; memory faults trap with the call's name.

mod body;
mod context;
mod headers;
mod http_calls;
mod logging;
mod memory;
mod metrics;
mod properties;
mod queues;
mod shared_data;
mod stream;
mod timers;

use std::sync::{Arc, Mutex, MutexGuard};

use wasmtime::{Caller, Linker, Result};

pub(crate) use memory::{read, write, write_u32, write_u64};

use crate::model::Headers;
use crate::world::{Message, World};

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
    /// Calls from the module into the host (proxy-wasm and WASI), counted by a call hook.
    pub host_calls: u64,
}

impl VmState {
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }
}

type C<'a> = Caller<'a, VmState>;

/// Defines every host call of module `env`.
pub(crate) fn define(linker: &mut Linker<VmState>) -> Result<()> {
    logging::define(linker)?;
    timers::define(linker)?;
    body::define(linker)?;
    headers::define(linker)?;
    properties::define(linker)?;
    shared_data::define(linker)?;
    queues::define(linker)?;
    stream::define(linker)?;
    http_calls::define(linker)?;
    context::define(linker)?;
    metrics::define(linker)?;
    Ok(())
}

/// Records a misuse of `call` in the world's ABI errors and returns its status.
fn note(caller: &mut C<'_>, call: &str, status: i32, why: &str) -> i32 {
    let ctx = caller.data().effective;
    let cb = caller.data().callback;
    caller
        .data()
        .world()
        .note(format!("{call}: {why} (in {cb:?}, context {ctx})"));
    status
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
