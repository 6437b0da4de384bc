//! `cargo xtask up --dnssec` as a user runs it, on free ports: the zone is signed (PowerDNS, or
//! BIND with `--backend rfc2136`), and the `delv` command it prints validates an update made
//! through the gateway.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use dynedge_envoy::free_port;
use support::{update, Up};

fn signed_up_validates_an_update(name: &str, args: &[&str]) {
    let (https, dns, doh, api) = (free_port(), free_port(), free_port(), free_port());
    let up = Up::start(
        name,
        args,
        &[
            ("DYNEDGE_HTTPS_PORT", https),
            ("DYNEDGE_DNS_PORT", dns),
            ("DYNEDGE_DOH_PORT", doh),
            ("DYNEDGE_API_PORT", api),
        ],
    );
    let ds = std::fs::read_to_string(up.value_after("DS records (for the parent zone):")).unwrap();
    assert!(ds.starts_with("dyn.example.test. IN DS "), "{ds}");
    assert_eq!(
        update(https, &up.cacert(), "192.0.2.71"),
        "good 192.0.2.71\n"
    );
    // The check exactly as printed.
    let delv = up
        .output
        .iter()
        .map(|l| l.trim())
        .find(|l| l.starts_with("delv ") && l.ends_with(" home.dyn.example.test A"))
        .unwrap_or_else(|| panic!("no delv line in:\n{}", up.output.join("\n")));
    let words: Vec<&str> = delv.split_whitespace().collect();
    // BIND publishes an inline-signed update a moment after it acknowledged it.
    let deadline = Instant::now() + Duration::from_secs(15);
    let (out, text) = loop {
        let out = Command::new(words[0]).args(&words[1..]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("192.0.2.71") || Instant::now() > deadline {
            break (out, text);
        }
        thread::sleep(Duration::from_millis(200));
    };
    assert!(
        text.lines().any(|l| l == "; fully validated") && text.contains("IN\tA\t192.0.2.71"),
        "{delv}:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn up_dnssec_signs_the_powerdns_zone_and_its_delv_line_validates_an_update() {
    signed_up_validates_an_update("dnssec-powerdns", &["--dnssec"]);
}

#[test]
fn up_dnssec_with_the_rfc2136_backend_signs_the_bind_zone_and_its_delv_line_validates_an_update() {
    signed_up_validates_an_update("dnssec-rfc2136", &["--dnssec", "--backend", "rfc2136"]);
}
