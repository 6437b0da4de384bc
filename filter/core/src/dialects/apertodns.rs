//! ApertoDNS protocol v1 (Layers 0–3) under `/.well-known/apertodns/v1/`. The rules it follows
//! are listed by name in docs/dialects.md, "Protocol rules". Every reply on the prefix is JSON `{"success": ...}` with the Layer 0 headers,
//! `X-Request-ID`, and `X-RateLimit-*` where a limit applies.
//!
//! Guard ladder (Protocol rules: guard ladder): route → method → rate limit for public endpoints → credentials
//! (Bearer or X-API-Key only) → rate limit per token → JSON → fields (hostname, format, ttl,
//! literal addresses) → scope → ownership → `"auto"` → backend.

use std::net::IpAddr;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::set_field;
use crate::addr::{self, AddrError};
use crate::auth::{self, AuthError, Presented};
use crate::backends::RrType;
use crate::config::{Config, ConfigError, Scope, Secret, Zone};
use crate::exchange::{Edit, Env, HostJob, HostOutcome, Job, Outcome, Refusal, Start, Target};
use crate::hoststate;
use crate::kv::KvWrite;
use crate::limits::{self, Limit, RateState};
use crate::names::Fqdn;
use crate::pipeline::{self, Authorized, Denied, HostDenied, Public};
use crate::reply::{Code, Reply};
use crate::request::Request;
use crate::time::iso8601;

pub const PREFIX: &str = "/.well-known/apertodns/v1/";
pub const PROTOCOL_VERSION: &str = "1.4.0";
pub const MAX_BULK: usize = 100;
pub const TXT_PREFIX: &str = "_acme-challenge.";
pub const DEFAULT_TTL: u32 = 300;
pub const DEFAULT_TXT_TTL: u32 = 60;
const TTL_RANGE: std::ops::RangeInclusive<i64> = 60..=86_400;

// ------------------------------------------------------------------ configuration

/// `apertodns` in the plugin configuration (all optional).
#[derive(Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawAperto {
    #[serde(default)]
    provider: Option<RawProvider>,
    /// Token prefix: `{provider_id}_{environment}_{random}`.
    #[serde(default)]
    provider_id: Option<String>,
    #[serde(default)]
    environment: Option<String>,
    #[serde(default)]
    txt_max_records: Option<usize>,
    /// Key that turns the host's randomness into new tokens and webhook secrets
    /// (`/api/tokens`, `/api/webhooks`); without it those cannot create anything.
    #[serde(default)]
    token_key: Option<Secret>,
    /// Per-token and per-address request limits (Protocol rules: rate limits; default on).
    #[serde(default)]
    #[cfg_attr(
        feature = "schema",
        schemars(description = "Per-token and per-address request limits (default on).")
    )]
    rate_limits: Option<bool>,
}

#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct RawProvider {
    name: String,
    website: String,
    documentation: String,
    support_email: String,
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub website: String,
    pub documentation: String,
    pub support_email: String,
}

#[derive(Debug, Clone)]
pub struct ApertoSettings {
    pub provider: Provider,
    pub provider_id: String,
    pub environment: String,
    pub txt_max_records: usize,
    pub token_key: Option<Secret>,
    pub rate_limits: bool,
}

impl ApertoSettings {
    pub fn compile(raw: RawAperto) -> Result<ApertoSettings, ConfigError> {
        let e = |path: &str, m: &str| ConfigError {
            path: format!("apertodns.{path}"),
            message: m.into(),
        };
        let provider_id = raw.provider_id.unwrap_or_else(|| "dynedge".into());
        if !(3..=20).contains(&provider_id.len())
            || !provider_id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(e("provider_id", "must be 3-20 characters of [a-z0-9-]"));
        }
        let environment = raw.environment.unwrap_or_else(|| "live".into());
        if !["live", "test", "sandbox"].contains(&environment.as_str()) {
            return Err(e("environment", "must be live, test or sandbox"));
        }
        let txt_max_records = raw.txt_max_records.unwrap_or(5);
        if !(1..=50).contains(&txt_max_records) {
            return Err(e("txt_max_records", "must be 1..=50"));
        }
        if raw.token_key.as_ref().is_some_and(|k| k.0.len() < 32) {
            return Err(e("token_key", "must be at least 32 characters"));
        }
        let provider = match raw.provider {
            Some(p) => Provider {
                name: p.name,
                website: p.website,
                documentation: p.documentation,
                support_email: p.support_email,
            },
            None => Provider {
                name: "dynedge".into(),
                website: "https://dynedge.invalid/".into(),
                documentation: "https://dynedge.invalid/docs/dialects".into(),
                support_email: "support@dynedge.invalid".into(),
            },
        };
        Ok(ApertoSettings {
            provider,
            provider_id,
            environment,
            txt_max_records,
            token_key: raw.token_key,
            rate_limits: raw.rate_limits.unwrap_or(true),
        })
    }
}

// ------------------------------------------------------------------ replies

/// Per-request context every reply carries: request id, time, rate-limit state.
#[derive(Clone)]
pub struct Ctx {
    pub request_id: String,
    pub now_ms: u64,
    pub rate: Option<RateState>,
}

impl Ctx {
    pub fn new(req: &Request, env: &Env) -> Ctx {
        // Echo a sane X-Request-ID (the official client sends a UUID), else make one.
        let request_id = req
            .header("x-request-id")
            .filter(|v| {
                !v.is_empty()
                    && v.len() <= 128
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
            })
            .map(str::to_string)
            .unwrap_or_else(|| format!("req_{:016x}", env.random));
        Ctx {
            request_id,
            now_ms: env.now_ms,
            rate: None,
        }
    }

    pub fn finish(&self, mut r: Reply) -> Reply {
        r.headers
            .push(("x-request-id".into(), self.request_id.clone()));
        if let Some(rate) = &self.rate {
            r.headers.extend(rate.headers());
        }
        r
    }

    pub fn ok(&self, status: u16, data: Value) -> Reply {
        self.finish(Reply::json(
            status,
            &json!({"success": true, "data": data, "meta": {"request_id": self.request_id}}),
        ))
    }

    pub fn error(&self, status: u16, code: &str, message: &str) -> Reply {
        self.error_with(status, code, message, None)
    }

