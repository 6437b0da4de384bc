//! DynDNS2 through real Envoy + the built filter + real PowerDNS, checked with dig.

mod support;

use std::net::TcpListener;
use std::thread;
use std::time::Duration;

use support::*;

fn lines(body: &str) -> Vec<&str> {
    body.lines().collect()
}

#[test]
fn a_curl_update_over_https_changes_the_a_record() {
    let stack = Stack::start("a_record");
    let reply = stack.update_as_demo(&format!("hostname={HOME}&myip=192.0.2.10"));
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "good 192.0.2.10\n"),
        "{reply:#?}"
    );
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(stack.records(HOME, "A"), ["192.0.2.10"]);
}

#[test]
fn the_same_address_again_gives_nochg_and_dns_keeps_it() {
    let stack = Stack::start("nochg");
    let first = stack.update_as_demo(&format!("hostname={HOME}&myip=192.0.2.11"));
    assert_eq!(first.body, "good 192.0.2.11\n", "{first:#?}");
    let again = stack.update_as_demo(&format!("hostname={HOME}&myip=192.0.2.11"));
    assert_eq!(
        (again.status, again.body.as_str()),
        (200, "nochg 192.0.2.11\n"),
        "{again:#?}"
    );
    assert_eq!(stack.records(HOME, "A"), ["192.0.2.11"]);
}

#[test]
fn myip6_sets_the_aaaa_record() {
    let stack = Stack::start("aaaa");
    let reply = stack.update_as_demo(&format!("hostname={HOME}&myip6=2001:db8::10"));
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "good 2001:db8::10\n"),
        "{reply:#?}"
    );
    assert_eq!(stack.records(HOME, "AAAA"), ["2001:db8::10"]);
    assert!(stack.records(HOME, "A").is_empty());
}

#[test]
fn a_dual_stack_update_sets_both_a_and_aaaa() {
    let stack = Stack::start("dual_stack");
    let reply = stack.update_as_demo(&format!(
        "hostname={HOME}&myip=192.0.2.12&myip6=2001:db8::12"
    ));
    assert_eq!(reply.status, 200, "{reply:#?}");
    assert_eq!(reply.body, "good 192.0.2.12 2001:db8::12\n");
    assert_eq!(stack.records(HOME, "A"), ["192.0.2.12"]);
    assert_eq!(stack.records(HOME, "AAAA"), ["2001:db8::12"]);
}

#[test]
fn several_hosts_get_one_reply_line_each_in_request_order() {
    let stack = Stack::start("multi_host");
    let reply = stack.update_as_demo(&format!(
        "hostname={HOME},{NEIGHBOUR},{OFFICE}&myip=192.0.2.13"
    ));
    assert_eq!(reply.status, 200, "{reply:#?}");
    assert_eq!(
        lines(&reply.body),
        ["good 192.0.2.13", "nohost", "good 192.0.2.13"]
    );
    assert_eq!(stack.records(HOME, "A"), ["192.0.2.13"]);
    assert_eq!(stack.records(OFFICE, "A"), ["192.0.2.13"]);
    assert!(stack.records(NEIGHBOUR, "A").is_empty());
}

#[test]
fn a_wrong_password_gives_badauth_and_changes_nothing() {
    let stack = Stack::start("badauth");
    let reply = stack.get(
        &format!("/nic/update?hostname={HOME}&myip=192.0.2.14"),
        &["-u", "demo:not-the-password"],
    );
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "badauth\n"),
        "{reply:#?}"
    );
    assert!(stack.records(HOME, "A").is_empty());
}

#[test]
fn the_neighbours_host_gives_nohost_and_changes_nothing() {
    let stack = Stack::start("nohost");
    let reply = stack.update_as_demo(&format!("hostname={NEIGHBOUR}&myip=192.0.2.15"));
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "nohost\n"),
        "{reply:#?}"
    );
    assert!(stack.records(NEIGHBOUR, "A").is_empty());
}

#[test]
fn a_malformed_address_is_a_400_naming_the_parameter() {
    let stack = Stack::start("bad_ip");
    for (query, param) in [
        ("myip=999.1.1.1", "myip"),
        ("myip=1.2.3", "myip"),
        ("myip6=192.0.2.1", "myip6"),
    ] {
        let reply = stack.update_as_demo(&format!("hostname={HOME}&{query}"));
        assert_eq!(reply.status, 400, "{query}: {reply:#?}");
        assert!(reply.body.contains(param), "{query}: {reply:#?}");
    }
    assert!(stack.records(HOME, "A").is_empty());
    assert!(stack.records(HOME, "AAAA").is_empty());
}

