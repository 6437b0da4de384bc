//! A token's rules, deSEC's token policy model: the client networks it may be used from, a
//! maximum age, a maximum unused period, and per-host, per-record-type write policies. The same
//! rules for configured tokens (`tokens[]`, etcd) and runtime ones (`/api/tokens`).
//!
//! A leaf module (addresses and names only), so the configuration can compile rules without
//! depending on the request path.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::addr::Cidr;
use crate::names::Fqdn;

/// The record types a policy may name, as the backends spell them (`backends::RrType::as_str`).
pub const RECORD_TYPES: [&str; 3] = ["A", "AAAA", "TXT"];

/// A period: `"30d"`, `"12h"`, `"15m"`, `"3600s"` or a bare number of seconds; 1 s to 10 years.
pub fn duration_s(s: &str) -> Option<u64> {
    if let Ok(n) = s.parse::<u64>() {
        return Some(n).filter(|n| (1..=MAX_PERIOD_S).contains(n));
    }
    // By character, not byte: the last one may be multi-byte.
    let unit = s.chars().last()?;
    let n: u64 = s.strip_suffix(unit)?.parse().ok().filter(|n| *n > 0)?;
    let secs = match unit {
        'd' => n.checked_mul(86_400)?,
        'h' => n.checked_mul(3600)?,
        'm' => n.checked_mul(60)?,
        's' => n,
        _ => return None,
    };
    Some(secs).filter(|s| *s <= MAX_PERIOD_S)
}

/// Most subnets and policies one token may carry (the check runs on every request).
pub const MAX_RULE_ENTRIES: usize = 32;
/// Longest `max_age_s` / `max_unused_period_s`: ten years.
pub const MAX_PERIOD_S: u64 = 10 * 365 * 86_400;

/// A token's rules as written: in `tokens[]` of the configuration (and etcd), and in a
/// runtime token's record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawRules {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_subnets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unused_period_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<Vec<RawPolicy>>,
}

/// One write policy: the token may write these record types at this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// A host name; absent = every host the token may touch. Covers the host's
    /// `_acme-challenge.` name too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `A`, `AAAA`, `TXT`; absent = all three.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<String>>,
}

/// A compiled write policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    pub host: Option<Fqdn>,
    /// Entries of [`RECORD_TYPES`].
    pub types: BTreeSet<&'static str>,
}

impl Permission {
    fn covers_host(&self, name: &Fqdn) -> bool {
        self.host.as_ref().is_none_or(|h| {
            h == name
                || name
                    .as_str()
                    .strip_prefix(crate::dialects::acme::TXT_PREFIX)
                    .is_some_and(|rest| rest == h.as_str())
        })
    }
}

/// A token's rules, compiled. The default has none (a token without rules).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenRules {
    /// The client address must fall inside one of these; empty = anywhere.
    pub allowed_subnets: Vec<Cidr>,
    /// When the token was created (unix seconds), the start of `max_age_s`.
    pub created_s: Option<u64>,
    pub max_age_s: Option<u64>,
    pub max_unused_s: Option<u64>,
    /// `None` = every type at every host the token may touch.
    pub policies: Option<Vec<Permission>>,
}

/// A rule that refused a token, for the audit log (never in a reply: a token refused by its
/// rules answers like a wrong or an expired one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleRefusal {
    /// The client address is outside `allowed_subnets`.
    Subnet,
    /// Older than `max_age_s`.
    MaxAge,
    /// Not used for `max_unused_period_s`.
    Unused,
}

impl RuleRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleRefusal::Subnet => "client outside allowed_subnets",
            RuleRefusal::MaxAge => "older than max_age",
            RuleRefusal::Unused => "unused for max_unused_period",
        }
    }
}

/// A rule that does not compile: the field (relative to the token) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub field: String,
    pub message: String,
}

fn rule_err(field: impl Into<String>, message: impl Into<String>) -> RuleError {
    RuleError {
        field: field.into(),
        message: message.into(),
    }
}

/// `A`, `AAAA` or `TXT` (any case), as the entry of [`RECORD_TYPES`].
pub fn record_type(name: &str) -> Option<&'static str> {
    RECORD_TYPES
        .into_iter()
        .find(|t| t.eq_ignore_ascii_case(name))
}

fn period(field: &str, v: Option<u64>) -> Result<Option<u64>, RuleError> {
    match v {
        Some(s) if !(1..=MAX_PERIOD_S).contains(&s) => Err(rule_err(
            field,
            format!("must be 1..={MAX_PERIOD_S} seconds"),
        )),
        v => Ok(v),
    }
}

