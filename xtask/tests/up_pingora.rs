//! `cargo xtask up --proxy pingora` as a user runs it, on free ports, with the already built `dynedge-pingora` (`--no-build`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::channel;
use std::thread;
use std::time::{Duration, Instant};

use dynedge_envoy::{dig, free_port, port_is_free};

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn up_with_the_pingora_proxy_answers_an_update_and_sigterm_stops_everything() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("xtask-up-pingora");
    let _ = std::fs::remove_dir_all(&dir);
    let (https, dns, api) = (free_port(), free_port(), free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["up", "--no-build", "--proxy", "pingora"])
        // Installing is `cargo xtask test`'s first step, never a test's: check only.
        .env("DYNEDGE_NO_INSTALL", "1")
        .env("DYNEDGE_HTTPS_PORT", https.to_string())
        .env("DYNEDGE_DNS_PORT", dns.to_string())
        .env("DYNEDGE_API_PORT", api.to_string())
        .env("DYNEDGE_RUN_DIR", &dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = channel();
    let out = child.stdout.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut output = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !output
        .iter()
        .any(|l: &String| l.contains("stops everything"))
    {
        assert!(
            Instant::now() < deadline,
            "xtask up did not come up:\n{}",
            output.join("\n")
        );
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            output.push(line);
        }
    }
    let value_after = |prefix: &str| -> String {
        output
            .iter()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in:\n{}", output.join("\n")))
            .trim()
            .to_string()
    };
    let cacert = PathBuf::from(value_after("certificate (for --cacert):"));
    let pdns: u32 = value_after("PowerDNS pid ").parse().unwrap();
    let gateway: u32 = value_after("dynedge-pingora pid ").parse().unwrap();
    assert!(alive(pdns) && alive(gateway));

    let reply = Command::new("curl")
        .args(["-sS", "-u", "demo:demo-password", "--cacert"])
        .arg(&cacert)
        .arg(format!(
            "https://127.0.0.1:{https}/nic/update?hostname=home.dyn.example.test&myip=192.0.2.61"
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&reply.stdout), "good 192.0.2.61\n");
    assert_eq!(
        dig(dns, "home.dyn.example.test", "A").unwrap(),
        ["192.0.2.61"]
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "xtask up did not exit");
        thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    assert!(!alive(pdns), "PowerDNS {pdns} still runs");
    assert!(!alive(gateway), "dynedge-pingora {gateway} still runs");
    for port in [https, dns, api] {
        assert!(port_is_free(port), "port {port} still in use");
    }
}
