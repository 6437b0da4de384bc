//! ApertoDNS through the native driver: exact JSON shapes, every error code and HTTP status,
//! and no backend call for any rejected request.

use serde_json::{json, Value};

use crate::kv::{keys, KvWrite};
use crate::testing::{
    body, get, header, json_body, request, status, Driver, Fault, RequestExt, TOKEN,
};
use crate::tokens::StoredToken;

/// The demo driver at 2025-01-01T12:00:00Z.
fn demo() -> Driver {
    let mut d = Driver::demo();
    d.now_ms = 1_735_732_800_000;
    d
}

const HOME: &str = "home.dyn.example.test";
const P: &str = "/.well-known/apertodns/v1/";

fn post(ep: &str, body: Value) -> crate::request::Request {
    request("POST", &format!("{P}{ep}"), &body.to_string()).bearer(TOKEN)
}

/// A runtime token stored in the KV as `/api/tokens` would store it.
fn runtime_token(d: &Driver, token: &str, scopes: &[&str], revoked: bool, expires_ms: Option<u64>) {
    let t = StoredToken {
        id: "tok_test".into(),
        user: "demo".into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        hosts: None,
        name: "t".into(),
        prefix: token[..20].into(),
        created_ms: 0,
        expires_ms,
        revoked,
        rules: Default::default(),
    };
    d.kv.apply(&[KvWrite::put(
        keys::api_token(&crate::auth::token_hash(token)),
        serde_json::to_vec(&t).unwrap(),
    )]);
}

#[test]
fn info_is_public_wrapped_and_advertises_what_is_implemented() {
    let mut d = demo();
    let o = d.run(get(&format!("{P}info")));
    assert_eq!(status(&o), 200);
    let v = json_body(&o);
    assert_eq!(v["success"], true);
    let data = &v["data"];
    assert_eq!(data["protocol"], "apertodns");
    assert_eq!(data["protocol_version"], "1.4.0");
    assert_eq!(data["endpoints"]["legacy_dyndns2"], "/nic/update");
    assert_eq!(
        data["endpoints"]["status"],
        format!("{P}status/{{hostname}}")
    );
    assert_eq!(data["capabilities"]["max_bulk_size"], 100);
    assert_eq!(data["capabilities"]["txt_records"], true);
    assert_eq!(data["capabilities"]["txt_max_records"], 5);
    assert_eq!(
        data["capabilities"]["webhooks"], false,
        "demo has no webhook delivery"
    );
    for m in ["bearer_token", "api_key_header", "basic_auth_legacy"] {
        assert!(data["authentication"]["methods"]
            .as_array()
            .unwrap()
            .contains(&json!(m)));
    }
    for s in [
        "dns:update",
        "domains:read",
        "txt:read",
        "txt:write",
        "txt:delete",
    ] {
        assert!(data["authentication"]["scopes_supported"]
            .as_array()
            .unwrap()
            .contains(&json!(s)));
    }
    assert_eq!(data["server_time"], "2025-01-01T12:00:00.000Z");
    assert_eq!(data["rate_limits"]["update"]["requests"], 60);
    assert_eq!(header(&o, "content-type"), Some("application/json"));
    assert_eq!(d.calls.len(), 0);
}

#[test]
fn every_reply_carries_layer_0_headers_request_id_and_rate_limit_headers() {
    let mut d = demo();
    for req in [
        get(&format!("{P}info")),
        get(&format!("{P}health")),
        get(&format!("{P}nope")),
        get(&format!("{P}domains")),
        request("POST", &format!("{P}update"), "{").bearer(TOKEN),
    ] {
        let o = d.run(req.header("x-request-id", "550e8400-e29b-41d4-a716-446655440000"));
        for (k, v) in crate::reply::SECURITY_HEADERS {
            assert_eq!(header(&o, k), Some(*v), "{k} on {}", body(&o));
        }
        assert_eq!(
            header(&o, "x-request-id"),
            Some("550e8400-e29b-41d4-a716-446655440000")
        );
        assert_eq!(header(&o, "content-type"), Some("application/json"));
        let v = json_body(&o);
        assert!(v["success"].is_boolean());
    }
    let o = d.run(get(&format!("{P}domains")).bearer(TOKEN));
    assert_eq!(header(&o, "x-ratelimit-limit"), Some("60"));
    assert_eq!(
        header(&o, "x-ratelimit-remaining"),
        Some("59"),
        "first counted call (the unauthenticated one is not)"
    );
    let o = d.run(get(&format!("{P}domains")).bearer(TOKEN));
    assert_eq!(header(&o, "x-ratelimit-remaining"), Some("58"));
    assert!(header(&o, "x-ratelimit-reset").is_some());
}

#[test]
fn health_reports_healthy_with_uptime_in_seconds() {
    let mut d = demo();
    let first = json_body(&d.run(get(&format!("{P}health"))));
    assert_eq!(first["data"]["status"], "healthy");
    assert_eq!(first["data"]["uptime"], 0);
    d.now_ms += 90_000;
    let later = json_body(&d.run(get(&format!("{P}health"))));
    assert_eq!(later["data"]["uptime"], 90);
    assert_eq!(later["data"]["timestamp"], "2025-01-01T12:01:30.000Z");
}

