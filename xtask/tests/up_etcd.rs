//! `cargo xtask up --store etcd --gateways 3` as a user runs it, on free ports, with Envoy
//! gateways and with dynedge-pingora ones (`--proxy pingora`): an address written through
//! gateway 1 is `nochg` through gateway 3, and SIGTERM stops everything (every port free again).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use dynedge_envoy::{free_port, free_port_block, port_is_free};
use support::{update, Up};

#[test]
fn up_with_the_etcd_store_serves_three_gateways_sharing_one_truth_and_sigterm_stops_it_all() {
    three_gateways_on_etcd("etcd", &[]);
}

#[test]
fn up_with_the_etcd_store_and_the_pingora_proxy_serves_three_gateways_sharing_one_truth() {
    three_gateways_on_etcd("etcd-pingora", &["--proxy", "pingora"]);
}

fn three_gateways_on_etcd(name: &str, proxy: &[&str]) {
    // `xtask up` counts up from each base: gateways https..+2, the PowerDNS front at api+1,
    // etcd clients etcd..+2 and peers etcd+10..+12.
    let (https, dns, api, etcd) = (
        free_port_block(3),
        free_port(),
        free_port_block(2),
        free_port_block(13),
    );
    let mut up = Up::start(
        name,
        &[&["--store", "etcd", "--gateways", "3"], proxy].concat(),
        &[
            ("DYNEDGE_HTTPS_PORT", https),
            ("DYNEDGE_DNS_PORT", dns),
            ("DYNEDGE_API_PORT", api),
            ("DYNEDGE_ETCD_PORT", etcd),
        ],
    );
    let cacert = up.dir.join("etcd/tls/cert.pem");
    let first = update(https, &cacert, "192.0.2.61");
    let third = update(https + 2, &cacert, "192.0.2.61");
    up.terminate();
    let status = up.wait_exit();
    assert!(
        first == "good 192.0.2.61\n" || first == "nochg 192.0.2.61\n",
        "{first}"
    );
    assert_eq!(third, "nochg 192.0.2.61\n");
    assert!(status.success(), "{status}:\n{}", up.output.join("\n"));
    for port in [
        https,
        https + 1,
        https + 2,
        dns,
        api,
        api + 1,
        etcd,
        etcd + 1,
        etcd + 2,
    ] {
        assert!(port_is_free(port), "port {port} still in use");
    }
}
