//! Rate limits (ddns-service style): separate fixed windows for good and bad requests, kept as
//! counters in the shared KV. A client that keeps failing authentication is refused before any
//! Argon2 work, and a host or client that updates too often is answered `abuse`.
//!
//! The core decides from what it reads; counting is a [`KvCount`] the adapter applies
//! atomically (compare-and-swap on proxy-wasm shared data, a lock in the Pingora module) using
//! [`merge_count`], so two workers never lose each other's increments.

use std::net::IpAddr;

use serde::Deserialize;

use crate::kv::KvView;

/// One fixed window: at most `limit` events per `window_s` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub limit: u32,
    pub window_s: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    pub enabled: bool,
    /// Failed authentications per client address.
    pub bad_per_client: Window,
    /// Failed authentications per user name (slows distributed guessing of one password).
    pub bad_per_user: Window,
    /// Authenticated update requests per client address.
    pub good_per_client: Window,
    /// Updates per hostname.
    pub good_per_host: Window,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            enabled: true,
            bad_per_client: Window {
                limit: 5,
                window_s: 60,
            },
            bad_per_user: Window {
                limit: 20,
                window_s: 300,
            },
            good_per_client: Window {
                limit: 60,
                window_s: 60,
            },
            good_per_host: Window {
                limit: 30,
                window_s: 60,
            },
        }
    }
}

impl RateLimits {
    pub fn validate(&self) -> Result<(), String> {
        for (name, w) in [
            ("bad_per_client", self.bad_per_client),
            ("bad_per_user", self.bad_per_user),
            ("good_per_client", self.good_per_client),
            ("good_per_host", self.good_per_host),
        ] {
            if w.limit == 0 || !(1..=86_400).contains(&w.window_s) {
                return Err(format!("{name}: limit must be > 0 and window_s 1..=86400"));
            }
        }
        Ok(())
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
        .and_then(parse)
        .filter(|(start, _)| now_s < start.saturating_add(window_s))
        .unwrap_or((now_s, 0));
    format!("{start}|{}", count.saturating_add(1)).into_bytes()
}

fn parse(v: &[u8]) -> Option<(u64, u32)> {
    let s = std::str::from_utf8(v).ok()?;
    let (start, count) = s.split_once('|')?;
    Some((start.parse().ok()?, count.parse().ok()?))
}

fn count_in_window(kv: &dyn KvView, key: &str, w: Window, now_s: u64) -> u32 {
    kv.get(key)
        .and_then(|v| parse(&v))
        .filter(|(start, _)| now_s < start.saturating_add(w.window_s))
        .map_or(0, |(_, c)| c)
}

mod keys {
    pub fn bad_client(ip: &str) -> String {
        format!("dynedge:rl:bad:ip:{ip}")
    }
    pub fn bad_user(user: &str) -> String {
        format!("dynedge:rl:bad:user:{user}")
    }
    pub fn good_client(ip: &str) -> String {
        format!("dynedge:rl:good:ip:{ip}")
    }
    pub fn good_host(host: &str) -> String {
        format!("dynedge:rl:good:host:{host}")
    }
}

/// Before any credential work: is this client (or the user it claims) over a limit?
pub fn refuse_client(
    rl: &RateLimits,
    kv: &dyn KvView,
    client: Option<IpAddr>,
    claimed_user: Option<&str>,
    now_s: u64,
) -> bool {
    if !rl.enabled {
        return false;
    }
    let ip = client.map(|c| c.to_string());
    let over = |key: String, w: Window| count_in_window(kv, &key, w, now_s) >= w.limit;
    ip.as_deref().is_some_and(|ip| {
        over(keys::bad_client(ip), rl.bad_per_client)
            || over(keys::good_client(ip), rl.good_per_client)
    }) || claimed_user.is_some_and(|u| over(keys::bad_user(u), rl.bad_per_user))
}

/// Is this host updated too often?
pub fn refuse_host(rl: &RateLimits, kv: &dyn KvView, host: &str, now_s: u64) -> bool {
    rl.enabled
        && count_in_window(kv, &keys::good_host(host), rl.good_per_host, now_s)
            >= rl.good_per_host.limit
}

/// Is this a failed-authentication counter (as opposed to a good-request one)?
pub fn is_bad_count(c: &KvCount) -> bool {
    c.key.starts_with("dynedge:rl:bad:")
}

/// What a failed authentication counts against.
pub fn count_bad(
    rl: &RateLimits,
    client: Option<IpAddr>,
    claimed_user: Option<&str>,
) -> Vec<KvCount> {
    if !rl.enabled {
        return vec![];
    }
    let mut out = Vec::new();
    if let Some(ip) = client {
        out.push(KvCount {
            key: keys::bad_client(&ip.to_string()),
            window_s: rl.bad_per_client.window_s,
        });
    }
    if let Some(u) = claimed_user {
        out.push(KvCount {
            key: keys::bad_user(u),
            window_s: rl.bad_per_user.window_s,
        });
    }
    out
}

/// What an authenticated update request counts against.
pub fn count_good<'a>(
    rl: &RateLimits,
    client: Option<IpAddr>,
    hosts: impl Iterator<Item = &'a str>,
) -> Vec<KvCount> {
    if !rl.enabled {
        return vec![];
    }
    let mut out: Vec<KvCount> = hosts
        .map(|h| KvCount {
            key: keys::good_host(h),
            window_s: rl.good_per_host.window_s,
        })
        .collect();
    if let Some(ip) = client {
        out.push(KvCount {
            key: keys::good_client(&ip.to_string()),
            window_s: rl.good_per_client.window_s,
        });
    }
    out
}

