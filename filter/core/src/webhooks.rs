//! Webhooks on IP change (ApertoDNS Layer 3; docs/dialects.md, Webhook delivery): HMAC-signed JSON POSTs.
//!
//! The core never waits for them. A finished update returns them in `Outcome::notify`; the adapter
//! dispatches each after sending the reply and, when [`Notify::next`] says so, dispatches the
//! same call again later (at most `max_retries` times, exponential backoff). Subscriptions live
//! in the shared KV under [`keys::webhooks`], managed through `/api/webhooks`.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::auth::hex;
use crate::backends::{Callout, CalloutResult};
use crate::exchange::Env;
use crate::hoststate::AddrChange;
use crate::kv::{keys, KvView};
use crate::names::Fqdn;

mod settings;
pub use settings::{RawWebhooks, UrlPolicy, WebhookSettings};

/// Events a subscription may ask for (delivery names).
pub const EVENTS: &[&str] = &[
    "ip_changed",
    "hostname_created",
    "hostname_deleted",
    "update_failed",
];

/// A subscription as stored in the KV. The secret is kept (it signs every delivery) but never
/// returned by the API after creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub secret: String,
    pub active: bool,
    /// Only changes of this host (None: every host of the user).
    pub host: Option<String>,
    pub created_ms: u64,
    pub updated_ms: u64,
}

