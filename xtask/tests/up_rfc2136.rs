//! `cargo xtask up --backend rfc2136` as a user runs it, on free ports, not the demo's: BIND
//! instead of PowerDNS, updated through its DoH by TSIG-signed UPDATEs; SIGTERM stops
//! everything it started.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use dynedge_envoy::{dig, free_port, port_is_free};
use support::{alive, update, Up};

#[test]
fn up_with_the_rfc2136_backend_serves_updates_through_bind_and_sigterm_stops_it() {
    let (https, dns, doh, api) = (free_port(), free_port(), free_port(), free_port());
    let mut up = Up::start(
        "rfc2136",
        &["--backend", "rfc2136"],
        &[
            ("DYNEDGE_HTTPS_PORT", https),
            ("DYNEDGE_DNS_PORT", dns),
            ("DYNEDGE_DOH_PORT", doh),
            ("DYNEDGE_API_PORT", api),
        ],
    );
    let cacert = up.cacert();
    let bind = up.pid_of("BIND");
    let envoy = up.pid_of("Envoy");
    assert!(up
        .output
        .iter()
        .any(|l| l.contains("examples/dynedge-rfc2136.json")));

    for (ip, want) in [
        ("192.0.2.70", "good 192.0.2.70\n"),
        ("192.0.2.70", "nochg 192.0.2.70\n"),
    ] {
        assert_eq!(update(https, &cacert, ip), want);
    }
    assert_eq!(
        dig(dns, "home.dyn.example.test", "A").unwrap(),
        ["192.0.2.70"]
    );
    let log = std::fs::read_to_string(up.dir.join("bind/named.log")).unwrap();
    assert!(
        log.contains("dynedge-demo-key"),
        "BIND did not log the signed update:\n{log}"
    );

    up.terminate();
    let status = up.wait_exit();
    assert!(status.success(), "{status}");
    assert!(!alive(bind), "BIND {bind} still runs");
    assert!(!alive(envoy), "Envoy {envoy} still runs");
    for port in [https, dns, doh] {
        assert!(port_is_free(port), "port {port} still in use");
    }
}