    pub fn error_with(
        &self,
        status: u16,
        code: &str,
        message: &str,
        details: Option<Value>,
    ) -> Reply {
        let mut body = error_body(code, message, details);
        let meta = json!({"request_id": self.request_id, "timestamp": iso8601(self.now_ms)});
        set_field(&mut body, "meta", meta);
        self.finish(Reply::json(status, &body))
    }

    /// 400 `validation_error` with `details.fields` (Protocol rules: validation errors), which the official client
    /// turns into its `ValidationError`.
    pub fn validation(&self, field: &str, code: &str, message: &str, provided: Value) -> Reply {
        self.error_with(
            400,
            "validation_error",
            message,
            Some(json!({"fields": [
                {"field": field, "code": code, "message": message, "provided": provided}
            ]})),
        )
    }
}

fn error_body(code: &str, message: &str, details: Option<Value>) -> Value {
    let mut error = json!({"code": code, "message": message});
    if let Some(d) = details {
        set_field(&mut error, "details", d);
    }
    json!({"success": false, "error": error})
}

/// An ApertoDNS error without request context (payload too large, before routing).
pub fn error_reply(status: u16, code: &str, message: &str, details: Option<Value>) -> Reply {
    Reply::json(status, &error_body(code, message, details))
}

pub fn done(reply: Reply) -> Start {
    Start::Reply(Outcome::reply(reply))
}

pub fn done_with(reply: Reply, writes: Vec<KvWrite>, counts: Vec<limits::KvCount>) -> Start {
    Start::Reply(Outcome {
        reply: Some(reply),
        writes,
        counts,
        ..Outcome::default()
    })
}

// ------------------------------------------------------------------ routing

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Info,
    Health,
    Update,
    BulkUpdate,
    Status,
    Domains,
    Txt,
    TxtGet,
}

impl Endpoint {
    fn parse(rest: &str) -> Option<(Endpoint, Option<&str>)> {
        Some(match rest {
            "info" => (Endpoint::Info, None),
            "health" => (Endpoint::Health, None),
            "update" => (Endpoint::Update, None),
            "bulk-update" => (Endpoint::BulkUpdate, None),
            "domains" => (Endpoint::Domains, None),
            "txt" => (Endpoint::Txt, None),
            r => {
                if let Some(h) = r.strip_prefix("status/").filter(|h| !h.is_empty()) {
                    (Endpoint::Status, Some(h))
                } else if let Some(h) = r.strip_prefix("txt/").filter(|h| !h.is_empty()) {
                    (Endpoint::TxtGet, Some(h))
                } else {
                    return None;
                }
            }
        })
    }

    fn allow(self) -> &'static str {
        match self {
            Endpoint::Info
            | Endpoint::Health
            | Endpoint::Status
            | Endpoint::Domains
            | Endpoint::TxtGet => "GET",
            Endpoint::Update | Endpoint::BulkUpdate => "POST",
            Endpoint::Txt => "POST, DELETE",
        }
    }

    /// Rate-limit bucket and default limit (Protocol rules: rate limits).
    fn limit(self, method: &str) -> (&'static str, Limit) {
        let l = |requests| Limit {
            requests,
            window_s: 60,
        };
        match self {
            Endpoint::Info => ("info", l(120)),
            Endpoint::Health => ("health", l(120)),
            Endpoint::Update => ("update", l(60)),
            Endpoint::BulkUpdate => ("bulk_update", l(10)),
            Endpoint::Status => ("status", l(120)),
            Endpoint::Domains => ("domains", l(60)),
            Endpoint::Txt if method == "DELETE" => ("txt_delete", l(30)),
            Endpoint::Txt => ("txt", l(30)),
            Endpoint::TxtGet => ("txt_read", l(120)),
        }
    }
}

/// A percent-encoded path segment (`encodeURIComponent` on the client side).
pub fn percent_decode(s: &str) -> Option<String> {
    crate::request::Params::parse(&format!("v={}", s.replace('+', "%2B")))
        .ok()?
        .one("v")
        .ok()
        .flatten()
        .map(str::to_string)
}

pub fn handle(cfg: &Config, req: &Request, env: &Env) -> Start {
    let mut ctx = Ctx::new(req, env);
    let rest = req.path_only().strip_prefix(PREFIX).unwrap_or_default();
    let Some((ep, arg)) = Endpoint::parse(rest) else {
        return done(ctx.error(404, "not_found", "Endpoint not found"));
    };
    if !ep.allow().split(", ").any(|m| m == req.method) {
        return done(
            ctx.error(405, "method_not_allowed", "Method not allowed")
                .with_header("allow", ep.allow()),
        );
    }
    let (bucket, limit) = ep.limit(&req.method);
    let mut writes = Vec::new();
    let mut counts = Vec::new();

    if matches!(ep, Endpoint::Info | Endpoint::Health) {
        if cfg.apertodns.rate_limits {
            let who = req
                .client_ip(&cfg.trusted_proxies)
                .map_or_else(|| "unknown".into(), |ip| ip.to_string());
            let state =
                limits::window_state(env.kv, limits::window_key(bucket, &who), limit, env.now_s());
            counts.extend(state.counts.clone());
            let exceeded = state.exceeded;
            ctx.rate = Some(state);
            if exceeded {
                return done_with(rate_limited(&ctx), writes, counts);
            }
        }
        let reply = if ep == Endpoint::Info {
            ctx.ok(200, info(cfg, &ctx, pipeline::public()))
        } else {
            let (reply, w) = health(&ctx, env, pipeline::public());
            writes.extend(w);
            reply
        };
        return done_with(reply, writes, counts);
    }

    let identity = match authenticate(cfg, req, env) {
        Ok(a) => {
            writes.extend(a.writes());
            a
        }
        Err((reply, bad)) => return done_with(reply(&ctx), vec![], bad),
    };
    if cfg.apertodns.rate_limits {
        let subject = identity
            .identity()
            .token_id
            .clone()
            .unwrap_or_else(|| format!("user:{}", identity.identity().user));
        let state = limits::window_state(
            env.kv,
            limits::window_key(bucket, &subject),
            limit,
            env.now_s(),
        );
        counts.extend(state.counts.clone());
        let exceeded = state.exceeded;
        ctx.rate = Some(state);
        if exceeded {
            return done_with(rate_limited(&ctx), writes, counts);
        }
    }

    let started = match ep {
        Endpoint::Update => update(cfg, req, env, &ctx, identity),
        Endpoint::BulkUpdate => bulk(cfg, req, env, &ctx, identity),
        Endpoint::Status => status(cfg, req, env, &ctx, identity, arg.unwrap_or("")),
        Endpoint::Domains => domains(cfg, req, env, &ctx, identity),
        Endpoint::Txt => txt(cfg, req, env, &ctx, identity),
        Endpoint::TxtGet => txt_get(cfg, req, env, &ctx, identity, arg.unwrap_or("")),
        Endpoint::Info | Endpoint::Health => Err(ctx.error(500, "server_error", "unreachable")),
    };
    match started {
        Ok(mut job) => {
            // The job carries the authentication's writes already.
            job.counts.extend(counts);
            if !matches!(ep, Endpoint::Update | Endpoint::BulkUpdate | Endpoint::Txt) {
                // Reads are no sign of life for expiry.
                job.track_seen = false;
            }
            Start::Job(job)
        }
        Err(reply) => done_with(reply, writes, counts),
    }
}

