//! Token rules (`tokens::TokenRules`) end to end through the native driver: created through
//! `/api/tokens` (and in the configuration), then enforced by the guard pipeline for DynDNS2 and
//! the ApertoDNS API: subnets (IPv4, IPv6), maximum age, maximum unused period, per-host and
//! per-type policies, revocation.

use serde_json::{json, Value};

use crate::kv::{keys, KvView};
use crate::limits;
use crate::request::Request;
use crate::testing::{body, get, json_body, request, status, Driver, RequestExt, TOKEN};

const HOME: &str = "home.dyn.example.test";

/// `POST /api/tokens` of `b`, authorised by `bearer`.
fn new_token(b: &Value, bearer: &str) -> Request {
    request("POST", "/api/tokens", &b.to_string()).bearer(bearer)
}

/// A DynDNS2 update of HOME to `myip` with `token` as Bearer.
fn update(token: &str, myip: &str) -> Request {
    get(&format!("/nic/update?hostname={HOME}&myip={myip}")).bearer(token)
}

/// An ACME challenge (TXT) at HOME with `token`.
fn acme_challenge(token: &str) -> Request {
    let b = json!({"hostname": format!("_acme-challenge.{HOME}"), "value": "x".repeat(43)});
    request("POST", "/.well-known/apertodns/v1/txt", &b.to_string()).bearer(token)
}

fn create(d: &mut Driver, b: Value) -> (String, String) {
    let o = d.run(new_token(&b, TOKEN));
    assert_eq!(status(&o), 201, "{}", body(&o));
    let v = json_body(&o);
    (
        v["data"]["id"].as_str().unwrap().to_string(),
        v["data"]["token"].as_str().unwrap().to_string(),
    )
}

/// A DynDNS2 update with the token as Bearer, from `peer`: the reply body.
fn dyndns2(d: &mut Driver, token: &str, myip: &str, peer: &str) -> String {
    let o = d.run(update(token, myip).from(peer));
    body(&o).trim_end().to_string()
}

/// An ApertoDNS update from `peer`: status and error code.
fn aperto(d: &mut Driver, token: &str, field: &str, ip: &str, peer: &str) -> (u16, Value) {
    let o = d.run(
        request(
            "POST",
            "/.well-known/apertodns/v1/update",
            &json!({"hostname": HOME, field: ip}).to_string(),
        )
        .bearer(token)
        .from(peer),
    );
    (status(&o), json_body(&o)["error"]["code"].clone())
}

fn validation_field(d: &mut Driver, b: Value) -> (u16, Value) {
    let o = d.run(new_token(&b, TOKEN));
    let v = json_body(&o);
    (
        status(&o),
        v["error"]["details"]["fields"][0]["field"].clone(),
    )
}

#[test]
fn a_subnet_limited_token_works_inside_its_ranges_and_outside_answers_as_a_wrong_token() {
    let mut d = Driver::demo();
    let (id, tok) = create(
        &mut d,
        json!({"allowed_subnets": ["192.0.2.0/24", "2001:db8:77::/48"]}),
    );
    assert_eq!(
        dyndns2(&mut d, &tok, "192.0.2.10", "192.0.2.200"),
        "good 192.0.2.10"
    );
    assert_eq!(
        dyndns2(&mut d, &tok, "2001:db8:77::10", "2001:db8:77:1::5"),
        "good 2001:db8:77::10"
    );
    let wrong = "dynedge_live_wrongwrongwrongwrongwrongwron";
    for peer in ["198.51.100.9", "2001:db8:78::1"] {
        assert_eq!(
            dyndns2(&mut d, &tok, "192.0.2.11", peer),
            "badauth",
            "{peer}"
        );
        // ApertoDNS: exactly what a made-up token gets, so a stolen token tried from
        // elsewhere does not learn that it is real.
        assert_eq!(
            aperto(&mut d, &tok, "ipv4", "192.0.2.11", peer),
            aperto(&mut d, wrong, "ipv4", "192.0.2.11", peer),
            "{peer}"
        );
    }
    // The refusal counts as a bad credential and is audited with the token's id and the rule.
    let o = d.run(update(&tok, "192.0.2.12").from("203.0.113.1"));
    assert!(o.counts.iter().any(limits::is_bad_count), "{:?}", o.counts);
    let line = o
        .log
        .iter()
        .find(|l| l.contains("dynedge.token_refused"))
        .expect("an audit line");
    let v: Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["reason"], "client outside allowed_subnets");
    assert_eq!(v["token_id"], id.as_str());
    assert_eq!(v["source"], "203.0.113.1");
    assert!(!line.contains(&tok));
}

