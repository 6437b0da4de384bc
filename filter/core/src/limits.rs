//! Rate limits (ddns-service style): separate fixed windows for good and bad requests, kept as
//! counters in the shared KV. A client that keeps failing authentication is refused before any
//! Argon2 work, and a host or client that updates too often is answered `abuse`.
//!
//! The core decides from what it reads; counting is a [`KvCount`] the adapter applies
//! atomically (compare-and-swap on proxy-wasm shared data, a lock in the Pingora module) using
//! [`merge_count`], so two workers never lose each other's increments.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Deserialize;
use sha2::{Digest, Sha256};

pub use crate::kv::KvCount;
use crate::kv::{parse_count, KvView, KvWrite};

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
    /// Failed authentications per client (an IPv4 address, an IPv6 /56).
    pub bad_per_client: Window,
    /// Failed authentications per existing user name from anywhere (slows distributed guessing
    /// of one password). Refuses only clients that have not proven the password recently
    /// (`known_client_s`), so nobody can lock a user out of the networks they use.
    pub bad_per_user: Window,
    /// Failed authentications per existing user name and client network (IPv4 /24, IPv6 /56);
    /// applies to every client, known or not.
    pub bad_per_user_net: Window,
    /// Authenticated update requests per client address (IPv6: per /64).
    pub good_per_client: Window,
    /// Updates per hostname.
    pub good_per_host: Window,
    /// New credentials per client: `POST /api/tokens`, token regeneration, acme-dns `/register`.
    pub mint_per_client: Window,
    /// How long a network that logged in as a user stays exempt from `bad_per_user`.
    pub known_client_s: u64,
    /// Key of the limiter's hashes, from the configuration's secrets (see `Config`).
    #[serde(skip)]
    pub key: [u8; 32],
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
            bad_per_user_net: Window {
                limit: 10,
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
            mint_per_client: Window {
                limit: 10,
                window_s: 3600,
            },
            known_client_s: 30 * 86_400,
            key: [0; 32],
        }
    }
}

impl RateLimits {
    pub fn validate(&self) -> Result<(), String> {
        for (name, w) in [
            ("bad_per_client", self.bad_per_client),
            ("bad_per_user", self.bad_per_user),
            ("bad_per_user_net", self.bad_per_user_net),
            ("good_per_client", self.good_per_client),
            ("good_per_host", self.good_per_host),
            ("mint_per_client", self.mint_per_client),
        ] {
            if w.limit == 0 || !(1..=86_400).contains(&w.window_s) {
                return Err(format!("{name}: limit must be > 0 and window_s 1..=86400"));
            }
        }
        if !(60..=365 * 86_400).contains(&self.known_client_s) {
            return Err("known_client_s must be 60..=31536000".into());
        }
        Ok(())
    }
}

fn count_in_window(kv: &dyn KvView, key: &str, w: Window, now_s: u64) -> u32 {
    kv.get(key)
        .and_then(|v| parse_count(&v))
        .filter(|(start, _)| now_s < start.saturating_add(w.window_s))
        .map_or(0, |(_, c)| c)
}

/// The network a client address counts in: the address itself for IPv4 (or the /`v4` network),
/// the /`v6` network for IPv6 (one site holds a whole prefix).
pub fn network(ip: IpAddr, v4: u8, v6: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let mask = u32::MAX
                .checked_shl(32u32.saturating_sub(u32::from(v4)))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX
                .checked_shl(128u32.saturating_sub(u32::from(v6)))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
        }
    }
}

/// Limiter keys. Every subject (a client network, a user name, a host) comes from the request,
/// so none appears in a key: each is hashed with the limiter key into one of [`BUCKETS`] buckets
/// per kind. State is bounded by `BUCKETS` keys per kind whatever the input, and a bucket's
/// window restarts in place once it has passed ([`merge_count`]).
mod keys {
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    /// Buckets per kind of window (2^16): about 3 MB of shared data per kind at most.
    pub const BUCKETS: u32 = 1 << 16;