#[test]
fn a_request_without_credentials_gets_401_with_a_basic_challenge() {
    let stack = Stack::start("no_credentials");
    let reply = stack.get(&format!("/nic/update?hostname={HOME}&myip=192.0.2.16"), &[]);
    assert_eq!(reply.status, 401, "{reply:#?}");
    assert_eq!(reply.all("www-authenticate"), ["Basic realm=\"dynedge\""]);
    assert_eq!(reply.body, "badauth\n");
    assert!(stack.records(HOME, "A").is_empty());
}

#[test]
fn the_bearer_token_updates_like_a_password() {
    let stack = Stack::start("bearer");
    let reply = stack.get(
        &format!("/nic/update?hostname={HOME}&myip=192.0.2.17"),
        &["-H", &format!("Authorization: Bearer {TOKEN}")],
    );
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "good 192.0.2.17\n"),
        "{reply:#?}"
    );
    assert_eq!(stack.records(HOME, "A"), ["192.0.2.17"]);
}

#[test]
fn with_powerdns_stopped_the_reply_is_911_or_dnserr_and_dns_keeps_the_old_address() {
    let mut stack = Stack::start("pdns_down");
    let first = stack.update_as_demo(&format!("hostname={HOME}&myip=192.0.2.20"));
    assert_eq!(first.body, "good 192.0.2.20\n", "{first:#?}");

    stack.pdns.stop();
    let reply = stack.update_as_demo(&format!("hostname={HOME}&myip=192.0.2.21"));
    assert_eq!(reply.status, 200, "{reply:#?}");
    assert!(
        reply.body == "911\n" || reply.body == "dnserr\n",
        "a backend failure must never be good: {reply:#?}"
    );

    reply.assert_layer0_once();

    stack.pdns.resume().unwrap();
    assert_eq!(stack.records(HOME, "A"), ["192.0.2.20"]);
}

#[test]
fn a_powerdns_api_that_never_answers_gives_911_after_the_callout_timeout() {
    let mut stack = Stack::start("pdns_hangs");
    let first = stack.update_as_demo(&format!("hostname={HOME}&myip=192.0.2.40"));
    assert_eq!(first.body, "good 192.0.2.40\n", "{first:#?}");

    // A fake API in PowerDNS's place: it accepts connections and never says a word.
    stack.pdns.stop();
    let silent = TcpListener::bind(("127.0.0.1", stack.pdns.api_port)).unwrap();
    let held = thread::spawn(move || {
        let mut open = Vec::new();
        for conn in silent.incoming().take(1) {
            open.push(conn);
            thread::sleep(Duration::from_secs(4));
        }
    });
    let reply = stack.update_as_demo(&format!("hostname={HOME}&myip=192.0.2.41"));
    assert_eq!(reply.status, 200, "{reply:#?}");
    assert!(
        reply.body == "911\n" || reply.body == "dnserr\n",
        "a backend timeout must never be good: {reply:#?}"
    );
    held.join().unwrap();

    stack.pdns.resume().unwrap();
    assert_eq!(stack.records(HOME, "A"), ["192.0.2.40"]);
}

#[test]
fn every_response_carries_each_layer0_header_exactly_once() {
    let stack = Stack::start("layer0");
    let demo = format!("{DEMO_USER}:{DEMO_PASSWORD}");
    let update = format!("/nic/update?hostname={HOME}&myip=192.0.2.22");
    let cases: Vec<(&str, Reply)> = vec![
        ("good", stack.get(&update, &["-u", &demo])),
        ("nochg", stack.get(&update, &["-u", &demo])),
        ("badauth", stack.get(&update, &["-u", "demo:wrong"])),
        ("401", stack.get(&update, &[])),
        (
            "400",
            stack.get(
                &format!("/nic/update?hostname={HOME}&myip=1.2.3"),
                &["-u", &demo],
            ),
        ),
        (
            "json",
            stack.get(&update, &["-u", &demo, "-H", "Accept: application/json"]),
        ),
        ("404 route", stack.get("/not-a-ddns-path", &[])),
        (
            "404 post",
            stack.get("/not-a-ddns-path", &["--data", "a=b"]),
        ),
        ("http/1.1", stack.get(&update, &["-u", &demo, "--http1.1"])),
    ];
    for (what, reply) in &cases {
        eprintln!("{what}: {} {:?}", reply.status, reply.body);
        reply.assert_layer0_once();
    }
    assert_eq!(cases[6].1.status, 404);
    assert_eq!(cases[7].1.status, 404);
}

