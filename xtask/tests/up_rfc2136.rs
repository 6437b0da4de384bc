//! `cargo xtask up --backend rfc2136` as a user runs it, on free ports, not
//! the demo's: BIND instead of PowerDNS, updated through its DoH by
//! TSIG-signed UPDATEs; SIGTERM stops everything it started.
// Test support below: failing loudly is its job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use dynedge_envoy::{dig, free_port, port_is_free};

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn up_with_the_rfc2136_backend_serves_updates_through_bind_and_sigterm_stops_it() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("xtask-up-rfc2136");
    let _ = std::fs::remove_dir_all(&dir);
    let (https, dns, doh, api) = (free_port(), free_port(), free_port(), free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["up", "--no-build", "--backend", "rfc2136"])
        // Installing is `cargo xtask test`'s first step, never a test's: check only.
        .env("DYNEDGE_NO_INSTALL", "1")
        .env("DYNEDGE_HTTPS_PORT", https.to_string())
        .env("DYNEDGE_DNS_PORT", dns.to_string())
        .env("DYNEDGE_DOH_PORT", doh.to_string())
        .env("DYNEDGE_API_PORT", api.to_string())
        .env("DYNEDGE_RUN_DIR", &dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = channel();
    let out = child.stdout.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut output: Vec<String> = Vec::new();
    let wait_for = |needle: &str, output: &mut Vec<String>| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            match lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    let hit = line.contains(needle);
                    output.push(line);
                    if hit {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(_) => break,
            }
        }
        let _ = Command::new("kill").arg(child.id().to_string()).status();
        panic!("xtask up never printed {needle:?}:\n{}", output.join("\n"));
    };
    wait_for("stops everything", &mut output);
    let value = |prefix: &str| -> String {
        output
            .iter()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| panic!("no {prefix:?} in:\n{}", output.join("\n")))
    };
    let cacert = PathBuf::from(value("certificate (for --cacert):"));
    let bind: u32 = value("BIND pid").parse().unwrap();
    let envoy: u32 = value("Envoy pid").parse().unwrap();
    assert!(output
        .iter()
        .any(|l| l.contains("examples/dynedge-rfc2136.json")));

    for (ip, want) in [
        ("192.0.2.70", "good 192.0.2.70\n"),
        ("192.0.2.70", "nochg 192.0.2.70\n"),
    ] {
        let out = Command::new("curl")
            .args(["-sS", "-u", "demo:demo-password", "--cacert"])
            .arg(&cacert)
            .arg(format!(
                "https://127.0.0.1:{https}/nic/update?hostname=home.dyn.example.test&myip={ip}"
            ))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    }
    assert_eq!(
        dig(dns, "home.dyn.example.test", "A").unwrap(),
        ["192.0.2.70"]
    );
    let log = std::fs::read_to_string(dir.join("bind/named.log")).unwrap();
    assert!(
        log.contains("dynedge-demo-key"),
        "BIND did not log the signed update:\n{log}"
    );

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "xtask up did not exit");
        thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    assert!(!alive(bind), "BIND {bind} still runs");
    assert!(!alive(envoy), "Envoy {envoy} still runs");
    for port in [https, dns, doh] {
        assert!(port_is_free(port), "port {port} still in use");
    }
}
