//! End to end for the RFC 2136 backend: DynDNS2 over HTTPS (curl) → Envoy 1.40 with the
//! production bootstrap and the built filter → the DoH relay cluster
//! (`envoy/rfc2136-*-cluster.yaml.tmpl`) → real BIND 9.18 (its own DoH), or real Knot 3.2 /
//! PowerDNS 4.7 behind dnsdist 1.7. Records are checked with dig.
//!
//! TXT for ACME goes through the ApertoDNS `/txt` endpoint. Clock skew (BADTIME) is covered at
//! the core level (`filter/core/tests/rfc2136_relay.rs`): Envoy's clock cannot be moved.

// Test code: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use dynedge_envoy::rfc2136::{self, Bind, Dnsdist, Knot, PowerDnsUpdate, TsigKeyText};
use dynedge_envoy::{dig, envoy_only, free_port, workspace_root, Envoy};
use support::rfc2136::{bearer_call, gateway, relay_plugin, Relay};
use support::{test_dir, APERTO, HOME, TOKEN};

const ALIAS: &str = "alias.dyn.example.test";
const KEY: TsigKeyText = TsigKeyText {
    name: "ddns-key",
    algorithm: "hmac-sha256",
    secret: "SU3E55TYJCfXunkqJgW75/rA5qLYv1yB7wB8o82HwMA=",
};
const OTHER_SECRET: &str =
    "e7K15czUYLDwp6QZqtZI9gdwr+vpbYcD9jvQlJjeE11yf8EL7Z5VgF/r7+fx2DMS/mDUtUrqqO1VpV1PrV/TWg==";

fn ok<T>(r: Result<T, String>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// The relay's plugin configuration with this key; demo also owns ALIAS; rate limits off when
/// `bench`.
fn plugin(cluster: &str, key_name: &str, secret: &str, bench: bool) -> String {
    let mut v = relay_plugin(cluster, key_name, secret);
    v["users"][0]["hosts"]
        .as_array_mut()
        .unwrap()
        .push(ALIAS.into());
    if bench {
        v["rate_limits"] = serde_json::json!({"enabled": false});
    }
    v.to_string()
}

/// `GET /nic/update?{query}` with the demo token: (status, body).
fn update(envoy: &Envoy, query: &str) -> (u16, String) {
    bearer_call(
        envoy,
        &format!("/nic/update?{query}"),
        &["-A", "dynedge-e2e/1.0"],
    )
}

/// `METHOD /.well-known/apertodns/v1/txt` with a JSON body and the demo token: (status, body).
fn txt(envoy: &Envoy, method: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let (status, text) = bearer_call(
        envoy,
        &format!("{APERTO}/txt"),
        &[
            "-X",
            method,
            "-H",
            "content-type: application/json",
            "-d",
            &body.to_string(),
        ],
    );
    let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, json)
}

fn records(port: u16, name: &str, rtype: &str) -> Vec<String> {
    let mut r = ok(dig(port, name, rtype));
    r.sort();
    r
}

/// Puts a CNAME at ALIAS with the real nsupdate (the zone's owner doing it by hand).
fn nsupdate_cname(port: u16) {
    let script = format!(
        "server 127.0.0.1 {port}\nzone {}\nupdate add {ALIAS} 60 CNAME {HOME}.\nsend\n",
        rfc2136::ZONE
    );
    rfc2136::nsupdate(&KEY, &script).unwrap();
}

