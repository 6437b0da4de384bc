//! Plugin configuration: raw JSON (serde) → validated, indexed [`Config`].
//!
//! Every error names where in the JSON it is (`users[1].password_hash: ...`) so that an operator
//! can fix it; the adapters refuse to start with a bad configuration.

use std::collections::HashMap;

use serde::Deserialize;

mod backends;
mod credentials;
mod error;
mod scope;
mod zones;

pub use crate::backends::settings::{Backend, PowerDnsBackend};
#[cfg(any(test, feature = "testing"))]
pub use credentials::check_phc;
pub use credentials::{CacheMac, Token, User};
use error::err;
pub use error::{ConfigError, Secret};
pub use scope::Scope;
pub use zones::Zone;

use crate::addr::Cidr;
use crate::names::Fqdn;

// ---------------------------------------------------------------- raw (what operators write)

#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    zones: Vec<zones::RawZone>,
    #[serde(default)]
    backends: HashMap<String, backends::RawBackend>,
    #[serde(default)]
    users: Vec<credentials::RawUser>,
    #[serde(default)]
    tokens: Vec<credentials::RawToken>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    #[serde(default = "default_auth_cache_ttl")]
    auth_cache_ttl_s: u64,
    #[serde(default = "default_record_cache_ttl")]
    record_cache_ttl_s: u64,
    #[serde(default)]
    dyndns2: crate::dialects::dyndns2::settings::RawDyndns2,
    #[serde(default)]
    apertodns: crate::dialects::apertodns::RawAperto,
    #[serde(default)]
    endpoints: Vec<crate::dialects::custom::RawEndpoint>,
    #[serde(default)]
    acme_dns: Option<crate::dialects::acmedns::RawAcmeDns>,
    #[serde(default)]
    webhooks: Option<crate::webhooks::RawWebhooks>,
    #[serde(default)]
    rate_limits: crate::limits::RateLimits,
    #[serde(default)]
    group_commit: crate::group_commit::settings::GroupCommitSettings,
    #[serde(default = "default_sweep")]
    expiry_sweep_interval_s: u64,
    #[doc = "Where credentials and host state live: `{\"type\": \"config\"}` (this \
        configuration, the default) or `{\"type\": \"etcd\", ...}` (docs/etcd.md)."]
    #[serde(default, deserialize_with = "crate::store::RawStore::named")]
    store: Option<crate::store::RawStore>,
}

fn default_sweep() -> u64 {
    30
}

fn default_auth_cache_ttl() -> u64 {
    300
}
fn default_record_cache_ttl() -> u64 {
    60
}

// ---------------------------------------------------------------- compiled

/// The validated configuration every request is served from.
#[derive(Debug, Clone)]
pub struct Config {
    /// Longest name first, so the first match is the most specific zone.
    pub zones: Vec<Zone>,
    pub backends: HashMap<String, Backend>,
    pub users: HashMap<String, User>,
    /// Keyed by the lower-case hex SHA-256 of the token.
    pub tokens: HashMap<String, Token>,
    pub trusted_proxies: Vec<Cidr>,
    pub auth_cache_ttl_s: u64,
    /// How long a record read or written is trusted without reading the backend; `0` = always
    /// read. With the configuration store, must be 0 when several gateway processes (each with
    /// its own shared data) update the same hosts, or one may answer a stale `nochg`
    /// (docs/hardening.md); the etcd store decides `nochg` itself.
    pub record_cache_ttl_s: u64,
    pub dyndns2: crate::dialects::dyndns2::settings::Dyndns2Settings,
    pub rate_limits: crate::limits::RateLimits,
    /// How often the root context looks for expired hosts.
    pub expiry_sweep_interval_s: u64,
    /// Who owns each explicitly granted host (a host has one owner).
    pub host_owner: HashMap<Fqdn, String>,
    /// Hosts declared with a fixed IPv6 interface identifier (lower 64 bits, never zero).
    pub interface_ids: HashMap<Fqdn, std::net::Ipv6Addr>,
    pub apertodns: crate::dialects::apertodns::ApertoSettings,
    /// Operator-defined update endpoints (ddns-service style), first match wins.
    pub endpoints: Vec<crate::dialects::custom::Endpoint>,
    /// The acme-dns API (`acme_dns` in the configuration); off when absent.
    pub acme_dns: Option<crate::dialects::acmedns::AcmeDnsSettings>,
    /// Webhook delivery; `None` = off.
    pub webhooks: Option<crate::webhooks::WebhookSettings>,
    pub store: crate::store::StoreConfig,
    /// How updates for one zone share backend writes (`group_commit`).
    pub group_commit: crate::group_commit::settings::GroupCommitSettings,
}

