//! Hostile input (feature `testing`): the properties every parser of the core must hold on
//! arbitrary bytes, and the bad-request corpus (`tests/data/bad_requests.jsonl`).
//!
//! The cargo-fuzz targets in `filter/core/fuzz/` are one line each: they call these. The same
//! functions run the checked-in seeds and every crash ever found as ordinary `#[test]`s
//! (`tests/fuzz_regressions.rs`), so a fuzz finding stays fixed. Each function panics when a
//! property breaks; "no panic" is itself the first property.

use std::net::IpAddr;
use std::sync::OnceLock;

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params as Argon2Params, Version};

use crate::addr::{self, Cidr};
use crate::auth::{self, Presented};
use crate::backends::{powerdns, CalloutResult, RrType};
use crate::names::{Fqdn, MAX_LABEL_OCTETS, MAX_NAME_OCTETS};
use crate::reply::Reply;
use crate::request::{Params, Request, MAX_PARAM_LEN};
use crate::testing::Driver;
use crate::Config;

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

/// `auth::presented`: the input is `authorization \0 username \0 password` (missing parts are
/// absent). The result's `Debug` never shows a secret.
pub fn authorization(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let header = parts.next();
    let (user, password) = (parts.next(), parts.next());
    let p = auth::presented(header.filter(|h| !h.is_empty()), user, password);
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
        assert!(auth::check_phc(&u.password_hash.0).is_ok());
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

/// The demo configuration with a cheap Argon2 hash of `demo-password`, so the whole-request
/// target runs thousands of requests a second and still verifies real passwords.
pub fn cheap_demo() -> &'static Config {
    static CFG: OnceLock<Config> = OnceLock::new();
    CFG.get_or_init(|| {
        let raw = include_str!("../../../examples/dynedge.json");
        let mut doc: serde_json::Value = serde_json::from_str(raw)
            .unwrap_or_else(|e| unreachable!("examples/dynedge.json is JSON: {e}"));
        let params = Argon2Params::new(8, 1, 1, None)
            .unwrap_or_else(|e| unreachable!("valid Argon2 parameters: {e}"));
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let salt = SaltString::encode_b64(b"dynedge-fuzz-salt")
            .unwrap_or_else(|e| unreachable!("valid salt: {e}"));
        let phc = argon
            .hash_password(b"demo-password", &salt)
            .unwrap_or_else(|e| unreachable!("hashing works: {e}"))
            .to_string();
        if let Some(hash) = doc.pointer_mut("/users/0/password_hash") {
            *hash = phc.into();
        }
        Config::from_json(doc.to_string().as_bytes())
            .unwrap_or_else(|e| unreachable!("cheap demo configuration compiles: {e}"))
    })
}

/// The configuration, credentials and stored state the structured form of [`exchange`] uses:
/// [`cheap_demo`] with webhooks on, and a runtime API token (host-restricted, with the admin
/// scope) and a webhook subscription created through the API, so that every route is reached
/// authenticated, and the routes that take an id are reached with one that exists.
pub struct FuzzWorld {
    pub cfg: Config,
    /// The KV after the setup requests, as writes to replay into a fresh driver.
    pub kv: Vec<crate::kv::KvWrite>,
    /// The runtime token (secret) and its id.
    pub token: String,
    pub token_id: String,
    pub webhook_id: String,
}

