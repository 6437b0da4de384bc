//! API tokens created at runtime (`/api/tokens`), kept in the shared KV next to the static ones
//! of the configuration. Only the SHA-256 of a token is stored; the token is shown once.
//!
//! KV schema (see `kv::keys`):
//! - `dynedge:token:{sha256hex}` → [`StoredToken`] (JSON): who, scopes, hosts, expiry, revoked.
//! - `dynedge:tokens:{user}` → `[{"id", "sha256"}]` (JSON): the user's tokens, to list and revoke.
//!
//! Revoking keeps the record with `revoked: true`, so the token answers `token_revoked` at once.
//!
//! Every token, configured or runtime, may carry rules (`token_rules`), compiled from the
//! record's `rules` field.

use std::collections::BTreeSet;

use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};

use sha2::{Digest, Sha256};

use crate::config::Scope;
use crate::kv::{keys, KvView};
use crate::names::Fqdn;
use crate::token_rules::{RawRules, TokenRules};

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
    /// Absent in records written before token rules existed: no rules.
    #[serde(default)]
    pub rules: RawRules,
}

impl StoredToken {
    pub fn host_set(&self) -> Option<BTreeSet<Fqdn>> {
        self.hosts
            .as_ref()
            .map(|hs| hs.iter().filter_map(|h| Fqdn::parse(h).ok()).collect())
    }
}

impl StoredToken {
    /// The record's rules, compiled; a record that does not compile refuses every use.
    pub fn compiled_rules(&self) -> Option<TokenRules> {
        TokenRules::compile(&self.rules, Some(self.created_ms / 1000)).ok()
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
///
/// `random` and `now_ms` are the request's `Env::random` and `Env::now_ms`.
pub fn generate(
    key: &[u8],
    provider: &str,
    environment: &str,
    (random, now_ms): (u64, u64),
    salt: &str,
) -> String {
    let Some(bytes) = random_bytes(key, (random, now_ms), salt) else {
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
pub fn random_bytes(key: &[u8], (random, now_ms): (u64, u64), salt: &str) -> Option<[u8; 32]> {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).ok()?;
    mac.update(&random.to_le_bytes());
    mac.update(&now_ms.to_le_bytes());
    mac.update(salt.as_bytes());
    Some(mac.finalize().into_bytes().into())
}

/// When a token was last used (unix seconds), if ever.
pub fn token_last_used(kv: &dyn KvView, token_id: &str) -> Option<u64> {
    kv.get(&keys::token_used(token_id))
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|s| s.parse().ok())
}

/// A runtime token's scopes (stored by name; unknown names grant nothing).
pub fn stored_scopes(t: &StoredToken) -> BTreeSet<Scope> {
    Scope::ALL
        .into_iter()
        .filter(|s| t.scopes.iter().any(|n| n == s.name()))
        .collect()
}

/// The key a token is stored and looked up under: its SHA-256, never the token itself.
pub fn token_hash(token: &str) -> String {
    crate::hex::hex(&Sha256::digest(token.as_bytes()))
}
