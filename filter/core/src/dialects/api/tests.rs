//! The management API through the native driver: tokens (created, listed, revoked,
//! regenerated, never wider than their creator) and webhook subscriptions.

use serde_json::{json, Value};

use crate::testing::{body, get, header, json_body, request, status, Driver, RequestExt, TOKEN};

const HOME: &str = "home.dyn.example.test";

fn post(path: &str, b: Value) -> crate::request::Request {
    request("POST", path, &b.to_string())
}

fn create(d: &mut Driver, b: Value) -> (String, String) {
    let o = d.run(post("/api/tokens", b).bearer(TOKEN));
    assert_eq!(status(&o), 201, "{}", body(&o));
    let v = json_body(&o);
    (
        v["data"]["id"].as_str().unwrap().to_string(),
        v["data"]["token"].as_str().unwrap().to_string(),
    )
}

fn update_with(d: &mut Driver, token: &str) -> crate::exchange::Outcome {
    d.run(
        post(
            "/.well-known/apertodns/v1/update",
            json!({"hostname": HOME, "ipv4": "192.0.2.7"}),
        )
        .bearer(token),
    )
}

#[test]
fn a_created_token_is_shown_once_works_at_once_and_is_stored_only_hashed() {
    let mut d = Driver::demo();
    let o = d.run(
        post(
            "/api/tokens",
            json!({"name": "router", "scopes": ["dns:update"], "expiresIn": "30d"}),
        )
        .bearer(TOKEN),
    );
    assert_eq!(status(&o), 201, "{}", body(&o));
    let v = json_body(&o);
    assert_eq!(v["success"], true);
    assert_eq!(
        v["warning"],
        "Save this key now. It will not be shown again."
    );
    let token = v["data"]["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("dynedge_live_"), "{token}");
    let random = token.trim_start_matches("dynedge_live_");
    assert_eq!(random.len(), 32);
    assert!(random
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert_eq!(v["data"]["keyPrefix"], &token[..20]);
    assert_eq!(v["data"]["scopes"], json!(["dns:update"]));
    assert_eq!(v["data"]["expiresAt"], "2023-12-14T22:13:20.000Z");
    for (k, val) in d.kv.dump() {
        assert!(
            !k.contains(&token) && !String::from_utf8_lossy(&val).contains(&token),
            "token stored in clear under {k}"
        );
    }
    assert_eq!(status(&update_with(&mut d, &token)), 200);
    // Listed without the token, with its last use.
    let o = d.run(get("/api/tokens").bearer(TOKEN));
    let list = json_body(&o);
    assert!(!body(&o).contains(&token));
    let runtime = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["source"] == "api")
        .unwrap();
    assert_eq!(runtime["name"], "router");
    assert_eq!(runtime["active"], true);
    assert_eq!(runtime["lastUsedAt"], "2023-11-14T22:13:20.000Z");
    assert!(list["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["id"] == "demo-all" && t["source"] == "config"));
}

#[test]
fn a_revoked_token_stops_at_once_with_token_revoked() {
    let mut d = Driver::demo();
    let (id, token) = create(&mut d, json!({"name": "laptop"}));
    assert_eq!(status(&update_with(&mut d, &token)), 200);
    let o = d.run(request("DELETE", &format!("/api/tokens/{id}"), "").bearer(TOKEN));
    assert_eq!(status(&o), 200, "{}", body(&o));
    assert_eq!(json_body(&o)["data"], json!({"id": id, "deleted": true}));
    let o = update_with(&mut d, &token);
    assert_eq!(status(&o), 401);
    assert_eq!(json_body(&o)["error"]["code"], "token_revoked");
    // DynDNS2 with the revoked token: badauth.
    let o =
        d.run(get(&format!("/nic/update?hostname={HOME}&myip=192.0.2.8")).basic("user", &token));
    assert_eq!(body(&o), "badauth\n");
    let o = d.run(request("DELETE", "/api/tokens/tok_nope", "").bearer(TOKEN));
    assert_eq!(
        (status(&o), json_body(&o)["error"]["code"].clone()),
        (404, json!("token_not_found"))
    );
    let o = d.run(request("DELETE", "/api/tokens/demo-all", "").bearer(TOKEN));
    assert_eq!(status(&o), 403, "static tokens are the configuration's");
}

#[test]
fn regenerate_replaces_the_token_and_the_old_one_stops() {
    let mut d = Driver::demo();
    let (id, old) = create(&mut d, json!({"name": "nas", "scopes": ["dns:update"]}));
    let o = d.run(post(&format!("/api/tokens/{id}/regenerate"), json!({})).bearer(TOKEN));
    assert_eq!(status(&o), 200, "{}", body(&o));
    let new = json_body(&o)["data"]["token"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert_eq!(json_body(&o)["data"]["name"], "nas");
    assert_eq!(status(&update_with(&mut d, &new)), 200);
    assert_eq!(
        json_body(&update_with(&mut d, &old))["error"]["code"],
        "token_revoked"
    );
}

#[test]
fn an_expires_in_ending_in_a_multibyte_character_is_refused_and_the_gateway_goes_on() {
    let mut d = Driver::demo();
    for bad in ["1\u{e9}", "\u{e9}", "30\u{1F600}", ""] {
        let o =
            d.run(post("/api/tokens", json!({"expiresIn": bad})).basic("demo", "demo-password"));
        assert_eq!(status(&o), 400, "{bad:?}: {}", body(&o));
        assert_eq!(
            json_body(&o)["error"]["details"]["fields"][0]["field"],
            "expiresIn"
        );
    }
    let o = d.run(post("/api/tokens", json!({"expiresIn": "1d"})).basic("demo", "demo-password"));
    assert_eq!(status(&o), 201, "{}", body(&o));
}

#[test]
fn a_host_restricted_token_cannot_regenerate_a_wider_token() {
    const OFFICE: &str = "office.dyn.example.test";
    let mut v: Value =
        serde_json::from_slice(include_bytes!("../../../../../examples/dynedge.json")).unwrap();
    v["users"][0]["hosts"] = json!([HOME, OFFICE]);
    let mut d = Driver::new(crate::Config::from_json(v.to_string().as_bytes()).unwrap());
    let (office_id, office) = create(
        &mut d,
        json!({"name": "office", "scopes": ["dns:update"], "hosts": [OFFICE]}),
    );
    let (_, limited) = create(
        &mut d,
        json!({"scopes": ["dns:update", "admin"], "hosts": [HOME]}),
    );
    let regenerate = |d: &mut Driver, id: &str| {
        d.run(post(&format!("/api/tokens/{id}/regenerate"), json!({})).bearer(&limited))
    };
    let o = regenerate(&mut d, &office_id);
    assert_eq!(
        (status(&o), json_body(&o)["error"]["code"].clone()),
        (403, json!("forbidden")),
        "{}",
        body(&o)
    );
    let o = d.run(
        post(
            "/.well-known/apertodns/v1/update",
            json!({"hostname": OFFICE, "ipv4": "192.0.2.7"}),
        )
        .bearer(&office),
    );
    assert_eq!(status(&o), 200, "not revoked: {}", body(&o));
    // More scopes than the caller holds: refused too.
    let (txt_id, _) = create(
        &mut d,
        json!({"scopes": ["dns:update", "txt:write"], "hosts": [HOME]}),
    );
    assert_eq!(status(&regenerate(&mut d, &txt_id)), 403);
    // Within both: regenerated, with the same hosts; an unrestricted token gets the
    // caller's hosts.
    let (home_id, _) = create(&mut d, json!({"scopes": ["dns:update"], "hosts": [HOME]}));
    let (wide_id, _) = create(&mut d, json!({"scopes": ["dns:update"]}));
    for id in [home_id, wide_id] {
        let o = regenerate(&mut d, &id);
        assert_eq!(status(&o), 200, "{}", body(&o));
        assert_eq!(json_body(&o)["data"]["hosts"], json!([HOME]));
    }
}

#[test]
fn a_token_minted_by_a_token_never_outlives_it() {
    let mut d = Driver::demo();
    let parent_expiry = "2023-11-14T23:13:20.000Z"; // now + 1 h
    let o = d.run(
        post(
            "/api/tokens",
            json!({"scopes": ["dns:update", "admin"], "expiresIn": "1h"}),
        )
        .bearer(TOKEN),
    );
    assert_eq!(json_body(&o)["data"]["expiresAt"], parent_expiry);
    let parent = json_body(&o)["data"]["token"].as_str().unwrap().to_string();
    let mut children = vec![];
    for b in [
        json!({"scopes": ["dns:update"], "expiresIn": "30d"}),
        json!({"scopes": ["dns:update"]}),
    ] {
        let o = d.run(post("/api/tokens", b.clone()).bearer(&parent));
        assert_eq!(status(&o), 201, "{b}: {}", body(&o));
        assert_eq!(json_body(&o)["data"]["expiresAt"], parent_expiry, "{b}");
        children.push(json_body(&o)["data"]["token"].as_str().unwrap().to_string());
    }
    // A shorter life is kept.
    let o = d.run(
        post(
            "/api/tokens",
            json!({"scopes": ["dns:update"], "expiresIn": "15m"}),
        )
        .bearer(&parent),
    );
    assert_eq!(
        json_body(&o)["data"]["expiresAt"],
        "2023-11-14T22:28:20.000Z"
    );
    // Regenerating a token without expiry: capped as well.
    let (never_id, _) = create(&mut d, json!({"scopes": ["dns:update"]}));
    let o = d.run(post(&format!("/api/tokens/{never_id}/regenerate"), json!({})).bearer(&parent));
    assert_eq!(status(&o), 200, "{}", body(&o));
    assert_eq!(json_body(&o)["data"]["expiresAt"], parent_expiry);
    children.push(json_body(&o)["data"]["token"].as_str().unwrap().to_string());
    d.advance_ms(3_600_000);
    for child in &children {
        let o = update_with(&mut d, child);
        assert_eq!(json_body(&o)["error"]["code"], "token_expired");
    }
}

#[test]
fn an_expired_token_answers_token_expired() {
    let mut d = Driver::demo();
    let (_, token) = create(&mut d, json!({"expiresIn": "1h"}));
    d.advance_ms(3_600_000);
    let o = update_with(&mut d, &token);
    assert_eq!(json_body(&o)["error"]["code"], "token_expired");
}

#[test]
fn tokens_never_grant_more_than_their_creator_holds() {
    let mut d = Driver::demo();
    let (_, limited) = create(
        &mut d,
        json!({"scopes": ["dns:update", "admin"], "hosts": [HOME]}),
    );
    let o = d.run(post("/api/tokens", json!({"scopes": ["domains:read"]})).bearer(&limited));
    assert_eq!(
        (status(&o), json_body(&o)["error"]["code"].clone()),
        (403, json!("forbidden"))
    );
    let (_, no_admin) = create(&mut d, json!({"scopes": ["dns:update"]}));
    let o = d.run(get("/api/tokens").bearer(&no_admin));
    assert_eq!(status(&o), 403);
    let o = d.run(
        post(
            "/api/tokens",
            json!({"hosts": ["neighbour.dyn.example.test"]}),
        )
        .bearer(TOKEN),
    );
    assert_eq!(json_body(&o)["error"]["code"], "hostname_not_owned");
    // A user's password may manage (the account owner).
    let o =
        d.run(post("/api/tokens", json!({"name": "from-password"})).basic("demo", "demo-password"));
    assert_eq!(status(&o), 201, "{}", body(&o));
    let o = d.run(get("/api/tokens").basic("demo", "wrong"));
    assert_eq!(json_body(&o)["error"]["code"], "invalid_token");
}

#[test]
fn management_requests_are_validated() {
    let mut d = Driver::demo();
    for (b, field) in [
        (json!({"scopes": ["root"]}), "scopes"),
        (json!({"scopes": []}), "scopes"),
        (json!({"scopes": "dns:update"}), "scopes"),
        (json!({"expiresIn": "forever"}), "expiresIn"),
        (json!({"name": ""}), "name"),
        (json!({"hosts": ["bad..name"]}), "hosts"),
    ] {
        let o = d.run(post("/api/tokens", b.clone()).bearer(TOKEN));
        assert_eq!(status(&o), 400, "{b}");
        assert_eq!(
            json_body(&o)["error"]["details"]["fields"][0]["field"],
            field,
            "{b}"
        );
    }
    let o = d.run(request("POST", "/api/tokens", "nope").bearer(TOKEN));
    assert_eq!(json_body(&o)["error"]["code"], "invalid_json");
    let o = d.run(request("PUT", "/api/tokens", "").bearer(TOKEN));
    assert_eq!((status(&o), header(&o, "allow")), (405, Some("GET, POST")));
    let o = d.run(get("/api/tokens"));
    assert_eq!(
        (status(&o), json_body(&o)["error"]["code"].clone()),
        (401, json!("unauthorized"))
    );
    let o = d.run(get("/api/webhooks").bearer(TOKEN));
    assert_eq!(status(&o), 404, "webhooks are off in the demo");
    assert!(d.calls.is_empty());
}

fn with_webhooks() -> Driver {
    let mut v: Value =
        serde_json::from_slice(include_bytes!("../../../../../examples/dynedge.json")).unwrap();
    v["webhooks"] = json!({"cluster": "webhooks", "allow_ranges": ["127.0.0.0/8"],
                           "allow_hosts": ["hooks.example.com"]});
    Driver::new(crate::Config::from_json(v.to_string().as_bytes()).unwrap())
}

#[test]
fn webhooks_are_created_listed_patched_deleted_and_deliver_signed_ip_changes() {
    let mut d = with_webhooks();
    let o = d.run(
        post(
            "/api/webhooks",
            json!({"url": "https://127.0.0.1:22443/hook", "events": ["ip_changed"]}),
        )
        .bearer(TOKEN),
    );
    assert_eq!(status(&o), 201, "{}", body(&o));
    let v = json_body(&o);
    let wid = v["data"]["id"].as_str().unwrap().to_string();
    let secret = v["data"]["secret"].as_str().unwrap().to_string();
    assert!(secret.len() >= 32);
    let o = d.run(get("/api/webhooks").bearer(TOKEN));
    assert!(!body(&o).contains(&secret), "the secret is shown once");
    assert_eq!(
        json_body(&o)["data"][0]["url"],
        "https://127.0.0.1:22443/hook"
    );

    let o = update_with(&mut d, TOKEN);
    assert_eq!(o.notify.len(), 1);
    let c = &o.notify[0].callout;
    let ts: u64 = c
        .headers
        .iter()
        .find(|(k, _)| k == "x-apertodns-timestamp")
        .unwrap()
        .1
        .parse()
        .unwrap();
    let sig = &c
        .headers
        .iter()
        .find(|(k, _)| k == "x-apertodns-signature")
        .unwrap()
        .1;
    assert_eq!(*sig, crate::webhooks::sign(&secret, ts, &c.body));

    let o = d.run(
        request(
            "PATCH",
            &format!("/api/webhooks/{wid}"),
            &json!({"active": false}).to_string(),
        )
        .bearer(TOKEN),
    );
    assert_eq!(json_body(&o)["data"]["active"], false);
    let o = d.run(
        post(
            "/.well-known/apertodns/v1/update",
            json!({"hostname": HOME, "ipv4": "192.0.2.8"}),
        )
        .bearer(TOKEN),
    );
    assert!(o.notify.is_empty(), "inactive: no delivery");
    let o = d.run(request("DELETE", &format!("/api/webhooks/{wid}"), "").bearer(TOKEN));
    assert_eq!(json_body(&o)["data"], json!({"id": wid, "deleted": true}));
    let o = d.run(request("DELETE", &format!("/api/webhooks/{wid}"), "").bearer(TOKEN));
    assert_eq!(json_body(&o)["error"]["code"], "webhook_not_found");
}

#[test]
fn webhook_urls_and_secrets_are_checked() {
    let mut d = with_webhooks();
    for (b, field) in [
        (json!({"url": "http://hooks.example.com/x"}), "url"),
        (json!({"url": "https://10.0.0.1/x"}), "url"),
        (json!({"url": "https://169.254.169.254/latest"}), "url"),
        // Names that resolve to loopback or inside a network, or may: not listed.
        (json!({"url": "https://localtest.me/x"}), "url"),
        (
            json!({"url": "https://hooks.internal.example.org/x"}),
            "url",
        ),
        (json!({}), "url"),
        (
            json!({"url": "https://hooks.example.com/x", "secret": "short"}),
            "secret",
        ),
        (
            json!({"url": "https://hooks.example.com/x", "events": ["everything"]}),
            "events",
        ),
    ] {
        let o = d.run(post("/api/webhooks", b.clone()).bearer(TOKEN));
        assert_eq!(status(&o), 400, "{b}: {}", body(&o));
        assert_eq!(
            json_body(&o)["error"]["details"]["fields"][0]["field"],
            field,
            "{b}"
        );
    }
}
