//! The acme-dns API and lego's httpreq protocol through the native driver: exact status codes
//! and error names of acme-dns, what lands in the (fake, named) PowerDNS, and no backend call
//! for any refused request.

use serde_json::{json, Value};

use crate::kv::{keys, KvView};
use crate::testing::{body, get, json_body, request, status, Driver, RequestExt, TOKEN};

const HOME: &str = "home.dyn.example.test";
/// Two ACME values (43 characters of base64url each), as for an apex and its wildcard.
const V1: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA1";
const V2: &str = "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB2";
const V3: &str = "CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC3";

fn demo() -> Driver {
    Driver::demo()
}

fn with(edit: impl FnOnce(&mut Value)) -> Driver {
    let mut v: Value =
        serde_json::from_slice(include_bytes!("../../../../examples/dynedge.json")).unwrap();
    edit(&mut v);
    Driver::new(crate::Config::from_json(v.to_string().as_bytes()).unwrap())
}

struct Reg {
    username: String,
    password: String,
    subdomain: String,
    fulldomain: String,
}

fn register(d: &mut Driver, json: &str) -> Reg {
    let o = d.run(request("POST", "/acme-dns/register", json));
    assert_eq!(status(&o), 201, "{}", body(&o));
    let v = json_body(&o);
    let s = |k: &str| v[k].as_str().unwrap().to_string();
    Reg {
        username: s("username"),
        password: s("password"),
        subdomain: s("subdomain"),
        fulldomain: s("fulldomain"),
    }
}

fn update(reg: &Reg, subdomain: &str, txt: &str) -> crate::request::Request {
    request(
        "POST",
        "/acme-dns/update",
        &json!({"subdomain": subdomain, "txt": txt}).to_string(),
    )
    .header("X-Api-User", &reg.username)
    .header("X-Api-Key", &reg.password)
}

#[test]
fn register_answers_201_with_acme_dns_credentials_and_stores_only_a_hash() {
    let mut d = demo();
    let o = d.run(request("POST", "/acme-dns/register", ""));
    assert_eq!(status(&o), 201, "{}", body(&o));
    let v = json_body(&o);
    let user = v["username"].as_str().unwrap();
    let password = v["password"].as_str().unwrap();
    let sub = v["subdomain"].as_str().unwrap();
    assert!(super::is_uuid(user) && super::is_uuid(sub), "{v}");
    assert_eq!(&user[14..15], "4", "a version-4 UUID: {user}");
    assert_ne!(user, sub);
    assert!(super::token_chars(password, 40), "{password}");
    assert_eq!(v["fulldomain"], format!("{sub}.acme.dyn.example.test"));
    assert_eq!(v["allowfrom"], json!([]));
    // Stored under the username, hashed with Argon2id; the password is nowhere in the KV.
    let stored = super::lookup(&d.kv, user).unwrap();
    assert!(stored.password_hash.starts_with("$argon2id$"));
    assert_eq!(stored.subdomain, sub);
    assert!(d
        .kv
        .dump()
        .iter()
        .all(|(k, v)| !k.contains(password) && !String::from_utf8_lossy(v).contains(password)));
    assert!(d.log.iter().all(|l| !l.contains(password)));
    assert_eq!(d.calls.len(), 0, "registering touches no backend");
    // A second registration gets other credentials.
    d.advance_ms(1);
    let other = register(&mut d, "");
    assert_ne!(other.username, user);
    assert_ne!(other.password, password);
}

#[test]
fn update_writes_the_value_at_the_fulldomain_and_keeps_the_last_two() {
    let mut d = demo();
    let reg = register(&mut d, "");
    let o = d.run(update(&reg, &reg.subdomain, V1));
    assert_eq!(status(&o), 200, "{}", body(&o));
    assert_eq!(json_body(&o), json!({ "txt": V1 }));
    assert_eq!(d.pdns.get(&reg.fulldomain, "TXT"), [V1]);
    d.run(update(&reg, &reg.subdomain, V2));
    assert_eq!(d.pdns.get(&reg.fulldomain, "TXT"), [V1, V2]);
    d.run(update(&reg, &reg.subdomain, V3));
    assert_eq!(d.pdns.get(&reg.fulldomain, "TXT"), [V2, V3]);
    // The same value again changes nothing but its place.
    let o = d.run(update(&reg, &reg.subdomain, V3));
    assert_eq!(status(&o), 200);
    assert_eq!(d.pdns.get(&reg.fulldomain, "TXT"), [V2, V3]);
}

