//! The filter on the test host against a **real** PowerDNS (pdns_server + sqlite3, started
//! here on the test-host port range and stopped by pid on Drop): callouts are forwarded over
//! HTTP/1.1, and the result is checked with `dig`, not through the API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dynedge_test_host::{Host, Request};

const DEMO: &str = include_str!("../../examples/dynedge.json");
const DNS_PORT: u16 = 23053;
const API_PORT: u16 = 23081;
const API_KEY: &str = "dynedge-demo-pdns-key"; // the demo configuration's key, test-only

struct Pdns {
    child: Child,
    dir: PathBuf,
}

impl Drop for Pdns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_pdns() -> Pdns {
    let dir = std::env::temp_dir().join(format!("dynedge-test-host-pdns-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let schema = std::fs::read("/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql")
        .expect("pdns-backend-sqlite3 is installed");
    let mut sqlite = Command::new("sqlite3")
        .arg(dir.join("pdns.sqlite3"))
        .stdin(Stdio::piped())
        .spawn()
        .expect("sqlite3 is installed");
    sqlite.stdin.take().unwrap().write_all(&schema).unwrap();
    assert!(sqlite.wait().unwrap().success());
    let conf = format!(
        "launch=gsqlite3\ngsqlite3-database={db}\ngsqlite3-dnssec=no\nlocal-address=127.0.0.1\n\
         local-port={DNS_PORT}\napi=yes\napi-key={API_KEY}\nwebserver=yes\nwebserver-address=127.0.0.1\n\
         webserver-port={API_PORT}\nwebserver-allow-from=127.0.0.1\nsocket-dir={dir}\ndaemon=no\n\
         guardian=no\nwrite-pid=no\ndisable-syslog=yes\nloglevel=4\nzone-cache-refresh-interval=0\n\
         cache-ttl=0\nquery-cache-ttl=0\nnegquery-cache-ttl=0\n\
         default-soa-content=ns1.@ hostmaster.@ 0 10800 3600 604800 3600\nsecurity-poll-suffix=\n",
        db = dir.join("pdns.sqlite3").display(),
        dir = dir.display()
    );
    std::fs::write(dir.join("pdns.conf"), conf).unwrap();
    let child = Command::new("pdns_server")
        .arg(format!("--config-dir={}", dir.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("pdns_server is installed (apt-get install pdns-server pdns-backend-sqlite3)");
    let pdns = Pdns { child, dir };
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", API_PORT)).is_ok() {
            return pdns;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("PowerDNS API did not come up on port {API_PORT}");
}

/// A minimal HTTP/1.1 exchange with the PowerDNS API (test setup only).
fn api(method: &str, path: &str, body: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", API_PORT)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nx-api-key: {API_KEY}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn dig(name: &str, rtype: &str) -> String {
    let out = Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &DNS_PORT.to_string(),
            "+short",
            name,
            rtype,
        ])
        .output()
        .expect("dig is installed");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
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
    let _pdns = start_pdns();
    let created = api(
        "POST",
        "/api/v1/servers/localhost/zones",
        r#"{"name":"dyn.example.test.","kind":"Native","nameservers":["ns1.dyn.example.test."]}"#,
    );
    assert!(created.starts_with("HTTP/1.1 201"), "{created}");

    let mut config: serde_json::Value = serde_json::from_str(DEMO).unwrap();
    config["backends"]["pdns"]["authority"] = format!("127.0.0.1:{API_PORT}").into();
    let mut host = Host::load(common::filter_wasm()).unwrap();
    assert!(
        host.configure(config.to_string()).unwrap(),
        "{}",
        host.log_text()
    );
    host.forward_to(&[("pdns_api", &format!("127.0.0.1:{API_PORT}"))])
        .unwrap();

    let text = |host: &mut Host, ip: &str| {
        let ctx = host.request(update(ip)).unwrap();
        host.local_response(ctx)
            .map(|r| r.text())
            .unwrap_or_else(|| panic!("{}", host.log_text()))
    };
    assert_eq!(text(&mut host, "192.0.2.7"), "good 192.0.2.7\n");
    assert_eq!(dig("home.dyn.example.test", "A"), "192.0.2.7");
    assert_eq!(text(&mut host, "192.0.2.7"), "nochg 192.0.2.7\n");
    assert_eq!(text(&mut host, "2001:db8::7"), "good 2001:db8::7\n");
    assert_eq!(dig("home.dyn.example.test", "AAAA"), "2001:db8::7");
    assert!(host.abi_errors().is_empty(), "{:?}", host.abi_errors());
}
