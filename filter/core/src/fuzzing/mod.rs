//! Hostile input (feature `testing`): the properties every parser of the core must hold on
//! arbitrary bytes, and the bad-request corpus (`tests/data/bad_requests.jsonl`).
//!
//! The cargo-fuzz targets in `filter/core/fuzz/` are one line each: they call these. The same
//! functions run the checked-in seeds and every crash ever found as ordinary `#[test]`s
//! (`tests/fuzz_regressions.rs`), so a fuzz finding stays fixed. Each function panics when a
//! property breaks; "no panic" is itself the first property.

use std::net::IpAddr;

use crate::addr::{self, Cidr};
use crate::backends::{powerdns, CalloutResult, RrType};
use crate::credentials::{self, Presented};
use crate::names::{Fqdn, MAX_LABEL_OCTETS, MAX_NAME_OCTETS};
use crate::request::{Params, MAX_PARAM_LEN};
use crate::Config;

mod corpus;
mod world;

pub use corpus::*;
pub use world::{cheap_demo, exchange_input, fuzz_world, request_from_bytes, FuzzWorld};

/// A property check: panics when the property breaks.
pub type Check = fn(&[u8]);

/// Every target by name, as `cargo xtask fuzz` and the regression tests know them.
pub const TARGETS: &[(&str, Check)] = &[
    ("params", params),
    ("fqdn", fqdn),
    ("addr", addr),
    ("authorization", authorization),
    ("config", config),
    ("powerdns_read", powerdns_read),
    ("rfc2136_answer", rfc2136_answer),
    ("exchange", exchange),
];

/// The parameter names the dialects read.
const NAMES: &[&str] = &[
    "hostname", "myip", "myip6", "myipv6", "ipv6", "username", "password", "wildcard", "",
];

/// `Params::parse` (query strings and form bodies).
pub fn params(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(p) = Params::parse(text) else {
        return;
    };
    for name in NAMES {
        if let Ok(Some(v)) = p.one(name) {
            assert!(v.len() <= MAX_PARAM_LEN, "value longer than the limit");
            assert!(
                !v.chars().any(char::is_control),
                "a control character survived decoding: {v:?}"
            );
        }
    }
}

/// `Fqdn::parse` and `Fqdn::parse_service`: the normal form is short, lower-case ASCII, made of
/// valid labels, and parses to itself.
pub fn fqdn(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for (parse, service) in [
        (Fqdn::parse as fn(&str) -> _, false),
        (Fqdn::parse_service, true),
    ] {
        let Ok(name) = parse(&text) else { continue };
        let s = name.as_str();
        assert!(s.len() <= MAX_NAME_OCTETS, "{s:?} too long");
        assert!(
            s.bytes().all(|b| b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || b == b'-'
                || b == b'.'
                || (service && b == b'_')),
            "{s:?} is not lower-case LDH"
        );
        assert!(s.split('.').count() >= 2, "{s:?} has one label");
        assert!(
            s.split('.')
                .all(|l| !l.is_empty() && l.len() <= MAX_LABEL_OCTETS),
            "{s:?} has an empty or long label"
        );
        assert_eq!(parse(s).as_ref(), Ok(&name), "normal form is not stable");
        assert!(name.is_within(&name));
        if !service {
            assert_eq!(Fqdn::parse_service(s).as_ref(), Ok(&name));
        }
    }
}

/// `addr::parse_ip`/`parse_v4`/`parse_v6` and `Cidr`: strict forms that round-trip.
pub fn addr(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match addr::parse_ip(&text) {
        Ok(ip) => {
            assert!(!text.contains('%'), "zone id accepted: {text:?}");
            assert!(!text.contains(char::is_whitespace), "space accepted");
            assert_eq!(addr::parse_ip(&ip.to_string()), Ok(ip));
            assert_eq!(addr::parse_v4(&text).is_ok(), ip.is_ipv4());
            assert_eq!(addr::parse_v6(&text).is_ok(), ip.is_ipv6());
        }
        Err(_) => {
            assert!(addr::parse_v4(&text).is_err() && addr::parse_v6(&text).is_err());
        }
    }
    if let Ok(c) = text.parse::<Cidr>() {
        assert_eq!(
            c.to_string().parse::<Cidr>(),
            Ok(c),
            "{c} does not parse back"
        );
        let net = c
            .to_string()
            .split('/')
            .next()
            .and_then(|n| n.parse::<IpAddr>().ok());
        assert!(
            net.is_some_and(|n| c.contains(n)),
            "{c} does not contain its own address"
        );
    }
}

/// `credentials::presented`: the input is `authorization \0 username \0 password` (missing parts are
/// absent). The result's `Debug` never shows a secret.
pub fn authorization(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let header = parts.next();
    let (user, password) = (parts.next(), parts.next());
    let p = credentials::presented(header.filter(|h| !h.is_empty()), user, password);
    // The exact Debug forms: a secret has nowhere to appear.
    let want = match &p {
        Presented::None => "None".to_string(),
        Presented::Bearer(_) => "Bearer(***)".to_string(),
        Presented::Secret(_) => "Secret(***)".to_string(),
        Presented::Password { user, .. } => format!("Password({user}, ***)"),
    };
    assert_eq!(format!("{p:?}"), want);
}

/// `Config::from_json`: never panics; what it accepts is usable.
pub fn config(data: &[u8]) {
    let Ok(cfg) = Config::from_json(data) else {
        return;
    };
    let _ = cfg.warnings();
    for z in &cfg.zones {
        assert!(cfg.zone_of(&z.name).is_some(), "zone {} not found", z.name);
        assert!(cfg.backends.contains_key(&z.backend), "dangling backend");
    }
    for u in cfg.users.values() {
        assert!(crate::config::check_phc(&u.password_hash.0).is_ok());
    }
}

