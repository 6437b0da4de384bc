//! API tokens created at runtime (`/api/tokens`), kept in the shared KV next to the static ones
//! of the configuration. Only the SHA-256 of a token is stored; the token is shown once.
//!
//! KV schema (see `kv::keys`):
//! - `dynedge:token:{sha256hex}` → [`StoredToken`] (JSON): who, scopes, hosts, expiry, revoked.
//! - `dynedge:tokens:{user}` → `[{"id", "sha256"}]` (JSON): the user's tokens, to list and revoke.
//!
//! Revoking keeps the record with `revoked: true`, so the token answers `token_revoked` at once.

use std::collections::BTreeSet;

use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};

use crate::config::Scope;
use crate::exchange::Env;
use crate::kv::{keys, KvView};
use crate::names::Fqdn;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredToken {
    pub id: String,
    pub user: String,
    /// Internal scope names (`update`, `txt`, `read`, `admin`).
    pub scopes: Vec<String>,
    pub hosts: Option<Vec<String>>,
    pub name: String,
    /// The first 20 characters, to recognise a token in a list.
    pub prefix: String,
    pub created_ms: u64,
    pub expires_ms: Option<u64>,
    pub revoked: bool,
}

impl StoredToken {
    pub fn scope_set(&self) -> BTreeSet<Scope> {
        Scope::ALL
            .into_iter()
            .filter(|s| self.scopes.iter().any(|n| n == s.name()))
            .collect()
    }

    pub fn host_set(&self) -> Option<BTreeSet<Fqdn>> {
        self.hosts
            .as_ref()
            .map(|hs| hs.iter().filter_map(|h| Fqdn::parse(h).ok()).collect())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub id: String,
    pub sha256: String,
}

pub fn lookup(kv: &dyn KvView, sha256_hex: &str) -> Option<StoredToken> {
    serde_json::from_slice(&kv.get(&keys::api_token(sha256_hex))?).ok()
}

pub fn index(kv: &dyn KvView, user: &str) -> Vec<IndexEntry> {
    kv.get(&keys::user_tokens(user))
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// A new token `{provider}_{environment}_{32 base64url}` (docs/dialects.md, Protocol rules: tokens).
pub fn generate(key: &[u8], provider: &str, environment: &str, env: &Env, salt: &str) -> String {
    let Some(bytes) = random_bytes(key, env, salt) else {
        return String::new();
    };
    let random = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes[..24]);
    format!("{provider}_{environment}_{random}")
}

/// 32 bytes for a new secret (tokens, webhook secrets, acme-dns credentials).
///
/// The core draws no randomness itself: the bytes are HMAC-SHA256 under the operator's
/// `apertodns.token_key` of the host's fresh `Env::random`, the time and a per-use salt, so a
/// secret is unpredictable to anyone without the configuration even though `Env` carries only
/// 64 fresh bits per request. `None` only if HMAC refuses the key (it accepts any length).
pub fn random_bytes(key: &[u8], env: &Env, salt: &str) -> Option<[u8; 32]> {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).ok()?;
    mac.update(&env.random.to_le_bytes());
    mac.update(&env.now_ms.to_le_bytes());
    mac.update(salt.as_bytes());
    Some(mac.finalize().into_bytes().into())
}
