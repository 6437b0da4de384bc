//! Provider management under `/api/*` (docs/dialects.md, Management API: not part of the protocol, so not
//! under the well-known prefix): API tokens and webhook subscriptions, both kept in the shared KV
//! (`tokens.rs`, `webhooks.rs` describe the schema). Replies use the ApertoDNS JSON envelope.
//!
//! - `GET /api/tokens`, `POST /api/tokens` (201, the token shown once), `DELETE /api/tokens/{id}`
//! - `GET /api/webhooks`, `POST /api/webhooks` (201, the secret shown once),
//!   `PATCH /api/webhooks/{id}`, `DELETE /api/webhooks/{id}`
//!
//! Who may manage: a user with a Basic password, or an API token with the `admin` scope. A token
//! never grants more than it holds (scopes and hosts).

use std::collections::BTreeSet;

use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::apertodns::{authenticate_with, done, done_with, Ctx};
use super::set_field;
use crate::auth::{self, hex, Identity};
use crate::config::{Config, Scope};
use crate::exchange::{Env, Start};
use crate::kv::{keys, KvWrite};
use crate::names::Fqdn;
use crate::pipeline;
use crate::reply::Reply;
use crate::request::Request;
use crate::time::iso8601;
use crate::tokens::{self, IndexEntry, StoredToken};
use crate::webhooks::{self, Subscription, EVENTS};

pub const MAX_WEBHOOKS: usize = 10;

pub fn serves(path: &str) -> bool {
    ["/api/tokens", "/api/webhooks"]
        .iter()
        .any(|p| path == *p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/')))
}

/// Scope names a request may use: the protocol's and our own.
fn scope_of(name: &str) -> Option<Scope> {
    Some(match name {
        "dns:update" | "update" => Scope::Update,
        "domains:read" | "read" => Scope::Read,
        "txt:read" | "txt:write" | "txt:delete" | "txt" => Scope::Txt,
        // The official client's v1.0 `permissions` too.
        "admin" | "tokens" | "webhooks" | "tokens:write" | "webhooks:write" => Scope::Admin,
        _ => return None,
    })
}

fn scope_names(scopes: &BTreeSet<Scope>) -> Vec<&'static str> {
    let mut out = Vec::new();
    for s in scopes {
        match s {
            Scope::Update => out.push("dns:update"),
            Scope::Read => out.push("domains:read"),
            Scope::Txt => out.extend(["txt:read", "txt:write", "txt:delete"]),
            Scope::Admin => out.push("admin"),
        }
    }
    out
}

/// `"30d"`, `"12h"`, `"15m"`, `"3600s"` → milliseconds.
fn duration_ms(s: &str) -> Option<u64> {
    // By character, not byte: the last one may be multi-byte.
    let unit = s.chars().last()?;
    let n: u64 = s.strip_suffix(unit)?.parse().ok().filter(|n| *n > 0)?;
    let secs = match unit {
        'd' => n.checked_mul(86_400)?,
        'h' => n.checked_mul(3600)?,
        'm' => n.checked_mul(60)?,
        's' => n,
        _ => return None,
    };
    secs.checked_mul(1000)
        .filter(|ms| *ms <= 10 * 365 * 86_400_000)
}