fn rate_limited(ctx: &Ctx) -> Reply {
    let after = ctx.rate.as_ref().map_or(60, |r| r.retry_after_s);
    rate_limited_after(ctx, after)
}

/// 429 `rate_limited`, retry after `after` seconds (in the body and, without a window's
/// headers, in `Retry-After`).
fn rate_limited_after(ctx: &Ctx, after: u64) -> Reply {
    let mut body = error_body(
        "rate_limited",
        &format!("Rate limit exceeded. Retry after {after} seconds."),
        None,
    );
    if let Some(error) = body.get_mut("error") {
        set_field(error, "retry_after_seconds", json!(after));
    }
    let meta = json!({"request_id": ctx.request_id, "timestamp": iso8601(ctx.now_ms)});
    set_field(&mut body, "meta", meta);
    let reply = ctx.finish(Reply::json(429, &body));
    if reply.header("retry-after").is_some() {
        return reply;
    }
    reply.with_header("retry-after", &after.to_string())
}

/// A reply that still needs the request context.
pub type ErrFn = Box<dyn FnOnce(&Ctx) -> Reply>;

/// A refusal: its reply (which needs the request context) and what it counts against.
pub type AuthRefusal = (ErrFn, Vec<limits::KvCount>);

/// Bearer or `X-API-Key` (Protocol rules: credentials); Basic and anything else is 401 on this prefix.
pub fn authenticate(cfg: &Config, req: &Request, env: &Env) -> Result<Authorized, AuthRefusal> {
    authenticate_with(cfg, req, env, false)
}

/// How the request presents credentials; `Err` names what is wrong with a header present.
fn presented(req: &Request, allow_basic: bool) -> Result<Presented, &'static str> {
    match (req.header("authorization"), req.header("x-api-key")) {
        (Some(a), _) => {
            let (scheme, rest) = a.trim().split_once(' ').unwrap_or((a.trim(), ""));
            if scheme.eq_ignore_ascii_case("bearer") && !rest.trim().is_empty() {
                Ok(Presented::Bearer(rest.trim().to_string()))
            } else if allow_basic && scheme.eq_ignore_ascii_case("basic") {
                match auth::presented(Some(a), None, None) {
                    p @ Presented::Password { .. } => Ok(p),
                    _ => Err("Malformed Authorization header"),
                }
            } else {
                Err("Bearer token required")
            }
        }
        (None, Some(k)) if !k.trim().is_empty() => Ok(Presented::Bearer(k.trim().to_string())),
        (None, Some(_)) => Err("Bearer token required"),
        (None, None) => Ok(Presented::None),
    }
}

/// As [`authenticate`]; `allow_basic` also accepts a user's Basic password (management API).
/// Goes through the guard pipeline: a header that is present but unusable is a failure too.
pub fn authenticate_with(
    cfg: &Config,
    req: &Request,
    env: &Env,
    allow_basic: bool,
) -> Result<Authorized, AuthRefusal> {
    let unauthorized = |m: &'static str| -> ErrFn {
        Box::new(move |ctx: &Ctx| {
            ctx.error(401, "unauthorized", m)
                .with_header("www-authenticate", "Bearer realm=\"dynedge\"")
        })
    };
    let (p, malformed) = match presented(req, allow_basic) {
        Ok(p) => (p, None),
        Err(m) => (Presented::Bearer(String::new()), Some(m)),
    };
    let r = match pipeline::authorize(cfg, req, env, p.into(), None) {
        Ok(a) => return Ok(a),
        Err(r) => r,
    };
    let reply: ErrFn = match (r.denied, malformed) {
        (Denied::Limited { retry_after_s }, _) => {
            Box::new(move |ctx: &Ctx| rate_limited_after(ctx, retry_after_s))
        }
        (Denied::Unavailable, _) => Box::new(|ctx: &Ctx| {
            ctx.error(
                503,
                "service_unavailable",
                "Credentials cannot be checked right now; try again later",
            )
        }),
        (Denied::Missing, _) => unauthorized("Bearer token required"),
        (Denied::Bad(_), Some(m)) => unauthorized(m),
        (Denied::Bad(e), None) => {
            let (code, msg) = match e {
                AuthError::Revoked => ("token_revoked", "Token has been revoked"),
                AuthError::Expired => ("token_expired", "Token has expired"),
                AuthError::Missing => ("unauthorized", "Bearer token required"),
                AuthError::Bad => ("invalid_token", "Invalid or expired token"),
            };
            Box::new(move |ctx: &Ctx| ctx.error(401, code, msg))
        }
    };
    Err((reply, r.counts))
}

fn need_scope(ctx: &Ctx, id: &Authorized, scope: Scope) -> Result<(), Reply> {
    if id.has(scope) {
        Ok(())
    } else {
        Err(ctx.error(
            403,
            "forbidden",
            "Insufficient permissions: the token lacks the scope for this endpoint",
        ))
    }
}

/// Ownership: one answer for unknown and foreign names (Protocol rules: ownership); a name the user owns
/// but the token may not touch is `hostname_forbidden`.
fn owned_zone<'c>(cfg: &'c Config, id: &Authorized, name: &Fqdn) -> Result<&'c Zone, FieldError> {
    id.host(cfg, name).map_err(|e| match e {
        HostDenied::TokenRestricted => FieldError::status(
            403,
            "hostname_forbidden",
            "Token not authorized for this hostname",
        ),
        HostDenied::NotOwned => {
            FieldError::status(403, "hostname_not_owned", "User does not own this hostname")
        }
    })
}