impl TokenRules {
    /// Checks and compiles `raw`; `created_s` is the token's creation (needed by `max_age_s`).
    pub fn compile(raw: &RawRules, created_s: Option<u64>) -> Result<TokenRules, RuleError> {
        if raw.allowed_subnets.len() > MAX_RULE_ENTRIES {
            return Err(rule_err(
                "allowed_subnets",
                format!("at most {MAX_RULE_ENTRIES} ranges"),
            ));
        }
        let mut allowed_subnets = Vec::new();
        for (i, c) in raw.allowed_subnets.iter().enumerate() {
            allowed_subnets.push(
                c.parse::<Cidr>()
                    .map_err(|e| rule_err(format!("allowed_subnets[{i}]"), e))?,
            );
        }
        let max_age_s = period("max_age_s", raw.max_age_s)?;
        if max_age_s.is_some() && created_s.is_none() {
            return Err(rule_err(
                "max_age_s",
                "needs the token's creation time (created_s)",
            ));
        }
        let max_unused_s = period("max_unused_period_s", raw.max_unused_period_s)?;
        let policies = match &raw.policies {
            None => None,
            Some(list) if list.is_empty() => {
                return Err(rule_err(
                    "policies",
                    "must not be empty (absent = every host and type)",
                ))
            }
            Some(list) if list.len() > MAX_RULE_ENTRIES => {
                return Err(rule_err(
                    "policies",
                    format!("at most {MAX_RULE_ENTRIES} policies"),
                ))
            }
            Some(list) => {
                let mut out = Vec::new();
                for (i, p) in list.iter().enumerate() {
                    let host = p
                        .host
                        .as_deref()
                        .map(Fqdn::parse)
                        .transpose()
                        .map_err(|e| rule_err(format!("policies[{i}].host"), e.to_string()))?;
                    let types = match &p.types {
                        None => RECORD_TYPES.into_iter().collect(),
                        Some(ts) if ts.is_empty() => {
                            return Err(rule_err(
                                format!("policies[{i}].types"),
                                "must not be empty (absent = A, AAAA and TXT)",
                            ))
                        }
                        Some(ts) => {
                            let mut set = BTreeSet::new();
                            for (j, t) in ts.iter().enumerate() {
                                set.insert(record_type(t).ok_or_else(|| {
                                    rule_err(
                                        format!("policies[{i}].types[{j}]"),
                                        format!("unknown record type '{t}' (A, AAAA, TXT)"),
                                    )
                                })?);
                            }
                            set
                        }
                    };
                    out.push(Permission { host, types });
                }
                Some(out)
            }
        };
        Ok(TokenRules {
            allowed_subnets,
            created_s,
            max_age_s,
            max_unused_s,
            policies,
        })
    }

