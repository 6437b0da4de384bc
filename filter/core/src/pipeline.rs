//! The guard pipeline: the one way from a request's credentials to an update job.
//!
//! A dialect parses its wire format, says how the request *presents* credentials
//! ([`Credentials`]) and which scope it needs, and calls [`authorize`]. The ladder, in order:
//!
//! 1. **client refusal**: the client's failure and request windows, and those of the user it
//!    claims if that user exists (`limits::refuse_client`), before any Argon2 work;
//! 2. **store**: while the etcd credential snapshot is missing or stale nothing is verified and
//!    every presented credential is answered alike ([`Denied::Unavailable`], not counted);
//! 3. **authentication**: `auth::authenticate` (a token's rules included: its client subnets,
//!    maximum age and unused period, `tokens::TokenRules`), or a registered acme-dns account;
//! 4. **counting**: a failure counts against the client's network, and against the user (and the
//!    user on this network) only if the user exists; a success marks the client's network as
//!    known to the user (`limits::mark_known`);
//! 5. **scope**: the scope the route needs (lacking it counts as a failure);
//! 6. **ownership and host limits**, per target, when the job is made (`Authorized::admit`): a
//!    target the identity may not update (or a record type a token's policies do not grant
//!    there) becomes `nohost`, repeats of one target are written
//!    once and answered for each input, a host over `good_per_host` is `abuse`, and the job counts
//!    against the client's and each host's good windows.
//!
//! Only this module constructs an [`Authorized`] (its fields are private) and [`Job::new`] takes
//! one, so no dialect can plan a job without passing the ladder. The expiry sweep, which has no
//! request, gets its own `Authorized::sweep`. Routes with no credentials by design take a
//! [`Public`] marker; new credentials (tokens, acme-dns accounts) pass [`mint`].
//!
//! [`Job::new`]: crate::job::Job::new

use std::collections::BTreeSet;
use std::net::IpAddr;

pub(crate) use crate::auth::AuthError;
use crate::auth::{self, Identity, Presented};
use crate::backends::RrType;
use crate::config::{Config, Scope, Zone};
use crate::exchange::Env;
use crate::job::{Edit, HostJob};
use crate::kv::KvWrite;
use crate::limits::{self, KvCount};
pub(crate) use crate::limits::{Limit, RateState};
use crate::names::Fqdn;
use crate::reply::Code;
use crate::request::Request;

/// How a request presents credentials.
pub enum Credentials {
    /// A password, token or secret (`credentials::presented`), or nothing.
    Presented(Presented),
    /// A registered acme-dns account: `X-Api-User` (a UUID) and `X-Api-Key`.
    AcmeAccount { user: String, key: String },
}

impl From<Presented> for Credentials {
    fn from(p: Presented) -> Self {
        Credentials::Presented(p)
    }
}

/// Why the pipeline refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// Over a rate limit; nothing was verified. Retry after this many seconds.
    Limited { retry_after_s: u64 },
    /// No credentials presented.
    Missing,
    /// Wrong, unknown, revoked or expired credentials, or lacking the route's scope.
    Bad(AuthError),
    /// The credential store cannot tell right from wrong (etcd snapshot stale).
    Unavailable,
}

/// A refusal and what it counts against (apply with the reply).
#[derive(Debug)]
pub struct Refused {
    pub denied: Denied,
    pub counts: Vec<KvCount>,
    /// Audit lines (JSON, no secrets) for the outcome's log: why a token's rules refused it.
    pub log: Vec<String>,
}

impl Refused {
    /// The metrics of this refusal for `dialect` (`metrics::refused`). A request without
    /// credentials is a challenge (most clients send one before their password), not counted.
    pub fn counters(&self, dialect: &str) -> Vec<String> {
        let code = match self.denied {
            Denied::Missing => return vec![],
            Denied::Limited { .. } => Code::Abuse,
            Denied::Bad(_) => Code::Badauth,
            Denied::Unavailable => Code::Emergency,
        };
        crate::metrics::refused(dialect, code)
    }

    fn plain(denied: Denied) -> Refused {
        Refused {
            denied,
            counts: vec![],
            log: vec![],
        }
    }
}