/// A: the relay's cluster; the server's DNS port (for dig and nsupdate).
fn every_case(dir: &Path, relay: Relay, dns_port: u16) {
    let e = gateway(
        &dir.join("good"),
        plugin(relay.name, KEY.name, KEY.secret, false),
        Some(relay),
    );

    let q = format!("hostname={HOME}&myip=192.0.2.10");
    assert_eq!(update(&e, &q), (200, "good 192.0.2.10".into()));
    assert_eq!(records(dns_port, HOME, "A"), ["192.0.2.10"]);
    assert_eq!(update(&e, &q), (200, "nochg 192.0.2.10".into()));

    let q = format!("hostname={HOME}&myip=2001:db8::10");
    assert_eq!(update(&e, &q), (200, "good 2001:db8::10".into()));
    assert_eq!(records(dns_port, HOME, "AAAA"), ["2001:db8::10"]);

    let q = format!("hostname={HOME}&myip=192.0.2.20&myipv6=2001:db8::20");
    assert_eq!(update(&e, &q), (200, "good 192.0.2.20 2001:db8::20".into()));
    assert_eq!(records(dns_port, HOME, "A"), ["192.0.2.20"]);
    assert_eq!(records(dns_port, HOME, "AAAA"), ["2001:db8::20"]);

    // ACME DNS-01: two challenge values at one name (wildcard + apex), then removed.
    let acme = format!("_acme-challenge.{HOME}");
    for value in ["challenge-one", "challenge-two"] {
        let (status, body) = txt(
            &e,
            "POST",
            &serde_json::json!({"hostname": acme, "value": value}),
        );
        assert_eq!(
            (status, &body["success"]),
            (200, &serde_json::json!(true)),
            "{body}"
        );
    }
    assert_eq!(
        records(dns_port, &acme, "TXT"),
        ["\"challenge-one\"", "\"challenge-two\""]
    );
    let one = serde_json::json!({"hostname": acme, "value": "challenge-one"});
    let (status, body) = txt(&e, "DELETE", &one);
    assert_eq!(
        (status, &body["data"]["values_removed"]),
        (200, &serde_json::json!(1)),
        "{body}"
    );
    assert_eq!(records(dns_port, &acme, "TXT"), ["\"challenge-two\""]);
    let (status, body) = txt(&e, "DELETE", &serde_json::json!({"hostname": acme}));
    assert_eq!(status, 200, "{body}");
    assert!(records(dns_port, &acme, "TXT").is_empty());

    // A CNAME at the name: the UPDATE's prerequisite fails (YXRRSET); the CNAME stays.
    nsupdate_cname(dns_port);
    let q = format!("hostname={ALIAS}&myip=192.0.2.30");
    assert_eq!(update(&e, &q), (200, "dnserr".into()));
    assert_eq!(records(dns_port, ALIAS, "CNAME"), [format!("{HOME}.")]);
    drop(e);

    // A wrong secret (BADSIG, or REFUSED from PowerDNS) and an unknown key (BADKEY): dnserr.
    for (i, (key, secret)) in [(KEY.name, OTHER_SECRET), ("no-such-key", KEY.secret)]
        .into_iter()
        .enumerate()
    {
        let e = gateway(
            &dir.join(format!("bad{i}")),
            plugin(relay.name, key, secret, false),
            Some(relay),
        );
        let q = format!("hostname={HOME}&myip=192.0.2.99");
        assert_eq!(update(&e, &q), (200, "dnserr".into()), "key {key}");
        assert_eq!(
            records(dns_port, HOME, "A"),
            ["192.0.2.20"],
            "nothing changed"
        );
    }
}

/// [`every_case`] through dnsdist's DoH in front of the server on `dns_port`.
fn every_case_behind_dnsdist(dir: &Path, dns_port: u16) {
    let relay = ok(Dnsdist::start(
        &dir.join("dnsdist"),
        free_port(),
        free_port(),
        dns_port,
    ));
    every_case(dir, Relay::dnsdist(relay.doh_port), dns_port);
}

#[test]
fn dyndns2_through_envoy_and_the_filter_updates_bind_over_its_own_doh() {
    let dir = test_dir("rfc2136-bind");
    let bind = ok(Bind::start(
        &dir.join("bind"),
        free_port(),
        free_port(),
        &[KEY],
    ));
    every_case(&dir, Relay::bind(bind.doh_port), bind.dns_port);
}

#[test]
fn dyndns2_through_envoy_and_the_filter_updates_knot_behind_dnsdist() {
    let dir = test_dir("rfc2136-knot");
    let knot = ok(Knot::start(&dir.join("knot"), free_port(), &[KEY]));
    every_case_behind_dnsdist(&dir, knot.dns_port);
}

#[test]
fn dyndns2_through_envoy_and_the_filter_updates_powerdns_behind_dnsdist() {
    let dir = test_dir("rfc2136-pdns");
    let pdns = ok(PowerDnsUpdate::start(
        &dir.join("pdns"),
        free_port(),
        &[KEY],
    ));
    every_case_behind_dnsdist(&dir, pdns.dns_port);
}

