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
mod envelope;
mod fields;
mod plan;
mod public;
mod status;
mod txt;
mod update;

use self::auth::authenticate;
pub(in crate::dialects) use self::auth::authenticate_with;
use self::bulk::bulk;
pub use self::config::{ApertoSettings, RawAperto};
pub use self::envelope::Render;
use self::envelope::{
    error_body, job, rate_limited, Shape, DEFAULT_TTL, MAX_BULK, PROTOCOL_VERSION, TTL_RANGE,
};
pub(in crate::dialects) use self::envelope::{error_reply, Ctx, PREFIX};
use self::public::{health, info};
use self::status::{domains, status};
use self::txt::{txt, txt_get};
use self::update::update;
use crate::config::Config;
use crate::dialects::Start;
use crate::exchange::{Env, Outcome};
use crate::job::HostOutcome;
use crate::kv::KvCount;
use crate::kv::KvWrite;
use crate::pipeline::{self, Limit};
use crate::reply::{ErrorCode, Reply};
use crate::request::Request;

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
            let state = pipeline::window(env, bucket, &who, limit);
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
        let state = pipeline::window(env, bucket, &subject, limit);
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

pub(super) fn done(reply: Reply) -> Start {
    Start::Reply(Outcome::reply(reply))
}

pub(super) fn done_with(reply: Reply, writes: Vec<KvWrite>, counts: Vec<KvCount>) -> Start {
    Start::Reply(Outcome {
        reply: Some(reply),
        writes,
        counts,
        ..Outcome::default()
    })
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
