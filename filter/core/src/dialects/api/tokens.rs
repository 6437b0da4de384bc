//! `/api/tokens`: list a user's tokens (configured and runtime), create one (shown once, stored
//! only hashed), revoke it, or regenerate it with the same name, scopes, hosts and rules.
//!
//! A new token may carry rules (`tokens::TokenRules`): `allowed_subnets`, `max_age`,
//! `max_unused_period` and `policies` (`[{"host", "types"}]`); camelCase spellings are
//! accepted too. A token minting another passes on its own rules and never grants wider ones.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::answer::Answer;
use crate::config::{Config, Scope};
use crate::dialects::apertodns::Ctx;
use crate::exchange::Env;
use crate::identity::{self, Identity};
use crate::kv::{keys, KvWrite};
use crate::names::Fqdn;
use crate::reply::{ErrorCode, Reply};
use crate::time::iso8601;
use crate::token_rules::{self, RawRules, RuleRefusal, TokenRules};
use crate::tokens::{self, IndexEntry, StoredToken};
use crate::tokens::{stored_scopes, token_hash, token_last_used};

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
    // A bare number is not a unit-less `expiresIn`.
    if s.parse::<u64>().is_ok() {
        return None;
    }
    token_rules::duration_s(s)?.checked_mul(1000)
}

/// A token's rules in a listing: absent fields are not there.
fn rules_json(out: &mut Value, rules: &TokenRules) {
    let raw = rules.to_raw();
    if let Some(o) = out.as_object_mut() {
        if !raw.allowed_subnets.is_empty() {
            o.insert("allowedSubnets".into(), json!(raw.allowed_subnets));
        }
        if let Some(s) = raw.max_age_s {
            o.insert("maxAge".into(), json!(s));
        }
        if let Some(s) = raw.max_unused_period_s {
            o.insert("maxUnusedPeriod".into(), json!(s));
        }
        if let Some(p) = raw.policies {
            o.insert("policies".into(), json!(p));
        }
    }
}

pub(super) fn list_tokens(cfg: &Config, env: &Env, id: &Identity) -> Value {
    let mut out = Vec::new();
    let now_s = env.now_s();
    for t in cfg.tokens.values().filter(|t| t.user == id.user) {
        let last = token_last_used(env.kv, &t.id);
        let usable = t.rules.check(None, now_s, last, false);
        let aged = matches!(usable, Err(RuleRefusal::MaxAge | RuleRefusal::Unused));
        let mut v = json!({
            "id": t.id, "name": t.id, "scopes": scope_names(&t.scopes),
            "hosts": t.hosts.as_ref().map(|h| h.iter().map(|f| f.to_string()).collect::<Vec<_>>()),
            "active": t.active && !aged, "revoked": false, "source": "config",
            "lastUsedAt": last.map(|s| iso8601(s.saturating_mul(1000))),
            "expiresAt": t.rules.max_age_end_s().map(|s| iso8601(s.saturating_mul(1000))),
        });
        rules_json(&mut v, &t.rules);
        out.push(v);
    }
    for e in tokens::index(env.kv, &id.user) {
        let Some(t) = tokens::lookup(env.kv, &e.sha256) else {
            continue;
        };
        let rules = t.compiled_rules().unwrap_or_default();
        let last = token_last_used(env.kv, &t.id);
        let aged = matches!(
            rules.check(None, now_s, last, true),
            Err(RuleRefusal::MaxAge | RuleRefusal::Unused)
        );
        let expires = [
            t.expires_ms,
            rules.max_age_end_s().map(|s| s.saturating_mul(1000)),
        ]
        .into_iter()
        .flatten()
        .min();
        let expired = aged || expires.is_some_and(|x| x <= env.now_ms);
        let mut v = json!({
            "id": t.id, "name": t.name, "keyPrefix": t.prefix, "scopes": scope_names(&stored_scopes(&t)),
            "hosts": t.hosts, "expiresAt": expires.map(iso8601),
            "active": !t.revoked && !expired, "revoked": t.revoked,
            "createdAt": iso8601(t.created_ms), "source": "api",
            "lastUsedAt": last.map(|s| iso8601(s.saturating_mul(1000))),
        });
        rules_json(&mut v, &rules);
        out.push(v);
    }
    Value::Array(out)
}

