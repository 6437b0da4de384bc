//! Real DDNS clients (ddclient, inadyn) configured from `examples/` against the gateway. The
//! verdict is what DNS serves afterwards, not the client's exit status (inadyn exits 0 when the
//! TLS handshake fails; ddclient exits 0 on an HTTP 500).

mod support;

use std::fs;
use std::path::Path;
use std::process::Command;

use support::*;

fn client_run(cmd: &mut Command, cwd: &Path) -> String {
    let (_, out) = run_quiet(cmd.current_dir(cwd));
    out
}

#[test]
fn ddclient_configured_from_the_example_updates_the_a_record_over_https() {
    let stack = Stack::start("ddclient");
    let conf = stack.example("ddclient.conf");
    let out = client_run(
        Command::new("ddclient")
            .args([
                "-daemon=0",
                "-foreground",
                "-verbose",
                "-noquiet",
                "-force",
                "-file",
            ])
            .arg(&conf),
        &stack.dir,
    );
    assert_eq!(
        stack.records(HOME, "A"),
        ["192.0.2.55"],
        "ddclient said:\n{out}"
    );
    assert!(out.contains("good"), "ddclient said:\n{out}");
    assert!(
        !out.contains(DEMO_PASSWORD),
        "ddclient printed the password"
    );
}

#[test]
fn inadyn_configured_from_the_example_updates_the_a_record_over_https() {
    let stack = Stack::start("inadyn");
    let conf = stack.example("inadyn.conf");
    let cache = stack.dir.join("client/inadyn-cache");
    fs::create_dir_all(&cache).unwrap();
    let out = client_run(
        Command::new("inadyn")
            .args([
                "--once",
                "--foreground",
                "--force",
                "-l",
                "debug",
                "--no-pidfile",
                "-f",
            ])
            .arg(&conf)
            .arg("--cache-dir")
            .arg(&cache),
        &stack.dir,
    );
    assert_eq!(
        stack.records(HOME, "A"),
        ["192.0.2.56"],
        "inadyn said:\n{out}"
    );
    // inadyn speaks HTTP/1.0 with a Host header without the port: Envoy must take it.
    let log = stack.access_log("/nic/update", 1);
    assert!(log.contains("\"GET /nic/update HTTP/1.0\" 200"), "{log}");
}

#[test]
fn inadyn_sends_a_percent_encoded_ipv6_address_that_lands_as_aaaa() {
    let stack = Stack::start("inadyn_v6");
    let conf = stack.example("inadyn.conf");
    // inadyn encodes %i as `2001%3adb8%3a%3a56` (lowercase hex); allow-ipv6 is in the example.
    let text = std::fs::read_to_string(&conf)
        .unwrap()
        .replace("192.0.2.56", "2001:db8::56");
    std::fs::write(&conf, text).unwrap();
    let cache = stack.dir.join("client/inadyn-cache");
    fs::create_dir_all(&cache).unwrap();
    let out = client_run(
        Command::new("inadyn")
            .args([
                "--once",
                "--foreground",
                "--force",
                "-l",
                "debug",
                "--no-pidfile",
                "-f",
            ])
            .arg(&conf)
            .arg("--cache-dir")
            .arg(&cache),
        &stack.dir,
    );
    assert_eq!(
        stack.records(HOME, "AAAA"),
        ["2001:db8::56"],
        "inadyn said:\n{out}"
    );
    assert!(stack.records(HOME, "A").is_empty());
}