#[test]
fn the_access_log_holds_no_password_token_or_query_string() {
    let stack = Stack::start("access_log");
    let query_creds = stack.get(
        &format!("/nic/update?hostname={HOME}&myip=192.0.2.23&username={DEMO_USER}&password={DEMO_PASSWORD}"),
        &[],
    );
    assert_eq!(query_creds.body, "good 192.0.2.23\n", "{query_creds:#?}");
    let basic = stack.update_as_demo(&format!("hostname={HOME}&myip=192.0.2.24"));
    assert_eq!(basic.body, "good 192.0.2.24\n", "{basic:#?}");
    let bearer = stack.get(
        &format!("/nic/update?hostname={HOME}&myip=192.0.2.25"),
        &["-H", &format!("Authorization: Bearer {TOKEN}")],
    );
    assert_eq!(bearer.body, "good 192.0.2.25\n", "{bearer:#?}");

    let log = stack.access_log("/nic/update", 3);
    assert_eq!(
        log.matches("\"GET /nic/update HTTP/2\" 200").count(),
        3,
        "{log}"
    );
    // base64("demo:demo-password"), as the Basic header carries it
    let basic_b64 = "ZGVtbzpkZW1vLXBhc3N3b3Jk";
    for secret in [DEMO_PASSWORD, TOKEN, basic_b64, "?", "password=", "myip="] {
        assert!(
            !log.contains(secret),
            "access log contains {secret:?}:\n{log}"
        );
    }
    let envoy_log = stack.envoy.daemon_log();
    for secret in [DEMO_PASSWORD, TOKEN, basic_b64] {
        assert!(
            !envoy_log.contains(secret),
            "Envoy's log contains {secret:?}"
        );
    }
}

#[test]
fn without_myip_the_client_address_is_used_and_x_forwarded_for_is_ignored() {
    let stack = Stack::start("client_address");
    let reply = stack.get(
        &format!("/nic/update?hostname={HOME}"),
        &[
            "-u",
            &format!("{DEMO_USER}:{DEMO_PASSWORD}"),
            "-H",
            "X-Forwarded-For: 192.0.2.99",
            "-H",
            "X-Real-IP: 192.0.2.98",
        ],
    );
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "good 127.0.0.1\n"),
        "{reply:#?}"
    );
    assert_eq!(stack.records(HOME, "A"), ["127.0.0.1"]);
}

#[test]
fn a_post_form_update_works_like_a_get_over_http2_and_http1() {
    let stack = Stack::start("post_form");
    let demo = format!("{DEMO_USER}:{DEMO_PASSWORD}");
    for (ip, version) in [("192.0.2.30", "--http2"), ("192.0.2.31", "--http1.1")] {
        let form = format!("hostname={HOME}&myip={ip}");
        let reply = stack.get("/nic/update", &["-u", &demo, "--data", &form, version]);
        assert_eq!(reply.status, 200, "{version}: {reply:#?}");
        assert_eq!(reply.body, format!("good {ip}\n"), "{version}");
        assert_eq!(stack.records(HOME, "A"), [ip]);
    }
}

