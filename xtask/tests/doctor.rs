//! `cargo xtask doctor` and the install step of `up`, run on a PATH where the tools are missing.
//! apt-get there is a fake (a script that records its arguments and fails), so nothing is
//! installed on this machine.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A directory holding only the fake apt-get; the file it writes when called.
fn fake_apt(name: &str) -> (PathBuf, PathBuf) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("xtask-doctor")
        .join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let called = dir.join("apt-get-called");
    let script = dir.join("apt-get");
    fs::write(
        &script,
        format!("#!/bin/sh\necho \"$@\" >> '{}'\nexit 1\n", called.display()),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    (dir, called)
}

fn xtask(args: &[&str], path: &Path, envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(args)
        .env("PATH", path)
        .env("DYNEDGE_RUN_DIR", path.join("run"))
        // `cargo xtask test` runs its suites with installing switched off; these tests decide it.
        .env_remove("DYNEDGE_NO_INSTALL")
        .stdin(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").unwrap().uid() == 0
}

#[test]
fn doctor_marks_each_missing_tool_with_its_one_line_fix_and_fails() {
    let (path, called) = fake_apt("doctor");
    let out = xtask(&["doctor"], &path, &[]);
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    for (tool, fix) in [
        ("cmake", "apt-get install -y --no-install-recommends cmake"),
        ("g++", "apt-get install -y --no-install-recommends g++"),
        (
            "pdns_server",
            "apt-get install -y --no-install-recommends pdns-server",
        ),
        ("wasm32-wasip1", "rustup target add wasm32-wasip1"),
    ] {
        let row = all
            .lines()
            .position(|l| l.contains("MISSING") && l.split_whitespace().nth(1) == Some(tool))
            .unwrap_or_else(|| panic!("no MISSING row for {tool}:\n{all}"));
        let next = all.lines().nth(row + 1).unwrap_or("");
        assert!(
            next.contains(&format!("fix: {fix}")),
            "{tool}: {next}\n{all}"
        );
    }
    assert!(all.contains("xtask: missing: "), "{all}");
    assert!(!called.exists(), "doctor ran apt-get");
}

#[test]
fn up_with_install_switched_off_fails_naming_the_fix_and_never_runs_apt_get() {
    let (path, called) = fake_apt("no_install");
    let out = xtask(&["up", "--no-build"], &path, &[("DYNEDGE_NO_INSTALL", "1")]);
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("DYNEDGE_NO_INSTALL is set") && all.contains("cmake"),
        "{all}"
    );
    assert!(
        !called.exists(),
        "apt-get was called: {}",
        fs::read_to_string(&called).unwrap_or_default()
    );
}

#[test]
fn up_as_root_installs_what_is_missing_with_apt_get_before_anything_else() {
    if !is_root() {
        // Not root: the refusal with the apt-get line is what the user gets.
        let (path, called) = fake_apt("not_root");
        let out = xtask(&["up", "--no-build"], &path, &[]);
        let all = text(&out);
        assert!(!out.status.success(), "{all}");
        assert!(
            all.contains("apt-get install -y --no-install-recommends"),
            "{all}"
        );
        assert!(!called.exists());
        return;
    }
    let (path, called) = fake_apt("root");
    let out = xtask(&["up", "--no-build"], &path, &[]);
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    let calls = fs::read_to_string(&called).unwrap_or_else(|_| panic!("no apt-get:\n{all}"));
    // The fake fails `update`, so `install` is never reached and nothing else starts.
    assert_eq!(calls.trim(), "update -q", "{all}");
    assert!(all.contains("apt-get update failed"), "{all}");
    assert!(!all.contains("starting PowerDNS"), "{all}");
}