/// [`FuzzWorld`], built once.
pub fn fuzz_world() -> &'static FuzzWorld {
    static WORLD: OnceLock<FuzzWorld> = OnceLock::new();
    WORLD.get_or_init(|| {
        let mut cfg = cheap_demo().clone();
        let raw = serde_json::from_str(r#"{"cluster": "webhooks", "allow_hosts": ["hooks.example.com"]}"#)
            .unwrap_or_else(|e| unreachable!("webhook settings parse: {e}"));
        cfg.webhooks = Some(
            crate::webhooks::WebhookSettings::compile(raw)
                .unwrap_or_else(|e| unreachable!("webhook settings compile: {e}")),
        );
        let mut d = Driver::new(cfg.clone());
        let mut setup = |path: &str, body: serde_json::Value| {
            let mut req = request_from_bytes(format!("POST {path}\n\n{body}").as_bytes());
            req.headers = vec![
                ("authorization".into(), format!("Bearer {}", crate::testing::TOKEN)),
                ("content-type".into(), "application/json".into()),
            ];
            let reply = d
                .send(req)
                .unwrap_or_else(|| unreachable!("{path} is a dynedge route"));
            serde_json::from_slice::<serde_json::Value>(&reply.body)
                .unwrap_or_else(|e| unreachable!("{path} answers JSON: {e}"))
                .get("data")
                .cloned()
                .unwrap_or_default()
        };
        let token = setup(
            "/api/tokens",
            serde_json::json!({"name": "fuzz", "scopes": ["dns:update", "domains:read", "txt:write", "admin"],
                               "hosts": ["home.dyn.example.test"], "expiresIn": "30d"}),
        );
        let webhook = setup(
            "/api/webhooks",
            serde_json::json!({"url": "https://hooks.example.com/dynedge", "events": ["ip_changed"]}),
        );
        let text = |v: &serde_json::Value, k: &str| {
            v.get(k)
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        FuzzWorld {
            kv: d
                .kv
                .dump()
                .into_iter()
                .map(|(k, v)| crate::kv::KvWrite::put(k, v))
                .collect(),
            token: text(&token, "token"),
            token_id: text(&token, "id"),
            webhook_id: text(&webhook, "id"),
            cfg,
        }
    })
}

/// What the structured form puts into a request: none, or one of the demo's credentials.
#[derive(Clone, Copy)]
enum Cred {
    None,
    /// `Authorization: Basic demo:demo-password`.
    Password,
    /// `Authorization: Basic demo:<wrong>`.
    WrongPassword,
    /// `Authorization: Bearer` with the demo's static token.
    Bearer,
    /// `Authorization: Bearer` with the runtime, host-restricted admin token.
    RuntimeBearer,
    /// `Authorization: Basic demo:<token>` (DynDNS2 clients put a token in the password).
    TokenAsPassword,
    /// `X-Api-Key` with the demo's static token.
    ApiKey,
    /// acme-dns `X-Api-User: demo` and `X-Api-Key: demo-password`.
    AcmePassword,
    /// acme-dns `X-Api-User: demo` and `X-Api-Key` with the runtime token.
    AcmeToken,
}

const CREDS: &[Cred] = &[
    Cred::None,
    Cred::Password,
    Cred::WrongPassword,
    Cred::Bearer,
    Cred::RuntimeBearer,
    Cred::TokenAsPassword,
    Cred::ApiKey,
    Cred::AcmePassword,
    Cred::AcmeToken,
];

/// One request shape of the structured form. In `path`, `{0}`..`{9}` are the fuzzed slots,
/// `{s}` the credential's secret (for the dialects that take it in the path or query), `{u}`
/// its user, `{t}` the runtime token's id and `{w}` the webhook's id. The slots after the
/// path's go, in order, to `json`'s keys (a slot that parses as JSON is put in as that value,
/// any other as a string) or, with `form`, replace `{n}` in it.
struct Shape {
    method: &'static str,
    path: &'static str,
    json: &'static [&'static str],
    form: Option<&'static str>,
}

const fn shape(method: &'static str, path: &'static str, json: &'static [&'static str]) -> Shape {
    Shape {
        method,
        path,
        json,
        form: None,
    }
}

