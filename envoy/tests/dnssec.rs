//! DNSSEC-signed zones updated live, end to end: a host's A and AAAA (DynDNS2) and an ACME
//! challenge's TXT (ApertoDNS `/txt`) go through the gateway (Envoy with the built filter, or
//! dynedge-pingora with `DYNEDGE_GATEWAY=pingora`) into a signed zone, then `delv` anchored on
//! the zone's DS (from the signer's key store, `dynedge_envoy::dnssec`) must report `; fully
//! validated` for the new data:
//! - PowerDNS (sqlite3, `pdnsutil secure-zone`): online signing, records changed over the API;
//! - BIND 9.18 (`dnssec-policy default`, inline signing): records changed by TSIG UPDATE over
//!   BIND's DoH (the RFC 2136 backend).
//!
//! A wrong anchor must make delv refuse the same data, so the validation is real.

// Test code: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fs;
use std::time::Instant;

use dynedge_envoy::dnssec::{Delv, TrustAnchor};
use dynedge_envoy::rfc2136::{self, Bind};
use dynedge_envoy::{free_port, poll_until, within, Envoy, DEMO_ZONE};
use support::rfc2136::{bearer_call, gateway, relay_plugin, Relay};
use support::{test_dir, Stack, APERTO, HOME};

const CHALLENGE: &str = "_acme-challenge.home.dyn.example.test";

fn update(envoy: &Envoy, query: &str) -> (u16, String) {
    bearer_call(envoy, &format!("/nic/update?{query}"), &[])
}

fn set_txt(envoy: &Envoy, value: &str) {
    let body = serde_json::json!({"hostname": CHALLENGE, "value": value}).to_string();
    let (status, text) = bearer_call(
        envoy,
        &format!("{APERTO}/txt"),
        &["-H", "content-type: application/json", "-d", &body],
    );
    let json: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    assert_eq!(
        (status, &json["success"]),
        (200, &serde_json::json!(true)),
        "{text}"
    );
}

/// delv's answer once it holds `want` (a signer may publish an update a moment after it
/// acknowledged it), or its last answer after 15 s.
fn delv_until(anchor: &TrustAnchor, port: u16, name: &str, rtype: &str, want: &str) -> Delv {
    let delv = || {
        anchor
            .delv(port, name, rtype)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    poll_until(within(15), "delv's answer", || {
        Some(delv()).filter(|d| d.records.iter().any(|r| r == want))
    })
    .unwrap_or_else(|_| delv())
}

fn assert_validated(anchor: &TrustAnchor, port: u16, name: &str, rtype: &str, want: &str) {
    let d = delv_until(anchor, port, name, rtype, want);
    assert!(d.validated, "{name}/{rtype} not validated:\n{}", d.text);
    assert_eq!(d.records, [want], "{name}/{rtype}:\n{}", d.text);
}

/// An anchor for the same key tag and algorithm with a different digest: delv must not trust
/// the zone through it.
fn wrong_anchor(anchor: &TrustAnchor, dir: &std::path::Path) -> TrustAnchor {
    let ds = &anchor.ds[0];
    let flipped: String = ds
        .digest
        .chars()
        .map(|c| if c == '0' { '1' } else { '0' })
        .collect();
    let text = format!(
        "{DEMO_ZONE}. IN DS {} {} 2 {flipped}\n",
        ds.key_tag, ds.algorithm
    );
    TrustAnchor::write(&dir.join("wrong-anchor"), DEMO_ZONE, &text).unwrap()
}

/// Through `envoy` into the signed zone served on `dns_port`: A+AAAA, a TXT challenge, a new
/// A; each validated by delv against `anchor`, and refused against a wrong one.
fn updates_validate(envoy: &Envoy, dns_port: u16, anchor: &TrustAnchor, dir: &std::path::Path) {
    let started = Instant::now();
    let q = format!("hostname={HOME}&myip=192.0.2.44&myipv6=2001:db8::44");
    assert_eq!(
        update(envoy, &q),
        (200, "good 192.0.2.44 2001:db8::44".into())
    );
    set_txt(envoy, "dnssec-challenge-token");
    assert_validated(anchor, dns_port, HOME, "A", "192.0.2.44");
    assert_validated(anchor, dns_port, HOME, "AAAA", "2001:db8::44");
    assert_validated(
        anchor,
        dns_port,
        CHALLENGE,
        "TXT",
        "\"dnssec-challenge-token\"",
    );

    // A changed address is served signed too (re-signed, not only the first signing).
    let q = format!("hostname={HOME}&myip=192.0.2.45");
    assert_eq!(update(envoy, &q), (200, "good 192.0.2.45".into()));
    assert_validated(anchor, dns_port, HOME, "A", "192.0.2.45");

    let wrong = wrong_anchor(anchor, dir);
    let d = wrong.delv(dns_port, HOME, "A").unwrap();
    assert!(!d.validated, "validated with a wrong anchor:\n{}", d.text);
    println!(
        "updates through the gateway, validated with delv: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn powerdns_signs_api_updates_from_the_gateway_and_delv_validates_them() {
    let mut stack = Stack::start("dnssec-powerdns");
    let anchor = stack
        .pdns
        .secure_zone(DEMO_ZONE)
        .unwrap_or_else(|e| panic!("{e}"));
    let ds = fs::read_to_string(&anchor.ds_file).unwrap();
    assert!(ds.contains(&format!("{DEMO_ZONE}. IN DS ")), "{ds}");
    let dns_port = stack.pdns.dns_port;
    updates_validate(&stack.envoy, dns_port, &anchor, &stack.dir);
}

#[test]
fn bind_inline_signs_rfc2136_updates_from_the_gateway_and_delv_validates_them() {
    let dir = test_dir("dnssec-bind");
    let (bind, anchor) = Bind::start_signed(
        &dir.join("bind"),
        free_port(),
        free_port(),
        &[rfc2136::DEMO_KEY],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut plugin = relay_plugin(
        rfc2136::DEMO_CLUSTER,
        rfc2136::DEMO_KEY.name,
        rfc2136::DEMO_KEY.secret,
    );
    plugin["backends"]["bind"]["authority"] = format!("127.0.0.1:{}", bind.doh_port).into();
    let envoy = gateway(&dir, plugin.to_string(), Some(Relay::bind(bind.doh_port)));
    updates_validate(&envoy, bind.dns_port, &anchor, &dir);
}
