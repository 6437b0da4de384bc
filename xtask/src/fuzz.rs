//! `cargo xtask fuzz`, and the fuzz step of `cargo xtask test`.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use dynedge_envoy::workspace_root;

use crate::test_cmd::Suite;
use crate::{cargo, flag_value, output_of, run_visible, step, tools, Result};

fn fuzz_dir() -> PathBuf {
    workspace_root().join("filter/core/fuzz")
}

/// `cargo fuzz` with the flags this repository needs: stable Rust accepts cargo-fuzz's `-Z`
/// flags only with RUSTC_BOOTSTRAP=1, and no sanitizer (the core has no unsafe code; libFuzzer's
/// coverage and the panics of the properties are what count).
fn cargo_fuzz() -> Command {
    let mut cmd = cargo();
    // `cargo fuzz` finds cargo-fuzz on PATH; `deps` installs it into .tools/bin.
    cmd.current_dir(fuzz_dir())
        .env("PATH", tools::tools_path())
        .env("RUSTC_BOOTSTRAP", "1")
        .arg("fuzz");
    cmd
}

fn fuzz_targets() -> Result<Vec<String>> {
    let list = output_of(cargo_fuzz().arg("list")).ok_or(
        "cargo-fuzz is not installed: cargo xtask deps --for-tests (then cargo xtask fuzz)",
    )?;
    Ok(list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

pub fn fuzz_command(args: &[String]) -> Result<()> {
    let seconds = match flag_value(args, "--seconds")? {
        Some(s) => s
            .parse()
            .map_err(|_| format!("--seconds {s}: not a number"))?,
        None => 60,
    };
    let only = flag_value(args, "--target")?;
    let suite = fuzz_run(seconds, only)?;
    if suite.ok {
        Ok(())
    } else {
        Err(format!("{} fuzz target(s) failed", suite.failed))
    }
}

pub fn fuzz_suite(seconds: u64) -> Suite {
    fuzz_run(seconds, None).unwrap_or_else(|e| {
        eprintln!("xtask: fuzz: {e}");
        Suite {
            name: "fuzz",
            ok: false,
            passed: 0,
            failed: 1,
            seconds: 0.0,
            output: vec![],
            failure: Some(e),
        }
    })
}

/// Builds the fuzz targets, then runs each for `seconds` on a scratch corpus seeded from
/// `filter/core/fuzz/seeds/<target>/`. A crash leaves its input in `fuzz/artifacts/<target>/`.
fn fuzz_run(seconds: u64, only: Option<&str>) -> Result<Suite> {
    let started = Instant::now();
    let mut targets = fuzz_targets()?;
    if let Some(t) = only {
        if !targets.iter().any(|x| x == t) {
            return Err(format!(
                "no fuzz target {t}; there are: {}",
                targets.join(", ")
            ));
        }
        targets = vec![t.to_string()];
    }
    step("building the fuzz targets (cargo fuzz build --sanitizer none)");
    run_visible(
        "cargo fuzz build",
        cargo_fuzz().args(["build", "--sanitizer", "none"]),
    )?;
    let (mut passed, mut failed) = (0, 0);
    let mut lines = Vec::new();
    for t in &targets {
        step(&format!("fuzzing {t} for {seconds} s"));
        let corpus = fuzz_dir().join("corpus").join(t);
        fs::create_dir_all(&corpus).map_err(|e| format!("{}: {e}", corpus.display()))?;
        let out = cargo_fuzz()
            .args(["run", "--sanitizer", "none", t])
            .arg(&corpus)
            .arg(fuzz_dir().join("seeds").join(t))
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg("-print_final_stats=1")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run cargo fuzz: {e}"))?;
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        let runs = text
            .lines()
            .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
            .map_or("?".to_string(), |n| n.trim().to_string());
        if out.status.success() {
            passed += 1;
            lines.push(format!("    ok   {t:14} {runs:>10} runs in {seconds} s"));
        } else {
            failed += 1;
            let artifact = text
                .lines()
                .find(|l| l.contains("Test unit written to"))
                .unwrap_or("(no artifact line)");
            println!("{}", dynedge_envoy::tail(&text, 40));
            lines.push(format!(
                "    FAIL {t:14} {artifact}\n         copy the input to filter/core/fuzz/regressions/{t}/ (a regular test then), fix the core"
            ));
        }
    }
    println!("\n==> fuzz ({seconds} s per target)");
    for l in &lines {
        println!("{l}");
    }
    Ok(Suite {
        name: "fuzz (cargo-fuzz, every core parser)",
        ok: failed == 0,
        passed,
        failed,
        seconds: started.elapsed().as_secs_f64(),
        output: lines,
        failure: None,
    })
}
