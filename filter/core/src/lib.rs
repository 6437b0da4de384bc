//! dynedge's sans-IO core.
//!
//! Adapters (the proxy-wasm filter, the Pingora module) snapshot a [`Request`], call
//! [`Exchange::start`], and perform the [`Step`]s it returns. Nothing here knows a proxy, a
//! socket or a clock.

pub mod adapter;
mod addr;
mod auth;
mod backends;
mod config;
mod credentials;
mod dialects;
mod env;
mod exchange;
mod expiry;
#[cfg(any(test, feature = "testing"))]
pub mod fuzzing;
mod group_commit;
mod hex;
mod hoststate;
mod identity;
mod job;
mod kv;
mod limits;
pub mod maintenance;
pub mod metrics;
mod names;
mod outcome;
mod pipeline;
mod reply;
mod request;
mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod time;
mod token_rules;
mod tokens;
mod webhooks;

// The adapter contract: what every adapter uses to run an exchange (docs/architecture.md, The
// adapter surface). The few other items an adapter or the admin needs are in [`adapter`].
pub use backends::{Callout, CalloutFailure, CalloutResult, Method};
pub use config::{Config, ConfigError};
pub use exchange::{CalloutId, Env, Exchange, Outcome, Step};
pub use group_commit::{BatchId, Commits, GroupCommit, SoloCheck, WriteAnswer, ZoneWrite};
pub use kv::{merge_count, KvCount, KvView, KvWrite, MemoryKv};
pub use reply::{Code, Reply};
pub use request::Request;
pub use webhooks::{Delivery, Notify};
