//! Token rules through real Envoy, the built filter and real PowerDNS: a token limited to a
//! subnet, one host and one record type, created through `/api/tokens` (configuration store)
//! and with `dynedge-admin` (etcd store), refused outside its limits and accepted inside. The
//! client addresses are real: Envoy listens on 127.0.0.1 and on ::1.

mod support;

use std::time::Duration;

use dynedge_envoy::etcd::{GatewayPorts, Gateways};
use dynedge_envoy::wasm_file;
use support::APERTO as P;
use support::*;

/// The gateway's URL for `path` over IPv4 or IPv6 loopback.
fn url(stack: &Stack, v6: bool, path: &str) -> String {
    if v6 {
        format!("https://[::1]:{}{path}", stack.envoy.port)
    } else {
        stack.envoy.url(path)
    }
}

/// A DynDNS2 update of `host` to `myip` with `token`, from ::1 or 127.0.0.1: the reply's word.
fn dyndns2(stack: &Stack, v6: bool, token: &str, host: &str, myip: &str) -> String {
    let r = send_url(
        stack,
        "GET",
        &url(
            stack,
            v6,
            &format!("/nic/update?hostname={host}&myip={myip}"),
        ),
        token,
        "",
    );
    r.body.trim().to_string()
}

#[test]
fn a_token_limited_by_subnet_host_and_type_through_api_tokens_is_refused_outside_and_works_inside()
{
    let stack = Stack::start("tokens_api");
    // Only from ::1, only AAAA, only at HOME (demo also owns OFFICE here).
    let created = send(
        &stack,
        "POST",
        "/api/tokens",
        TOKEN,
        &serde_json::json!({
            "name": "router", "scopes": ["dns:update"],
            "allowed_subnets": ["::1/128", "2001:db8:77::/48"],
            "max_unused_period": "30d",
            "policies": [{"host": HOME, "types": ["AAAA"]}],
        })
        .to_string(),
    );
    assert_eq!(created.status, 201, "{created:#?}");
    let data = &json(&created)["data"];
    let token = data["token"].as_str().unwrap().to_string();
    let id = data["id"].as_str().unwrap().to_string();

    // Inside: from ::1, AAAA at HOME.
    assert_eq!(
        dyndns2(&stack, true, &token, HOME, "2001:db8::61"),
        "good 2001:db8::61"
    );
    assert_eq!(stack.records(HOME, "AAAA"), ["2001:db8::61"]);
    // Outside its subnet (from 127.0.0.1): badauth, like a wrong token, and nothing written.
    assert_eq!(
        dyndns2(&stack, false, &token, HOME, "2001:db8::62"),
        "badauth"
    );
    let made_up = "dynedge_live_madeupmadeupmadeupmadeupmadeu";
    let aperto = |v6: bool, tok: &str, field: &str, ip: &str| {
        let r = send_url(
            &stack,
            "POST",
            &url(&stack, v6, &format!("{P}/update")),
            tok,
            &serde_json::json!({"hostname": HOME, field: ip}).to_string(),
        );
        (r.status, json(&r)["error"]["code"].clone())
    };
    assert_eq!(
        aperto(false, &token, "ipv6", "2001:db8::62"),
        aperto(false, made_up, "ipv6", "2001:db8::62"),
        "a real token outside its subnet answers as a made-up one"
    );
    // Another type (A) at its host, or its type at another host: nohost.
    assert_eq!(dyndns2(&stack, true, &token, HOME, "192.0.2.61"), "nohost");
    assert_eq!(
        dyndns2(&stack, true, &token, OFFICE, "2001:db8::63"),
        "nohost"
    );
    assert_eq!(
        aperto(true, &token, "ipv4", "192.0.2.61"),
        (403, serde_json::json!("hostname_forbidden"))
    );
    assert!(stack.records(HOME, "A").is_empty());
    assert!(stack.records(OFFICE, "AAAA").is_empty());
    assert_eq!(stack.records(HOME, "AAAA"), ["2001:db8::61"]);

    // Listed with its rules, never with the token.
    let list = stack.get(
        "/api/tokens",
        &["-H", &format!("Authorization: Bearer {TOKEN}")],
    );
    assert!(!list.body.contains(&token));
    let listed = json(&list)["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(
        listed["allowedSubnets"],
        serde_json::json!(["::1/128", "2001:db8:77::/48"])
    );
    assert_eq!(
        listed["policies"],
        serde_json::json!([{"host": HOME, "types": ["AAAA"]}])
    );
    assert_eq!(listed["maxUnusedPeriod"], 30 * 86_400);
    assert!(listed["lastUsedAt"].is_string(), "{listed}");

    // A bad rule is refused naming its field.
    let bad = send(
        &stack,
        "POST",
        "/api/tokens",
        TOKEN,
        r#"{"allowed_subnets": ["::1/129"]}"#,
    );
    assert_eq!(bad.status, 400, "{bad:#?}");
    assert_eq!(
        json(&bad)["error"]["details"]["fields"][0]["field"],
        "allowed_subnets[0]"
    );

    // Revoked: refused inside its limits too.
    let gone = send(&stack, "DELETE", &format!("/api/tokens/{id}"), TOKEN, "");
    assert_eq!(gone.status, 200, "{gone:#?}");
    assert_eq!(
        dyndns2(&stack, true, &token, HOME, "2001:db8::64"),
        "badauth"
    );
    assert_eq!(stack.records(HOME, "AAAA"), ["2001:db8::61"]);
}

