//! DynDNS2 (`/nic/update` and aliases): dyn.com's Remote Access API as routers, ddclient and
//! inadyn speak it. Guard ladder: method → parameters → agent → credentials → hostnames →
//! addresses → update.

use std::net::IpAddr;

use serde_json::json;

use super::{Rejection, Render, StatusMode};
use crate::addr::{self, AddrError};
use crate::backends::RrType;
use crate::config::{Config, Scope};
use crate::credentials;
use crate::dialects::Start;
use crate::exchange::{Env, Outcome};
use crate::job::{HostJob, HostOutcome, Job, Target};
use crate::names::Fqdn;
use crate::pipeline::{self, Denied, Refused};
use crate::reply::{Code, ErrorCode, Reply};
use crate::request::{ParamError, Params, Request};

pub mod settings;

/// Names accepted for the IPv6 address besides a v6 value in `myip`.
const V6_PARAMS: &[&str] = &["myip6", "myipv6", "ipv6"];

pub fn handle(cfg: &Config, req: &Request, mode: StatusMode, env: &Env) -> Start {
    let json = req.wants_json();
    let early = |code: Code| Start::Reply(Outcome::reply(code_reply(code, mode, json)));
    if req.method != "GET" && req.method != "POST" {
        return early(Code::Badagent);
    }
    let params = match read_params(req) {
        Ok(p) => p,
        Err(r) => return Start::Reply(Outcome::reply(rejected(&r, json))),
    };
    if cfg.dyndns2.require_user_agent && req.header("user-agent").is_none_or(str::is_empty) {
        return early(Code::Badagent);
    }

    // Credentials: Bearer > Basic > query.
    let (qu, qp) = match (params.one("username"), params.one("password")) {
        (Ok(u), Ok(p)) => (u, p),
        (Err(e), _) | (_, Err(e)) => {
            let r = Rejection::new(400, ErrorCode::InvalidRequest, e.to_string());
            return Start::Reply(Outcome::reply(rejected(&r, json)));
        }
    };
    let presented = credentials::presented(req.header("authorization"), qu, qp);
    let authorized = match pipeline::authorize(cfg, req, env, presented.into(), Some(Scope::Update))
    {
        Ok(a) => a,
        Err(r) => return refused(r, mode, json),
    };

    let raw_hosts = match params.one("hostname") {
        Ok(Some(h)) if !h.trim().is_empty() => h,
        Ok(_) => return early(Code::Notfqdn),
        Err(e) => {
            let r = Rejection::new(400, ErrorCode::InvalidRequest, e.to_string());
            return Start::Reply(Outcome::reply(rejected(&r, json)));
        }
    };
    let names: Vec<&str> = raw_hosts.split(',').map(str::trim).collect();
    if names.len() > cfg.dyndns2.max_hosts {
        return early(Code::Numhost);
    }

    let addrs = match addresses(cfg, req, &params) {
        Ok(a) => a,
        Err(r) => return Start::Reply(Outcome::reply(rejected(&r, json))),
    };

    let mut hosts = Vec::with_capacity(names.len());
    for input in names {
        let name = match Fqdn::parse(input) {
            Ok(n) => n,
            Err(_) => {
                hosts.push(HostJob::decided(
                    input.chars().take(253).collect(),
                    Code::Notfqdn,
                ));
                continue;
            }
        };
        let Ok(zone) = authorized.host(cfg, &name) else {
            hosts.push(HostJob::decided(name.to_string(), Code::Nohost));
            continue;
        };
        for (param, ip) in &addrs.explicit {
            if let Err(e) = zone.policy.check(*ip) {
                let r = invalid_ip(param, &ip.to_string(), &e);
                return Start::Reply(Outcome::reply(rejected(&r, json)));
            }
        }
        // A host with an interface identifier lives in the router's LAN: the delegated prefix
        // names it, and wins over `myip6` (the router's own address). Without an identifier
        // the prefix says nothing about the host.
        let mut v6 = addrs.v6;
        if let (Some(prefix), Some(iid)) = (&addrs.lan_prefix, cfg.interface_ids.get(&name)) {
            if let Some(ip) = addr::with_interface_id(prefix, *iid) {
                if let Err(e) = zone.policy.check(IpAddr::V6(ip)) {
                    let r = invalid_ip("ip6lanprefix", &ip.to_string(), &e);
                    return Start::Reply(Outcome::reply(rejected(&r, json)));
                }
                v6 = Some(ip);
            }
        }
        let Some(backend) = cfg.backends.get(&zone.backend).cloned() else {
            hosts.push(HostJob::decided(name.to_string(), Code::Emergency));
            continue;
        };
        let mut want = Vec::new();
        if let Some(v4) = addrs.v4 {
            want.push((RrType::A, vec![v4.to_string()]));
        }
        if let Some(v6) = v6 {
            want.push((RrType::Aaaa, vec![v6.to_string()]));
        }
        hosts.push(HostJob::update(Target {
            name,
            zone: zone.name.clone(),
            backend,
            ttl: zone.ttl,
            want,
            edits: vec![],
        }));
    }
    Start::Job(
        Job::new(cfg, "dyndns2", authorized, req, hosts, env),
        Render::Dyndns2 { mode, json },
    )
}