#[test]
fn lego_capitalised_keys_and_the_root_update_path_are_acme_dns() {
    let mut d = demo();
    let reg = register(&mut d, "");
    // goacmedns sends {"SubDomain", "Txt"}; acme-dns (Go) matches keys case-insensitively.
    let o = d.run(
        request(
            "POST",
            "/update",
            &json!({"SubDomain": reg.subdomain, "Txt": V1}).to_string(),
        )
        .header("X-Api-User", &reg.username)
        .header("X-Api-Key", &reg.password),
    );
    assert_eq!(status(&o), 200, "{}", body(&o));
    assert_eq!(d.pdns.get(&reg.fulldomain, "TXT"), [V1]);
    // Without X-Api-User, /update is still the DynDNS2 alias.
    let o = d.run(
        get("/update?hostname=home.dyn.example.test&myip=192.0.2.7").basic("demo", "demo-password"),
    );
    assert_eq!(body(&o), "good 192.0.2.7\n");
    // Root /register works too; /acme-dns/health answers 200.
    let o = d.run(request("POST", "/register", ""));
    assert_eq!(status(&o), 201);
    assert_eq!(status(&d.run(get("/acme-dns/health"))), 200);
}

#[test]
fn each_refusal_has_acme_dns_code_and_makes_no_backend_call() {
    let mut d = demo();
    let reg = register(&mut d, "");
    let mut other = register(&mut d, "");
    let mut wrong_key = update(&reg, &reg.subdomain, V1);
    wrong_key.headers.retain(|(k, _)| k != "X-Api-Key");
    let wrong_key = wrong_key.header("X-Api-Key", &"x".repeat(40));
    other.password = reg.password.clone();
    let cases: Vec<(&str, crate::request::Request, u16, &str)> = vec![
        ("wrong API key", wrong_key, 401, "forbidden"),
        (
            "another user's key",
            update(&other, &other.subdomain, V1),
            401,
            "forbidden",
        ),
        (
            "a subdomain that is not the user's",
            update(&reg, &other.subdomain, V1),
            401,
            "forbidden",
        ),
        (
            "a malformed TXT value",
            update(&reg, &reg.subdomain, "too-short"),
            400,
            "bad_txt",
        ),
        (
            "a TXT value with a bad character",
            update(&reg, &reg.subdomain, &format!("{}!", &V1[..42])),
            400,
            "bad_txt",
        ),
        (
            "no credentials",
            request(
                "POST",
                "/acme-dns/update",
                &json!({"subdomain": reg.subdomain, "txt": V1}).to_string(),
            ),
            401,
            "forbidden",
        ),
        (
            "a body that is not JSON",
            request("POST", "/acme-dns/update", "{")
                .header("X-Api-User", &reg.username)
                .header("X-Api-Key", &reg.password),
            401,
            "forbidden",
        ),
    ];
    for (what, req, want_status, want_error) in cases {
        let o = d.run(req);
        assert_eq!(status(&o), want_status, "{what}: {}", body(&o));
        assert_eq!(json_body(&o), json!({ "error": want_error }), "{what}");
        assert_eq!(d.calls.len(), 0, "{what}: no backend call");
    }
}

#[test]
fn allowfrom_is_echoed_then_enforced_on_update() {
    let mut d = demo();
    let reg = register(
        &mut d,
        r#"{"allowfrom": ["198.51.100.0/24", "[2001:db8::]/32"]}"#,
    );
    let stored = super::lookup(&d.kv, &reg.username).unwrap();
    assert_eq!(stored.allowfrom, ["198.51.100.0/24", "2001:db8::/32"]);
    // The driver's requests come from 192.0.2.200: outside the ranges.
    let o = d.run(update(&reg, &reg.subdomain, V1));
    assert_eq!(status(&o), 401);
    assert_eq!(json_body(&o), json!({"error": "forbidden"}));
    assert_eq!(d.calls.len(), 0);
    let o = d.run(update(&reg, &reg.subdomain, V1).from("198.51.100.9"));
    assert_eq!(status(&o), 200, "{}", body(&o));
    let o = d.run(update(&reg, &reg.subdomain, V2).from("2001:db8::5"));
    assert_eq!(status(&o), 200, "{}", body(&o));
}

