//! Dialects: each turns its wire format into an update [`Job`] (or an immediate reply) and
//! renders the job's results. Auth, ownership, planning and backends are shared.

pub(crate) mod acme;
pub mod acmedns;
pub mod apertodns;
mod api;
pub mod custom;
pub mod dyndns2;
pub mod dynv6;
pub mod helpers;
pub mod httpreq;
pub mod path_query;

use crate::config::Config;
use crate::exchange::{Env, Outcome};
use crate::job::{HostOutcome, Job};
use crate::names::Fqdn;
use crate::pipeline;
use crate::reply::{Code, ErrorCode, Reply};
use crate::request::Request;

/// What a dialect makes of a request: an immediate reply, or an update job and the shape of
/// the reply its outcomes become.
pub enum Start {
    Reply(Outcome),
    Job(Box<Job>, Render),
}

pub use dyndns2::settings::StatusMode;

/// The shape of a finished update job's reply, with what the shape needs. The dialect that
/// parsed the request chooses it; [`Render::render`] turns the hosts' outcomes into the reply.
pub enum Render {
    /// `good 192.0.2.1` lines (text) or the JSON form.
    Dyndns2 { mode: StatusMode, json: bool },
    /// An operator-defined endpoint's DynDNS2-style reply.
    Custom { mode: StatusMode, json: bool },
    /// `/update-by-path`, `/update-by-query`, `/delete-by-path`.
    PathQuery { delete: bool, json: bool },
    /// dynv6's `addresses updated`/`unchanged` for a zone (and its prefix, if one was set).
    Dynv6 {
        zone: String,
        prefix: Option<String>,
        json: bool,
    },
    /// acme-dns `/update`: the TXT value echoed.
    AcmeDns { txt: String },
    /// lego httpreq `present`/`cleanup`.
    HttpReq,
    /// The ApertoDNS API's JSON envelopes.
    Aperto(apertodns::Render),
}

