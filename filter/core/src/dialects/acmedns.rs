//! The acme-dns API (joohoi/acme-dns): `POST /register`, `POST /update`, `GET /health`, so that
//! every ACME client with an acme-dns plugin (lego, cert-manager, Traefik, Caddy, certbot
//! plugins) writes its DNS-01 TXT records through the gateway unchanged.
//!
//! Where it is served (docs/acme.md): under a prefix, `/acme-dns` by default
//! (`/acme-dns/register`, `/acme-dns/update`, `/acme-dns/health`), and, unless `root_paths` is
//! off, at acme-dns's own root paths: `POST /register`, and `POST /update` **with an
//! `X-Api-User` header** (without it `/update` stays the DynDNS2 alias); `/health` at the root is
//! dynedge's own health reply, which answers 200 as acme-dns's does.
//!
//! Semantics kept from acme-dns: `/register` answers 201 with `username`, `password` (40
//! characters), `fulldomain`, `subdomain` (UUIDs) and the accepted `allowfrom` ranges;
//! `/update` needs `X-Api-User`/`X-Api-Key`, refuses anything wrong about the caller (unknown
//! user, wrong key, address outside `allowfrom`, another subdomain, an unreadable body) with 401
//! `{"error": "forbidden"}`, a value that is not a 43-character token with 400 `bad_txt`, and
//! keeps the last two values at the name, so a wildcard and its apex validate together. JSON keys
//! are matched case-insensitively (lego's client sends `SubDomain`/`Txt`).
//!
//! What dynedge adds: the registration's password is stored as an Argon2id PHC string in the
//! shared KV and verified by the same code (and cache) as every other password; the TXT record
//! lives at `{subdomain}.{acme_dns.zone}`, a name inside one of the gateway's zones, written
//! through that zone's backend. A configured user (or API token) may also call `/update` with
//! `X-Api-User: {user}`, `X-Api-Key: {password or token}` and `"subdomain": "{a host they own}"`:
//! the value then goes to `_acme-challenge.{host}` directly, with no CNAME and no registration.

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::Argon2;
use base64::Engine;
use serde_json::{json, Map, Value};

use crate::addr::Cidr;
use crate::backends::RrType;
use crate::config::{Config, Scope};
use crate::credentials::{self, Presented};
use crate::dialects::acme::{self, DEFAULT_TXT_TTL};
use crate::dialects::Render;
use crate::dialects::Start;
use crate::exchange::{Env, Outcome};
use crate::job::{HostJob, HostOutcome, Job, Target};
use crate::kv::KvCount;
use crate::kv::{keys, KvWrite};
use crate::names::Fqdn;
use crate::pipeline::{self, Authorized, Credentials, Denied, Refused};
use crate::reply::{Code, ErrorCode, Reply};
use crate::request::Request;

mod account;
mod settings;
pub use account::{lookup, token_chars, Account, PASSWORD_LEN};
pub use settings::{AcmeDnsSettings, RawAcmeDns, Registration};

/// acme-dns keeps this many values per name (a wildcard and its apex share one name).
pub const KEPT_VALUES: usize = 2;
/// The length of an ACME DNS-01 value (base64url of a SHA-256 digest), all acme-dns accepts.
pub const TXT_LEN: usize = 43;

// ------------------------------------------------------------------ routing

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Register,
    Update,
    Health,
}

/// The acme-dns endpoint a request is for, if any (see the module docs for the root paths).
pub fn route(cfg: &Config, req: &Request) -> Option<Endpoint> {
    let s = cfg.acme_dns.as_ref()?;
    let path = req.path_only();
    if let Some(rest) = path.strip_prefix(s.prefix.as_str()) {
        return match rest {
            "/register" => Some(Endpoint::Register),
            "/update" => Some(Endpoint::Update),
            "/health" => Some(Endpoint::Health),
            _ => None,
        };
    }
    if !s.root_paths || req.method != "POST" {
        return None;
    }
    match path {
        "/register" => Some(Endpoint::Register),
        "/update" if req.header("x-api-user").is_some() => Some(Endpoint::Update),
        _ => None,
    }
}