/// The audit line of a token its rules refused: the token's id (never the token), the rule, the
/// client. The reply itself does not say which rule.
fn token_refusal_line(
    token_id: &str,
    why: crate::token_rules::RuleRefusal,
    client: Option<IpAddr>,
    env: &Env,
) -> String {
    serde_json::json!({
        "event": "dynedge.token_refused",
        "reason": why.as_str(),
        "source": client,
        "token_id": token_id,
        "ts_ms": env.now_ms,
    })
    .to_string()
}

/// What an identity may touch.
#[derive(Debug, Clone)]
enum Grants {
    /// The user's hosts and zones, within a token's restriction (`auth::may_update`), and the
    /// `_acme-challenge.` names below them.
    Owner,
    /// Exactly these names (an acme-dns account's record).
    Names(BTreeSet<Fqdn>),
    /// Every configured name (the expiry sweep).
    Sweep,
}

/// An identity that passed the ladder. Only this module constructs one.
#[derive(Debug)]
pub struct Authorized {
    identity: Identity,
    grants: Grants,
    writes: Vec<KvWrite>,
    client: Option<IpAddr>,
}

/// What [`Authorized::admit`] hands the job.
pub(crate) struct Admitted {
    pub identity: Identity,
    pub writes: Vec<KvWrite>,
    pub counts: Vec<KvCount>,
}

/// Why a name is not a target of this identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostDenied {
    /// Not in a configured zone, or not the user's: one answer for both.
    NotOwned,
    /// The user's, but the token is restricted to other hosts.
    TokenRestricted,
}

/// A route that has no credentials by design (checkip, health, protocol info).
pub struct Public(());

/// A protocol's own request window (ApertoDNS's `X-RateLimit-*`): counted here with every
/// other limit, so a dialect names its bucket, subject and limit but never the limiter.
pub(crate) fn window(env: &Env, bucket: &str, subject: &str, limit: Limit) -> RateState {
    limits::window_state(
        env.kv,
        limits::window_key(bucket, subject),
        limit,
        env.now_s(),
    )
}

pub fn public() -> Public {
    Public(())
}

fn stale(cfg: &Config, env: &Env) -> bool {
    cfg.store
        .etcd()
        .is_some_and(|s| crate::store::etcd::is_stale(s, env.kv, env.now_ms))
}

/// Runs the ladder (steps 1-5) for a request presenting `creds`.
pub fn authorize(
    cfg: &Config,
    req: &Request,
    env: &Env,
    creds: Credentials,
    need: Option<Scope>,
) -> Result<Authorized, Refused> {
    let client = req.client_ip(&cfg.trusted_proxies);
    let rl = &cfg.rate_limits;
    let now_s = env.now_s();
    // The user counted against: only one that exists, so made-up names cost nothing to store.
    let (claimed, account) = match &creds {
        Credentials::Presented(p) => (
            p.user()
                .filter(|u| cfg.users.contains_key(*u))
                .map(str::to_string),
            None,
        ),
        Credentials::AcmeAccount { user, .. } => {
            let account = crate::dialects::acmedns::lookup(env.kv, user);
            (
                account.as_ref().map(|_| format!("acme-dns:{user}")),
                account,
            )
        }
    };
    if let Some(retry_after_s) = limits::refused_for(rl, env.kv, client, claimed.as_deref(), now_s)
    {
        return Err(Refused::plain(Denied::Limited { retry_after_s }));
    }
    if matches!(creds, Credentials::Presented(Presented::None)) {
        return Err(Refused::plain(Denied::Missing));
    }
    if stale(cfg, env) {
        return Err(Refused::plain(Denied::Unavailable));
    }
    let bad = |e: AuthError| Refused {
        denied: Denied::Bad(e),
        counts: limits::count_bad(rl, client, claimed.as_deref()),
        log: vec![],
    };
    let (identity, grants, mut writes) = match creds {
        Credentials::Presented(p) => {
            let out = auth::authenticate(cfg, &p, env.kv, client, now_s);
            match out.result {
                Ok(id) => (id, Grants::Owner, out.writes),
                Err(e) => {
                    let mut r = bad(e);
                    r.log
                        .extend(out.refusal.map(|(why, token_id)| {
                            token_refusal_line(&token_id, why, client, env)
                        }));
                    return Err(r);
                }
            }
        }
        Credentials::AcmeAccount { user, key } => {
            match account.and_then(|a| acme_account(cfg, env, &user, &key, client, a)) {
                Some(x) => x,
                None => return Err(bad(AuthError::Bad)),
            }
        }
    };
    if need.is_some_and(|s| !identity.scopes.contains(&s)) {
        return Err(bad(AuthError::Bad));
    }
    writes.extend(limits::mark_known(
        rl,
        env.kv,
        &identity.user,
        client,
        now_s,
    ));
    Ok(Authorized {
        identity,
        grants,
        writes,
        client,
    })
}

