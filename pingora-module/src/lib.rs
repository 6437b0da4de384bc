//! dynedge as a native Pingora module: the same sans-IO core as the proxy-wasm filter.
//!
//! * [`Gateway`] holds what Envoy gives the wasm filter: the configuration, the shared KV
//!   (an in-process map shared by every worker thread), HTTP callouts to the DNS backends
//!   (Pingora's pooled [`Connector`](pingora::connectors::http::Connector), one address per
//!   cluster name), audit log lines and counters. [`Gateway::handle`] answers a dynedge route
//!   from any `request_filter` and returns `Ok(true)`, or returns `Ok(false)` to let the
//!   request through.
//! * [`Maintainer`] is the background service that runs the core's timer-driven work (the
//!   wasm filter's `on_tick`): the etcd store's credential sync, the expiry sweep of hosts
//!   silent for longer than their zone's `expiry_ttl_s`, webhook deliveries and retries.
//! * [`DynedgeProxy`] is a complete [`ProxyHttp`](pingora::proxy::ProxyHttp): dynedge routes
//!   at the edge, everything else to one upstream, HSTS on TLS listeners.
//! * [`timeouts`] are the Envoy bootstrap's slow-client limits, as far as Pingora takes them.
//! * [`standalone`] is the `dynedge-pingora` binary's server (flags, listeners, SIGHUP).

pub mod callout;
pub mod gateway;
mod group_commit;
pub mod maintenance;
pub mod metrics;
pub mod proxy;
pub mod standalone;
pub mod timeouts;

pub use callout::Clusters;
pub use dynedge_core::Config;
pub use gateway::{Gateway, LogSink};
pub use maintenance::Maintainer;
pub use proxy::{DynedgeProxy, Hsts, HstsBuilder};
