//! An acme-dns registration as stored in the shared KV, and the rule its credentials follow:
//! what the pipeline reads to authenticate an acme-dns update, apart from the dialect's logic.

use serde::{Deserialize, Serialize};

use crate::kv::{keys, KvView};

pub const PASSWORD_LEN: usize = 40;

/// A registration as stored in the shared KV (`kv::keys::acme_dns_account`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub subdomain: String,
    /// Argon2id PHC string; the password itself is shown once, at `/register`.
    pub password_hash: String,
    pub allowfrom: Vec<String>,
    /// The dynedge user who registered it (registration `token`), if any.
    pub owner: Option<String>,
    pub created_ms: u64,
}

pub fn lookup(kv: &dyn KvView, username: &str) -> Option<Account> {
    serde_json::from_slice(&kv.get(&keys::acme_dns_account(username))?).ok()
}

/// acme-dns's rule for keys and values: only `[A-Za-z0-9_-]`, exactly `len` of them.
pub fn token_chars(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
