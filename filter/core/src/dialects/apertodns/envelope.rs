//! The ApertoDNS envelope every endpoint shares: the per-request context, the error bodies,
//! the protocol's limits, and the reply shape of a job. It names none of the endpoints.

use serde_json::{json, Value};

use crate::config::Config;
use crate::dialects::{set_field, Rejection};
use crate::exchange::Env;
use crate::hoststate::HostMeta;
use crate::job::{HostJob, Job};
use crate::pipeline::{Authorized, RateState};
use crate::reply::{ErrorCode, Reply};
use crate::request::Request;
use crate::time::iso8601;

pub(in crate::dialects) const PREFIX: &str = "/.well-known/apertodns/v1/";
pub(super) const PROTOCOL_VERSION: &str = "1.4.0";
pub(super) const MAX_BULK: usize = 100;
pub(super) const DEFAULT_TTL: u32 = 300;
pub(super) const TTL_RANGE: std::ops::RangeInclusive<i64> = 60..=86_400;

// ------------------------------------------------------------------ replies

/// Per-request context every reply carries: request id, time, rate-limit state.
#[derive(Clone)]
pub(in crate::dialects) struct Ctx {
    pub(in crate::dialects) request_id: String,
    pub(super) now_ms: u64,
    pub(super) rate: Option<RateState>,
}

impl Ctx {
    pub(in crate::dialects) fn new(req: &Request, env: &Env) -> Ctx {
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

    pub(in crate::dialects) fn finish(&self, mut r: Reply) -> Reply {
        r.headers
            .push(("x-request-id".into(), self.request_id.clone()));
        if let Some(rate) = &self.rate {
            r.headers.extend(rate.headers());
        }
        r
    }

    pub(in crate::dialects) fn ok(&self, status: u16, data: Value) -> Reply {
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

    pub(in crate::dialects) fn error(&self, status: u16, code: ErrorCode, message: &str) -> Reply {
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
    pub(in crate::dialects) fn validation(
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

pub(super) fn error_body(code: ErrorCode, message: &str, details: Option<Value>) -> Value {
    let mut error = json!({"code": code, "message": message});
    if let Some(d) = details {
        set_field(&mut error, "details", d);
    }
    json!({"success": false, "error": error})
}

/// An ApertoDNS error without request context (payload too large, before routing).
pub(in crate::dialects) fn error_reply(
    status: u16,
    code: ErrorCode,
    message: &str,
    details: Option<Value>,
) -> Reply {
    Reply::json(status, &error_body(code, message, details))
}

pub(super) fn rate_limited(ctx: &Ctx) -> Reply {
    let after = ctx.rate.as_ref().map_or(60, |r| r.retry_after_s);
    rate_limited_after(ctx, after)
}

/// 429 `rate_limited`, retry after `after` seconds (in the body and, without a window's
/// headers, in `Retry-After`).
pub(super) fn rate_limited_after(ctx: &Ctx, after: u64) -> Reply {
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

pub(super) fn job(
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
    pub(super) ctx: Ctx,
    pub(super) shape: Shape,
}

/// One variant per endpoint that runs a job, with what its reply needs besides the outcomes.
pub(super) enum Shape {
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
