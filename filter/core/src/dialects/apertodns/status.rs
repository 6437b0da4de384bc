//! The reads: `GET /status/{hostname}` and `GET /domains`, answered from what is in DNS now
//! and the per-host bookkeeping (update counts, times).

use serde_json::{json, Value};

use super::auth::need_scope;
use super::plan::{first_of, keep_target};
use super::{job, Ctx, Render, Shape};
use crate::backends::RrType;
use crate::config::{Config, Scope};
use crate::dialects::percent_decode;
use crate::exchange::Env;
use crate::hoststate::{self, HostMeta};
use crate::job::{HostJob, HostOutcome, Job};
use crate::names::Fqdn;
use crate::pipeline::Authorized;
use crate::reply::{ErrorCode, Reply};
use crate::request::Request;
use crate::time::iso8601;

pub(super) fn status(
    cfg: &Config,
    req: &Request,
    env: &Env,
    ctx: &Ctx,
    id: Authorized,
    raw: &str,
) -> Result<(Box<Job>, Render), Reply> {
    let name = percent_decode(raw)
        .and_then(|h| Fqdn::parse(&h).ok())
        .ok_or_else(|| ctx.error(400, ErrorCode::InvalidHostname, "Invalid hostname format"))?;
    need_scope(ctx, &id, Scope::Read)?;
    let zone = match cfg.zone_of(&name) {
        Some(z) if id.may_target(cfg, &name) => z,
        _ => return Err(ctx.error(404, ErrorCode::NotFound, "Hostname not found")),
    };
    let target = keep_target(cfg, zone, name.clone(), &[RrType::A, RrType::Aaaa])
        .map_err(|e| e.reply(ctx))?;
    let meta = hoststate::read(env.kv, &name);
    let zone_ttl = zone.ttl;
    Ok(job(
        cfg,
        req,
        env,
        id,
        vec![HostJob::update(target)],
        ctx,
        Shape::Status { meta, zone_ttl },
    ))
}

pub(super) fn domains(
    cfg: &Config,
    req: &Request,
    env: &Env,
    ctx: &Ctx,
    id: Authorized,
) -> Result<(Box<Job>, Render), Reply> {
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
    Ok(job(cfg, req, env, id, hosts, ctx, Shape::Domains { metas }))
}

pub(super) fn render_status(
    ctx: &Ctx,
    meta: Option<&HostMeta>,
    zone_ttl: u32,
    results: &[HostOutcome],
) -> Reply {
    let Some(o) = results.first().filter(|o| o.code.is_success()) else {
        return ctx.error(502, ErrorCode::DnsError, "DNS backend error");
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
}

pub(super) fn render_domains(
    ctx: &Ctx,
    metas: &[(Option<HostMeta>, u32)],
    results: &[HostOutcome],
) -> Reply {
    if results.iter().any(|o| !o.code.is_success()) {
        return ctx.error(502, ErrorCode::DnsError, "DNS backend error");
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
}