impl Config {
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        let raw: RawConfig = serde_json::from_slice(bytes).map_err(|e| {
            err(
                format!("line {} column {}", e.line(), e.column()),
                e.to_string(),
            )
        })?;
        compile(raw)
    }

    /// The zone a name belongs to (most specific first).
    pub fn zone_of(&self, name: &Fqdn) -> Option<&Zone> {
        self.zones.iter().find(|z| name.is_within(&z.name))
    }

    /// Warnings an operator should see at start (e.g. zones that accept special ranges).
    pub fn warnings(&self) -> Vec<String> {
        self.zones
            .iter()
            .filter(|z| !z.policy.allowed().is_empty())
            .map(|z| {
                let ranges: Vec<String> =
                    z.policy.allowed().iter().map(|c| c.to_string()).collect();
                format!(
                    "zone {} accepts special-purpose address ranges: {}",
                    z.name,
                    ranges.join(", ")
                )
            })
            .collect()
    }
}

/// The JSON Schema of the plugin configuration, derived from the serde types [`Config::from_json`]
/// reads (`examples/dynedge.schema.json`). It checks the shape; `from_json` also checks meaning
/// (names, ranges, references between sections).
#[cfg(feature = "schema")]
pub fn json_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(RawConfig);
    schema.insert("title".into(), "dynedge plugin configuration".into());
    schema.to_value()
}

/// A stable identity of a raw configuration, so VMs can tell whether theirs is current.
pub fn fingerprint(raw: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(raw))
}

fn compile(raw: RawConfig) -> Result<Config, ConfigError> {
    let backends = backends::compile(raw.backends)?;
    let zones = zones::compile(raw.zones, &backends)?;
    let (users, host_owner, interface_ids) = credentials::compile_users(raw.users, &zones)?;
    let tokens = credentials::compile_tokens(raw.tokens, &users)?;

    let mut trusted_proxies = Vec::new();
    for (i, t) in raw.trusted_proxies.iter().enumerate() {
        trusted_proxies.push(
            t.parse()
                .map_err(|e| err(format!("trusted_proxies[{i}]"), e))?,
        );
    }
    let dyndns2 = raw.dyndns2.compile()?;
    let store = crate::store::StoreConfig::compile(raw.store)?;
    if let (Some(_), Some(z)) = (store.etcd(), zones.iter().find(|z| z.expiry_ttl_s > 0)) {
        // A host's last update is known per gateway only: one gateway would expire a host
        // that keeps updating through another.
        return Err(err(
            format!("zone {}.expiry_ttl_s", z.name),
            "expiry is not supported with the etcd store (last-seen times are per gateway)",
        ));
    }
    raw.rate_limits
        .validate()
        .map_err(|m| err("rate_limits", m))?;
    raw.group_commit
        .validate()
        .map_err(|m| err("group_commit.max_batch", m))?;
    let apertodns = crate::dialects::apertodns::ApertoSettings::compile(raw.apertodns)?;
    let endpoints = crate::dialects::custom::compile(raw.endpoints)?;
    let acme_dns = raw
        .acme_dns
        .map(|a| crate::dialects::acmedns::AcmeDnsSettings::compile(a, &zones, &apertodns))
        .transpose()?;
    let webhooks = raw
        .webhooks
        .map(crate::webhooks::WebhookSettings::compile)
        .transpose()?;
    let limiter_key = limiter_key(&apertodns, &users);
    Ok(Config {
        zones,
        backends,
        users,
        tokens,
        trusted_proxies,
        auth_cache_ttl_s: raw.auth_cache_ttl_s,
        record_cache_ttl_s: raw.record_cache_ttl_s,
        dyndns2,
        rate_limits: crate::limits::RateLimits {
            key: limiter_key,
            ..raw.rate_limits
        },
        expiry_sweep_interval_s: raw.expiry_sweep_interval_s.max(1),
        host_owner,
        interface_ids,
        apertodns,
        endpoints,
        acme_dns,
        webhooks,
        store,
        group_commit: raw.group_commit,
    })
}

