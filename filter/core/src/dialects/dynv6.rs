//! dynv6's Update API: `GET /api/update?zone=&token=&ipv4=&ipv6=&ipv6prefix=`.
//!
//! `zone` may also be called `hostname`, `Hostname` or `domain`. The token is checked against
//! the shared credential store (an API token; `Authorization: Bearer` works too). Values:
//! - `ipv4`: an address, `auto` (the client address) or `-` (remove the A record);
//! - `ipv6`: an address (with `/len`, the prefix of the other records follows it unless
//!   `ipv6prefix` is given), `auto`, `6to4`, or `-`;
//! - `ipv6prefix`: a network in CIDR notation, `auto` (the client's /64), `6to4`, or `-`
//!   (remove the AAAA records below the zone). It rewrites the network part of the AAAA
//!   records of the user's hosts *below* the zone and keeps their interface identifiers; the
//!   zone's own AAAA is not touched by it.
//!
//! Empty or absent = unchanged. Replies are dynv6's short plain text (`addresses updated`,
//! `addresses unchanged`, `invalid authentication token`, `zone not found`, ...), JSON with
//! `Accept: application/json`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::json;

use super::{error_reply, Rejection, Render};
use crate::addr;
use crate::backends::RrType;
use crate::config::{Config, Scope, Zone};
use crate::credentials::{self, Presented};
use crate::dialects::Start;
use crate::exchange::{Env, Outcome};
use crate::job::{Edit, HostJob, HostOutcome, Job, Refusal, Target};
use crate::kv::KvCount;
use crate::names::Fqdn;
use crate::pipeline::{self, Denied, Refused};
use crate::reply::{Code, ErrorCode, Reply};
use crate::request::{Params, Request};