fn error(status: u16, name: ErrorCode) -> Reply {
    Reply::json(status, &json!({ "error": name }))
}

fn done(reply: Reply, writes: Vec<KvWrite>, counts: Vec<KvCount>, log: Vec<String>) -> Start {
    Start::Reply(Outcome {
        reply: Some(reply),
        writes,
        counts,
        log,
        ..Outcome::default()
    })
}

fn reply_only(reply: Reply) -> Start {
    done(reply, vec![], vec![], vec![])
}

pub fn handle(cfg: &Config, req: &Request, ep: Endpoint, env: &Env) -> Start {
    let Some(s) = cfg.acme_dns.as_ref() else {
        return reply_only(error(404, ErrorCode::NotFound));
    };
    let allow = if ep == Endpoint::Health {
        "GET"
    } else {
        "POST"
    };
    if req.method != allow {
        return reply_only(error(405, ErrorCode::MethodNotAllowed).with_header("allow", allow));
    }
    match ep {
        Endpoint::Health => reply_only(Reply::new(200, "application/json", Vec::new())),
        Endpoint::Register => register(cfg, s, req, env),
        Endpoint::Update => update(cfg, s, req, env),
    }
}

// ------------------------------------------------------------------ accounts

/// A version-4 UUID from 16 random bytes, lower-case hex as acme-dns prints it.
fn uuid4(bytes: &[u8]) -> String {
    let mut b = [0u8; 16];
    for (d, s) in b.iter_mut().zip(bytes) {
        *d = *s;
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = crate::hex::hex(&b);
    let part = |r: std::ops::Range<usize>| h.get(r).unwrap_or_default();
    format!(
        "{}-{}-{}-{}-{}",
        part(0..8),
        part(8..12),
        part(12..16),
        part(16..20),
        part(20..32)
    )
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// `allowfrom` as acme-dns reads it: CIDR ranges (brackets around IPv6 tolerated).
fn parse_allowfrom(v: Option<&Value>) -> Result<Vec<Cidr>, ErrorCode> {
    let list = match v {
        None | Some(Value::Null) => return Ok(vec![]),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(ErrorCode::MalformedJsonPayload),
    };
    list.iter()
        .map(|item| {
            let s = item.as_str().ok_or(ErrorCode::MalformedJsonPayload)?;
            let s: String = s.chars().filter(|c| *c != '[' && *c != ']').collect();
            if !s.contains('/') {
                return Err(ErrorCode::InvalidAllowfromCidr);
            }
            s.trim()
                .parse()
                .map_err(|_| ErrorCode::InvalidAllowfromCidr)
        })
        .collect()
}

/// A JSON object's member by case-insensitive key (Go's encoding/json matches keys that way).
fn member<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn register(cfg: &Config, s: &AcmeDnsSettings, req: &Request, env: &Env) -> Start {
    if s.registration == Registration::Closed {
        return reply_only(error(404, ErrorCode::RegistrationDisabled));
    }
    let client = req.client_ip(&cfg.trusted_proxies);
    let mut writes = Vec::new();
    let owner = if s.registration == Registration::Token {
        let presented = credentials::presented(req.header("authorization"), None, None);
        match pipeline::authorize(cfg, req, env, presented.into(), Some(Scope::Txt)) {
            Ok(a) => {
                writes.extend(a.writes());
                Some(a.identity().user.clone())
            }
            Err(r) => return refused(r),
        }
    } else {
        None
    };
    // Every registration stores an account: at most `mint_per_client` per client and window.
    let counts = match pipeline::mint(cfg, req, env) {
        Ok(c) => c,
        Err(r) => return refused(r),
    };
    let allowfrom = if req.body.iter().all(u8::is_ascii_whitespace) {
        vec![]
    } else {
        let parsed = serde_json::from_slice::<Value>(&req.body);
        let Ok(Value::Object(obj)) = parsed else {
            return reply_only(error(400, ErrorCode::MalformedJsonPayload));
        };
        match parse_allowfrom(member(&obj, "allowfrom")) {
            Ok(list) => list,
            Err(code) => return reply_only(error(400, code)),
        }
    };
    let Some(key) = cfg.apertodns.token_key.as_ref() else {
        return reply_only(error(500, ErrorCode::RegistrationUnavailable));
    };
    let key = key.0.as_bytes();
    let draw = |salt: &str| crate::tokens::random_bytes(key, (env.random, env.now_ms), salt);
    let (Some(u), Some(p), Some(sub), Some(salt)) = (
        draw("acme-dns:username"),
        draw("acme-dns:password"),
        draw("acme-dns:subdomain"),
        draw("acme-dns:salt"),
    ) else {
        return reply_only(error(500, ErrorCode::RegistrationUnavailable));
    };
    let username = uuid4(&u);
    let subdomain = uuid4(&sub);
    // 30 bytes are exactly 40 base64url characters: acme-dns's key alphabet and length.
    let password = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&p[..30]);
    let phc = SaltString::encode_b64(&salt[..16]).ok().and_then(|salt| {
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .ok()
            .map(|h| h.to_string())
    });
    let Some(password_hash) = phc else {
        return reply_only(error(500, ErrorCode::RegistrationUnavailable));
    };
    let allowfrom: Vec<String> = allowfrom.iter().map(Cidr::to_string).collect();
    let account = Account {
        subdomain: subdomain.clone(),
        password_hash,
        allowfrom: allowfrom.clone(),
        owner: owner.clone(),
        created_ms: env.now_ms,
    };
    let Ok(stored) = serde_json::to_vec(&account) else {
        return reply_only(error(500, ErrorCode::RegistrationUnavailable));
    };
    writes.push(KvWrite::put(keys::acme_dns_account(&username), stored));
    let fulldomain = format!("{subdomain}.{}", s.zone);
    let log = vec![json!({
        "event": "acme-dns.register", "username": username, "fulldomain": fulldomain,
        "owner": owner, "client": client.map(|c| c.to_string()), "allowfrom": allowfrom,
    })
    .to_string()];
    let reply = Reply::json(
        201,
        &json!({
            "username": username, "password": password, "fulldomain": fulldomain,
            "subdomain": subdomain, "allowfrom": allowfrom,
        }),
    );
    done(reply, writes, counts, log)
}

// ------------------------------------------------------------------ /update

/// A refusal of the guard pipeline in acme-dns's words.
fn refused(r: Refused) -> Start {
    let reply = match r.denied {
        Denied::Limited { retry_after_s } => error(429, ErrorCode::RateLimited)
            .with_header("retry-after", &retry_after_s.to_string()),
        Denied::Unavailable => error(503, ErrorCode::Unavailable),
        Denied::Missing | Denied::Bad(_) => error(401, ErrorCode::Forbidden),
    };
    done(reply, vec![], r.counts, vec![])
}

/// Who an `/update` acts for and where its value goes.
struct Caller {
    authorized: Authorized,
    name: Fqdn,
}

fn update(cfg: &Config, s: &AcmeDnsSettings, req: &Request, env: &Env) -> Start {
    let user = req.header("x-api-user").unwrap_or("").trim();
    let key = req.header("x-api-key").unwrap_or("").trim();
    let body = match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Object(obj)) => obj,
        _ => Map::new(),
    };
    let text = |k: &str| member(&body, k).and_then(Value::as_str).unwrap_or("");
    let (subdomain, txt) = (text("subdomain"), text("txt"));
    let creds = if user.is_empty() && key.is_empty() {
        Credentials::Presented(Presented::None)
    } else if is_uuid(user) {
        Credentials::AcmeAccount {
            user: user.to_string(),
            key: key.to_string(),
        }
    } else if user.is_empty() || key.is_empty() {
        // Half a credential: wrong, and counted as such.
        Credentials::Presented(Presented::Bearer(String::new()))
    } else {
        Credentials::Presented(Presented::Password {
            user: user.to_string(),
            password: key.to_string(),
        })
    };
    let authorized = match pipeline::authorize(cfg, req, env, creds, Some(Scope::Txt)) {
        Ok(a) => a,
        Err(r) => return refused(r),
    };
    let caller = if is_uuid(user) {
        account_caller(s, authorized, subdomain)
    } else {
        user_caller(cfg, authorized, subdomain)
    };
    let Some(caller) = caller else {
        return done(error(401, ErrorCode::Forbidden), vec![], vec![], vec![]);
    };
    let auth_writes = caller.authorized.writes();
    if !token_chars(txt, TXT_LEN) {
        return done(error(400, ErrorCode::BadTxt), auth_writes, vec![], vec![]);
    }
    let Some(zone) = cfg.zone_of(&caller.name) else {
        return done(
            error(400, ErrorCode::BadSubdomain),
            auth_writes,
            vec![],
            vec![],
        );
    };
    let Some(backend) = cfg.backends.get(&zone.backend).cloned() else {
        return done(error(500, ErrorCode::DbError), auth_writes, vec![], vec![]);
    };
    let history_key = keys::acme_dns_txt(caller.name.as_str());
    let mut values: Vec<String> = env
        .kv
        .get(&history_key)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    values.retain(|v| v != txt);
    values.push(txt.to_string());
    let keep_from = values.len().saturating_sub(KEPT_VALUES);
    let values = values.split_off(keep_from);
    let target = Target {
        name: caller.name.clone(),
        zone: zone.name.clone(),
        backend,
        ttl: DEFAULT_TXT_TTL,
        want: vec![(RrType::Txt, values.clone())],
        edits: vec![],
    };
    let mut job = Job::new(
        cfg,
        "acme-dns",
        caller.authorized,
        req,
        vec![HostJob::update(target)],
        env,
    );
    if let Ok(history) = serde_json::to_vec(&values) {
        job.writes.push(KvWrite::put(history_key, history));
    }
    job.track_seen = false;
    Start::Job(
        job,
        Render::AcmeDns {
            txt: txt.to_string(),
        },
    )
}

