//! DynDNS2 through the whole exchange, against the fake PowerDNS (see `testing`). The request
//! and reply scenarios are the corpus in `filter/core/tests/corpus/dyndns2.json`, played natively,
//! in the test host and through Envoy; these check what only the core sees.

use crate::testing::{get, Driver, RequestExt};
use crate::Request;

const TOKEN: &str = "dynedge_test_demodemodemodemodemodemodemodemo";
const HOME: &str = "home.dyn.example.test";

fn body(r: &crate::Reply) -> &str {
    r.body_text()
}

fn update(query: &str) -> Request {
    get(&format!("/nic/update?{query}")).basic("demo", "demo-password")
}

#[test]
fn every_reply_carries_the_layer0_security_headers() {
    let mut d = Driver::demo();
    for req in [
        update("hostname=home.dyn.example.test&myip=192.0.2.7"),
        update("hostname=home.dyn.example.test&myip=1.2.3"),
        get("/nic/update"),
        get("/nic/checkip"),
    ] {
        let r = d.send(req).unwrap();
        for (name, value) in crate::reply::SECURITY_HEADERS {
            assert_eq!(r.header(name), Some(*value), "{name}");
        }
    }
}

#[test]
fn audit_lines_name_the_change_and_never_a_secret() {
    let mut d = Driver::demo();
    d.send(update("hostname=home.dyn.example.test&myip=192.0.2.7"));
    d.send(
        get("/nic/update?hostname=home.dyn.example.test&myip=192.0.2.8")
            .header("authorization", &format!("Bearer {TOKEN}")),
    );
    assert_eq!(d.log.len(), 2);
    let line: serde_json::Value = serde_json::from_str(&d.log[1]).unwrap();
    assert_eq!(line["host"], HOME);
    assert_eq!(line["old"][0], "192.0.2.7");
    assert_eq!(line["new"][0], "192.0.2.8");
    assert_eq!(line["result"], "good");
    assert_eq!(line["token_id"], "demo-all");
    for l in &d.log {
        assert!(
            !l.contains("demo-password")
                && !l.contains(TOKEN)
                && !l.contains("dynedge-demo-pdns-key")
        );
    }
}

#[test]
fn an_exchange_lost_while_awaiting_its_body_answers_911_in_its_dialect() {
    use crate::exchange::{Env, Exchange, Step};
    let d = Driver::demo();
    let env = Env {
        now_ms: d.now_ms,
        random: 1,
        kv: &d.kv,
    };
    for (path, want) in [
        // dyn.com's endpoint answers every code with 200 (old routers read only the body).
        ("/nic/update", (200, "911\n")),
        ("/v3/update", (500, "911\n")),
    ] {
        let mut req = get(path).basic("demo", "demo-password");
        req.method = "POST".into();
        let (mut ex, step) = Exchange::start(&d.cfg, req, false, &env);
        assert!(matches!(step, Step::NeedBody { .. }), "{path}: {step:?}");
        let reply = ex.abort(&d.cfg, &env).reply.unwrap();
        assert_eq!((reply.status, body(&reply)), want, "{path}");
        assert!(ex.is_finished());
    }
}