/// A registered acme-dns account: key, then `allowfrom` (acme-dns's order).
fn acme_account(
    cfg: &Config,
    env: &Env,
    user: &str,
    key: &str,
    client: Option<IpAddr>,
    account: crate::dialects::acmedns::Account,
) -> Option<(Identity, Grants, Vec<KvWrite>)> {
    use crate::dialects::acmedns;
    let s = cfg.acme_dns.as_ref()?;
    if !acmedns::token_chars(key, acmedns::PASSWORD_LEN) {
        return None;
    }
    let who = format!("acme-dns:{user}");
    let mac = auth::CacheMac::new(&account.password_hash);
    let writes = auth::verify_cached(
        cfg,
        &who,
        &account.password_hash,
        &mac,
        key,
        env.kv,
        env.now_s(),
    )?;
    let ranges: Vec<crate::addr::Cidr> = account
        .allowfrom
        .iter()
        .filter_map(|c| c.parse().ok())
        .collect();
    if !ranges.is_empty() && !client.is_some_and(|ip| ranges.iter().any(|r| r.contains(ip))) {
        return None;
    }
    let name = Fqdn::parse(&format!("{}.{}", account.subdomain, s.zone)).ok()?;
    let names = BTreeSet::from([name]);
    let identity = Identity {
        user: who,
        token_id: None,
        scopes: BTreeSet::from([Scope::Txt]),
        only_hosts: Some(names.clone()),
        rules: crate::token_rules::TokenRules::default(),
    };
    Some((identity, Grants::Names(names), writes))
}

/// New credentials (`POST /api/tokens`, regeneration, acme-dns `/register`): the client's
/// `mint_per_client` window. `Ok` carries the count to apply with the reply.
pub fn mint(cfg: &Config, req: &Request, env: &Env) -> Result<Vec<KvCount>, Refused> {
    let client = req.client_ip(&cfg.trusted_proxies);
    limits::mint(&cfg.rate_limits, env.kv, client, env.now_s()).ok_or(Refused::plain(
        Denied::Limited {
            retry_after_s: cfg.rate_limits.mint_per_client.window_s,
        },
    ))
}

/// The one address family a target changes (A or AAAA only), for dual-stack pairing.
fn one_family(t: &crate::job::Target) -> Option<limits::Family> {
    let mut types = t
        .want
        .iter()
        .map(|(ty, _)| *ty)
        .chain(t.edits.iter().map(|(ty, _)| *ty));
    let first = types.next()?;
    if types.any(|ty| ty != first) {
        return None;
    }
    match first {
        RrType::A => Some(limits::Family::V4),
        RrType::Aaaa => Some(limits::Family::V6),
        RrType::Txt => None,
    }
}

fn is_write(t: &crate::job::Target) -> bool {
    !t.want.is_empty() || t.edits.iter().any(|(_, e)| *e != Edit::Keep)
}

/// The record types a target writes (reads, `Edit::Keep`, need only the host).
fn written_types(t: &crate::job::Target) -> impl Iterator<Item = RrType> + '_ {
    t.want.iter().map(|(ty, _)| *ty).chain(
        t.edits
            .iter()
            .filter(|(_, e)| *e != Edit::Keep)
            .map(|(ty, _)| *ty),
    )
}

impl Authorized {
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub fn has(&self, scope: Scope) -> bool {
        self.identity.scopes.contains(&scope)
    }

    /// The writes authentication asked for (cache entry, known-client marker), for a reply
    /// that ends before a job.
    pub fn writes(&self) -> Vec<KvWrite> {
        self.writes.clone()
    }

