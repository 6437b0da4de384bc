//! dynedge's filter (`dynedge_filter.wasm`) on the test host: the DynDNS2 corpus
//! (`filter/core/tests/corpus/dyndns2.json`), plus what Envoy makes hard to provoke (Argon2
//! cache expiry on a virtual clock, CAS races on shared-data counters, callout timeouts,
//! malformed callout responses, configuration errors). The PowerDNS answers come from
//! `FakePowerDns` (dynedge-core's fake, named so): the real PowerDNS runs in the Envoy
//! end-to-end suite.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test]

mod common;
#[path = "../../filter/core/tests/corpus/mod.rs"]
mod corpus;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use corpus::{Backend, Http, Runner, Seen};
use dynedge_core::testing::{FakePowerDns, Fault};
use dynedge_test_host::{Call, Host, LocalResponse, Outcome, Request};

const DEMO: &str = include_str!("../../examples/dynedge.json");
const PEER: &str = "192.0.2.200:5555";

/// The filter on the host, with the fake PowerDNS answering every callout.
struct Rig {
    host: Host,
    pdns: Arc<Mutex<FakePowerDns>>,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Rig {
    fn new() -> Rig {
        Rig::with(1, DEMO)
    }

    fn with(workers: usize, config: &str) -> Rig {
        let host = Host::builder(common::filter_wasm())
            .workers(workers)
            .build()
            .expect("the filter loads");
        let mut rig = Rig {
            host,
            pdns: Arc::new(Mutex::new(FakePowerDns::default())),
            calls: Arc::new(Mutex::new(Vec::new())),
        };
        assert!(
            rig.host.configure(config).expect("configure runs"),
            "configuration refused:\n{}",
            rig.host.log_text()
        );
        rig.answer_with_fake_pdns();
        rig
    }

    fn answer_with_fake_pdns(&mut self) {
        let (pdns, calls) = (self.pdns.clone(), self.calls.clone());
        self.host
            .respond_with(move |call| {
                calls.lock().unwrap().push(call.clone());
                common::fake_pdns_answer(&mut pdns.lock().unwrap(), call)
            })
            .unwrap();
    }

    /// Sends a request and returns the filter's local reply.
    /// Runs a request's stream to its end; what the filter did with it.
    fn exchange(&mut self, req: Request) -> Outcome {
        let ctx = self.host.request(req).expect("request runs");
        let outcome = self.host.outcome(ctx);
        self.host.finish(ctx).expect("stream ends");
        assert!(
            self.host.abi_errors().is_empty(),
            "{:?}",
            self.host.abi_errors()
        );
        outcome
    }

    /// Sends a request and returns the filter's local reply.
    fn send(&mut self, req: Request) -> LocalResponse {
        match self.exchange(req) {
            Outcome::Replied(reply) => reply,
            other => panic!(
                "no local reply ({other:?}); logs:\n{}",
                self.host.log_text()
            ),
        }
    }

    fn body(&mut self, req: Request) -> String {
        self.send(req).text()
    }

    fn methods(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.method().to_owned())
            .collect()
    }

    fn records(&self, name: &str, rtype: &str) -> Vec<String> {
        self.pdns.lock().unwrap().records(name, rtype)
    }

    fn fault(&self, fault: Fault) {
        self.pdns.lock().unwrap().fault = fault;
    }

    fn fuel_of(&mut self, req: Request) -> (u64, String) {
        let before = self.host.fuel_used();
        let text = self.body(req);
        (self.host.fuel_used() - before, text)
    }
}

fn basic(user: &str, password: &str) -> String {
    let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {v}")
}

fn anonymous(path: &str) -> Request {
    Request::get(path)
        .header("user-agent", "dynedge-test/1")
        .peer(PEER)
}

fn update(query: &str) -> Request {
    anonymous(&format!("/nic/update?{query}"))
        .header("authorization", &basic("demo", "demo-password"))
}

// ---- DynDNS2: the corpus, callouts, the record cache ------------------------------------

/// The corpus's client: the test host's `source.address` without the port.
const CLIENT: &str = "192.0.2.200";

