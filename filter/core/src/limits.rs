//! Fixed-window request counters in the shared KV, with the `X-RateLimit-*` headers that
//! report them (ApertoDNS digest §13). Approximate across workers (last write wins), which is
//! fine for a limit; a multi-gateway store adds CAS later.

use crate::kv::{keys, KvView, KvWrite};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub requests: u64,
    pub window_s: u64,
}

/// The state of one counter after counting this request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateState {
    pub limit: u64,
    pub remaining: u64,
    /// Unix seconds when the window ends.
    pub reset_s: u64,
    /// This request is over the limit.
    pub exceeded: bool,
    pub retry_after_s: u64,
    pub writes: Vec<KvWrite>,
}

/// Counts one request of `subject` (a token id, a client address) in `bucket`.
pub fn hit(kv: &dyn KvView, bucket: &str, subject: &str, limit: Limit, now_s: u64) -> RateState {
    let window = limit.window_s.max(1);
    let start = now_s - now_s % window;
    let key = keys::rate(bucket, subject, start);
    let seen: u64 = kv
        .get(&key)
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let exceeded = seen >= limit.requests;
    let mut writes = Vec::new();
    if !exceeded {
        writes.push(KvWrite::put(key, (seen + 1).to_string().into_bytes()));
        if seen == 0 {
            writes.push(KvWrite::remove(keys::rate(
                bucket,
                subject,
                start.saturating_sub(window),
            )));
        }
    }
    let used = if exceeded { seen } else { seen + 1 };
    RateState {
        limit: limit.requests,
        remaining: limit.requests.saturating_sub(used),
        reset_s: start + window,
        exceeded,
        retry_after_s: (start + window).saturating_sub(now_s).max(1),
        writes,
    }
}

impl RateState {
    /// `X-RateLimit-Limit/-Remaining/-Reset`, plus `Retry-After` when exceeded.
    pub fn headers(&self) -> Vec<(String, String)> {
        let mut h = vec![
            ("x-ratelimit-limit".to_string(), self.limit.to_string()),
            (
                "x-ratelimit-remaining".to_string(),
                self.remaining.to_string(),
            ),
            ("x-ratelimit-reset".to_string(), self.reset_s.to_string()),
        ];
        if self.exceeded {
            h.push(("retry-after".to_string(), self.retry_after_s.to_string()));
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::MemoryKv;

    #[test]
    fn the_third_request_of_a_two_per_minute_limit_is_refused_until_the_window_ends() {
        let kv = MemoryKv::default();
        let l = Limit {
            requests: 2,
            window_s: 60,
        };
        let a = hit(&kv, "update", "tok", l, 120);
        kv.apply(&a.writes);
        let b = hit(&kv, "update", "tok", l, 130);
        kv.apply(&b.writes);
        let c = hit(&kv, "update", "tok", l, 150);
        assert_eq!((a.remaining, b.remaining, c.remaining), (1, 0, 0));
        assert!(!a.exceeded && !b.exceeded && c.exceeded);
        assert!(c.writes.is_empty(), "refused requests are not counted");
        assert_eq!(c.retry_after_s, 30);
        assert_eq!(c.reset_s, 180);
        assert!(c
            .headers()
            .iter()
            .any(|(k, v)| k == "retry-after" && v == "30"));
        let d = hit(&kv, "update", "tok", l, 180);
        assert!(!d.exceeded, "a new window starts fresh");
        assert!(
            d.writes.iter().any(|w| w.value.is_none()),
            "the old window is dropped"
        );
        let other = hit(&kv, "update", "other", l, 150);
        assert!(!other.exceeded, "subjects are counted apart");
    }
}
