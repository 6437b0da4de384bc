//! The Python `dyndns` app's API (seed 003):
//! - `/update-by-path/SECRET/FQDN[/IP_1[/IP_2]]`
//! - `/update-by-query?secret=&fqdn=` (or `zone_name=` + `record_name=`) `&ip_1=&ip_2=&ipv4=&ipv6=&ttl=`
//! - `/delete-by-path/SECRET/FQDN` (deletes both A and AAAA)
//!
//! The secret is checked against the shared credential store (an API token). `ip_2` must be the
//! other family than `ip_1`; `ipv4`/`ipv6` must be of their family; with no address at all the
//! client address is used. Replies follow the app: one line per record type,
//! `UPDATED: home.example.test A 192.0.2.1 -> 192.0.2.7` or `UNCHANGED: home.example.test A 192.0.2.7`,
//! errors as `PARAMETER_ERROR: ...` / `DNS_SERVER_ERROR: ...`; JSON with `Accept: application/json`.

use std::net::IpAddr;

use serde_json::json;

use super::{Rejection, Render};
use crate::addr;
use crate::backends::RrType;
use crate::config::{Config, Scope};
use crate::credentials::Presented;
use crate::dialects::Start;
use crate::exchange::{Env, Outcome};
use crate::job::{HostJob, HostOutcome, Job, Target};
use crate::kv::KvCount;
use crate::names::Fqdn;
use crate::pipeline::{self, Denied};
use crate::reply::{Code, ErrorCode, Reply};
use crate::request::{Params, Request};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    UpdateByPath,
    UpdateByQuery,
    DeleteByPath,
}

fn param_error(status: u16, message: impl Into<String>) -> Rejection {
    Rejection::new(status, ErrorCode::ParameterError, message)
}

/// The app's wording: `PARAMETER_ERROR: message` (its words in capitals) as text, else JSON.
fn reply(r: &Rejection, json: bool) -> Reply {
    if json {
        return r.reply(json);
    }
    let word = r.code.as_str().to_ascii_uppercase();
    r.finish(Reply::text(r.status, format!("{word}: {}\n", r.message)))
}

/// What a request asks for, before credentials are checked.
struct Asked {
    secret: Option<String>,
    fqdn: Option<String>,
    ip_1: Option<String>,
    ip_2: Option<String>,
    ipv4: Option<String>,
    ipv6: Option<String>,
    ttl: Option<String>,
}

fn layout(max_ips: usize) -> &'static str {
    if max_ips == 0 {
        "expected /delete-by-path/SECRET/FQDN"
    } else {
        "expected /update-by-path/SECRET/FQDN[/IP_1[/IP_2]]"
    }
}

fn from_path(rest: &str, max_ips: usize) -> Result<Asked, Rejection> {
    let segs: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let [secret, fqdn, ips @ ..] = segs.as_slice() else {
        return Err(param_error(400, layout(max_ips)));
    };
    if ips.len() > max_ips || segs.iter().any(|s| s.is_empty()) {
        return Err(param_error(400, layout(max_ips)));
    }
    let dec = |s: &str| {
        super::percent_decode(s)
            .ok_or_else(|| param_error(400, "broken percent-encoding in the path"))
    };
    Ok(Asked {
        secret: Some(dec(secret)?),
        fqdn: Some(dec(fqdn)?),
        ip_1: ips.first().map(|s| dec(s)).transpose()?,
        ip_2: ips.get(1).map(|s| dec(s)).transpose()?,
        ipv4: None,
        ipv6: None,
        ttl: None,
    })
}

fn from_query(cfg: &Config, q: &str) -> Result<Asked, Rejection> {
    let p = Params::parse(q).map_err(|e| param_error(400, e.to_string()))?;
    let one = |n: &str| -> Result<Option<String>, Rejection> {
        p.one(n)
            .map(|v| v.filter(|s| !s.is_empty()).map(str::to_string))
            .map_err(|e| param_error(400, e.to_string()))
    };
    let fqdn = match (one("fqdn")?, one("zone_name")?, one("record_name")?) {
        (Some(f), None, None) => Some(f),
        (Some(_), _, _) => {
            return Err(param_error(
                400,
                "Specify the argument fqdn or the arguments zone_name and record_name, not both.",
            ))
        }
        (None, Some(z), Some(r)) => {
            let zone = Fqdn::parse(&z).map_err(|e| param_error(400, format!("zone_name: {e}")))?;
            if !cfg.zones.iter().any(|c| c.name == zone) {
                return Err(param_error(
                    400,
                    format!("The zone \"{zone}\" is not configured."),
                ));
            }
            Some(format!("{r}.{zone}"))
        }
        (None, Some(_), None) => {
            return Err(param_error(400, "The argument record_name is missing."))
        }
        (None, None, Some(_)) => {
            return Err(param_error(400, "The argument zone_name is missing."))
        }
        (None, None, None) => None,
    };
    Ok(Asked {
        secret: one("secret")?,
        fqdn,
        ip_1: one("ip_1")?,
        ip_2: one("ip_2")?,
        ipv4: one("ipv4")?,
        ipv6: one("ipv6")?,
        ttl: one("ttl")?,
    })
}