#[test]
fn credentials_are_checked_before_anything_and_each_failure_has_its_code() {
    let body = json!({"hostname": HOME, "ipv4": "192.0.2.7"}).to_string();
    type Case<'a> = (&'a [(&'a str, &'a str)], u16, &'a str);
    let cases: &[Case] = &[
        (&[], 401, "unauthorized"),
        (
            &[("authorization", "Basic ZGVtbzpkZW1vLXBhc3N3b3Jk")],
            401,
            "unauthorized",
        ),
        (&[("authorization", "Bearer")], 401, "unauthorized"),
        (&[("authorization", "Token abc")], 401, "unauthorized"),
        (
            &[("authorization", "Bearer dynedge_live_nope")],
            401,
            "invalid_token",
        ),
        (&[("x-api-key", "dynedge_live_nope")], 401, "invalid_token"),
        (
            &[(
                "authorization",
                "Bearer dynedge_live_revokedrevokedrevokedrevoked12",
            )],
            401,
            "token_revoked",
        ),
        (
            &[(
                "authorization",
                "Bearer dynedge_live_expiredexpiredexpiredexpired12",
            )],
            401,
            "token_expired",
        ),
    ];
    for (headers, want_status, want_code) in cases {
        let mut d = demo();
        runtime_token(
            &d,
            "dynedge_live_revokedrevokedrevokedrevoked12",
            &["update"],
            true,
            None,
        );
        runtime_token(
            &d,
            "dynedge_live_expiredexpiredexpiredexpired12",
            &["update"],
            false,
            Some(1000),
        );
        let mut req = request("POST", &format!("{P}update"), &body);
        for (k, v) in *headers {
            req = req.header(k, v);
        }
        let o = d.run(req);
        assert_eq!(status(&o), *want_status, "{headers:?}");
        let v = json_body(&o);
        assert_eq!(v["success"], false);
        assert_eq!(v["error"]["code"], *want_code, "{headers:?}");
        assert!(
            !body.contains(TOKEN) && !v.to_string().contains("nope"),
            "no token echoed"
        );
        assert_eq!(d.calls.len(), 0, "rejected: no backend call ({headers:?})");
    }
}

#[test]
fn api_key_header_works_like_bearer() {
    let mut d = demo();
    let o = d.run(
        request(
            "POST",
            &format!("{P}update"),
            &json!({"hostname": HOME, "ipv4": "192.0.2.7"}).to_string(),
        )
        .header("x-api-key", TOKEN),
    );
    assert_eq!(status(&o), 200, "{}", body(&o));
}

#[test]
fn update_sets_the_address_reports_previous_and_a_repeat_is_unchanged_without_a_write() {
    let mut d = demo();
    d.pdns.set(HOME, "A", &["192.0.2.1"]);
    d.pdns.set(HOME, "AAAA", &["2001:db8::1"]);
    let o = d.run(post(
        "update",
        json!({"hostname": "Home.Dyn.Example.Test", "ipv4": "192.0.2.7"}),
    ));
    assert_eq!(status(&o), 200, "{}", body(&o));
    let v = json_body(&o);
    assert_eq!(
        v["data"],
        json!({
            "hostname": HOME, "ipv4": "192.0.2.7", "ipv6": "2001:db8::1",
            "previous_ipv4": "192.0.2.1", "previous_ipv6": "2001:db8::1",
            "ttl": 300, "changed": true, "propagation_estimate_seconds": 300,
            "updated_at": "2025-01-01T12:00:00.000Z"
        })
    );
    assert_eq!(d.pdns.get(HOME, "A"), vec!["192.0.2.7"]);
    assert_eq!(
        d.pdns.get(HOME, "AAAA"),
        vec!["2001:db8::1"],
        "absent ipv6 = untouched"
    );
    let writes = d.writes();
    d.now_ms += 5_000;
    let again = json_body(&d.run(post(
        "update",
        json!({"hostname": HOME, "ipv4": "192.0.2.7"}),
    )));
    assert_eq!(again["data"]["changed"], false);
    assert_eq!(again["data"]["previous_ipv4"], "192.0.2.7");
    assert_eq!(
        again["data"]["updated_at"], "2025-01-01T12:00:00.000Z",
        "time of the last real change"
    );
    assert!(again["data"].get("propagation_estimate_seconds").is_none());
    assert_eq!(d.writes(), writes, "no write for an unchanged address");
}