impl Render {
    pub fn render(&self, results: &[HostOutcome]) -> Reply {
        match self {
            Render::Dyndns2 { mode, json } => dyndns2::render(results, *mode, *json),
            Render::Custom { mode, json } => custom::render(results, *mode, *json),
            Render::PathQuery { delete, json } => path_query::render(results, *delete, *json),
            Render::Dynv6 { zone, prefix, json } => {
                dynv6::render(results, zone, prefix.as_deref(), *json)
            }
            Render::AcmeDns { txt } => acmedns::render(results, txt),
            Render::HttpReq => httpreq::render(results),
            Render::Aperto(r) => r.render(results),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Dyndns2(StatusMode),
    CheckIp,
    MyIp,
    Health,
    /// Everything under `/.well-known/apertodns/v1/`.
    Aperto,
    /// Provider management under `/api/tokens` and `/api/webhooks` (docs/dialects.md, Management API).
    ManagementApi,
    /// dynv6 `/api/update`.
    Dynv6,
    /// `/update-by-path/...`, `/update-by-query`, `/delete-by-path/...` (Python dyndns).
    PathQuery(path_query::Kind),
    /// An operator-defined endpoint: index into `Config::endpoints`.
    Custom(usize),
    /// The acme-dns API (`/acme-dns/*`, root `/register`, `POST /update` + `X-Api-User`).
    AcmeDns(acmedns::Endpoint),
    /// lego's httpreq protocol (`/httpreq/present|cleanup`, `/present`, `/cleanup`).
    HttpReq(httpreq::Action),
}

impl Route {
    /// Whether a body may carry parameters (form POSTs).
    pub fn reads_body(self) -> bool {
        matches!(
            self,
            Route::Dyndns2(_)
                | Route::Aperto
                | Route::ManagementApi
                | Route::Custom(_)
                | Route::AcmeDns(_)
                | Route::HttpReq(_)
        )
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
        "/api/update" => Route::Dynv6,
        "/update-by-query" => Route::PathQuery(path_query::Kind::UpdateByQuery),
        p if p.starts_with(apertodns::PREFIX) => Route::Aperto,
        p if p.starts_with("/update-by-path/") => Route::PathQuery(path_query::Kind::UpdateByPath),
        p if p.starts_with("/delete-by-path/") => Route::PathQuery(path_query::Kind::DeleteByPath),
        p if api::serves(p) => Route::ManagementApi,
        p if httpreq::route(p).is_some() => Route::HttpReq(httpreq::route(p)?),
        _ => return None,
    })
}

/// The route for a path: operator-defined endpoints first (first match wins), then the
/// built-in table.
pub fn route_in(cfg: &Config, path: &str) -> Option<Route> {
    cfg.endpoints
        .iter()
        .position(|e| e.path == path)
        .map(Route::Custom)
        .or_else(|| route(path))
}

/// Path segments followed by a secret segment (an API token), for [`loggable_path`].
const SECRET_AFTER: &[&str] = &["update-by-path", "delete-by-path"];

/// The request path as logs may show it: no query string (passwords and tokens travel there)
/// and the secret of the path dialects masked (`/update-by-path/***/host/ip`). The adapters put
/// it in place of `:path` for every request dynedge answers, so no access-log format can show a
/// credential.
///
/// The masking does not trust the layout: the marker segment is recognised percent-decoded,
/// in any case and with `;` parameters; after it the first non-empty segment is masked, and of
/// the others only what is plainly a hostname or an address is shown.
pub fn loggable_path(path: &str) -> String {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let mut segments = path.split('/');
    let mut out: Vec<&str> = Vec::new();
    let mut exact = None;
    for seg in segments.by_ref() {
        let norm = percent_decode(seg)
            .unwrap_or_else(|| seg.to_string())
            .to_ascii_lowercase();
        let head = norm.split(';').next().unwrap_or_default();
        if let Some(name) = SECRET_AFTER.iter().find(|n| head.starts_with(**n)) {
            out.push(name);
            exact = Some(head == *name);
            break;
        }
        out.push(seg);
    }
    match exact {
        None => return path.to_string(),
        // More in the marker segment (`update-by-path%2FSECRET`): hidden too.
        Some(false) => out.push("***"),
        Some(true) => {}
    }
    let plain =
        |s: &str| s.is_ascii() && (Fqdn::parse(s).is_ok() || crate::addr::parse_ip(s).is_ok());
    let mut secret_masked = false;
    for seg in segments {
        if seg.is_empty() || (secret_masked && plain(seg)) {
            out.push(seg);
        } else {
            secret_masked = true;
            out.push("***");
        }
    }
    out.join("/")
}

/// The route for a request: acme-dns first (its root `/update` is told from DynDNS2's by
/// method and header, so it needs the request), then [`route_in`].
pub fn route_request(cfg: &Config, req: &Request) -> Option<Route> {
    acmedns::route(cfg, req)
        .map(Route::AcmeDns)
        .or_else(|| route_in(cfg, req.path_only()))
}

pub fn handle(cfg: &Config, req: &Request, route: Route, env: &Env) -> Start {
    match route {
        Route::Dyndns2(mode) => dyndns2::handle(cfg, req, mode, env),
        Route::CheckIp => Start::Reply(helpers::checkip(cfg, req, pipeline::public())),
        Route::MyIp => Start::Reply(helpers::my_ip(cfg, req, pipeline::public())),
        Route::Health => Start::Reply(helpers::health(req, pipeline::public())),
        Route::Aperto => apertodns::handle(cfg, req, env),
        Route::ManagementApi => api::handle(cfg, req, env),
        Route::Dynv6 => dynv6::handle(cfg, req, env),
        Route::PathQuery(kind) => path_query::handle(cfg, req, kind, env),
        Route::Custom(i) => custom::handle(cfg, req, i, env),
        Route::AcmeDns(ep) => acmedns::handle(cfg, req, ep, env),
        Route::HttpReq(action) => httpreq::handle(cfg, req, action, env),
    }
}

pub fn payload_too_large(req: &Request, route: Route) -> Reply {
    let msg = "request body too large";
    if matches!(route, Route::Aperto | Route::ManagementApi) {
        return apertodns::error_reply(413, ErrorCode::PayloadTooLarge, msg, None);
    }
    if req.wants_json() {
        Reply::json(
            413,
            &serde_json::json!({"status": "error", "code": ErrorCode::PayloadTooLarge, "message": msg}),
        )
    } else {
        Reply::text(413, format!("payload_too_large: {msg}\n"))
    }
}

/// A server-side failure (`911`) in the route's own words: the answer of an exchange that ends
/// before its dialect could answer (the host lost the request while its body was awaited).
pub fn emergency(cfg: &Config, req: &Request, route: Route) -> Reply {
    let json = req.wants_json();
    match route {
        Route::Dyndns2(mode) => dyndns2::code_reply(Code::Emergency, mode, json),
        Route::Custom(i) => match cfg.endpoints.get(i) {
            Some(ep) => custom::code_reply(Code::Emergency, ep.mode, json),
            None => Reply::emergency(),
        },
        Route::Aperto | Route::ManagementApi => {
            apertodns::error_reply(500, ErrorCode::ServerError, "Internal server error", None)
        }
        _ => error_reply(json, 500, Code::Emergency, "internal error"),
    }
}

/// A percent-encoded path segment (`encodeURIComponent` on the client side).
fn percent_decode(s: &str) -> Option<String> {
    crate::request::Params::parse(&format!("v={}", s.replace('+', "%2B")))
        .ok()?
        .one("v")
        .ok()
        .flatten()
        .map(str::to_string)
}

/// `doc[key] = value` for a JSON object, without serde_json's panic for anything else (which
/// leaves it unchanged).
pub(crate) fn set_field(doc: &mut serde_json::Value, key: &str, value: serde_json::Value) {
    if let Some(map) = doc.as_object_mut() {
        map.insert(key.to_string(), value);
    }
}

/// Why a dialect refused a request while parsing it: the HTTP status, the wire code, what to
/// tell the client, and when to come back (a rate limit's `Retry-After`). A dialect words it in
/// its own format, or with [`Rejection::reply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub code: ErrorCode,
    pub message: String,
    pub retry_after_s: Option<u64>,
}

