//! The filter on the test host against a **real** PowerDNS (pdns_server + sqlite3, started
//! by the Envoy suite's harness on free ports and stopped by pid on Drop): callouts are
//! forwarded over HTTP/1.1, and the result is checked with `dig`, not through the API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test]

mod common;

use dynedge_envoy::{free_port, PowerDns, DEMO_ZONE};
use dynedge_test_host::{Host, Request};

const DEMO: &str = include_str!("../../examples/dynedge.json");
const API_KEY: &str = "dynedge-demo-pdns-key"; // the demo configuration's key, test-only

fn start_pdns() -> PowerDns {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-host-pdns");
    let mut pdns =
        PowerDns::start(&dir, free_port(), free_port(), API_KEY).unwrap_or_else(|e| panic!("{e}"));
    pdns.create_zone(DEMO_ZONE)
        .unwrap_or_else(|e| panic!("{e}"));
    pdns
}

fn dig(pdns: &PowerDns, name: &str, rtype: &str) -> String {
    pdns.lookup(name, rtype)
        .unwrap_or_else(|e| panic!("{e}"))
        .join("\n")
}

fn update(ip: &str) -> Request {
    Request::get(&format!(
        "/nic/update?hostname=home.dyn.example.test&myip={ip}"
    ))
    .header("user-agent", "dynedge-test/1")
    .header("authorization", "Basic ZGVtbzpkZW1vLXBhc3N3b3Jk") // demo:demo-password
    .peer("192.0.2.200:5555")
}

#[test]
fn updates_land_in_a_real_powerdns_and_resolve_with_dig() {
    let pdns = start_pdns();

    let mut config: serde_json::Value = serde_json::from_str(DEMO).unwrap();
    config["backends"]["pdns"]["authority"] = format!("127.0.0.1:{}", pdns.api_port).into();
    let mut host = Host::load(common::filter_wasm()).unwrap();
    assert!(
        host.configure(config.to_string()).unwrap(),
        "{}",
        host.log_text()
    );
    host.forward_to(&[("pdns_api", &format!("127.0.0.1:{}", pdns.api_port))])
        .unwrap();

    let text = |host: &mut Host, ip: &str| {
        let ctx = host.request(update(ip)).unwrap();
        host.local_response(ctx)
            .map(|r| r.text())
            .unwrap_or_else(|| panic!("{}", host.log_text()))
    };
    assert_eq!(text(&mut host, "192.0.2.7"), "good 192.0.2.7\n");
    assert_eq!(dig(&pdns, "home.dyn.example.test", "A"), "192.0.2.7");
    assert_eq!(text(&mut host, "192.0.2.7"), "nochg 192.0.2.7\n");
    assert_eq!(text(&mut host, "2001:db8::7"), "good 2001:db8::7\n");
    assert_eq!(dig(&pdns, "home.dyn.example.test", "AAAA"), "2001:db8::7");
    assert!(host.abi_errors().is_empty(), "{:?}", host.abi_errors());
}