// ------------------------------------------------------------------ public endpoints

fn info(cfg: &Config, ctx: &Ctx, _: Public) -> Value {
    let a = &cfg.apertodns;
    let p = |s: &str| format!("{PREFIX}{s}");
    let rl = |n: u64| json!({"requests": n, "window_seconds": 60});
    json!({
        "protocol": "apertodns",
        "protocol_version": PROTOCOL_VERSION,
        "provider": {
            "name": a.provider.name,
            "website": a.provider.website,
            "documentation": a.provider.documentation,
            "support_email": a.provider.support_email,
        },
        "endpoints": {
            "info": p("info"),
            "health": p("health"),
            "update": p("update"),
            "bulk_update": p("bulk-update"),
            "status": p("status/{hostname}"),
            "domains": p("domains"),
            "txt": p("txt"),
            "legacy_dyndns2": "/nic/update",
        },
        "capabilities": {
            "ipv4": true,
            "ipv6": true,
            "auto_ip_detection": true,
            "bulk_update": true,
            "max_bulk_size": MAX_BULK,
            "webhooks": cfg.webhooks.is_some(),
            "txt_records": true,
            "txt_max_records": a.txt_max_records,
            "null_deletion": true,
            "concurrent_update": true,
        },
        "authentication": {
            "methods": ["bearer_token", "api_key_header", "basic_auth_legacy"],
            "token_format": "{provider}_{environment}_{random}",
            "scopes_supported": ["dns:update", "domains:read", "txt:read", "txt:write", "txt:delete"],
        },
        "rate_limits": {
            "update": rl(60),
            "bulk_update": rl(10),
            "status": rl(120),
            "domains": rl(60),
            "txt": rl(30),
        },
        "server_time": iso8601(ctx.now_ms),
    })
}

/// Key under which the first health check notes when this gateway started serving.
const STARTED_KEY: &str = "dynedge:apertodns:started_ms";

fn health(ctx: &Ctx, env: &Env, _: Public) -> (Reply, Vec<KvWrite>) {
    let started = env
        .kv
        .get(STARTED_KEY)
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|s| s.parse::<u64>().ok());
    let writes = match started {
        Some(_) => vec![],
        None => vec![KvWrite::put(
            STARTED_KEY.into(),
            env.now_ms.to_string().into_bytes(),
        )],
    };
    let uptime = env.now_ms.saturating_sub(started.unwrap_or(env.now_ms)) / 1000;
    (
        ctx.ok(
            200,
            json!({"status": "healthy", "timestamp": iso8601(ctx.now_ms), "uptime": uptime}),
        ),
        writes,
    )
}

// ------------------------------------------------------------------ body and field parsing

fn body_object(req: &Request, ctx: &Ctx) -> Result<Map<String, Value>, Reply> {
    let v: Value = serde_json::from_slice(&req.body)
        .map_err(|_| ctx.error(400, "invalid_json", "Request body is not valid JSON"))?;
    match v {
        Value::Object(m) => Ok(m),
        other => Err(ctx.validation(
            "body",
            "invalid_type",
            "Request body must be a JSON object",
            other,
        )),
    }
}

/// An address field: absent, `null`, `"auto"`, or a literal (Protocol rules: address fields).
#[derive(Debug, Clone, PartialEq, Eq)]
enum AddrField {
    Absent,
    Null,
    Auto,
    Literal(IpAddr),
}

/// A refused request or bulk item, renderable as a whole reply or as a bulk `error` member.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    status: u16,
    code: &'static str,
    message: String,
    /// For `validation_error`: (field, per-field code, provided value).
    field: Option<(&'static str, &'static str, Value)>,
}

impl FieldError {
    fn new(code: &'static str, message: impl Into<String>) -> FieldError {
        FieldError::status(400, code, message)
    }
    fn status(status: u16, code: &'static str, message: impl Into<String>) -> FieldError {
        FieldError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }
    fn validation(
        field: &'static str,
        fcode: &'static str,
        message: impl Into<String>,
        provided: Value,
    ) -> FieldError {
        FieldError {
            status: 400,
            code: "validation_error",
            message: message.into(),
            field: Some((field, fcode, provided)),
        }
    }
    fn reply(&self, ctx: &Ctx) -> Reply {
        match &self.field {
            Some((f, c, p)) => ctx.validation(f, c, &self.message, p.clone()),
            None => ctx.error(self.status, self.code, &self.message),
        }
    }
    fn item_json(&self) -> Value {
        json!({"code": self.code, "message": self.message})
    }
}

fn hostname_field(obj: &Map<String, Value>) -> Result<Fqdn, FieldError> {
    match obj.get("hostname") {
        None | Some(Value::Null) => Err(FieldError::validation(
            "hostname",
            "required",
            "hostname is required",
            Value::Null,
        )),
        Some(Value::String(h)) => Fqdn::parse(h).map_err(|e| {
            FieldError::new("invalid_hostname", format!("Invalid hostname format: {e}"))
        }),
        Some(other) => Err(FieldError::validation(
            "hostname",
            "invalid_type",
            "hostname must be a string",
            other.clone(),
        )),
    }
}

fn ttl_field(v: Option<&Value>, default: u32) -> Result<u32, FieldError> {
    let bad = || FieldError::new("invalid_ttl", "TTL must be between 60 and 86400 seconds");
    match v {
        None => Ok(default),
        Some(Value::Number(n)) => n
            .as_i64()
            .filter(|t| TTL_RANGE.contains(t))
            .and_then(|t| u32::try_from(t).ok())
            .ok_or_else(bad),
        Some(_) => Err(bad()),
    }
}

fn addr_field(v: Option<&Value>, name: &'static str, v6: bool) -> Result<AddrField, FieldError> {
    match v {
        None => Ok(AddrField::Absent),
        Some(Value::Null) => Ok(AddrField::Null),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("auto") => Ok(AddrField::Auto),
        Some(Value::String(s)) => {
            let ip = if v6 {
                addr::parse_v6(s).map(IpAddr::V6)
            } else {
                addr::parse_v4(s).map(IpAddr::V4)
            };
            ip.map(AddrField::Literal).map_err(|e: AddrError| {
                let shown: String = s.chars().take(64).collect();
                FieldError::new("invalid_ip", format!("{name}: '{shown}' {e}"))
            })
        }
        Some(other) => Err(FieldError::validation(
            name,
            "invalid_type",
            format!("{name} must be a string, \"auto\" or null"),
            other.clone(),
        )),
    }
}