/// `/update`'s answer: the TXT value echoed, or acme-dns's error.
pub(super) fn render(results: &[HostOutcome], txt: &str) -> Reply {
    match results.first() {
        Some(o) if o.code.is_success() => Reply::json(200, &json!({ "txt": txt })),
        Some(o) if o.code == Code::Abuse => error(429, ErrorCode::RateLimited),
        _ => error(500, ErrorCode::DbError),
    }
}

/// A registered account (key and `allowfrom` checked by the pipeline): its own subdomain only.
fn account_caller(s: &AcmeDnsSettings, authorized: Authorized, subdomain: &str) -> Option<Caller> {
    let name = Fqdn::parse(&format!("{subdomain}.{}", s.zone)).ok()?;
    authorized
        .identity()
        .only_hosts
        .as_ref()
        .is_some_and(|h| h.contains(&name))
        .then_some(Caller { authorized, name })
}

/// A configured user or API token (dynedge's extension): `subdomain` names a host it may update;
/// the value goes to `_acme-challenge.{host}`.
fn user_caller(cfg: &Config, authorized: Authorized, subdomain: &str) -> Option<Caller> {
    let host = Fqdn::parse(subdomain.trim_end_matches('.')).ok()?;
    authorized.host(cfg, &host).ok()?;
    let name = acme::challenge_name(&host).ok()?;
    Some(Caller { authorized, name })
}

#[cfg(test)]
#[path = "acmedns_tests.rs"]
#[allow(clippy::string_slice, clippy::arithmetic_side_effects)] // test code
mod tests;
