//! Credentials on the prefix (Bearer or `X-API-Key`; Basic only for the management API), the
//! scope check, and ownership of the hostname a request names.

use super::fields::FieldError;
use super::Ctx;
use crate::config::{Config, Scope, Zone};
use crate::credentials::{self, Presented};
use crate::dialects::Rejection;
use crate::exchange::Env;
use crate::names::Fqdn;
use crate::pipeline::AuthError;
use crate::pipeline::{self, Authorized, Denied, HostDenied};
use crate::reply::{ErrorCode, Reply};
use crate::request::Request;

/// A refusal: why (worded with the request context by [`Ctx::rejected`]), what it counts
/// against, and its audit lines.
pub(in crate::dialects) type AuthRefusal = (Rejection, Vec<crate::kv::KvCount>, Vec<String>);

/// Bearer or `X-API-Key` (Protocol rules: credentials); Basic and anything else is 401 on this prefix.
pub(super) fn authenticate(
    cfg: &Config,
    req: &Request,
    env: &Env,
) -> Result<Authorized, AuthRefusal> {
    authenticate_with(cfg, req, env, false)
}

/// How the request presents credentials; `Err` names what is wrong with a header present.
fn presented(req: &Request, allow_basic: bool) -> Result<Presented, &'static str> {
    match (req.header("authorization"), req.header("x-api-key")) {
        (Some(a), _) => {
            let (scheme, rest) = a.trim().split_once(' ').unwrap_or((a.trim(), ""));
            if scheme.eq_ignore_ascii_case("bearer") && !rest.trim().is_empty() {
                Ok(Presented::Bearer(rest.trim().to_string()))
            } else if allow_basic && scheme.eq_ignore_ascii_case("basic") {
                match credentials::presented(Some(a), None, None) {
                    p @ Presented::Password { .. } => Ok(p),
                    _ => Err("Malformed Authorization header"),
                }
            } else {
                Err("Bearer token required")
            }
        }
        (None, Some(k)) if !k.trim().is_empty() => Ok(Presented::Bearer(k.trim().to_string())),
        (None, Some(_)) => Err("Bearer token required"),
        (None, None) => Ok(Presented::None),
    }
}

/// As [`authenticate`]; `allow_basic` also accepts a user's Basic password (management API).
/// Goes through the guard pipeline: a header that is present but unusable is a failure too.
pub(in crate::dialects) fn authenticate_with(
    cfg: &Config,
    req: &Request,
    env: &Env,
    allow_basic: bool,
) -> Result<Authorized, AuthRefusal> {
    let unauthorized = |m: &'static str| Rejection::new(401, ErrorCode::Unauthorized, m);
    let (p, malformed) = match presented(req, allow_basic) {
        Ok(p) => (p, None),
        Err(m) => (Presented::Bearer(String::new()), Some(m)),
    };
    let r = match pipeline::authorize(cfg, req, env, p.into(), None) {
        Ok(a) => return Ok(a),
        Err(r) => r,
    };
    let rejection = match (r.denied, malformed) {
        (Denied::Limited { retry_after_s }, _) => {
            Rejection::new(429, ErrorCode::RateLimited, "").retry_after(retry_after_s)
        }
        (Denied::Unavailable, _) => Rejection::new(
            503,
            ErrorCode::ServiceUnavailable,
            "Credentials cannot be checked right now; try again later",
        ),
        (Denied::Missing, _) => unauthorized("Bearer token required"),
        (Denied::Bad(_), Some(m)) => unauthorized(m),
        (Denied::Bad(e), None) => {
            let (code, msg) = match e {
                AuthError::Revoked => (ErrorCode::TokenRevoked, "Token has been revoked"),
                AuthError::Expired => (ErrorCode::TokenExpired, "Token has expired"),
                AuthError::Missing => (ErrorCode::Unauthorized, "Bearer token required"),
                AuthError::Bad => (ErrorCode::InvalidToken, "Invalid or expired token"),
            };
            Rejection::new(401, code, msg)
        }
    };
    Err((rejection, r.counts, r.log))
}

pub(super) fn need_scope(ctx: &Ctx, id: &Authorized, scope: Scope) -> Result<(), Reply> {
    if id.has(scope) {
        Ok(())
    } else {
        Err(ctx.error(
            403,
            ErrorCode::Forbidden,
            "Insufficient permissions: the token lacks the scope for this endpoint",
        ))
    }
}

/// Ownership: one answer for unknown and foreign names (Protocol rules: ownership); a name the user owns
/// but the token may not touch is `hostname_forbidden`.
pub(super) fn owned_zone<'c>(
    cfg: &'c Config,
    id: &Authorized,
    name: &Fqdn,
) -> Result<&'c Zone, FieldError> {
    id.host(cfg, name).map_err(|e| match e {
        HostDenied::TokenRestricted => FieldError::status(
            403,
            ErrorCode::HostnameForbidden,
            "Token not authorized for this hostname",
        ),
        HostDenied::NotOwned => FieldError::status(
            403,
            ErrorCode::HostnameNotOwned,
            "User does not own this hostname",
        ),
    })
}