/// ipv4/ipv6 of their family, ip_1/ip_2 of either but not the same (the app's container).
fn addresses(a: &Asked) -> Result<(Option<IpAddr>, Option<IpAddr>), Rejection> {
    let mut v4: Option<IpAddr> = None;
    let mut v6: Option<IpAddr> = None;
    if let Some(s) = &a.ipv4 {
        v4 = Some(IpAddr::V4(addr::parse_v4(s).map_err(|e| {
            param_error(
                400,
                format!("ipv4: '{}' {e}", s.chars().take(64).collect::<String>()),
            )
        })?));
    }
    if let Some(s) = &a.ipv6 {
        v6 = Some(IpAddr::V6(addr::parse_v6(s).map_err(|e| {
            param_error(
                400,
                format!("ipv6: '{}' {e}", s.chars().take(64).collect::<String>()),
            )
        })?));
    }
    for (param, value) in [("ip_1", &a.ip_1), ("ip_2", &a.ip_2)] {
        let Some(s) = value else { continue };
        let ip = addr::parse_ip(s).map_err(|e| {
            param_error(
                400,
                format!("{param}: '{}' {e}", s.chars().take(64).collect::<String>()),
            )
        })?;
        let (slot, family) = if ip.is_ipv4() {
            (&mut v4, "ipv4")
        } else {
            (&mut v6, "ipv6")
        };
        if let Some(old) = slot {
            return Err(param_error(
                400,
                format!("The attribute \"{family}\" is already set and has the value \"{old}\"."),
            ));
        }
        *slot = Some(ip);
    }
    Ok((v4, v6))
}

pub fn handle(cfg: &Config, req: &Request, kind: Kind, env: &Env) -> Start {
    let json = req.wants_json();
    match plan(cfg, req, kind, env, json) {
        Ok((job, render)) => Start::Job(job, render),
        Err((r, counts, log)) => {
            let mut out = Outcome::reply(reply(&r, json));
            out.counts = counts;
            out.log = log;
            Start::Reply(out)
        }
    }
}

/// A rejection, what it counts against, and its audit lines.
type Refused = (Rejection, Vec<KvCount>, Vec<String>);

