//! `cargo xtask up --proxy pingora` as a user runs it, on free ports, with the already built
//! `dynedge-pingora` (`--no-build`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use dynedge_envoy::{dig, free_port, port_is_free};
use support::{alive, update, Up};

#[test]
fn up_with_the_pingora_proxy_answers_an_update_and_sigterm_stops_everything() {
    let (https, dns, api) = (free_port(), free_port(), free_port());
    let mut up = Up::start(
        "pingora",
        &["--proxy", "pingora"],
        &[
            ("DYNEDGE_HTTPS_PORT", https),
            ("DYNEDGE_DNS_PORT", dns),
            ("DYNEDGE_API_PORT", api),
        ],
    );
    let pdns = up.pid_of("PowerDNS");
    let gateway = up.pid_of("dynedge-pingora");
    assert!(alive(pdns) && alive(gateway));

    assert_eq!(
        update(https, &up.cacert(), "192.0.2.61"),
        "good 192.0.2.61\n"
    );
    assert_eq!(
        dig(dns, "home.dyn.example.test", "A").unwrap(),
        ["192.0.2.61"]
    );

    up.terminate();
    let status = up.wait_exit();
    assert!(status.success(), "{status}");
    assert!(!alive(pdns), "PowerDNS {pdns} still runs");
    assert!(!alive(gateway), "dynedge-pingora {gateway} still runs");
    for port in [https, dns, api] {
        assert!(port_is_free(port), "port {port} still in use");
    }
}
