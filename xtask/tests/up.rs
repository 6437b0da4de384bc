//! `cargo xtask up` as a user runs it (on free ports, not the demo's): it serves
//! updates, SIGTERM stops everything it started, and a dying child stops the rest.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use dynedge_envoy::{dig, free_port, port_is_free};
use support::{alive, signal, update, Up};

/// `xtask up` with PowerDNS and Envoy on its own free ports.
fn start(name: &str) -> (Up, [u16; 3]) {
    let ports = [free_port(), free_port(), free_port()];
    let up = Up::start(
        name,
        &[],
        &[
            ("DYNEDGE_HTTPS_PORT", ports[0]),
            ("DYNEDGE_DNS_PORT", ports[1]),
            ("DYNEDGE_API_PORT", ports[2]),
        ],
    );
    (up, ports)
}

#[test]
fn up_answers_an_update_and_sigterm_stops_everything_it_started() {
    let (mut up, [https, dns, api]) = start("sigterm");
    let (pdns, envoy) = (up.pid_of("PowerDNS"), up.pid_of("Envoy"));
    assert!(alive(pdns) && alive(envoy));

    assert_eq!(
        update(https, &up.cacert(), "192.0.2.60"),
        "good 192.0.2.60\n"
    );
    assert_eq!(
        dig(dns, "home.dyn.example.test", "A").unwrap(),
        ["192.0.2.60"]
    );

    up.terminate();
    let status = up.wait_exit();
    assert!(status.success(), "{status}:\n{}", up.output.join("\n"));
    assert!(up.output.iter().any(|l| l.contains("SIGTERM received")));
    assert!(!alive(pdns), "PowerDNS {pdns} still runs");
    assert!(!alive(envoy), "Envoy {envoy} still runs");
    for port in [https, dns, api] {
        assert!(port_is_free(port), "port {port} still in use");
    }
}

#[test]
fn when_powerdns_dies_up_stops_envoy_and_fails_naming_powerdns() {
    let (mut up, _) = start("child_dies");
    let (pdns, envoy) = (up.pid_of("PowerDNS"), up.pid_of("Envoy"));
    signal(pdns, "KILL");
    let status = up.wait_exit();
    assert!(
        !status.success(),
        "xtask up exited successfully after PowerDNS died"
    );
    assert!(
        up.output.iter().any(|l| l.contains("PowerDNS exited")),
        "{}",
        up.output.join("\n")
    );
    assert!(!alive(envoy), "Envoy {envoy} still runs");
}
