//! Every dialect besides DynDNS2 through real Envoy + the built filter + real PowerDNS, checked
//! with dig; the official ApertoDNS client (node) and an ACME DNS-01 hook against the gateway.

mod support;

use std::path::PathBuf;
use std::process::Command;

use dynedge_envoy::workspace_root;
use support::APERTO as P;
use support::*;

fn stack(name: &str) -> Stack {
    Stack::start(name)
}

#[test]
fn apertodns_update_status_domains_and_bulk_work_through_envoy() {
    let stack = stack("aperto_update");
    let info = stack.get(&format!("{P}/info"), &[]);
    assert_eq!(info.status, 200, "{info:#?}");
    info.assert_layer0_once();
    assert_eq!(info.header("content-type"), Some("application/json"));
    assert_eq!(json(&info)["data"]["protocol_version"], "1.4.0");

    let r = send(
        &stack,
        "POST",
        &format!("{P}/update"),
        TOKEN,
        &format!(r#"{{"hostname":"{HOME}","ipv4":"203.0.113.60","ipv6":"2001:db8::60"}}"#),
    );
    assert_eq!(r.status, 200, "{r:#?}");
    r.assert_layer0_once();
    assert!(r.header("x-ratelimit-limit").is_some(), "{r:#?}");
    let v = json(&r);
    assert_eq!(v["data"]["changed"], true);
    assert_eq!(stack.records(HOME, "A"), ["203.0.113.60"]);
    assert_eq!(stack.records(HOME, "AAAA"), ["2001:db8::60"]);

    // ipv4 "auto" from the loopback peer; ipv6 null deletes AAAA.
    let r = send(
        &stack,
        "POST",
        &format!("{P}/update"),
        TOKEN,
        &format!(r#"{{"hostname":"{HOME}","ipv4":"auto","ipv6":null}}"#),
    );
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(json(&r)["data"]["previous_ipv6"], "2001:db8::60");
    assert_eq!(stack.records(HOME, "A"), ["127.0.0.1"]);
    assert!(stack.records(HOME, "AAAA").is_empty());

    let s = send(&stack, "GET", &format!("{P}/status/{HOME}"), TOKEN, "");
    assert_eq!(json(&s)["data"]["ipv4"], "127.0.0.1", "{s:#?}");
    assert_eq!(json(&s)["data"]["update_count_total"], 2);
    let d = send(&stack, "GET", &format!("{P}/domains"), TOKEN, "");
    let list = json(&d);
    let hosts: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["hostname"].as_str())
        .collect();
    assert!(hosts.contains(&HOME) && hosts.contains(&OFFICE), "{d:#?}");

    let b = send(
        &stack,
        "POST",
        &format!("{P}/bulk-update"),
        TOKEN,
        &format!(
            r#"{{"updates":[{{"hostname":"{HOME}","ipv4":"203.0.113.61"}},{{"hostname":"{OFFICE}","ipv4":"203.0.113.62"}},{{"hostname":"{NEIGHBOUR}","ipv4":"203.0.113.63"}}]}}"#
        ),
    );
    assert_eq!(b.status, 207, "{b:#?}");
    assert_eq!(json(&b)["data"]["summary"]["successful"], 2);
    assert_eq!(stack.records(HOME, "A"), ["203.0.113.61"]);
    assert_eq!(stack.records(OFFICE, "A"), ["203.0.113.62"]);
    assert!(stack.records(NEIGHBOUR, "A").is_empty());
}

#[test]
fn apertodns_errors_are_json_with_their_status_through_envoy() {
    let stack = stack("aperto_errors");
    let cases: Vec<(Reply, u16, &str)> = vec![
        (stack.get(&format!("{P}/domains"), &[]), 401, "unauthorized"),
        (
            send(
                &stack,
                "GET",
                &format!("{P}/domains"),
                "dynedge_live_nopenopenopenopenopenopenope12",
                "",
            ),
            401,
            "invalid_token",
        ),
        (
            send(&stack, "GET", &format!("{P}/nothing"), TOKEN, ""),
            404,
            "not_found",
        ),
        (
            send(&stack, "GET", &format!("{P}/update"), TOKEN, ""),
            405,
            "method_not_allowed",
        ),
        (
            send(&stack, "POST", &format!("{P}/update"), TOKEN, "{not json"),
            400,
            "invalid_json",
        ),
        (
            send(
                &stack,
                "POST",
                &format!("{P}/update"),
                TOKEN,
                &format!(r#"{{"hostname":"{HOME}","ipv4":"10.1.1.1"}}"#),
            ),
            400,
            "invalid_ip",
        ),
        (
            send(
                &stack,
                "POST",
                &format!("{P}/update"),
                TOKEN,
                &format!(r#"{{"hostname":"{NEIGHBOUR}","ipv4":"203.0.113.1"}}"#),
            ),
            403,
            "hostname_not_owned",
        ),
        (
            send(
                &stack,
                "POST",
                &format!("{P}/txt"),
                TOKEN,
                &format!(r#"{{"hostname":"{HOME}","value":"x"}}"#),
            ),
            400,
            "txt_invalid_name",
        ),
    ];
    for (r, status, code) in cases {
        assert_eq!(r.status, status, "{r:#?}");
        r.assert_layer0_once();
        assert_eq!(json(&r)["success"], false);
        assert_eq!(json(&r)["error"]["code"], code, "{r:#?}");
    }
    assert!(stack.records(HOME, "A").is_empty() && stack.records(NEIGHBOUR, "A").is_empty());
}

#[test]
fn acme_hook_sets_two_txt_values_that_dig_sees_and_clears_them() {
    let stack = stack("acme_hook");
    let hook = workspace_root().join("examples/acme/dynedge-txt-hook.sh");
    let name = format!("_acme-challenge.{HOME}.");
    let run = |action: &str, value: &str| {
        let (ok, out) = run_quiet(
            Command::new(&hook)
                .args([action, &name, value])
                .env(
                    "DYNEDGE_URL",
                    format!("https://127.0.0.1:{}", stack.envoy.port),
                )
                .env("DYNEDGE_TOKEN", TOKEN)
                .env("DYNEDGE_CACERT", stack.cacert()),
        );
        assert!(ok, "hook {action} {value}: {out}");
    };
    // A wildcard and its apex: two values at one name, at the same time.
    run("present", "apex-challenge-value");
    run("present", "wildcard-challenge-value");
    let mut seen = stack.records(&name[..name.len() - 1], "TXT");
    seen.sort();
    assert_eq!(
        seen,
        ["\"apex-challenge-value\"", "\"wildcard-challenge-value\""]
    );
    run("cleanup", "apex-challenge-value");
    assert_eq!(
        stack.records(&name[..name.len() - 1], "TXT"),
        ["\"wildcard-challenge-value\""]
    );
    run("cleanup", "wildcard-challenge-value");
    assert!(stack.records(&name[..name.len() - 1], "TXT").is_empty());
    let g = send(
        &stack,
        "GET",
        &format!("{P}/txt/{}", &name[..name.len() - 1]),
        TOKEN,
        "",
    );
    assert_eq!(json(&g)["data"]["record_count"], 0, "{g:#?}");
}

#[test]
fn dynv6_path_query_and_delete_update_dns_through_envoy() {
    let stack = stack("dynv6_pathquery");
    let r = stack.get(
        &format!("/api/update?zone={HOME}&token={TOKEN}&ipv4=203.0.113.70&ipv6=2001:db8::70"),
        &[],
    );
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "addresses updated\n"),
        "{r:#?}"
    );
    r.assert_layer0_once();
    assert_eq!(stack.records(HOME, "A"), ["203.0.113.70"]);
    assert_eq!(stack.records(HOME, "AAAA"), ["2001:db8::70"]);
    let r = stack.get(
        &format!("/api/update?hostname={HOME}&token={TOKEN}&ipv4=203.0.113.70"),
        &[],
    );
    assert_eq!(r.body, "addresses unchanged\n");
    let r = stack.get(&format!("/api/update?zone={HOME}&token=wrong"), &[]);
    assert_eq!(
        (r.status, r.body.as_str()),
        (401, "invalid authentication token\n")
    );

    let r = stack.get(
        &format!("/update-by-path/{TOKEN}/{OFFICE}/203.0.113.71/2001:db8::71"),
        &[],
    );
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(r.body, format!("UPDATED: {OFFICE} A None -> 203.0.113.71\nUPDATED: {OFFICE} AAAA None -> 2001:db8::71\n"));
    assert_eq!(stack.records(OFFICE, "A"), ["203.0.113.71"]);
    let r = stack.get(&format!("/update-by-query?secret={TOKEN}&zone_name=dyn.example.test&record_name=office&ipv4=203.0.113.72&ttl=120"), &[]);
    assert_eq!(
        r.body,
        format!("UPDATED: {OFFICE} A 203.0.113.71 -> 203.0.113.72\n"),
        "{r:#?}"
    );
    assert_eq!(stack.records(OFFICE, "A"), ["203.0.113.72"]);
    let r = stack.get(
        &format!("/update-by-path/{TOKEN}/{OFFICE}/203.0.113.1/203.0.113.2"),
        &[],
    );
    assert_eq!(r.status, 400);
    assert!(r.body.starts_with("PARAMETER_ERROR: "), "{r:#?}");
    let r = stack.get(&format!("/delete-by-path/{TOKEN}/{OFFICE}"), &[]);
    assert_eq!(
        r.body,
        format!("UPDATED: Deleted \"{OFFICE}\".\n"),
        "{r:#?}"
    );
    assert!(stack.records(OFFICE, "A").is_empty() && stack.records(OFFICE, "AAAA").is_empty());
}

#[test]
fn an_operator_endpoint_with_aliases_updates_dns_through_envoy() {
    let stack = Stack::start_with("custom_endpoint", |cfg| {
        cfg["endpoints"] = serde_json::json!([
            {"path": "/ddns", "params": {"hostname": ["host"], "ipv4": ["ip4"], "ipv6": [], "password": ["key"]}}
        ]);
    });
    let r = stack.get(
        &format!("/ddns?host={HOME}&ip4=203.0.113.80&ipv6=2001:db8::80&key={TOKEN}"),
        &[],
    );
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "good 203.0.113.80\n"),
        "{r:#?}"
    );
    assert_eq!(stack.records(HOME, "A"), ["203.0.113.80"]);
    assert!(
        stack.records(HOME, "AAAA").is_empty(),
        "ipv6 disabled on this endpoint"
    );
    let r = stack.get(
        &format!("/ddns?host={HOME}&ip4=203.0.113.80&key={TOKEN}"),
        &["-H", "Accept: application/json"],
    );
    assert_eq!(
        json(&r),
        serde_json::json!({"status": "nochg", "ipv4": "203.0.113.80", "ipv6": null})
    );
    let r = stack.get(&format!("/ddns?host={HOME}&key=wrong"), &[]);
    assert_eq!((r.status, r.body.as_str()), (401, "badauth\n"));
}

