//! lego's `httpreq` DNS provider protocol: `POST {endpoint}/present` and `{endpoint}/cleanup`
//! with `{"fqdn": "_acme-challenge.host.zone.", "value": "<43-char digest>"}` and Basic auth;
//! RAW mode (`HTTPREQ_MODE=RAW`) sends `{"domain", "token", "keyAuth"}` and the gateway computes
//! the value (base64url of SHA-256 of `keyAuth`, RFC 8555 §8.4).
//!
//! Served at `/httpreq/present` and `/httpreq/cleanup` (endpoint `https://gw/httpreq`) and at
//! the root `/present`, `/cleanup` (endpoint `https://gw`). Credentials: a user's Basic password
//! or an API token (Basic password or Bearer) with the `txt` scope. Names must be
//! `_acme-challenge.` + a host the caller may update. `present` adds a value to those at the
//! name (apex and wildcard share it), `cleanup` removes only the value it names; both go through
//! the shared TXT planning (`Edit::Add`/`Edit::Remove`) and the zone's backend.
//!
//! Replies are plain text (lego reads only the status): 200 `ok`, 400 for a bad body or name,
//! 401 (with a Basic challenge) for missing or wrong credentials, 403 for a name the caller does
//! not own, 429 over the rate limits, 502 when the backend failed.

use base64::Engine;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::backends::RrType;
use crate::config::{Config, Scope};
use crate::credentials;
use crate::dialects::acme::{DEFAULT_TXT_TTL, TXT_PREFIX};
use crate::dialects::Render;
use crate::dialects::Start;
use crate::exchange::{Env, Outcome};
use crate::job::{Edit, HostJob, HostOutcome, Job, Target};
use crate::names::Fqdn;
use crate::pipeline::{self, Denied};
use crate::reply::{Code, Reply};
use crate::request::Request;

pub const PREFIX: &str = "/httpreq";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Present,
    Cleanup,
}

pub fn route(path: &str) -> Option<Action> {
    match path.strip_prefix(PREFIX).unwrap_or(path) {
        "/present" => Some(Action::Present),
        "/cleanup" => Some(Action::Cleanup),
        _ => None,
    }
}

/// The TXT owner name and value a request body asks for (default or RAW mode).
fn parse_body(body: &[u8]) -> Result<(String, String), &'static str> {
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) else {
        return Err("the body must be a JSON object");
    };
    let s = |o: &Map<String, Value>, k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
    if let (Some(fqdn), Some(value)) = (s(&obj, "fqdn"), s(&obj, "value")) {
        return Ok((fqdn, value));
    }
    if let (Some(domain), Some(key_auth)) = (s(&obj, "domain"), s(&obj, "keyAuth")) {
        let digest = Sha256::digest(key_auth.as_bytes());
        let value = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
        let domain = domain.trim_end_matches('.');
        let domain = domain.strip_prefix("*.").unwrap_or(domain);
        return Ok((format!("{TXT_PREFIX}{domain}"), value));
    }
    Err("expected {\"fqdn\", \"value\"} or, in RAW mode, {\"domain\", \"token\", \"keyAuth\"}")
}

pub fn handle(cfg: &Config, req: &Request, action: Action, env: &Env) -> Start {
    if req.method != "POST" {
        return Start::Reply(Outcome::reply(
            Reply::text(405, "method not allowed\n").with_header("allow", "POST"),
        ));
    }
    let presented = credentials::presented(req.header("authorization"), None, None);
    let authorized = match pipeline::authorize(cfg, req, env, presented.into(), None) {
        Ok(a) => a,
        Err(r) => {
            let counters = r.counters("httpreq");
            let reply = match r.denied {
                Denied::Limited { retry_after_s } => coded(429, Code::Abuse, "too many requests")
                    .with_header("retry-after", &retry_after_s.to_string()),
                Denied::Unavailable => coded(503, Code::Emergency, "try again later"),
                Denied::Missing | Denied::Bad(_) => {
                    Reply::text(401, format!("{}\n", Code::Badauth))
                        .with_header("www-authenticate", "Basic realm=\"dynedge\"")
                }
            };
            return Start::Reply(Outcome {
                reply: Some(reply),
                counters,
                counts: r.counts,
                log: r.log,
                ..Outcome::default()
            });
        }
    };
    let writes = authorized.writes();
    let refuse = |status: u16, body: &str| {
        Start::Reply(Outcome {
            reply: Some(Reply::text(status, format!("{body}\n"))),
            writes: writes.clone(),
            ..Outcome::default()
        })
    };
    let (fqdn, value) = match parse_body(&req.body) {
        Ok(v) => v,
        Err(m) => return refuse(400, m),
    };
    let lower = fqdn.trim_end_matches('.').to_ascii_lowercase();
    let Some(host) = lower.strip_prefix(TXT_PREFIX) else {
        return refuse(400, "the name must start with _acme-challenge.");
    };
    let (Ok(host), Ok(name)) = (Fqdn::parse(host), Fqdn::parse_service(&lower)) else {
        return refuse(400, "not a valid host name");
    };
    if value.is_empty() || value.len() > 255 || value.chars().any(|c| c.is_control() || c == '"') {
        return refuse(400, "the value must be 1-255 printable characters");
    }
    if !authorized.has(Scope::Txt) {
        return refuse(403, "the credentials lack the txt scope");
    }
    let Ok(zone) = authorized.host(cfg, &host) else {
        return refuse(403, &format!("{}: not a name of yours", Code::Nohost));
    };
    let Some(backend) = cfg.backends.get(&zone.backend).cloned() else {
        return refuse(
            500,
            &format!("{}: the zone has no backend", Code::Emergency),
        );
    };
    let edit = match action {
        Action::Present => Edit::Add {
            values: vec![value],
            max: cfg.apertodns.txt_max_records,
        },
        Action::Cleanup => Edit::Remove {
            values: Some(vec![value]),
            must_exist: false,
        },
    };
    let target = Target {
        name: name.clone(),
        zone: zone.name.clone(),
        backend,
        ttl: DEFAULT_TXT_TTL,
        want: vec![],
        edits: vec![(RrType::Txt, edit)],
    };
    let mut job = Job::new(
        cfg,
        "httpreq",
        authorized,
        req,
        vec![HostJob::update(target)],
        env,
    );
    job.track_seen = false;
    Start::Job(job, Render::HttpReq)
}

/// `present`/`cleanup`'s answer.
pub(super) fn render(results: &[HostOutcome]) -> Reply {
    match results.first() {
        Some(o) if o.code.is_success() => Reply::text(200, "ok\n"),
        Some(o) if o.refusal.is_some() => Reply::text(400, "too many TXT values at this name\n"),
        Some(o) if o.code == Code::Abuse => coded(429, Code::Abuse, "too many requests"),
        Some(o) if o.code == Code::Nohost => {
            coded(403, Code::Nohost, "the token may not write TXT here")
        }
        _ => coded(502, Code::Dnserr, "the DNS backend failed"),
    }
}

/// `code: message` as text, the form lego prints.
fn coded(status: u16, code: Code, message: &str) -> Reply {
    Reply::text(status, format!("{code}: {message}\n"))
}
