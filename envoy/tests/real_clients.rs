//! Real DDNS clients (ddclient, inadyn) configured from `examples/` against the gateway. The
//! verdict is what DNS serves afterwards, not the client's exit status (inadyn exits 0 when the
//! TLS handshake fails; ddclient exits 0 on an HTTP 500).

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use dynedge_envoy::workspace_root;
use support::*;

/// `examples/{name}` with the demo's port and paths replaced by this stack's, written 0600.
fn example_for(stack: &Stack, name: &str) -> std::path::PathBuf {
    let text = fs::read_to_string(workspace_root().join("examples").join(name)).unwrap();
    assert!(text.contains("127.0.0.1:8443") && text.contains(".run/tls/cert.pem"));
    let run = stack.dir.join("client");
    fs::create_dir_all(&run).unwrap();
    let text = text
        .replace("127.0.0.1:8443", &format!("127.0.0.1:{}", stack.envoy.port))
        .replace(".run/tls/cert.pem", &stack.cacert().display().to_string())
        .replace(".run/", &format!("{}/", run.display()));
    let path = run.join(name);
    fs::write(&path, text).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn client_run(cmd: &mut Command, cwd: &Path) -> String {
    let (_, out) = run_quiet(cmd.current_dir(cwd));
    out
}

#[test]
fn ddclient_configured_from_the_example_updates_the_a_record_over_https() {
    let stack = Stack::start("ddclient");
    let conf = example_for(&stack, "ddclient.conf");
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
    let conf = example_for(&stack, "inadyn.conf");
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