pub fn handle(cfg: &Config, req: &Request, env: &Env) -> Start {
    let ctx = Ctx::new(req, env);
    let path = req.path_only();
    let (collection, id, action) = {
        let rest = path.trim_start_matches("/api/");
        let mut parts = rest.splitn(3, '/');
        (
            parts.next().unwrap_or(""),
            parts.next().filter(|s| !s.is_empty()),
            parts.next(),
        )
    };
    let allow = match (collection, id, action) {
        (_, None, None) => "GET, POST",
        ("tokens", Some(_), None) => "DELETE",
        ("tokens", Some(_), Some("regenerate")) => "POST",
        ("webhooks", Some(_), None) => "PATCH, DELETE",
        _ => return done(ctx.error(404, "not_found", "Endpoint not found")),
    };
    if !allow.split(", ").any(|m| m == req.method) {
        return done(
            ctx.error(405, "method_not_allowed", "Method not allowed")
                .with_header("allow", allow),
        );
    }
    let (identity, writes) = match authenticate_with(cfg, req, env, true) {
        Ok(a) => (a.identity().clone(), a.writes()),
        Err((reply, bad)) => return done_with(reply(&ctx), vec![], bad),
    };
    if identity.token_id.is_some() && !identity.scopes.contains(&Scope::Admin) {
        return done(ctx.error(
            403,
            "forbidden",
            "Managing tokens and webhooks needs the admin scope",
        ));
    }
    let body = || -> Result<Map<String, Value>, Reply> {
        match serde_json::from_slice::<Value>(&req.body) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(ctx.validation(
                "body",
                "invalid_type",
                "Request body must be a JSON object",
                Value::Null,
            )),
            Err(_) => Err(ctx.error(400, "invalid_json", "Request body is not valid JSON")),
        }
    };
    // New tokens (created or regenerated) count against the client's minting window.
    let mut counts = vec![];
    if collection == "tokens" && req.method == "POST" {
        match pipeline::mint(cfg, req, env) {
            Ok(c) => counts = c,
            Err(_) => {
                let after = cfg.rate_limits.mint_per_client.window_s.to_string();
                let reply = ctx
                    .error(429, "rate_limited", "Too many new tokens; try again later.")
                    .with_header("retry-after", &after);
                return done_with(reply, writes, vec![]);
            }
        }
    }
    let result = match (collection, req.method.as_str(), id, action) {
        ("tokens", "GET", None, _) => Ok((ctx.ok(200, list_tokens(cfg, env, &identity)), vec![])),
        ("tokens", "POST", None, _) => {
            body().and_then(|b| create_token(cfg, env, &ctx, &identity, &b, None))
        }
        ("tokens", "DELETE", Some(id), _) => revoke_token(cfg, env, &ctx, &identity, id)
            .map(|(w, _)| (ctx.ok(200, json!({"id": id, "deleted": true})), w)),
        ("tokens", "POST", Some(id), Some(_)) => regenerate_token(cfg, env, &ctx, &identity, id),
        ("webhooks", m, id, _) => webhooks_api(cfg, env, &ctx, &identity, m, id, &body),
        _ => Err(ctx.error(404, "not_found", "Endpoint not found")),
    };
    match result {
        Ok((reply, mut w)) => {
            w.extend(writes);
            done_with(reply, w, counts)
        }
        Err(reply) => done_with(reply, writes, vec![]),
    }
}

type Answer = Result<(Reply, Vec<KvWrite>), Reply>;

fn list_tokens(cfg: &Config, env: &Env, id: &Identity) -> Value {
    let mut out = Vec::new();
    for t in cfg.tokens.values().filter(|t| t.user == id.user) {
        out.push(json!({
            "id": t.id, "name": t.id, "scopes": scope_names(&t.scopes),
            "hosts": t.hosts.as_ref().map(|h| h.iter().map(|f| f.to_string()).collect::<Vec<_>>()),
            "active": t.active, "revoked": false, "source": "config",
            "lastUsedAt": auth::token_last_used(env.kv, &t.id).map(|s| iso8601(s.saturating_mul(1000))),
        }));
    }
    for e in tokens::index(env.kv, &id.user) {
        let Some(t) = tokens::lookup(env.kv, &e.sha256) else {
            continue;
        };
        let expired = t.expires_ms.is_some_and(|x| x <= env.now_ms);
        out.push(json!({
            "id": t.id, "name": t.name, "keyPrefix": t.prefix, "scopes": scope_names(&t.scope_set()),
            "hosts": t.hosts, "expiresAt": t.expires_ms.map(iso8601),
            "active": !t.revoked && !expired, "revoked": t.revoked,
            "createdAt": iso8601(t.created_ms), "source": "api",
            "lastUsedAt": auth::token_last_used(env.kv, &t.id).map(|s| iso8601(s.saturating_mul(1000))),
        }));
    }
    Value::Array(out)
}