    /// The expiry sweep's identity: no request, every configured name, nothing counted.
    pub(crate) fn sweep() -> Authorized {
        Authorized {
            identity: Identity {
                user: "(expiry)".into(),
                token_id: None,
                scopes: BTreeSet::new(),
                only_hosts: None,
                rules: crate::token_rules::TokenRules::default(),
            },
            grants: Grants::Sweep,
            writes: vec![],
            client: None,
        }
    }

    /// Ownership of one name (step 6): its zone, or why not.
    pub fn host<'c>(&self, cfg: &'c Config, name: &Fqdn) -> Result<&'c Zone, HostDenied> {
        let zone = cfg.zone_of(name).ok_or(HostDenied::NotOwned)?;
        if self.may_target(cfg, name) {
            return Ok(zone);
        }
        let user_owns = cfg
            .users
            .get(&self.identity.user)
            .is_some_and(|u| u.owns(name));
        Err(if user_owns && matches!(self.grants, Grants::Owner) {
            HostDenied::TokenRestricted
        } else {
            HostDenied::NotOwned
        })
    }

    /// May this identity update `name` (or, for `_acme-challenge.{host}`, `host`)?
    pub fn may_target(&self, cfg: &Config, name: &Fqdn) -> bool {
        match &self.grants {
            Grants::Sweep => true,
            Grants::Names(names) => names.contains(name),
            Grants::Owner => {
                auth::may_update(cfg, &self.identity, name)
                    || name
                        .as_str()
                        .strip_prefix(crate::dialects::acme::TXT_PREFIX)
                        .and_then(|h| Fqdn::parse(h).ok())
                        .is_some_and(|h| auth::may_update(cfg, &self.identity, &h))
            }
        }
    }

    /// Step 6 over a planned job's hosts: ownership again for every target, one write per
    /// distinct target (repeats answered alike), `good_per_host`, and the good counts.
    pub(crate) fn admit(self, cfg: &Config, hosts: &mut [HostJob], env: &Env) -> Admitted {
        let rl = &cfg.rate_limits;
        let sweep = matches!(self.grants, Grants::Sweep);
        let mut writes_planned = false;
        let mut written: Vec<String> = Vec::new();
        let mut paired: Vec<String> = Vec::new();
        let mut marks: Vec<KvWrite> = Vec::new();
        for i in 0..hosts.len() {
            let Some((before, rest)) = hosts.split_at_mut_checked(i) else {
                continue;
            };
            let Some(h) = rest.first_mut() else {
                continue;
            };
            let Some(t) = h.target.as_ref().filter(|_| h.code.is_none()) else {
                continue;
            };
            if !self.may_target(cfg, &t.name)
                || !written_types(t).all(|ty| auth::may_write(&self.identity, &t.name, ty))
            {
                *h = HostJob::decided(h.label.clone(), Code::Nohost);
                continue;
            }
            let same = before.iter().position(|o| {
                o.target.as_ref().is_some_and(|o| {
                    o.name == t.name && o.ttl == t.ttl && o.want == t.want && o.edits == t.edits
                })
            });
            if let Some(first) = same {
                h.mirror(first);
                continue;
            }
            if sweep || !is_write(t) {
                continue;
            }
            writes_planned = true;
            let name = t.name.to_string();
            let family = one_family(t);
            if family.is_some_and(|f| {
                !paired.contains(&name)
                    && limits::completes_dual_stack(rl, env.kv, &name, f, env.now_s())
            }) {
                marks.extend(limits::mark_family(rl, &name, None, env.now_s()));
                paired.push(name);
                continue;
            }
            let pending =
                u32::try_from(written.iter().filter(|n| **n == name).count()).unwrap_or(u32::MAX);
            if limits::refuse_host(rl, env.kv, &name, pending, env.now_s()) {
                *h = HostJob::decided(h.label.clone(), Code::Abuse);
                continue;
            }
            if let Some(f) = family {
                marks.extend(limits::mark_family(rl, &name, Some(f), env.now_s()));
            }
            written.push(name);
        }
        let counts = if sweep || !writes_planned {
            vec![]
        } else {
            limits::count_good(rl, self.client, written.iter().map(String::as_str))
        };
        let mut writes = self.writes;
        writes.extend(marks);
        Admitted {
            identity: self.identity,
            writes,
            counts,
        }
    }
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;