impl Rejection {
    pub fn new(status: u16, code: impl Into<ErrorCode>, message: impl Into<String>) -> Rejection {
        Rejection {
            status,
            code: code.into(),
            message: message.into(),
            retry_after_s: None,
        }
    }

    pub fn retry_after(self, s: u64) -> Rejection {
        Rejection {
            retry_after_s: Some(s),
            ..self
        }
    }

    /// `code: message` as text, or the JSON error body ([`error_reply`]).
    pub fn reply(&self, json: bool) -> Reply {
        self.finish(error_reply(json, self.status, self.code, &self.message))
    }

    /// A dialect's own wording of this rejection, with its `Retry-After`.
    pub fn finish(&self, reply: Reply) -> Reply {
        match self.retry_after_s {
            Some(s) => reply.with_header("retry-after", &s.to_string()),
            None => reply,
        }
    }
}

/// The JSON error body every non-ApertoDNS dialect uses: `{"status": "error", "code", "message"}`.
pub fn json_error(status: u16, code: ErrorCode, message: &str) -> Reply {
    Reply::json(
        status,
        &serde_json::json!({"status": "error", "code": code, "message": message}),
    )
}

/// An error as plain text (`code: message`) or, with `Accept: application/json`, [`json_error`].
pub fn error_reply(json: bool, status: u16, code: impl Into<ErrorCode>, message: &str) -> Reply {
    let code = code.into();
    if json {
        json_error(status, code, message)
    } else {
        Reply::text(status, format!("{code}: {message}\n"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code
mod retry_after_tests;

#[cfg(test)]
mod loggable_path_tests {
    use super::loggable_path;

    #[test]
    fn loggable_paths_hide_query_strings_and_path_secrets() {
        assert_eq!(
            loggable_path("/nic/update?hostname=h&password=p"),
            "/nic/update"
        );
        assert_eq!(
            loggable_path("/update-by-path/tok3n/home.test/192.0.2.1"),
            "/update-by-path/***/home.test/192.0.2.1"
        );
        assert_eq!(
            loggable_path("/delete-by-path/tok3n"),
            "/delete-by-path/***"
        );
        assert_eq!(
            loggable_path("/update-by-query?secret=tok3n"),
            "/update-by-query"
        );
        assert_eq!(loggable_path("/health"), "/health");
    }

    #[test]
    fn the_path_secret_is_masked_in_any_segment_layout() {
        let t = "tok3nSECRET";
        for (path, want) in [
            (
                format!("/update-by-path//{t}/home.test/192.0.2.1"),
                "/update-by-path//***/home.test/192.0.2.1".to_string(),
            ),
            (
                format!("/update-by-path///{t}//home.test"),
                "/update-by-path///***//home.test".into(),
            ),
            (
                format!("//update-by-path/{t}/home.test"),
                "//update-by-path/***/home.test".into(),
            ),
            (
                format!("/update-by-path/{t};x=1/home.test/2001:db8::1"),
                "/update-by-path/***/home.test/2001:db8::1".into(),
            ),
            (
                format!("/update-by-path;p=1/{t}/home.test"),
                "/update-by-path/***/home.test".into(),
            ),
            (
                format!("/update-by-path%2F{t}/home.test"),
                "/update-by-path/***/***".into(),
            ),
            (
                format!("/Update-By-Path/%74{t}/home.test"),
                "/update-by-path/***/home.test".into(),
            ),
            (
                format!("/%75pdate-by-path/{t}/home.test"),
                "/update-by-path/***/home.test".into(),
            ),
            (
                format!("/update-by-path/home.test/{t}"),
                "/update-by-path/***/***".into(),
            ),
            (
                format!("/update-by-path/x/home.test;secret={t}"),
                "/update-by-path/***/***".into(),
            ),
            (
                format!("/delete-by-path//{t}/home.test?secret={t}"),
                "/delete-by-path//***/home.test".into(),
            ),
            (format!("/update-by-path/{t}"), "/update-by-path/***".into()),
        ] {
            let got = loggable_path(&path);
            assert_eq!(got, want, "{path}");
            assert!(!got.contains("tok3n") && !got.contains("SECRET"), "{path}");
        }
    }
}