fn create_token(
    cfg: &Config,
    env: &Env,
    ctx: &Ctx,
    id: &Identity,
    b: &Map<String, Value>,
    replacing: Option<&StoredToken>,
) -> Answer {
    let Some(key) = &cfg.apertodns.token_key else {
        return Err(ctx.error(
            500,
            "server_error",
            "Token creation needs apertodns.token_key in the configuration",
        ));
    };
    let name = match b.get("name").or_else(|| b.get("label")) {
        None | Some(Value::Null) => {
            replacing.map_or_else(|| "token".to_string(), |t| t.name.clone())
        }
        Some(Value::String(s))
            if !s.is_empty() && s.len() <= 100 && !s.chars().any(char::is_control) =>
        {
            s.clone()
        }
        Some(other) => {
            return Err(ctx.validation(
                "name",
                "invalid_format",
                "name must be a string of 1-100 characters",
                other.clone(),
            ))
        }
    };
    let scopes: BTreeSet<Scope> = match b.get("scopes").or_else(|| b.get("permissions")) {
        None | Some(Value::Null) => replacing.map_or_else(
            || {
                [Scope::Update, Scope::Read, Scope::Txt]
                    .into_iter()
                    .collect()
            },
            StoredToken::scope_set,
        ),
        Some(Value::Array(list)) => {
            let mut set = BTreeSet::new();
            for v in list {
                match v.as_str().and_then(scope_of) {
                    Some(s) => {
                        set.insert(s);
                    }
                    None => {
                        return Err(ctx.validation(
                            "scopes",
                            "invalid_value",
                            "unknown scope",
                            v.clone(),
                        ))
                    }
                }
            }
            set
        }
        Some(other) => {
            return Err(ctx.validation(
                "scopes",
                "invalid_type",
                "scopes must be an array",
                other.clone(),
            ))
        }
    };
    if scopes.is_empty() {
        return Err(ctx.validation("scopes", "required", "at least one scope", json!([])));
    }
    if id.token_id.is_some() && !scopes.is_subset(&id.scopes) {
        return Err(ctx.error(
            403,
            "forbidden",
            "A token cannot grant scopes it does not hold",
        ));
    }
    let hosts: Option<Vec<String>> = match b.get("hosts").or_else(|| b.get("allowed_hostnames")) {
        None | Some(Value::Null) => replacing.and_then(|t| t.hosts.clone()).or_else(|| {
            id.only_hosts
                .as_ref()
                .map(|h| h.iter().map(|f| f.to_string()).collect())
        }),
        Some(Value::Array(list)) => {
            let mut out = Vec::new();
            for v in list {
                let Some(name) = v.as_str().and_then(|s| Fqdn::parse(s).ok()) else {
                    return Err(ctx.validation(
                        "hosts",
                        "invalid_format",
                        "hosts must be hostnames",
                        v.clone(),
                    ));
                };
                if !auth::may_update(cfg, id, &name) {
                    return Err(ctx.error(
                        403,
                        "hostname_not_owned",
                        "User does not own this hostname",
                    ));
                }
                out.push(name.to_string());
            }
            Some(out)
        }
        Some(other) => {
            return Err(ctx.validation(
                "hosts",
                "invalid_type",
                "hosts must be an array",
                other.clone(),
            ))
        }
    };
    // Regenerating copies the old token's hosts: they too must be within the caller's.
    if let Some(only) = &id.only_hosts {
        let within = hosts.as_ref().is_some_and(|hs| {
            hs.iter()
                .all(|h| Fqdn::parse(h).is_ok_and(|f| only.contains(&f)))
        });
        if !within {
            return Err(ctx.error(
                403,
                "forbidden",
                "A token cannot grant hosts it does not hold",
            ));
        }
    }
    let expires_ms = match b.get("expiresIn").or_else(|| b.get("expires_in")) {
        None | Some(Value::Null) => replacing.and_then(|t| t.expires_ms),
        Some(Value::String(s)) => match duration_ms(s) {
            Some(ms) => Some(env.now_ms.saturating_add(ms)),
            None => {
                return Err(ctx.validation(
                    "expiresIn",
                    "invalid_format",
                    "expiresIn is like \"30d\", \"12h\", \"15m\"",
                    json!(s),
                ))
            }
        },
        Some(other) => {
            return Err(ctx.validation(
                "expiresIn",
                "invalid_type",
                "expiresIn must be a string",
                other.clone(),
            ))
        }
    };
    // A token minted by a token does not outlive it.
    let expires_ms = match (expires_ms, caller_expiry(env, id)) {
        (Some(e), Some(cap)) => Some(e.min(cap)),
        (e, cap) => e.or(cap),
    };
    let a = &cfg.apertodns;
    let token = tokens::generate(
        key.0.as_bytes(),
        &a.provider_id,
        &a.environment,
        env,
        &format!("{}\0{}\0{name}", id.user, ctx.request_id),
    );
    let hash = auth::token_hash(&token);
    let tid = format!("tok_{}", hash.get(..16).unwrap_or(&hash));
    let stored = StoredToken {
        id: tid.clone(),
        user: id.user.clone(),
        scopes: scopes.iter().map(|s| s.name().to_string()).collect(),
        hosts: hosts.clone(),
        name: name.clone(),
        prefix: token.chars().take(20).collect(),
        created_ms: env.now_ms,
        expires_ms,
        revoked: false,
    };
    let mut index = tokens::index(env.kv, &id.user);
    index.push(IndexEntry {
        id: tid.clone(),
        sha256: hash.clone(),
    });
    let writes = vec![
        KvWrite::put(
            keys::api_token(&hash),
            serde_json::to_vec(&stored).unwrap_or_default(),
        ),
        KvWrite::put(
            keys::user_tokens(&id.user),
            serde_json::to_vec(&index).unwrap_or_default(),
        ),
    ];
    let body = json!({
        "success": true,
        "data": {
            "id": tid, "name": name, "token": token, "key": token, "keyPrefix": stored.prefix,
            "scopes": scope_names(&scopes), "hosts": hosts, "expiresAt": expires_ms.map(iso8601),
            "createdAt": iso8601(env.now_ms),
        },
        "warning": "Save this key now. It will not be shown again.",
        "meta": {"request_id": ctx.request_id},
    });
    let status = if replacing.is_some() { 200 } else { 201 };
    Ok((ctx.finish(Reply::json(status, &body)), writes))
}