#[test]
fn tokens_created_at_runtime_work_in_every_dialect_until_revoked() {
    let stack = stack("runtime_tokens");
    let demo = format!("{DEMO_USER}:{DEMO_PASSWORD}");
    let c = stack.get(
        "/api/tokens",
        &[
            "-u",
            &demo,
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            r#"{"name":"router","scopes":["dns:update","txt:write"]}"#,
        ],
    );
    assert_eq!(c.status, 201, "{c:#?}");
    let v = json(&c);
    let token = v["data"]["token"].as_str().unwrap().to_string();
    let id = v["data"]["id"].as_str().unwrap().to_string();
    let r = stack.get(
        &format!("/api/update?zone={HOME}&token={token}&ipv4=203.0.113.90"),
        &[],
    );
    assert_eq!(r.body, "addresses updated\n", "{r:#?}");
    let r = stack.get(
        &format!("/nic/update?hostname={HOME}&myip=203.0.113.91"),
        &["-u", &format!("x:{token}")],
    );
    assert_eq!(r.body, "good 203.0.113.91\n");
    let l = stack.get("/api/tokens", &["-u", &demo]);
    assert!(!l.body.contains(&token), "the token is shown once");
    let d = stack.get(&format!("/api/tokens/{id}"), &["-u", &demo, "-X", "DELETE"]);
    assert_eq!(d.status, 200, "{d:#?}");
    let r = send(
        &stack,
        "POST",
        &format!("{P}/update"),
        &token,
        &format!(r#"{{"hostname":"{HOME}","ipv4":"203.0.113.92"}}"#),
    );
    assert_eq!(
        (r.status, json(&r)["error"]["code"].as_str()),
        (401, Some("token_revoked"))
    );
    let r = stack.get(
        &format!("/api/update?zone={HOME}&token={token}&ipv4=203.0.113.93"),
        &[],
    );
    assert_eq!(r.status, 401);
    assert_eq!(stack.records(HOME, "A"), ["203.0.113.91"]);
}

fn client_dir() -> PathBuf {
    match std::env::var_os("APERTODNS_CLIENT") {
        Some(p) => PathBuf::from(p),
        None => workspace_root().join(".run/apertodns-client/dist/index.js"),
    }
}

/// The official client is not on any registry this project may use (npm answers 404 for
/// `apertodns-client`), and we do not ship a script that builds third-party code. Build it
/// yourself from its published source, point `APERTODNS_CLIENT` at its `dist/index.js`, and run
/// `cargo test -p dynedge-envoy --test dialects_over_envoy -- --ignored` (docs/dialects.md).
#[test]
#[ignore = "needs the official ApertoDNS client built locally (not on the npm registry)"]
fn the_official_apertodns_client_works_unchanged_against_the_gateway() {
    let client = client_dir();
    assert!(
        client.is_file(),
        "{} missing: set APERTODNS_CLIENT to the built client's dist/index.js",
        client.display()
    );
    let stack = stack("official_client");
    let (ok, out) = run_quiet(
        Command::new("node")
            .arg(workspace_root().join("examples/apertodns-client/check.js"))
            .env("APERTODNS_CLIENT", &client)
            .env(
                "BASE_URL",
                format!("https://127.0.0.1:{}", stack.envoy.port),
            )
            .env("TOKEN", TOKEN)
            .env("HOSTNAME_UNDER_TEST", HOME)
            .env("FOREIGN_HOSTNAME", NEIGHBOUR)
            .env("NODE_EXTRA_CA_CERTS", stack.cacert()),
    );
    println!("{out}");
    assert!(ok && out.contains("all ok"), "{out}");
    assert_eq!(stack.records(HOME, "A"), ["203.0.113.53"]);
    assert_eq!(stack.records(HOME, "AAAA"), ["2001:db8::1"]);
    assert_eq!(
        stack.records(&format!("_acme-challenge.{HOME}"), "TXT"),
        ["\"token-wildcard\""]
    );
}

/// The webhook receiver's log lines (one JSON object per delivery) once there are at least
/// `count`, or what is there after 15 s (the caller's assertion then shows it).
fn deliveries(log: &std::path::Path, count: usize) -> Vec<serde_json::Value> {
    let read = || -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    dynedge_envoy::poll_until(dynedge_envoy::within(15), "deliveries", || {
        Some(read()).filter(|lines| lines.len() >= count)
    })
    .unwrap_or_else(|_| read())
}

#[test]
fn an_ip_change_is_delivered_as_a_signed_webhook_and_retried_after_a_500() {
    let port = free_port();
    let stack = Stack::start_full(
        "webhooks",
        |cfg| {
            cfg["webhooks"] = serde_json::json!({
                "cluster": "webhooks", "allow_ranges": ["127.0.0.0/8"], "retry_base_ms": 300
            });
        },
        Some(port),
    );
    let secret = "a-webhook-secret-of-at-least-32-characters";
    let log = stack.dir.join("deliveries.jsonl");
    let _receiver = stack.webhook_receiver(port, secret, &["--fail-first", "1"], &log);

    let demo = format!("{DEMO_USER}:{DEMO_PASSWORD}");
    let body = format!(
        r#"{{"url":"https://127.0.0.1:{port}/hook","events":["ip_changed"],"secret":"{secret}"}}"#
    );
    let c = stack.get(
        "/api/webhooks",
        &[
            "-u",
            &demo,
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body,
        ],
    );
    assert_eq!(c.status, 201, "{c:#?}");
    assert_eq!(
        json(&stack.get(&format!("{P}/info"), &[]))["data"]["capabilities"]["webhooks"],
        true
    );

    let r = send(
        &stack,
        "POST",
        &format!("{P}/update"),
        TOKEN,
        &format!(r#"{{"hostname":"{HOME}","ipv4":"203.0.113.99"}}"#),
    );
    assert_eq!(r.status, 200, "{r:#?}");
    // Delivered after the reply: first answered 500, then retried and accepted.
    let lines = deliveries(&log, 2);
    assert_eq!(lines.len(), 2, "{lines:#?}\n{}", stack.envoy.daemon_log());
    assert_eq!(
        (lines[0]["status"].as_u64(), lines[1]["status"].as_u64()),
        (Some(500), Some(200))
    );
    assert!(
        lines.iter().all(|l| l["valid"] == true),
        "signatures verify: {lines:#?}"
    );
    assert_eq!(
        lines[0]["delivery"], lines[1]["delivery"],
        "a retry is the same delivery"
    );
    assert_eq!(lines[1]["event"], "ip_changed");
    assert_eq!(lines[1]["path"], "/hook");
    let data = &lines[1]["body"]["data"];
    assert_eq!(
        (data["hostname"].as_str(), data["ipv4"].as_str()),
        (Some(HOME), Some("203.0.113.99"))
    );
    assert_eq!(data["previous_ipv4"], serde_json::Value::Null);
}

/// SSRF: the `webhooks` cluster here leads to a receiver on 127.0.0.1, as a name resolving to
/// loopback would. Names not on `allow_hosts` (`*.localhost` resolves to loopback by RFC 6761,
/// `localtest.me` by public DNS) are refused when subscribed; the listed name is delivered.
#[test]
fn webhook_urls_naming_unlisted_hosts_are_refused_and_never_called() {
    let port = free_port();
    let stack = Stack::start_full(
        "webhooks_ssrf",
        |cfg| {
            cfg["webhooks"] = serde_json::json!({
                "cluster": "webhooks", "allow_hosts": ["hooks.dynedge.test"]
            });
        },
        Some(port),
    );
    let secret = "a-webhook-secret-of-at-least-32-characters";
    let log = stack.dir.join("deliveries.jsonl");
    let _receiver = stack.webhook_receiver(port, secret, &[], &log);
    let demo = format!("{DEMO_USER}:{DEMO_PASSWORD}");
    let subscribe = |url: &str| {
        let body = format!(r#"{{"url":"{url}","events":["ip_changed"],"secret":"{secret}"}}"#);
        stack.get(
            "/api/webhooks",
            &[
                "-u",
                &demo,
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &body,
            ],
        )
    };
    for host in [
        "foo.localhost",
        "localtest.me",
        "127.0.0.1",
        "hooks.dynedge.test.evil.example",
    ] {
        let c = subscribe(&format!("https://{host}:{port}/{host}"));
        assert_eq!(c.status, 400, "{host}: {c:#?}");
        assert_eq!(
            json(&c)["error"]["details"]["fields"][0]["field"],
            "url",
            "{c:#?}"
        );
    }
    let c = subscribe(&format!("https://hooks.dynedge.test:{port}/listed"));
    assert_eq!(c.status, 201, "{c:#?}");

    let r = send(
        &stack,
        "POST",
        &format!("{P}/update"),
        TOKEN,
        &format!(r#"{{"hostname":"{HOME}","ipv4":"203.0.113.98"}}"#),
    );
    assert_eq!(r.status, 200, "{r:#?}");
    let lines = deliveries(&log, 1);
    // Any refused subscription would have been delivered in the same round: wait for stragglers.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let paths: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|l| l["path"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(!lines.is_empty(), "{}", stack.envoy.daemon_log());
    assert_eq!(paths, ["/listed"], "only the listed host is called");
}

#[test]
fn dynv6_ipv6prefix_rewrites_the_devices_below_the_zone_through_envoy() {
    let nas = format!("nas.{HOME}");
    let stack = Stack::start_with("dynv6_prefix", |cfg| {
        let users = cfg["users"].as_array_mut().unwrap();
        let demo = users.iter_mut().find(|u| u["name"] == DEMO_USER).unwrap();
        demo["hosts"]
            .as_array_mut()
            .unwrap()
            .push(format!("nas.{HOME}").into());
    });
    // The device's address, set through the path dialect.
    let r = stack.get(
        &format!("/update-by-path/{TOKEN}/{nas}/2001:db8:1:1:aaaa:bbbb:cccc:dddd"),
        &[],
    );
    assert_eq!(r.status, 200, "{r:#?}");
    let r = stack.get(&format!("/api/update?zone={HOME}&token={TOKEN}&ipv6=2001:db8:1:1::1&ipv6prefix=2001:db8:2:2::/64"), &[]);
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "addresses updated\n"),
        "{r:#?}"
    );
    assert_eq!(
        stack.records(&nas, "AAAA"),
        ["2001:db8:2:2:aaaa:bbbb:cccc:dddd"]
    );
    assert_eq!(
        stack.records(HOME, "AAAA"),
        ["2001:db8:1:1::1"],
        "the zone's own AAAA is ipv6's"
    );
}

#[test]
fn checkip_through_the_gateway_tells_ddclient_its_address() {
    let stack = stack("checkip");
    let r = stack.get("/nic/checkip", &[]);
    assert_eq!(r.status, 200, "{r:#?}");
    r.assert_layer0_once();
    assert_eq!(
        r.body,
        "<html><head><title>Current IP Check</title></head><body>Current IP Address: 127.0.0.1</body></html>\n"
    );
    let r = stack.get("/domains/my-ip", &[]);
    assert_eq!(json(&r), serde_json::json!({"ip": "127.0.0.1"}));
    let r = stack.get("/health", &[]);
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
}
