//! What an adapter or the admin needs besides the exchange contract at the crate root: the
//! configuration's identity and schema, log and reply details both proxies share, the KV keys
//! the proxy-wasm root context writes, and the etcd calls the admin makes.

pub use crate::config::fingerprint;
#[cfg(feature = "schema")]
pub use crate::config::json_schema;
pub use crate::dialects::loggable_path;
pub use crate::names::Fqdn;
pub use crate::reply::SECURITY_HEADERS;
pub use crate::time::iso8601;
pub use crate::tokens::token_hash;

/// The shared-data keys an adapter writes itself (the rest the core returns as `KvWrite`s).
pub mod keys {
    pub use crate::kv::keys::{CONFIG, CONFIG_GENERATION};
}

/// The token rules, so the admin checks a new token's flags with the core's own code.
pub mod tokens {
    pub use crate::token_rules::{duration_s, RawPolicy, RawRules, TokenRules};
}

/// What the admin needs to manage users and tokens in the etcd store.
pub mod etcd {
    pub use crate::store::etcd::{
        compare_and_put, delete, parse_txn, sync_call, token_key, user_key, EtcdError, Kv,
        TxnResult,
    };
    pub use crate::store::EtcdStore;
}
