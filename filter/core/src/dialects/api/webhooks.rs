//! `/api/webhooks`: a user's webhook subscriptions (at most [`MAX_WEBHOOKS`]), created with a
//! secret shown once, patched, deleted. Delivery and signing live in `crate::webhooks`.

use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::answer::Answer;
use crate::config::Config;
use crate::dialects::apertodns::Ctx;
use crate::dialects::set_field;
use crate::exchange::Env;
use crate::hex::hex;
use crate::identity::{self, Identity};
use crate::kv::{keys, KvWrite};
use crate::names::Fqdn;
use crate::reply::{ErrorCode, Reply};
use crate::time::iso8601;
use crate::webhooks::{self, Subscription, EVENTS};

const MAX_WEBHOOKS: usize = 10;

fn webhook_json(s: &Subscription) -> Value {
    json!({"id": s.id, "url": s.url, "events": s.events, "hostname": s.host, "active": s.active,
           "createdAt": iso8601(s.created_ms), "updatedAt": iso8601(s.updated_ms)})
}

#[allow(clippy::too_many_arguments)]
pub(super) fn webhooks_api(
    cfg: &Config,
    env: &Env,
    ctx: &Ctx,
    id: &Identity,
    method: &str,
    wid: Option<&str>,
    body: &dyn Fn() -> Result<Map<String, Value>, Reply>,
) -> Answer {
    let Some(settings) = &cfg.webhooks else {
        return Err(ctx.error(
            404,
            ErrorCode::NotFound,
            "Webhooks are not enabled on this gateway",
        ));
    };
    let mut subs = webhooks::subscriptions(env.kv, &id.user);
    let save = |subs: &Vec<Subscription>| {
        vec![KvWrite::put(
            keys::webhooks(&id.user),
            serde_json::to_vec(subs).unwrap_or_default(),
        )]
    };
    let check_events = |v: Option<&Value>| -> Result<Option<Vec<String>>, Reply> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(list)) if !list.is_empty() => {
                let mut out = Vec::new();
                for e in list {
                    let name = match e.as_str() {
                        Some("ip_change") => "ip_changed",
                        Some("domain_create") => "hostname_created",
                        Some("domain_delete") => "hostname_deleted",
                        Some(n) if EVENTS.contains(&n) => n,
                        _ => {
                            return Err(ctx.validation(
                                "events",
                                ErrorCode::InvalidValue,
                                "unknown event",
                                e.clone(),
                            ))
                        }
                    };
                    out.push(name.to_string());
                }
                Ok(Some(out))
            }
            Some(other) => Err(ctx.validation(
                "events",
                ErrorCode::InvalidType,
                "events must be a non-empty array",
                other.clone(),
            )),
        }
    };
    let check_url = |v: Option<&Value>| -> Result<Option<String>, Reply> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(u)) => webhooks::check_url(u, &settings.policy)
                .map(|_| Some(u.clone()))
                .map_err(|m| ctx.validation("url", ErrorCode::InvalidFormat, &m, Value::Null)),
            Some(other) => Err(ctx.validation(
                "url",
                ErrorCode::InvalidType,
                "url must be a string",
                other.clone(),
            )),
        }
    };
    let check_secret = |v: Option<&Value>| -> Result<Option<String>, Reply> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.len() >= 32 && s.len() <= 256 => Ok(Some(s.clone())),
            Some(_) => Err(ctx.validation(
                "secret",
                ErrorCode::InvalidFormat,
                "secret must be 32-256 characters",
                Value::Null,
            )),
        }
    };
    match (method, wid) {
        ("GET", None) => Ok((
            ctx.ok(200, Value::Array(subs.iter().map(webhook_json).collect())),
            vec![],
        )),
        ("POST", None) => {
            let b = body()?;
            let url = check_url(b.get("url"))?.ok_or_else(|| {
                ctx.validation("url", ErrorCode::Required, "url is required", Value::Null)
            })?;
            let events =
                check_events(b.get("events"))?.unwrap_or_else(|| vec!["ip_changed".into()]);
            let host = match b.get("hostname").or_else(|| b.get("domain")) {
                None | Some(Value::Null) => None,
                Some(v) => {
                    let Some(name) = v.as_str().and_then(|s| Fqdn::parse(s).ok()) else {
                        return Err(ctx.error(
                            400,
                            ErrorCode::InvalidHostname,
                            "Invalid hostname format",
                        ));
                    };
                    if !identity::may_update(cfg, id, &name) {
                        return Err(ctx.error(
                            403,
                            ErrorCode::HostnameNotOwned,
                            "User does not own this hostname",
                        ));
                    }
                    Some(name.to_string())
                }
            };
            if subs.len() >= MAX_WEBHOOKS {
                return Err(ctx.error(
                    400,
                    ErrorCode::InvalidRequest,
                    "At most 10 webhooks per user",
                ));
            }
            let mut h = Sha256::new();
            h.update(env.random.to_le_bytes());
            h.update(env.now_ms.to_le_bytes());
            h.update(url.as_bytes());
            h.update(ctx.request_id.as_bytes());
            let digest = hex(&h.finalize());
            let wid = format!("wh_{}", digest.get(..16).unwrap_or(&digest));
            let secret = match check_secret(b.get("secret"))? {
                Some(s) => s,
                None => {
                    let Some(key) = &cfg.apertodns.token_key else {
                        return Err(ctx.validation(
                            "secret",
                            ErrorCode::Required,
                            "secret is required (no apertodns.token_key to make one)",
                            Value::Null,
                        ));
                    };
                    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key.0.as_bytes()) else {
                        return Err(ctx.error(
                            500,
                            ErrorCode::ServerError,
                            "Internal server error",
                        ));
                    };
                    mac.update(wid.as_bytes());
                    mac.update(&env.random.to_le_bytes());
                    format!("whsec_{}", hex(&mac.finalize().into_bytes()))
                }
            };
            let sub = Subscription {
                id: wid,
                url,
                events,
                secret: secret.clone(),
                active: true,
                host,
                created_ms: env.now_ms,
                updated_ms: env.now_ms,
            };
            let mut data = webhook_json(&sub);
            set_field(&mut data, "secret", json!(secret));
            subs.push(sub);
            let body = json!({"success": true, "data": data,
                              "warning": "Save this secret now. It will not be shown again.",
                              "meta": {"request_id": ctx.request_id}});
            Ok((ctx.finish(Reply::json(201, &body)), save(&subs)))
        }
        (m, Some(wid)) => {
            let Some(pos) = subs.iter().position(|s| s.id == wid) else {
                return Err(ctx.error(404, ErrorCode::WebhookNotFound, "Webhook not found"));
            };
            if m == "DELETE" {
                subs.remove(pos);
                return Ok((
                    ctx.ok(200, json!({"id": wid, "deleted": true})),
                    save(&subs),
                ));
            }
            let b = body()?;
            let url = check_url(b.get("url"))?;
            let events = check_events(b.get("events"))?;
            let secret = check_secret(b.get("secret"))?;
            let active = match b.get("active") {
                None | Some(Value::Null) => None,
                Some(Value::Bool(a)) => Some(*a),
                Some(other) => {
                    return Err(ctx.validation(
                        "active",
                        ErrorCode::InvalidType,
                        "active must be a boolean",
                        other.clone(),
                    ))
                }
            };
            let Some(s) = subs.get_mut(pos) else {
                return Err(ctx.error(404, ErrorCode::WebhookNotFound, "Webhook not found"));
            };
            if let Some(u) = url {
                s.url = u;
            }
            if let Some(e) = events {
                s.events = e;
            }
            if let Some(x) = secret {
                s.secret = x;
            }
            if let Some(a) = active {
                s.active = a;
            }
            s.updated_ms = env.now_ms;
            let data = webhook_json(s);
            Ok((ctx.ok(200, data), save(&subs)))
        }
        _ => Err(ctx.error(404, ErrorCode::NotFound, "Endpoint not found")),
    }
}
