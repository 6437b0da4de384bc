//! `cargo xtask up` as a user runs it (on free ports, not the demo's): it serves
//! updates, SIGTERM stops everything it started, and a dying child stops the rest.
// Test support below: failing loudly is its job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use dynedge_envoy::{dig, free_port, port_is_free};

/// `xtask up --no-build` running as our child, its stdout collected line by line.
struct Up {
    child: Child,
    lines: Receiver<String>,
    output: Vec<String>,
    https: u16,
    dns: u16,
    api: u16,
}

impl Up {
    fn start(name: &str) -> Up {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("xtask-up")
            .join(name);
        let _ = std::fs::remove_dir_all(&dir);
        let (https, dns, api) = (free_port(), free_port(), free_port());
        let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["up", "--no-build"])
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
        let (tx, lines) = channel();
        let out = child.stdout.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut up = Up {
            child,
            lines,
            output: Vec::new(),
            https,
            dns,
            api,
        };
        up.wait_for("stops everything");
        up
    }

    /// Collects output until a line contains `needle` (or 120 s pass, or the output ends).
    fn wait_for(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    let hit = line.contains(needle);
                    self.output.push(line);
                    if hit {
                        return;
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(_) => break,
            }
        }
        panic!(
            "xtask up never printed {needle:?}:\n{}",
            self.output.join("\n")
        );
    }

    /// The value after `prefix` on the line that starts with it (after trimming).
    fn value_after(&self, prefix: &str) -> String {
        self.output
            .iter()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{}", self.output.join("\n")))
            .trim()
            .to_string()
    }

    fn pid_of(&self, what: &str) -> u32 {
        self.value_after(&format!("{what} pid ")).parse().unwrap()
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Drain what it printed on the way out.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.output.push(line);
                }
                return status;
            }
            assert!(Instant::now() < deadline, "xtask up did not exit");
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        // SIGTERM lets it stop its own children; KILL only if it does not.
        if let Ok(None) = self.child.try_wait() {
            signal(self.child.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{sig} {pid}");
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn up_answers_an_update_and_sigterm_stops_everything_it_started() {
    let mut up = Up::start("sigterm");
    let cacert = PathBuf::from(up.value_after("certificate (for --cacert):"));
    let (pdns, envoy) = (up.pid_of("PowerDNS"), up.pid_of("Envoy"));
    assert!(alive(pdns) && alive(envoy));

    let out = Command::new("curl")
        .args(["-sS", "-u", "demo:demo-password", "--cacert"])
        .arg(&cacert)
        .arg(format!(
            "https://127.0.0.1:{}/nic/update?hostname=home.dyn.example.test&myip=192.0.2.60",
            up.https
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "good 192.0.2.60\n");
    assert_eq!(
        dig(up.dns, "home.dyn.example.test", "A").unwrap(),
        ["192.0.2.60"]
    );

    signal(up.child.id(), "TERM");
    let status = up.wait_exit();
    assert!(status.success(), "{status}:\n{}", up.output.join("\n"));
    assert!(up.output.iter().any(|l| l.contains("SIGTERM received")));
    assert!(!alive(pdns), "PowerDNS {pdns} still runs");
    assert!(!alive(envoy), "Envoy {envoy} still runs");
    for port in [up.https, up.dns, up.api] {
        assert!(port_is_free(port), "port {port} still in use");
    }
}

#[test]
fn when_powerdns_dies_up_stops_envoy_and_fails_naming_powerdns() {
    let mut up = Up::start("child_dies");
    let (pdns, envoy) = (up.pid_of("PowerDNS"), up.pid_of("Envoy"));
    signal(pdns, "KILL");
    let status = up.wait_exit();
    assert!(
        !status.success(),
        "xtask up exited successfully after PowerDNS died"
    );
    assert!(
        up.output.iter().any(|l| l.contains("PowerDNS exited")),
        "{}",
        up.output.join("\n")
    );
    assert!(!alive(envoy), "Envoy {envoy} still runs");
}
