//! `users` and `tokens`: who may update what. Passwords are Argon2id PHC strings and tokens
//! their SHA-256, so the configuration holds nothing that logs in by itself.

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

use argon2::password_hash::PasswordHash;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::error::{err, ConfigError, Secret};
use super::scope::Scope;
use super::zones::Zone;
use crate::hex::hex;
use crate::names::Fqdn;

#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub(super) struct RawUser {
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
pub(super) struct RawToken {
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

#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub password_hash: Secret,
    /// The auth cache's keyed hash, keyed with `password_hash` on the user's first password
    /// request and kept: not keyed per request, and not at configuration time for every user
    /// (a scale configuration's idle users cost neither the keying nor its 150 bytes).
    pub(crate) cache_key: OnceLock<CacheMac>,
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

/// The keyed hash that names a presented password's cache entry. The key is the stored PHC
/// string, so a changed password invalidates every cache entry, and the KV never holds anything
/// that verifies offline without the configuration. Keyed once per user ([`User::cache_mac`]):
/// keying hashes the PHC string, which is longer than SHA-256's block, and the two pads, which
/// was most of the tag's cost on every request.
#[derive(Clone)]
pub struct CacheMac(Hmac<Sha256>);

impl CacheMac {
    pub fn new(phc: &str) -> CacheMac {
        // HMAC takes keys of any length, so the fallback never runs; it keeps this total.
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(phc.as_bytes())
            .unwrap_or_else(|_| <Hmac<Sha256> as Mac>::new(&Default::default()));
        CacheMac(mac)
    }

    pub fn tag(&self, password: &str) -> String {
        let mut mac = self.0.clone();
        mac.update(password.as_bytes());
        hex(&mac.finalize().into_bytes())
    }
}

impl std::fmt::Debug for CacheMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Its state is derived from the PHC string: never printed.
        f.write_str("CacheMac(***)")
    }
}

impl User {
    /// The keyed hash of the auth cache ([`CacheMac`]), keyed once.
    pub fn cache_mac(&self) -> &CacheMac {
        self.cache_key
            .get_or_init(|| CacheMac::new(&self.password_hash.0))
    }

    /// Does the user own this exact name (explicit host, or any name in a granted zone)?
    pub fn owns(&self, name: &Fqdn) -> bool {
        self.hosts.contains(name) || self.zones.iter().any(|z| name.is_within(z))
    }
}

/// Accepts an Argon2id PHC string with salt, hash and valid parameters.
pub fn check_phc(phc: &str) -> Result<(), String> {
    let h = PasswordHash::new(phc).map_err(|e| format!("not a PHC string ({e})"))?;
    if h.algorithm.as_str() != "argon2id" {
        return Err(format!("algorithm is {}, expected argon2id", h.algorithm));
    }
    if h.hash.is_none() || h.salt.is_none() {
        return Err("PHC string lacks salt or hash".into());
    }
    argon2::Params::try_from(&h).map_err(|e| format!("bad Argon2 parameters ({e})"))?;
    Ok(())
}

/// The users, who owns each explicitly granted host, and the hosts with a fixed IPv6
/// interface identifier.
pub(super) type Users = (
    HashMap<String, User>,
    HashMap<Fqdn, String>,
    HashMap<Fqdn, std::net::Ipv6Addr>,
);

pub(super) fn compile_users(raw: Vec<RawUser>, zones: &[Zone]) -> Result<Users, ConfigError> {
    let zone_known = |n: &Fqdn| zones.iter().any(|z| n.is_within(&z.name));
    let mut users = HashMap::new();
    let mut host_owner: HashMap<Fqdn, String> = HashMap::new();
    let mut interface_ids = HashMap::new();
    for (i, u) in raw.into_iter().enumerate() {
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
        check_phc(&u.password_hash.0).map_err(|m| err(format!("{path}.password_hash"), m))?;
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
            if !zone_known(&fqdn) {
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
                cache_key: OnceLock::new(),
                password_hash: u.password_hash,
                hosts,
                zones: user_zones,
                active: u.active,
            },
        );
    }
    Ok((users, host_owner, interface_ids))
}

/// Tokens by the lower-case hex SHA-256 of the token.
pub(super) fn compile_tokens(
    raw: Vec<RawToken>,
    users: &HashMap<String, User>,
) -> Result<HashMap<String, Token>, ConfigError> {
    let mut tokens = HashMap::new();
    let mut token_ids = BTreeSet::new();
    for (i, t) in raw.into_iter().enumerate() {
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
                    if !user.owns(&fqdn) {
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
            .find_map(|(j, p)| p.host.as_ref().filter(|h| !user.owns(h)).map(|h| (j, h)))
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
    Ok(tokens)
}
