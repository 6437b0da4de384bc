//! Plugin configuration: raw JSON (serde) → validated, indexed [`Config`].
//!
//! Every error names where in the JSON it is (`users[1].password_hash: ...`) so that an operator
//! can fix it; the adapters refuse to start with a bad configuration.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use serde::Deserialize;

use crate::addr::{AddrPolicy, Cidr};
use crate::names::Fqdn;

/// A secret from the configuration. Never printed.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "configuration: {}", self.message)
        } else {
            write!(f, "configuration {}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

fn err(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.into(),
        message: message.into(),
    }
}

// ---------------------------------------------------------------- raw (what operators write)

#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    zones: Vec<RawZone>,
    #[serde(default)]
    backends: HashMap<String, RawBackend>,
    #[serde(default)]
    users: Vec<RawUser>,
    #[serde(default)]
    tokens: Vec<RawToken>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    #[serde(default = "default_auth_cache_ttl")]
    auth_cache_ttl_s: u64,
    #[serde(default = "default_record_cache_ttl")]
    record_cache_ttl_s: u64,
    #[serde(default)]
    dyndns2: RawDyndns2,
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
    #[serde(default = "default_sweep")]
    expiry_sweep_interval_s: u64,
    /// Where credentials and host state live (`crate::store`); absent = this configuration.
    #[serde(default)]
    #[cfg_attr(
        feature = "schema",
        schemars(
            with = "Option<crate::store::RawStore>",
            description = "Where credentials and host state live: `{\"type\": \"config\"}` (this \
                configuration, the default) or `{\"type\": \"etcd\", ...}` (docs/etcd.md)."
        )
    )]
    store: Option<serde_json::Value>,
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

#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct RawZone {
    name: String,
    backend: String,
    #[serde(default = "default_ttl")]
    ttl: u32,
    #[serde(default)]
    allow_ranges: Vec<String>,
    /// Remove a host's addresses when it has not updated for this long; 0 = never.
    #[serde(default)]
    expiry_ttl_s: u64,
}

fn default_ttl() -> u32 {
    60
}

#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum RawBackend {
    Powerdns {
        cluster: String,
        authority: String,
        #[serde(default = "default_server_id")]
        server_id: String,
        api_key: Secret,
        #[serde(default = "default_timeout")]
        timeout_ms: u64,
    },
    /// RFC 2136 UPDATE + TSIG over a DoH relay (`backends/rfc2136/`).
    Rfc2136 {
        cluster: String,
        authority: String,
        #[serde(default = "default_doh_path")]
        path: String,
        #[serde(default)]
        key_name: Option<String>,
        #[serde(default)]
        algorithm: Option<String>,
        #[serde(default)]
        secret: Option<Secret>,
        /// The text of a BIND key file.
        #[serde(default)]
        key_file: Option<Secret>,
        #[serde(default = "default_doh_timeout")]
        timeout_ms: u64,
    },
}

fn default_doh_path() -> String {
    "/dns-query".into()
}
/// Above dnsdist's 3.7 s "no downstream" answer and Knot's rare 1 s UPDATE (docs/rfc2136.md, Measured).
fn default_doh_timeout() -> u64 {
    5000
}

fn default_server_id() -> String {
    "localhost".into()
}
fn default_timeout() -> u64 {
    2000
}

#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: String,
    password_hash: Secret,
    #[serde(default)]
    hosts: Vec<RawHost>,
    #[serde(default)]
    zones: Vec<String>,
    #[serde(default = "yes")]
    active: bool,
}

/// A user's host: its name, or the name with a fixed IPv6 interface identifier.
#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(untagged)]
enum RawHost {
    Name(String),
    Entry(RawHostEntry),
}

#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct RawHostEntry {
    name: String,
    /// The host's IPv6 interface identifier (lower 64 bits, e.g. `::1:2:3:4`, not all zero).
    /// When a DynDNS2 update carries `ip6lanprefix`, the host's AAAA becomes that prefix
    /// followed by this identifier.
    #[serde(default)]
    interface_id: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct RawToken {
    id: String,
    user: String,
    /// Hex SHA-256 of the token; the token itself is never stored.
    sha256: Secret,
    #[serde(default = "all_scopes")]
    scopes: Vec<String>,
    /// Restricts the token to these of the user's hosts; absent = all of them.
    #[serde(default)]
    hosts: Option<Vec<String>>,
    #[serde(default = "yes")]
    active: bool,
    /// CIDR ranges the client address must fall inside (IPv4, IPv6); absent = anywhere.
    #[serde(default)]
    allowed_subnets: Vec<String>,
    /// When the token was issued (unix seconds): the start of `max_age_s`.
    #[serde(default)]
    created_s: Option<u64>,
    /// The token stops working this long after `created_s`.
    #[serde(default)]
    max_age_s: Option<u64>,
    /// The token stops working when unused this long (last use as this gateway recorded it).
    #[serde(default)]
    max_unused_period_s: Option<u64>,
    /// Which record types the token may write at which hosts; absent = all of them.
    #[serde(default)]
    policies: Option<Vec<crate::token_rules::RawPolicy>>,
}

