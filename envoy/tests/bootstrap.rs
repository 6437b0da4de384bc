//! The bootstrap itself: Envoy refuses to run with a plugin configuration the filter rejects
//! (fail closed), rather than serving updates without authentication.

mod support;

use dynedge_envoy::{wasm_file, Certificate, Envoy, EnvoyConfig, Proxy};
use support::*;

#[test]
fn a_plugin_configuration_the_filter_rejects_keeps_envoy_from_starting() {
    let proxy = Proxy::from_env().unwrap();
    let wasm = match proxy {
        Proxy::Envoy => wasm_file().unwrap_or_else(|e| panic!("{e}")),
        Proxy::Pingora => Default::default(),
    };
    let dir = test_dir("bad_plugin_config");
    let mut cfg = plugin_config_value(free_port());
    cfg["backends"]["pdns"]["type"] = "no-such-backend".into();
    let started = Envoy::start_proxy(
        proxy,
        &dir.join("envoy"),
        &EnvoyConfig {
            listen_address: "127.0.0.1".into(),
            listen_port: free_port(),
            certificate: Certificate::self_signed(&dir.join("tls")).unwrap(),
            wasm,
            plugin_config: cfg.to_string(),
            pdns_api_port: free_port(),
            access_log: dir.join("access.log"),
            webhook_port: None,
        },
    );
    let Err(why) = started else {
        panic!(
            "{} started with a configuration the filter rejects",
            proxy.name()
        );
    };
    if proxy == Proxy::Envoy {
        assert!(why.contains("Unable to create Wasm plugin"), "{why}");
    }
    // The filter's own message names what is wrong.
    assert!(why.contains("no-such-backend"), "{why}");
}

/// A client that holds a connection open without finishing a request, the way slowloris does:
/// `python3` with `ssl` (the test needs no TLS crate). Prints `closed` when Envoy ended the
/// connection within `wait` seconds, `open` otherwise.
const SLOW_CLIENT: &str = r#"
import socket, ssl, sys, time
port, ca, mode, wait = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
deadline = time.monotonic() + wait
s = socket.create_connection(("127.0.0.1", port))
try:
    if mode != "no-tls":
        ctx = ssl.create_default_context(cafile=ca)
        s = ctx.wrap_socket(s, server_hostname="localhost")
    if mode == "partial-headers":
        s.sendall(b"GET /nic/update?hostname=a HTTP/1.1\r\nHost: localhost\r\nUser-Agent: slow")
    if mode == "slow-body":
        s.sendall(b"POST /nic/update HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4096\r\n\r\n")
    while time.monotonic() < deadline:
        if mode == "slow-body":
            s.sendall(b"a")
        s.settimeout(2)
        try:
            if not s.recv(4096):
                print("closed")
                print("after %.1f s" % (wait - (deadline - time.monotonic())), file=sys.stderr)
                sys.exit(0)
        except socket.timeout:
            pass
    print("open")
except (OSError, ssl.SSLError) as e:
    print("closed")
    print("after %.1f s: %s" % (wait - (deadline - time.monotonic()), e), file=sys.stderr)
"#;

/// Every way of holding a connection without a complete request ends in the proxy closing it,
/// well before Envoy's defaults would (none for headers, 5 min idle stream, 1 h idle
/// connection): the bootstrap's handshake, header, request and idle timeouts. On Pingora only
/// the request timeout takes part (pingora-module/src/timeouts.rs): Pingora 0.9 runs the TLS
/// handshake and reads a connection's first request headers under fixed 60 s timeouts, before
/// any hook of the proxy, so `no-tls`, `idle-after-tls` and `partial-headers` stay connected
/// past the 45 s of this test there.
#[test]
fn slow_clients_are_disconnected_by_the_bootstrap_timeouts() {
    let proxy = Proxy::from_env().unwrap();
    let (wasm, modes): (_, &[&str]) = match proxy {
        Proxy::Envoy => (
            wasm_file().unwrap_or_else(|e| panic!("{e}")),
            &["no-tls", "idle-after-tls", "partial-headers", "slow-body"],
        ),
        Proxy::Pingora => (Default::default(), &["slow-body"]),
    };
    let dir = test_dir("slow_clients");
    let cert = Certificate::self_signed(&dir.join("tls")).unwrap();
    let port = free_port();
    let envoy = Envoy::start_proxy(
        proxy,
        &dir.join("envoy"),
        &EnvoyConfig {
            listen_address: "127.0.0.1".into(),
            listen_port: port,
            certificate: cert.clone(),
            wasm,
            plugin_config: plugin_config(free_port()),
            pdns_api_port: free_port(),
            access_log: dir.join("access.log"),
            webhook_port: None,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // 45 s: above every timeout of the bootstrap (10, 15, 30 s), below the defaults.
    let probes: Vec<_> = modes
        .iter()
        .map(|&mode| {
            let ca = cert.cert.clone();
            std::thread::spawn(move || {
                let out = std::process::Command::new("python3")
                    .args(["-c", SLOW_CLIENT, &port.to_string()])
                    .arg(&ca)
                    .args([mode, "45"])
                    .output()
                    .unwrap_or_else(|e| panic!("python3: {e}"));
                let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
                (
                    mode,
                    text,
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                )
            })
        })
        .collect();
    let results: Vec<(&str, String, String)> =
        probes.into_iter().map(|p| p.join().unwrap()).collect();
    println!("{results:?}");
    let seen: Vec<(&str, &str)> = results.iter().map(|(m, o, _)| (*m, o.as_str())).collect();
    let closed: Vec<(&str, &str)> = modes.iter().map(|&m| (m, "closed")).collect();
    assert_eq!(seen, closed, "{results:#?}\n{}", envoy.daemon_log());
}
