//! `POST /update`: one hostname's A/AAAA (literal, `"auto"` or `null`) and optionally the TXT
//! member the official client sends for an ACME challenge below it.

use serde_json::json;

use super::auth::{need_scope, owned_zone};
use super::fields::{body_object, parse_item, resolve};
use super::plan::{addr_target, backend_of, first_of, outcome_error};
use super::{job, Ctx, Render, Shape};
use crate::backends::RrType;
use crate::config::{Config, Scope};
use crate::dialects::acme::DEFAULT_TXT_TTL;
use crate::dialects::set_field;
use crate::exchange::Env;
use crate::hoststate::{self, HostMeta};
use crate::job::{Edit, HostJob, HostOutcome, Job, Target};
use crate::pipeline::Authorized;
use crate::reply::{Code, ErrorCode, Reply};
use crate::request::Request;
use crate::time::iso8601;

pub(super) fn update(
    cfg: &Config,
    req: &Request,
    env: &Env,
    ctx: &Ctx,
    id: Authorized,
) -> Result<(Box<Job>, Render), Reply> {
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
    Ok(job(
        cfg,
        req,
        env,
        id,
        hosts,
        ctx,
        Shape::Update { meta, ttl },
    ))
}

pub(super) fn render(
    ctx: &Ctx,
    meta: Option<&HostMeta>,
    ttl: u32,
    results: &[HostOutcome],
) -> Reply {
    let Some(main) = results.first() else {
        return ctx.error(500, ErrorCode::ServerError, "Internal server error");
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
}
