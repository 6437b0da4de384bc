//! ApertoDNS protocol v1 (Layers 0–3) under `/.well-known/apertodns/v1/`. The rules it follows
//! are listed by name in docs/dialects.md, "Protocol rules". Every reply on the prefix is JSON `{"success": ...}` with the Layer 0 headers,
//! `X-Request-ID`, and `X-RateLimit-*` where a limit applies.
//!
//! Guard ladder (Protocol rules: guard ladder): route → method → rate limit for public endpoints → credentials
//! (Bearer or X-API-Key only) → rate limit per token → JSON → fields (hostname, format, ttl,
//! literal addresses) → scope → ownership → `"auto"` → backend.
//!
//! Here: the reply envelope ([`Ctx`]), routing and the rate limits. The endpoints live beside it
//! (`public`, `update`, `bulk`, `status`, `txt`), as do credentials (`auth`), field parsing
//! (`fields`), target planning (`plan`) and the `apertodns` configuration (`config`).

mod auth;
mod bulk;
mod config;
mod fields;
mod plan;
mod public;
mod status;
mod txt;
mod update;

use serde_json::{json, Value};

use self::auth::authenticate;
pub(in crate::dialects) use self::auth::authenticate_with;
use self::bulk::bulk;
pub use self::config::{ApertoSettings, RawAperto};
use self::public::{health, info};
use self::status::{domains, status};
use self::txt::{txt, txt_get};
use self::update::update;
use super::{set_field, Rejection};
use crate::config::Config;
use crate::dialects::Start;
use crate::exchange::{Env, Outcome};
use crate::hoststate::HostMeta;
use crate::job::{HostJob, HostOutcome, Job};
use crate::kv::KvWrite;
use crate::limits::{self, Limit, RateState};
use crate::pipeline::{self, Authorized};
use crate::reply::{ErrorCode, Reply};
use crate::request::Request;
use crate::time::iso8601;

pub(super) const PREFIX: &str = "/.well-known/apertodns/v1/";
const PROTOCOL_VERSION: &str = "1.4.0";
const MAX_BULK: usize = 100;
const DEFAULT_TTL: u32 = 300;
const TTL_RANGE: std::ops::RangeInclusive<i64> = 60..=86_400;

// ------------------------------------------------------------------ replies

/// Per-request context every reply carries: request id, time, rate-limit state.
#[derive(Clone)]
pub(super) struct Ctx {
    pub(super) request_id: String,
    now_ms: u64,
    rate: Option<RateState>,
}