impl Runner for Rig {
    const NAME: &'static str = "test_host";

    fn client(&self) -> String {
        CLIENT.to_owned()
    }

    fn send(&mut self, req: &Http) -> Seen {
        let mut r = Request::new(&req.method, &req.path)
            .peer(PEER)
            .body(req.body.clone());
        for (name, value) in &req.headers {
            r = r.header(name, value);
        }
        match self.exchange(r) {
            Outcome::Forwarded(_) => Seen::Passed,
            Outcome::Replied(reply) => Seen::Reply {
                status: u16::try_from(reply.status).unwrap(),
                body: reply.text(),
                headers: reply.headers,
            },
            other => panic!("{other:?}; logs:\n{}", self.host.log_text()),
        }
    }

    fn advance_s(&mut self, seconds: u64) {
        self.host
            .advance_clock(Duration::from_secs(seconds))
            .unwrap();
    }

    fn backend(&mut self, backend: Backend) {
        self.fault(backend.fault());
    }

    fn seed(&mut self, name: &str, rtype: &str, values: &[String]) {
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        self.pdns.lock().unwrap().set(name, rtype, &values);
    }

    fn records(&mut self, name: &str, rtype: &str) -> Vec<String> {
        Rig::records(self, name, rtype)
    }

    fn calls(&self) -> Option<Vec<String>> {
        Some(self.methods())
    }
}

#[test]
fn the_dyndns2_corpus_plays_in_the_test_host() {
    corpus::play_all(2, |s| Rig::with(1, &s.config(CLIENT).to_string()));
    corpus::assert_none_skipped("test_host");
}

#[test]
fn callouts_go_to_the_pdns_api_cluster_with_the_api_key() {
    let mut rig = Rig::new();
    rig.send(update("hostname=home.dyn.example.test&myip=192.0.2.7"));
    let calls = rig.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2, "read the record, then write it");
    assert!(calls.iter().all(|c| c.cluster == "pdns_api"));
    assert!(
        calls[1]
            .path()
            .starts_with("/api/v1/servers/localhost/zones/dyn.example.test"),
        "{}",
        calls[1].path()
    );
    assert!(
        calls[1].header("x-api-key").is_some(),
        "the API key header is sent"
    );
}

#[test]
fn the_record_cache_lives_in_shared_data() {
    let mut rig = Rig::new();
    rig.send(update("hostname=home.dyn.example.test&myip=192.0.2.7"));
    assert!(rig
        .host
        .shared_data()
        .keys()
        .any(|k| k.starts_with("dynedge:rr:home.dyn.example.test")));
}

#[test]
fn record_cache_is_shared_by_every_worker() {
    let mut rig = Rig::with(2, DEMO);
    rig.send(update("hostname=home.dyn.example.test&myip=192.0.2.7"));
    let before = rig.methods().len();
    let reply = rig.body(update("hostname=home.dyn.example.test&myip=192.0.2.7").worker(1));
    assert_eq!(reply, "nochg 192.0.2.7\n");
    assert_eq!(rig.methods().len(), before);
}

// ---- backend failures ---------------------------------------------------------------------

#[test]
fn callout_timeout_on_the_virtual_clock_is_dnserr() {
    let mut rig = Rig::new();
    rig.host.stop_responding();
    let ctx = rig
        .host
        .request(update("hostname=home.dyn.example.test&myip=192.0.2.7"))
        .unwrap();
    let calls = rig.host.pending_calls(ctx);
    assert_eq!(
        (calls.len(), calls[0].timeout_ms),
        (1, 2000),
        "one read, with the backend's timeout"
    );
    rig.host.advance_clock(Duration::from_millis(1999)).unwrap();
    assert_eq!(rig.host.outcome(ctx), Outcome::Paused);
    rig.host.advance_clock(Duration::from_millis(1)).unwrap();
    let reply = rig
        .host
        .local_response(ctx)
        .expect("a reply after the timeout");
    assert_eq!(reply.text(), "dnserr\n");
}