fn policy_check(zone: &Zone, name: &'static str, ip: IpAddr) -> Result<(), FieldError> {
    zone.policy.check(ip).map_err(|e| {
        FieldError::new(
            "invalid_ip",
            format!("{name}: '{ip}' {e}; only public addresses are accepted"),
        )
    })
}

/// The TXT member the official client sends inside `/update` (Protocol rules: ACME names).
struct TxtMember {
    name: Fqdn,
    /// The host under `_acme-challenge.`, whose ownership the write needs.
    host: Fqdn,
    value: Option<String>,
    delete: bool,
}

/// A parsed update item (one `/update` body or one bulk entry).
struct UpdateItem {
    hostname: Fqdn,
    ttl: u32,
    ipv4: AddrField,
    ipv6: AddrField,
    txt: Option<TxtMember>,
}

fn parse_txt_member(t: &Map<String, Value>, hostname: &Fqdn) -> Result<TxtMember, FieldError> {
    let label = match t.get("name") {
        Some(Value::String(s)) if !s.is_empty() => s.as_str(),
        other => {
            return Err(FieldError::validation(
                "txt.name",
                "required",
                "txt.name is required (e.g. \"_acme-challenge\")",
                other.cloned().unwrap_or(Value::Null),
            ))
        }
    };
    let action = t.get("action").and_then(Value::as_str).unwrap_or("set");
    let value = match t.get("value") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(FieldError::validation(
                "txt.value",
                "invalid_type",
                "txt.value must be a string",
                other.clone(),
            ))
        }
    };
    let delete = match action {
        "set" => false,
        "delete" => true,
        _ => {
            return Err(FieldError::validation(
                "txt.action",
                "invalid_value",
                "txt.action must be \"set\" or \"delete\"",
                json!(action),
            ))
        }
    };
    let (name, host) = txt_name(&format!("{label}.{hostname}"))?;
    if !delete && value.is_none() {
        return Err(FieldError::validation(
            "txt.value",
            "required",
            "txt.value is required to set a TXT record",
            Value::Null,
        ));
    }
    if let Some(v) = &value {
        txt_value_check(v)?;
    }
    Ok(TxtMember {
        name,
        host,
        value,
        delete,
    })
}

fn parse_item(
    obj: &Map<String, Value>,
    defaults: Option<&Map<String, Value>>,
    allow_txt: bool,
) -> Result<UpdateItem, FieldError> {
    let field = |k: &str| obj.get(k).or_else(|| defaults.and_then(|d| d.get(k)));
    let hostname = hostname_field(obj)?;
    let ttl = ttl_field(field("ttl"), DEFAULT_TTL)?;
    let ipv4 = addr_field(field("ipv4"), "ipv4", false)?;
    let ipv6 = addr_field(field("ipv6"), "ipv6", true)?;
    let txt = match obj.get("txt").filter(|_| allow_txt) {
        None | Some(Value::Null) => None,
        Some(Value::Object(t)) => Some(parse_txt_member(t, &hostname)?),
        Some(other) => {
            return Err(FieldError::validation(
                "txt",
                "invalid_type",
                "txt must be an object",
                other.clone(),
            ))
        }
    };
    Ok(UpdateItem {
        hostname,
        ttl,
        ipv4,
        ipv6,
        txt,
    })
}

/// `_acme-challenge.` + a hostname (Protocol rules: ACME names): (the TXT owner name, the host under it).
fn txt_name(input: &str) -> Result<(Fqdn, Fqdn), FieldError> {
    let lower = input.to_ascii_lowercase();
    let Some(rest) = lower.strip_prefix(TXT_PREFIX) else {
        return Err(FieldError::new(
            "txt_invalid_name",
            "TXT name must start with _acme-challenge.",
        ));
    };
    let bad = |e: crate::names::NameError| {
        FieldError::new("invalid_hostname", format!("Invalid hostname format: {e}"))
    };
    let host = Fqdn::parse(rest).map_err(bad)?;
    let full = Fqdn::parse_service(&format!("{TXT_PREFIX}{host}")).map_err(bad)?;
    Ok((full, host))
}

