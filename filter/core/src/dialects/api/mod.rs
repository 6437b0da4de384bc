//! Provider management under `/api/*` (docs/dialects.md, Management API: not part of the protocol, so not
//! under the well-known prefix): API tokens and webhook subscriptions, both kept in the shared KV
//! (`crate::tokens`, `crate::webhooks` describe the schema). Replies use the ApertoDNS JSON envelope.
//!
//! - `GET /api/tokens`, `POST /api/tokens` (201, the token shown once), `DELETE /api/tokens/{id}`
//! - `GET /api/webhooks`, `POST /api/webhooks` (201, the secret shown once),
//!   `PATCH /api/webhooks/{id}`, `DELETE /api/webhooks/{id}`
//!
//! Who may manage: a user with a Basic password, or an API token with the `admin` scope. A token
//! never grants more than it holds (scopes and hosts).
//!
//! Here: routing, the manager's credentials and the minting limit; `tokens` and `webhooks` hold
//! the two collections.

mod tokens;
mod webhooks;

use serde_json::{json, Map, Value};

use self::tokens::{create_token, list_tokens, regenerate_token, revoke_token};
use self::webhooks::webhooks_api;
use super::apertodns::{authenticate_with, done, done_with, logged, Ctx};
use crate::config::{Config, Scope};
use crate::dialects::Start;
use crate::exchange::Env;
use crate::kv::KvWrite;
use crate::pipeline;
use crate::reply::{ErrorCode, Reply};
use crate::request::Request;

pub(super) fn serves(path: &str) -> bool {
    ["/api/tokens", "/api/webhooks"]
        .iter()
        .any(|p| path == *p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/')))
}

pub(super) fn handle(cfg: &Config, req: &Request, env: &Env) -> Start {
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
        _ => return done(ctx.error(404, ErrorCode::NotFound, "Endpoint not found")),
    };
    if !allow.split(", ").any(|m| m == req.method) {
        return done(
            ctx.error(405, ErrorCode::MethodNotAllowed, "Method not allowed")
                .with_header("allow", allow),
        );
    }
    let (identity, writes) = match authenticate_with(cfg, req, env, true) {
        Ok(a) => (a.identity().clone(), a.writes()),
        Err((r, bad, log)) => return logged(done_with(ctx.rejected(&r), vec![], bad), log),
    };
    if identity.token_id.is_some() && !identity.scopes.contains(&Scope::Admin) {
        return done(ctx.error(
            403,
            ErrorCode::Forbidden,
            "Managing tokens and webhooks needs the admin scope",
        ));
    }
    let body = || -> Result<Map<String, Value>, Reply> {
        match serde_json::from_slice::<Value>(&req.body) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(ctx.validation(
                "body",
                ErrorCode::InvalidType,
                "Request body must be a JSON object",
                Value::Null,
            )),
            Err(_) => Err(ctx.error(
                400,
                ErrorCode::InvalidJson,
                "Request body is not valid JSON",
            )),
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
                    .error(
                        429,
                        ErrorCode::RateLimited,
                        "Too many new tokens; try again later.",
                    )
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
        _ => Err(ctx.error(404, ErrorCode::NotFound, "Endpoint not found")),
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

#[cfg(test)]
#[allow(clippy::string_slice, clippy::arithmetic_side_effects)] // test code
mod tests;
#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)] // test code
mod token_rules_tests;
