//! `webhooks` in the plugin configuration, and the subscriber URL policy it compiles to.

use serde::Deserialize;

use crate::addr::{AddrPolicy, Cidr};
use crate::config::ConfigError;
use crate::names::Fqdn;

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
    /// Host names subscriber URLs may name: `hooks.example.com`, or `*.example.com` for the
    /// names below it. A name not listed is refused (SSRF: the filter cannot resolve names).
    #[serde(default)]
    pub allow_hosts: Vec<String>,
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
    pub policy: UrlPolicy,
    pub user_agent: String,
}

/// Which subscriber URLs may be called: the one place that decides it, for the API (at
/// creation) and for every delivery (against the configuration in force then).
#[derive(Debug, Clone)]
pub struct UrlPolicy {
    /// Address literals (and `localhost`, which is loopback by definition).
    pub addrs: AddrPolicy,
    /// Names: exact, or (`below`) any name under it.
    pub hosts: Vec<HostPattern>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    pub name: Fqdn,
    pub below: bool,
}

impl HostPattern {
    pub(crate) fn matches(&self, host: &Fqdn) -> bool {
        if self.below {
            host.is_within(&self.name) && *host != self.name
        } else {
            *host == self.name
        }
    }
}

impl UrlPolicy {
    /// Address literals checked against `addrs`; no name is allowed.
    pub fn strict(addrs: AddrPolicy) -> UrlPolicy {
        UrlPolicy {
            addrs,
            hosts: vec![],
        }
    }
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
        let mut hosts = Vec::new();
        for (i, h) in raw.allow_hosts.iter().enumerate() {
            let (below, name) = match h.strip_prefix("*.") {
                Some(rest) => (true, rest),
                None => (false, h.as_str()),
            };
            let name = Fqdn::parse(name.strip_suffix('.').unwrap_or(name)).map_err(|m| {
                e(
                    &format!("allow_hosts[{i}]"),
                    &format!("a host name or *.name: {m}"),
                )
            })?;
            hosts.push(HostPattern { name, below });
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
            policy: UrlPolicy {
                addrs: AddrPolicy::new(allowed),
                hosts,
            },
            user_agent: raw.user_agent,
        })
    }
}