/// When the calling runtime token expires (static tokens and passwords do not).
fn caller_expiry(env: &Env, id: &Identity) -> Option<u64> {
    let tid = id.token_id.as_deref()?;
    let entry = tokens::index(env.kv, &id.user)
        .into_iter()
        .find(|e| e.id == tid)?;
    tokens::lookup(env.kv, &entry.sha256)?.expires_ms
}

/// Marks a runtime token revoked; the record stays so its use answers `token_revoked`.
fn revoke_token(
    cfg: &Config,
    env: &Env,
    ctx: &Ctx,
    id: &Identity,
    tid: &str,
) -> Result<(Vec<KvWrite>, StoredToken), Reply> {
    let entry = tokens::index(env.kv, &id.user)
        .into_iter()
        .find(|e| e.id == tid);
    let Some(t) = entry
        .as_ref()
        .and_then(|e| tokens::lookup(env.kv, &e.sha256))
    else {
        if cfg
            .tokens
            .values()
            .any(|t| t.user == id.user && t.id == tid)
        {
            return Err(ctx.error(
                403,
                "forbidden",
                "This token is defined in the configuration",
            ));
        }
        return Err(ctx.error(404, "token_not_found", "Token not found"));
    };
    let mut revoked = t.clone();
    revoked.revoked = true;
    let hash = entry.map(|e| e.sha256).unwrap_or_default();
    Ok((
        vec![KvWrite::put(
            keys::api_token(&hash),
            serde_json::to_vec(&revoked).unwrap_or_default(),
        )],
        t,
    ))
}

fn regenerate_token(cfg: &Config, env: &Env, ctx: &Ctx, id: &Identity, tid: &str) -> Answer {
    let (mut w, old) = revoke_token(cfg, env, ctx, id, tid)?;
    let (reply, w2) = create_token(cfg, env, ctx, id, &Map::new(), Some(&old))?;
    // The index write of the new token must see the old entry too: both come from the same read.
    w.extend(w2);
    Ok((reply, w))
}

fn webhook_json(s: &Subscription) -> Value {
    json!({"id": s.id, "url": s.url, "events": s.events, "hostname": s.host, "active": s.active,
           "createdAt": iso8601(s.created_ms), "updatedAt": iso8601(s.updated_ms)})
}

#[allow(clippy::too_many_arguments)]
fn webhooks_api(
    cfg: &Config,
    env: &Env,
    ctx: &Ctx,
    id: &Identity,
    method: &str,
    wid: Option<&str>,
    body: &dyn Fn() -> Result<Map<String, Value>, Reply>,
) -> Answer {
    let Some(settings) = &cfg.webhooks else {
        return Err(ctx.error(404, "not_found", "Webhooks are not enabled on this gateway"));
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
                                "invalid_value",
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
                "invalid_type",
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
                .map_err(|m| ctx.validation("url", "invalid_format", &m, Value::Null)),
            Some(other) => {
                Err(ctx.validation("url", "invalid_type", "url must be a string", other.clone()))
            }
        }
    };
    let check_secret = |v: Option<&Value>| -> Result<Option<String>, Reply> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.len() >= 32 && s.len() <= 256 => Ok(Some(s.clone())),
            Some(_) => Err(ctx.validation(
                "secret",
                "invalid_format",
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
            let url = check_url(b.get("url"))?
                .ok_or_else(|| ctx.validation("url", "required", "url is required", Value::Null))?;
            let events =
                check_events(b.get("events"))?.unwrap_or_else(|| vec!["ip_changed".into()]);
            let host = match b.get("hostname").or_else(|| b.get("domain")) {
                None | Some(Value::Null) => None,
                Some(v) => {
                    let Some(name) = v.as_str().and_then(|s| Fqdn::parse(s).ok()) else {
                        return Err(ctx.error(400, "invalid_hostname", "Invalid hostname format"));
                    };
                    if !auth::may_update(cfg, id, &name) {
                        return Err(ctx.error(
                            403,
                            "hostname_not_owned",
                            "User does not own this hostname",
                        ));
                    }
                    Some(name.to_string())
                }
            };
            if subs.len() >= MAX_WEBHOOKS {
                return Err(ctx.error(400, "invalid_request", "At most 10 webhooks per user"));
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
                            "required",
                            "secret is required (no apertodns.token_key to make one)",
                            Value::Null,
                        ));
                    };
                    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key.0.as_bytes()) else {
                        return Err(ctx.error(500, "server_error", "Internal server error"));
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
                return Err(ctx.error(404, "webhook_not_found", "Webhook not found"));
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
                        "invalid_type",
                        "active must be a boolean",
                        other.clone(),
                    ))
                }
            };
            let Some(s) = subs.get_mut(pos) else {
                return Err(ctx.error(404, "webhook_not_found", "Webhook not found"));
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
        _ => Err(ctx.error(404, "not_found", "Endpoint not found")),
    }
}