fn all_scopes() -> Vec<String> {
    Scope::ALL.iter().map(|s| s.name().to_string()).collect()
}

#[derive(Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct RawDyndns2 {
    #[serde(default)]
    require_user_agent: Option<bool>,
    #[serde(default)]
    max_hosts: Option<usize>,
}

// ---------------------------------------------------------------- compiled

#[derive(Debug, Clone)]
pub struct Zone {
    pub name: Fqdn,
    pub backend: String,
    pub ttl: u32,
    pub policy: AddrPolicy,
    pub expiry_ttl_s: u64,
}

#[derive(Debug, Clone)]
pub enum Backend {
    PowerDns(PowerDnsBackend),
    Rfc2136(crate::backends::rfc2136::Rfc2136Backend),
}

impl Backend {
    /// The proxy cluster (Envoy) or upstream (Pingora) this backend's callouts go to.
    pub fn cluster(&self) -> &str {
        match self {
            Backend::PowerDns(b) => &b.cluster,
            Backend::Rfc2136(b) => &b.cluster,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PowerDnsBackend {
    pub cluster: String,
    pub authority: String,
    pub server_id: String,
    pub api_key: Secret,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Update,
    Txt,
    Read,
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Update, Scope::Txt, Scope::Read, Scope::Admin];
    pub fn name(self) -> &'static str {
        match self {
            Scope::Update => "update",
            Scope::Txt => "txt",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub password_hash: Secret,
    pub hosts: BTreeSet<Fqdn>,
    /// Zones in which the user owns every name.
    pub zones: BTreeSet<Fqdn>,
    pub active: bool,
}

#[derive(Debug, Clone)]
pub struct Token {
    pub id: String,
    pub user: String,
    pub scopes: BTreeSet<Scope>,
    pub hosts: Option<BTreeSet<Fqdn>>,
    pub active: bool,
    pub rules: crate::token_rules::TokenRules,
}

#[derive(Debug, Clone)]
pub struct Dyndns2Settings {
    pub require_user_agent: bool,
    pub max_hosts: usize,
}

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
    pub dyndns2: Dyndns2Settings,
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

/// Where a backend's callouts go: a proxy cluster, an authority, a timeout.
fn check_http_target(
    path: &str,
    cluster: &str,
    authority: &str,
    timeout_ms: u64,
) -> Result<(), ConfigError> {
    if cluster.is_empty() {
        return Err(err(format!("{path}.cluster"), "must not be empty"));
    }
    if authority.is_empty() {
        return Err(err(format!("{path}.authority"), "must not be empty"));
    }
    if !(1..=60_000).contains(&timeout_ms) {
        return Err(err(format!("{path}.timeout_ms"), "must be 1..=60000"));
    }
    Ok(())
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
    crate::auth::hex(&Sha256::digest(raw))
}

fn compile(raw: RawConfig) -> Result<Config, ConfigError> {
    let mut backends = HashMap::new();
    for (name, b) in raw.backends {
        let path = format!("backends.{name}");
        let backend = match b {
            RawBackend::Powerdns {
                cluster,
                authority,
                server_id,
                api_key,
                timeout_ms,
            } => {
                check_http_target(&path, &cluster, &authority, timeout_ms)?;
                if api_key.0.is_empty() {
                    return Err(err(format!("{path}.api_key"), "must not be empty"));
                }
                Backend::PowerDns(PowerDnsBackend {
                    cluster,
                    authority,
                    server_id,
                    api_key,
                    timeout_ms,
                })
            }
            RawBackend::Rfc2136 {
                cluster,
                authority,
                path: doh_path,
                key_name,
                algorithm,
                secret,
                key_file,
                timeout_ms,
            } => {
                use crate::backends::rfc2136::{key_from_spec, KeyError, KeySpec, Rfc2136Backend};
                check_http_target(&path, &cluster, &authority, timeout_ms)?;
                if !doh_path.starts_with('/') {
                    return Err(err(format!("{path}.path"), "must start with '/'"));
                }
                let key = key_from_spec(&KeySpec {
                    key_name: key_name.as_deref(),
                    algorithm: algorithm.as_deref(),
                    secret: secret.as_ref().map(|s| s.0.as_str()),
                    key_file: key_file.as_ref().map(|s| s.0.as_str()),
                })
                .map_err(|e| match e {
                    KeyError::Name(m) => err(format!("{path}.key_name"), m),
                    KeyError::Algorithm(m) => err(format!("{path}.algorithm"), m),
                    KeyError::Secret(m) => err(format!("{path}.secret"), m),
                    KeyError::KeyFile(m) => err(format!("{path}.key_file"), m),
                })?;
                Backend::Rfc2136(Rfc2136Backend {
                    cluster,
                    authority,
                    path: doh_path,
                    key,
                    timeout_ms,
                })
            }
        };
        backends.insert(name, backend);
    }

    let mut zones = Vec::new();
    for (i, z) in raw.zones.into_iter().enumerate() {
        let path = format!("zones[{i}]");
        let name = Fqdn::parse(&z.name).map_err(|e| err(format!("{path}.name"), e.to_string()))?;
        if zones.iter().any(|other: &Zone| other.name == name) {
            return Err(err(
                format!("{path}.name"),
                format!("zone {name} listed twice"),
            ));
        }
        if !backends.contains_key(&z.backend) {
            return Err(err(
                format!("{path}.backend"),
                format!("no backend named '{}'", z.backend),
            ));
        }
        if !(1..=86_400).contains(&z.ttl) {
            return Err(err(format!("{path}.ttl"), "must be 1..=86400"));
        }
        let mut allowed = Vec::new();
        for (j, r) in z.allow_ranges.iter().enumerate() {
            allowed.push(
                r.parse()
                    .map_err(|e| err(format!("{path}.allow_ranges[{j}]"), e))?,
            );
        }
        zones.push(Zone {
            name,
            backend: z.backend,
            ttl: z.ttl,
            policy: AddrPolicy::new(allowed),
            expiry_ttl_s: z.expiry_ttl_s,
        });
    }
    zones.sort_by_key(|z| std::cmp::Reverse(z.name.as_str().len()));
    let zone_known = |zones: &[Zone], n: &Fqdn| zones.iter().any(|z| n.is_within(&z.name));

    let mut users = HashMap::new();
    let mut host_owner: HashMap<Fqdn, String> = HashMap::new();
    let mut interface_ids = HashMap::new();
    for (i, u) in raw.users.into_iter().enumerate() {
        let path = format!("users[{i}]");
        if u.name.is_empty() || u.name.contains(':') || u.name.chars().any(char::is_control) {
            return Err(err(
                format!("{path}.name"),
                "must be non-empty, without ':' or control characters",
            ));
        }
        if users.contains_key(&u.name) {
            return Err(err(
                format!("{path}.name"),
                format!("user '{}' listed twice", u.name),
            ));
        }
        crate::auth::check_phc(&u.password_hash.0)
            .map_err(|m| err(format!("{path}.password_hash"), m))?;
        let mut hosts = BTreeSet::new();
        for (j, h) in u.hosts.iter().enumerate() {
            let hpath = format!("{path}.hosts[{j}]");
            let (name, iid) = match h {
                RawHost::Name(n) => (n, None),
                RawHost::Entry(e) => (&e.name, e.interface_id.as_deref()),
            };
            let fqdn = Fqdn::parse(name).map_err(|e| err(&hpath, e.to_string()))?;
            if let Some(iid) = iid {
                let iid = crate::addr::parse_interface_id(iid)
                    .map_err(|m| err(format!("{hpath}.interface_id"), m))?;
                interface_ids.insert(fqdn.clone(), iid);
            }
            if !zone_known(&zones, &fqdn) {
                return Err(err(hpath, format!("{fqdn} is in no configured zone")));
            }
            if let Some(owner) = host_owner.get(&fqdn) {
                return Err(err(
                    hpath,
                    format!("host {fqdn} is already owned by '{owner}'"),
                ));
            }
            host_owner.insert(fqdn.clone(), u.name.clone());
            hosts.insert(fqdn);
        }
        let mut user_zones = BTreeSet::new();
        for (j, z) in u.zones.iter().enumerate() {
            let zpath = format!("{path}.zones[{j}]");
            let fqdn = Fqdn::parse(z).map_err(|e| err(&zpath, e.to_string()))?;
            if !zones.iter().any(|zone| zone.name == fqdn) {
                return Err(err(zpath, format!("{fqdn} is not a configured zone")));
            }
            user_zones.insert(fqdn);
        }
        users.insert(
            u.name.clone(),
            User {
                name: u.name,
                password_hash: u.password_hash,
                hosts,
                zones: user_zones,
                active: u.active,
            },
        );
    }

    let mut tokens = HashMap::new();
    let mut token_ids = BTreeSet::new();
    for (i, t) in raw.tokens.into_iter().enumerate() {
        let path = format!("tokens[{i}]");
        if t.id.is_empty() || !token_ids.insert(t.id.clone()) {
            return Err(err(format!("{path}.id"), "must be non-empty and unique"));
        }
        let Some(user) = users.get(&t.user) else {
            return Err(err(
                format!("{path}.user"),
                format!("no user named '{}'", t.user),
            ));
        };
        let hash = t.sha256.0.to_ascii_lowercase();
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err(format!("{path}.sha256"), "must be 64 hex digits"));
        }
        if tokens.contains_key(&hash) {
            return Err(err(
                format!("{path}.sha256"),
                "the same token is listed twice",
            ));
        }
        let mut scopes = BTreeSet::new();
        for (j, s) in t.scopes.iter().enumerate() {
            let scope = Scope::ALL
                .into_iter()
                .find(|sc| sc.name() == s)
                .ok_or_else(|| {
                    err(
                        format!("{path}.scopes[{j}]"),
                        format!("unknown scope '{s}' (update, txt, read, admin)"),
                    )
                })?;
            scopes.insert(scope);
        }
        let hosts = match t.hosts {
            None => None,
            Some(list) => {
                let mut set = BTreeSet::new();
                for (j, h) in list.iter().enumerate() {
                    let hpath = format!("{path}.hosts[{j}]");
                    let fqdn = Fqdn::parse(h).map_err(|e| err(&hpath, e.to_string()))?;
                    if !crate::auth::user_owns(user, &fqdn) {
                        return Err(err(hpath, format!("user '{}' does not own {fqdn}", t.user)));
                    }
                    set.insert(fqdn);
                }
                Some(set)
            }
        };
        let raw_rules = crate::token_rules::RawRules {
            allowed_subnets: t.allowed_subnets,
            max_age_s: t.max_age_s,
            max_unused_period_s: t.max_unused_period_s,
            policies: t.policies,
        };
        let rules = crate::token_rules::TokenRules::compile(&raw_rules, t.created_s)
            .map_err(|e| err(format!("{path}.{}", e.field), e.message))?;
        if let Some((j, h)) = rules
            .policies
            .iter()
            .flatten()
            .enumerate()
            .find_map(|(j, p)| {
                p.host
                    .as_ref()
                    .filter(|h| !crate::auth::user_owns(user, h))
                    .map(|h| (j, h))
            })
        {
            return Err(err(
                format!("{path}.policies[{j}].host"),
                format!("user '{}' does not own {h}", t.user),
            ));
        }
        tokens.insert(
            hash,
            Token {
                id: t.id,
                user: t.user,
                scopes,
                hosts,
                active: t.active,
                rules,
            },
        );
    }

    let mut trusted_proxies = Vec::new();
    for (i, t) in raw.trusted_proxies.iter().enumerate() {
        trusted_proxies.push(
            t.parse()
                .map_err(|e| err(format!("trusted_proxies[{i}]"), e))?,
        );
    }
    let max_hosts = raw.dyndns2.max_hosts.unwrap_or(20);
    if !(1..=100).contains(&max_hosts) {
        return Err(err("dyndns2.max_hosts", "must be 1..=100"));
    }
    let store = crate::store::StoreConfig::from_value(raw.store.as_ref())
        .map_err(|(path, message)| err(path, message))?;
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
        dyndns2: Dyndns2Settings {
            require_user_agent: raw.dyndns2.require_user_agent.unwrap_or(true),
            max_hosts,
        },
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
        Config::from_json(include_bytes!("../../../examples/dynedge.json")).unwrap()
    }

    fn with(edit: impl FnOnce(&mut serde_json::Value)) -> Result<Config, ConfigError> {
        let mut v: serde_json::Value =
            serde_json::from_slice(include_bytes!("../../../examples/dynedge.json")).unwrap();
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