#[test]
fn rejected_updates_name_the_problem_and_never_reach_the_backend() {
    let cases: &[(&str, u16, &str)] = &[
        ("not json", 400, "invalid_json"),
        ("[]", 400, "validation_error"),
        ("{}", 400, "validation_error"),
        (r#"{"hostname": 5}"#, 400, "validation_error"),
        (r#"{"hostname": "bad..name.test"}"#, 400, "invalid_hostname"),
        (
            r#"{"hostname": "home.dyn.example.test.."}"#,
            400,
            "invalid_hostname",
        ),
        (
            r#"{"hostname": "home.dyn.example.test", "ttl": 59}"#,
            400,
            "invalid_ttl",
        ),
        (
            r#"{"hostname": "home.dyn.example.test", "ttl": 86401}"#,
            400,
            "invalid_ttl",
        ),
        (
            r#"{"hostname": "home.dyn.example.test", "ttl": "300"}"#,
            400,
            "invalid_ttl",
        ),
        (
            r#"{"hostname": "home.dyn.example.test", "ttl": 300.5}"#,
            400,
            "invalid_ttl",
        ),
        (
            r#"{"hostname": "home.dyn.example.test", "ipv4": "999.1.1.1"}"#,
            400,
            "invalid_ip",
        ),
        (
            r#"{"hostname": "home.dyn.example.test", "ipv4": "1.2.3"}"#,
            400,
            "invalid_ip",
        ),
        (
            r#"{"hostname": "home.dyn.example.test", "ipv4": "2001:db8::1"}"#,
            400,
            "invalid_ip",
        ),
        (
            r#"{"hostname": "home.dyn.example.test", "ipv6": "192.0.2.1"}"#,
            400,
            "invalid_ip",
        ),
        (
            r#"{"hostname": "home.dyn.example.test", "ipv4": "10.0.0.1"}"#,
            400,
            "invalid_ip",
        ),
        (
            r#"{"hostname": "home.dyn.example.test", "ipv6": "fe80::1"}"#,
            400,
            "invalid_ip",
        ),
        (
            r#"{"hostname": "home.dyn.example.test", "ipv4": 5}"#,
            400,
            "validation_error",
        ),
        (
            r#"{"hostname": "home.dyn.example.test", "txt": "x"}"#,
            400,
            "validation_error",
        ),
        (
            r#"{"hostname": "home.dyn.example.test", "txt": {"name": "www", "value": "v"}}"#,
            400,
            "txt_invalid_name",
        ),
        (
            r#"{"hostname": "home.dyn.example.test", "txt": {"name": "_acme-challenge"}}"#,
            400,
            "validation_error",
        ),
        (
            r#"{"hostname": "home.dyn.example.test", "txt": {"name": "_acme-challenge", "value": "v", "action": "drop"}}"#,
            400,
            "validation_error",
        ),
        (
            r#"{"hostname": "neighbour.dyn.example.test", "ipv4": "192.0.2.7"}"#,
            403,
            "hostname_not_owned",
        ),
        (
            r#"{"hostname": "nobody.dyn.example.test", "ipv4": "192.0.2.7"}"#,
            403,
            "hostname_not_owned",
        ),
        (
            r#"{"hostname": "home.elsewhere.test", "ipv4": "192.0.2.7"}"#,
            403,
            "hostname_not_owned",
        ),
        (
            r#"{"hostname": "home.dyn.example.test", "ipv6": "auto"}"#,
            400,
            "ipv6_auto_failed",
        ),
    ];
    for (b, want_status, want_code) in cases {
        let mut d = demo();
        let o = d.run(request("POST", &format!("{P}update"), b).bearer(TOKEN));
        assert_eq!(status(&o), *want_status, "{b}: {}", body(&o));
        let v = json_body(&o);
        assert_eq!(v["success"], false, "{b}");
        assert_eq!(v["error"]["code"], *want_code, "{b}");
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        assert!(v["meta"]["timestamp"].is_string());
        if *want_code == "validation_error" && *b != "[]" {
            assert!(
                v["error"]["details"]["fields"][0]["field"].is_string(),
                "{b}"
            );
        }
        assert_eq!(d.calls.len(), 0, "rejected: no backend call ({b})");
    }
}

#[test]
fn ipv4_auto_over_ipv6_fails_and_ipv6_auto_over_ipv4_is_ignored_next_to_ipv4() {
    let mut d = demo();
    let o = d.run(post("update", json!({"hostname": HOME, "ipv4": "auto"})).from("2001:db8::5"));
    assert_eq!(status(&o), 400);
    assert_eq!(json_body(&o)["error"]["code"], "ipv4_auto_failed");
    assert_eq!(d.calls.len(), 0);

    let o = d.run(post(
        "update",
        json!({"hostname": HOME, "ipv4": "auto", "ipv6": "auto"}),
    ));
    assert_eq!(status(&o), 200, "{}", body(&o));
    assert_eq!(
        json_body(&o)["data"]["ipv4"],
        "192.0.2.200",
        "the peer address"
    );
    assert_eq!(d.pdns.get(HOME, "A"), vec!["192.0.2.200"]);
    assert!(d.pdns.get(HOME, "AAAA").is_empty());

    let o = d.run(post("update", json!({"hostname": HOME, "ipv6": "auto"})).from("2001:db8::5"));
    assert_eq!(json_body(&o)["data"]["ipv6"], "2001:db8::5");
}

#[test]
fn auto_detected_addresses_must_be_public_too() {
    let mut d = demo();
    let o = d.run(post("update", json!({"hostname": HOME, "ipv4": "auto"})).from("10.1.2.3"));
    assert_eq!(status(&o), 400);
    assert_eq!(json_body(&o)["error"]["code"], "invalid_ip");
    assert_eq!(d.calls.len(), 0);
}

#[test]
fn null_deletes_one_family_and_deleting_a_missing_record_is_record_not_found() {
    let mut d = demo();
    d.pdns.set(HOME, "A", &["192.0.2.1"]);
    d.pdns.set(HOME, "AAAA", &["2001:db8::1"]);
    let o = d.run(post("update", json!({"hostname": HOME, "ipv6": null})));
    assert_eq!(status(&o), 200, "{}", body(&o));
    let v = json_body(&o);
    assert_eq!(v["data"]["ipv6"], Value::Null);
    assert_eq!(v["data"]["previous_ipv6"], "2001:db8::1");
    assert_eq!(v["data"]["ipv4"], "192.0.2.1");
    assert_eq!(v["data"]["changed"], true);
    assert!(d.pdns.get(HOME, "AAAA").is_empty());
    assert_eq!(d.pdns.get(HOME, "A"), vec!["192.0.2.1"]);

    let writes = d.writes();
    let o = d.run(post("update", json!({"hostname": HOME, "ipv6": null})));
    assert_eq!(status(&o), 404);
    assert_eq!(json_body(&o)["error"]["code"], "record_not_found");
    assert_eq!(d.writes(), writes, "nothing written");
}

#[test]
fn ttl_only_request_changes_no_address() {
    let mut d = demo();
    d.pdns.set(HOME, "A", &["192.0.2.1"]);
    let o = d.run(post("update", json!({"hostname": HOME, "ttl": 600})));
    assert_eq!(status(&o), 200);
    let v = json_body(&o);
    assert_eq!(v["data"]["changed"], false);
    assert_eq!(v["data"]["ttl"], 600);
    assert_eq!(d.writes(), 0);
}

#[test]
fn backend_failure_is_dns_error_never_success() {
    for fault in [Fault::Unreachable, Fault::WritesFail] {
        let mut d = demo();
        d.pdns.fault = fault.clone();
        let o = d.run(post(
            "update",
            json!({"hostname": HOME, "ipv4": "192.0.2.7"}),
        ));
        assert_eq!(status(&o), 502, "{fault:?}");
        let v = json_body(&o);
        assert_eq!(v["success"], false);
        assert_eq!(v["error"]["code"], "dns_error");
    }
}

#[test]
fn a_token_without_the_scope_is_forbidden_before_any_call() {
    let cases: &[(&str, &str, Value)] = &[
        (
            "POST",
            "update",
            json!({"hostname": HOME, "ipv4": "192.0.2.7"}),
        ),
        (
            "POST",
            "bulk-update",
            json!({"updates": [{"hostname": HOME, "ipv4": "192.0.2.7"}]}),
        ),
        (
            "POST",
            "txt",
            json!({"hostname": "_acme-challenge.home.dyn.example.test", "value": "v"}),
        ),
        (
            "DELETE",
            "txt",
            json!({"hostname": "_acme-challenge.home.dyn.example.test"}),
        ),
        (
            "GET",
            "txt/_acme-challenge.home.dyn.example.test",
            Value::Null,
        ),
        ("GET", "status/home.dyn.example.test", Value::Null),
        ("GET", "domains", Value::Null),
    ];
    for (method, ep, b) in cases {
        let mut d = demo();
        let tok = "dynedge_live_scopelessscopelessscopeless12";
        // Holds a scope, just never the one asked for.
        let other = if *ep == "update" || *ep == "bulk-update" {
            "read"
        } else {
            "update"
        };
        runtime_token(&d, tok, &[other], false, None);
        let b = if b.is_null() {
            String::new()
        } else {
            b.to_string()
        };
        let o = d.run(request(method, &format!("{P}{ep}"), &b).bearer(tok));
        assert_eq!(status(&o), 403, "{method} {ep}: {}", body(&o));
        assert_eq!(json_body(&o)["error"]["code"], "forbidden");
        assert_eq!(d.calls.len(), 0);
    }
}

#[test]
fn a_token_restricted_to_other_hosts_gets_hostname_forbidden() {
    let mut d = demo();
    let tok = "dynedge_live_restrictedrestrictedrestrict";
    let t = StoredToken {
        id: "tok_r".into(),
        user: "demo".into(),
        scopes: vec!["update".into()],
        hosts: Some(vec!["other.dyn.example.test".into()]),
        name: "r".into(),
        prefix: tok[..20].into(),
        created_ms: 0,
        expires_ms: None,
        revoked: false,
        rules: Default::default(),
    };
    d.kv.apply(&[KvWrite::put(
        keys::api_token(&crate::auth::token_hash(tok)),
        serde_json::to_vec(&t).unwrap(),
    )]);
    let o = d.run(
        request(
            "POST",
            &format!("{P}update"),
            &json!({"hostname": HOME, "ipv4": "192.0.2.7"}).to_string(),
        )
        .bearer(tok),
    );
    assert_eq!(status(&o), 403);
    assert_eq!(json_body(&o)["error"]["code"], "hostname_forbidden");
    assert_eq!(d.calls.len(), 0);
}

#[test]
fn wrong_method_is_405_with_allow_and_unknown_path_is_404() {
    let mut d = demo();
    for (method, ep, allow) in [
        ("GET", "update", "POST"),
        ("PUT", "txt", "POST, DELETE"),
        ("POST", "info", "GET"),
        ("DELETE", "domains", "GET"),
    ] {
        let o = d.run(request(method, &format!("{P}{ep}"), "").bearer(TOKEN));
        assert_eq!(status(&o), 405, "{method} {ep}");
        assert_eq!(json_body(&o)["error"]["code"], "method_not_allowed");
        assert_eq!(header(&o, "allow"), Some(allow));
    }
    for ep in ["", "updates", "status/", "tokens", "webhooks"] {
        let o = d.run(get(&format!("{P}{ep}")).bearer(TOKEN));
        assert_eq!(status(&o), 404, "{ep}");
        let v = json_body(&o);
        assert_eq!(v["error"]["code"], "not_found");
        assert_eq!(v["error"]["message"], "Endpoint not found");
    }
    assert_eq!(d.calls.len(), 0);
}

#[test]
fn rate_limit_answers_429_with_retry_after_and_makes_no_call() {
    let mut d = demo();
    let now_s = d.now_ms / 1000;
    let window = now_s - now_s % 60;
    d.kv.apply(&[KvWrite::put(
        crate::limits::window_key("update", "demo-all"),
        format!("{window}|60").into_bytes(),
    )]);
    let o = d.run(post(
        "update",
        json!({"hostname": HOME, "ipv4": "192.0.2.7"}),
    ));
    assert_eq!(status(&o), 429);
    let v = json_body(&o);
    assert_eq!(v["error"]["code"], "rate_limited");
    assert_eq!(v["error"]["retry_after_seconds"], 60);
    assert_eq!(
        v["error"]["message"],
        "Rate limit exceeded. Retry after 60 seconds."
    );
    assert_eq!(header(&o, "retry-after"), Some("60"));
    assert_eq!(header(&o, "x-ratelimit-remaining"), Some("0"));
    assert_eq!(d.calls.len(), 0);
}

#[test]
fn client_set_txt_and_delete_txt_through_update_accumulate_at_the_acme_name() {
    // ApertoDNSClient.setTxt(hostname, "_acme-challenge", value) and deleteTxt (Protocol rules: ACME names).
    let mut d = demo();
    d.pdns.set(HOME, "A", &["192.0.2.1"]);
    let acme = "_acme-challenge.home.dyn.example.test";
    for value in ["apex-token", "wildcard-token"] {
        let o = d.run(post(
            "update",
            json!({"hostname": HOME, "txt": {"name": "_acme-challenge", "value": value, "action": "set"}}),
        ));
        assert_eq!(status(&o), 200, "{}", body(&o));
        let v = json_body(&o);
        assert_eq!(v["data"]["hostname"], HOME);
        assert_eq!(v["data"]["changed"], false, "addresses untouched");
        assert_eq!(v["data"]["ipv4"], "192.0.2.1");
    }
    assert_eq!(
        d.pdns.get(acme, "TXT"),
        vec!["apex-token", "wildcard-token"]
    );
    assert_eq!(d.pdns.get(HOME, "A"), vec!["192.0.2.1"]);
    let o = d.run(post(
        "update",
        json!({"hostname": HOME, "txt": {"name": "_acme-challenge", "value": "apex-token", "action": "delete"}}),
    ));
    assert_eq!(status(&o), 200);
    assert_eq!(d.pdns.get(acme, "TXT"), vec!["wildcard-token"]);
    let o = d.run(post(
        "update",
        json!({"hostname": HOME, "txt": {"name": "_acme-challenge", "action": "delete"}}),
    ));
    assert_eq!(status(&o), 200);
    assert!(d.pdns.get(acme, "TXT").is_empty());
}

#[test]
fn bulk_update_reports_each_item_and_answers_207_on_partial_success() {
    let mut d = demo();
    let o = d.run(post(
        "bulk-update",
        json!({
            "updates": [
                {"hostname": HOME, "ipv4": "auto"},
                {"hostname": "neighbour.dyn.example.test", "ipv4": "192.0.2.9"},
                {"hostname": "bad..name", "ipv4": "192.0.2.9"},
                {"hostname": HOME, "ipv6": "2001:db8::7"}
            ],
            "defaults": {"ttl": 600}
        }),
    ));
    assert_eq!(status(&o), 207, "{}", body(&o));
    let v = json_body(&o);
    assert_eq!(v["success"], true);
    assert_eq!(
        v["data"]["summary"],
        json!({"total": 4, "successful": 2, "failed": 2})
    );
    let r = &v["data"]["results"];
    assert_eq!(
        r[0],
        json!({"hostname": HOME, "success": true, "changed": true, "ipv4": "192.0.2.200"})
    );
    assert_eq!(r[1]["success"], false);
    assert_eq!(r[1]["error"]["code"], "hostname_not_owned");
    assert_eq!(r[1]["error"]["message"], "User does not own this hostname");
    assert_eq!(r[2]["error"]["code"], "invalid_hostname");
    assert_eq!(r[3]["ipv6"], "2001:db8::7");
    assert_eq!(d.pdns.get(HOME, "A"), vec!["192.0.2.200"]);
}

#[test]
fn bulk_update_all_ok_is_200_all_failed_is_400_and_over_100_is_refused_before_any_work() {
    let mut d = demo();
    let o = d.run(post(
        "bulk-update",
        json!({"updates": [{"hostname": HOME, "ipv4": "192.0.2.8"}]}),
    ));
    assert_eq!(status(&o), 200);
    assert_eq!(json_body(&o)["data"]["summary"]["failed"], 0);

    let calls = d.calls.len();
    let o = d.run(post(
        "bulk-update",
        json!({"updates": [{"hostname": "neighbour.dyn.example.test", "ipv4": "192.0.2.8"}]}),
    ));
    assert_eq!(status(&o), 400);
    let v = json_body(&o);
    assert_eq!(v["success"], false);
    assert_eq!(v["error"]["code"], "validation_error");
    assert_eq!(
        v["data"]["summary"],
        json!({"total": 1, "successful": 0, "failed": 1})
    );
    assert_eq!(d.calls.len(), calls);

    let many: Vec<Value> = (0..101)
        .map(|_| json!({"hostname": HOME, "ipv4": "192.0.2.8"}))
        .collect();
    let o = d.run(post("bulk-update", json!({"updates": many})));
    assert_eq!(status(&o), 400);
    assert_eq!(json_body(&o)["error"]["code"], "bulk_limit_exceeded");
    for b in [
        json!({}),
        json!({"updates": "x"}),
        json!({"updates": [], "defaults": 3}),
    ] {
        let o = d.run(post("bulk-update", b.clone()));
        assert_eq!(status(&o), 400, "{b}");
        assert_eq!(json_body(&o)["error"]["code"], "validation_error", "{b}");
    }
    assert_eq!(d.calls.len(), calls, "refused bulk requests make no call");
}

#[test]
fn bulk_defaults_fill_missing_fields_but_an_explicit_null_wins() {
    let mut d = demo();
    d.pdns.set(HOME, "AAAA", &["2001:db8::1"]);
    let o = d.run(post(
        "bulk-update",
        json!({"updates": [{"hostname": HOME, "ipv6": null}], "defaults": {"ipv4": "192.0.2.44", "ipv6": "2001:db8::9"}}),
    ));
    assert_eq!(status(&o), 200, "{}", body(&o));
    assert_eq!(d.pdns.get(HOME, "A"), vec!["192.0.2.44"]);
    assert!(d.pdns.get(HOME, "AAAA").is_empty());
}

#[test]
fn status_reports_nine_fields_and_hides_foreign_hosts() {
    let mut d = demo();
    let o = d.run(get(&format!("{P}status/{HOME}")).bearer(TOKEN));
    assert_eq!(status(&o), 200, "{}", body(&o));
    assert_eq!(
        json_body(&o)["data"],
        json!({"hostname": HOME, "ipv4": null, "ipv6": null, "ttl": 60, "is_active": true,
               "updated_at": null, "update_count_24h": 0, "update_count_total": 0, "created_at": null})
    );
    d.run(post(
        "update",
        json!({"hostname": HOME, "ipv4": "192.0.2.7", "ttl": 120}),
    ));
    d.now_ms += 60_000;
    d.run(post(
        "update",
        json!({"hostname": HOME, "ipv4": "192.0.2.8", "ttl": 120}),
    ));
    let v = json_body(&d.run(get(&format!("{P}status/home.dyn.example.test")).bearer(TOKEN)));
    assert_eq!(v["data"]["ipv4"], "192.0.2.8");
    assert_eq!(v["data"]["ttl"], 120);
    assert_eq!(v["data"]["update_count_total"], 2);
    assert_eq!(v["data"]["update_count_24h"], 2);
    assert_eq!(v["data"]["created_at"], "2025-01-01T12:00:00.000Z");
    assert_eq!(v["data"]["updated_at"], "2025-01-01T12:01:00.000Z");

    let calls = d.calls.len();
    for h in [
        "neighbour.dyn.example.test",
        "nobody.dyn.example.test",
        "x.elsewhere.test",
    ] {
        let o = d.run(get(&format!("{P}status/{h}")).bearer(TOKEN));
        assert_eq!(status(&o), 404, "{h}");
        assert_eq!(json_body(&o)["error"]["code"], "not_found");
    }
    let o = d.run(get(&format!("{P}status/bad..name")).bearer(TOKEN));
    assert_eq!(json_body(&o)["error"]["code"], "invalid_hostname");
    assert_eq!(d.calls.len(), calls);
}

#[test]
fn domains_is_a_flat_array_of_the_callers_hosts() {
    let mut d = demo();
    d.pdns.set(HOME, "A", &["192.0.2.1"]);
    let o = d.run(get(&format!("{P}domains")).bearer(TOKEN));
    assert_eq!(status(&o), 200);
    let v = json_body(&o);
    assert_eq!(
        v["data"],
        json!([{"hostname": HOME, "ipv4": "192.0.2.1", "ipv6": null, "ttl": 60,
                "updated_at": null, "created_at": null, "is_custom_domain": false}])
    );
}

#[test]
fn txt_post_accumulates_values_for_wildcard_and_apex_up_to_the_limit() {
    let mut d = demo();
    let acme = "_acme-challenge.home.dyn.example.test";
    let o = d.run(post("txt", json!({"hostname": acme, "value": "apex"})));
    assert_eq!(status(&o), 200, "{}", body(&o));
    assert_eq!(
        json_body(&o)["data"],
        json!({"hostname": acme, "value": "apex", "ttl": 60, "record_count": 1,
               "timestamp": "2025-01-01T12:00:00.000Z"})
    );
    let o = d.run(post(
        "txt",
        json!({"hostname": "_ACME-Challenge.Home.dyn.example.test", "value": "wild", "ttl": 120}),
    ));
    assert_eq!(json_body(&o)["data"]["record_count"], 2);
    assert_eq!(d.pdns.get(acme, "TXT"), vec!["apex", "wild"]);
    let o = d.run(post("txt", json!({"hostname": acme, "value": "wild"})));
    assert_eq!(
        json_body(&o)["data"]["record_count"],
        2,
        "re-posting a value is idempotent"
    );
    for v in ["c", "d", "e"] {
        assert_eq!(
            status(&d.run(post("txt", json!({"hostname": acme, "value": v})))),
            200
        );
    }
    let writes = d.writes();
    let o = d.run(post("txt", json!({"hostname": acme, "value": "sixth"})));
    assert_eq!(status(&o), 400);
    assert_eq!(json_body(&o)["error"]["code"], "txt_limit_exceeded");
    assert_eq!(d.writes(), writes, "refused after reading, before writing");

    let o = d.run(get(&format!("{P}txt/{acme}")).bearer(TOKEN));
    assert_eq!(
        json_body(&o)["data"],
        json!({"hostname": acme, "values": ["apex", "wild", "c", "d", "e"], "ttl": 60, "record_count": 5})
    );
}

#[test]
fn txt_delete_removes_one_value_or_all_and_is_idempotent() {
    let mut d = demo();
    let acme = "_acme-challenge.home.dyn.example.test";
    d.pdns.set(acme, "TXT", &["a", "b"]);
    let del = |v: Value| request("DELETE", &format!("{P}txt"), &v.to_string()).bearer(TOKEN);
    let o = d.run(del(json!({"hostname": acme, "value": "a"})));
    assert_eq!(status(&o), 200, "{}", body(&o));
    assert_eq!(
        json_body(&o)["data"],
        json!({"hostname": acme, "deleted": true, "values_removed": 1, "remaining_count": 1,
               "timestamp": "2025-01-01T12:00:00.000Z"})
    );
    let o = d.run(del(json!({"hostname": acme, "value": "a"})));
    assert_eq!(status(&o), 200);
    assert_eq!(json_body(&o)["data"]["deleted"], false);
    assert_eq!(json_body(&o)["data"]["values_removed"], 0);
    let o = d.run(del(json!({"hostname": acme})));
    assert_eq!(json_body(&o)["data"]["values_removed"], 1);
    assert!(d.pdns.get(acme, "TXT").is_empty());
    let o = d.run(get(&format!("{P}txt/{acme}")).bearer(TOKEN));
    assert_eq!(json_body(&o)["data"]["values"], json!([]));
    assert_eq!(json_body(&o)["data"]["record_count"], 0);
}

#[test]
fn txt_requests_are_validated_before_any_call() {
    let long = "x".repeat(256);
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        ("POST", json!({"value": "v"}), 400, "validation_error"),
        (
            "POST",
            json!({"hostname": "_acme-challenge.home.dyn.example.test"}),
            400,
            "validation_error",
        ),
        (
            "POST",
            json!({"hostname": "_acme-challenge.home.dyn.example.test", "value": 5}),
            400,
            "validation_error",
        ),
        (
            "POST",
            json!({"hostname": "home.dyn.example.test", "value": "v"}),
            400,
            "txt_invalid_name",
        ),
        (
            "POST",
            json!({"hostname": "_dmarc.home.dyn.example.test", "value": "v"}),
            400,
            "txt_invalid_name",
        ),
        (
            "POST",
            json!({"hostname": "_acme-challenge.home.dyn.example.test", "value": long}),
            400,
            "txt_value_too_long",
        ),
        (
            "POST",
            json!({"hostname": "_acme-challenge.home.dyn.example.test", "value": "v", "ttl": 30}),
            400,
            "invalid_ttl",
        ),
        (
            "POST",
            json!({"hostname": "_acme-challenge.bad..name", "value": "v"}),
            400,
            "invalid_hostname",
        ),
        (
            "POST",
            json!({"hostname": "_acme-challenge.neighbour.dyn.example.test", "value": "v"}),
            403,
            "hostname_not_owned",
        ),
        ("DELETE", json!({}), 400, "validation_error"),
        (
            "DELETE",
            json!({"hostname": "_acme-challenge.neighbour.dyn.example.test"}),
            403,
            "hostname_not_owned",
        ),
    ];
    for (method, b, want_status, want_code) in cases {
        let mut d = demo();
        let o = d.run(request(method, &format!("{P}txt"), &b.to_string()).bearer(TOKEN));
        assert_eq!(status(&o), want_status, "{method} {b}: {}", body(&o));
        assert_eq!(json_body(&o)["error"]["code"], want_code, "{method} {b}");
        assert_eq!(d.calls.len(), 0, "{method} {b}");
    }
    let mut d = demo();
    let o = d.run(
        get(&format!(
            "{P}txt/_acme-challenge.neighbour.dyn.example.test"
        ))
        .bearer(TOKEN),
    );
    assert_eq!(status(&o), 403);
    let o = d.run(get(&format!("{P}txt/home.dyn.example.test")).bearer(TOKEN));
    assert_eq!(json_body(&o)["error"]["code"], "txt_invalid_name");
    assert_eq!(d.calls.len(), 0);
}

#[test]
fn an_ip_change_emits_a_signed_webhook_and_no_change_emits_none() {
    let mut cfg: Value =
        serde_json::from_slice(include_bytes!("../../../../../examples/dynedge.json")).unwrap();
    cfg["webhooks"] = json!({"cluster": "webhooks", "allow_ranges": ["127.0.0.0/8"]});
    let mut d = Driver::new(crate::config::Config::from_json(cfg.to_string().as_bytes()).unwrap());
    d.now_ms = 1_735_732_800_000;
    let secret = "0123456789abcdef0123456789abcdef-secret";
    let sub = crate::webhooks::Subscription {
        id: "wh_1".into(),
        url: "https://127.0.0.1:22443/hook".into(),
        events: vec!["ip_changed".into()],
        secret: secret.into(),
        active: true,
        host: None,
        created_ms: 0,
        updated_ms: 0,
    };
    d.kv.apply(&[KvWrite::put(
        keys::webhooks("demo"),
        serde_json::to_vec(&vec![sub]).unwrap(),
    )]);
    d.pdns.set(HOME, "A", &["192.0.2.1"]);
    let o = d.run(post(
        "update",
        json!({"hostname": HOME, "ipv4": "192.0.2.7"}),
    ));
    assert_eq!(status(&o), 200);
    assert_eq!(o.notify.len(), 1);
    let n = &o.notify[0];
    assert_eq!(n.callout.cluster, "webhooks");
    assert_eq!(n.callout.authority, "127.0.0.1:22443");
    assert_eq!(n.callout.path, "/hook");
    let h = |k: &str| {
        n.callout
            .headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let ts: u64 = h("x-apertodns-timestamp").parse().unwrap();
    assert_eq!(ts, d.now_ms / 1000);
    assert_eq!(
        h("x-apertodns-signature"),
        crate::webhooks::sign(secret, ts, &n.callout.body)
    );
    assert_eq!(h("x-apertodns-event"), "ip_changed");
    assert!(h("x-apertodns-delivery-id").starts_with("del_"));
    let payload: Value = serde_json::from_slice(&n.callout.body).unwrap();
    assert_eq!(payload["event"], "ip_changed");
    assert_eq!(payload["webhook_id"], "wh_1");
    assert_eq!(
        payload["data"],
        json!({"hostname": HOME, "previous_ipv4": "192.0.2.1", "ipv4": "192.0.2.7",
               "previous_ipv6": null, "ipv6": null, "ttl": 300})
    );
    assert_eq!((n.attempt, n.max_retries), (0, 3));
    let o = d.run(post(
        "update",
        json!({"hostname": HOME, "ipv4": "192.0.2.7"}),
    ));
    assert!(o.notify.is_empty(), "nochg: no webhook");
    // Any dialect's IP change notifies: DynDNS2 here.
    let o = d.run(get(&format!("/nic/update?hostname={HOME}&myip=192.0.2.9")).basic("demo", TOKEN));
    assert_eq!(body(&o), "good 192.0.2.9\n");
    assert_eq!(o.notify.len(), 1);
}

#[test]
fn an_oversized_body_is_413_in_the_json_envelope() {
    let mut d = demo();
    let big = format!(r#"{{"hostname":"{HOME}","pad":"{}"}}"#, "x".repeat(20_000));
    let o = d.run(request("POST", &format!("{P}update"), &big).bearer(TOKEN));
    assert_eq!(status(&o), 413);
    let v = json_body(&o);
    assert_eq!(v["success"], false);
    assert_eq!(v["error"]["code"], "payload_too_large");
    assert_eq!(header(&o, "content-type"), Some("application/json"));
    assert!(d.calls.is_empty());
}

#[test]
fn a_client_guessing_tokens_is_refused_before_its_credentials_are_looked_at() {
    let mut d = demo();
    let limit = d.cfg.rate_limits.bad_per_client.limit;
    for _ in 0..limit {
        let o = d.run(
            get(&format!("{P}domains")).bearer("dynedge_live_guessguessguessguessguessguess12"),
        );
        assert_eq!(json_body(&o)["error"]["code"], "invalid_token");
    }
    let o = d.run(get(&format!("{P}domains")).bearer(TOKEN));
    assert_eq!(status(&o), 429, "{}", body(&o));
    assert_eq!(json_body(&o)["error"]["code"], "rate_limited");
    assert!(d.calls.is_empty());
    let o = d.run(
        get(&format!("{P}domains"))
            .bearer(TOKEN)
            .from("198.51.100.77"),
    );
    assert_eq!(status(&o), 200, "another client is not affected");
}

#[test]
fn the_update_txt_member_is_held_to_the_ownership_check_of_txt() {
    let mut d = demo();
    let foreign = "_acme-challenge.other.home.dyn.example.test";
    let o = d.run(post(
        "update",
        json!({"hostname": HOME, "ipv4": "192.0.2.5",
               "txt": {"name": "_acme-challenge.other", "value": "v"}}),
    ));
    assert_eq!(
        (status(&o), json_body(&o)["error"]["code"].clone()),
        (403, json!("hostname_not_owned")),
        "{}",
        body(&o)
    );
    assert_eq!(d.writes(), 0, "nothing written");
    assert!(d.pdns.get(foreign, "TXT").is_empty());
    // /txt answers the same for the same name.
    let o = d.run(post("txt", json!({"hostname": foreign, "value": "v"})));
    assert_eq!(json_body(&o)["error"]["code"], "hostname_not_owned");
    // The host's own challenge name still works through /update.
    let o = d.run(post(
        "update",
        json!({"hostname": HOME, "txt": {"name": "_acme-challenge", "value": "v"}}),
    ));
    assert_eq!(status(&o), 200, "{}", body(&o));
    assert_eq!(d.pdns.get(&format!("_acme-challenge.{HOME}"), "TXT"), ["v"]);
}
