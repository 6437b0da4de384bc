//! `/api/tokens`: list a user's tokens (configured and runtime), create one (shown once, stored
//! only hashed), revoke it, or regenerate it with the same name, scopes and hosts.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::Answer;
use crate::auth::{self, Identity};
use crate::config::{Config, Scope};
use crate::dialects::apertodns::Ctx;
use crate::exchange::Env;
use crate::kv::{keys, KvWrite};
use crate::names::Fqdn;
use crate::reply::Reply;
use crate::time::iso8601;
use crate::tokens::{self, IndexEntry, StoredToken};

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

pub(super) fn list_tokens(cfg: &Config, env: &Env, id: &Identity) -> Value {
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

pub(super) fn create_token(
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
pub(super) fn revoke_token(
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

pub(super) fn regenerate_token(
    cfg: &Config,
    env: &Env,
    ctx: &Ctx,
    id: &Identity,
    tid: &str,
) -> Answer {
    let (mut w, old) = revoke_token(cfg, env, ctx, id, tid)?;
    let (reply, w2) = create_token(cfg, env, ctx, id, &Map::new(), Some(&old))?;
    // The index write of the new token must see the old entry too: both come from the same read.
    w.extend(w2);
    Ok((reply, w))
}