#[test]
fn a_token_past_its_max_age_is_expired() {
    let mut d = Driver::demo();
    let (_, tok) = create(&mut d, json!({"max_age": "1h"}));
    d.advance_ms(3_599_000);
    assert_eq!(
        dyndns2(&mut d, &tok, "192.0.2.20", "192.0.2.200"),
        "good 192.0.2.20"
    );
    d.advance_ms(1000);
    assert_eq!(
        dyndns2(&mut d, &tok, "192.0.2.21", "192.0.2.200"),
        "badauth"
    );
    assert_eq!(
        aperto(&mut d, &tok, "ipv4", "192.0.2.21", "192.0.2.200"),
        (401, json!("token_expired"))
    );
    assert!(d.log.iter().any(|l| l.contains("older than max_age")));
}

#[test]
fn a_token_unused_for_its_max_unused_period_is_expired_and_use_keeps_it_alive() {
    let mut d = Driver::demo();
    let (id, tok) = create(&mut d, json!({"maxUnusedPeriod": 600}));
    // Used every 9 minutes it lives on well past 10 minutes.
    for i in 0..4u8 {
        d.advance_ms(540_000);
        assert_eq!(
            aperto(
                &mut d,
                &tok,
                "ipv4",
                &format!("192.0.2.{}", 30 + i),
                "192.0.2.200"
            )
            .0,
            200
        );
    }
    // Uses within the recording interval write the last use once.
    let used = |d: &Driver| d.kv.get(&keys::token_used(&id));
    let before = used(&d);
    let o = d.run(update(&tok, "192.0.2.39"));
    assert!(
        !o.writes.iter().any(|w| w.key == keys::token_used(&id)),
        "a use right after another writes nothing"
    );
    assert_eq!(used(&d), before);
    d.advance_ms(600_000);
    assert_eq!(
        dyndns2(&mut d, &tok, "192.0.2.40", "192.0.2.200"),
        "badauth"
    );
    assert!(d
        .log
        .iter()
        .any(|l| l.contains("unused for max_unused_period")));
    // Never used at all: the period runs from creation.
    let (_, idle) = create(&mut d, json!({"max_unused_period": "10m"}));
    d.advance_ms(600_000);
    assert_eq!(
        aperto(&mut d, &idle, "ipv4", "192.0.2.41", "192.0.2.200"),
        (401, json!("token_expired"))
    );
}

#[test]
fn a_token_limited_to_aaaa_at_one_host_writes_only_that() {
    let mut d = Driver::demo();
    let (_, tok) = create(
        &mut d,
        json!({"policies": [{"host": HOME, "types": ["AAAA"]}]}),
    );
    assert_eq!(
        dyndns2(&mut d, &tok, "2001:db8::50", "192.0.2.200"),
        "good 2001:db8::50"
    );
    assert_eq!(dyndns2(&mut d, &tok, "192.0.2.50", "192.0.2.200"), "nohost");
    assert_eq!(d.pdns.get(HOME, "A"), Vec::<String>::new());
    assert_eq!(
        aperto(&mut d, &tok, "ipv4", "192.0.2.50", "192.0.2.200").0,
        403
    );
    assert_eq!(
        aperto(&mut d, &tok, "ipv6", "2001:db8::51", "192.0.2.200").0,
        200
    );
    // TXT is another type: refused too.
    let o = d.run(acme_challenge(&tok));
    assert_eq!(status(&o), 403, "{}", body(&o));
    // The same token with TXT granted at the host writes its ACME challenge.
    let (_, txt) = create(
        &mut d,
        json!({"policies": [{"host": HOME, "types": ["AAAA", "TXT"]}]}),
    );
    let o = d.run(acme_challenge(&txt));
    assert_eq!(status(&o), 200, "{}", body(&o));
}