/// A per-endpoint request window (ApertoDNS digest §13: 60/min per token for `/update`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub requests: u32,
    pub window_s: u64,
}

/// One window after this request, for the `X-RateLimit-*` headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateState {
    pub limit: u32,
    pub remaining: u32,
    /// Unix seconds when the window ends.
    pub reset_s: u64,
    /// This request is over the limit (and is not counted).
    pub exceeded: bool,
    pub retry_after_s: u64,
    /// The increment to apply atomically (empty when exceeded).
    pub counts: Vec<KvCount>,
}

/// Key of an API window: `bucket` (an endpoint) and `subject` (a token id or client address).
pub fn window_key(bucket: &str, subject: &str) -> String {
    format!("dynedge:rl:api:{bucket}:{subject}")
}

/// Counts this request in a fixed window stored as [`merge_count`] values and says where the
/// window stands, so the reply can carry `X-RateLimit-Limit/-Remaining/-Reset`.
pub fn window_state(kv: &dyn KvView, key: String, limit: Limit, now_s: u64) -> RateState {
    let window = limit.window_s.max(1);
    let (start, seen) = kv
        .get(&key)
        .and_then(|v| parse(&v))
        .filter(|(start, _)| now_s < start.saturating_add(window))
        .unwrap_or((now_s, 0));
    let exceeded = seen >= limit.requests;
    let used = if exceeded { seen } else { seen + 1 };
    let reset_s = start + window;
    RateState {
        limit: limit.requests,
        remaining: limit.requests.saturating_sub(used),
        reset_s,
        exceeded,
        retry_after_s: reset_s.saturating_sub(now_s).max(1),
        counts: if exceeded {
            vec![]
        } else {
            vec![KvCount {
                key,
                window_s: window,
            }]
        },
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

    fn bump(kv: &MemoryKv, counts: &[KvCount], now_s: u64) {
        for c in counts {
            kv.count(c, now_s);
        }
    }

    #[test]
    fn merge_count_restarts_after_the_window() {
        let v = merge_count(None, 100, 60);
        assert_eq!(v, b"100|1");
        let v = merge_count(Some(&v), 159, 60);
        assert_eq!(v, b"100|2");
        assert_eq!(merge_count(Some(&v), 160, 60), b"160|1");
        assert_eq!(merge_count(Some(b"garbage"), 5, 60), b"5|1");
    }

    #[test]
    fn bad_attempts_from_one_client_are_refused_at_the_limit_then_forgiven() {
        let rl = RateLimits::default();
        let kv = MemoryKv::default();
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        for _ in 0..rl.bad_per_client.limit {
            assert!(!refuse_client(&rl, &kv, Some(ip), None, 1000));
            bump(&kv, &count_bad(&rl, Some(ip), None), 1000);
        }
        assert!(refuse_client(&rl, &kv, Some(ip), None, 1000));
        let other: IpAddr = "198.51.100.2".parse().unwrap();
        assert!(!refuse_client(&rl, &kv, Some(other), None, 1000));
        assert!(!refuse_client(
            &rl,
            &kv,
            Some(ip),
            None,
            1000 + rl.bad_per_client.window_s
        ));
    }

    #[test]
    fn guessing_one_users_password_from_many_addresses_is_refused() {
        let rl = RateLimits::default();
        let kv = MemoryKv::default();
        for i in 0..rl.bad_per_user.limit {
            let ip: IpAddr = format!("198.51.100.{}", i % 250).parse().unwrap();
            bump(&kv, &count_bad(&rl, Some(ip), Some("demo")), 10);
        }
        assert!(refuse_client(
            &rl,
            &kv,
            Some("203.0.113.1".parse().unwrap()),
            Some("demo"),
            10
        ));
        assert!(!refuse_client(
            &rl,
            &kv,
            Some("203.0.113.1".parse().unwrap()),
            Some("other"),
            10
        ));
    }

    #[test]
    fn a_host_updated_too_often_is_refused() {
        let rl = RateLimits::default();
        let kv = MemoryKv::default();
        for _ in 0..rl.good_per_host.limit {
            assert!(!refuse_host(&rl, &kv, "h.test", 0));
            bump(&kv, &count_good(&rl, None, ["h.test"].into_iter()), 0);
        }
        assert!(refuse_host(&rl, &kv, "h.test", 0));
    }

    #[test]
    fn bad_counts_are_told_apart_from_good_ones() {
        let rl = RateLimits::default();
        let bad = count_bad(&rl, "192.0.2.1".parse().ok(), Some("u"));
        assert!(!bad.is_empty() && bad.iter().all(is_bad_count));
        let good = count_good(&rl, "192.0.2.1".parse().ok(), ["h"].into_iter());
        assert!(!good.is_empty() && !good.iter().any(is_bad_count));
    }

    #[test]
    fn disabled_limits_never_refuse_nor_count() {
        let rl = RateLimits {
            enabled: false,
            ..RateLimits::default()
        };
        assert!(count_bad(&rl, "192.0.2.1".parse().ok(), Some("u")).is_empty());
        assert!(count_good(&rl, None, ["h"].into_iter()).is_empty());
    }

    #[test]
    fn the_third_request_of_a_two_per_minute_window_is_refused_until_the_window_ends() {
        let kv = MemoryKv::default();
        let l = Limit {
            requests: 2,
            window_s: 60,
        };
        let key = || window_key("update", "tok");
        let a = window_state(&kv, key(), l, 120);
        bump(&kv, &a.counts, 120);
        let b = window_state(&kv, key(), l, 130);
        bump(&kv, &b.counts, 130);
        let c = window_state(&kv, key(), l, 150);
        assert_eq!((a.remaining, b.remaining, c.remaining), (1, 0, 0));
        assert!(!a.exceeded && !b.exceeded && c.exceeded);
        assert!(c.counts.is_empty(), "a refused request is not counted");
        assert_eq!((c.reset_s, c.retry_after_s), (180, 30));
        assert!(c
            .headers()
            .iter()
            .any(|(k, v)| k == "retry-after" && v == "30"));
        assert!(!window_state(&kv, key(), l, 180).exceeded, "a new window");
        assert!(!window_state(&kv, window_key("update", "other"), l, 150).exceeded);
    }
}
