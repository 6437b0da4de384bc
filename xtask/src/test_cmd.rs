//! `cargo xtask test` (and `--smoke`): every suite, then a summary.

use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use dynedge_envoy::workspace_root;

use crate::fuzz::fuzz_suite;
use crate::tools::{self, Need};
use crate::{cargo, pingora, step, wasm, Result};

pub struct Suite {
    pub name: &'static str,
    pub ok: bool,
    pub passed: u64,
    pub failed: u64,
    pub seconds: f64,
    /// Everything the suite printed, for the secrets check.
    pub output: Vec<String>,
    /// Why the suite failed, when more than its failed count says it.
    pub failure: Option<String>,
}

/// Runs `cargo test ...`, echoing its output and adding up the `test result:` lines. A step
/// that runs tests (all but `--no-run`) and runs none fails: its filter or target names
/// nothing, so it checks nothing.
fn cargo_test(name: &'static str, args: &[&str], envs: &[(&str, &OsStr)]) -> Suite {
    step(&format!("cargo test {}", args.join(" ")));
    let started = Instant::now();
    let mut cmd = cargo();
    // --no-fail-fast: one failing test binary must not hide the results of the others.
    cmd.current_dir(workspace_root())
        .args(["test", "--no-fail-fast"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let (mut passed, mut failed) = (0, 0);
    let mut output = Vec::new();
    let exited_ok = match cmd.spawn() {
        Ok(mut child) => {
            if let Some(out) = child.stdout.take() {
                for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
                    println!("{line}");
                    if let Some((p, f)) = result_line(&line) {
                        passed += p;
                        failed += f;
                    }
                    output.push(line);
                }
            }
            child.wait().is_ok_and(|s| s.success())
        }
        Err(e) => {
            eprintln!("xtask: cannot run cargo: {e}");
            false
        }
    };
    let failure = step_failure(exited_ok, passed, failed, !args.contains(&"--no-run"));
    if let Some(why) = &failure {
        println!("xtask: FAIL {name}: {why}");
    }
    Suite {
        name,
        ok: failure.is_none(),
        passed,
        failed,
        seconds: started.elapsed().as_secs_f64(),
        output,
        failure,
    }
}

/// (passed, failed) of a libtest summary line (`test result: ok. 12 passed; 0 failed; ...`).
fn result_line(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("test result: ")?;
    Some((count_before(rest, "passed"), count_before(rest, "failed")))
}

/// Why a `cargo test` step failed, or `None` when it passed. `expects_tests`: the step is
/// there to run tests, so running none of them is a failure, never a pass.
fn step_failure(exited_ok: bool, passed: u64, failed: u64, expects_tests: bool) -> Option<String> {
    if failed > 0 {
        Some(format!("{failed} test(s) failed"))
    } else if !exited_ok {
        Some("cargo test failed (see its output above)".into())
    } else if expects_tests && passed == 0 {
        Some("0 tests run: the step's test filter or target matches no test".into())
    } else {
        None
    }
}

/// In `ok. 12 passed; 1 failed; ...`, the number before `word`.
fn count_before(text: &str, word: &str) -> u64 {
    text.split(';')
        .filter_map(|part| part.trim().strip_suffix(word))
        .filter_map(|rest| rest.split_whitespace().last())
        .find_map(|n| n.parse().ok())
        .unwrap_or(0)
}

/// How long `cargo xtask test` runs each fuzz target.
const TEST_FUZZ_SECONDS: u64 = 20;

/// Every log the suites left (`target/tmp`) and everything they printed, searched for every
/// secret the tests use: secrets are redacted everywhere.
fn secrets_suite(suites: &[Suite]) -> Suite {
    step("secrets: searching every test log and the test output for the test secrets");
    let started = Instant::now();
    let tmp = dynedge_envoy::target_dir().join("tmp");
    let files = dynedge_envoy::log_files(&tmp);
    let mut found: Vec<String> = dynedge_envoy::secrets_in_logs(&tmp)
        .into_iter()
        .map(|(f, s)| format!("{} contains {s:?}", f.display()))
        .collect();
    for suite in suites {
        for line in &suite.output {
            for s in dynedge_envoy::secrets_in(line) {
                found.push(format!("the output of '{}' contains {s:?}", suite.name));
            }
        }
    }
    let lines: usize = suites.iter().map(|s| s.output.len()).sum();
    println!(
        "    {} secret forms, {} log files, {lines} lines of test output: {} found",
        dynedge_envoy::TEST_SECRETS.len(),
        files.len(),
        found.len()
    );
    for f in &found {
        println!("    SECRET LEAK: {f}");
    }
    Suite {
        name: "secrets in logs and test output",
        ok: found.is_empty() && !files.is_empty(),
        passed: u64::from(found.is_empty()),
        failed: u64::from(!found.is_empty()),
        seconds: started.elapsed().as_secs_f64(),
        output: vec![],
        // Nothing searched is nothing checked.
        failure: files
            .is_empty()
            .then(|| format!("no test log under {} to search", tmp.display())),
    }
}

/// Where the hardening suite leaves the figures it measured (its output is captured).
fn figures_file() -> PathBuf {
    dynedge_envoy::target_dir().join("tmp/hardening/figures.txt")
}

pub fn test(args: &[String]) -> Result<()> {
    let started = Instant::now();
    let smoke = match args {
        [] => false,
        [a] if a == "--smoke" => true,
        _ => return Err(format!("test: unknown arguments {args:?} (only --smoke)")),
    };
    // Everything is installed before the first test: no suite runs apt-get halfway through.
    tools::ensure(Need::Test)?;
    print!("{}", tools::table(&tools::survey()));
    let _ = fs::remove_file(figures_file());
    let wasm = wasm()?;
    let envoy = dynedge_envoy::envoy_binary()?;
    if smoke {
        return smoke_test(started, &wasm, &envoy);
    }
    let pingora = pingora()?;
    let found = [
        ("DYNEDGE_WASM", wasm.as_os_str()),
        ("DYNEDGE_ENVOY", envoy.as_os_str()),
        ("DYNEDGE_PINGORA", pingora.as_os_str()),
        (tools::NO_INSTALL_ENV, OsStr::new("1")),
    ];
    let mut on_pingora = found.to_vec();
    on_pingora.push(("DYNEDGE_GATEWAY", OsStr::new("pingora")));
    let mut suites = vec![
        cargo_test(
            "unit, test-host, `xtask up` (cargo test --workspace, without the Envoy suite)",
            &["--workspace", "--exclude", "dynedge-envoy"],
            &found,
        ),
        cargo_test(
            "Envoy end to end (real Envoy + .wasm + PowerDNS + ddclient + inadyn)",
            &["-p", "dynedge-envoy"],
            &found,
        ),
        // Every file: a test that checks Envoy itself says so and returns (`envoy_only`).
        cargo_test(
            "the same end-to-end suite against dynedge-pingora (DYNEDGE_GATEWAY=pingora)",
            &["-p", "dynedge-envoy", "--tests"],
            &on_pingora,
        ),
    ];
    suites.push(fuzz_suite(TEST_FUZZ_SECONDS));
    suites.push(secrets_suite(&suites));
    if let Ok(figures) = fs::read_to_string(figures_file()) {
        println!("\n==> figures measured by the hardening suite\n{figures}");
    }
    summary(started, &suites)
}

/// `test --smoke`: what a fresh machine must get right, in minutes. Everything installed
/// (above), every crate and test built, one end-to-end test through each proxy, `xtask up`
/// once, and each fuzz target built and run briefly (libFuzzer is C++).
fn smoke_test(started: Instant, wasm: &Path, envoy: &Path) -> Result<()> {
    let mut build = cargo_test(
        "build every crate and test (cargo test --workspace --no-run)",
        &["--workspace", "--no-run"],
        &[],
    );
    // --no-run prints no result line: one for the build.
    build.passed = u64::from(build.ok);
    build.failed = u64::from(!build.ok);
    let mut suites = vec![build];
    if !suites[0].ok {
        return summary(started, &suites);
    }
    // The debug build just made: the release build's LTO adds minutes and no tool.
    let pingora = dynedge_envoy::target_dir().join("debug/dynedge-pingora");
    let found = [
        ("DYNEDGE_WASM", wasm.as_os_str()),
        ("DYNEDGE_ENVOY", envoy.as_os_str()),
        ("DYNEDGE_PINGORA", pingora.as_os_str()),
        (tools::NO_INSTALL_ENV, OsStr::new("1")),
    ];
    // One corpus scenario: a first update answered `good` and found in PowerDNS.
    let mut one_update = found.to_vec();
    one_update.push((
        "DYNEDGE_CORPUS",
        OsStr::new("first_update_is_good_and_lands_in_the_backend"),
    ));
    let mut on_pingora = one_update.clone();
    on_pingora.push(("DYNEDGE_GATEWAY", OsStr::new("pingora")));
    let e2e = [
        "-p",
        "dynedge-envoy",
        "--test",
        "dyndns2_over_envoy",
        "the_dyndns2_corpus_plays_over_a_real_proxy_and_powerdns",
    ];
    suites.push(cargo_test("one update through Envoy", &e2e, &one_update));
    suites.push(cargo_test(
        "one update through dynedge-pingora",
        &e2e,
        &on_pingora,
    ));
    suites.push(cargo_test(
        "xtask up serves an update, SIGTERM stops it",
        &[
            "-p",
            "xtask",
            "--test",
            "up",
            "up_answers_an_update_and_sigterm_stops_everything_it_started",
        ],
        &found,
    ));
    suites.push(fuzz_suite(SMOKE_FUZZ_SECONDS));
    summary(started, &suites)
}

/// How long `test --smoke` runs each fuzz target.
const SMOKE_FUZZ_SECONDS: u64 = 2;

fn summary(started: Instant, suites: &[Suite]) -> Result<()> {
    println!("\n==> summary");
    for s in suites {
        println!(
            "    {:4} {:>4} passed {:>3} failed {:>7.1}s  {}",
            if s.ok { "ok" } else { "FAIL" },
            s.passed,
            s.failed,
            s.seconds,
            s.name
        );
        if let Some(why) = &s.failure {
            println!("         {why}");
        }
    }
    let failed = suites.iter().filter(|s| !s.ok).count();
    println!(
        "    total {} passed, {} failed, {:.0}s",
        suites.iter().map(|s| s.passed).sum::<u64>(),
        suites.iter().map(|s| s.failed).sum::<u64>(),
        started.elapsed().as_secs_f64()
    );
    if failed == 0 {
        Ok(())
    } else {
        Err(format!("{failed} suite(s) failed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_passed_and_failed_from_cargo_test_result_lines() {
        let line =
            "ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 3.1s";
        assert_eq!(count_before(line, "passed"), 12);
        assert_eq!(count_before(line, "failed"), 0);
        let bad = "FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out";
        assert_eq!(count_before(bad, "passed"), 3);
        assert_eq!(count_before(bad, "failed"), 2);
    }

    #[test]
    fn only_libtest_summary_lines_are_counted() {
        assert_eq!(
            result_line("test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 7 filtered out; finished in 0.00s"),
            Some((0, 0))
        );
        assert_eq!(
            result_line("test result: FAILED. 4 passed; 1 failed; 0 ignored"),
            Some((4, 1))
        );
        assert_eq!(result_line("running 0 tests"), None);
        assert_eq!(result_line("test a::b ... ok"), None);
    }

    #[test]
    fn a_step_that_runs_no_test_fails_unless_it_only_builds() {
        // Every binary filtered out: a step that names a moved or renamed test.
        let why = step_failure(true, 0, 0, true).unwrap();
        assert!(why.contains("0 tests run"), "{why}");
        assert_eq!(step_failure(true, 0, 0, false), None, "--no-run");
        assert_eq!(step_failure(true, 1, 0, true), None);
        assert!(step_failure(true, 5, 1, true)
            .unwrap()
            .contains("1 test(s) failed"));
        assert!(
            step_failure(false, 5, 0, true).is_some(),
            "cargo's exit status counts"
        );
        assert!(step_failure(false, 0, 0, false).is_some(), "a failed build");
    }
}