#[test]
fn a_relay_that_goes_down_turns_updates_into_dnserr() {
    let dir = test_dir("rfc2136-down");
    let mut bind = ok(Bind::start(
        &dir.join("bind"),
        free_port(),
        free_port(),
        &[KEY],
    ));
    let e = gateway(
        &dir,
        plugin("bind_doh", KEY.name, KEY.secret, false),
        Some(Relay::bind(bind.doh_port)),
    );
    assert_eq!(
        update(&e, &format!("hostname={HOME}&myip=192.0.2.60")),
        (200, "good 192.0.2.60".into())
    );
    assert_eq!(records(bind.dns_port, HOME, "A"), ["192.0.2.60"]);
    bind.daemon.stop();
    assert_eq!(
        update(&e, &format!("hostname={HOME}&myip=192.0.2.61")),
        (200, "dnserr".into())
    );
}

#[test]
fn dyndns2_update_latency_through_envoy_the_filter_and_bind_is_printed() {
    let dir = test_dir("rfc2136-latency");
    let bind = ok(Bind::start(
        &dir.join("bind"),
        free_port(),
        free_port(),
        &[KEY],
    ));
    let e = gateway(
        &dir,
        plugin("bind_doh", KEY.name, KEY.secret, true),
        Some(Relay::bind(bind.doh_port)),
    );
    let n: usize = std::env::var("RFC2136_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    // One curl, one HTTP/2 connection over TLS, n requests in a row; a new address each time,
    // so each is one signed UPDATE (the current value is cached in the shared KV).
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--http2", "-m", "600", "--cacert"])
        .arg(&e.certificate.cert);
    cmd.args([
        "-H",
        &format!("authorization: Bearer {TOKEN}"),
        "-A",
        "dynedge-bench/1.0",
    ]);
    for i in 0..n {
        let ip = format!("198.51.100.{}", i % 250 + 1);
        cmd.args([
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{time_total} %{num_connects}\\n",
        ]);
        cmd.arg(e.url(&format!("/nic/update?hostname={HOME}&myip={ip}")));
    }
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut ms: Vec<f64> = Vec::new();
    let mut connects = 0;
    for line in text.lines() {
        let mut f = line.split_whitespace();
        assert_eq!(f.next(), Some("200"), "{line}");
        ms.push(f.next().unwrap().parse::<f64>().unwrap() * 1000.0);
        connects += f.next().unwrap().parse::<u32>().unwrap();
    }
    assert_eq!(ms.len(), n);
    let last = format!("198.51.100.{}", (n - 1) % 250 + 1);
    assert_eq!(records(bind.dns_port, HOME, "A"), [last]);
    // The first request pays the TLS handshake; the rest reuse the connection.
    let first = ms.remove(0);
    ms.sort_by(f64::total_cmp);
    let p = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    println!(
        "DynDNS2 over HTTPS/2 -> Envoy + filter -> BIND DoH, one signed UPDATE each: n={} connections={connects} first={first:.2} ms p50={:.2} ms p90={:.2} ms p99={:.2} ms max={:.2} ms",
        ms.len(),
        p(0.5),
        p(0.9),
        p(0.99),
        p(1.0)
    );
}

#[test]
fn the_bootstrap_without_extra_clusters_still_starts_and_with_them_has_the_relay() {
    if envoy_only("checks the rendered Envoy bootstrap") {
        return;
    }
    let dir = test_dir("rfc2136-bootstrap");
    let demo = fs::read_to_string(workspace_root().join("examples/dynedge.json")).unwrap();
    let e = gateway(&dir.join("plain"), demo, None);
    let yaml = fs::read_to_string(&e.bootstrap).unwrap();
    let code: String = yaml
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    assert!(!code.contains("bind_doh") && !code.contains("{{"), "{yaml}");
    drop(e);
    let e = gateway(
        &dir.join("relay"),
        plugin("bind_doh", KEY.name, KEY.secret, false),
        Some(Relay::bind(21999)),
    );
    let yaml = fs::read_to_string(&e.bootstrap).unwrap();
    assert!(
        yaml.contains("name: bind_doh") && yaml.contains("port_value: 21999"),
        "{yaml}"
    );
    assert!(yaml.contains("http2_protocol_options"), "{yaml}");
}