    /// Back to the written form (listing, regeneration).
    pub fn to_raw(&self) -> RawRules {
        RawRules {
            allowed_subnets: self.allowed_subnets.iter().map(Cidr::to_string).collect(),
            max_age_s: self.max_age_s,
            max_unused_period_s: self.max_unused_s,
            policies: self.policies.as_ref().map(|ps| {
                ps.iter()
                    .map(|p| RawPolicy {
                        host: p.host.as_ref().map(Fqdn::to_string),
                        types: Some(p.types.iter().map(|t| t.to_string()).collect()),
                    })
                    .collect()
            }),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.allowed_subnets.is_empty()
            && self.max_age_s.is_none()
            && self.max_unused_s.is_none()
            && self.policies.is_none()
    }

    /// May the token be used now, from `client`? `last_used_s` is the token's last recorded use;
    /// when there is none, the unused period runs from `created_s` if `fresh_store` (the
    /// record and its uses live in the same store, so no use recorded = never used), and is
    /// not checked otherwise (a configured token outlives the gateway's memory of its uses).
    pub fn check(
        &self,
        client: Option<IpAddr>,
        now_s: u64,
        last_used_s: Option<u64>,
        fresh_store: bool,
    ) -> Result<(), RuleRefusal> {
        if !self.allowed_subnets.is_empty() {
            let inside = client.is_some_and(|ip| {
                let ip = ip.to_canonical();
                self.allowed_subnets.iter().any(|c| c.contains(ip))
            });
            if !inside {
                return Err(RuleRefusal::Subnet);
            }
        }
        if let (Some(max), Some(created)) = (self.max_age_s, self.created_s) {
            if created.saturating_add(max) <= now_s {
                return Err(RuleRefusal::MaxAge);
            }
        }
        if let Some(max) = self.max_unused_s {
            let since = last_used_s.or(self.created_s.filter(|_| fresh_store));
            if since.is_some_and(|s| s.saturating_add(max) <= now_s) {
                return Err(RuleRefusal::Unused);
            }
        }
        Ok(())
    }

    /// When the token stops working by age (unix seconds).
    pub fn max_age_end_s(&self) -> Option<u64> {
        Some(self.created_s?.saturating_add(self.max_age_s?))
    }

    /// How stale the recorded last use may get: a minute, or less for a shorter unused period,
    /// so a token in use is never refused for the recording's coarseness.
    pub fn touch_interval_s(&self) -> u64 {
        self.max_unused_s.map_or(60, |m| (m / 4).clamp(1, 60))
    }

    /// Is `name` (or the host of an `_acme-challenge.` name) covered by some policy?
    pub fn permits_host(&self, name: &Fqdn) -> bool {
        self.policies
            .as_ref()
            .is_none_or(|ps| ps.iter().any(|p| p.covers_host(name)))
    }

    /// May the token write `rtype` at `name`?
    pub fn permits(&self, name: &Fqdn, rtype: &str) -> bool {
        self.policies.as_ref().is_none_or(|ps| {
            ps.iter()
                .any(|p| p.types.contains(rtype) && p.covers_host(name))
        })
    }

    /// Is every use `self` allows also allowed by `outer` (a token minting another)?
    /// `Err` names the field that grants more.
    pub fn within(&self, outer: &TokenRules) -> Result<(), &'static str> {
        if !outer.allowed_subnets.is_empty()
            && (self.allowed_subnets.is_empty()
                || !self
                    .allowed_subnets
                    .iter()
                    .all(|c| outer.allowed_subnets.iter().any(|o| c.within(o))))
        {
            return Err("allowed_subnets");
        }
        if let Some(outer_policies) = &outer.policies {
            let covered = self.policies.as_ref().is_some_and(|ps| {
                ps.iter().all(|p| {
                    p.types.iter().all(|t| {
                        outer_policies.iter().any(|o| {
                            o.types.contains(t)
                                && match (&o.host, &p.host) {
                                    (None, _) => true,
                                    (Some(oh), Some(ph)) => oh == ph,
                                    (Some(_), None) => false,
                                }
                        })
                    })
                })
            });
            if !covered {
                return Err("policies");
            }
        }
        if outer
            .max_unused_s
            .is_some_and(|o| self.max_unused_s.is_none_or(|s| s > o))
        {
            return Err("max_unused_period");
        }
        Ok(())
    }
}