    fn digest(key: &[u8; 32], kind: &str, subject: &str) -> [u8; 32] {
        // new_from_slice takes keys of any length for HMAC.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
            return [0; 32];
        };
        mac.update(kind.as_bytes());
        mac.update(&[0]);
        mac.update(subject.as_bytes());
        mac.finalize().into_bytes().into()
    }

    pub fn bucket(key: &[u8; 32], kind: &str, subject: &str) -> String {
        let d = digest(key, kind, subject);
        let n = u32::from_be_bytes([d[0], d[1], d[2], d[3]]) % BUCKETS;
        format!("dynedge:rl:{kind}:{n:04x}")
    }

    /// A whole digest (no bucket sharing): for markers written only after a verified password.
    pub fn exact(key: &[u8; 32], kind: &str, subject: &str) -> String {
        let d = digest(key, kind, subject);
        format!("dynedge:rl:{kind}:{}", crate::auth::hex(&d[..16]))
    }
}

const BAD_CLIENT: &str = "bad:client";
const BAD_USER: &str = "bad:user";
const BAD_USER_NET: &str = "bad:usernet";
const GOOD_CLIENT: &str = "good:client";
const GOOD_HOST: &str = "good:host";
const MINT_CLIENT: &str = "mint:client";
const KNOWN: &str = "known";
const DUAL_HOST: &str = "dual:host";

/// Seconds within which an update of a host's other address family is the second half of the
/// same update: routers that send IPv4 and IPv6 as two requests make one `good_per_host` count.
pub const DUAL_STACK_S: u64 = 30;

/// The one address family a host update touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    fn tag(self) -> &'static str {
        match self {
            Family::V4 => "4",
            Family::V6 => "6",
        }
    }
}

/// The marker of the family last counted for `host`: a bucket key (bounded like the counters)
/// and, in the value, the family, the time, and a digest of the host so a bucket shared with
/// another host never pairs.
fn dual_marker(rl: &RateLimits, host: &str) -> (String, String) {
    (
        keys::bucket(&rl.key, DUAL_HOST, host),
        keys::exact(&rl.key, DUAL_HOST, host),
    )
}

/// Is this update of `host`, touching only `family`, the second half of a dual-stack update
/// (the other family of the same host counted less than [`DUAL_STACK_S`] ago)? Such an update
/// is neither refused nor counted by `good_per_host`.
pub fn completes_dual_stack(
    rl: &RateLimits,
    kv: &dyn KvView,
    host: &str,
    family: Family,
    now_s: u64,
) -> bool {
    if !rl.enabled {
        return false;
    }
    let (key, tag) = dual_marker(rl, host);
    let Some(value) = kv.get(&key).and_then(|v| String::from_utf8(v).ok()) else {
        return false;
    };
    let mut parts = value.splitn(3, '|');
    let (Some(fam), Some(at), Some(who)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    fam != family.tag()
        && who == tag
        && at
            .parse::<u64>()
            .is_ok_and(|at| at <= now_s && now_s < at.saturating_add(DUAL_STACK_S))
}

/// The marker write for an admitted update of `host`: after a counted single-family update,
/// remember its family; after the second half of a pair, forget it (the next one counts).
pub fn mark_family(
    rl: &RateLimits,
    host: &str,
    counted: Option<Family>,
    now_s: u64,
) -> Option<KvWrite> {
    if !rl.enabled {
        return None;
    }
    let (key, tag) = dual_marker(rl, host);
    Some(match counted {
        Some(f) => KvWrite::put(key, format!("{}|{now_s}|{tag}", f.tag()).into_bytes()),
        None => KvWrite::remove(key),
    })
}

fn bad_client_subject(ip: IpAddr) -> String {
    network(ip, 32, 56).to_string()
}

fn user_net_subject(user: &str, ip: Option<IpAddr>) -> String {
    let net = ip
        .map(|ip| network(ip, 24, 56).to_string())
        .unwrap_or_default();
    format!("{user}\0{net}")
}

fn good_client_subject(ip: IpAddr) -> String {
    network(ip, 32, 64).to_string()
}

/// Has this client's network proven `user`'s password within `known_client_s`?
pub fn is_known(
    rl: &RateLimits,
    kv: &dyn KvView,
    user: &str,
    client: Option<IpAddr>,
    now_s: u64,
) -> bool {
    let key = keys::exact(&rl.key, KNOWN, &user_net_subject(user, client));
    kv.get(&key)
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|s| s.parse::<u64>().ok())
        .is_some_and(|until| until > now_s)
}

