//! Dialects: each turns its wire format into an update [`Job`] (or an immediate reply) and
//! renders the job's results. Auth, ownership, planning and backends are shared.

pub mod dyndns2;
pub mod helpers;

use crate::config::Config;
use crate::exchange::{Env, Start};
use crate::reply::Reply;
use crate::request::Request;

/// How a DynDNS2 endpoint maps reply codes to HTTP statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMode {
    /// dyn.com and ApertoDNS Layer 1: 200 for every code (old routers read only the body).
    Always200,
    /// CertaDNS: 401 badauth, 404 nohost, 429 abuse, 500 dnserr, ...
    CertaDns,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Dyndns2(StatusMode),
    CheckIp,
    MyIp,
    Health,
}

impl Route {
    /// Whether a body may carry parameters (form POSTs).
    pub fn reads_body(self) -> bool {
        matches!(self, Route::Dyndns2(_))
    }
}

/// Which dialect serves a path (the path without its query).
pub fn route(path: &str) -> Option<Route> {
    Some(match path {
        "/nic/update" | "/update" => Route::Dyndns2(StatusMode::Always200),
        "/domains/update"
        | "/domains/nic/update"
        | "/domains/v2/update"
        | "/domains/dyndns/update"
        | "/v3/update" => Route::Dyndns2(StatusMode::CertaDns),
        "/nic/checkip" | "/checkip" => Route::CheckIp,
        "/domains/my-ip" => Route::MyIp,
        "/health" | "/healthz" => Route::Health,
        _ => return None,
    })
}

pub fn handle(cfg: &Config, req: &Request, route: Route, env: &Env) -> Start {
    match route {
        Route::Dyndns2(mode) => dyndns2::handle(cfg, req, mode, env),
        Route::CheckIp => Start::Reply(helpers::checkip(cfg, req)),
        Route::MyIp => Start::Reply(helpers::my_ip(cfg, req)),
        Route::Health => Start::Reply(helpers::health()),
    }
}

pub fn payload_too_large(req: &Request, _route: Route) -> Reply {
    let msg = "request body too large";
    if req.wants_json() {
        Reply::json(
            413,
            &serde_json::json!({"status": "error", "code": "payload_too_large", "message": msg}),
        )
    } else {
        Reply::text(413, format!("payload_too_large: {msg}\n"))
    }
}