#[test]
fn malformed_callout_responses_are_dnserr() {
    let cases: &[(&str, u16, &str)] = &[
        ("html", 200, "<html>maintenance</html>"),
        ("empty body", 200, ""),
        ("rrsets not a list", 200, r#"{"rrsets": 5}"#),
        ("truncated json", 200, r#"{"rrsets": [{"name": "home.dyn."#),
        ("wrong status", 302, ""),
    ];
    for (what, status, body) in cases {
        let mut rig = Rig::new();
        rig.host.stop_responding();
        let ctx = rig
            .host
            .request(update("hostname=home.dyn.example.test&myip=192.0.2.7"))
            .unwrap();
        let token = rig.host.pending_calls(ctx)[0].token;
        rig.host
            .answer(
                token,
                *status,
                &[("content-type", "application/json")],
                *body,
            )
            .unwrap();
        // Whatever the filter does next (another call or a reply), it must never say good.
        for call in rig.host.pending_calls(ctx) {
            rig.host.answer(call.token, 204, &[], "").unwrap();
        }
        let reply = rig
            .host
            .local_response(ctx)
            .unwrap_or_else(|| panic!("{what}: no reply"));
        assert_eq!(reply.text(), "dnserr\n", "{what}");
    }
}

// ---- Argon2 cache, CAS races, shared counters ---------------------------------------------

fn auth_cache_entry(host: &Host) -> Option<(String, u64)> {
    host.shared_data().into_iter().find_map(|(k, (v, _))| {
        if !k.starts_with("dynedge:authok:demo:") {
            return None;
        }
        let until = String::from_utf8(v).ok()?.parse().ok()?;
        Some((k, until))
    })
}

#[test]
fn argon2_verification_is_cached_in_shared_data_until_it_expires() {
    let mut rig = Rig::new();
    let q = "hostname=home.dyn.example.test&myip=192.0.2.7";
    let (miss, body) = rig.fuel_of(update(q));
    assert_eq!(body, "good 192.0.2.7\n");
    let (_, until) = auth_cache_entry(&rig.host).expect("a cached verification");
    assert_eq!(
        until,
        rig.host.now_ns() / 1_000_000_000 + 300,
        "auth_cache_ttl_s = 300"
    );
    let (hit, body) = rig.fuel_of(update(q));
    assert_eq!(body, "nochg 192.0.2.7\n");
    assert!(
        hit * 20 < miss,
        "a cache hit skips Argon2: {hit} vs {miss} fuel"
    );
    rig.host.advance_clock(Duration::from_secs(301)).unwrap();
    let (expired, _) = rig.fuel_of(update(q));
    assert!(
        expired * 2 > miss,
        "after expiry Argon2 runs again: {expired} vs {miss}"
    );
    let (_, renewed) = auth_cache_entry(&rig.host).unwrap();
    assert_eq!(renewed, rig.host.now_ns() / 1_000_000_000 + 300);
    assert!(
        rig.host.peak_memory_bytes() > 19 * 1024 * 1024,
        "Argon2 m=19456 KiB lives in linear memory"
    );
}

fn bad_password(worker: usize) -> Request {
    anonymous("/nic/update?hostname=home.dyn.example.test")
        .header("authorization", &basic("demo", "guess"))
        .worker(worker)
}

#[test]
fn bad_password_counters_are_shared_by_workers_and_end_in_abuse() {
    let mut rig = Rig::with(2, DEMO);
    for i in 0..5 {
        assert_eq!(rig.body(bad_password(i % 2)), "badauth\n");
    }
    let reply = rig.body(update("hostname=home.dyn.example.test&myip=192.0.2.1").worker(1));
    assert_eq!(reply, "abuse\n");
    assert!(rig.methods().is_empty());
    rig.host.advance_clock(Duration::from_secs(300)).unwrap();
    assert_eq!(
        rig.body(update("hostname=home.dyn.example.test&myip=192.0.2.1")),
        "good 192.0.2.1\n"
    );
}

#[test]
fn cas_race_on_a_rate_limit_counter_loses_no_increment() {
    let mut rig = Rig::with(2, DEMO);
    let now_s = rig.host.now_ns() / 1_000_000_000;
    // The limiter's keys are hashes of the client and user: ask the core for them.
    let cfg = dynedge_core::Config::from_json(DEMO.as_bytes()).unwrap();
    let keys: Vec<String> = dynedge_core::testing::count_bad(
        &cfg.rate_limits,
        "192.0.2.200".parse().ok(),
        Some("demo"),
    )
    .into_iter()
    .map(|c| c.key)
    .collect();
    let ip_key = keys[0].clone();
    // The counters exist already (one bad request earlier in this window). An absent key has
    // no CAS in proxy-wasm, so the first write to it is unconditional.
    for key in &keys {
        rig.host.set_shared_data(key, format!("{now_s}|1"));
    }
    // Another worker counts a bad request between our read and our CAS write, once.
    rig.host.interfere(&ip_key, 1, move |_key, old| {
        let old = (!old.is_empty()).then_some(old);
        dynedge_core::merge_count(old, now_s, 60)
    });
    assert_eq!(rig.body(bad_password(0)), "badauth\n");
    assert_eq!(rig.host.cas_mismatches(), 1, "the race happened once");
    let ip_counter = rig.host.shared_value(&ip_key).expect("counted");
    let count: u32 = String::from_utf8(ip_counter)
        .unwrap()
        .rsplit('|')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(count, 3, "the earlier one, the other worker's and ours");
}

// ---- configuration ------------------------------------------------------------------------

fn demo_with(edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut v: serde_json::Value = serde_json::from_str(DEMO).unwrap();
    edit(&mut v);
    v.to_string()
}

#[test]
fn configuration_errors_are_refused_at_configure_naming_what_and_where() {
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "bad JSON",
            "{\"zones\": [".into(),
            "configuration line 1 column",
        ),
        (
            "bad PHC string",
            demo_with(|v| v["users"][0]["password_hash"] = "plaintext".into()),
            "configuration users[0].password_hash",
        ),
        (
            "duplicate host",
            demo_with(|v| {
                let mut second = v["users"][0].clone();
                second["name"] = "other".into();
                v["users"].as_array_mut().unwrap().push(second);
            }),
            "configuration users[2].hosts[0]: ",
        ),
    ];
    for (what, config, message) in cases {
        let mut host = Host::load(common::filter_wasm()).unwrap();
        assert!(!host.configure(&config).unwrap(), "{what} accepted");
        assert!(
            host.logged(message),
            "{what}: want {message:?} in\n{}",
            host.log_text()
        );
    }
}

