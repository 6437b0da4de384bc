//! Operator-defined update endpoints (ddns-service style, seed 004).
//!
//! ```json
//! "endpoints": [
//!   {"path": "/ddns", "params": {"hostname": ["hostname", "host"], "ipv4": ["myip", "ipv4", "ip4"],
//!                                "ipv6": ["myip6", "ipv6", "ip6"], "username": ["username", "user"],
//!                                "password": ["password", "pass", "token"]}}
//! ]
//! ```
//! Each value takes the first present of its accepted names (first match wins); an empty list
//! disables that value; a value left out keeps ddns-service's defaults. Endpoints are matched
//! before the built-in routes, so an operator may redefine `/update`. Credentials: Bearer, then
//! Basic, then the username/password parameters. With no address parameter the client address
//! is used. Replies: `good <ipv4> <ipv6>`, `nochg ...`, `badauth`, `nohost`, `notfqdn`, `dnserr`,
//! `abuse`; with `Accept: application/json` `{"status": .., "ipv4": .., "ipv6": ..}`.

use std::net::IpAddr;

use serde_json::json;

use super::dyndns2::status_of;
use super::{Render, StatusMode};
use crate::addr;
use crate::backends::RrType;
use crate::config::{Config, Scope};
use crate::credentials;
use crate::dialects::Start;
use crate::exchange::{Env, Outcome};
use crate::job::{HostJob, HostOutcome, Job, Target};
use crate::names::Fqdn;
use crate::pipeline::{self, Denied};
use crate::reply::{Code, ErrorCode, Reply};
use crate::request::{Params, Request};

mod settings;
pub use settings::{compile, Endpoint, RawEndpoint};

/// A code without addresses (every code but `good`/`nochg`).
pub(super) fn code_reply(code: Code, mode: StatusMode, json: bool) -> Reply {
    reply(code, mode, json, None, None)
}

fn reply(code: Code, mode: StatusMode, json: bool, v4: Option<&str>, v6: Option<&str>) -> Reply {
    let status = status_of(code, mode);
    if json {
        return Reply::json(
            status,
            &json!({"status": code.as_str(), "ipv4": v4, "ipv6": v6}),
        );
    }
    let mut line = code.as_str().to_string();
    for ip in [v4, v6].into_iter().flatten() {
        line.push(' ');
        line.push_str(ip);
    }
    line.push('\n');
    Reply::text(status, line)
}

