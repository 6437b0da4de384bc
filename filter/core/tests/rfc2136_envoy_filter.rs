//! End to end: DynDNS2 clients (curl) → Envoy 1.40 with the dynedge filter (the built .wasm)
//! → DoH relay → real BIND 9.18 (its own DoH), or real Knot 3.2 or PowerDNS 4.7 (behind dnsdist). Records are
//! checked with dig. Needs the release .wasm (`cargo build --release --target wasm32-wasip1 -p
//! dynedge-filter`, or `DYNEDGE_WASM`) and Envoy (`.tools/venv/bin/envoy`, or `DYNEDGE_ENVOY`).
//!
//! Clock skew (BADTIME) and TXT are covered in `rfc2136_relay.rs`: Envoy's clock cannot be
//! moved, and there is no TXT dialect yet.

// Test code: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::dns_servers::{self as dns, dig, nsupdate, Bind, Dnsdist, Envoy, Knot, Pdns};
use support::http1::Conn;

const TOKEN: &str = "dynedge_test_demodemodemodemodemodemodemodemo";
const HOME: &str = "home.dyn.example.test";
const ALIAS: &str = "alias.dyn.example.test";

/// The example configuration pointed at `cluster` with this key; the demo user also owns ALIAS.
fn plugin(cluster: &str, doh_port: u16, key_name: &str, secret: &str) -> String {
    let mut v: serde_json::Value =
        serde_json::from_slice(include_bytes!("../../../examples/dynedge-rfc2136.json")).unwrap();
    let b = &mut v["backends"]["bind"];
    b["cluster"] = cluster.into();
    b["authority"] = format!("127.0.0.1:{doh_port}").into();
    b["key_name"] = key_name.into();
    b["secret"] = secret.into();
    v["users"][0]["hosts"]
        .as_array_mut()
        .unwrap()
        .push(ALIAS.into());
    v.to_string()
}

/// `GET /nic/update?...` through Envoy: (status, body).
fn nic_update(envoy: &Envoy, query: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "15", "-o", "-", "-w", "\n%{http_code}"])
        .args(["-H", &format!("authorization: Bearer {TOKEN}")])
        .args(["-A", "dynedge-e2e/1.0"])
        .arg(format!(
            "http://127.0.0.1:{}/nic/update?{query}",
            envoy.port
        ))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.parse().unwrap(), body.trim_end().to_string())
}

struct Site {
    cluster: &'static str,
    doh_port: u16,
    dns_port: u16,
}

fn every_case(site: &Site) {
    let good = plugin(site.cluster, site.doh_port, dns::KEY_NAME, dns::KEY_SECRET);
    let envoy = Envoy::with_filter(&good, site.doh_port, site.doh_port);

    let q = format!("hostname={HOME}&myip=192.0.2.10");
    assert_eq!(nic_update(&envoy, &q), (200, "good 192.0.2.10".into()));
    assert_eq!(dig(site.dns_port, HOME, "A"), ["192.0.2.10"]);
    assert_eq!(nic_update(&envoy, &q), (200, "nochg 192.0.2.10".into()));

    let q = format!("hostname={HOME}&myip=2001:db8::10");
    assert_eq!(nic_update(&envoy, &q), (200, "good 2001:db8::10".into()));
    assert_eq!(dig(site.dns_port, HOME, "AAAA"), ["2001:db8::10"]);

    let q = format!("hostname={HOME}&myip=192.0.2.20&myipv6=2001:db8::20");
    assert_eq!(
        nic_update(&envoy, &q),
        (200, "good 192.0.2.20 2001:db8::20".into())
    );
    assert_eq!(dig(site.dns_port, HOME, "A"), ["192.0.2.20"]);
    assert_eq!(dig(site.dns_port, HOME, "AAAA"), ["2001:db8::20"]);

    // A CNAME at the name: the prerequisite fails (YXRRSET), the CNAME stays.
    nsupdate(
        site.dns_port,
        &format!("update add {ALIAS} 60 CNAME {HOME}."),
    );
    let q = format!("hostname={ALIAS}&myip=192.0.2.30");
    assert_eq!(nic_update(&envoy, &q), (200, "dnserr".into()));
    assert_eq!(dig(site.dns_port, ALIAS, "CNAME"), [format!("{HOME}.")]);
    drop(envoy);

    // Wrong secret (BADSIG) and unknown key (BADKEY): dnserr, nothing changes.
    for (key, secret) in [
        (dns::KEY_NAME, dns::KEY512_SECRET),
        ("no-such-key", dns::KEY_SECRET),
    ] {
        let envoy = Envoy::with_filter(
            &plugin(site.cluster, site.doh_port, key, secret),
            site.doh_port,
            site.doh_port,
        );
        let q = format!("hostname={HOME}&myip=192.0.2.99");
        assert_eq!(nic_update(&envoy, &q), (200, "dnserr".into()), "key {key}");
        assert_eq!(dig(site.dns_port, HOME, "A"), ["192.0.2.20"]);
    }
}