#[test]
fn duplicate_host_message_names_the_owner() {
    let config = demo_with(|v| {
        let mut second = v["users"][0].clone();
        second["name"] = "other".into();
        v["users"].as_array_mut().unwrap().push(second);
    });
    let mut host = Host::load(common::filter_wasm()).unwrap();
    assert!(!host.configure(&config).unwrap());
    assert!(
        host.logged("already owned by 'demo'"),
        "{}",
        host.log_text()
    );
}

#[test]
fn demo_configuration_is_published_in_shared_data() {
    let rig = Rig::new();
    assert_eq!(
        rig.host.shared_value("dynedge:config").as_deref(),
        Some(DEMO.as_bytes())
    );
}

// ---- logs and metrics ---------------------------------------------------------------------

#[test]
fn logs_never_carry_a_password_or_the_api_key() {
    let mut rig = Rig::new();
    rig.send(update("hostname=home.dyn.example.test&myip=192.0.2.7"));
    rig.send(anonymous(
        "/nic/update?hostname=home.dyn.example.test&username=demo&password=demo-password",
    ));
    let logs = rig.host.log_text();
    assert!(!logs.is_empty());
    for secret in [
        "demo-password",
        "dynedge-demo-pdns-key",
        "ZGVtbzpkZW1vLXBhc3N3b3Jk",
    ] {
        assert!(!logs.contains(secret), "{secret} in logs:\n{logs}");
    }
}

#[test]
fn outcomes_are_counted_in_metrics() {
    let mut rig = Rig::new();
    rig.send(update("hostname=home.dyn.example.test&myip=192.0.2.7"));
    let metrics = rig.host.metrics();
    assert!(metrics.iter().any(|m| m.value >= 1), "{metrics:?}");
}
