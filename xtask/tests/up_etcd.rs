//! `cargo xtask up --store etcd --gateways 3` as a user runs it, on free ports: an address
//! written through gateway 1 is `nochg` through gateway 3, and SIGTERM stops everything (every
//! port free again).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use dynedge_envoy::{free_port, free_port_block, port_is_free};

fn update(port: u16, cacert: &std::path::Path) -> String {
    let out = Command::new("curl")
        .args(["-sS", "-u", "demo:demo-password", "--cacert"])
        .arg(cacert)
        .arg(format!(
            "https://127.0.0.1:{port}/nic/update?hostname=home.dyn.example.test&myip=192.0.2.61"
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn up_with_the_etcd_store_serves_three_gateways_sharing_one_truth_and_sigterm_stops_it_all() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("xtask-up-etcd");
    let _ = std::fs::remove_dir_all(&dir);
    // `xtask up` counts up from each base: gateways https..+2, the PowerDNS front at api+1,
    // etcd clients etcd..+2 and peers etcd+10..+12.
    let (https, dns, api, etcd) = (
        free_port_block(3),
        free_port(),
        free_port_block(2),
        free_port_block(13),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["up", "--no-build", "--store", "etcd", "--gateways", "3"])
        // Installing is `cargo xtask test`'s first step, never a test's: check only.
        .env("DYNEDGE_NO_INSTALL", "1")
        .env("DYNEDGE_HTTPS_PORT", https.to_string())
        .env("DYNEDGE_DNS_PORT", dns.to_string())
        .env("DYNEDGE_API_PORT", api.to_string())
        .env("DYNEDGE_ETCD_PORT", etcd.to_string())
        .env("DYNEDGE_RUN_DIR", &dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut output = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    while !output
        .iter()
        .any(|l: &String| l.contains("Ctrl-C stops everything"))
    {
        assert!(
            Instant::now() < deadline,
            "not ready:\n{}",
            output.join("\n")
        );
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
            output.push(line);
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("xtask up exited ({status}):\n{}", output.join("\n"));
        }
    }
    let cacert = dir.join("etcd/tls/cert.pem");
    let first = update(https, &cacert);
    let third = update(https + 2, &cacert);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    while let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
        output.push(line);
    }
    assert!(
        first == "good 192.0.2.61" || first == "nochg 192.0.2.61",
        "{first}"
    );
    assert_eq!(third, "nochg 192.0.2.61");
    assert!(status.success(), "{status}:\n{}", output.join("\n"));
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