/// After a verified login: mark the client's network as known for the user (written again once
/// half of its time has passed, so a router that updates every minute writes it rarely).
pub fn mark_known(
    rl: &RateLimits,
    kv: &dyn KvView,
    user: &str,
    client: Option<IpAddr>,
    now_s: u64,
) -> Option<KvWrite> {
    if !rl.enabled {
        return None;
    }
    let key = keys::exact(&rl.key, KNOWN, &user_net_subject(user, client));
    let until = kv
        .get(&key)
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0);
    if until > now_s.saturating_add(rl.known_client_s / 2) {
        return None;
    }
    Some(KvWrite::put(
        key,
        now_s
            .saturating_add(rl.known_client_s)
            .to_string()
            .into_bytes(),
    ))
}

/// Before any credential work: is this client (or the existing user it claims) over a limit?
/// `user` must be a user that exists (unknown names are counted per client only). `Some(seconds
/// until the longest window over its limit ends)`.
pub fn refused_for(
    rl: &RateLimits,
    kv: &dyn KvView,
    client: Option<IpAddr>,
    user: Option<&str>,
    now_s: u64,
) -> Option<u64> {
    if !rl.enabled {
        return None;
    }
    let over = |kind: &str, subject: &str, w: Window| -> Option<u64> {
        let (start, count) = kv
            .get(&keys::bucket(&rl.key, kind, subject))
            .and_then(|v| parse_count(&v))
            .filter(|(start, _)| now_s < start.saturating_add(w.window_s))?;
        (count >= w.limit).then(|| {
            start
                .saturating_add(w.window_s)
                .saturating_sub(now_s)
                .max(1)
        })
    };
    let mut waits = Vec::new();
    if let Some(ip) = client {
        waits.push(over(BAD_CLIENT, &bad_client_subject(ip), rl.bad_per_client));
        waits.push(over(
            GOOD_CLIENT,
            &good_client_subject(ip),
            rl.good_per_client,
        ));
    }
    if let Some(u) = user {
        waits.push(over(
            BAD_USER_NET,
            &user_net_subject(u, client),
            rl.bad_per_user_net,
        ));
        let global = over(BAD_USER, u, rl.bad_per_user);
        if global.is_some() && !is_known(rl, kv, u, client, now_s) {
            waits.push(global);
        }
    }
    waits.into_iter().flatten().max()
}

/// Is this host updated too often (counting `pending` more updates of it in this request)?
pub fn refuse_host(rl: &RateLimits, kv: &dyn KvView, host: &str, pending: u32, now_s: u64) -> bool {
    rl.enabled
        && count_in_window(
            kv,
            &keys::bucket(&rl.key, GOOD_HOST, host),
            rl.good_per_host,
            now_s,
        )
        .saturating_add(pending)
            >= rl.good_per_host.limit
}

/// Is this a failed-authentication counter (as opposed to a good-request one)?
#[cfg(test)]
pub fn is_bad_count(c: &KvCount) -> bool {
    c.key.starts_with("dynedge:rl:bad:")
}

