//! The RFC 2136 backend through Envoy 1.40 (the clusters of `envoy/rfc2136-{bind,dnsdist}-cluster.yaml.tmpl`)
//! to BIND's own DoH and to dnsdist → Knot. The core builds and signs each UPDATE and verifies
//! each answer; this test carries the bytes over one HTTP/1.1 keep-alive connection to Envoy,
//! which speaks h2c upstream. It prints per-UPDATE latency figures (no timed assertions).
#![allow(
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::arithmetic_side_effects
)]
// Test code: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use dynedge_core::testing::Backend;
use dynedge_core::testing::Fqdn;
use dynedge_core::testing::{BackendEnv, RrSet, RrType};
use dynedge_core::{CalloutResult, Config};
use support::dns_servers::{self as dns, dig, start_bind, start_dnsdist, start_knot, Envoy};
use support::http1::Conn;

fn backend() -> Backend {
    let mut v: serde_json::Value =
        serde_json::from_slice(include_bytes!("../../../examples/dynedge-rfc2136.json")).unwrap();
    v["backends"]["bind"]["key_name"] = dns::KEY_NAME.into();
    v["backends"]["bind"]["secret"] = dns::KEY_SECRET.into();
    let cfg = Config::from_json(v.to_string().as_bytes()).unwrap();
    cfg.backends["bind"].clone()
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// `n` sequential A-record replacements of one name; returns the sorted round-trip times
/// (build + sign in the core, HTTP through Envoy and the relay, verify in the core).
fn updates(conn: &mut Conn, path: &str, host: &str, n: usize) -> Vec<Duration> {
    let b = backend();
    let zone = Fqdn::parse(dns::ZONE).unwrap();
    let name = Fqdn::parse(host).unwrap();
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let set = RrSet {
            name: name.clone(),
            rtype: RrType::A,
            ttl: 60,
            values: vec![format!("198.51.100.{}", i % 250 + 1)],
        };
        let t0 = Instant::now();
        let (c, check) = b
            .write(
                &zone,
                &[set],
                BackendEnv {
                    now_s: now_s(),
                    random: i as u64,
                },
            )
            .unwrap();
        let result = conn.send(&c, path);
        let verdict = b.check_write(&check, &result);
        times.push(t0.elapsed());
        assert_eq!(verdict, Ok(()), "update {i} via {path}");
    }
    times.sort();
    times
}

fn report(label: &str, t: &[Duration]) {
    let total: f64 = t.iter().map(Duration::as_secs_f64).sum();
    println!(
        "{label}: n={} p50={:.2} ms p90={:.2} ms p99={:.2} ms max={:.2} ms rate={:.0}/s",
        t.len(),
        percentile(t, 0.5),
        percentile(t, 0.9),
        percentile(t, 0.99),
        percentile(t, 1.0),
        t.len() as f64 / total
    );
}

#[test]
fn envoy_carries_signed_updates_to_bind_and_to_knot_and_every_answer_verifies() {
    let bind = start_bind();
    let knot = start_knot();
    let relay = start_dnsdist(knot.dns_port);
    let envoy = Envoy::start(bind.doh_port, relay.doh_port);
    let mut conn = Conn::open(envoy.port);

    let n: usize = std::env::var("RFC2136_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let t = updates(&mut conn, "/dns-query", "bench.dyn.example.test", n);
    report("Envoy -> BIND DoH (h2c), signed UPDATE", &t);
    let last = format!("198.51.100.{}", (n - 1) % 250 + 1);
    assert_eq!(dig(bind.dns_port, "bench.dyn.example.test", "A"), [last]);

    let t = updates(&mut conn, "/knot", "bench.dyn.example.test", n / 2);
    report("Envoy -> dnsdist -> Knot, signed UPDATE", &t);
    let last = format!("198.51.100.{}", (n / 2 - 1) % 250 + 1);
    assert_eq!(dig(knot.dns_port, "bench.dyn.example.test", "A"), [last]);

    // The core's own share: build + sign + verify, no I/O (answers made by BIND above are not
    // reusable, so this signs and checks a failing answer shape: the MAC work is the same).
    let b = backend();
    let zone = Fqdn::parse(dns::ZONE).unwrap();
    let set = RrSet {
        name: Fqdn::parse("x.dyn.example.test").unwrap(),
        rtype: RrType::A,
        ttl: 60,
        values: vec!["192.0.2.1".into()],
    };
    let t0 = Instant::now();
    let rounds = 2000;
    for i in 0..rounds {
        let (c, _) = b
            .write(
                &zone,
                std::slice::from_ref(&set),
                BackendEnv {
                    now_s: now_s(),
                    random: i,
                },
            )
            .unwrap();
        assert!(!c.body.is_empty());
    }
    println!(
        "core build + sign of one UPDATE (this build profile): {:.1} us",
        t0.elapsed().as_secs_f64() * 1e6 / rounds as f64
    );
}

#[test]
fn envoy_answers_503_for_a_relay_that_is_down_and_the_core_calls_it_an_error() {
    let bind = start_bind();
    let envoy = Envoy::start(bind.doh_port, dns::free_port());
    let b = backend();
    let zone = Fqdn::parse(dns::ZONE).unwrap();
    let set = RrSet {
        name: Fqdn::parse("down.dyn.example.test").unwrap(),
        rtype: RrType::A,
        ttl: 60,
        values: vec!["192.0.2.50".into()],
    };
    for path in ["/down", "/knot"] {
        let (c, check) = b
            .write(
                &zone,
                std::slice::from_ref(&set),
                BackendEnv {
                    now_s: now_s(),
                    random: 3,
                },
            )
            .unwrap();
        // A new connection each: Envoy may close one after a 503 ("connection: close").
        let result = Conn::open(envoy.port).send(&c, path);
        let CalloutResult::Response { status, .. } = &result else {
            panic!("{result:?}")
        };
        assert_eq!(*status, 503, "{path}");
        let e = b.check_write(&check, &result).unwrap_err();
        assert!(e.to_string().contains("503"), "{e}");
    }
    assert!(dig(bind.dns_port, "down.dyn.example.test", "A").is_empty());
}
