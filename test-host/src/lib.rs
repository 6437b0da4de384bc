//! dynedge-test-host: a proxy-wasm ABI 0.2.1 host on wasmtime, for testing filters without
//! Envoy. State-based, in the shape of proxy-wasm-go-sdk's `proxytest`: drive a request, then
//! query what happened (callouts, local reply, shared data, metrics, logs).
//!
//! ```no_run
//! use dynedge_test_host::{Host, Request};
//! let mut host = Host::load("target/wasm32-wasip1/release/dynedge_filter.wasm")?;
//! assert!(host.configure(br#"{}"#)?);
//! let ctx = host.request(Request::get("/nic/update?hostname=h.example").peer("192.0.2.1:5555"))?;
//! let call = host.pending_calls(ctx)[0].clone();
//! host.answer(call.token, 204, &[], "")?;
//! println!("{:?}", host.local_response(ctx));
//! # Ok::<(), dynedge_test_host::Error>(())
//! ```

mod abi;
mod forward;
mod host;
mod model;
mod wasi;
mod world;

pub use host::{Builder, Host};
pub use model::{
    Answer, Call, Ctx, Error, Forwarded, Headers, LocalResponse, LogLevel, LogLine, LogSource,
    Metric, MetricKind, Outcome, Request, Response, Token,
};