#[cfg(test)]
#[allow(clippy::string_slice, clippy::arithmetic_side_effects)] // test code
mod tests {
    use serde_json::{json, Value};

    use crate::testing::{
        body, get, header, json_body, request, status, Driver, RequestExt, TOKEN,
    };

    const HOME: &str = "home.dyn.example.test";

    fn post(path: &str, b: Value) -> crate::request::Request {
        request("POST", path, &b.to_string())
    }

    fn create(d: &mut Driver, b: Value) -> (String, String) {
        let o = d.run(post("/api/tokens", b).bearer(TOKEN));
        assert_eq!(status(&o), 201, "{}", body(&o));
        let v = json_body(&o);
        (
            v["data"]["id"].as_str().unwrap().to_string(),
            v["data"]["token"].as_str().unwrap().to_string(),
        )
    }

    fn update_with(d: &mut Driver, token: &str) -> crate::exchange::Outcome {
        d.run(
            post(
                "/.well-known/apertodns/v1/update",
                json!({"hostname": HOME, "ipv4": "192.0.2.7"}),
            )
            .bearer(token),
        )
    }

    #[test]
    fn a_created_token_is_shown_once_works_at_once_and_is_stored_only_hashed() {
        let mut d = Driver::demo();
        let o = d.run(
            post(
                "/api/tokens",
                json!({"name": "router", "scopes": ["dns:update"], "expiresIn": "30d"}),
            )
            .bearer(TOKEN),
        );
        assert_eq!(status(&o), 201, "{}", body(&o));
        let v = json_body(&o);
        assert_eq!(v["success"], true);
        assert_eq!(
            v["warning"],
            "Save this key now. It will not be shown again."
        );
        let token = v["data"]["token"].as_str().unwrap().to_string();
        assert!(token.starts_with("dynedge_live_"), "{token}");
        let random = token.trim_start_matches("dynedge_live_");
        assert_eq!(random.len(), 32);
        assert!(random
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(v["data"]["keyPrefix"], &token[..20]);
        assert_eq!(v["data"]["scopes"], json!(["dns:update"]));
        assert_eq!(v["data"]["expiresAt"], "2023-12-14T22:13:20.000Z");
        for (k, val) in d.kv.dump() {
            assert!(
                !k.contains(&token) && !String::from_utf8_lossy(&val).contains(&token),
                "token stored in clear under {k}"
            );
        }
        assert_eq!(status(&update_with(&mut d, &token)), 200);
        // Listed without the token, with its last use.
        let o = d.run(get("/api/tokens").bearer(TOKEN));
        let list = json_body(&o);
        assert!(!body(&o).contains(&token));
        let runtime = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["source"] == "api")
            .unwrap();
        assert_eq!(runtime["name"], "router");
        assert_eq!(runtime["active"], true);
        assert_eq!(runtime["lastUsedAt"], "2023-11-14T22:13:20.000Z");
        assert!(list["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == "demo-all" && t["source"] == "config"));
    }

    #[test]
    fn a_revoked_token_stops_at_once_with_token_revoked() {
        let mut d = Driver::demo();
        let (id, token) = create(&mut d, json!({"name": "laptop"}));
        assert_eq!(status(&update_with(&mut d, &token)), 200);
        let o = d.run(request("DELETE", &format!("/api/tokens/{id}"), "").bearer(TOKEN));
        assert_eq!(status(&o), 200, "{}", body(&o));
        assert_eq!(json_body(&o)["data"], json!({"id": id, "deleted": true}));
        let o = update_with(&mut d, &token);
        assert_eq!(status(&o), 401);
        assert_eq!(json_body(&o)["error"]["code"], "token_revoked");
        // DynDNS2 with the revoked token: badauth.
        let o = d
            .run(get(&format!("/nic/update?hostname={HOME}&myip=192.0.2.8")).basic("user", &token));
        assert_eq!(body(&o), "badauth\n");
        let o = d.run(request("DELETE", "/api/tokens/tok_nope", "").bearer(TOKEN));
        assert_eq!(
            (status(&o), json_body(&o)["error"]["code"].clone()),
            (404, json!("token_not_found"))
        );
        let o = d.run(request("DELETE", "/api/tokens/demo-all", "").bearer(TOKEN));
        assert_eq!(status(&o), 403, "static tokens are the configuration's");
    }

    #[test]
    fn regenerate_replaces_the_token_and_the_old_one_stops() {
        let mut d = Driver::demo();
        let (id, old) = create(&mut d, json!({"name": "nas", "scopes": ["dns:update"]}));
        let o = d.run(post(&format!("/api/tokens/{id}/regenerate"), json!({})).bearer(TOKEN));
        assert_eq!(status(&o), 200, "{}", body(&o));
        let new = json_body(&o)["data"]["token"].as_str().unwrap().to_string();
        assert_ne!(new, old);
        assert_eq!(json_body(&o)["data"]["name"], "nas");
        assert_eq!(status(&update_with(&mut d, &new)), 200);
        assert_eq!(
            json_body(&update_with(&mut d, &old))["error"]["code"],
            "token_revoked"
        );
    }

    #[test]
    fn an_expires_in_ending_in_a_multibyte_character_is_refused_and_the_gateway_goes_on() {
        let mut d = Driver::demo();
        for bad in ["1\u{e9}", "\u{e9}", "30\u{1F600}", ""] {
            let o = d
                .run(post("/api/tokens", json!({"expiresIn": bad})).basic("demo", "demo-password"));
            assert_eq!(status(&o), 400, "{bad:?}: {}", body(&o));
            assert_eq!(
                json_body(&o)["error"]["details"]["fields"][0]["field"],
                "expiresIn"
            );
        }
        let o =
            d.run(post("/api/tokens", json!({"expiresIn": "1d"})).basic("demo", "demo-password"));
        assert_eq!(status(&o), 201, "{}", body(&o));
    }

    #[test]
    fn a_host_restricted_token_cannot_regenerate_a_wider_token() {
        const OFFICE: &str = "office.dyn.example.test";
        let mut v: Value =
            serde_json::from_slice(include_bytes!("../../../../examples/dynedge.json")).unwrap();
        v["users"][0]["hosts"] = json!([HOME, OFFICE]);
        let mut d = Driver::new(crate::Config::from_json(v.to_string().as_bytes()).unwrap());
        let (office_id, office) = create(
            &mut d,
            json!({"name": "office", "scopes": ["dns:update"], "hosts": [OFFICE]}),
        );
        let (_, limited) = create(
            &mut d,
            json!({"scopes": ["dns:update", "admin"], "hosts": [HOME]}),
        );
        let regenerate = |d: &mut Driver, id: &str| {
            d.run(post(&format!("/api/tokens/{id}/regenerate"), json!({})).bearer(&limited))
        };
        let o = regenerate(&mut d, &office_id);
        assert_eq!(
            (status(&o), json_body(&o)["error"]["code"].clone()),
            (403, json!("forbidden")),
            "{}",
            body(&o)
        );
        let o = d.run(
            post(
                "/.well-known/apertodns/v1/update",
                json!({"hostname": OFFICE, "ipv4": "192.0.2.7"}),
            )
            .bearer(&office),
        );
        assert_eq!(status(&o), 200, "not revoked: {}", body(&o));
        // More scopes than the caller holds: refused too.
        let (txt_id, _) = create(
            &mut d,
            json!({"scopes": ["dns:update", "txt:write"], "hosts": [HOME]}),
        );
        assert_eq!(status(&regenerate(&mut d, &txt_id)), 403);
        // Within both: regenerated, with the same hosts; an unrestricted token gets the
        // caller's hosts.
        let (home_id, _) = create(&mut d, json!({"scopes": ["dns:update"], "hosts": [HOME]}));
        let (wide_id, _) = create(&mut d, json!({"scopes": ["dns:update"]}));
        for id in [home_id, wide_id] {
            let o = regenerate(&mut d, &id);
            assert_eq!(status(&o), 200, "{}", body(&o));
            assert_eq!(json_body(&o)["data"]["hosts"], json!([HOME]));
        }
    }

    #[test]
    fn a_token_minted_by_a_token_never_outlives_it() {
        let mut d = Driver::demo();
        let parent_expiry = "2023-11-14T23:13:20.000Z"; // now + 1 h
        let o = d.run(
            post(
                "/api/tokens",
                json!({"scopes": ["dns:update", "admin"], "expiresIn": "1h"}),
            )
            .bearer(TOKEN),
        );
        assert_eq!(json_body(&o)["data"]["expiresAt"], parent_expiry);
        let parent = json_body(&o)["data"]["token"].as_str().unwrap().to_string();
        let mut children = vec![];
        for b in [
            json!({"scopes": ["dns:update"], "expiresIn": "30d"}),
            json!({"scopes": ["dns:update"]}),
        ] {
            let o = d.run(post("/api/tokens", b.clone()).bearer(&parent));
            assert_eq!(status(&o), 201, "{b}: {}", body(&o));
            assert_eq!(json_body(&o)["data"]["expiresAt"], parent_expiry, "{b}");
            children.push(json_body(&o)["data"]["token"].as_str().unwrap().to_string());
        }
        // A shorter life is kept.
        let o = d.run(
            post(
                "/api/tokens",
                json!({"scopes": ["dns:update"], "expiresIn": "15m"}),
            )
            .bearer(&parent),
        );
        assert_eq!(
            json_body(&o)["data"]["expiresAt"],
            "2023-11-14T22:28:20.000Z"
        );
        // Regenerating a token without expiry: capped as well.
        let (never_id, _) = create(&mut d, json!({"scopes": ["dns:update"]}));
        let o =
            d.run(post(&format!("/api/tokens/{never_id}/regenerate"), json!({})).bearer(&parent));
        assert_eq!(status(&o), 200, "{}", body(&o));
        assert_eq!(json_body(&o)["data"]["expiresAt"], parent_expiry);
        children.push(json_body(&o)["data"]["token"].as_str().unwrap().to_string());
        d.advance_ms(3_600_000);
        for child in &children {
            let o = update_with(&mut d, child);
            assert_eq!(json_body(&o)["error"]["code"], "token_expired");
        }
    }

    #[test]
    fn an_expired_token_answers_token_expired() {
        let mut d = Driver::demo();
        let (_, token) = create(&mut d, json!({"expiresIn": "1h"}));
        d.advance_ms(3_600_000);
        let o = update_with(&mut d, &token);
        assert_eq!(json_body(&o)["error"]["code"], "token_expired");
    }

    #[test]
    fn tokens_never_grant_more_than_their_creator_holds() {
        let mut d = Driver::demo();
        let (_, limited) = create(
            &mut d,
            json!({"scopes": ["dns:update", "admin"], "hosts": [HOME]}),
        );
        let o = d.run(post("/api/tokens", json!({"scopes": ["domains:read"]})).bearer(&limited));
        assert_eq!(
            (status(&o), json_body(&o)["error"]["code"].clone()),
            (403, json!("forbidden"))
        );
        let (_, no_admin) = create(&mut d, json!({"scopes": ["dns:update"]}));
        let o = d.run(get("/api/tokens").bearer(&no_admin));
        assert_eq!(status(&o), 403);
        let o = d.run(
            post(
                "/api/tokens",
                json!({"hosts": ["neighbour.dyn.example.test"]}),
            )
            .bearer(TOKEN),
        );
        assert_eq!(json_body(&o)["error"]["code"], "hostname_not_owned");
        // A user's password may manage (the account owner).
        let o = d.run(
            post("/api/tokens", json!({"name": "from-password"})).basic("demo", "demo-password"),
        );
        assert_eq!(status(&o), 201, "{}", body(&o));
        let o = d.run(get("/api/tokens").basic("demo", "wrong"));
        assert_eq!(json_body(&o)["error"]["code"], "invalid_token");
    }

    #[test]
    fn management_requests_are_validated() {
        let mut d = Driver::demo();
        for (b, field) in [
            (json!({"scopes": ["root"]}), "scopes"),
            (json!({"scopes": []}), "scopes"),
            (json!({"scopes": "dns:update"}), "scopes"),
            (json!({"expiresIn": "forever"}), "expiresIn"),
            (json!({"name": ""}), "name"),
            (json!({"hosts": ["bad..name"]}), "hosts"),
        ] {
            let o = d.run(post("/api/tokens", b.clone()).bearer(TOKEN));
            assert_eq!(status(&o), 400, "{b}");
            assert_eq!(
                json_body(&o)["error"]["details"]["fields"][0]["field"],
                field,
                "{b}"
            );
        }
        let o = d.run(request("POST", "/api/tokens", "nope").bearer(TOKEN));
        assert_eq!(json_body(&o)["error"]["code"], "invalid_json");
        let o = d.run(request("PUT", "/api/tokens", "").bearer(TOKEN));
        assert_eq!((status(&o), header(&o, "allow")), (405, Some("GET, POST")));
        let o = d.run(get("/api/tokens"));
        assert_eq!(
            (status(&o), json_body(&o)["error"]["code"].clone()),
            (401, json!("unauthorized"))
        );
        let o = d.run(get("/api/webhooks").bearer(TOKEN));
        assert_eq!(status(&o), 404, "webhooks are off in the demo");
        assert!(d.calls.is_empty());
    }

    fn with_webhooks() -> Driver {
        let mut v: Value =
            serde_json::from_slice(include_bytes!("../../../../examples/dynedge.json")).unwrap();
        v["webhooks"] = json!({"cluster": "webhooks", "allow_ranges": ["127.0.0.0/8"],
                               "allow_hosts": ["hooks.example.com"]});
        Driver::new(crate::Config::from_json(v.to_string().as_bytes()).unwrap())
    }

    #[test]
    fn webhooks_are_created_listed_patched_deleted_and_deliver_signed_ip_changes() {
        let mut d = with_webhooks();
        let o = d.run(
            post(
                "/api/webhooks",
                json!({"url": "https://127.0.0.1:22443/hook", "events": ["ip_changed"]}),
            )
            .bearer(TOKEN),
        );
        assert_eq!(status(&o), 201, "{}", body(&o));
        let v = json_body(&o);
        let wid = v["data"]["id"].as_str().unwrap().to_string();
        let secret = v["data"]["secret"].as_str().unwrap().to_string();
        assert!(secret.len() >= 32);
        let o = d.run(get("/api/webhooks").bearer(TOKEN));
        assert!(!body(&o).contains(&secret), "the secret is shown once");
        assert_eq!(
            json_body(&o)["data"][0]["url"],
            "https://127.0.0.1:22443/hook"
        );

        let o = update_with(&mut d, TOKEN);
        assert_eq!(o.notify.len(), 1);
        let c = &o.notify[0].callout;
        let ts: u64 = c
            .headers
            .iter()
            .find(|(k, _)| k == "x-apertodns-timestamp")
            .unwrap()
            .1
            .parse()
            .unwrap();
        let sig = &c
            .headers
            .iter()
            .find(|(k, _)| k == "x-apertodns-signature")
            .unwrap()
            .1;
        assert_eq!(*sig, crate::webhooks::sign(&secret, ts, &c.body));

        let o = d.run(
            request(
                "PATCH",
                &format!("/api/webhooks/{wid}"),
                &json!({"active": false}).to_string(),
            )
            .bearer(TOKEN),
        );
        assert_eq!(json_body(&o)["data"]["active"], false);
        let o = d.run(
            post(
                "/.well-known/apertodns/v1/update",
                json!({"hostname": HOME, "ipv4": "192.0.2.8"}),
            )
            .bearer(TOKEN),
        );
        assert!(o.notify.is_empty(), "inactive: no delivery");
        let o = d.run(request("DELETE", &format!("/api/webhooks/{wid}"), "").bearer(TOKEN));
        assert_eq!(json_body(&o)["data"], json!({"id": wid, "deleted": true}));
        let o = d.run(request("DELETE", &format!("/api/webhooks/{wid}"), "").bearer(TOKEN));
        assert_eq!(json_body(&o)["error"]["code"], "webhook_not_found");
    }

    #[test]
    fn webhook_urls_and_secrets_are_checked() {
        let mut d = with_webhooks();
        for (b, field) in [
            (json!({"url": "http://hooks.example.com/x"}), "url"),
            (json!({"url": "https://10.0.0.1/x"}), "url"),
            (json!({"url": "https://169.254.169.254/latest"}), "url"),
            // Names that resolve to loopback or inside a network, or may: not listed.
            (json!({"url": "https://localtest.me/x"}), "url"),
            (
                json!({"url": "https://hooks.internal.example.org/x"}),
                "url",
            ),
            (json!({}), "url"),
            (
                json!({"url": "https://hooks.example.com/x", "secret": "short"}),
                "secret",
            ),
            (
                json!({"url": "https://hooks.example.com/x", "events": ["everything"]}),
                "events",
            ),
        ] {
            let o = d.run(post("/api/webhooks", b.clone()).bearer(TOKEN));
            assert_eq!(status(&o), 400, "{b}: {}", body(&o));
            assert_eq!(
                json_body(&o)["error"]["details"]["fields"][0]["field"],
                field,
                "{b}"
            );
        }
    }
}