#[test]
fn a_revoked_token_with_rules_is_refused_and_its_rules_are_listed() {
    let mut d = Driver::demo();
    let (id, tok) = create(
        &mut d,
        json!({"allowedSubnets": ["192.0.2.0/24"], "max_age": 86400,
               "max_unused_period": "7d",
               "policies": [{"host": HOME, "types": ["A", "AAAA"]}]}),
    );
    let o = d.run(get("/api/tokens").bearer(TOKEN));
    let listed = json_body(&o)["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(listed["allowedSubnets"], json!(["192.0.2.0/24"]));
    assert_eq!(listed["maxAge"], 86400);
    assert_eq!(listed["maxUnusedPeriod"], 604_800);
    assert_eq!(
        listed["policies"],
        json!([{"host": HOME, "types": ["A", "AAAA"]}])
    );
    assert_eq!(listed["expiresAt"], "2023-11-15T22:13:20.000Z");
    assert_eq!(
        dyndns2(&mut d, &tok, "192.0.2.60", "192.0.2.200"),
        "good 192.0.2.60"
    );
    let o = d.run(request("DELETE", &format!("/api/tokens/{id}"), "").bearer(TOKEN));
    assert_eq!(status(&o), 200);
    assert_eq!(
        dyndns2(&mut d, &tok, "192.0.2.61", "192.0.2.200"),
        "badauth"
    );
}

#[test]
fn invalid_rules_are_refused_naming_the_field() {
    let mut d = Driver::demo();
    for (b, field) in [
        (
            json!({"allowed_subnets": ["192.0.2.0/24", "300.0.0.0/8"]}),
            "allowed_subnets[1]",
        ),
        (
            json!({"allowed_subnets": "192.0.2.0/24"}),
            "allowed_subnets",
        ),
        (json!({"max_age": "soon"}), "max_age"),
        (json!({"max_age": 0}), "max_age"),
        (json!({"maxUnusedPeriod": "5y"}), "max_unused_period"),
        (
            json!({"policies": [{"host": HOME, "types": ["MX"]}]}),
            "policies[0].types[0]",
        ),
        (
            json!({"policies": [{"host": HOME, "type": ["A"]}]}),
            "policies",
        ),
        (json!({"policies": []}), "policies"),
    ] {
        assert_eq!(
            validation_field(&mut d, b.clone()),
            (400, json!(field)),
            "{b}"
        );
    }
    // A host the user does not own.
    let o = d.run(new_token(
        &json!({"policies": [{"host": "neighbour.dyn.example.test"}]}),
        TOKEN,
    ));
    assert_eq!(
        (status(&o), json_body(&o)["error"]["code"].clone()),
        (403, json!("hostname_not_owned"))
    );
}

#[test]
fn a_limited_token_mints_only_tokens_within_its_own_rules() {
    let mut d = Driver::demo();
    let (_, admin) = create(
        &mut d,
        json!({"scopes": ["dns:update", "admin"], "allowed_subnets": ["192.0.2.0/24"],
               "policies": [{"host": HOME, "types": ["AAAA"]}]}),
    );
    let mint = |d: &mut Driver, b: Value| d.run(new_token(&b, &admin).from("192.0.2.200"));
    let o = mint(
        &mut d,
        json!({"scopes": ["dns:update"], "allowed_subnets": ["0.0.0.0/0"]}),
    );
    assert_eq!(status(&o), 403, "{}", body(&o));
    let o = mint(
        &mut d,
        json!({"scopes": ["dns:update"], "policies": [{"host": HOME, "types": ["A"]}]}),
    );
    assert_eq!(status(&o), 403, "{}", body(&o));
    // Left out, the minter's rules are inherited.
    let o = mint(&mut d, json!({"scopes": ["dns:update"]}));
    assert_eq!(status(&o), 201, "{}", body(&o));
    let child = json_body(&o)["data"]["token"].as_str().unwrap().to_string();
    assert_eq!(
        dyndns2(&mut d, &child, "192.0.2.70", "192.0.2.200"),
        "nohost"
    );
    assert_eq!(
        dyndns2(&mut d, &child, "2001:db8::70", "198.51.100.1"),
        "badauth"
    );
    assert_eq!(
        dyndns2(&mut d, &child, "2001:db8::70", "192.0.2.200"),
        "good 2001:db8::70"
    );
}

fn example_config() -> Value {
    serde_json::from_slice(include_bytes!("../../../../../examples/dynedge.json")).unwrap()
}

#[test]
fn configured_token_rules_are_enforced_and_checked_at_load() {
    let mut v = example_config();
    v["tokens"][0]["allowed_subnets"] = json!(["2001:db8:1::/48"]);
    v["tokens"][0]["policies"] = json!([{"host": HOME, "types": ["AAAA"]}]);
    v["tokens"][0]["created_s"] = json!(1_700_000_000u64 - 100);
    v["tokens"][0]["max_age_s"] = json!(200);
    let mut d = Driver::new(crate::Config::from_json(v.to_string().as_bytes()).unwrap());
    assert_eq!(
        dyndns2(&mut d, TOKEN, "2001:db8::80", "2001:db8:1::9"),
        "good 2001:db8::80"
    );
    assert_eq!(
        dyndns2(&mut d, TOKEN, "192.0.2.80", "2001:db8:1::9"),
        "nohost"
    );
    assert_eq!(
        dyndns2(&mut d, TOKEN, "2001:db8::81", "192.0.2.200"),
        "badauth"
    );
    d.advance_ms(100_000);
    assert_eq!(
        dyndns2(&mut d, TOKEN, "2001:db8::82", "2001:db8:1::9"),
        "badauth"
    );

    for (edit, path) in [
        (
            json!({"allowed_subnets": ["x"]}),
            "tokens[0].allowed_subnets[0]",
        ),
        (json!({"max_age_s": 60}), "tokens[0].max_age_s"),
        (
            json!({"policies": [{"host": "neighbour.dyn.example.test"}]}),
            "tokens[0].policies[0].host",
        ),
        (
            json!({"policies": [{"types": ["SRV"]}]}),
            "tokens[0].policies[0].types[0]",
        ),
    ] {
        let mut v = example_config();
        for (k, val) in edit.as_object().unwrap() {
            v["tokens"][0][k] = val.clone();
        }
        let e = crate::Config::from_json(v.to_string().as_bytes()).unwrap_err();
        assert_eq!(e.path, path, "{e}");
    }
}