/// The PowerDNS read parser and write check: the first two bytes are the HTTP status, the rest
/// the body. Only a 200 reads and only a 204 writes; errors are bounded and name PowerDNS.
pub fn powerdns_read(data: &[u8]) {
    let (status, body) = match data {
        [a, b, rest @ ..] => (u16::from_be_bytes([*a, *b]) % 600, rest.to_vec()),
        _ => (200, data.to_vec()),
    };
    let result = CalloutResult::Response {
        status,
        headers: vec![],
        body,
    };
    let Ok(name) = Fqdn::parse("home.dyn.example.test") else {
        unreachable!("a valid name")
    };
    for rtype in [RrType::A, RrType::Aaaa, RrType::Txt] {
        match powerdns::parse_read(&name, rtype, &result) {
            Ok(values) => {
                assert_eq!(status, 200, "a read accepted HTTP {status}");
                assert!(values
                    .iter()
                    .all(|v| rtype == RrType::Txt || !v.contains('\n')));
            }
            Err(e) => assert!(
                e.to_string().starts_with("PowerDNS") && e.to_string().chars().count() < 600
            ),
        }
    }
    if powerdns::check_write(&result).is_ok() {
        assert_eq!(status, 204, "a write accepted HTTP {status}");
    }
}

/// The RFC 2136 (DoH) answer parsers: the bytes are a DNS message from the relay. A read
/// yields only addresses of the asked type; no forged bytes ever pass as a signed, successful
/// UPDATE answer (that would be a false `good`).
pub fn rfc2136_answer(data: &[u8]) {
    use crate::backends::rfc2136::{self, Pending, Rfc2136Backend, TsigAlg, TsigKey, DNS_MESSAGE};
    let Ok(name) = Fqdn::parse("home.dyn.example.test") else {
        unreachable!("a valid name")
    };
    let result = CalloutResult::Response {
        status: 200,
        headers: vec![("content-type".into(), DNS_MESSAGE.into())],
        body: data.to_vec(),
    };
    for rtype in [RrType::A, RrType::Aaaa, RrType::Txt] {
        if let Ok(values) = rfc2136::parse_read(&name, rtype, &result) {
            for v in &values {
                match rtype {
                    RrType::A => assert!(v.parse::<std::net::Ipv4Addr>().is_ok(), "{v}"),
                    RrType::Aaaa => assert!(v.parse::<std::net::Ipv6Addr>().is_ok(), "{v}"),
                    RrType::Txt => {}
                }
            }
        }
    }
    let key = match TsigKey::new(
        "dynedge-fuzz.",
        TsigAlg::HmacSha256,
        "ZHluZWRnZS1mdXp6LXRzaWctc2VjcmV0LTMyYnl0ZXM=",
    ) {
        Ok(k) => k,
        Err(e) => unreachable!("a valid key: {e:?}"),
    };
    let backend = Rfc2136Backend {
        cluster: "relay".into(),
        authority: "relay".into(),
        path: "/dns-query".into(),
        key,
        timeout_ms: 1000,
    };
    let pending = Pending {
        request_mac: vec![0x5a; 32],
        id: 0,
        signed_at: 1_700_000_000,
    };
    assert!(
        rfc2136::check_write(&backend, &pending, &result).is_err(),
        "unsigned or forged bytes accepted as a successful UPDATE"
    );
    if let Ok(answer) = rfc2136::read_answer(data, &pending.request_mac, &backend.key) {
        assert!(
            answer.tsig.is_none_or(|t| !t.verified),
            "a forged TSIG verified"
        );
    }
}

/// A whole request through `Exchange` against the fake PowerDNS: no panic; a refusal (401,
/// 403, 405, 413, 429) made no backend call, in any dialect; and on the DynDNS2 endpoints a
/// request that is rejected (no host reached `good`/`nochg`/`dnserr`/`911`) made no backend
/// call at all. (Other dialects may legitimately read before a 404, so only refusals count.)
///
/// Two input forms: the raw text form of [`request_from_bytes`], and, when the first byte is
/// below 0x20, the structured form of `world::structured_request`, which reaches every route with
/// valid credentials of the demo and fuzzes the fields behind authentication.
pub fn exchange(data: &[u8]) {
    let (mut d, req) = exchange_input(data);
    let dyndns2 = matches!(
        crate::dialects::route_request(&d.cfg, &req),
        Some(crate::dialects::Route::Dyndns2(_))
    );
    let Some(reply) = d.send(req) else {
        assert!(d.calls.is_empty(), "a passed-through request made calls");
        return;
    };
    let refused = REFUSAL_STATUSES.contains(&reply.status);
    assert!(
        !refused || d.calls.is_empty(),
        "a {} refusal made {} backend call(s)",
        reply.status,
        d.calls.len()
    );
    if !dyndns2 {
        return;
    }
    let codes = reply_codes(&reply);
    let attempted = codes.iter().any(|c| ATTEMPT_CODES.contains(&c.as_str()));
    assert!(
        attempted || d.calls.is_empty(),
        "rejected request ({} {codes:?}) made {} backend call(s)",
        reply.status,
        d.calls.len()
    );
    if !d.calls.is_empty() {
        assert!(
            reply.status == 200 || reply.status >= 500,
            "{}",
            reply.status
        );
    }
}
