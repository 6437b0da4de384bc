//! dynedge as a native Pingora module: the same sans-IO core as the proxy-wasm filter.
//!
//! * [`Gateway`] holds what Envoy gives the wasm filter: the configuration, the shared KV
//!   (an in-process map shared by every worker thread), HTTP callouts to the DNS backends
//!   (Pingora's pooled [`Connector`](pingora::connectors::http::Connector), one address per
//!   cluster name), audit log lines and counters. [`Gateway::handle`] answers a dynedge route
//!   from any `request_filter` and returns `Ok(true)`, or returns `Ok(false)` to let the
//!   request through.
//! * [`ExpirySweeper`] is the background service that removes the records of hosts silent
//!   for longer than their zone's `expiry_ttl_s` (the wasm filter's `on_tick`).
//! * [`DynedgeProxy`] is a complete [`ProxyHttp`](pingora::proxy::ProxyHttp): dynedge routes
//!   at the edge, everything else to one upstream, HSTS on TLS listeners.
//! * [`standalone`] is the `dynedge-pingora` binary's server (flags, listeners, SIGHUP).

pub mod callout;
pub mod gateway;
pub mod metrics;
pub mod proxy;
pub mod standalone;

pub use callout::Clusters;
pub use dynedge_core::Config;
pub use gateway::{ExpirySweeper, Gateway, LogSink};
pub use proxy::{DynedgeProxy, Hsts, HstsBuilder};
