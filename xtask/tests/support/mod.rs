//! `cargo xtask up` as a user runs it, for the tests of its variants: our child on free ports,
//! its stdout collected line by line, stopped by its pid.
// Test support: failing loudly is its job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// `xtask up --no-build` running as our child.
pub struct Up {
    child: Child,
    lines: Receiver<String>,
    pub output: Vec<String>,
    /// Its `DYNEDGE_RUN_DIR`.
    pub dir: PathBuf,
}

impl Up {
    /// Starts `xtask up --no-build ARGS` with `ports` (`DYNEDGE_*_PORT` variables) in a fresh
    /// run directory named `name`, and waits until it says it is ready.
    pub fn start(name: &str, args: &[&str], ports: &[(&str, u16)]) -> Up {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("xtask-up")
            .join(name);
        let _ = std::fs::remove_dir_all(&dir);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
        cmd.args(["up", "--no-build"]).args(args);
        for (var, port) in ports {
            cmd.env(var, port.to_string());
        }
        let mut child = cmd
            // Installing is `cargo xtask test`'s first step, never a test's: check only.
            .env("DYNEDGE_NO_INSTALL", "1")
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
            dir,
        };
        up.wait_for("stops everything");
        up
    }

    /// Collects output until a line contains `needle` (or 180 s pass, or the output ends).
    pub fn wait_for(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(180);
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    let hit = line.contains(needle);
                    self.output.push(line);
                    if hit {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(_) => break,
            }
        }
        panic!(
            "xtask up never printed {needle:?}:\n{}",
            self.output.join("\n")
        );
    }

    /// The value after `prefix` on the line that starts with it (after trimming).
    pub fn value_after(&self, prefix: &str) -> String {
        self.output
            .iter()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{}", self.output.join("\n")))
            .trim()
            .to_string()
    }

    pub fn pid_of(&self, what: &str) -> u32 {
        self.value_after(&format!("{what} pid ")).parse().unwrap()
    }

    pub fn cacert(&self) -> PathBuf {
        PathBuf::from(self.value_after("certificate (for --cacert):"))
    }

    /// SIGTERM, as Ctrl-C would.
    pub fn terminate(&self) {
        signal(self.child.id(), "TERM");
    }

    pub fn wait_exit(&mut self) -> ExitStatus {
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

pub fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{sig} {pid}");
}

pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// A DynDNS2 update of the demo host as the demo user through `https_port`: the reply body.
pub fn update(https_port: u16, cacert: &Path, ip: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "-u", "demo:demo-password", "--cacert"])
        .arg(cacert)
        .arg(format!(
            "https://127.0.0.1:{https_port}/nic/update?hostname=home.dyn.example.test&myip={ip}"
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}