#[test]
fn an_expires_in_ending_in_a_multibyte_character_is_a_400_and_the_gateway_goes_on() {
    let stack = Stack::start("expires_in_multibyte");
    let demo = format!("{DEMO_USER}:{DEMO_PASSWORD}");
    let json = ["-H", "Content-Type: application/json", "-u", &demo];
    let bad = stack.get(
        "/api/tokens",
        &[&json[..], &["--data", r#"{"expiresIn":"1\u00e9"}"#]].concat(),
    );
    assert_eq!(bad.status, 400, "{bad:#?}");
    assert!(bad.body.contains("\"expiresIn\""), "{bad:#?}");
    // The same worker (concurrency 1) serves the next requests.
    let next = stack.update_as_demo(&format!("hostname={HOME}&myip=192.0.2.81"));
    assert_eq!(
        (next.status, next.body.as_str()),
        (200, "good 192.0.2.81\n"),
        "{next:#?}"
    );
    let created = stack.get(
        "/api/tokens",
        &[&json[..], &["--data", r#"{"expiresIn":"1d"}"#]].concat(),
    );
    assert_eq!(created.status, 201, "{created:#?}");
}

#[test]
fn a_path_token_stays_out_of_the_access_log_in_any_segment_layout() {
    let stack = Stack::start("path_token_log");
    let paths = [
        format!("/update-by-path//{TOKEN}/{HOME}/192.0.2.82"),
        format!("/update-by-path/{TOKEN};v=1/{HOME}/192.0.2.83"),
        format!("/update-by-path/{HOME}/{TOKEN}"),
        format!("/delete-by-path///{TOKEN}/{HOME}"),
        format!("/update-by-path/{TOKEN}/{HOME}/192.0.2.84"),
    ];
    let mut answered = Vec::new();
    for p in &paths {
        answered.push(stack.get(p, &[]).status);
    }
    assert_eq!(answered.last(), Some(&200), "{answered:?}");
    assert_eq!(stack.records(HOME, "A"), ["192.0.2.84"]);
    let log = stack.access_log("-by-path", paths.len());
    assert!(
        log.contains(&format!("/update-by-path//***/{HOME}/192.0.2.82")),
        "{log}"
    );
    assert!(
        log.contains(&format!("/update-by-path/***/{HOME}/192.0.2.84")),
        "{log}"
    );
    assert_eq!(log.matches("-by-path/").count(), paths.len(), "{log}");
    assert!(
        !log.contains(TOKEN),
        "access log contains the token:\n{log}"
    );
}

#[test]
fn a_trailing_dot_on_the_hostname_updates_the_same_host() {
    let stack = Stack::start("trailing_dot");
    let reply = stack.update_as_demo(&format!("hostname={HOME}.&myip=192.0.2.14"));
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "good 192.0.2.14\n"),
        "{reply:#?}"
    );
    assert_eq!(stack.records(HOME, "A"), ["192.0.2.14"]);
    let two = stack.update_as_demo(&format!("hostname={HOME}..&myip=192.0.2.15"));
    assert_eq!(two.body, "notfqdn\n", "{two:#?}");
    assert_eq!(stack.records(HOME, "A"), ["192.0.2.14"]);
}

#[test]
fn x_real_ip_through_a_trusted_proxy_is_the_client_address() {
    // curl on 127.0.0.1 plays the proxy in front of the gateway.
    let stack = Stack::start_with("x_real_ip", |cfg| {
        cfg["trusted_proxies"] = serde_json::json!(["127.0.0.1/32"]);
    });
    let reply = stack.get(
        &format!("/nic/update?hostname={HOME}"),
        &[
            "-u",
            &format!("{DEMO_USER}:{DEMO_PASSWORD}"),
            "-H",
            "X-Real-IP: 192.0.2.98",
            "-H",
            "X-Forwarded-For: 192.0.2.99",
        ],
    );
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "good 192.0.2.98\n"),
        "{reply:#?}"
    );
    assert_eq!(stack.records(HOME, "A"), ["192.0.2.98"]);
}

#[test]
fn v4_then_v6_in_two_requests_is_one_update_under_a_per_host_limit_of_one() {
    let stack = Stack::start_with("dual_stack_two_requests", |cfg| {
        cfg["rate_limits"] = serde_json::json!({"good_per_host": {"limit": 1, "window_s": 600}});
    });
    let v4 = stack.update_as_demo(&format!("hostname={HOME}&myip=192.0.2.16"));
    assert_eq!(v4.body, "good 192.0.2.16\n", "{v4:#?}");
    let v6 = stack.update_as_demo(&format!("hostname={HOME}&myip6=2001:db8::16"));
    assert_eq!(v6.body, "good 2001:db8::16\n", "{v6:#?}");
    assert_eq!(stack.records(HOME, "A"), ["192.0.2.16"]);
    assert_eq!(stack.records(HOME, "AAAA"), ["2001:db8::16"]);
    let third = stack.update_as_demo(&format!("hostname={HOME}&myip=192.0.2.17"));
    assert_eq!(third.body, "abuse\n", "{third:#?}");
    assert_eq!(stack.records(HOME, "A"), ["192.0.2.16"]);
}
