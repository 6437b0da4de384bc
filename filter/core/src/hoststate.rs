//! What dynedge remembers about a host besides its records: when it was created and last
//! changed, and how often (ApertoDNS `/status`, `/domains`). Stored as JSON in the shared KV under
//! [`keys::host_meta`]; written when an address actually changes.

use serde::{Deserialize, Serialize};

use crate::backends::RrType;
use crate::exchange::Env;
use crate::kv::{keys, KvView, KvWrite};
use crate::names::Fqdn;

const DAY_MS: u64 = 86_400_000;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostMeta {
    pub created_ms: u64,
    pub updated_ms: u64,
    pub count_total: u64,
    /// Start of the current 24-hour counting window and the changes in it.
    pub day_start_ms: u64,
    pub day_count: u64,
    pub ttl: u32,
}

impl HostMeta {
    /// Changes within the last day (a fixed window that restarts a day after it began).
    pub fn count_24h(&self, now_ms: u64) -> u64 {
        if now_ms.saturating_sub(self.day_start_ms) < DAY_MS {
            self.day_count
        } else {
            0
        }
    }
}

pub fn read(kv: &dyn KvView, name: &Fqdn) -> Option<HostMeta> {
    serde_json::from_slice(&kv.get(&keys::host_meta(name.as_str()))?).ok()
}

/// The write that records one more change of `name` now.
pub fn touch(env: &Env, name: &Fqdn, ttl: u32) -> KvWrite {
    let now = env.now_ms;
    let mut m = read(env.kv, name).unwrap_or(HostMeta {
        created_ms: now,
        day_start_ms: now,
        ..HostMeta::default()
    });
    if now.saturating_sub(m.day_start_ms) >= DAY_MS {
        m.day_start_ms = now;
        m.day_count = 0;
    }
    m.updated_ms = now;
    m.count_total = m.count_total.saturating_add(1);
    m.day_count = m.day_count.saturating_add(1);
    m.ttl = ttl;
    KvWrite::put(
        keys::host_meta(name.as_str()),
        serde_json::to_vec(&m).unwrap_or_default(),
    )
}

/// An address change of one host, as webhooks report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrChange {
    pub hostname: String,
    pub previous_ipv4: Option<String>,
    pub ipv4: Option<String>,
    pub previous_ipv6: Option<String>,
    pub ipv6: Option<String>,
    pub ttl: u32,
}

fn first(sets: &[(RrType, Vec<String>)], t: RrType) -> Option<Option<String>> {
    sets.iter()
        .find(|(r, _)| *r == t)
        .map(|(_, v)| v.first().cloned())
}

impl AddrChange {
    /// The change a successful update of `host` made to A/AAAA, if any: `previous` is what the
    /// backend held before, `current` what it holds now (a `HostOutcome`'s fields).
    pub fn of(
        host: &str,
        previous: &[(RrType, Vec<String>)],
        current: &[(RrType, Vec<String>)],
        ttl: u32,
    ) -> Option<AddrChange> {
        let prev4 = first(previous, RrType::A).flatten();
        let prev6 = first(previous, RrType::Aaaa).flatten();
        let now4 = first(current, RrType::A).unwrap_or_else(|| prev4.clone());
        let now6 = first(current, RrType::Aaaa).unwrap_or_else(|| prev6.clone());
        (now4 != prev4 || now6 != prev6).then(|| AddrChange {
            hostname: host.to_string(),
            previous_ipv4: prev4,
            ipv4: now4,
            previous_ipv6: prev6,
            ipv6: now6,
            ttl,
        })
    }
}