const SHAPES: &[Shape] = &[
    shape(
        "POST",
        "/api/tokens",
        &["name", "scopes", "hosts", "expiresIn"],
    ),
    shape("GET", "/api/tokens", &[]),
    shape("DELETE", "/api/tokens/{t}{0}", &[]),
    shape(
        "POST",
        "/api/tokens/{t}{0}/regenerate",
        &["name", "scopes", "hosts", "expiresIn"],
    ),
    shape(
        "POST",
        "/api/webhooks",
        &["url", "events", "secret", "hostname"],
    ),
    shape("GET", "/api/webhooks", &[]),
    shape(
        "PATCH",
        "/api/webhooks/{w}{0}",
        &["url", "events", "secret", "active"],
    ),
    shape("DELETE", "/api/webhooks/{w}{0}", &[]),
    shape(
        "POST",
        "/.well-known/apertodns/v1/update",
        &["hostname", "ipv4", "ipv6", "ttl", "txt"],
    ),
    shape(
        "POST",
        "/.well-known/apertodns/v1/bulk-update",
        &["updates", "defaults"],
    ),
    shape(
        "POST",
        "/.well-known/apertodns/v1/txt",
        &["hostname", "value", "ttl"],
    ),
    shape(
        "DELETE",
        "/.well-known/apertodns/v1/txt",
        &["hostname", "value"],
    ),
    shape("GET", "/.well-known/apertodns/v1/txt/{0}", &[]),
    shape("GET", "/.well-known/apertodns/v1/{0}", &[]),
    shape("POST", "/acme-dns/update", &["subdomain", "txt"]),
    shape("POST", "/update", &["subdomain", "txt"]),
    shape("POST", "/httpreq/present", &["fqdn", "value"]),
    shape("POST", "/cleanup", &["fqdn", "value"]),
    shape(
        "GET",
        "/nic/update?hostname={0}&myip={1}&myipv6={2}&wildcard={3}",
        &[],
    ),
    shape(
        "GET",
        "/nic/update?hostname={0}&myip={1}&username={u}&password={s}",
        &[],
    ),
    shape("GET", "/v3/update?hostname={0}&myip={1}&myip6={2}", &[]),
    Shape {
        method: "POST",
        path: "/nic/update",
        json: &[],
        form: Some("hostname={0}&myip={1}&myipv6={2}"),
    },
    shape(
        "GET",
        "/api/update?zone={0}&token={s}&ipv4={1}&ipv6={2}&ipv6prefix={3}",
        &[],
    ),
    shape("GET", "/update-by-path/{s}/{0}/{1}/{2}", &[]),
    shape(
        "GET",
        "/update-by-query?secret={s}&fqdn={0}&ip_1={1}&ip_2={2}",
        &[],
    ),
    shape("GET", "/delete-by-path/{s}/{0}", &[]),
    shape("GET", "/domains/my-ip{0}", &[]),
];

