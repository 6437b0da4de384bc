//! The shared key-value store as the core sees it: a read view in, writes out.
//!
//! In Envoy this is proxy-wasm shared data (shared by every worker VM of the process); in Pingora
//! an in-process map ([`MemoryKv`]). The core never writes directly: with its `Step` it returns
//! [`KvWrite`]s (put or remove, applied in order) and [`KvCount`]s, rate-limit increments the
//! adapter applies atomically with [`merge_count`] (compare-and-swap on shared data, a lock in
//! [`MemoryKv::count`]). Every key the core uses is listed in [`keys`] or named there.

use std::collections::HashMap;
use std::sync::Mutex;

pub trait KvView {
    fn get(&self, key: &str) -> Option<Vec<u8>>;
}

/// A write the adapter must apply (`None` removes the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvWrite {
    pub key: String,
    pub value: Option<Vec<u8>>,
}

impl KvWrite {
    pub fn put(key: String, value: Vec<u8>) -> Self {
        KvWrite {
            key,
            value: Some(value),
        }
    }
    pub fn remove(key: String) -> Self {
        KvWrite { key, value: None }
    }
}

/// An increment the adapter must apply atomically with [`merge_count`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvCount {
    pub key: String,
    pub window_s: u64,
}

/// The counter's new value: `window_start_s|count`, restarting when the window has passed.
pub fn merge_count(old: Option<&[u8]>, now_s: u64, window_s: u64) -> Vec<u8> {
    let (start, count) = old
        .and_then(parse_count)
        .filter(|(start, _)| now_s < start.saturating_add(window_s))
        .unwrap_or((now_s, 0));
    format!("{start}|{}", count.saturating_add(1)).into_bytes()
}

/// A counter's `(window_start_s, count)`.
pub(crate) fn parse_count(v: &[u8]) -> Option<(u64, u32)> {
    let s = std::str::from_utf8(v).ok()?;
    let (start, count) = s.split_once('|')?;
    Some((start.parse().ok()?, count.parse().ok()?))
}

/// The key schema; values are UTF-8 text unless a JSON type is named. Three families are
/// written beside the code that owns them:
/// - `dynedge:rl:{kind}:{bucket}` and `dynedge:rl:api:{endpoint}:{hash}`: rate-limit counters
///   (`limits.rs`), value `window_start_s|count` as [`merge_count`] writes it;
/// - `dynedge:apertodns:started_ms`: when the ApertoDNS health check first ran (unix ms,
///   `dialects/apertodns/public.rs`);
/// - `dynedge:store:etcd:synced_ms`: when the etcd store's credentials were last synced (unix
///   ms, `store/etcd/sync.rs`).
pub mod keys {
    /// The raw configuration JSON as the proxy gave it, written by the proxy-wasm root context.
    pub const CONFIG: &str = "dynedge:config";
    /// The hex SHA-256 of [`CONFIG`] (`config::fingerprint`): a VM whose compiled configuration
    /// has another fingerprint compiles [`CONFIG`] again.
    pub const CONFIG_GENERATION: &str = "dynedge:config:generation";

    /// A cached successful password verification: value = expiry (unix seconds).
    pub fn auth_cache(user: &str, tag: &str) -> String {
        format!("dynedge:authok:{user}:{tag}")
    }

    /// When a host last sent a successful update (unix seconds), for expiry.
    pub fn seen(name: &str) -> String {
        format!("dynedge:seen:{name}")
    }

    /// When the expiry sweep removed a host's records (unix seconds).
    pub fn expired(name: &str) -> String {
        format!("dynedge:expired:{name}")
    }

    /// What the backend last held for a name and type: value = `written_at_ms|v1\nv2` (unix
    /// milliseconds, then the values one a line; nothing after `|` for an empty RRset).
    pub fn record(name: &str, rtype: &str) -> String {
        format!("dynedge:rr:{name}:{rtype}")
    }

    /// When a host was created and last changed: JSON `hoststate::HostMeta`.
    pub fn host_meta(name: &str) -> String {
        format!("dynedge:host:{name}")
    }

    /// A token created at runtime (`/api/tokens`), by the hex SHA-256 of the token: JSON
    /// `tokens::StoredToken`. The token itself is never stored.
    pub fn api_token(sha256_hex: &str) -> String {
        format!("dynedge:token:{sha256_hex}")
    }

    /// When a token (static or runtime, by id) was last used: unix seconds as text.
    pub fn token_used(token_id: &str) -> String {
        format!("dynedge:token-used:{token_id}")
    }

    /// A user's runtime tokens, for listing and revoking by id: JSON `[{"id", "sha256"}]`.
    pub fn user_tokens(user: &str) -> String {
        format!("dynedge:tokens:{user}")
    }

    /// An acme-dns account registered at `/register`, by its username: JSON
    /// `dialects::acmedns::Account` (the password only as an Argon2id PHC string).
    pub fn acme_dns_account(username: &str) -> String {
        format!("dynedge:acmedns:{username}")
    }

    /// The last TXT values written through acme-dns `/update` at a name, oldest first: JSON
    /// `[String]` (acme-dns keeps two, so a wildcard and its apex validate together).
    pub fn acme_dns_txt(name: &str) -> String {
        format!("dynedge:acmedns-txt:{name}")
    }

    /// A user's webhook subscriptions: JSON `[webhooks::Subscription]`.
    pub fn webhooks(user: &str) -> String {
        format!("dynedge:webhooks:{user}")
    }
}

/// An in-process KV: the Pingora module's store and the core's test store.
#[derive(Debug, Default)]
pub struct MemoryKv {
    map: Mutex<HashMap<String, Vec<u8>>>,
}

impl MemoryKv {
    pub fn apply(&self, writes: &[KvWrite]) {
        let Ok(mut map) = self.map.lock() else { return };
        for w in writes {
            match &w.value {
                Some(v) => {
                    map.insert(w.key.clone(), v.clone());
                }
                None => {
                    map.remove(&w.key);
                }
            }
        }
    }

    /// Applies a rate-limit increment atomically (the lock plays the part of CAS).
    pub fn count(&self, c: &KvCount, now_s: u64) {
        let Ok(mut map) = self.map.lock() else { return };
        let next = merge_count(map.get(&c.key).map(Vec::as_slice), now_s, c.window_s);
        map.insert(c.key.clone(), next);
    }

    /// Every key and value (tests check that no secret is stored in clear).
    pub fn dump(&self) -> Vec<(String, Vec<u8>)> {
        self.map
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl KvView for MemoryKv {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.map.lock().ok()?.get(key).cloned()
    }
}
