//! `cargo xtask` — dynedge's developer commands (plain std; the stack itself is driven by the
//! `dynedge-envoy` crate, which the Envoy end-to-end tests share).
//!
//!   cargo xtask up     install what is missing, build the filter, run PowerDNS + Envoy (demo)
//!                      (`--no-build`: use the built .wasm; `--cert F --key F`: your certificate;
//!                      DYNEDGE_HTTPS_PORT / _DNS_PORT / _API_PORT / DYNEDGE_RUN_DIR: elsewhere;
//!                      `--backend rfc2136`: BIND, updated by TSIG-signed UPDATE over its DoH
//!                      on DYNEDGE_DOH_PORT (18053), instead of PowerDNS's API)
//!                      `--proxy pingora`: the dynedge-pingora gateway in Envoy's place;
//!                      `--dnssec`: the zone signed (PowerDNS or BIND), its trust anchor printed
//!   cargo xtask test   install what is missing, then every test: unit, test-host, Envoy end to
//!                      end (also against Pingora), fuzz; `--smoke`: install, build every crate,
//!                      one end-to-end test per proxy (what .ci/clean-root runs)
//!   cargo xtask doctor every external tool: version, where it comes from, the fix if missing
//!   cargo xtask bench  bounded wrk runs: Envoy's ceiling, dynedge in Envoy and in Pingora,
//!                      backends, peers, scale (docs/benchmarks.md)
//!   cargo xtask wasm   build the filter (.wasm) only
//!   cargo xtask oci    the filter as an OCI image for Istio's WasmPlugin (oci.rs)
//!   cargo xtask fuzz   run every cargo-fuzz target of the core for `--seconds N` (default 60)
//!                      each, or one with `--target NAME`
//!   cargo xtask deps   install what `up` needs (`--for-tests`: what `test` needs) and stop

use std::process::{Command, ExitCode, Stdio};

mod bench;
mod build;
mod fuzz;
mod oci;
mod signals;
mod test_cmd;
mod tools;
mod up;
mod up_etcd;

use build::{pingora, wasm};
use tools::Need;

type Result<T> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("up") => up::up(&args[1..]),
        Some("test") => test_cmd::test(&args[1..]),
        Some("doctor") => tools::doctor(),
        Some("wasm") => wasm().map(|_| ()),
        Some("deps") => tools::ensure(if args.iter().any(|a| a == "--for-tests") {
            Need::Test
        } else {
            Need::Up
        }),
        Some("bench") => bench::bench(&args[1..]),
        Some("fuzz") => fuzz::fuzz_command(&args[1..]),
        Some("oci") => oci::oci(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <up [--no-build] [--proxy envoy|pingora] [--backend powerdns|rfc2136] \
                 [--dnssec] [--store etcd [--gateways N]] [--cert FILE --key FILE] | test [--smoke] | doctor | wasm \
                 | deps [--for-tests] \
                 | bench [--duration S] [--connections N] [--quick] [--no-peers] [--only A,B] [--scale N,M] \
                 | fuzz [--seconds N] [--target NAME] \
                 | oci [--no-build] [--out DIR] [--tag TAG] [--push REF [--insecure]]>"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn step(msg: &str) {
    println!("==> {msg}");
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Runs `cmd` with inherited stdio; an error naming it unless it succeeds.
fn run_visible(what: &str, cmd: &mut Command) -> Result<()> {
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("{what}: cannot run {:?}: {e}", cmd.get_program()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

fn output_of(cmd: &mut Command) -> Option<String> {
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn flag_value<'a>(args: &'a [String], name: &str) -> Result<Option<&'a str>> {
    match args.iter().position(|a| a == name) {
        None => Ok(None),
        Some(i) => args
            .get(i + 1)
            .map(|v| Some(v.as_str()))
            .ok_or_else(|| format!("{name} needs a value")),
    }
}
