//! DynDNS2 through a real proxy (Envoy with the built filter, or the Pingora gateway) and a
//! real PowerDNS, checked with dig: the DynDNS2 corpus (`filter/core/tests/corpus/dyndns2.json`),
//! then what only a real proxy shows (headers set once, access logs, HTTP versions, listeners,
//! a backend that hangs).
#![allow(clippy::unwrap_used, clippy::panic)] // the corpus runner fails loudly outside #[test]

#[path = "../../filter/core/tests/corpus/mod.rs"]
mod corpus;
mod support;

use std::net::TcpListener;
use std::process::Command;
use std::thread;
use std::time::Duration;

use corpus::{Backend, Http, Runner, Seen};
use support::*;

/// A fresh stack for one corpus scenario; curl on 127.0.0.1 is the client.
struct OverProxy(Stack);

impl Runner for OverProxy {
    const NAME: &'static str = "envoy";

    fn client(&self) -> String {
        "127.0.0.1".to_owned()
    }

    fn send(&mut self, req: &Http) -> Seen {
        let mut args: Vec<String> = vec!["--globoff".into()];
        if req.body.is_empty() && req.method != "GET" {
            args.extend(["-X".into(), req.method.clone()]);
        }
        if !req.body.is_empty() {
            args.extend([
                "--data-binary".into(),
                String::from_utf8_lossy(&req.body).into(),
            ]);
        }
        if req.header("user-agent").is_none() {
            // An empty value makes curl send no User-Agent at all.
            args.extend(["-H".into(), "User-Agent:".into()]);
        }
        for (name, value) in &req.headers {
            args.extend(["-H".into(), format!("{name}: {value}")]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let reply = self.0.get(&req.path, &args);
        Seen::Reply {
            status: reply.status,
            headers: reply.headers,
            body: reply.body,
        }
    }

    fn advance_s(&mut self, _: u64) {
        panic!("a real proxy has no virtual clock: mark the scenario skipped for envoy");
    }

    fn backend(&mut self, backend: Backend) {
        match backend {
            Backend::Unreachable => self.0.pdns.stop(),
            Backend::Up => self.0.pdns.resume().unwrap(),
            other => panic!("a real PowerDNS cannot play {other:?}: mark the scenario skipped"),
        }
    }

    fn seed(&mut self, name: &str, rtype: &str, values: &[String]) {
        let records: Vec<serde_json::Value> = values
            .iter()
            .map(|v| serde_json::json!({"content": v, "disabled": false}))
            .collect();
        let patch = serde_json::json!({"rrsets": [{
            "name": format!("{name}."), "type": rtype, "ttl": 60,
            "changetype": "REPLACE", "records": records,
        }]});
        let url = self
            .0
            .pdns
            .api_url(&format!("/zones/{}.", dynedge_envoy::DEMO_ZONE));
        let (ok, out) = run_quiet(
            Command::new("curl")
                .args(["-sS", "-f", "-m", "5", "-X", "PATCH"])
                .args(["-H", &format!("X-API-Key: {PDNS_KEY}")])
                .args(["-H", "Content-Type: application/json"])
                .args(["--data-binary", &patch.to_string(), &url]),
        );
        assert!(ok, "seeding {name} {rtype}: {out}");
    }

    fn records(&mut self, name: &str, rtype: &str) -> Vec<String> {
        self.0.records(name, rtype)
    }

    fn calls(&self) -> Option<Vec<String>> {
        None
    }
}

#[test]
fn the_dyndns2_corpus_plays_over_a_real_proxy_and_powerdns() {
    corpus::play_all(2, |s| {
        let cfg = s.config("127.0.0.1");
        // A short directory: PowerDNS's control socket path must fit in 108 bytes.
        OverProxy(Stack::start_with(&format!("corpus{}", s.index), |v| {
            // The stack's PowerDNS API port, kept; the rest is the scenario's.
            let authority = v["backends"]["pdns"]["authority"].clone();
            *v = cfg;
            v["backends"]["pdns"]["authority"] = authority;
        }))
    });
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
    let mut stack = Stack::start("layer0");
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
    // The reply to a backend failure, too.
    stack.pdns.stop();
    let failed = stack.get(
        &format!("/nic/update?hostname={HOME}&myip=192.0.2.23"),
        &["-u", &demo],
    );
    assert_eq!(failed.body, "dnserr\n", "{failed:#?}");
    failed.assert_layer0_once();
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
fn the_listener_answers_on_ipv6_loopback_too() {
    let stack = Stack::start("ipv6_loopback");
    if stack.proxy != dynedge_envoy::Proxy::Envoy {
        // Only the Envoy bootstrap adds [::1]; the Pingora binary listens on one address.
        return;
    }
    let url = format!(
        "https://[::1]:{}/nic/update?hostname={HOME}&myip=192.0.2.19",
        stack.envoy.port
    );
    let reply = stack.get_url(&url, &["-u", &format!("{DEMO_USER}:{DEMO_PASSWORD}")]);
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "good 192.0.2.19\n"),
        "{reply:#?}"
    );
    assert_eq!(stack.records(HOME, "A"), ["192.0.2.19"]);
}
