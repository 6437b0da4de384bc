//! What a finished exchange hands the adapter: the reply and everything to apply with it.

use crate::kv::KvWrite;
use crate::limits::KvCount;
use crate::reply::Reply;
use crate::webhooks::Notify;

#[derive(Debug, Default)]
pub struct Outcome {
    pub reply: Option<Reply>,
    pub writes: Vec<KvWrite>,
    /// Structured (JSON) audit lines, secrets already absent.
    pub log: Vec<String>,
    /// Counter names to increment by one.
    pub counters: Vec<String>,
    /// Fire-and-forget calls (webhooks): dispatch after sending the reply, never wait for them;
    /// retry per [`Notify::next`]. See `docs/dialects.md` "Webhooks".
    pub notify: Vec<Notify>,
    /// Rate-limit counters to increment atomically (see `limits::merge_count`).
    pub counts: Vec<KvCount>,
    /// Histogram samples (metric name, value), e.g. the backend latency in milliseconds.
    pub samples: Vec<(String, u64)>,
}

impl Outcome {
    pub fn reply(reply: Reply) -> Outcome {
        Outcome {
            reply: Some(reply),
            ..Outcome::default()
        }
    }
}
