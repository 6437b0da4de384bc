//! dynedge's sans-IO core.
//!
//! Adapters (the proxy-wasm filter, the Pingora module) snapshot a [`Request`], call
//! [`Exchange::start`], and perform the [`Step`]s it returns. Nothing here knows a proxy, a
//! socket or a clock.

pub mod addr;
pub mod auth;
pub mod backends;
pub mod config;
pub mod dialects;
mod env;
pub mod exchange;
pub mod expiry;
#[cfg(any(test, feature = "testing"))]
pub mod fuzzing;
mod hex;
pub mod hoststate;
pub mod job;
pub mod kv;
pub mod limits;
pub mod maintenance;
pub mod metrics;
pub mod names;
pub mod pipeline;
pub mod reply;
pub mod request;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod time;
pub mod token_rules;
pub mod tokens;
pub mod webhooks;

pub use backends::{Callout, CalloutFailure, CalloutResult, Method};
pub use config::{Config, ConfigError};
pub use exchange::{CalloutId, Env, Exchange, Outcome, Step};
pub use kv::{KvView, KvWrite, MemoryKv};
pub use reply::{Code, Reply};
pub use request::Request;
pub use webhooks::{Delivery, Notify};
