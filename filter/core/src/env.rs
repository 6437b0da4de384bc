//! What the host gives the core with every call: the time, randomness and the shared KV.

use crate::kv::KvView;

/// Inputs from the host that the core must not invent.
pub struct Env<'a> {
    /// Wall clock, milliseconds since the Unix epoch.
    pub now_ms: u64,
    /// Fresh randomness for DNS ids and nonces.
    pub random: u64,
    pub kv: &'a dyn KvView,
}

impl Env<'_> {
    pub fn now_s(&self) -> u64 {
        self.now_ms / 1000
    }
}

pub type CalloutId = u32;