/// The key of the rate limiter's hashes: from secrets an attacker does not know (the token key,
/// the salted password hashes), so nobody can pick inputs that share a bucket with a victim's.
/// Stable while those do not change.
fn limiter_key(
    apertodns: &crate::dialects::apertodns::ApertoSettings,
    users: &HashMap<String, User>,
) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"dynedge rate limits\0");
    if let Some(k) = &apertodns.token_key {
        h.update(k.0.as_bytes());
    }
    let mut names: Vec<&String> = users.keys().collect();
    names.sort();
    for n in names {
        if let Some(u) = users.get(n) {
            h.update(n.as_bytes());
            h.update([0]);
            h.update(u.password_hash.0.as_bytes());
            h.update([0]);
        }
    }
    h.finalize().into()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The demo configuration that `cargo xtask up` loads (examples/dynedge.json).
    pub fn demo() -> Config {
        Config::from_json(include_bytes!("../../../../examples/dynedge.json")).unwrap()
    }

    fn with(edit: impl FnOnce(&mut serde_json::Value)) -> Result<Config, ConfigError> {
        let mut v: serde_json::Value =
            serde_json::from_slice(include_bytes!("../../../../examples/dynedge.json")).unwrap();
        edit(&mut v);
        Config::from_json(v.to_string().as_bytes())
    }

    #[test]
    fn demo_configuration_compiles_and_warns_about_its_open_ranges() {
        let c = demo();
        assert!(c.users.contains_key("demo"));
        assert_eq!(c.tokens.len(), 1);
        assert_eq!(c.warnings().len(), 1);
        assert!(c.warnings()[0].contains("192.0.2.0/24"));
    }

    #[test]
    fn bad_json_names_line_and_column() {
        let e = Config::from_json(b"{\n  \"zones\": [,]\n}").unwrap_err();
        assert!(e.path.starts_with("line 2"), "{e}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = with(|v| v["zonez"] = serde_json::json!([])).unwrap_err();
        assert!(e.message.contains("zonez"), "{e}");
    }

    #[test]
    fn bad_phc_string_is_refused_with_its_path() {
        let e = with(|v| v["users"][0]["password_hash"] = "plaintext".into()).unwrap_err();
        assert_eq!(e.path, "users[0].password_hash");
        let e = with(|v| {
            v["users"][0]["password_hash"] =
                "$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$Zm9vYmFyYmF6cXV4cXV1eA".into()
        })
        .unwrap_err();
        assert!(e.message.contains("argon2id"), "{e}");
    }

    #[test]
    fn interface_ids_are_checked_with_their_place() {
        let host = |iid: &str| {
            with(|v| {
                v["users"][0]["hosts"][0] =
                    serde_json::json!({"name": "home.dyn.example.test", "interface_id": iid});
            })
        };
        let c = host("::1:2:3:4").unwrap();
        let home = Fqdn::parse("home.dyn.example.test").unwrap();
        assert_eq!(c.interface_ids[&home].to_string(), "::1:2:3:4");
        assert!(c.users["demo"].hosts.contains(&home));
        for bad in ["::", "2001:db8::1", "192.0.2.1", "nope"] {
            let e = host(bad).unwrap_err();
            assert_eq!(e.path, "users[0].hosts[0].interface_id", "{bad}: {e}");
        }
        assert!(host("::").unwrap_err().message.contains("all-zero"));
        assert!(demo().interface_ids.is_empty());
    }

    #[test]
    fn duplicate_host_is_refused() {
        let e = with(|v| {
            let mut second = v["users"][0].clone();
            second["name"] = "other".into();
            v["users"].as_array_mut().unwrap().push(second);
        })
        .unwrap_err();
        assert_eq!(e.path, "users[2].hosts[0]");
        assert!(e.message.contains("already owned by 'demo'"), "{e}");
    }

    #[test]
    fn host_outside_every_zone_is_refused() {
        let e = with(|v| v["users"][0]["hosts"][0] = "x.elsewhere.test".into()).unwrap_err();
        assert!(e.message.contains("no configured zone"), "{e}");
    }

    #[test]
    fn zone_with_unknown_backend_is_refused() {
        let e = with(|v| v["zones"][0]["backend"] = "nope".into()).unwrap_err();
        assert_eq!(e.path, "zones[0].backend");
    }

    #[test]
    fn token_hash_must_be_hex_sha256_and_scopes_known() {
        let e = with(|v| v["tokens"][0]["sha256"] = "abc".into()).unwrap_err();
        assert_eq!(e.path, "tokens[0].sha256");
        let e = with(|v| v["tokens"][0]["scopes"] = serde_json::json!(["root"])).unwrap_err();
        assert_eq!(e.path, "tokens[0].scopes[0]");
    }

    #[test]
    fn most_specific_zone_wins() {
        let c = with(|v| {
            v["zones"].as_array_mut().unwrap().push(serde_json::json!(
                {"name": "sub.dyn.example.test", "backend": "pdns"}
            ));
        })
        .unwrap();
        let n = Fqdn::parse("a.sub.dyn.example.test").unwrap();
        assert_eq!(c.zone_of(&n).unwrap().name.as_str(), "sub.dyn.example.test");
        let n = Fqdn::parse("home.dyn.example.test").unwrap();
        assert_eq!(c.zone_of(&n).unwrap().name.as_str(), "dyn.example.test");
    }

    #[test]
    fn secrets_do_not_appear_in_debug_output() {
        let text = format!("{:?}", demo());
        assert!(!text.contains("argon2id"), "PHC hash leaked");
        assert!(!text.contains("dynedge-demo-pdns-key"), "API key leaked");
    }
}
