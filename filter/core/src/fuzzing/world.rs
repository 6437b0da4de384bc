//! The inputs of the whole-request target: a cheap demo configuration, the world of runtime
//! tokens and webhooks it is fuzzed in, and the two forms (text and structured) of a request.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params as Argon2Params, Version};

use crate::request::Request;
use crate::testing::Driver;
use crate::Config;

/// The demo configuration with a cheap Argon2 hash of `demo-password`, so the whole-request
/// target runs thousands of requests a second and still verifies real passwords.
pub fn cheap_demo() -> &'static Config {
    static CFG: OnceLock<Config> = OnceLock::new();
    CFG.get_or_init(|| {
        let raw = include_str!("../../../../examples/dynedge.json");
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

/// The configuration, credentials and stored state the structured form of
/// [`exchange`](super::exchange) uses: [`cheap_demo`] with webhooks on, and a runtime API token
/// (host-restricted, with the admin scope) and a webhook subscription created through the API,
/// so that every route is reached authenticated, and the routes that take an id are reached
/// with one that exists.
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

/// The structured form of [`exchange`](super::exchange)'s input: byte 0 (below 0x20) picks a
/// [`Shape`], byte 1 a credential, the rest are slots separated by NUL.
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

/// The driver (with [`FuzzWorld`]'s state) and the request an [`exchange`](super::exchange)
/// input stands for.
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