fn plan(
    cfg: &Config,
    req: &Request,
    kind: Kind,
    env: &Env,
    json: bool,
) -> Result<(Box<Job>, Render), Refused> {
    let plain = |r: Rejection| (r, vec![], vec![]);
    if req.method != "GET" {
        return Err(plain(param_error(405, "only GET is supported")));
    }
    let path = req.path_only();
    let asked = match kind {
        Kind::UpdateByPath => from_path(path.strip_prefix("/update-by-path/").unwrap_or(""), 2),
        Kind::DeleteByPath => from_path(path.strip_prefix("/delete-by-path/").unwrap_or(""), 0),
        Kind::UpdateByQuery => from_query(cfg, req.query()),
    }
    .map_err(plain)?;
    let client = req.client_ip(&cfg.trusted_proxies);
    let presented = match &asked.secret {
        Some(s) => Presented::Secret(s.clone()),
        None => Presented::None,
    };
    let authorized = pipeline::authorize(cfg, req, env, presented.into(), Some(Scope::Update))
        .map_err(|r| {
            let rejection = match r.denied {
                Denied::Limited { retry_after_s } => {
                    param_error(429, "Too many requests.").retry_after(retry_after_s)
                }
                Denied::Missing => param_error(401, "The argument secret is missing."),
                Denied::Bad(_) => param_error(401, "You specified a wrong secret key."),
                Denied::Unavailable => param_error(503, "Try again later."),
            };
            (rejection, r.counts, r.log)
        })?;
    let fqdn_raw = asked
        .fqdn
        .as_deref()
        .ok_or_else(|| plain(param_error(400, "The argument fqdn is missing.")))?;
    let name = Fqdn::parse(fqdn_raw).map_err(|e| plain(param_error(400, format!("fqdn: {e}"))))?;
    let zone = authorized.host(cfg, &name).map_err(|_| {
        plain(param_error(
            403,
            format!("The fqdn \"{name}\" is not yours to update."),
        ))
    })?;
    let backend = cfg
        .backends
        .get(&zone.backend)
        .cloned()
        .ok_or_else(|| plain(param_error(500, "zone without backend")))?;
    let ttl = match &asked.ttl {
        None => 300,
        Some(t) => t
            .parse::<u32>()
            .ok()
            .filter(|t| (1..=86_400).contains(t))
            .ok_or_else(|| plain(param_error(400, "ttl: must be an integer 1..=86400")))?,
    };
    let mut want = Vec::new();
    if kind == Kind::DeleteByPath {
        want.push((RrType::A, vec![]));
        want.push((RrType::Aaaa, vec![]));
    } else {
        let (mut v4, mut v6) = addresses(&asked).map_err(plain)?;
        if v4.is_none() && v6.is_none() {
            match client {
                Some(ip @ IpAddr::V4(_)) => v4 = Some(ip),
                Some(ip @ IpAddr::V6(_)) => v6 = Some(ip),
                None => return Err(plain(param_error(400, "No ip address set."))),
            }
        }
        for ip in [v4, v6].into_iter().flatten() {
            zone.policy
                .check(ip)
                .map_err(|e| plain(param_error(400, format!("'{ip}' {e}"))))?;
            let rtype = if ip.is_ipv4() {
                RrType::A
            } else {
                RrType::Aaaa
            };
            want.push((rtype, vec![ip.to_string()]));
        }
    }
    let host = HostJob::update(Target {
        name: name.clone(),
        zone: zone.name.clone(),
        backend,
        ttl,
        want,
        edits: vec![],
    });
    let delete = kind == Kind::DeleteByPath;
    let mut job = Job::new(cfg, "path_query", authorized, req, vec![host], env);
    if delete {
        job.track_seen = false;
    }
    Ok((job, Render::PathQuery { delete, json }))
}

pub(super) fn render(results: &[HostOutcome], delete: bool, json: bool) -> Reply {
    let Some(o) = results.first() else {
        return super::error_reply(json, 500, ErrorCode::ServerError, "no result");
    };
    if !o.code.is_success() {
        let (status, msg) = match o.code {
            Code::Dnserr => (502, "The DNS server did not accept the update."),
            Code::Abuse => (429, "Too many requests."),
            Code::Nohost => (403, "The token may not change this record type here."),
            _ => (500, "Internal error."),
        };
        return reply(
            &Rejection::new(status, ErrorCode::DnsServerError, msg),
            json,
        );
    }
    let changed = o.code == Code::Good;
    if delete {
        let had = o.previous.iter().any(|(_, v)| !v.is_empty());
        let (word, msg) = if had {
            ("UPDATED", format!("Deleted \"{}\".", o.host))
        } else {
            (
                "UNCHANGED",
                format!("Deletion not successful \"{}\".", o.host),
            )
        };
        if json {
            return Reply::json(
                200,
                &json!({"status": word, "fqdn": o.host, "message": msg}),
            );
        }
        return Reply::text(200, format!("{word}: {msg}\n"));
    }
    let mut lines = String::new();
    let mut records = Vec::new();
    for (rtype, new) in &o.current {
        let old = o
            .previous
            .iter()
            .find(|(r, _)| r == rtype)
            .and_then(|(_, v)| v.first().cloned());
        let new = new.first().cloned();
        let same = old == new;
        let word = if same { "UNCHANGED" } else { "UPDATED" };
        let shown = new.clone().unwrap_or_default();
        if same {
            lines.push_str(&format!("{word}: {} {} {shown}\n", o.host, rtype.as_str()));
        } else {
            let old_shown = old.clone().unwrap_or_else(|| "None".into());
            lines.push_str(&format!(
                "{word}: {} {} {old_shown} -> {shown}\n",
                o.host,
                rtype.as_str()
            ));
        }
        records.push(json!({"type": rtype.as_str(), "old": old, "new": new, "status": word}));
    }
    if json {
        return Reply::json(
            200,
            &json!({"status": if changed { "UPDATED" } else { "UNCHANGED" }, "fqdn": o.host,
                    "records": records}),
        );
    }
    Reply::text(200, lines)
}