/// The body's value under the deSEC (snake_case) or the camelCase name.
fn field<'b>(b: &'b Map<String, Value>, snake: &str, camel: &str) -> Option<&'b Value> {
    b.get(snake)
        .or_else(|| b.get(camel))
        .filter(|v| !v.is_null())
}

/// `max_age` / `max_unused_period`: seconds, or a duration like `"30d"`.
fn period_s(ctx: &Ctx, name: &str, v: Option<&Value>) -> Result<Option<u64>, Reply> {
    let Some(v) = v else {
        return Ok(None);
    };
    let secs = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => token_rules::duration_s(s),
        _ => None,
    };
    match secs.filter(|s| (1..=token_rules::MAX_PERIOD_S).contains(s)) {
        Some(s) => Ok(Some(s)),
        None => Err(ctx.validation(
            name,
            ErrorCode::InvalidFormat,
            &format!(
                "{name} is a number of seconds (1 to 10 years) or a duration like \"30d\", \"12h\", \"15m\""
            ),
            v.clone(),
        )),
    }
}

/// The rules a request's body gives (each field named as the request named it when wrong).
fn given_rules(ctx: &Ctx, b: &Map<String, Value>) -> Result<RawRules, Reply> {
    let allowed_subnets = match field(b, "allowed_subnets", "allowedSubnets") {
        None => vec![],
        Some(Value::Array(list)) if list.iter().all(Value::is_string) => list
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Some(other) => {
            return Err(ctx.validation(
                "allowed_subnets",
                ErrorCode::InvalidType,
                "allowed_subnets must be an array of CIDR ranges",
                other.clone(),
            ))
        }
    };
    let policies = match field(b, "policies", "policies") {
        None => None,
        Some(v) => match serde_json::from_value::<Vec<token_rules::RawPolicy>>(v.clone()) {
            Ok(p) => Some(p),
            Err(_) => {
                return Err(ctx.validation(
                    "policies",
                    ErrorCode::InvalidType,
                    "policies must be an array of {\"host\": hostname, \"types\": [\"A\"|\"AAAA\"|\"TXT\"]}",
                    v.clone(),
                ))
            }
        },
    };
    Ok(RawRules {
        allowed_subnets,
        max_age_s: period_s(ctx, "max_age", field(b, "max_age", "maxAge"))?,
        max_unused_period_s: period_s(
            ctx,
            "max_unused_period",
            field(b, "max_unused_period", "maxUnusedPeriod"),
        )?,
        policies,
    })
}

