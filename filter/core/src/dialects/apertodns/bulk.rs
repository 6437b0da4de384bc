//! `POST /bulk-update`: up to [`MAX_BULK`] updates in one request, each item checked on its own
//! and answered in `results` (200 all good, 207 mixed, 400 all failed).

use serde_json::{json, Value};

use super::auth::{need_scope, owned_zone};
use super::fields::{body_object, parse_item, resolve, FieldError};
use super::plan::{addr_target, first_of, outcome_error};
use super::{error_body, job, Ctx, Render, Shape, MAX_BULK};
use crate::backends::RrType;
use crate::config::{Config, Scope};
use crate::dialects::set_field;
use crate::exchange::Env;
use crate::job::{HostJob, HostOutcome, Job};
use crate::pipeline::Authorized;
use crate::reply::{Code, ErrorCode, Reply};
use crate::request::Request;
use crate::time::iso8601;

pub(super) fn bulk(
    cfg: &Config,
    req: &Request,
    env: &Env,
    ctx: &Ctx,
    id: Authorized,
) -> Result<(Box<Job>, Render), Reply> {
    let obj = body_object(req, ctx)?;
    let items = match obj.get("updates") {
        Some(Value::Array(a)) => a,
        other => {
            return Err(ctx.validation(
                "updates",
                if other.is_none() {
                    ErrorCode::Required
                } else {
                    ErrorCode::InvalidType
                },
                "updates must be an array of update objects",
                other.cloned().unwrap_or(Value::Null),
            ))
        }
    };
    if items.len() > MAX_BULK {
        return Err(ctx.error(
            400,
            ErrorCode::BulkLimitExceeded,
            &format!("Max {MAX_BULK} hostnames per bulk request"),
        ));
    }
    let defaults = match obj.get("defaults") {
        None | Some(Value::Null) => None,
        Some(Value::Object(d)) => Some(d),
        Some(other) => {
            return Err(ctx.validation(
                "defaults",
                ErrorCode::InvalidType,
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
                ErrorCode::InvalidType,
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
    Ok(job(cfg, req, env, id, hosts, ctx, Shape::Bulk { pre }))
}

pub(super) fn render(ctx: &Ctx, pre: &[Option<Value>], results: &[HostOutcome]) -> Reply {
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
        let mut body = error_body(ErrorCode::ValidationError, "All updates failed", None);
        set_field(&mut body, "data", data);
        let meta = json!({"request_id": ctx.request_id, "timestamp": iso8601(ctx.now_ms)});
        set_field(&mut body, "meta", meta);
        ctx.finish(Reply::json(400, &body))
    }
}