#[cfg(test)]
mod tests {
    use crate::testing::{body, get, json_body, request, status, Driver, Fault, RequestExt, TOKEN};

    const HOME: &str = "home.dyn.example.test";

    #[test]
    fn update_by_path_sets_both_families_and_reports_each_record() {
        let mut d = Driver::demo();
        d.pdns.set(HOME, "A", &["192.0.2.1"]);
        let o = d.run(get(&format!(
            "/update-by-path/{TOKEN}/{HOME}/192.0.2.7/2001:db8::7"
        )));
        assert_eq!(status(&o), 200, "{}", body(&o));
        assert_eq!(
            body(&o),
            "UPDATED: home.dyn.example.test A 192.0.2.1 -> 192.0.2.7\n\
             UPDATED: home.dyn.example.test AAAA None -> 2001:db8::7\n"
        );
        assert_eq!(d.pdns.get(HOME, "A"), vec!["192.0.2.7"]);
        assert_eq!(d.pdns.get(HOME, "AAAA"), vec!["2001:db8::7"]);
        let writes = d.writes();
        let o = d.run(get(&format!(
            "/update-by-path/{TOKEN}/{HOME}/2001:db8::7/192.0.2.7"
        )));
        assert_eq!(
            body(&o),
            "UNCHANGED: home.dyn.example.test A 192.0.2.7\n\
             UNCHANGED: home.dyn.example.test AAAA 2001:db8::7\n",
            "A first, whatever the order of the path"
        );
        assert_eq!(d.writes(), writes);
    }

    #[test]
    fn update_by_path_without_an_address_uses_the_client_address() {
        let mut d = Driver::demo();
        let o = d.run(get(&format!("/update-by-path/{TOKEN}/{HOME}")).from("2001:db8::99"));
        assert_eq!(
            body(&o),
            "UPDATED: home.dyn.example.test AAAA None -> 2001:db8::99\n"
        );
    }