pub fn subscriptions(kv: &dyn KvView, user: &str) -> Vec<Subscription> {
    kv.get(&keys::webhooks(user))
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Where a subscriber URL points: `https://host[:port]/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub authority: String,
    pub path: String,
}

/// HTTPS only, no credentials in the URL; an address literal (or `localhost`, `*.localhost`)
/// outside the special ranges, or a name on `webhooks.allow_hosts` (SSRF). Names are never
/// resolved here: what a listed name resolves to is the operator's to vouch for, and any other
/// name, whatever it resolves to, is refused. See `docs/dialects.md` "Webhook delivery".
pub fn check_url(url: &str, policy: &UrlPolicy) -> Result<Endpoint, String> {
    let rest = url
        .strip_prefix("https://")
        .ok_or("webhook URLs must use https")?;
    if url.len() > 2048 || url.chars().any(|c| c.is_control() || c == ' ') {
        return Err("webhook URL is malformed".into());
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at_checked(i).ok_or("webhook URL is malformed")?,
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err("webhook URL needs a host and no user info".into());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, rest)) => (h, rest),
            None => return Err("webhook URL is malformed".into()),
        }
    } else {
        match authority.find(':') {
            Some(i) => authority.split_at(i),
            None => (authority, ""),
        }
    };
    if !port.is_empty()
        && port
            .strip_prefix(':')
            .and_then(|p| p.parse::<u16>().ok())
            .is_none_or(|p| p == 0)
    {
        return Err("webhook URL has a bad port".into());
    }
    let bare = host.strip_suffix('.').unwrap_or(host);
    let loopback_name = bare.eq_ignore_ascii_case("localhost")
        || bare
            .get(bare.len().saturating_sub(".localhost".len())..)
            .is_some_and(|tail| tail.eq_ignore_ascii_case(".localhost"));
    let literal = if loopback_name {
        Some(std::net::IpAddr::from([127, 0, 0, 1]))
    } else {
        host.parse::<std::net::IpAddr>().ok()
    };
    let authority = match literal {
        Some(ip) => {
            policy
                .addrs
                .check(ip)
                .map_err(|e| format!("webhook URL host {e}"))?;
            authority.to_string()
        }
        None => {
            let name = Fqdn::parse(bare).map_err(|_| "webhook URL host is not a host name")?;
            if !policy.hosts.iter().any(|p| p.matches(&name)) {
                return Err(format!(
                    "webhook URL host {name} is not on this gateway's webhooks.allow_hosts"
                ));
            }
            format!("{name}{port}")
        }
    };
    Ok(Endpoint {
        authority,
        path: path.split('#').next().unwrap_or("/").to_string(),
    })
}

/// `sha256=` + hex HMAC-SHA256(secret, "{timestamp}.{body}").
pub fn sign(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

/// A fire-and-forget call and its retry policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    pub callout: Callout,
    /// 0 for the first dispatch.
    pub attempt: u32,
    pub max_retries: u32,
    pub retry_base_ms: u64,
}

/// The wire form of a [`Notify`], for adapters that hand deliveries between contexts.
#[derive(Serialize, Deserialize)]
struct NotifyWire {
    cluster: String,
    authority: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
    timeout_ms: u64,
    attempt: u32,
    max_retries: u32,
    retry_base_ms: u64,
}

impl Notify {
    /// JSON bytes (the body is JSON text already); see [`Notify::from_bytes`].
    pub fn to_bytes(&self) -> Vec<u8> {
        let c = &self.callout;
        serde_json::to_vec(&NotifyWire {
            cluster: c.cluster.clone(),
            authority: c.authority.clone(),
            path: c.path.clone(),
            headers: c.headers.clone(),
            body: String::from_utf8_lossy(&c.body).into_owned(),
            timeout_ms: c.timeout_ms,
            attempt: self.attempt,
            max_retries: self.max_retries,
            retry_base_ms: self.retry_base_ms,
        })
        .unwrap_or_default()
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Notify> {
        let w: NotifyWire = serde_json::from_slice(bytes).ok()?;
        Some(Notify {
            callout: Callout {
                cluster: w.cluster,
                method: crate::backends::Method::Post,
                authority: w.authority,
                path: w.path,
                headers: w.headers,
                body: w.body.into_bytes(),
                timeout_ms: w.timeout_ms,
            },
            attempt: w.attempt,
            max_retries: w.max_retries,
            retry_base_ms: w.retry_base_ms,
        })
    }

    /// What a delivery's result means: delivered (2xx), retry later, or given up (out of
    /// retries). The one classification every adapter applies.
    pub fn next(&self, result: &CalloutResult) -> Delivery {
        let why = match result {
            CalloutResult::Response { status, .. } if (200..300).contains(status) => {
                return Delivery::Delivered
            }
            CalloutResult::Response { status, .. } => format!("HTTP {status}"),
            CalloutResult::Failed(why) => why.to_string(),
        };
        if self.attempt >= self.max_retries {
            return Delivery::GaveUp {
                log: format!(
                    "dynedge: webhook via {} given up after {} attempts: {why}",
                    self.callout.cluster,
                    self.attempt.saturating_add(1)
                ),
            };
        }
        let after_ms = self.retry_base_ms.saturating_mul(1 << self.attempt.min(16));
        let mut again = self.clone();
        again.attempt = again.attempt.saturating_add(1);
        Delivery::Retry { after_ms, again }
    }
}

/// A webhook delivery after one attempt ([`Notify::next`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The receiver answered 2xx.
    Delivered,
    /// Dispatch `again` after `after_ms`.
    Retry { after_ms: u64, again: Notify },
    /// Out of retries; `log` says why (an error line for the host's log, no secret in it).
    GaveUp { log: String },
}

impl Delivery {
    /// The counter of this attempt's result (`metrics::WEBHOOK_ATTEMPTS`; every attempt
    /// counts, retries included).
    pub fn counter(&self) -> Option<&'static str> {
        use crate::metrics::{WEBHOOK_DELIVERED, WEBHOOK_GIVEN_UP, WEBHOOK_RETRIED};
        Some(match self {
            Delivery::Delivered => WEBHOOK_DELIVERED,
            Delivery::GaveUp { .. } => WEBHOOK_GIVEN_UP,
            Delivery::Retry { .. } => WEBHOOK_RETRIED,
        })
    }
}

fn id(prefix: &str, env: &Env, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(env.random.to_le_bytes());
    h.update(env.now_ms.to_le_bytes());
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let digest = hex(&h.finalize());
    format!("{prefix}_{}", digest.get(..16).unwrap_or(&digest))
}

/// One signed delivery per active `ip_changed` subscription and changed host.
pub fn deliveries(
    settings: &Option<WebhookSettings>,
    env: &Env,
    user: &str,
    changes: &[AddrChange],
) -> Vec<Notify> {
    let Some(s) = settings else { return vec![] };
    if changes.is_empty() {
        return vec![];
    }
    let mut out = Vec::new();
    for sub in subscriptions(env.kv, user) {
        if !sub.active
            || !sub
                .events
                .iter()
                .any(|e| e == "ip_changed" || e == "ip_change")
        {
            continue;
        }
        let Ok(ep) = check_url(&sub.url, &s.policy) else {
            continue;
        };
        for c in changes {
            if sub.host.as_ref().is_some_and(|h| *h != c.hostname) {
                continue;
            }
            let delivery = id("del", env, &[&sub.id, &c.hostname]);
            let event = id("evt", env, &[&c.hostname]);
            let body = json!({
                "event": "ip_changed",
                "event_id": event,
                "timestamp": crate::time::iso8601(env.now_ms),
                "webhook_id": sub.id,
                "data": {
                    "hostname": c.hostname,
                    "previous_ipv4": c.previous_ipv4,
                    "ipv4": c.ipv4,
                    "previous_ipv6": c.previous_ipv6,
                    "ipv6": c.ipv6,
                    "ttl": c.ttl,
                }
            })
            .to_string()
            .into_bytes();
            let ts = env.now_s();
            let headers = vec![
                ("content-type".to_string(), "application/json".to_string()),
                ("user-agent".to_string(), s.user_agent.clone()),
                ("x-apertodns-event".to_string(), "ip_changed".to_string()),
                ("x-apertodns-delivery-id".to_string(), delivery),
                ("x-apertodns-timestamp".to_string(), ts.to_string()),
                (
                    "x-apertodns-signature".to_string(),
                    sign(&sub.secret, ts, &body),
                ),
            ];
            out.push(Notify {
                callout: Callout {
                    cluster: s.cluster.clone(),
                    method: crate::backends::Method::Post,
                    authority: ep.authority.clone(),
                    path: ep.path.clone(),
                    headers,
                    body,
                    timeout_ms: s.timeout_ms,
                },
                attempt: 0,
                max_retries: s.max_retries,
                retry_base_ms: s.retry_base_ms,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::settings::HostPattern;
    use super::*;
    use crate::addr::AddrPolicy;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // printf '1703775000.{"a":1}' | openssl dgst -sha256 -hmac secret
        assert_eq!(
            sign("secret", 1_703_775_000, br#"{"a":1}"#),
            "sha256=255a62ab11ffa59c118a9f4b28b9ea6fd83b8e14382cb486c6d0c6f8f18b0b89"
        );
        assert_ne!(
            sign("secret", 1_703_775_001, br#"{"a":1}"#),
            sign("secret", 1_703_775_000, br#"{"a":1}"#)
        );
    }

    #[test]
    fn urls_must_be_https_and_not_point_at_special_ranges() {
        let strict = UrlPolicy {
            addrs: AddrPolicy::new(vec![]),
            hosts: vec![HostPattern {
                name: Fqdn::parse("hooks.example.com").unwrap(),
                below: false,
            }],
        };
        let cases: &[(&str, bool)] = &[
            ("https://hooks.example.com/ddns", true),
            ("https://hooks.example.com:8443", true),
            ("https://[2a00:1450::1]/x", true),
            ("http://hooks.example.com/ddns", false),
            ("https://user:pw@hooks.example.com/", false),
            ("https://127.0.0.1/x", false),
            ("https://localhost:9000/x", false),
            ("https://10.1.2.3/x", false),
            ("https://[::1]/x", false),
            ("https://169.254.169.254/latest", false),
            ("https:///x", false),
        ];
        for (url, ok) in cases {
            assert_eq!(check_url(url, &strict).is_ok(), *ok, "{url}");
        }
        let open = UrlPolicy::strict(AddrPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]));
        let ep = check_url("https://127.0.0.1:22443/hook?a=1", &open).unwrap();
        assert_eq!(ep.authority, "127.0.0.1:22443");
        assert_eq!(ep.path, "/hook?a=1");
    }

    fn compiled(allow_hosts: serde_json::Value) -> UrlPolicy {
        let raw: RawWebhooks =
            serde_json::from_value(json!({"cluster": "webhooks", "allow_hosts": allow_hosts}))
                .unwrap();
        WebhookSettings::compile(raw).unwrap().policy
    }

    #[test]
    fn names_must_be_on_the_allow_list_whatever_they_resolve_to() {
        // Each of these names reaches loopback or a private address through a resolver
        // (`*.localhost` by RFC 6761, the others through DNS or /etc/hosts): the filter cannot
        // see that, so only names the operator listed are called.
        let p = compiled(json!(["hooks.example.com", "*.receivers.example.net"]));
        let refused = [
            "https://foo.localhost/x",
            "https://FOO.LOCALHOST.:8443/x",
            "https://localhost./x",
            "https://localtest.me/x",
            "https://internal.corp.example/x",
            "https://metadata.google.internal/computeMetadata",
            "https://2130706433/x",
            "https://0x7f.0.0.1/x",
            "https://127.1/x",
            "https://receivers.example.net/x",
            "https://hooks.example.com.evil.test/x",
            "https://[::ffff:127.0.0.1]/x",
            "https://hooks.example.com:0/x",
            "https://hooks.example.com:99999/x",
            "https://hooks.example.com:x/y",
        ];
        for url in refused {
            assert!(check_url(url, &p).is_err(), "{url}");
        }
        let allowed = [
            ("https://hooks.example.com/x", "hooks.example.com"),
            (
                "https://Hooks.Example.COM.:8443/x",
                "hooks.example.com:8443",
            ),
            (
                "https://a.receivers.example.net/x",
                "a.receivers.example.net",
            ),
            ("https://198.51.99.1/x", "198.51.99.1"),
        ];
        for (url, authority) in allowed {
            assert_eq!(
                check_url(url, &p).map(|e| e.authority),
                Ok(authority.into()),
                "{url}"
            );
        }
        let bad = RawWebhooks {
            allow_hosts: vec!["*".into()],
            ..serde_json::from_value(json!({"cluster": "c"})).unwrap()
        };
        assert!(WebhookSettings::compile(bad).is_err(), "no catch-all");
    }

    #[test]
    fn a_subscription_to_a_name_is_not_delivered_when_the_name_is_not_listed() {
        let kv = crate::kv::MemoryKv::default();
        let sub = Subscription {
            id: "wh_1".into(),
            url: "https://foo.localhost:9443/hook".into(),
            events: vec!["ip_changed".into()],
            secret: "s".repeat(32),
            active: true,
            host: None,
            created_ms: 0,
            updated_ms: 0,
        };
        kv.apply(&[crate::kv::KvWrite::put(
            keys::webhooks("demo"),
            serde_json::to_vec(&vec![sub]).unwrap(),
        )]);
        let env = Env {
            now_ms: 1,
            random: 1,
            kv: &kv,
        };
        let change = AddrChange {
            hostname: "home.dyn.example.test".into(),
            previous_ipv4: None,
            ipv4: Some("192.0.2.1".into()),
            previous_ipv6: None,
            ipv6: None,
            ttl: 60,
        };
        let settings = |more: serde_json::Value| {
            let mut v = json!({"cluster": "webhooks"});
            for (k, x) in more.as_object().unwrap() {
                v[k] = x.clone();
            }
            let raw: RawWebhooks = serde_json::from_value(v).unwrap();
            Some(WebhookSettings::compile(raw).unwrap())
        };
        let changes = [change];
        let none = deliveries(&settings(json!({})), &env, "demo", &changes);
        assert!(none.is_empty(), "refused at delivery too");
        let listed = settings(json!({"allow_hosts": ["foo.localhost"]}));
        assert!(
            deliveries(&listed, &env, "demo", &changes).is_empty(),
            "a *.localhost name is loopback: listing it does not open it"
        );
        let rig = settings(json!({"allow_ranges": ["127.0.0.0/8"]}));
        let sent = deliveries(&rig, &env, "demo", &changes);
        assert_eq!(sent.len(), 1, "a rig that opens loopback gets it");
        assert_eq!(sent[0].callout.authority, "foo.localhost:9443");
    }

    #[test]
    fn failed_delivery_is_retried_with_backoff_then_given_up() {
        let n = Notify {
            callout: Callout {
                cluster: "c".into(),
                method: crate::backends::Method::Post,
                authority: "a".into(),
                path: "/".into(),
                headers: vec![],
                body: vec![],
                timeout_ms: 1,
            },
            attempt: 0,
            max_retries: 3,
            retry_base_ms: 1000,
        };
        let fail =
            CalloutResult::Failed(crate::backends::CalloutFailure::Connection("reset".into()));
        let retry = |d: Delivery| match d {
            Delivery::Retry { after_ms, again } => (after_ms, again),
            other => panic!("expected a retry, got {other:?}"),
        };
        let (d1, n1) = retry(n.next(&fail));
        let (d2, n2) = retry(n1.next(&CalloutResult::Response {
            status: 500,
            headers: vec![],
            body: vec![],
        }));
        let (d3, n3) = retry(n2.next(&fail));
        assert_eq!((d1, d2, d3), (1000, 2000, 4000));
        let gave_up = n3.next(&fail);
        assert_eq!(
            gave_up,
            Delivery::GaveUp {
                log: "dynedge: webhook via c given up after 4 attempts: connection failed: reset"
                    .into()
            },
            "three retries, then give up"
        );
        assert_eq!(gave_up.counter(), Some(crate::metrics::WEBHOOK_GIVEN_UP));
        let ok = CalloutResult::Response {
            status: 204,
            headers: vec![],
            body: vec![],
        };
        assert_eq!(n3.next(&ok), Delivery::Delivered, "a 2xx ends it");
        assert_eq!(
            Delivery::Delivered.counter(),
            Some(crate::metrics::WEBHOOK_DELIVERED)
        );
        assert_eq!(retry(n.next(&fail)).0, 1000);
        assert_eq!(Notify::from_bytes(&n3.to_bytes()), Some(n3), "round trip");
    }
}