/// A refusal of the guard pipeline in DynDNS2's words.
fn refused(r: Refused, mode: StatusMode, json: bool) -> Start {
    let counters = r.counters("dyndns2");
    let reply = match r.denied {
        Denied::Limited { .. } => code_reply(Code::Abuse, mode, json),
        Denied::Missing => code_reply(Code::Badauth, StatusMode::CertaDns, json)
            .with_header("www-authenticate", "Basic realm=\"dynedge\""),
        Denied::Bad(_) => code_reply(Code::Badauth, mode, json),
        Denied::Unavailable => code_reply(Code::Emergency, mode, json),
    };
    let mut out = Outcome::reply(reply);
    out.counters = counters;
    out.counts = r.counts;
    out.log = r.log;
    Start::Reply(out)
}

fn read_params(req: &Request) -> Result<Params, Rejection> {
    let bad = |e: ParamError| Rejection::new(400, ErrorCode::InvalidRequest, e.to_string());
    let mut params = Params::parse(req.query()).map_err(bad)?;
    if req.method == "POST" && !req.body.is_empty() {
        let form = req.header("content-type").is_some_and(|c| {
            c.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
        if !form {
            return Err(Rejection::new(
                400,
                ErrorCode::InvalidRequest,
                "POST body must be application/x-www-form-urlencoded",
            ));
        }
        let body = std::str::from_utf8(&req.body).map_err(|_| bad(ParamError::NotUtf8))?;
        params.extend(Params::parse(body).map_err(bad)?);
    }
    Ok(params)
}

struct Addresses {
    v4: Option<std::net::Ipv4Addr>,
    v6: Option<std::net::Ipv6Addr>,
    /// Every address with the parameter it came from, for the zone's range check.
    explicit: Vec<(&'static str, IpAddr)>,
    /// `ip6lanprefix`: the router's delegated LAN prefix.
    lan_prefix: Option<addr::Cidr>,
}

/// `myip` (a comma list of at most one address per family, `auto`, empty or absent) and
/// `myip6`/`myipv6`/`ipv6`, and `ip6lanprefix` (CIDR, /64 without a length). With no address
/// at all, the client's address is used.
fn addresses(cfg: &Config, req: &Request, params: &Params) -> Result<Addresses, Rejection> {
    let dup = |e: ParamError| Rejection::new(400, ErrorCode::InvalidRequest, e.to_string());
    let mut out = Addresses {
        v4: None,
        v6: None,
        explicit: vec![],
        lan_prefix: None,
    };
    let set = |param: &'static str, ip: IpAddr, out: &mut Addresses| -> Result<(), Rejection> {
        let slot_taken = match ip {
            IpAddr::V4(v4) => out.v4.replace(v4).is_some(),
            IpAddr::V6(v6) => out.v6.replace(v6).is_some(),
        };
        if slot_taken {
            return Err(Rejection::new(
                400,
                ErrorCode::InvalidIp,
                format!("parameter {param}: two addresses of the same family"),
            ));
        }
        out.explicit.push((param, ip));
        Ok(())
    };
    let myip = params.one("myip").map_err(dup)?.unwrap_or("");
    let mut auto = myip.is_empty();
    for item in myip.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if item.eq_ignore_ascii_case("auto") {
            auto = true;
            continue;
        }
        let ip = addr::parse_ip(item).map_err(|e| invalid_ip("myip", item, &e))?;
        set("myip", ip, &mut out)?;
    }
    for &param in V6_PARAMS {
        let Some(value) = params.one(param).map_err(dup)?.filter(|v| !v.is_empty()) else {
            continue;
        };
        if value.eq_ignore_ascii_case("auto") {
            auto = true;
            continue;
        }
        let ip = addr::parse_v6(value).map_err(|e| invalid_ip(param, value, &e))?;
        set(param, IpAddr::V6(ip), &mut out)?;
        auto = auto && !myip.is_empty();
    }
    if let Some(value) = params
        .one("ip6lanprefix")
        .map_err(dup)?
        .filter(|v| !v.is_empty())
    {
        let prefix =
            addr::parse_v6_prefix(value).map_err(|e| invalid_ip("ip6lanprefix", value, &e))?;
        out.lan_prefix = Some(prefix);
    }
    if auto && out.v4.is_none() && out.v6.is_none() {
        let Some(client) = req.client_ip(&cfg.trusted_proxies) else {
            return Err(Rejection::new(
                200,
                Code::Emergency,
                "the client's address is unknown",
            ));
        };
        set("client address", client, &mut out)?;
    } else if auto {
        // `myip=auto` next to an explicit other family: fill the client's family if free.
        if let Some(client) = req.client_ip(&cfg.trusted_proxies) {
            let free = match client {
                IpAddr::V4(_) => out.v4.is_none(),
                IpAddr::V6(_) => out.v6.is_none(),
            };
            if free {
                set("client address", client, &mut out)?;
            }
        }
    }
    Ok(out)
}

/// HTTP status of a DynDNS2 code under an endpoint's status mode.
pub fn status_of(code: Code, mode: StatusMode) -> u16 {
    match mode {
        StatusMode::Always200 => 200,
        StatusMode::CertaDns => match code {
            Code::Good | Code::Nochg => 200,
            Code::Badauth => 401,
            Code::Nohost => 404,
            Code::Notfqdn | Code::Numhost | Code::Badagent => 400,
            Code::Abuse => 429,
            Code::Dnserr | Code::Emergency => 500,
        },
    }
}

pub(super) fn code_reply(code: Code, mode: StatusMode, json: bool) -> Reply {
    let status = status_of(code, mode);
    if json {
        Reply::json(status, &json!({ "status": code.as_str() }))
    } else {
        Reply::text(status, format!("{code}\n"))
    }
}

/// A rejection in DynDNS2's words: a DynDNS2 code alone (as dyn.com answers, 200), else
/// `code: message` or the JSON error body.
fn rejected(r: &Rejection, json: bool) -> Reply {
    match r.code {
        ErrorCode::Dyndns2(code) => code_reply(code, StatusMode::Always200, json),
        _ => r.reply(json),
    }
}

fn invalid_ip(param: &str, value: &str, e: &AddrError) -> Rejection {
    let shown: String = value.chars().take(64).collect();
    Rejection::new(
        400,
        ErrorCode::InvalidIp,
        format!("parameter {param}: '{shown}' {e}"),
    )
}

/// One line per host, in request order: `good 192.0.2.1`, `good 192.0.2.1 2001:db8::1`, `nohost`.
pub fn render(results: &[HostOutcome], mode: StatusMode, json: bool) -> Reply {
    let status = results
        .iter()
        .find(|r| !r.code.is_success())
        .map_or(200, |r| status_of(r.code, mode));
    if json {
        let items: Vec<serde_json::Value> = results
            .iter()
            .map(|r| {
                let mut v = json!({"hostname": r.host, "status": r.code.as_str()});
                if r.code.is_success() {
                    for ip in &r.addrs {
                        let key = if ip.is_ipv4() { "ipv4" } else { "ipv6" };
                        super::set_field(&mut v, key, json!(ip.to_string()));
                    }
                }
                v
            })
            .collect();
        let overall = results
            .iter()
            .find(|r| !r.code.is_success())
            .or(results.first())
            .map_or(Code::Emergency, |r| r.code);
        return Reply::json(status, &json!({"status": overall, "results": items}));
    }
    let mut body = String::new();
    for r in results {
        body.push_str(r.code.as_str());
        if r.code.is_success() {
            for ip in &r.addrs {
                body.push(' ');
                body.push_str(&ip.to_string());
            }
        }
        body.push('\n');
    }
    Reply::text(status, body)
}

#[cfg(test)]
mod tests;