    #[test]
    fn update_by_query_accepts_fqdn_or_zone_and_record_and_a_ttl() {
        let mut d = Driver::demo();
        let o = d.run(get(&format!(
            "/update-by-query?secret={TOKEN}&zone_name=dyn.example.test&record_name=home&ipv4=192.0.2.8&ttl=120"
        )));
        assert_eq!(status(&o), 200, "{}", body(&o));
        assert_eq!(
            body(&o),
            "UPDATED: home.dyn.example.test A None -> 192.0.2.8\n"
        );
        let patch = d
            .calls
            .iter()
            .rev()
            .find(|c| c.method == crate::backends::Method::Patch)
            .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&patch.body).unwrap();
        assert_eq!(doc["rrsets"][0]["ttl"], 120);
        let o = d.run(
            get(&format!(
                "/update-by-query?secret={TOKEN}&fqdn={HOME}&ip_1=2001:db8::8"
            ))
            .header("accept", "application/json"),
        );
        let v = json_body(&o);
        assert_eq!(v["status"], "UPDATED");
        assert_eq!(
            v["records"][0],
            serde_json::json!({"type": "AAAA", "old": null, "new": "2001:db8::8", "status": "UPDATED"})
        );
    }

    #[test]
    fn delete_by_path_removes_both_families() {
        let mut d = Driver::demo();
        d.pdns.set(HOME, "A", &["192.0.2.1"]);
        d.pdns.set(HOME, "AAAA", &["2001:db8::1"]);
        let o = d.run(get(&format!("/delete-by-path/{TOKEN}/{HOME}")));
        assert_eq!(status(&o), 200);
        assert_eq!(body(&o), "UPDATED: Deleted \"home.dyn.example.test\".\n");
        assert!(d.pdns.get(HOME, "A").is_empty() && d.pdns.get(HOME, "AAAA").is_empty());
        let o = d.run(get(&format!("/delete-by-path/{TOKEN}/{HOME}")));
        assert_eq!(
            body(&o),
            "UNCHANGED: Deletion not successful \"home.dyn.example.test\".\n"
        );
    }

    #[test]
    fn bad_requests_are_parameter_errors_and_call_nothing() {
        let t = TOKEN;
        let cases: Vec<(String, u16, &str)> = vec![
            (format!("/update-by-path/{t}/{HOME}/192.0.2.1/192.0.2.2"), 400, "The attribute \"ipv4\" is already set"),
            (format!("/update-by-path/{t}/{HOME}/2001:db8::1/2001:db8::2"), 400, "The attribute \"ipv6\" is already set"),
            (format!("/update-by-path/{t}/{HOME}/999.1.1.1"), 400, "ip_1: '999.1.1.1' is not an IP address"),
            (format!("/update-by-path/{t}/{HOME}/10.0.0.1"), 400, "special range"),
            (format!("/update-by-path/{t}/{HOME}/1/2/3"), 400, "expected /update-by-path"),
            (format!("/update-by-path/{t}"), 400, "expected /update-by-path"),
            (format!("/update-by-path/{t}//192.0.2.1"), 400, "expected /update-by-path"),
            (format!("/update-by-path/wrong-secret/{HOME}"), 401, "You specified a wrong secret key."),
            (format!("/update-by-path/{t}/bad..name"), 400, "fqdn: invalid label"),
            (format!("/update-by-path/{t}/neighbour.dyn.example.test"), 403, "is not yours"),
            (format!("/update-by-path/{t}/nobody.dyn.example.test"), 403, "is not yours"),
            (format!("/delete-by-path/{t}/{HOME}/192.0.2.1"), 400, "expected /delete-by-path"),
            (format!("/update-by-query?fqdn={HOME}"), 401, "The argument secret is missing."),
            (format!("/update-by-query?secret={t}"), 400, "The argument fqdn is missing."),
            (format!("/update-by-query?secret={t}&zone_name=dyn.example.test"), 400, "record_name is missing"),
            (format!("/update-by-query?secret={t}&record_name=home"), 400, "zone_name is missing"),
            (format!("/update-by-query?secret={t}&zone_name=other.test&record_name=home"), 400, "is not configured"),
            (format!("/update-by-query?secret={t}&fqdn={HOME}&zone_name=dyn.example.test&record_name=home"), 400, "not both"),
            (format!("/update-by-query?secret={t}&fqdn={HOME}&ipv4=2001:db8::1"), 400, "ipv4: '2001:db8::1' is an IPv6"),
            (format!("/update-by-query?secret={t}&fqdn={HOME}&ipv6=192.0.2.1"), 400, "ipv6: '192.0.2.1' is an IPv4"),
            (format!("/update-by-query?secret={t}&fqdn={HOME}&ipv4=192.0.2.1&ip_1=192.0.2.2"), 400, "already set"),
            (format!("/update-by-query?secret={t}&fqdn={HOME}&ttl=0"), 400, "ttl"),
            (format!("/update-by-query?secret={t}&fqdn={HOME}&ttl=abc"), 400, "ttl"),
            (format!("/update-by-query?secret={t}&fqdn={HOME}&fqdn={HOME}"), 400, "more than once"),
        ];
        for (path, want_status, want_text) in cases {
            let mut d = Driver::demo();
            let o = d.run(get(&path));
            assert_eq!(status(&o), want_status, "{path}: {}", body(&o));
            assert!(
                body(&o).starts_with("PARAMETER_ERROR: "),
                "{path}: {}",
                body(&o)
            );
            assert!(body(&o).contains(want_text), "{path}: {}", body(&o));
            assert!(!body(&o).contains(TOKEN), "the secret is never echoed");
            assert!(d.calls.is_empty(), "rejected: no backend call ({path})");
        }
        let mut d = Driver::demo();
        let o = d.run(request(
            "POST",
            &format!("/update-by-query?secret={t}&fqdn={HOME}"),
            "",
        ));
        assert_eq!(status(&o), 405);
        let o = d.run(
            get(&format!("/update-by-path/wrong/{HOME}")).header("accept", "application/json"),
        );
        assert_eq!(json_body(&o)["code"], "parameter_error");
        assert!(d.calls.is_empty());
    }

    #[test]
    fn backend_failure_is_a_dns_server_error() {
        let mut d = Driver::demo();
        d.pdns.fault = Fault::Unreachable;
        let o = d.run(get(&format!("/update-by-path/{TOKEN}/{HOME}/192.0.2.7")));
        assert_eq!(status(&o), 502);
        assert!(body(&o).starts_with("DNS_SERVER_ERROR: "), "{}", body(&o));
    }
}