pub fn handle(cfg: &Config, req: &Request, index: usize, env: &Env) -> Start {
    let json = req.wants_json();
    let Some(ep) = cfg.endpoints.get(index) else {
        return Start::Reply(Outcome::reply(super::error_reply(
            json,
            404,
            ErrorCode::NotFound,
            "no such endpoint",
        )));
    };
    let mode = ep.mode;
    let early = |code: Code| Start::Reply(Outcome::reply(reply(code, mode, json, None, None)));
    let bad = |status: u16, code: ErrorCode, msg: &str| {
        Start::Reply(Outcome::reply(super::error_reply(json, status, code, msg)))
    };
    if req.method != "GET" && req.method != "POST" {
        return early(Code::Badagent);
    }
    let mut params = match Params::parse(req.query()) {
        Ok(p) => p,
        Err(e) => return bad(400, ErrorCode::InvalidRequest, &e.to_string()),
    };
    if req.method == "POST" && !req.body.is_empty() {
        let form = req.header("content-type").is_some_and(|c| {
            c.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
        let parsed = std::str::from_utf8(&req.body)
            .ok()
            .filter(|_| form)
            .map(Params::parse);
        match parsed {
            Some(Ok(p)) => params.extend(p),
            _ => {
                return bad(
                    400,
                    ErrorCode::InvalidRequest,
                    "POST body must be a form (application/x-www-form-urlencoded)",
                )
            }
        }
    }
    let pick = |list: &[String]| params.first_of(list).map(|v| v.filter(|s| !s.is_empty()));
    let (host, v4, v6, user, pass) = match (
        pick(&ep.hostname),
        pick(&ep.ipv4),
        pick(&ep.ipv6),
        pick(&ep.username),
        pick(&ep.password),
    ) {
        (Ok(h), Ok(a), Ok(b), Ok(u), Ok(p)) => (h, a, b, u, p),
        _ => {
            return bad(
                400,
                ErrorCode::InvalidRequest,
                "a parameter is given more than once",
            )
        }
    };
    let presented = credentials::presented(req.header("authorization"), user, pass);
    let authorized = match pipeline::authorize(cfg, req, env, presented.into(), Some(Scope::Update))
    {
        Ok(a) => a,
        Err(r) => {
            let counters = r.counters("custom");
            let reply = match r.denied {
                Denied::Limited { .. } => reply(Code::Abuse, mode, json, None, None),
                Denied::Missing => reply(Code::Badauth, StatusMode::CertaDns, json, None, None)
                    .with_header("www-authenticate", "Basic realm=\"dynedge\""),
                Denied::Bad(_) => reply(Code::Badauth, mode, json, None, None),
                Denied::Unavailable => reply(Code::Emergency, mode, json, None, None),
            };
            let mut out = Outcome::reply(reply);
            out.counters = counters;
            out.counts = r.counts;
            out.log = r.log;
            return Start::Reply(out);
        }
    };
    let client = req.client_ip(&cfg.trusted_proxies);
    let Some(name) = host.and_then(|h| Fqdn::parse(h).ok()) else {
        return early(Code::Notfqdn);
    };
    let Ok(zone) = authorized.host(cfg, &name) else {
        return early(Code::Nohost);
    };
    let mut a4 = None;
    let mut a6 = None;
    if let Some(s) = v4 {
        match addr::parse_v4(s) {
            Ok(ip) => a4 = Some(IpAddr::V4(ip)),
            Err(e) => {
                return bad(
                    400,
                    ErrorCode::InvalidIp,
                    &format!(
                        "{}: '{}' {e}",
                        ep.ipv4.join("/"),
                        s.chars().take(64).collect::<String>()
                    ),
                )
            }
        }
    }
    if let Some(s) = v6 {
        match addr::parse_v6(s) {
            Ok(ip) => a6 = Some(IpAddr::V6(ip)),
            Err(e) => {
                return bad(
                    400,
                    ErrorCode::InvalidIp,
                    &format!(
                        "{}: '{}' {e}",
                        ep.ipv6.join("/"),
                        s.chars().take(64).collect::<String>()
                    ),
                )
            }
        }
    }
    if a4.is_none() && a6.is_none() {
        match client {
            Some(ip @ IpAddr::V4(_)) => a4 = Some(ip),
            Some(ip @ IpAddr::V6(_)) => a6 = Some(ip),
            None => return early(Code::Emergency),
        }
    }
    let mut want = Vec::new();
    for ip in [a4, a6].into_iter().flatten() {
        if let Err(e) = zone.policy.check(ip) {
            return bad(400, ErrorCode::InvalidIp, &format!("'{ip}' {e}"));
        }
        let t = if ip.is_ipv4() {
            RrType::A
        } else {
            RrType::Aaaa
        };
        want.push((t, vec![ip.to_string()]));
    }
    let Some(backend) = cfg.backends.get(&zone.backend).cloned() else {
        return early(Code::Emergency);
    };
    let host = HostJob::update(Target {
        name: name.clone(),
        zone: zone.name.clone(),
        backend,
        ttl: zone.ttl,
        want,
        edits: vec![],
    });
    Start::Job(
        Job::new(cfg, "custom", authorized, req, vec![host], env),
        Render::Custom { mode, json },
    )
}

/// The one host's DynDNS2-style line, with the addresses it now has.
pub(super) fn render(results: &[HostOutcome], mode: StatusMode, json: bool) -> Reply {
    let Some(o) = results.first() else {
        return reply(Code::Emergency, mode, json, None, None);
    };
    if !o.code.is_success() {
        return reply(o.code, mode, json, None, None);
    }
    let get = |t: RrType| {
        o.current
            .iter()
            .find(|(r, _)| *r == t)
            .and_then(|(_, v)| v.first().cloned())
    };
    reply(
        o.code,
        mode,
        json,
        get(RrType::A).as_deref(),
        get(RrType::Aaaa).as_deref(),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::testing::{
        body, get, header, json_body, request, status, Driver, RequestExt, TOKEN,
    };

    const HOME: &str = "home.dyn.example.test";

    fn with_endpoints(endpoints: serde_json::Value) -> Result<Driver, crate::ConfigError> {
        let mut v: serde_json::Value =
            serde_json::from_slice(include_bytes!("../../../../examples/dynedge.json")).unwrap();
        v["endpoints"] = endpoints;
        crate::Config::from_json(v.to_string().as_bytes()).map(Driver::new)
    }

    fn router() -> Driver {
        with_endpoints(json!([
            {"path": "/ddns"},
            {"path": "/router", "status": "always200",
             "params": {"hostname": ["h"], "ipv4": ["a"], "ipv6": [], "username": ["u"], "password": ["p"]}}
        ]))
        .unwrap()
    }

    #[test]
    fn default_aliases_accept_ddns_service_names_and_reply_good_with_both_addresses() {
        let mut d = router();
        let o = d.run(
            get(&format!("/ddns?host={HOME}&ip4=192.0.2.7&ip6=2001:db8::7"))
                .basic("demo", "demo-password"),
        );
        assert_eq!(status(&o), 200, "{}", body(&o));
        assert_eq!(body(&o), "good 192.0.2.7 2001:db8::7\n");
        let o = d.run(
            get(&format!(
                "/ddns?hostname={HOME}&myip=192.0.2.7&myip6=2001:db8::7&user=demo&token={TOKEN}"
            ))
            .header("accept", "application/json"),
        );
        assert_eq!(
            json_body(&o),
            json!({"status": "nochg", "ipv4": "192.0.2.7", "ipv6": "2001:db8::7"})
        );
    }

    #[test]
    fn first_listed_alias_wins_and_an_empty_list_disables_a_value() {
        let mut d = router();
        // "myip" is listed before "ipv4": it wins.
        let o = d.run(
            get(&format!(
                "/ddns?hostname={HOME}&ipv4=192.0.2.1&myip=192.0.2.2"
            ))
            .basic("demo", "demo-password"),
        );
        assert_eq!(body(&o), "good 192.0.2.2\n");
        // /router disables ipv6: the parameter is ignored, the client address is used.
        let o = d.run(
            get(&format!(
                "/router?h={HOME}&ipv6=2001:db8::5&u=demo&p=demo-password"
            ))
            .from("192.0.2.99"),
        );
        assert_eq!(body(&o), "good 192.0.2.99\n");
        assert!(d.pdns.get(HOME, "AAAA").is_empty());
        // /router's names only: `hostname` means nothing there.
        let calls = d.calls.len();
        let o = d.run(get(&format!(
            "/router?hostname={HOME}&u=demo&p=demo-password"
        )));
        assert_eq!(body(&o), "notfqdn\n");
        assert_eq!(status(&o), 200, "always200");
        assert_eq!(d.calls.len(), calls);
    }

    #[test]
    fn errors_use_dyndns_words_and_statuses_and_call_nothing() {
        let cases: Vec<(crate::request::Request, u16, &str)> = vec![
            (get(&format!("/ddns?hostname={HOME}")), 401, "badauth\n"),
            (
                get(&format!("/ddns?hostname={HOME}")).basic("demo", "wrong"),
                401,
                "badauth\n",
            ),
            (
                get("/ddns").basic("demo", "demo-password"),
                400,
                "notfqdn\n",
            ),
            (
                get("/ddns?hostname=bad..name").basic("demo", "demo-password"),
                400,
                "notfqdn\n",
            ),
            (
                get("/ddns?hostname=neighbour.dyn.example.test").basic("demo", "demo-password"),
                404,
                "nohost\n",
            ),
            (
                get(&format!("/ddns?hostname={HOME}&myip=1.2.3")).basic("demo", "demo-password"),
                400,
                "invalid_ip: myip/ipv4/ip4: '1.2.3' is not an IP address\n",
            ),
            (
                get(&format!("/ddns?hostname={HOME}&myip=10.0.0.1")).basic("demo", "demo-password"),
                400,
                "invalid_ip: '10.0.0.1' is in the special range 10.0.0.0/8\n",
            ),
            (
                get(&format!("/ddns?hostname={HOME}&hostname={HOME}"))
                    .basic("demo", "demo-password"),
                400,
                "invalid_request: a parameter is given more than once\n",
            ),
            (
                request("PUT", &format!("/ddns?hostname={HOME}"), "")
                    .basic("demo", "demo-password"),
                400,
                "badagent\n",
            ),
        ];
        for (req, want_status, want_body) in cases {
            let mut d = router();
            let path = req.path.clone();
            let o = d.run(req);
            assert_eq!(
                (status(&o), body(&o).as_str()),
                (want_status, want_body),
                "{path}"
            );
            assert!(d.calls.is_empty(), "{path}");
        }
        let mut d = router();
        let o = d.run(get(&format!("/ddns?hostname={HOME}")));
        assert_eq!(
            header(&o, "www-authenticate"),
            Some("Basic realm=\"dynedge\"")
        );
    }

    #[test]
    fn configuration_is_validated_with_paths() {
        for (eps, path) in [
            (json!([{"path": "ddns"}]), "endpoints[0].path"),
            (json!([{"path": "/a"}, {"path": "/a"}]), "endpoints[1].path"),
            (
                json!([{"path": "/a", "params": {"hostname": []}}]),
                "endpoints[0].params.hostname",
            ),
            (
                json!([{"path": "/a", "params": {"ipv4": [""]}}]),
                "endpoints[0].params.ipv4",
            ),
            (
                json!([{"path": "/a", "status": "teapot"}]),
                "endpoints[0].status",
            ),
        ] {
            let e = with_endpoints(eps.clone())
                .err()
                .unwrap_or_else(|| panic!("{eps} accepted"));
            assert_eq!(e.path, path, "{eps}");
        }
        assert!(with_endpoints(json!([{"path": "/a", "params": {"bogus": ["x"]}}])).is_err());
        assert!(
            with_endpoints(json!([{"path": "/a", "params": {"ipv6": []}}])).is_ok(),
            "empty list disables"
        );
    }

    #[test]
    fn an_operator_endpoint_wins_over_a_built_in_route() {
        let mut d =
            with_endpoints(json!([{"path": "/update", "params": {"hostname": ["domain"]}}]))
                .unwrap();
        let o = d.run(
            get(&format!("/update?domain={HOME}&myip=192.0.2.3")).basic("demo", "demo-password"),
        );
        assert_eq!(body(&o), "good 192.0.2.3\n");
    }
}
