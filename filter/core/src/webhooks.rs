//! Webhooks on IP change (ApertoDNS Layer 3, digest §10): HMAC-signed JSON POSTs.
//!
//! The core never waits for them. A finished update returns them in `Outcome::notify`; the adapter
//! dispatches each after sending the reply and, when [`Notify::next`] says so, dispatches the
//! same call again later (at most `max_retries` times, exponential backoff). Subscriptions live
//! in the shared KV under [`keys::webhooks`], managed through `/api/webhooks`.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::addr::{AddrPolicy, Cidr};
use crate::auth::hex;
use crate::backends::{Callout, CalloutResult};
use crate::config::ConfigError;
use crate::exchange::Env;
use crate::hoststate::AddrChange;
use crate::kv::{keys, KvView};

/// `webhooks` in the plugin configuration; absent = webhooks off (`/info` says so).
#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawWebhooks {
    /// The proxy cluster that reaches subscribers (e.g. an Envoy dynamic forward proxy).
    pub cluster: String,
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    #[serde(default = "default_base")]
    pub retry_base_ms: u64,
    /// Special ranges subscriber URLs may point at anyway (test rigs only; logged at start).
    #[serde(default)]
    pub allow_ranges: Vec<String>,
    #[serde(default = "default_agent")]
    pub user_agent: String,
}

fn default_timeout() -> u64 {
    10_000
}
fn default_retries() -> u32 {
    3
}
fn default_base() -> u64 {
    1000
}
fn default_agent() -> String {
    "dynedge-Webhook/1.0".into()
}

#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub cluster: String,
    pub timeout_ms: u64,
    pub max_retries: u32,
    pub retry_base_ms: u64,
    pub policy: AddrPolicy,
    pub user_agent: String,
}

impl WebhookSettings {
    pub fn compile(raw: RawWebhooks) -> Result<WebhookSettings, ConfigError> {
        let e = |path: &str, m: &str| ConfigError {
            path: format!("webhooks.{path}"),
            message: m.into(),
        };
        if raw.cluster.is_empty() {
            return Err(e("cluster", "must not be empty"));
        }
        if !(1..=60_000).contains(&raw.timeout_ms) {
            return Err(e("timeout_ms", "must be 1..=60000"));
        }
        if raw.max_retries > 10 {
            return Err(e("max_retries", "must be 0..=10"));
        }
        let mut allowed = Vec::new();
        for (i, r) in raw.allow_ranges.iter().enumerate() {
            allowed.push(
                r.parse::<Cidr>()
                    .map_err(|m| e(&format!("allow_ranges[{i}]"), &m))?,
            );
        }
        Ok(WebhookSettings {
            cluster: raw.cluster,
            timeout_ms: raw.timeout_ms,
            max_retries: raw.max_retries,
            retry_base_ms: raw.retry_base_ms.max(1),
            policy: AddrPolicy::new(allowed),
            user_agent: raw.user_agent,
        })
    }
}

/// Events a subscription may ask for (delivery names, digest §10).
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

/// HTTPS only, no credentials in the URL, and no address literal (or `localhost`) in a special
/// range (SSRF). Names resolve in the proxy; rebinding protection belongs to its DNS settings.
pub fn check_url(url: &str, policy: &AddrPolicy) -> Result<Endpoint, String> {
    let rest = url
        .strip_prefix("https://")
        .ok_or("webhook URLs must use https")?;
    if url.len() > 2048 || url.chars().any(|c| c.is_control() || c == ' ') {
        return Err("webhook URL is malformed".into());
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err("webhook URL needs a host and no user info".into());
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.split(':').next().unwrap_or("")
    };
    let literal = if host.eq_ignore_ascii_case("localhost") {
        Some(std::net::IpAddr::from([127, 0, 0, 1]))
    } else {
        host.parse().ok()
    };
    if let Some(ip) = literal {
        policy
            .check(ip)
            .map_err(|e| format!("webhook URL host {e}"))?;
    }
    Ok(Endpoint {
        authority: authority.to_string(),
        path: path.split('#').next().unwrap_or("/").to_string(),
    })
}

/// `sha256=` + hex HMAC-SHA256(secret, "{timestamp}.{body}") (digest §10).
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
                method: "POST",
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

    /// After a result: `None` when done (2xx) or out of retries; otherwise the delay before
    /// dispatching the returned (same, next-attempt) call again.
    pub fn next(&self, result: &CalloutResult) -> Option<(u64, Notify)> {
        let ok =
            matches!(result, CalloutResult::Response { status, .. } if (200..300).contains(status));
        if ok || self.attempt >= self.max_retries {
            return None;
        }
        let delay = self.retry_base_ms.saturating_mul(1 << self.attempt.min(16));
        let mut again = self.clone();
        again.attempt += 1;
        Some((delay, again))
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
    format!("{prefix}_{}", &hex(&h.finalize())[..16])
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
                    method: "POST",
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
    use super::*;

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
        let strict = AddrPolicy::new(vec![]);
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
        let open = AddrPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
        let ep = check_url("https://127.0.0.1:22443/hook?a=1", &open).unwrap();
        assert_eq!(ep.authority, "127.0.0.1:22443");
        assert_eq!(ep.path, "/hook?a=1");
    }

    #[test]
    fn failed_delivery_is_retried_with_backoff_then_given_up() {
        let n = Notify {
            callout: Callout {
                cluster: "c".into(),
                method: "POST",
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
        let fail = CalloutResult::Failed("reset".into());
        let (d1, n1) = n.next(&fail).unwrap();
        let (d2, n2) = n1
            .next(&CalloutResult::Response {
                status: 500,
                headers: vec![],
                body: vec![],
            })
            .unwrap();
        let (d3, n3) = n2.next(&fail).unwrap();
        assert_eq!((d1, d2, d3), (1000, 2000, 4000));
        assert!(n3.next(&fail).is_none(), "three retries, then give up");
        let ok = CalloutResult::Response {
            status: 204,
            headers: vec![],
            body: vec![],
        };
        assert!(n.next(&ok).is_none(), "a 2xx ends it");
        assert_eq!(Notify::from_bytes(&n3.to_bytes()), Some(n3), "round trip");
    }
}