#[test]
fn register_rejects_a_malformed_body_and_bad_ranges() {
    let mut d = demo();
    for (body_text, want) in [
        ("{", "malformed_json_payload"),
        ("[]", "malformed_json_payload"),
        (r#"{"allowfrom": "10.0.0.0/8"}"#, "malformed_json_payload"),
        (
            r#"{"allowfrom": ["10.0.0.0/33"]}"#,
            "invalid_allowfrom_cidr",
        ),
        (r#"{"allowfrom": ["10.0.0.1"]}"#, "invalid_allowfrom_cidr"),
    ] {
        let o = d.run(request("POST", "/acme-dns/register", body_text));
        assert_eq!(status(&o), 400, "{body_text}");
        assert_eq!(json_body(&o), json!({ "error": want }), "{body_text}");
    }
    assert!(d
        .kv
        .dump()
        .iter()
        .all(|(k, _)| !k.starts_with("dynedge:acmedns:")));
}

#[test]
fn registration_can_be_closed_or_need_a_dynedge_credential() {
    let mut d = with(|v| v["acme_dns"]["registration"] = "closed".into());
    let o = d.run(request("POST", "/acme-dns/register", ""));
    assert_eq!(status(&o), 404);
    assert_eq!(json_body(&o), json!({"error": "registration_disabled"}));

    let mut d = with(|v| v["acme_dns"]["registration"] = "token".into());
    let o = d.run(request("POST", "/acme-dns/register", ""));
    assert_eq!(status(&o), 401);
    assert_eq!(json_body(&o), json!({"error": "forbidden"}));
    let o = d.run(
        request("POST", "/acme-dns/register", "")
            .bearer("dynedge_test_wrongwrongwrongwrongwrongwrong"),
    );
    assert_eq!(status(&o), 401);
    let o = d.run(request("POST", "/acme-dns/register", "").bearer(TOKEN));
    assert_eq!(status(&o), 201, "{}", body(&o));
    let user = json_body(&o)["username"].as_str().unwrap().to_string();
    assert_eq!(
        super::lookup(&d.kv, &user).unwrap().owner.as_deref(),
        Some("demo")
    );
    let o = d.run(request("POST", "/acme-dns/register", "").basic("demo", "demo-password"));
    assert_eq!(status(&o), 201);
}

#[test]
fn registrations_count_against_the_client_window_and_stop_at_its_limit() {
    let mut d = with(|v| {
        v["rate_limits"] = json!({"mint_per_client": {"limit": 2, "window_s": 60}});
    });
    register(&mut d, "");
    register(&mut d, "");
    let o = d.run(request("POST", "/acme-dns/register", ""));
    assert_eq!(status(&o), 429, "{}", body(&o));
    assert_eq!(json_body(&o), json!({"error": "rate_limited"}));
    let o = d.run(request("POST", "/acme-dns/register", "").from("198.51.100.1"));
    assert_eq!(status(&o), 201, "another client is not limited");
}

#[test]
fn a_configured_user_updates_the_acme_challenge_name_of_an_own_host_directly() {
    let mut d = demo();
    let req = |user: &str, key: &str, sub: &str| {
        request(
            "POST",
            "/acme-dns/update",
            &json!({"subdomain": sub, "txt": V1}).to_string(),
        )
        .header("X-Api-User", user)
        .header("X-Api-Key", key)
    };
    let o = d.run(req("demo", "demo-password", HOME));
    assert_eq!(status(&o), 200, "{}", body(&o));
    assert_eq!(d.pdns.get(&format!("_acme-challenge.{HOME}"), "TXT"), [V1]);
    let o = d.run(req("anything", TOKEN, HOME));
    assert_eq!(status(&o), 200, "a token as the key: {}", body(&o));
    let calls = d.calls.len();
    for (user, key, sub) in [
        ("demo", "demo-password", "neighbour.dyn.example.test"),
        ("demo", "wrong-password", HOME),
        ("neighbour", "neighbour-password", HOME),
    ] {
        let o = d.run(req(user, key, sub));
        assert_eq!(status(&o), 401, "{user} {sub}");
        assert_eq!(json_body(&o), json!({"error": "forbidden"}));
    }
    assert_eq!(d.calls.len(), calls, "refusals make no backend call");
}

#[test]
fn config_checks_the_acme_zone_and_the_registration_mode() {
    let bad = |edit: fn(&mut Value)| {
        let mut v: Value =
            serde_json::from_slice(include_bytes!("../../../../examples/dynedge.json")).unwrap();
        edit(&mut v);
        crate::Config::from_json(v.to_string().as_bytes())
            .unwrap_err()
            .path
    };
    assert_eq!(
        bad(|v| v["acme_dns"]["zone"] = "acme.elsewhere.test".into()),
        "acme_dns.zone"
    );
    assert_eq!(
        bad(|v| v["acme_dns"]["registration"] = "maybe".into()),
        "acme_dns.registration"
    );
    assert_eq!(
        bad(|v| {
            v["apertodns"].as_object_mut().unwrap().remove("token_key");
        }),
        "acme_dns.registration"
    );
    assert_eq!(
        bad(|v| v["acme_dns"]["prefix"] = "acme/".into()),
        "acme_dns.prefix"
    );
}

// ------------------------------------------------------------------ lego httpreq

fn present(path: &str, body: Value) -> crate::request::Request {
    request("POST", path, &body.to_string()).basic("demo", "demo-password")
}

#[test]
fn httpreq_present_accumulates_and_cleanup_removes_only_its_value() {
    let mut d = demo();
    let name = format!("_acme-challenge.{HOME}");
    let o = d.run(present(
        "/httpreq/present",
        json!({"fqdn": format!("{name}."), "value": V1}),
    ));
    assert_eq!(status(&o), 200, "{}", body(&o));
    let o = d.run(present(
        "/present",
        json!({"fqdn": format!("{name}."), "value": V2}),
    ));
    assert_eq!(status(&o), 200, "{}", body(&o));
    assert_eq!(d.pdns.get(&name, "TXT"), [V1, V2]);
    let o = d.run(present(
        "/httpreq/cleanup",
        json!({"fqdn": format!("{name}."), "value": V1}),
    ));
    assert_eq!(status(&o), 200);
    assert_eq!(d.pdns.get(&name, "TXT"), [V2]);
    d.run(present("/cleanup", json!({"fqdn": name, "value": V2})));
    assert!(d.pdns.get(&name, "TXT").is_empty());
}

#[test]
fn httpreq_raw_mode_publishes_the_digest_of_the_key_authorization() {
    let mut d = demo();
    // RFC 8555 §8.4: base64url(SHA-256(keyAuthorization)); this pair is from RFC 8555's example
    // shape, computed here with the same crates to keep the test honest about the encoding.
    use base64::Engine;
    use sha2::Digest;
    let key_auth = "token123.thumbprint456";
    let want = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(key_auth.as_bytes()));
    assert_eq!(want.len(), 43);
    let o = d.run(present(
        "/httpreq/present",
        json!({"domain": HOME, "token": "token123", "keyAuth": key_auth}),
    ));
    assert_eq!(status(&o), 200, "{}", body(&o));
    assert_eq!(
        d.pdns.get(&format!("_acme-challenge.{HOME}"), "TXT"),
        [want]
    );
}

#[test]
fn httpreq_refusals_make_no_backend_call() {
    let mut d = demo();
    let fqdn = format!("_acme-challenge.{HOME}.");
    let cases = vec![
        (
            "no credentials",
            request(
                "POST",
                "/httpreq/present",
                &json!({"fqdn": fqdn, "value": V1}).to_string(),
            ),
            401,
        ),
        (
            "wrong password",
            request(
                "POST",
                "/httpreq/present",
                &json!({"fqdn": fqdn, "value": V1}).to_string(),
            )
            .basic("demo", "nope"),
            401,
        ),
        (
            "a foreign name",
            present(
                "/httpreq/present",
                json!({"fqdn": "_acme-challenge.neighbour.dyn.example.test.", "value": V1}),
            ),
            403,
        ),
        (
            "not an _acme-challenge name",
            present(
                "/httpreq/present",
                json!({"fqdn": format!("{HOME}."), "value": V1}),
            ),
            400,
        ),
        (
            "no value",
            present("/httpreq/present", json!({"fqdn": fqdn})),
            400,
        ),
        (
            "GET",
            get("/httpreq/present").basic("demo", "demo-password"),
            405,
        ),
    ];
    for (what, req, want) in cases {
        let o = d.run(req);
        assert_eq!(status(&o), want, "{what}: {}", body(&o));
    }
    assert_eq!(d.calls.len(), 0);
    assert!(d.kv.get(&keys::acme_dns_txt(HOME)).is_none());
}