impl Ctx {
    pub(super) fn new(req: &Request, env: &Env) -> Ctx {
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

    pub(super) fn finish(&self, mut r: Reply) -> Reply {
        r.headers
            .push(("x-request-id".into(), self.request_id.clone()));
        if let Some(rate) = &self.rate {
            r.headers.extend(rate.headers());
        }
        r
    }

    pub(super) fn ok(&self, status: u16, data: Value) -> Reply {
        self.finish(Reply::json(
            status,
            &json!({"success": true, "data": data, "meta": {"request_id": self.request_id}}),
        ))
    }

    /// A refusal of the credentials: 429 with when to come back, or the error (a 401 asks
    /// for a Bearer token).
    pub(in crate::dialects) fn rejected(&self, r: &Rejection) -> Reply {
        if let (ErrorCode::RateLimited, Some(after)) = (r.code, r.retry_after_s) {
            return rate_limited_after(self, after);
        }
        let reply = self.error(r.status, r.code, &r.message);
        if r.status == 401 {
            return reply.with_header("www-authenticate", "Bearer realm=\"dynedge\"");
        }
        reply
    }

    pub(super) fn error(&self, status: u16, code: ErrorCode, message: &str) -> Reply {
        self.error_with(status, code, message, None)
    }

    fn error_with(
        &self,
        status: u16,
        code: ErrorCode,
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
    pub(super) fn validation(
        &self,
        field: &str,
        code: ErrorCode,
        message: &str,
        provided: Value,
    ) -> Reply {
        self.error_with(
            400,
            ErrorCode::ValidationError,
            message,
            Some(json!({"fields": [
                {"field": field, "code": code, "message": message, "provided": provided}
            ]})),
        )
    }
}

fn error_body(code: ErrorCode, message: &str, details: Option<Value>) -> Value {
    let mut error = json!({"code": code, "message": message});
    if let Some(d) = details {
        set_field(&mut error, "details", d);
    }
    json!({"success": false, "error": error})
}

/// An ApertoDNS error without request context (payload too large, before routing).
pub(super) fn error_reply(
    status: u16,
    code: ErrorCode,
    message: &str,
    details: Option<Value>,
) -> Reply {
    Reply::json(status, &error_body(code, message, details))
}

pub(super) fn done(reply: Reply) -> Start {
    Start::Reply(Outcome::reply(reply))
}

pub(super) fn done_with(reply: Reply, writes: Vec<KvWrite>, counts: Vec<limits::KvCount>) -> Start {
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

pub(super) fn handle(cfg: &Config, req: &Request, env: &Env) -> Start {
    let mut ctx = Ctx::new(req, env);
    let rest = req.path_only().strip_prefix(PREFIX).unwrap_or_default();
    let Some((ep, arg)) = Endpoint::parse(rest) else {
        return done(ctx.error(404, ErrorCode::NotFound, "Endpoint not found"));
    };
    if !ep.allow().split(", ").any(|m| m == req.method) {
        return done(
            ctx.error(405, ErrorCode::MethodNotAllowed, "Method not allowed")
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
        Err((r, bad, log)) => return logged(done_with(ctx.rejected(&r), vec![], bad), log),
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
        Endpoint::Info | Endpoint::Health => {
            Err(ctx.error(500, ErrorCode::ServerError, "unreachable"))
        }
    };
    match started {
        Ok((mut job, render)) => {
            // The job carries the authentication's writes already.
            job.counts.extend(counts);
            if !matches!(ep, Endpoint::Update | Endpoint::BulkUpdate | Endpoint::Txt) {
                // Reads are no sign of life for expiry.
                job.track_seen = false;
            }
            Start::Job(job, super::Render::Aperto(render))
        }
        Err(reply) => done_with(reply, writes, counts),
    }
}

/// `start` with audit lines added to its outcome.
pub(in crate::dialects) fn logged(start: Start, log: Vec<String>) -> Start {
    match start {
        Start::Reply(mut out) => {
            out.log.extend(log);
            Start::Reply(out)
        }
        job => job,
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
        ErrorCode::RateLimited,
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

fn job(
    cfg: &Config,
    req: &Request,
    env: &Env,
    id: Authorized,
    hosts: Vec<HostJob>,
    ctx: &Ctx,
    shape: Shape,
) -> (Box<Job>, Render) {
    let render = Render {
        ctx: ctx.clone(),
        shape,
    };
    (Job::new(cfg, "apertodns", id, req, hosts, env), render)
}

/// An ApertoDNS reply to an update job: the request's envelope (`ctx`) around one shape.
pub struct Render {
    ctx: Ctx,
    shape: Shape,
}

/// One variant per endpoint that runs a job, with what its reply needs besides the outcomes.
enum Shape {
    Update {
        meta: Option<HostMeta>,
        ttl: u32,
    },
    /// Per item, the error found while parsing it (then its host was decided `notfqdn`).
    Bulk {
        pre: Vec<Option<Value>>,
    },
    Status {
        meta: Option<HostMeta>,
        zone_ttl: u32,
    },
    /// Per host, its metadata and its zone's TTL.
    Domains {
        metas: Vec<(Option<HostMeta>, u32)>,
    },
    Txt {
        delete: bool,
        value: Option<String>,
        ttl: u32,
    },
    TxtGet,
}

impl Render {
    pub fn render(&self, results: &[HostOutcome]) -> Reply {
        let ctx = &self.ctx;
        match &self.shape {
            Shape::Update { meta, ttl } => update::render(ctx, meta.as_ref(), *ttl, results),
            Shape::Bulk { pre } => bulk::render(ctx, pre, results),
            Shape::Status { meta, zone_ttl } => {
                status::render_status(ctx, meta.as_ref(), *zone_ttl, results)
            }
            Shape::Domains { metas } => status::render_domains(ctx, metas, results),
            Shape::Txt { delete, value, ttl } => {
                txt::render_txt(ctx, *delete, value.as_deref(), *ttl, results)
            }
            Shape::TxtGet => txt::render_txt_get(ctx, results),
        }
    }
}

#[cfg(test)]
#[allow(clippy::string_slice, clippy::arithmetic_side_effects)] // test code
mod tests;
