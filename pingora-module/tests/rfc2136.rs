//! The RFC 2136 backend through the Pingora module: TSIG-signed UPDATE over DoH to real BIND,
//! whose DoH listener speaks HTTP/2 without TLS (the `h2c` cluster option).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use dynedge_envoy::rfc2136::{Bind, DEMO_KEY};

#[test]
fn an_update_through_bind_doh_over_h2c_is_good_then_nochg_and_bind_serves_it() {
    let dir = support::tempdir("rfc2136");
    support::make_certs(&dir);
    let (dns_port, doh_port) = (support::free_port(), support::free_port());
    let _bind = Bind::start(&dir.join("bind"), dns_port, doh_port, &[DEMO_KEY]).unwrap();
    let cfg = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/dynedge-rfc2136.json"
    ))
    .unwrap()
    .replace("127.0.0.1:18053", &format!("127.0.0.1:{doh_port}"));
    let upstream = support::Upstream::start(&dir);
    let gw = support::Gateway::start_with_cluster(
        &dir,
        &cfg,
        &format!("bind_doh=127.0.0.1:{doh_port},h2c"),
        upstream.port,
    );
    let q = "/nic/update?hostname=home.dyn.example.test&myip=192.0.2.23";
    let args = ["-u", "demo:demo-password", "-A", "t/1"];
    let r = gw.https(q, &args);
    assert_eq!(r.body, "good 192.0.2.23\n", "{}", gw.log());
    let out = support::run(std::process::Command::new("dig").args([
        "+short",
        "@127.0.0.1",
        "-p",
        &dns_port.to_string(),
        "home.dyn.example.test",
        "A",
    ]));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "192.0.2.23");
    assert_eq!(gw.https(q, &args).body, "nochg 192.0.2.23\n");
}