/// Parameter names for the zone, first present wins.
pub const ZONE_PARAMS: &[&str] = &["zone", "hostname", "Hostname", "domain"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum V4 {
    Leave,
    Remove,
    Set(Ipv4Addr),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum V6 {
    Leave,
    Remove,
    Set(Ipv6Addr),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prefix {
    Leave,
    Remove,
    Set(Ipv6Addr, u8),
}

/// A rejection with what the guard pipeline counted and logged on the way.
struct Denial {
    rejection: Rejection,
    /// What a failed authentication counts against.
    counts: Vec<KvCount>,
    /// Audit lines of the refusal.
    log: Vec<String>,
}

impl From<Rejection> for Denial {
    fn from(rejection: Rejection) -> Denial {
        Denial {
            rejection,
            counts: vec![],
            log: vec![],
        }
    }
}

fn reject(status: u16, code: impl Into<ErrorCode>, text: impl Into<String>) -> Rejection {
    Rejection::new(status, code, text)
}

/// dynv6's wording: the message alone as text, else the JSON error body.
fn reply(r: &Rejection, json: bool) -> Reply {
    if json {
        return r.reply(json);
    }
    r.finish(Reply::text(r.status, format!("{}\n", r.message)))
}

impl Denial {
    /// A refusal of the guard pipeline in dynv6's words.
    fn refused(r: Refused) -> Denial {
        let rejection = match r.denied {
            Denied::Limited { retry_after_s } => {
                reject(429, Code::Abuse, "too many requests").retry_after(retry_after_s)
            }
            Denied::Missing => reject(401, Code::Badauth, "missing authentication token"),
            Denied::Bad(_) => reject(401, Code::Badauth, "invalid authentication token"),
            Denied::Unavailable => reject(503, Code::Emergency, "try again later"),
        };
        Denial {
            rejection,
            counts: r.counts,
            log: r.log,
        }
    }
}

fn six_to_four(v4: Ipv4Addr) -> Ipv6Addr {
    let o = v4.octets();
    Ipv6Addr::new(
        0x2002,
        u16::from_be_bytes([o[0], o[1]]),
        u16::from_be_bytes([o[2], o[3]]),
        0,
        0,
        0,
        0,
        0,
    )
}

fn parse_cidr6(text: &str, param: &str) -> Result<(Ipv6Addr, u8), Rejection> {
    let bad = || reject(400, ErrorCode::InvalidIp, format!("invalid {param}"));
    let (ip, len) = match text.split_once('/') {
        Some((ip, len)) => (ip, len.parse::<u8>().map_err(|_| bad())?),
        None => (text, 64),
    };
    if !(1..=128).contains(&len) {
        return Err(bad());
    }
    let ip = addr::parse_v6(ip).map_err(|_| bad())?;
    Ok((ip, len))
}

pub fn handle(cfg: &Config, req: &Request, env: &Env) -> Start {
    let json = req.wants_json();
    match plan(cfg, req, env, json) {
        Ok((job, render)) => Start::Job(job, render),
        Err(r) => {
            let mut out = Outcome::reply(reply(&r.rejection, json));
            out.counts = r.counts;
            out.log = r.log;
            Start::Reply(out)
        }
    }
}

fn plan(cfg: &Config, req: &Request, env: &Env, json: bool) -> Result<(Box<Job>, Render), Denial> {
    if req.method != "GET" && req.method != "POST" {
        return Err(reject(405, ErrorCode::MethodNotAllowed, "method not allowed").into());
    }
    let params = Params::parse(req.query())
        .map_err(|e| reject(400, ErrorCode::InvalidRequest, e.to_string()))?;
    let one = |n: &str| {
        params
            .one(n)
            .map_err(|e| reject(400, ErrorCode::InvalidRequest, e.to_string()))
            .map(|v| v.filter(|s| !s.is_empty()))
    };
    let token = one("token")?;
    let presented = match (req.header("authorization"), token) {
        (_, Some(t)) => Presented::Secret(t.to_string()),
        (Some(h), None) => credentials::presented(Some(h), None, None),
        (None, None) => Presented::None,
    };
    let identity = pipeline::authorize(cfg, req, env, presented.into(), Some(Scope::Update))
        .map_err(Denial::refused)?;

    let mut zone_raw = None;
    for n in ZONE_PARAMS {
        if let Some(v) = one(n)? {
            zone_raw = Some(v);
            break;
        }
    }
    let zone_raw = zone_raw.ok_or_else(|| reject(400, Code::Notfqdn, "zone not specified"))?;
    let zone_name =
        Fqdn::parse(zone_raw).map_err(|_| reject(400, Code::Notfqdn, "invalid zone"))?;
    let not_found = || reject(404, Code::Nohost, "zone not found");
    let zone: &Zone = identity.host(cfg, &zone_name).map_err(|_| not_found())?;
    let backend = cfg
        .backends
        .get(&zone.backend)
        .cloned()
        .ok_or_else(not_found)?;
    let client = req.client_ip(&cfg.trusted_proxies);
    let check = |ip: IpAddr, param: &str| {
        zone.policy.check(ip).map_err(|e| {
            reject(
                400,
                ErrorCode::InvalidIp,
                format!("invalid {param}: {ip} {e}"),
            )
        })
    };

    let v4 = match one("ipv4")? {
        None => V4::Leave,
        Some("-") => V4::Remove,
        Some(a) if a.eq_ignore_ascii_case("auto") => match client {
            Some(IpAddr::V4(c)) => V4::Set(c),
            _ => {
                return Err(reject(
                    400,
                    ErrorCode::InvalidIp,
                    "cannot detect an IPv4 address from this connection",
                )
                .into())
            }
        },
        Some(a) => V4::Set(
            addr::parse_v4(a)
                .map_err(|_| reject(400, ErrorCode::InvalidIp, "invalid IPv4 address"))?,
        ),
    };
    if let V4::Set(a) = v4 {
        check(IpAddr::V4(a), "ipv4")?;
    }
    let v4_for_6to4 = || match (v4, client) {
        (V4::Set(a), _) | (_, Some(IpAddr::V4(a))) => Ok(a),
        _ => Err(reject(
            400,
            ErrorCode::InvalidIp,
            "6to4 needs an IPv4 address",
        )),
    };
    let mut implied_prefix = None;
    let v6 = match one("ipv6")? {
        None => V6::Leave,
        Some("-") => V6::Remove,
        Some(a) if a.eq_ignore_ascii_case("auto") => match client {
            Some(IpAddr::V6(c)) => V6::Set(c),
            _ => {
                return Err(reject(
                    400,
                    ErrorCode::InvalidIp,
                    "cannot detect an IPv6 address from this connection",
                )
                .into())
            }
        },
        Some(a) if a.eq_ignore_ascii_case("6to4") => {
            let net = six_to_four(v4_for_6to4()?);
            V6::Set(Ipv6Addr::from(u128::from(net) | 1))
        }
        Some(a) if a.contains('/') => {
            let (ip, len) = parse_cidr6(a, "IPv6 address")?;
            implied_prefix = Some(Prefix::Set(ip, len));
            V6::Set(ip)
        }
        Some(a) => V6::Set(
            addr::parse_v6(a)
                .map_err(|_| reject(400, ErrorCode::InvalidIp, "invalid IPv6 address"))?,
        ),
    };
    if let V6::Set(a) = v6 {
        check(IpAddr::V6(a), "ipv6")?;
    }
    let prefix = match one("ipv6prefix")? {
        None => implied_prefix.unwrap_or(Prefix::Leave),
        Some("-") => Prefix::Remove,
        Some(p) if p.eq_ignore_ascii_case("auto") => match client {
            Some(IpAddr::V6(c)) => Prefix::Set(c, 64),
            _ => {
                return Err(reject(
                    400,
                    ErrorCode::InvalidIp,
                    "cannot detect an IPv6 prefix from this connection",
                )
                .into())
            }
        },
        Some(p) if p.eq_ignore_ascii_case("6to4") => Prefix::Set(six_to_four(v4_for_6to4()?), 48),
        Some(p) => {
            let (ip, len) = parse_cidr6(p, "IPv6 prefix")?;
            Prefix::Set(ip, len)
        }
    };
    if let Prefix::Set(net, _) = prefix {
        check(IpAddr::V6(net), "ipv6prefix")?;
    }

    // The zone's own records.
    let mut want = Vec::new();
    let mut edits = Vec::new();
    match v4 {
        V4::Set(a) => want.push((RrType::A, vec![a.to_string()])),
        V4::Remove => want.push((RrType::A, vec![])),
        V4::Leave => {}
    }
    match v6 {
        V6::Set(a) => want.push((RrType::Aaaa, vec![a.to_string()])),
        V6::Remove => want.push((RrType::Aaaa, vec![])),
        V6::Leave => {}
    }
    if want.is_empty() {
        edits.push((RrType::A, Edit::Keep));
    }
    let mut hosts = vec![HostJob::update(Target {
        name: zone_name.clone(),
        zone: zone.name.clone(),
        backend: backend.clone(),
        ttl: zone.ttl,
        want,
        edits,
    })];
    // The prefix: every host of the user strictly below the dynv6 zone.
    if prefix != Prefix::Leave {
        let below: Vec<Fqdn> = cfg
            .users
            .get(&identity.identity().user)
            .map(|u| {
                u.hosts
                    .iter()
                    .filter(|h| **h != zone_name && h.is_within(&zone_name))
                    .filter(|h| identity.may_target(cfg, h))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for name in below {
            let Some(z) = cfg.zone_of(&name) else {
                continue;
            };
            let Some(b) = cfg.backends.get(&z.backend).cloned() else {
                continue;
            };
            let edit = match prefix {
                Prefix::Set(net, len) => Edit::Prefix {
                    net,
                    len,
                    policy: z.policy.clone(),
                },
                _ => Edit::Remove {
                    values: None,
                    must_exist: false,
                },
            };
            hosts.push(HostJob::update(Target {
                name,
                zone: z.name.clone(),
                backend: b,
                ttl: z.ttl,
                want: vec![],
                edits: vec![(RrType::Aaaa, edit)],
            }));
        }
    }
    let prefix_text = match prefix {
        Prefix::Set(net, len) => {
            let mask = u128::MAX
                .checked_shl(128u32.saturating_sub(u32::from(len)))
                .unwrap_or(0);
            Some(format!("{}/{len}", Ipv6Addr::from(u128::from(net) & mask)))
        }
        _ => None,
    };
    let render = Render::Dynv6 {
        zone: zone_name.to_string(),
        prefix: prefix_text,
        json,
    };
    Ok((Job::new(cfg, "dynv6", identity, req, hosts, env), render))
}

pub(super) fn render(
    results: &[HostOutcome],
    zone: &str,
    prefix: Option<&str>,
    json: bool,
) -> Reply {
    if let Some(bad) = results.iter().find(|o| !o.code.is_success()) {
        if let Some(Refusal::Forbidden { addr, .. }) = &bad.refusal {
            let text = format!(
                "invalid ipv6prefix: {} would get {addr}, which its zone does not accept",
                bad.host
            );
            return reply(&reject(400, ErrorCode::InvalidIp, text), json);
        }
        let (status, code, text) = match bad.code {
            Code::Dnserr => (502, Code::Dnserr, "DNS update failed"),
            Code::Abuse => (429, Code::Abuse, "too many updates"),
            Code::Nohost => (
                403,
                Code::Nohost,
                "the token may not change this record type here",
            ),
            _ => (500, Code::Emergency, "internal error"),
        };
        return error_reply(json, status, code, text);
    }
    let changed = results.iter().any(|o| o.code == Code::Good);
    let text = if changed {
        "addresses updated"
    } else {
        "addresses unchanged"
    };
    if json {
        let main = results.first();
        let get = |t: RrType| {
            main.and_then(|o| o.current.iter().find(|(r, _)| *r == t))
                .and_then(|(_, v)| v.first().cloned())
        };
        let rewritten: Vec<&str> = results
            .iter()
            .skip(1)
            .filter(|o| o.code == Code::Good)
            .map(|o| o.host.as_str())
            .collect();
        return Reply::json(
            200,
            &json!({"status": if changed { "updated" } else { "unchanged" }, "message": text,
                    "zone": zone, "ipv4": get(RrType::A), "ipv6": get(RrType::Aaaa),
                    "ipv6prefix": prefix, "rewritten": rewritten}),
        );
    }
    Reply::text(200, format!("{text}\n"))
}

#[cfg(test)]
mod tests {
    use crate::testing::{body, get, json_body, status, Driver, Fault, RequestExt, TOKEN};

    const HOME: &str = "home.dyn.example.test";

    /// The demo, with a device below the dynv6 zone `home.dyn.example.test`.
    fn demo_with_devices() -> Driver {
        let mut v: serde_json::Value =
            serde_json::from_slice(include_bytes!("../../../../examples/dynedge.json")).unwrap();
        v["users"][0]["hosts"] = serde_json::json!([
            HOME,
            "nas.home.dyn.example.test",
            "tv.home.dyn.example.test"
        ]);
        Driver::new(crate::config::Config::from_json(v.to_string().as_bytes()).unwrap())
    }

    #[test]
    fn a_prefix_whose_rewritten_addresses_break_the_zone_policy_is_refused_unwritten() {
        let mut d = demo_with_devices();
        let nas = "nas.home.dyn.example.test";
        d.pdns.set(nas, "AAAA", &["2001:db8:1::5"]);
        // fec0:: itself is no special range, but /9 of it rewrites 2001:db8:1::5 to
        // fe81:db8:1::5, which is link-local (fe80::/10).
        let o = d.run(get(&format!(
            "/api/update?zone={HOME}&token={TOKEN}&ipv6prefix=fec0::/9"
        )));
        assert_eq!(status(&o), 400, "{}", body(&o));
        assert!(body(&o).contains("invalid"), "{}", body(&o));
        assert_eq!(d.pdns.get(nas, "AAAA"), vec!["2001:db8:1::5"]);
        assert!(
            d.calls
                .iter()
                .all(|c| c.method != crate::backends::Method::Patch),
            "no write"
        );
        let o = d.run(
            get(&format!(
                "/api/update?zone={HOME}&token={TOKEN}&ipv6prefix=fec0::/9"
            ))
            .header("accept", "application/json"),
        );
        assert_eq!(json_body(&o)["code"], "invalid_ip", "{}", body(&o));
        // A prefix that keeps the addresses inside the policy is written.
        let o = d.run(get(&format!(
            "/api/update?zone={HOME}&token={TOKEN}&ipv6prefix=2001:db8:2::/48"
        )));
        assert_eq!(status(&o), 200, "{}", body(&o));
        assert_eq!(d.pdns.get(nas, "AAAA"), vec!["2001:db8:2::5"]);
    }

    #[test]
    fn update_with_token_and_zone_sets_addresses_in_dynv6_words() {
        let mut d = Driver::demo();
        let o = d.run(get(&format!(
            "/api/update?zone={HOME}&token={TOKEN}&ipv4=192.0.2.7&ipv6=2001:db8::7"
        )));
        assert_eq!(status(&o), 200, "{}", body(&o));
        assert_eq!(body(&o), "addresses updated\n");
        assert_eq!(d.pdns.get(HOME, "A"), vec!["192.0.2.7"]);
        assert_eq!(d.pdns.get(HOME, "AAAA"), vec!["2001:db8::7"]);
        let writes = d.writes();
        for zone_param in ["zone", "hostname", "Hostname", "domain"] {
            let o = d.run(get(&format!(
                "/api/update?{zone_param}={HOME}&token={TOKEN}&ipv4=192.0.2.7"
            )));
            assert_eq!(body(&o), "addresses unchanged\n", "{zone_param}");
        }
        assert_eq!(d.writes(), writes);
    }

    #[test]
    fn auto_uses_the_client_address_and_dash_removes() {
        let mut d = Driver::demo();
        d.pdns.set(HOME, "AAAA", &["2001:db8::1"]);
        let o = d.run(
            get(&format!("/api/update?zone={HOME}&token={TOKEN}&ipv4=auto")).from("192.0.2.33"),
        );
        assert_eq!(body(&o), "addresses updated\n");
        assert_eq!(d.pdns.get(HOME, "A"), vec!["192.0.2.33"]);
        let o = d.run(
            get(&format!(
                "/api/update?zone={HOME}&token={TOKEN}&ipv4=-&ipv6=auto"
            ))
            .from("2001:db8::44"),
        );
        assert_eq!(body(&o), "addresses updated\n");
        assert!(d.pdns.get(HOME, "A").is_empty());
        assert_eq!(d.pdns.get(HOME, "AAAA"), vec!["2001:db8::44"]);
    }

    #[test]
    fn ipv6prefix_rewrites_the_network_of_records_below_the_zone_and_keeps_interface_ids() {
        let mut d = demo_with_devices();
        d.pdns.set(HOME, "AAAA", &["2001:db8:1:1::1"]);
        d.pdns.set(
            "nas.home.dyn.example.test",
            "AAAA",
            &["2001:db8:1:1:aaaa:bbbb:cccc:dddd"],
        );
        d.pdns.set(
            "tv.home.dyn.example.test",
            "AAAA",
            &["2001:db8:1:1::10", "2001:db8:1:1::11"],
        );
        let o = d.run(
            get(&format!(
                "/api/update?zone={HOME}&token={TOKEN}&ipv6prefix=2001:db8:2:2::/64"
            ))
            .header("accept", "application/json"),
        );
        assert_eq!(status(&o), 200, "{}", body(&o));
        let v = json_body(&o);
        assert_eq!(v["status"], "updated");
        assert_eq!(v["ipv6prefix"], "2001:db8:2:2::/64");
        assert_eq!(
            d.pdns.get("nas.home.dyn.example.test", "AAAA"),
            vec!["2001:db8:2:2:aaaa:bbbb:cccc:dddd"]
        );
        assert_eq!(
            d.pdns.get("tv.home.dyn.example.test", "AAAA"),
            vec!["2001:db8:2:2::10", "2001:db8:2:2::11"]
        );
        assert_eq!(
            d.pdns.get(HOME, "AAAA"),
            vec!["2001:db8:1:1::1"],
            "the zone's own AAAA is not the prefix's"
        );
        // An address with a prefix length moves the prefix too.
        let o = d.run(get(&format!(
            "/api/update?zone={HOME}&token={TOKEN}&ipv6=2001:db8:3:3::1/48"
        )));
        assert_eq!(body(&o), "addresses updated\n");
        assert_eq!(d.pdns.get(HOME, "AAAA"), vec!["2001:db8:3:3::1"]);
        assert_eq!(
            d.pdns.get("nas.home.dyn.example.test", "AAAA"),
            vec!["2001:db8:3:2:aaaa:bbbb:cccc:dddd"]
        );
        // auto: the client's /64.
        let o = d.run(
            get(&format!(
                "/api/update?zone={HOME}&token={TOKEN}&ipv6prefix=auto"
            ))
            .from("2001:db8:9:9::5"),
        );
        assert_eq!(body(&o), "addresses updated\n");
        assert_eq!(
            d.pdns.get("tv.home.dyn.example.test", "AAAA"),
            vec!["2001:db8:9:9::10", "2001:db8:9:9::11"]
        );
    }

    #[test]
    fn errors_are_short_dynv6_sentences_and_call_nothing() {
        let cases: Vec<(String, u16, &str)> = vec![
            (
                format!("/api/update?zone={HOME}"),
                401,
                "missing authentication token",
            ),
            (
                format!("/api/update?zone={HOME}&token=nope"),
                401,
                "invalid authentication token",
            ),
            (
                format!("/api/update?token={TOKEN}&ipv4=192.0.2.1"),
                400,
                "zone not specified",
            ),
            (
                format!("/api/update?zone=bad..zone&token={TOKEN}"),
                400,
                "invalid zone",
            ),
            (
                format!("/api/update?zone=neighbour.dyn.example.test&token={TOKEN}&ipv4=192.0.2.1"),
                404,
                "zone not found",
            ),
            (
                format!("/api/update?zone=x.elsewhere.test&token={TOKEN}&ipv4=192.0.2.1"),
                404,
                "zone not found",
            ),
            (
                format!("/api/update?zone={HOME}&token={TOKEN}&ipv4=1.2.3"),
                400,
                "invalid IPv4 address",
            ),
            (
                format!("/api/update?zone={HOME}&token={TOKEN}&ipv4=2001:db8::1"),
                400,
                "invalid IPv4 address",
            ),
            (
                format!("/api/update?zone={HOME}&token={TOKEN}&ipv4=10.0.0.1"),
                400,
                "special range",
            ),
            (
                format!("/api/update?zone={HOME}&token={TOKEN}&ipv6=192.0.2.1"),
                400,
                "invalid IPv6 address",
            ),
            (
                format!("/api/update?zone={HOME}&token={TOKEN}&ipv6=auto"),
                400,
                "cannot detect an IPv6 address",
            ),
            (
                format!("/api/update?zone={HOME}&token={TOKEN}&ipv6prefix=2001:db8::/129"),
                400,
                "invalid IPv6 prefix",
            ),
            (
                format!("/api/update?zone={HOME}&token={TOKEN}&ipv6prefix=fe80::/64"),
                400,
                "special range",
            ),
            (
                format!("/api/update?zone={HOME}&token={TOKEN}&zone={HOME}"),
                400,
                "more than once",
            ),
        ];
        for (path, want_status, want_text) in cases {
            let mut d = Driver::demo();
            let o = d.run(get(&path));
            assert_eq!(status(&o), want_status, "{path}: {}", body(&o));
            assert!(body(&o).contains(want_text), "{path}: {}", body(&o));
            assert!(d.calls.is_empty(), "rejected: no backend call ({path})");
        }
    }

    #[test]
    fn backend_failure_is_never_reported_as_updated() {
        let mut d = Driver::demo();
        d.pdns.fault = Fault::WritesFail;
        let o = d.run(get(&format!(
            "/api/update?zone={HOME}&token={TOKEN}&ipv4=192.0.2.7"
        )));
        assert_eq!(status(&o), 502);
        assert_eq!(body(&o), "dnserr: DNS update failed\n");
    }

    #[test]
    fn six_to_four_derives_the_prefix_from_the_ipv4_address() {
        let mut d = demo_with_devices();
        d.pdns
            .set("nas.home.dyn.example.test", "AAAA", &["2001:db8:1:1::5"]);
        let o = d.run(get(&format!(
            "/api/update?zone={HOME}&token={TOKEN}&ipv4=192.0.2.7&ipv6prefix=6to4"
        )));
        // 2002::/16 is public: 192.0.2.7 → 2002:c000:207::/48.
        assert_eq!(body(&o), "addresses updated\n", "{}", body(&o));
        assert_eq!(
            d.pdns.get("nas.home.dyn.example.test", "AAAA"),
            vec!["2002:c000:207:1::5"]
        );
    }
}
