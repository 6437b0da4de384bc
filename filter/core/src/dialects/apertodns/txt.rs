//! TXT records for ACME challenges: `POST`/`DELETE /txt`, `GET /txt/{name}`, and the `txt`
//! member of `/update` (parsed with the other fields in `fields.rs`). Names must be `_acme-challenge.` + a host
//! the caller owns.

use serde_json::{json, Value};

use super::auth::{need_scope, owned_zone};
use super::fields::{body_object, ttl_field, txt_name, txt_value_check};
use super::plan::{backend_of, keep_target, outcome_error, values_of};
use super::{job, Ctx, Render, Shape};
use crate::backends::RrType;
use crate::config::{Config, Scope};
use crate::dialects::acme::DEFAULT_TXT_TTL;
use crate::dialects::percent_decode;
use crate::exchange::Env;
use crate::job::{Edit, HostJob, HostOutcome, Job, Target};
use crate::pipeline::Authorized;
use crate::reply::{ErrorCode, Reply};
use crate::request::Request;
use crate::time::iso8601;

pub(super) fn txt(
    cfg: &Config,
    req: &Request,
    env: &Env,
    ctx: &Ctx,
    id: Authorized,
) -> Result<(Box<Job>, Render), Reply> {
    let obj = body_object(req, ctx)?;
    let delete = req.method == "DELETE";
    let raw_name = match obj.get("hostname") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => {
            return Err(ctx.validation(
                "hostname",
                ErrorCode::Required,
                "hostname is required",
                Value::Null,
            ))
        }
        Some(other) => {
            return Err(ctx.validation(
                "hostname",
                ErrorCode::InvalidType,
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
            return Err(ctx.validation(
                "value",
                ErrorCode::Required,
                "value is required",
                Value::Null,
            ))
        }
        Some(other) => {
            return Err(ctx.validation(
                "value",
                ErrorCode::InvalidType,
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
    Ok(job(
        cfg,
        req,
        env,
        id,
        vec![HostJob::update(target)],
        ctx,
        Shape::Txt { delete, value, ttl },
    ))
}

pub(super) fn txt_get(
    cfg: &Config,
    req: &Request,
    env: &Env,
    ctx: &Ctx,
    id: Authorized,
    raw: &str,
) -> Result<(Box<Job>, Render), Reply> {
    let decoded = percent_decode(raw)
        .ok_or_else(|| ctx.error(400, ErrorCode::InvalidHostname, "Invalid hostname format"))?;
    let (name, host) = txt_name(&decoded).map_err(|e| e.reply(ctx))?;
    need_scope(ctx, &id, Scope::Txt)?;
    let zone = owned_zone(cfg, &id, &host).map_err(|e| e.reply(ctx))?;
    let target = keep_target(cfg, zone, name, &[RrType::Txt]).map_err(|e| e.reply(ctx))?;
    Ok(job(
        cfg,
        req,
        env,
        id,
        vec![HostJob::update(target)],
        ctx,
        Shape::TxtGet,
    ))
}

pub(super) fn render_txt(
    ctx: &Ctx,
    delete: bool,
    value: Option<&str>,
    ttl: u32,
    results: &[HostOutcome],
) -> Reply {
    let Some(o) = results.first() else {
        return ctx.error(500, ErrorCode::ServerError, "Internal server error");
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
}

pub(super) fn render_txt_get(ctx: &Ctx, results: &[HostOutcome]) -> Reply {
    let Some(o) = results.first().filter(|o| o.code.is_success()) else {
        return ctx.error(502, ErrorCode::DnsError, "DNS backend error");
    };
    let values = values_of(&o.current, RrType::Txt);
    ctx.ok(
        200,
        json!({"hostname": o.host, "values": values, "ttl": DEFAULT_TXT_TTL,
               "record_count": values.len()}),
    )
}
