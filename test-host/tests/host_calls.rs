//! What a warm nochg costs the filter in host calls, counted (never timed): every call from the
//! module into the host, by the test host's wasmtime call hook. A nochg is the request a router
//! repeats all day, so a call added to its path is a cost paid on every one of them; the bounds
//! below are today's counts and fail when one comes back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test]

mod common;

use std::sync::Mutex;

use dynedge_core::adapter::SECURITY_HEADERS;
use dynedge_core::testing::FakePowerDns;
use dynedge_test_host::{Call, Host, LocalResponse, Outcome, Request};

const DEMO: &str = include_str!("../../examples/dynedge.json");
/// `demo:demo-password`, the public demo user.
const AUTH: &str = "Basic ZGVtbzpkZW1vLXBhc3N3b3Jk";
/// What envoy/bootstrap.yaml.tmpl gives the VM beside its header mutation.
const LAYER0_BY_PROXY: &str = r#"{"layer0_headers": "proxy"}"#;

/// The bench's configuration: the demo without rate limits (`cargo xtask bench`, nochg rows).
fn bench_config() -> String {
    let mut v: serde_json::Value = serde_json::from_str(DEMO).unwrap();
    v["rate_limits"] = serde_json::json!({"enabled": false});
    v.to_string()
}

fn host(vm_config: &str) -> Host {
    let mut host = Host::builder(common::filter_wasm())
        .vm_config(vm_config)
        .build()
        .expect("the filter loads");
    assert!(
        host.configure(bench_config()).expect("configure runs"),
        "{}",
        host.log_text()
    );
    host
}

fn update(path: &str) -> Request {
    Request::get(path)
        .header("user-agent", "dynedge-test/1")
        .header("authorization", AUTH)
        .peer("192.0.2.200:5555")
}

const NOCHG: &str = "/nic/update?hostname=home.dyn.example.test&myip=192.0.2.1";

/// Runs one request to its end: the filter's local reply (if any) and the host calls it made.
fn counted(host: &mut Host, req: Request) -> (Option<LocalResponse>, u64) {
    let before = host.host_calls();
    let ctx = host.request(req).expect("request runs");
    let outcome = host.outcome(ctx);
    host.finish(ctx).expect("stream ends");
    assert!(host.abi_errors().is_empty(), "{:?}", host.abi_errors());
    let reply = match outcome {
        Outcome::Replied(r) => Some(r),
        _ => None,
    };
    (reply, host.host_calls() - before)
}

/// A host whose record and auth cache are warm: the first update writes the record (`good`,
/// with a PowerDNS that has none), the next answers nochg from the caches.
fn warm(vm_config: &str) -> Host {
    let mut h = host(vm_config);
    let pdns = Mutex::new(FakePowerDns::default());
    h.respond_with(move |call: &Call| common::fake_pdns_answer(&mut pdns.lock().unwrap(), call))
        .unwrap();
    let (first, _) = counted(&mut h, update(NOCHG));
    let text = first.map(|r| r.text()).unwrap_or_default();
    assert!(text.starts_with("good"), "{text:?}\n{}", h.log_text());
    h
}

#[test]
fn a_warm_nochg_makes_nine_host_calls_at_most() {
    let mut h = warm(LAYER0_BY_PROXY);
    // The VM's first nochg defines its counter (once per VM, not per request).
    let (_, first) = counted(&mut h, update(NOCHG));
    let (reply, calls) = counted(&mut h, update(NOCHG));
    eprintln!("host calls: first nochg {first}, warm {calls}");
    let reply = reply.expect("a local reply");
    assert_eq!(reply.text(), "nochg 192.0.2.1\n", "{}", h.log_text());
    // The request's headers, its peer address, the clock (once), the auth cache and the record
    // cache in shared data, the audit line, the update counter and the reply: nine. No read of
    // the configuration's generation (the configuration store never changes it), no second
    // clock read for the outcome.
    assert!(calls <= 9, "a warm nochg made {calls} host calls");
    // Repeats cost the same: nothing is defined or cached lazily per request.
    let (_, again) = counted(&mut h, update(NOCHG));
    assert_eq!(again, calls);
}

#[test]
fn a_pass_through_makes_three_host_calls_at_most() {
    let mut h = host(LAYER0_BY_PROXY);
    let (reply, calls) = counted(&mut h, Request::get("/").peer("192.0.2.200:5555"));
    assert!(reply.is_none(), "not a DDNS path: passed on");
    eprintln!("host calls: pass-through {calls}");
    assert!(calls <= 3, "a pass-through made {calls} host calls");
}

#[test]
fn the_layer0_headers_are_left_to_the_proxy_only_when_its_vm_configuration_says_so() {
    for (vm_config, by_filter) in [
        ("", true),
        ("{}", true),
        (r#"{"layer0_headers": "filter"}"#, true),
        ("not json", true),
        (LAYER0_BY_PROXY, false),
    ] {
        let mut h = warm(vm_config);
        for req in [
            update(NOCHG),
            // A refusal and a challenge are local replies too.
            Request::get(NOCHG)
                .header("authorization", "Basic ZGVtbzp3cm9uZw==")
                .peer("192.0.2.200:5555"),
            Request::get(NOCHG).peer("192.0.2.200:5555"),
        ] {
            let (reply, _) = counted(&mut h, req);
            let reply = reply.expect("a local reply");
            for (name, value) in SECURITY_HEADERS {
                let sent: Vec<&(String, String)> = reply
                    .headers
                    .iter()
                    .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                    .collect();
                if by_filter {
                    assert_eq!(sent.len(), 1, "{vm_config:?}: {name}: {:?}", reply.headers);
                    assert_eq!(sent.first().map(|(_, v)| v.as_str()), Some(*value));
                } else {
                    assert!(
                        sent.is_empty(),
                        "{vm_config:?}: {name}: {:?}",
                        reply.headers
                    );
                }
            }
            assert!(
                reply.header("content-type").is_some(),
                "{vm_config:?}: {:?}",
                reply.headers
            );
        }
    }
}