#[test]
fn an_update_over_the_host_limit_is_429_with_retry_after_through_envoy() {
    let stack = Stack::start_with("tokens_retry_after", |cfg| {
        cfg["rate_limits"] = serde_json::json!({"good_per_host": {"limit": 1, "window_s": 90}});
    });
    let update = |ip: &str| {
        send(
            &stack,
            "POST",
            &format!("{P}/update"),
            TOKEN,
            &serde_json::json!({"hostname": HOME, "ipv4": ip}).to_string(),
        )
    };
    assert_eq!(update("192.0.2.71").status, 200);
    let r = update("192.0.2.72");
    assert_eq!(r.status, 429, "{r:#?}");
    assert_eq!(r.header("retry-after"), Some("90"), "{r:#?}");
    let r = stack.get(
        &format!("/api/update?zone={HOME}&token={TOKEN}&ipv4=192.0.2.73"),
        &[],
    );
    assert_eq!(r.status, 429, "{r:#?}");
    assert_eq!(r.header("retry-after"), Some("90"), "{r:#?}");
    // DynDNS2 keeps its word.
    assert_eq!(
        stack
            .update_as_demo(&format!("hostname={HOME}&myip=192.0.2.74"))
            .body
            .trim(),
        "abuse"
    );
}

#[test]
fn a_limited_token_issued_with_the_admin_into_etcd_is_enforced_by_the_gateway() {
    const TTL_S: u64 = 2;
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("etcd-e2e")
        .join("tokens");
    let _ = std::fs::remove_dir_all(&dir);
    let wasm = wasm_file().unwrap_or_else(|e| panic!("{e}"));
    let g = Gateways::start(&dir, &GatewayPorts::free(1), TTL_S, true, None, &wasm)
        .unwrap_or_else(|e| panic!("{e}"));
    let issue = |args: &[&str]| -> String {
        let mut all = vec!["token", "issue", "demo", "--scope", "update"];
        all.extend_from_slice(args);
        let out = g.admin(&all, "").unwrap_or_else(|e| panic!("{e}"));
        out.lines().last().unwrap().trim().to_string()
    };
    // From loopback (where the test runs), AAAA at HOME only; and one from elsewhere only.
    let inside = issue(&[
        "--id",
        "router",
        "--subnet",
        "127.0.0.0/8",
        "--subnet",
        "::1/128",
        "--max-age",
        "30d",
        "--policy",
        &format!("{HOME}=AAAA"),
    ]);
    let elsewhere = issue(&["--id", "faraway", "--subnet", "198.51.100.0/24"]);
    // A bad rule never reaches etcd: the admin names the flag.
    let e = g
        .admin(
            &["token", "issue", "demo", "--policy", &format!("{HOME}=MX")],
            "",
        )
        .unwrap_err();
    assert!(e.contains("--policy"), "{e}");
    let list = g.admin(&["token", "list"], "").unwrap();
    assert!(
        list.contains("allowed_subnets=[\"127.0.0.0/8\",\"::1/128\"]")
            && list.contains("max_age_s=2592000"),
        "{list}"
    );
    std::thread::sleep(Duration::from_secs(TTL_S + 2));
    let update = |token: &str, myip: &str| {
        g.curl(
            0,
            &format!("/nic/update?hostname={HOME}&myip={myip}"),
            &["-H", &format!("Authorization: Bearer {token}")],
        )
    };
    assert_eq!(update(&inside, "2001:db8::81"), "good 2001:db8::81");
    assert_eq!(
        g.pdns
            .lookup(HOME, "AAAA")
            .unwrap_or_else(|e| panic!("{e}")),
        ["2001:db8::81"]
    );
    assert_eq!(update(&inside, "192.0.2.81"), "nohost");
    assert_eq!(update(&elsewhere, "192.0.2.82"), "badauth");
    assert!(g
        .pdns
        .lookup(HOME, "A")
        .unwrap_or_else(|e| panic!("{e}"))
        .is_empty());
    g.admin(&["token", "revoke", "router"], "").unwrap();
    std::thread::sleep(Duration::from_secs(TTL_S + 2));
    assert_eq!(update(&inside, "2001:db8::83"), "badauth");
}