#[test]
fn dyndns2_through_envoy_and_the_filter_updates_bind_over_its_own_doh() {
    let bind = Bind::start();
    every_case(&Site {
        cluster: "bind_doh",
        doh_port: bind.doh_port,
        dns_port: bind.dns_port,
    });
}

#[test]
fn dyndns2_through_envoy_and_the_filter_updates_knot_behind_dnsdist() {
    let knot = Knot::start();
    let relay = Dnsdist::start(knot.dns_port);
    every_case(&Site {
        cluster: "dnsdist_doh",
        doh_port: relay.doh_port,
        dns_port: knot.dns_port,
    });
}

#[test]
fn dyndns2_through_envoy_and_the_filter_updates_powerdns_behind_dnsdist() {
    let pdns = Pdns::start();
    let relay = Dnsdist::start(pdns.dns_port);
    every_case(&Site {
        cluster: "dnsdist_doh",
        doh_port: relay.doh_port,
        dns_port: pdns.dns_port,
    });
}

#[test]
fn a_relay_that_goes_down_turns_updates_into_dnserr() {
    let bind = Bind::start();
    let (doh_port, dns_port) = (bind.doh_port, bind.dns_port);
    let envoy = Envoy::with_filter(
        &plugin("bind_doh", doh_port, dns::KEY_NAME, dns::KEY_SECRET),
        doh_port,
        doh_port,
    );
    assert_eq!(
        nic_update(&envoy, &format!("hostname={HOME}&myip=192.0.2.60")),
        (200, "good 192.0.2.60".into())
    );
    assert_eq!(dig(dns_port, HOME, "A"), ["192.0.2.60"]);
    drop(bind);
    assert_eq!(
        nic_update(&envoy, &format!("hostname={HOME}&myip=192.0.2.61")),
        (200, "dnserr".into())
    );
}

#[test]
fn dyndns2_update_latency_through_envoy_the_filter_and_bind_is_printed() {
    let bind = Bind::start();
    let mut plugin: serde_json::Value = serde_json::from_str(&plugin(
        "bind_doh",
        bind.doh_port,
        dns::KEY_NAME,
        dns::KEY_SECRET,
    ))
    .unwrap();
    plugin["rate_limits"] = serde_json::json!({"enabled": false}); // a benchmark, not abuse
    let plugin = plugin.to_string();
    let envoy = Envoy::with_filter(&plugin, bind.doh_port, bind.doh_port);
    let mut conn = Conn::open(envoy.port);
    let auth = format!("Bearer {TOKEN}");
    let headers = [
        ("authorization", auth.as_str()),
        ("user-agent", "dynedge-bench/1.0"),
    ];
    let n: usize = std::env::var("RFC2136_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut times: Vec<Duration> = Vec::with_capacity(n);
    for i in 0..n {
        // A new address every time: each request is one signed UPDATE (the read is cached).
        let ip = format!("198.51.100.{}", i % 250 + 1);
        let t0 = Instant::now();
        let (status, body) = conn.get(&format!("/nic/update?hostname={HOME}&myip={ip}"), &headers);
        times.push(t0.elapsed());
        assert_eq!(
            (status, body.trim_end()),
            (200, format!("good {ip}").as_str()),
            "request {i}"
        );
    }
    let last = format!("198.51.100.{}", (n - 1) % 250 + 1);
    assert_eq!(dig(bind.dns_port, HOME, "A"), [last]);
    times.sort();
    let ms = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0;
    let total: f64 = times.iter().map(Duration::as_secs_f64).sum();
    println!(
        "DynDNS2 good through Envoy + filter -> BIND DoH (one signed UPDATE each): n={n} p50={:.2} ms p90={:.2} ms p99={:.2} ms max={:.2} ms rate={:.0}/s",
        ms(0.5), ms(0.9), ms(0.99), ms(1.0), n as f64 / total
    );
}