fn txt_value_check(v: &str) -> Result<(), FieldError> {
    if v.chars().count() > 255 {
        return Err(FieldError::new(
            "txt_value_too_long",
            "TXT value must be at most 255 characters",
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(FieldError::validation(
            "value",
            "invalid_format",
            "TXT value must not contain control characters",
            Value::Null,
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum AddrOp {
    Leave,
    Delete,
    Set(IpAddr),
}

/// What to do with each family after `"auto"` and the zone's ranges.
struct Resolved {
    v4: AddrOp,
    v6: AddrOp,
}

fn resolve(
    cfg: &Config,
    req: &Request,
    zone: &Zone,
    item: &UpdateItem,
) -> Result<Resolved, FieldError> {
    let client = req.client_ip(&cfg.trusted_proxies);
    let lit = |f: &AddrField, name: &'static str| -> Result<AddrOp, FieldError> {
        Ok(match f {
            AddrField::Absent | AddrField::Auto => AddrOp::Leave,
            AddrField::Null => AddrOp::Delete,
            AddrField::Literal(ip) => {
                policy_check(zone, name, *ip)?;
                AddrOp::Set(*ip)
            }
        })
    };
    let mut v4 = lit(&item.ipv4, "ipv4")?;
    let mut v6 = lit(&item.ipv6, "ipv6")?;
    if item.ipv4 == AddrField::Auto {
        match client {
            Some(ip @ IpAddr::V4(_)) => {
                policy_check(zone, "ipv4", ip)?;
                v4 = AddrOp::Set(ip);
            }
            _ => {
                return Err(FieldError::new(
                    "ipv4_auto_failed",
                    "Cannot auto-detect IPv4: your connection uses IPv6. Specify an explicit IPv4 address.",
                ))
            }
        }
    }
    if item.ipv6 == AddrField::Auto {
        match client {
            Some(ip @ IpAddr::V6(_)) => {
                policy_check(zone, "ipv6", ip)?;
                v6 = AddrOp::Set(ip);
            }
            // Protocol rules, address fields: ignored when IPv4 is also asked for, else an error.
            _ if item.ipv4 != AddrField::Absent => {}
            _ => {
                return Err(FieldError::new(
                    "ipv6_auto_failed",
                    "Cannot auto-detect IPv6: your connection uses IPv4. Specify an explicit IPv6 address.",
                ))
            }
        }
    }
    Ok(Resolved { v4, v6 })
}

fn backend_of(cfg: &Config, zone: &Zone) -> Result<crate::config::Backend, FieldError> {
    cfg.backends
        .get(&zone.backend)
        .cloned()
        .ok_or_else(|| FieldError::status(500, "server_error", "zone has no backend"))
}

/// The A/AAAA target of an update. With `keep_others`, every family it does not change is
/// read (`Keep`) so the reply can report what is now in DNS.
fn addr_target(
    cfg: &Config,
    zone: &Zone,
    name: Fqdn,
    ttl: u32,
    r: &Resolved,
    keep_others: bool,
) -> Result<Target, FieldError> {
    let backend = backend_of(cfg, zone)?;
    let mut want = Vec::new();
    let mut edits = Vec::new();
    for (op, rtype) in [(&r.v4, RrType::A), (&r.v6, RrType::Aaaa)] {
        match op {
            AddrOp::Set(ip) => want.push((rtype, vec![ip.to_string()])),
            AddrOp::Delete => edits.push((
                rtype,
                Edit::Remove {
                    values: None,
                    must_exist: true,
                },
            )),
            AddrOp::Leave if keep_others => edits.push((rtype, Edit::Keep)),
            AddrOp::Leave => {}
        }
    }
    Ok(Target {
        name,
        zone: zone.name.clone(),
        backend,
        ttl,
        want,
        edits,
    })
}

fn first_of(sets: &[(RrType, Vec<String>)], t: RrType) -> Option<String> {
    sets.iter()
        .find(|(r, _)| *r == t)
        .and_then(|(_, v)| v.first().cloned())
}

fn values_of(sets: &[(RrType, Vec<String>)], t: RrType) -> Vec<String> {
    sets.iter()
        .find(|(r, _)| *r == t)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// The error an unsuccessful host outcome stands for.
fn outcome_error(o: &HostOutcome) -> (u16, &'static str, String) {
    match (&o.refusal, o.code) {
        (Some(Refusal::TooManyValues { max, .. }), _) => (
            400,
            "txt_limit_exceeded",
            format!("At most {max} TXT values per name"),
        ),
        (Some(Refusal::NothingToDelete { rtype }), _) => (
            404,
            "record_not_found",
            format!("No {} record to delete", rtype.as_str()),
        ),
        (None, Code::Dnserr) => (502, "dns_error", "DNS backend error".into()),
        (None, Code::Abuse) => (
            429,
            "rate_limited",
            "Too many updates of this hostname".into(),
        ),
        _ => (500, "server_error", "Internal server error".into()),
    }
}

fn job(
    cfg: &Config,
    req: &Request,
    env: &Env,
    id: Authorized,
    hosts: Vec<HostJob>,
    render: crate::exchange::Renderer,
) -> Box<Job> {
    Job::new(cfg, "apertodns", id, req, hosts, render, env)
}

// ------------------------------------------------------------------ /update

fn update(
    cfg: &Config,
    req: &Request,
    env: &Env,
    ctx: &Ctx,
    id: Authorized,
) -> Result<Box<Job>, Reply> {
    let obj = body_object(req, ctx)?;
    let item = parse_item(&obj, None, true).map_err(|e| e.reply(ctx))?;
    need_scope(ctx, &id, Scope::Update)?;
    if item.txt.is_some() {
        need_scope(ctx, &id, Scope::Txt)?;
    }
    let zone = owned_zone(cfg, &id, &item.hostname).map_err(|e| e.reply(ctx))?;
    let resolved = resolve(cfg, req, zone, &item).map_err(|e| e.reply(ctx))?;
    let target = addr_target(cfg, zone, item.hostname.clone(), item.ttl, &resolved, true)
        .map_err(|e| e.reply(ctx))?;
    let mut hosts = vec![HostJob::update(target)];
    if let Some(t) = &item.txt {
        // The same check as `/txt`: the label may name a host below the one updated.
        let zone = owned_zone(cfg, &id, &t.host).map_err(|e| e.reply(ctx))?;
        let edit = if t.delete {
            Edit::Remove {
                values: t.value.clone().map(|v| vec![v]),
                must_exist: false,
            }
        } else {
            Edit::Add {
                values: t.value.clone().into_iter().collect(),
                max: cfg.apertodns.txt_max_records,
            }
        };
        hosts.push(HostJob::update(Target {
            name: t.name.clone(),
            zone: zone.name.clone(),
            backend: backend_of(cfg, zone).map_err(|e| e.reply(ctx))?,
            ttl: DEFAULT_TXT_TTL,
            want: vec![],
            edits: vec![(RrType::Txt, edit)],
        }));
    }
    let meta = hoststate::read(env.kv, &item.hostname);
    let ttl = item.ttl;
    let ctx = ctx.clone();
    let render = Box::new(move |results: &[HostOutcome]| {
        let Some(main) = results.first() else {
            return ctx.error(500, "server_error", "Internal server error");
        };
        if let Some(failed) = results.iter().find(|o| !o.code.is_success()) {
            let (status, code, msg) = outcome_error(failed);
            return ctx.error(status, code, &msg);
        }
        let changed = main.code == Code::Good;
        let updated_at = if changed {
            Some(ctx.now_ms)
        } else {
            meta.as_ref().map(|m| m.updated_ms)
        };
        let mut data = json!({
            "hostname": main.host,
            "ipv4": first_of(&main.current, RrType::A),
            "ipv6": first_of(&main.current, RrType::Aaaa),
            "previous_ipv4": first_of(&main.previous, RrType::A),
            "previous_ipv6": first_of(&main.previous, RrType::Aaaa),
            "ttl": ttl,
            "changed": changed,
            "updated_at": updated_at.map(iso8601),
        });
        if changed {
            set_field(&mut data, "propagation_estimate_seconds", json!(ttl));
        }
        ctx.ok(200, data)
    });
    Ok(job(cfg, req, env, id, hosts, render))
}

// ------------------------------------------------------------------ /bulk-update

fn bulk(
    cfg: &Config,
    req: &Request,
    env: &Env,
    ctx: &Ctx,
    id: Authorized,
) -> Result<Box<Job>, Reply> {
    let obj = body_object(req, ctx)?;
    let items = match obj.get("updates") {
        Some(Value::Array(a)) => a,
        other => {
            return Err(ctx.validation(
                "updates",
                if other.is_none() {
                    "required"
                } else {
                    "invalid_type"
                },
                "updates must be an array of update objects",
                other.cloned().unwrap_or(Value::Null),
            ))
        }
    };
    if items.len() > MAX_BULK {
        return Err(ctx.error(
            400,
            "bulk_limit_exceeded",
            &format!("Max {MAX_BULK} hostnames per bulk request"),
        ));
    }
    let defaults = match obj.get("defaults") {
        None | Some(Value::Null) => None,
        Some(Value::Object(d)) => Some(d),
        Some(other) => {
            return Err(ctx.validation(
                "defaults",
                "invalid_type",
                "defaults must be an object",
                other.clone(),
            ))
        }
    };
    need_scope(ctx, &id, Scope::Update)?;
    let mut hosts = Vec::with_capacity(items.len());
    // Per item: the error decided before any call, if any.
    let mut pre: Vec<Option<Value>> = Vec::with_capacity(items.len());
    for raw in items {
        let label: String = raw
            .get("hostname")
            .and_then(Value::as_str)
            .unwrap_or("")
            .chars()
            .take(253)
            .collect();
        let planned = match raw {
            Value::Object(o) => parse_item(o, defaults, false).and_then(|item| {
                let zone = owned_zone(cfg, &id, &item.hostname)?;
                let resolved = resolve(cfg, req, zone, &item)?;
                addr_target(cfg, zone, item.hostname.clone(), item.ttl, &resolved, false)
            }),
            _ => Err(FieldError::validation(
                "updates",
                "invalid_type",
                "each update must be an object",
                Value::Null,
            )),
        };
        match planned {
            Ok(t) => {
                hosts.push(HostJob::update(t));
                pre.push(None);
            }
            Err(e) => {
                hosts.push(HostJob::decided(label, Code::Notfqdn));
                pre.push(Some(e.item_json()));
            }
        }
    }
    let ctx = ctx.clone();
    let render = Box::new(move |results: &[HostOutcome]| {
        let mut ok = 0usize;
        let mut list = Vec::with_capacity(results.len());
        for (o, pre) in results.iter().zip(pre.iter()) {
            if let Some(e) = pre {
                list.push(json!({"hostname": o.host, "success": false, "error": e}));
            } else if o.code.is_success() {
                ok = ok.saturating_add(1);
                let mut v =
                    json!({"hostname": o.host, "success": true, "changed": o.code == Code::Good});
                for (rtype, key) in [(RrType::A, "ipv4"), (RrType::Aaaa, "ipv6")] {
                    if o.current.iter().any(|(r, _)| *r == rtype) {
                        set_field(&mut v, key, json!(first_of(&o.current, rtype)));
                    }
                }
                list.push(v);
            } else {
                let (_, code, msg) = outcome_error(o);
                list.push(json!({"hostname": o.host, "success": false,
                                 "error": {"code": code, "message": msg}}));
            }
        }
        let total = results.len();
        let data = json!({
            "summary": {"total": total, "successful": ok, "failed": total.saturating_sub(ok)},
            "results": list,
        });
        if ok == total {
            ctx.ok(200, data)
        } else if ok > 0 {
            ctx.ok(207, data)
        } else {
            // Protocol rules, bulk results: all failed = 400 with the results and an error object.
            let mut body = error_body("validation_error", "All updates failed", None);
            set_field(&mut body, "data", data);
            let meta = json!({"request_id": ctx.request_id, "timestamp": iso8601(ctx.now_ms)});
            set_field(&mut body, "meta", meta);
            ctx.finish(Reply::json(400, &body))
        }
    });
    Ok(job(cfg, req, env, id, hosts, render))
}

// ------------------------------------------------------------------ reads

fn keep_target(
    cfg: &Config,
    zone: &Zone,
    name: Fqdn,
    types: &[RrType],
) -> Result<Target, FieldError> {
    Ok(Target {
        name,
        zone: zone.name.clone(),
        backend: backend_of(cfg, zone)?,
        ttl: zone.ttl,
        want: vec![],
        edits: types.iter().map(|t| (*t, Edit::Keep)).collect(),
    })
}

fn status(
    cfg: &Config,
    req: &Request,
    env: &Env,
    ctx: &Ctx,
    id: Authorized,
    raw: &str,
) -> Result<Box<Job>, Reply> {
    let name = percent_decode(raw)
        .and_then(|h| Fqdn::parse(&h).ok())
        .ok_or_else(|| ctx.error(400, "invalid_hostname", "Invalid hostname format"))?;
    need_scope(ctx, &id, Scope::Read)?;
    let zone = match cfg.zone_of(&name) {
        Some(z) if id.may_target(cfg, &name) => z,
        _ => return Err(ctx.error(404, "not_found", "Hostname not found")),
    };
    let target = keep_target(cfg, zone, name.clone(), &[RrType::A, RrType::Aaaa])
        .map_err(|e| e.reply(ctx))?;
    let meta = hoststate::read(env.kv, &name);
    let zone_ttl = zone.ttl;
    let ctx = ctx.clone();
    let render = Box::new(move |results: &[HostOutcome]| {
        let Some(o) = results.first().filter(|o| o.code.is_success()) else {
            return ctx.error(502, "dns_error", "DNS backend error");
        };
        ctx.ok(
            200,
            json!({
                "hostname": o.host,
                "ipv4": first_of(&o.current, RrType::A),
                "ipv6": first_of(&o.current, RrType::Aaaa),
                "ttl": meta.as_ref().map_or(zone_ttl, |m| m.ttl),
                "is_active": true,
                "updated_at": meta.as_ref().map(|m| iso8601(m.updated_ms)),
                "update_count_24h": meta.as_ref().map_or(0, |m| m.count_24h(ctx.now_ms)),
                "update_count_total": meta.as_ref().map_or(0, |m| m.count_total),
                "created_at": meta.as_ref().map(|m| iso8601(m.created_ms)),
            }),
        )
    });
    Ok(job(
        cfg,
        req,
        env,
        id,
        vec![HostJob::update(target)],
        render,
    ))
}

fn domains(
    cfg: &Config,
    req: &Request,
    env: &Env,
    ctx: &Ctx,
    id: Authorized,
) -> Result<Box<Job>, Reply> {
    need_scope(ctx, &id, Scope::Read)?;
    let names: Vec<Fqdn> = cfg
        .users
        .get(&id.identity().user)
        .map(|u| {
            u.hosts
                .iter()
                .filter(|h| id.may_target(cfg, h))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let mut hosts = Vec::new();
    let mut metas = Vec::new();
    for n in names {
        let Some(zone) = cfg.zone_of(&n) else {
            continue;
        };
        let Ok(t) = keep_target(cfg, zone, n.clone(), &[RrType::A, RrType::Aaaa]) else {
            continue;
        };
        metas.push((hoststate::read(env.kv, &n), zone.ttl));
        hosts.push(HostJob::update(t));
    }
    let ctx = ctx.clone();
    let render = Box::new(move |results: &[HostOutcome]| {
        if results.iter().any(|o| !o.code.is_success()) {
            return ctx.error(502, "dns_error", "DNS backend error");
        }
        let list: Vec<Value> = results
            .iter()
            .zip(metas.iter())
            .map(|(o, (meta, zone_ttl))| {
                json!({
                    "hostname": o.host,
                    "ipv4": first_of(&o.current, RrType::A),
                    "ipv6": first_of(&o.current, RrType::Aaaa),
                    "ttl": meta.as_ref().map_or(*zone_ttl, |m| m.ttl),
                    "updated_at": meta.as_ref().map(|m| iso8601(m.updated_ms)),
                    "created_at": meta.as_ref().map(|m| iso8601(m.created_ms)),
                    "is_custom_domain": false,
                })
            })
            .collect();
        ctx.ok(200, Value::Array(list))
    });
    Ok(job(cfg, req, env, id, hosts, render))
}

// ------------------------------------------------------------------ /txt

fn txt(
    cfg: &Config,
    req: &Request,
    env: &Env,
    ctx: &Ctx,
    id: Authorized,
) -> Result<Box<Job>, Reply> {
    let obj = body_object(req, ctx)?;
    let delete = req.method == "DELETE";
    let raw_name = match obj.get("hostname") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => {
            return Err(ctx.validation("hostname", "required", "hostname is required", Value::Null))
        }
        Some(other) => {
            return Err(ctx.validation(
                "hostname",
                "invalid_type",
                "hostname must be a string",
                other.clone(),
            ))
        }
    };
    let (name, host) = txt_name(&raw_name).map_err(|e| e.reply(ctx))?;
    let value = match obj.get("value") {
        Some(Value::String(s)) => Some(s.clone()),
        None | Some(Value::Null) if delete => None,
        None | Some(Value::Null) => {
            return Err(ctx.validation("value", "required", "value is required", Value::Null))
        }
        Some(other) => {
            return Err(ctx.validation(
                "value",
                "invalid_type",
                "value must be a string",
                other.clone(),
            ))
        }
    };
    if let Some(v) = &value {
        txt_value_check(v).map_err(|e| e.reply(ctx))?;
    }
    let ttl = if delete {
        DEFAULT_TXT_TTL
    } else {
        ttl_field(obj.get("ttl"), DEFAULT_TXT_TTL).map_err(|e| e.reply(ctx))?
    };
    need_scope(ctx, &id, Scope::Txt)?;
    let zone = owned_zone(cfg, &id, &host).map_err(|e| e.reply(ctx))?;
    let edit = if delete {
        Edit::Remove {
            values: value.clone().map(|v| vec![v]),
            must_exist: false,
        }
    } else {
        Edit::Add {
            values: value.clone().into_iter().collect(),
            max: cfg.apertodns.txt_max_records,
        }
    };
    let target = Target {
        name,
        zone: zone.name.clone(),
        backend: backend_of(cfg, zone).map_err(|e| e.reply(ctx))?,
        ttl,
        want: vec![],
        edits: vec![(RrType::Txt, edit)],
    };
    let ctx = ctx.clone();
    let render = Box::new(move |results: &[HostOutcome]| {
        let Some(o) = results.first() else {
            return ctx.error(500, "server_error", "Internal server error");
        };
        if !o.code.is_success() {
            let (status, code, msg) = outcome_error(o);
            return ctx.error(status, code, &msg);
        }
        let now = values_of(&o.current, RrType::Txt).len();
        if delete {
            let removed = values_of(&o.previous, RrType::Txt)
                .len()
                .saturating_sub(now);
            ctx.ok(
                200,
                json!({"hostname": o.host, "deleted": removed > 0, "values_removed": removed,
                       "remaining_count": now, "timestamp": iso8601(ctx.now_ms)}),
            )
        } else {
            ctx.ok(
                200,
                json!({"hostname": o.host, "value": value, "ttl": ttl, "record_count": now,
                       "timestamp": iso8601(ctx.now_ms)}),
            )
        }
    });
    Ok(job(
        cfg,
        req,
        env,
        id,
        vec![HostJob::update(target)],
        render,
    ))
}

fn txt_get(
    cfg: &Config,
    req: &Request,
    env: &Env,
    ctx: &Ctx,
    id: Authorized,
    raw: &str,
) -> Result<Box<Job>, Reply> {
    let decoded = percent_decode(raw)
        .ok_or_else(|| ctx.error(400, "invalid_hostname", "Invalid hostname format"))?;
    let (name, host) = txt_name(&decoded).map_err(|e| e.reply(ctx))?;
    need_scope(ctx, &id, Scope::Txt)?;
    let zone = owned_zone(cfg, &id, &host).map_err(|e| e.reply(ctx))?;
    let target = keep_target(cfg, zone, name, &[RrType::Txt]).map_err(|e| e.reply(ctx))?;
    let ctx = ctx.clone();
    let render = Box::new(move |results: &[HostOutcome]| {
        let Some(o) = results.first().filter(|o| o.code.is_success()) else {
            return ctx.error(502, "dns_error", "DNS backend error");
        };
        let values = values_of(&o.current, RrType::Txt);
        ctx.ok(
            200,
            json!({"hostname": o.host, "values": values, "ttl": DEFAULT_TXT_TTL,
                   "record_count": values.len()}),
        )
    });
    Ok(job(
        cfg,
        req,
        env,
        id,
        vec![HostJob::update(target)],
        render,
    ))
}

#[cfg(test)]
#[path = "apertodns_tests.rs"]
#[allow(clippy::string_slice, clippy::arithmetic_side_effects)] // test code
mod tests;