/// The rules of a new token: the body's, else the replaced token's, else the caller's; checked,
/// owned by the caller, and no wider than a calling token's.
fn new_rules(
    cfg: &Config,
    env: &Env,
    ctx: &Ctx,
    id: &Identity,
    b: &Map<String, Value>,
    replacing: Option<&StoredToken>,
) -> Result<RawRules, Reply> {
    let given = given_rules(ctx, b)?;
    let base = replacing.map(|t| t.rules.clone()).unwrap_or_default();
    let merged = RawRules {
        allowed_subnets: if given.allowed_subnets.is_empty() {
            base.allowed_subnets
        } else {
            given.allowed_subnets
        },
        max_age_s: given.max_age_s.or(base.max_age_s),
        max_unused_period_s: given.max_unused_period_s.or(base.max_unused_period_s),
        policies: given.policies.or(base.policies),
    };
    let caller = id.token_id.as_ref().map(|_| &id.rules);
    let raw = token_rules::inherit(merged, caller);
    let rules = TokenRules::compile(&raw, Some(env.now_s())).map_err(|e| {
        let field = e
            .field
            .replace("max_age_s", "max_age")
            .replace("max_unused_period_s", "max_unused_period");
        let provided = json!(b.get(field.split(['[', '.']).next().unwrap_or_default()));
        ctx.validation(
            &field,
            ErrorCode::InvalidValue,
            &format!("{field}: {}", e.message),
            provided,
        )
    })?;
    for p in rules.policies.iter().flatten() {
        if let Some(h) = &p.host {
            if !identity::may_update(cfg, id, h) {
                return Err(ctx.error(
                    403,
                    ErrorCode::HostnameNotOwned,
                    "User does not own this hostname",
                ));
            }
        }
    }
    if let Some(c) = caller {
        if let Err(field) = rules.within(c) {
            return Err(ctx.error(
                403,
                ErrorCode::Forbidden,
                &format!("A token cannot grant wider {field} than its own"),
            ));
        }
    }
    Ok(raw)
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
            ErrorCode::ServerError,
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
                ErrorCode::InvalidFormat,
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
            stored_scopes,
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
                            ErrorCode::InvalidValue,
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
                ErrorCode::InvalidType,
                "scopes must be an array",
                other.clone(),
            ))
        }
    };
    if scopes.is_empty() {
        return Err(ctx.validation(
            "scopes",
            ErrorCode::Required,
            "at least one scope",
            json!([]),
        ));
    }
    if id.token_id.is_some() && !scopes.is_subset(&id.scopes) {
        return Err(ctx.error(
            403,
            ErrorCode::Forbidden,
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
                        ErrorCode::InvalidFormat,
                        "hosts must be hostnames",
                        v.clone(),
                    ));
                };
                if !identity::may_update(cfg, id, &name) {
                    return Err(ctx.error(
                        403,
                        ErrorCode::HostnameNotOwned,
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
                ErrorCode::InvalidType,
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
                ErrorCode::Forbidden,
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
                    ErrorCode::InvalidFormat,
                    "expiresIn is like \"30d\", \"12h\", \"15m\"",
                    json!(s),
                ))
            }
        },
        Some(other) => {
            return Err(ctx.validation(
                "expiresIn",
                ErrorCode::InvalidType,
                "expiresIn must be a string",
                other.clone(),
            ))
        }
    };
    let rules = new_rules(cfg, env, ctx, id, b, replacing)?;
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
        (env.random, env.now_ms),
        &format!("{}\0{}\0{name}", id.user, ctx.request_id),
    );
    let hash = token_hash(&token);
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
        rules,
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
            "allowedSubnets": stored.rules.allowed_subnets, "maxAge": stored.rules.max_age_s,
            "maxUnusedPeriod": stored.rules.max_unused_period_s, "policies": stored.rules.policies,
        },
        "warning": "Save this key now. It will not be shown again.",
        "meta": {"request_id": ctx.request_id},
    });
    let status = if replacing.is_some() { 200 } else { 201 };
    Ok((ctx.finish(Reply::json(status, &body)), writes))
}

/// When the calling token expires (its `expiresIn` or its `max_age`; passwords do not).
fn caller_expiry(env: &Env, id: &Identity) -> Option<u64> {
    let tid = id.token_id.as_deref()?;
    let by_age = id.rules.max_age_end_s().map(|s| s.saturating_mul(1000));
    let runtime = tokens::index(env.kv, &id.user)
        .into_iter()
        .find(|e| e.id == tid)
        .and_then(|entry| tokens::lookup(env.kv, &entry.sha256)?.expires_ms);
    [by_age, runtime].into_iter().flatten().min()
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
                ErrorCode::Forbidden,
                "This token is defined in the configuration",
            ));
        }
        return Err(ctx.error(404, ErrorCode::TokenNotFound, "Token not found"));
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