/// The structured form of [`exchange`]'s input: byte 0 (below 0x20) picks a [`Shape`], byte 1
/// a credential, the rest are slots separated by NUL.
fn structured_request(world: &FuzzWorld, data: &[u8]) -> Request {
    let (shape_byte, cred_byte, rest) = match data {
        [a, b, rest @ ..] => (*a, *b, rest),
        [a] => (*a, 0, &[][..]),
        [] => (0, 0, &[][..]),
    };
    let shape = SHAPES.iter().cycle().nth(usize::from(shape_byte));
    let cred = CREDS.iter().cycle().nth(usize::from(cred_byte)).copied();
    let (Some(shape), Some(cred)) = (shape, cred) else {
        return request_from_bytes(data);
    };
    let slots: Vec<String> = rest
        .split(|b| *b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    let basic = |user: &str, secret: &str| {
        use base64::Engine;
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
        ("authorization".to_string(), format!("Basic {v}"))
    };
    let token = crate::testing::TOKEN;
    let (user, secret, headers): (&str, &str, Vec<(String, String)>) = match cred {
        Cred::None => ("", "", vec![]),
        Cred::Password => (
            "demo",
            "demo-password",
            vec![basic("demo", "demo-password")],
        ),
        Cred::WrongPassword => (
            "demo",
            "demo-passwore",
            vec![basic("demo", "demo-passwore")],
        ),
        Cred::Bearer => (
            "demo",
            token,
            vec![("authorization".into(), format!("Bearer {token}"))],
        ),
        Cred::RuntimeBearer => (
            "demo",
            &world.token,
            vec![("authorization".into(), format!("Bearer {}", world.token))],
        ),
        Cred::TokenAsPassword => ("demo", token, vec![basic("demo", token)]),
        Cred::ApiKey => ("demo", token, vec![("x-api-key".into(), token.into())]),
        Cred::AcmePassword => (
            "demo",
            "demo-password",
            vec![
                ("x-api-user".into(), "demo".into()),
                ("x-api-key".into(), "demo-password".into()),
            ],
        ),
        Cred::AcmeToken => (
            "demo",
            &world.token,
            vec![
                ("x-api-user".into(), "demo".into()),
                ("x-api-key".into(), world.token.clone()),
            ],
        ),
    };
    let mut next = slots.iter();
    let mut fill = |template: &str| {
        let mut out = template
            .replace("{s}", secret)
            .replace("{u}", user)
            .replace("{t}", &world.token_id)
            .replace("{w}", &world.webhook_id);
        for n in 0..10 {
            let hole = format!("{{{n}}}");
            if out.contains(&hole) {
                out = out.replace(&hole, next.next().map_or("", String::as_str));
            }
        }
        out
    };
    let path = fill(shape.path);
    let mut headers = headers;
    headers.push(("user-agent".into(), "dynedge-fuzz/1".into()));
    let body = match shape.form {
        Some(form) => {
            headers.push((
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            ));
            fill(form).into_bytes()
        }
        None if shape.json.is_empty() => vec![],
        None => {
            headers.push(("content-type".into(), "application/json".into()));
            let mut obj = serde_json::Map::new();
            for (key, slot) in shape.json.iter().zip(next) {
                let value = serde_json::from_str(slot)
                    .unwrap_or_else(|_| serde_json::Value::String(slot.clone()));
                obj.insert((*key).to_string(), value);
            }
            serde_json::Value::Object(obj).to_string().into_bytes()
        }
    };
    Request {
        method: shape.method.to_string(),
        path,
        headers,
        body,
        peer: "198.51.100.77".parse().ok(),
    }
}

/// The driver (with [`FuzzWorld`]'s state) and the request an [`exchange`] input stands for.
pub fn exchange_input(data: &[u8]) -> (Driver, Request) {
    let world = fuzz_world();
    let d = Driver::new(world.cfg.clone());
    d.kv.apply(&world.kv);
    let req = match data.first() {
        Some(b) if *b < 0x20 => structured_request(world, data),
        _ => request_from_bytes(data),
    };
    (d, req)
}

/// A request from the text form `METHOD PATH\nName: value\n...\n\nBODY`.
pub fn request_from_bytes(data: &[u8]) -> Request {
    let split = data
        .windows(2)
        .position(|w| w == b"\n\n")
        .and_then(|i| Some((data.get(..i)?, data.get(i.checked_add(2)?..)?)))
        .unwrap_or((data, &[][..]));
    let head = String::from_utf8_lossy(split.0);
    let mut lines = head.split('\n');
    let first = lines.next().unwrap_or("");
    let (method, path) = first.split_once(' ').unwrap_or((first, "/nic/update"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Request {
        method: method.to_string(),
        path: path.to_string(),
        headers,
        body: split.1.to_vec(),
        peer: "198.51.100.77".parse().ok(),
    }
}

/// The DynDNS2 result codes of a reply: one per host line, or from the JSON document.
pub fn reply_codes(reply: &Reply) -> Vec<String> {
    let body = String::from_utf8_lossy(&reply.body);
    if let Ok(doc) = serde_json::from_str::<serde_json::Value>(&body) {
        fn text<'a>(v: &'a serde_json::Value, k: &str) -> Option<&'a str> {
            v.get(k)?.as_str()
        }
        let mut codes: Vec<String> = doc
            .get("results")
            .and_then(|r| r.as_array())
            .map(|r| {
                r.iter()
                    .filter_map(|x| text(x, "status").map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if codes.is_empty() {
            codes.extend(
                text(&doc, "code")
                    .or(text(&doc, "status"))
                    .map(str::to_string),
            );
        }
        return codes;
    }
    body.lines()
        .filter_map(|l| l.split([' ', ':']).next())
        .map(str::to_string)
        .collect()
}

/// Codes that say the backend was (or may have been) asked: anything else is a rejection.
pub const ATTEMPT_CODES: &[&str] = &["good", "nochg", "dnserr", "911"];

/// Statuses that refuse a request outright in every dialect: no backend call may precede them.
pub const REFUSAL_STATUSES: &[u16] = &[401, 403, 405, 413, 429];

/// A whole request through `Exchange` against the fake PowerDNS: no panic; a refusal (401,
/// 403, 405, 413, 429) made no backend call, in any dialect; and on the DynDNS2 endpoints a
/// request that is rejected (no host reached `good`/`nochg`/`dnserr`/`911`) made no backend
/// call at all. (Other dialects may legitimately read before a 404, so only refusals count.)
///
/// Two input forms: the raw text form of [`request_from_bytes`], and, when the first byte is
/// below 0x20, the structured form of [`structured_request`], which reaches every route with
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

// ------------------------------------------------------------------ the bad-request corpus

/// One malformed request of `tests/data/bad_requests.jsonl` and the error it must get.
#[derive(Debug, Clone)]
pub struct BadRequest {
    pub id: String,
    pub category: String,
    pub method: Vec<u8>,
    pub path: Vec<u8>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
    /// The acceptable reply codes (`pass`: not a dynedge route).
    pub expect: Vec<String>,
    /// The HTTP statuses the core may answer (one per acceptable code).
    pub status: Vec<u16>,
    /// The status when Envoy's own codec refuses the request before the filter.
    pub envoy_status: Option<u16>,
}

/// The corpus as checked in.
pub const BAD_REQUESTS: &str = include_str!("../tests/data/bad_requests.jsonl");

/// `{{xHH}}` → one raw byte, `{{repeat:N:TEXT}}` → TEXT N times; the rest is UTF-8 text.
pub fn expand(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some((before, after)) = rest.split_once("{{") {
        out.extend_from_slice(before.as_bytes());
        let Some((token, tail)) = after.split_once("}}") else {
            rest = rest.get(before.len()..).unwrap_or_default();
            break;
        };
        if let Some(hex) = token.strip_prefix('x') {
            out.extend(u8::from_str_radix(hex, 16).ok());
        } else if let Some(spec) = token.strip_prefix("repeat:") {
            let (n, what) = spec.split_once(':').unwrap_or(("0", ""));
            out.extend(what.as_bytes().repeat(n.parse().unwrap_or(0)));
        }
        rest = tail;
    }
    out.extend_from_slice(rest.as_bytes());
    out
}

fn status(v: &serde_json::Value) -> Option<u16> {
    v.as_u64().and_then(|s| u16::try_from(s).ok())
}

/// Parses the corpus; a malformed line is an error naming it.
pub fn bad_requests(text: &str) -> Result<Vec<BadRequest>, String> {
    let mut out = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("line {}: {e}", n.saturating_add(1)))?;
        let null = serde_json::Value::Null;
        let get = |k: &str| v.get(k).unwrap_or(&null);
        let s = |k: &str| get(k).as_str().unwrap_or("").to_string();
        out.push(BadRequest {
            id: s("id"),
            category: s("category"),
            method: expand(&s("method")),
            path: expand(&s("path")),
            headers: get("headers")
                .as_array()
                .map(|hs| {
                    hs.iter()
                        .map(|h| {
                            let part =
                                |i: usize| expand(h.get(i).and_then(|p| p.as_str()).unwrap_or(""));
                            (part(0), part(1))
                        })
                        .collect()
                })
                .unwrap_or_default(),
            body: expand(&s("body")),
            expect: s("expect").split('|').map(str::to_string).collect(),
            status: match get("status") {
                serde_json::Value::Array(all) => all.iter().filter_map(status).collect(),
                one => status(one).into_iter().collect(),
            },
            envoy_status: status(get("envoy_status")),
        });
        if out.last().is_some_and(|c| c.status.is_empty()) {
            return Err(format!("line {}: no status", n.saturating_add(1)));
        }
    }
    Ok(out)
}

impl BadRequest {
    /// The request as an adapter snapshots it (bytes that are not UTF-8 replaced, as the
    /// proxy-wasm adapter does).
    pub fn request(&self) -> Request {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Request {
            method: text(&self.method),
            path: text(&self.path),
            headers: self
                .headers
                .iter()
                .map(|(k, v)| (text(k), text(v)))
                .collect(),
            body: self.body.clone(),
            peer: "198.51.100.77".parse().ok(),
        }
    }

    /// Whether a reply (`None`: passed on) is the error this case expects.
    pub fn judge(&self, status: u16, codes: &[String]) -> Result<(), String> {
        if !self.status.contains(&status) {
            return Err(format!("status {status}, expected {:?}", self.status));
        }
        if !codes.iter().any(|c| self.expect.contains(c)) {
            return Err(format!(
                "codes {codes:?}, expected one of {:?}",
                self.expect
            ));
        }
        if codes.iter().any(|c| ATTEMPT_CODES.contains(&c.as_str())) {
            return Err(format!("codes {codes:?} include an update attempt"));
        }
        Ok(())
    }
}