/// The rules a request to `/api/tokens` gives, with the caller's rules as the default for
/// what it leaves out (a token never mints a wider one).
pub fn inherit(given: RawRules, caller: Option<&TokenRules>) -> RawRules {
    let Some(c) = caller else {
        return given;
    };
    let c = c.to_raw();
    RawRules {
        allowed_subnets: if given.allowed_subnets.is_empty() {
            c.allowed_subnets
        } else {
            given.allowed_subnets
        },
        max_age_s: given.max_age_s,
        max_unused_period_s: given.max_unused_period_s.or(c.max_unused_period_s),
        policies: given.policies.or(c.policies),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rules(v: serde_json::Value, created_s: Option<u64>) -> TokenRules {
        TokenRules::compile(&serde_json::from_value(v).unwrap(), created_s).unwrap()
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn the_record_types_are_the_backends_names() {
        use crate::backends::RrType;
        let names: Vec<&str> = [RrType::A, RrType::Aaaa, RrType::Txt]
            .into_iter()
            .map(RrType::as_str)
            .collect();
        assert_eq!(names, RECORD_TYPES);
        assert_eq!(record_type("aaaa"), Some("AAAA"));
        assert_eq!(record_type("MX"), None);
    }

    #[test]
    fn allowed_subnets_hold_for_ipv4_and_ipv6_and_mapped_addresses() {
        let r = rules(
            serde_json::json!({"allowed_subnets": ["192.0.2.0/24", "2001:db8:1::/48"]}),
            None,
        );
        assert_eq!(r.check(ip("192.0.2.77"), 0, None, true), Ok(()));
        assert_eq!(r.check(ip("::ffff:192.0.2.77"), 0, None, true), Ok(()));
        assert_eq!(r.check(ip("2001:db8:1:ff::9"), 0, None, true), Ok(()));
        for outside in ["192.0.3.1", "2001:db8:2::1", "::ffff:198.51.100.1"] {
            assert_eq!(
                r.check(ip(outside), 0, None, true),
                Err(RuleRefusal::Subnet),
                "{outside}"
            );
        }
        assert_eq!(r.check(None, 0, None, true), Err(RuleRefusal::Subnet));
        assert_eq!(TokenRules::default().check(None, 0, None, true), Ok(()));
    }

    #[test]
    fn max_age_counts_from_creation() {
        let r = rules(serde_json::json!({"max_age_s": 100}), Some(1000));
        assert_eq!(r.check(None, 1099, None, true), Ok(()));
        assert_eq!(
            r.check(None, 1100, Some(1099), true),
            Err(RuleRefusal::MaxAge)
        );
        let e = TokenRules::compile(
            &RawRules {
                max_age_s: Some(100),
                ..RawRules::default()
            },
            None,
        )
        .unwrap_err();
        assert_eq!(e.field, "max_age_s");
    }

    #[test]
    fn max_unused_period_counts_from_the_last_use_or_creation() {
        let r = rules(serde_json::json!({"max_unused_period_s": 60}), Some(1000));
        assert_eq!(r.check(None, 1059, None, true), Ok(()));
        assert_eq!(r.check(None, 1060, None, true), Err(RuleRefusal::Unused));
        assert_eq!(r.check(None, 5000, Some(4950), true), Ok(()));
        assert_eq!(
            r.check(None, 5010, Some(4950), true),
            Err(RuleRefusal::Unused)
        );
        // A configured token: no recorded use is no evidence of disuse.
        assert_eq!(r.check(None, 5010, None, false), Ok(()));
        assert_eq!(r.touch_interval_s(), 15);
        assert_eq!(TokenRules::default().touch_interval_s(), 60);
    }

    #[test]
    fn policies_grant_types_per_host_and_cover_the_acme_name() {
        let r = rules(
            serde_json::json!({"policies": [
                {"host": "home.dyn.example.test", "types": ["AAAA", "txt"]},
                {"host": "office.dyn.example.test", "types": ["A"]},
            ]}),
            None,
        );
        let home = Fqdn::parse("home.dyn.example.test").unwrap();
        let office = Fqdn::parse("office.dyn.example.test").unwrap();
        let acme = Fqdn::parse_service("_acme-challenge.home.dyn.example.test").unwrap();
        let other = Fqdn::parse("neighbour.dyn.example.test").unwrap();
        assert!(r.permits(&home, "AAAA"));
        assert!(!r.permits(&home, "A"));
        assert!(r.permits(&acme, "TXT"));
        assert!(r.permits(&office, "A"));
        assert!(!r.permits(&office, "AAAA"));
        assert!(r.permits_host(&home) && r.permits_host(&acme) && !r.permits_host(&other));
        let any_host = rules(serde_json::json!({"policies": [{"types": ["AAAA"]}]}), None);
        assert!(any_host.permits(&other, "AAAA") && !any_host.permits(&other, "A"));
    }

    #[test]
    fn bad_rules_name_their_field() {
        for (v, field) in [
            (
                serde_json::json!({"allowed_subnets": ["192.0.2.0/33"]}),
                "allowed_subnets[0]",
            ),
            (
                serde_json::json!({"allowed_subnets": ["::1", "x"]}),
                "allowed_subnets[1]",
            ),
            (
                serde_json::json!({"max_unused_period_s": 0}),
                "max_unused_period_s",
            ),
            (serde_json::json!({"policies": []}), "policies"),
            (
                serde_json::json!({"policies": [{"types": ["MX"]}]}),
                "policies[0].types[0]",
            ),
            (
                serde_json::json!({"policies": [{"host": "a..b"}]}),
                "policies[0].host",
            ),
            (
                serde_json::json!({"policies": [{"types": []}]}),
                "policies[0].types",
            ),
        ] {
            let raw: RawRules = serde_json::from_value(v.clone()).unwrap();
            assert_eq!(
                TokenRules::compile(&raw, Some(0)).unwrap_err().field,
                field,
                "{v}"
            );
        }
    }

    #[test]
    fn a_minted_token_stays_within_its_minter() {
        let outer = rules(
            serde_json::json!({"allowed_subnets": ["2001:db8::/32"],
                               "policies": [{"host": "home.dyn.example.test", "types": ["AAAA"]}]}),
            None,
        );
        let inner = rules(
            serde_json::json!({"allowed_subnets": ["2001:db8:5::/48"],
                               "policies": [{"host": "home.dyn.example.test", "types": ["AAAA"]}]}),
            None,
        );
        assert_eq!(inner.within(&outer), Ok(()));
        let wider = rules(
            serde_json::json!({"allowed_subnets": ["2001:db8::/16"],
                               "policies": [{"host": "home.dyn.example.test", "types": ["AAAA"]}]}),
            None,
        );
        assert_eq!(wider.within(&outer), Err("allowed_subnets"));
        let more_types = rules(
            serde_json::json!({"allowed_subnets": ["2001:db8::/32"],
                               "policies": [{"host": "home.dyn.example.test"}]}),
            None,
        );
        assert_eq!(more_types.within(&outer), Err("policies"));
        let inherited =
            TokenRules::compile(&inherit(RawRules::default(), Some(&outer)), None).unwrap();
        assert_eq!(inherited.within(&outer), Ok(()));
    }
}