/// What a failed authentication counts against. `user` must be a user that exists.
pub fn count_bad(rl: &RateLimits, client: Option<IpAddr>, user: Option<&str>) -> Vec<KvCount> {
    if !rl.enabled {
        return vec![];
    }
    let mut out = Vec::new();
    if let Some(ip) = client {
        out.push(KvCount {
            key: keys::bucket(&rl.key, BAD_CLIENT, &bad_client_subject(ip)),
            window_s: rl.bad_per_client.window_s,
        });
    }
    if let Some(u) = user {
        out.push(KvCount {
            key: keys::bucket(&rl.key, BAD_USER, u),
            window_s: rl.bad_per_user.window_s,
        });
        out.push(KvCount {
            key: keys::bucket(&rl.key, BAD_USER_NET, &user_net_subject(u, client)),
            window_s: rl.bad_per_user_net.window_s,
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
            key: keys::bucket(&rl.key, GOOD_HOST, h),
            window_s: rl.good_per_host.window_s,
        })
        .collect();
    if let Some(ip) = client {
        out.push(KvCount {
            key: keys::bucket(&rl.key, GOOD_CLIENT, &good_client_subject(ip)),
            window_s: rl.good_per_client.window_s,
        });
    }
    out
}

/// New credentials (tokens, acme-dns accounts): `None` when the client is over
/// `mint_per_client`, else the count to apply.
pub fn mint(
    rl: &RateLimits,
    kv: &dyn KvView,
    client: Option<IpAddr>,
    now_s: u64,
) -> Option<Vec<KvCount>> {
    if !rl.enabled {
        return Some(vec![]);
    }
    let subject = client.map_or_else(String::new, bad_client_subject);
    let key = keys::bucket(&rl.key, MINT_CLIENT, &subject);
    if count_in_window(kv, &key, rl.mint_per_client, now_s) >= rl.mint_per_client.limit {
        return None;
    }
    Some(vec![KvCount {
        key,
        window_s: rl.mint_per_client.window_s,
    }])
}

/// A per-endpoint request window (docs/dialects.md, Protocol rules: rate limits; 60/min per token for `/update`, ...).
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
/// The subject (which may come from the request) is hashed: a key has a fixed length.
pub fn window_key(bucket: &str, subject: &str) -> String {
    let d = Sha256::digest(subject.as_bytes());
    let half = d.get(..16).unwrap_or(&d);
    format!("dynedge:rl:api:{bucket}:{}", crate::auth::hex(half))
}

/// Counts this request in a fixed window stored as [`merge_count`] values and says where the
/// window stands, so the reply can carry `X-RateLimit-Limit/-Remaining/-Reset`.
pub fn window_state(kv: &dyn KvView, key: String, limit: Limit, now_s: u64) -> RateState {
    let window = limit.window_s.max(1);
    let (start, seen) = kv
        .get(&key)
        .and_then(|v| parse_count(&v))
        .filter(|(start, _)| now_s < start.saturating_add(window))
        .unwrap_or((now_s, 0));
    let exceeded = seen >= limit.requests;
    let used = if exceeded {
        seen
    } else {
        seen.saturating_add(1)
    };
    let reset_s = start.saturating_add(window);
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

    fn refuse_client(
        rl: &RateLimits,
        kv: &dyn KvView,
        client: Option<IpAddr>,
        user: Option<&str>,
        now_s: u64,
    ) -> bool {
        refused_for(rl, kv, client, user, now_s).is_some()
    }

    #[test]
    fn merge_count_restarts_after_the_window() {
        use crate::kv::merge_count;
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
            assert!(refused_for(&rl, &kv, Some(ip), None, 1000).is_none());
            bump(&kv, &count_bad(&rl, Some(ip), None), 1000);
        }
        assert!(refused_for(&rl, &kv, Some(ip), None, 1000).is_some());
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
    fn clients_count_by_network_and_a_known_network_is_exempt_from_the_user_window_only() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(network(ip("203.0.113.77"), 24, 56), ip("203.0.113.0"));
        assert_eq!(
            network(ip("2001:db8:1:2ff::7"), 24, 56),
            ip("2001:db8:1:200::")
        );
        assert_eq!(network(ip("2001:db8::7"), 32, 128), ip("2001:db8::7"));
        let rl = RateLimits::default();
        let kv = MemoryKv::default();
        let home = Some(ip("198.51.100.7"));
        kv.apply(
            &mark_known(&rl, &kv, "demo", home, 10)
                .into_iter()
                .collect::<Vec<_>>(),
        );
        assert!(
            mark_known(&rl, &kv, "demo", home, 20).is_none(),
            "fresh: not written again"
        );
        for i in 0..rl.bad_per_user.limit {
            bump(
                &kv,
                &count_bad(&rl, Some(ip(&format!("10.0.{i}.1"))), Some("demo")),
                10,
            );
        }
        assert!(!refuse_client(&rl, &kv, home, Some("demo"), 11));
        assert!(refuse_client(
            &rl,
            &kv,
            Some(ip("192.0.2.1")),
            Some("demo"),
            11
        ));
        assert!(!is_known(&rl, &kv, "demo", home, 10 + rl.known_client_s));
    }

    #[test]
    fn a_host_updated_too_often_is_refused() {
        let rl = RateLimits::default();
        let kv = MemoryKv::default();
        for _ in 0..rl.good_per_host.limit {
            assert!(!refuse_host(&rl, &kv, "h.test", 0, 0));
            bump(&kv, &count_good(&rl, None, ["h.test"].into_iter()), 0);
        }
        assert!(refuse_host(&rl, &kv, "h.test", 0, 0));
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
