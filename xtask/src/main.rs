//! `cargo xtask` — dynedge's developer commands (plain std; the stack itself is driven by the
//! `dynedge-envoy` crate, which the Envoy end-to-end tests share).
//!
//!   cargo xtask up     install what is missing, build the filter, run PowerDNS + Envoy (demo)
//!                      (`--no-build`: use the built .wasm; `--cert F --key F`: your certificate;
//!                      DYNEDGE_HTTPS_PORT / _DNS_PORT / _API_PORT / DYNEDGE_RUN_DIR: elsewhere;
//!                      `--backend rfc2136`: BIND, updated by TSIG-signed UPDATE over its DoH
//!                      on DYNEDGE_DOH_PORT (18053), instead of PowerDNS's API)
//!                      `--proxy pingora`: the dynedge-pingora gateway in Envoy's place
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

use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::thread;
use std::time::{Duration, Instant};

mod tools;
mod up_etcd;

use dynedge_envoy::{
    port_is_free, rfc2136, workspace_root, Certificate, Daemon, Envoy, EnvoyConfig, PowerDns,
    Proxy, DEMO_ZONE,
};

mod bench;
mod oci;

type Result<T> = std::result::Result<T, String>;

use tools::{Need, WASM_TARGET};

// The demo's fixed ports and names (README.md, examples/).
const DEMO_HTTPS_PORT: u16 = 8443;
const DEMO_DNS_PORT: u16 = 5353;
const DEMO_API_PORT: u16 = 18081;
const DEMO_API_KEY: &str = "dynedge-demo-pdns-key";
const DEMO_HOST: &str = "home.dyn.example.test";
const DEMO_TOKEN: &str = "dynedge_test_demodemodemodemodemodemodemodemo";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("up") => up(&args[1..]),
        Some("test") => test(&args[1..]),
        Some("doctor") => tools::doctor(),
        Some("wasm") => wasm().map(|_| ()),
        Some("deps") => tools::ensure(if args.iter().any(|a| a == "--for-tests") {
            Need::Test
        } else {
            Need::Up
        }),
        Some("bench") => bench::bench(&args[1..]),
        Some("fuzz") => fuzz_command(&args[1..]),
        Some("oci") => oci::oci(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <up [--no-build] [--proxy envoy|pingora] [--backend powerdns|rfc2136] \
                 [--store etcd [--gateways N]] [--cert FILE --key FILE] | test [--smoke] | doctor | wasm \
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

// ------------------------------------------------------------------------------------ wasm

/// `cargo build -p dynedge-filter --target wasm32-wasip1 --release`; the .wasm's path.
fn wasm() -> Result<PathBuf> {
    step("building the filter and the test-host probe (cargo build -p dynedge-filter -p dynedge-probe-filter --target wasm32-wasip1 --release)");
    run_visible(
        "cargo build (filter)",
        cargo().current_dir(workspace_root()).args([
            "build",
            "-p",
            "dynedge-filter",
            "-p",
            "dynedge-probe-filter",
            "--release",
            "--target",
            WASM_TARGET,
        ]),
    )?;
    let path = dynedge_envoy::wasm_file()?;
    let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!("    {} ({} KiB)", path.display(), size.div_ceil(1024));
    Ok(path)
}

/// `cargo build -p dynedge-pingora --release`; the binary's path.
fn pingora() -> Result<PathBuf> {
    step("building the Pingora gateway (cargo build -p dynedge-pingora --release)");
    run_visible(
        "cargo build (dynedge-pingora)",
        cargo()
            .current_dir(workspace_root())
            .args(["build", "-p", "dynedge-pingora", "--release"]),
    )?;
    dynedge_envoy::pingora_binary()
}

// -------------------------------------------------------------------------------------- up

mod signals {
    //! SIGINT/SIGTERM → a flag the main loop polls (std has no signal API; libc's `signal` is
    //! linked anyway).
    use std::sync::atomic::{AtomicI32, Ordering};

    static CAUGHT: AtomicI32 = AtomicI32::new(0);

    extern "C" fn on_signal(sig: i32) {
        CAUGHT.store(sig, Ordering::SeqCst);
    }

    extern "C" {
        fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
    }

    const SIGINT: i32 = 2;
    const SIGTERM: i32 = 15;

    pub fn install() {
        // SAFETY: the handler only stores into an atomic, which is async-signal-safe.
        unsafe {
            signal(SIGINT, on_signal);
            signal(SIGTERM, on_signal);
        }
    }

    pub fn caught() -> Option<&'static str> {
        match CAUGHT.load(Ordering::SeqCst) {
            0 => None,
            SIGINT => Some("SIGINT"),
            SIGTERM => Some("SIGTERM"),
            _ => Some("a signal"),
        }
    }
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

/// `$name` as a port, else `default`.
fn port_from_env(name: &str, default: u16) -> Result<u16> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .map_err(|_| format!("{name}={v:?} is not a port number")),
        Err(_) => Ok(default),
    }
}

/// Where `up` listens.
struct Ports {
    https: u16,
    dns: u16,
    api: u16,
    /// BIND's DoH (`--backend rfc2136`).
    doh: u16,
}

/// The DNS side of the demo: PowerDNS (HTTP API backend, the default) or BIND (RFC 2136 backend).
enum DemoDns {
    PowerDns(PowerDns),
    Bind(rfc2136::Bind),
}

impl DemoDns {
    fn start(backend: &str, run_dir: &Path, ports: &Ports) -> Result<DemoDns> {
        match backend {
            "powerdns" => {
                step(&format!(
                    "starting PowerDNS (DNS 127.0.0.1:{}, API 127.0.0.1:{})",
                    ports.dns, ports.api
                ));
                let mut pdns =
                    PowerDns::start(&run_dir.join("pdns"), ports.dns, ports.api, DEMO_API_KEY)?;
                if let Some(pid) = pdns.daemon().and_then(|d| d.pid()) {
                    println!("    PowerDNS pid {pid}");
                }
                step(&format!("creating zone {DEMO_ZONE}"));
                pdns.create_zone(DEMO_ZONE)?;
                Ok(DemoDns::PowerDns(pdns))
            }
            "rfc2136" => {
                step(&format!(
                    "starting BIND (DNS 127.0.0.1:{}, DoH h2c 127.0.0.1:{}, zone {DEMO_ZONE}, TSIG key {})",
                    ports.dns,
                    ports.doh,
                    rfc2136::DEMO_KEY.name
                ));
                let bind = rfc2136::Bind::start(
                    &run_dir.join("bind"),
                    ports.dns,
                    ports.doh,
                    &[rfc2136::DEMO_KEY],
                )?;
                if let Some(pid) = bind.daemon.pid() {
                    println!("    BIND pid {pid}");
                }
                Ok(DemoDns::Bind(bind))
            }
            other => Err(format!("--backend {other}: use powerdns or rfc2136")),
        }
    }

    /// The plugin configuration file, its text for these ports, and the extra Envoy clusters.
    fn plugin(&self, root: &Path, ports: &Ports) -> Result<(&'static str, String, String)> {
        let file = match self {
            DemoDns::PowerDns(_) => "examples/dynedge.json",
            DemoDns::Bind(_) => "examples/dynedge-rfc2136.json",
        };
        let path = root.join(file);
        let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(match self {
            DemoDns::PowerDns(_) => (file, text, String::new()),
            DemoDns::Bind(_) => (
                file,
                text.replace(
                    &format!("127.0.0.1:{}", rfc2136::DEMO_DOH_PORT),
                    &format!("127.0.0.1:{}", ports.doh),
                ),
                rfc2136::bind_doh_cluster(ports.doh),
            ),
        })
    }

    fn daemon(&mut self) -> Option<&mut Daemon> {
        match self {
            DemoDns::PowerDns(p) => p.daemon(),
            DemoDns::Bind(b) => Some(&mut b.daemon),
        }
    }

    fn stop(&mut self) {
        match self {
            DemoDns::PowerDns(p) => p.stop(),
            DemoDns::Bind(b) => b.daemon.stop(),
        }
    }
}

fn up(args: &[String]) -> Result<()> {
    signals::install();
    let root = workspace_root();
    let run_dir =
        std::env::var_os("DYNEDGE_RUN_DIR").map_or_else(|| root.join(".run"), PathBuf::from);
    let ports = Ports {
        https: port_from_env("DYNEDGE_HTTPS_PORT", DEMO_HTTPS_PORT)?,
        dns: port_from_env("DYNEDGE_DNS_PORT", DEMO_DNS_PORT)?,
        api: port_from_env("DYNEDGE_API_PORT", DEMO_API_PORT)?,
        doh: port_from_env("DYNEDGE_DOH_PORT", rfc2136::DEMO_DOH_PORT)?,
    };
    let backend = flag_value(args, "--backend")?.unwrap_or("powerdns");
    let proxy = Proxy::parse(flag_value(args, "--proxy")?.unwrap_or("envoy"))?;
    tools::ensure(Need::Up)?;
    let no_build = args.iter().any(|a| a == "--no-build");
    let wasm = match (proxy, no_build) {
        (Proxy::Envoy, true) => dynedge_envoy::wasm_file()?,
        (Proxy::Envoy, false) => wasm()?,
        (Proxy::Pingora, true) => {
            dynedge_envoy::pingora_binary()?;
            PathBuf::new()
        }
        (Proxy::Pingora, false) => {
            pingora()?;
            PathBuf::new()
        }
    };
    if let Some(store) = flag_value(args, "--store")?.filter(|s| *s != "config") {
        if store != "etcd" {
            return Err(format!("--store {store}: config or etcd"));
        }
        let gateways = match flag_value(args, "--gateways")? {
            Some(n) => n.parse().map_err(|_| format!("--gateways {n}: a number"))?,
            None => 3,
        };
        let certificate = match (flag_value(args, "--cert")?, flag_value(args, "--key")?) {
            (Some(cert), Some(key)) => Some(Certificate {
                cert: fs::canonicalize(cert).map_err(|e| format!("--cert {cert}: {e}"))?,
                key: fs::canonicalize(key).map_err(|e| format!("--key {key}: {e}"))?,
            }),
            _ => None,
        };
        let etcd_port = port_from_env("DYNEDGE_ETCD_PORT", up_etcd::ETCD_CLIENT)?;
        return up_etcd::up(
            up_etcd::UpPorts {
                https: ports.https,
                dns: ports.dns,
                api: ports.api,
                etcd: etcd_port,
            },
            gateways,
            proxy,
            certificate,
            &wasm,
            &run_dir.join("etcd"),
        );
    }

    let wanted = match backend {
        "rfc2136" => [
            (ports.https, "the gateway (HTTPS)"),
            (ports.dns, "BIND (DNS)"),
            (ports.doh, "BIND (DoH)"),
        ],
        _ => [
            (ports.https, "the gateway (HTTPS)"),
            (ports.dns, "PowerDNS (DNS)"),
            (ports.api, "the PowerDNS API"),
        ],
    };
    for (port, what) in wanted {
        if !port_is_free(port) {
            return Err(format!(
                "127.0.0.1:{port} ({what}) is in use; is another `cargo xtask up` running?"
            ));
        }
    }

    let mut dns = DemoDns::start(backend, &run_dir, &ports)?;

    let certificate = match (flag_value(args, "--cert")?, flag_value(args, "--key")?) {
        (Some(cert), Some(key)) => Certificate {
            cert: fs::canonicalize(cert).map_err(|e| format!("--cert {cert}: {e}"))?,
            key: fs::canonicalize(key).map_err(|e| format!("--key {key}: {e}"))?,
        },
        (None, None) => {
            step("generating a self-signed certificate (openssl)");
            Certificate::self_signed(&run_dir.join("tls"))?
        }
        _ => return Err("give both --cert and --key, or neither".into()),
    };

    let (config_file, plugin_config, extra_clusters) = dns.plugin(&root, &ports)?;
    let envoy_dir = run_dir.join(match proxy {
        Proxy::Envoy => "envoy",
        Proxy::Pingora => "pingora",
    });
    step(&format!(
        "starting {} (https://127.0.0.1:{}) with {config_file}",
        proxy.name(),
        ports.https
    ));
    let cfg = EnvoyConfig {
        listen_address: "127.0.0.1".into(),
        listen_port: ports.https,
        certificate: certificate.clone(),
        wasm,
        plugin_config,
        pdns_api_port: ports.api,
        access_log: run_dir.join("access.log"),
        webhook_port: None,
    };
    let mut envoy = match proxy {
        Proxy::Envoy => Envoy::start_with_clusters(&envoy_dir, &cfg, &extra_clusters)?,
        Proxy::Pingora => {
            let clusters = match dns {
                DemoDns::PowerDns(_) => vec![],
                DemoDns::Bind(_) => vec![format!(
                    "{}=127.0.0.1:{},h2c",
                    rfc2136::DEMO_CLUSTER,
                    ports.doh
                )],
            };
            Envoy::start_pingora_with_clusters(&envoy_dir, &cfg, &clusters)?
        }
    };

    if let Some(pid) = envoy.daemon().pid() {
        println!("    {} pid {pid}", proxy.name());
    }
    print_try_lines(
        &certificate.cert,
        &run_dir,
        &ports,
        envoy.daemon().log_path(),
        proxy,
    );

    // Run until a signal or until a child dies; then stop the rest (Envoy first).
    let why = loop {
        if let Some(sig) = signals::caught() {
            break format!("{sig} received");
        }
        if let Some(status) = envoy.daemon().exited() {
            break format!(
                "{} exited ({status}); see {}",
                proxy.name(),
                envoy.daemon().log_path().display()
            );
        }
        if let Some(d) = dns.daemon() {
            if let Some(status) = d.exited() {
                break format!(
                    "{} exited ({status}); see {}",
                    d.name(),
                    d.log_path().display()
                );
            }
        }
        thread::sleep(Duration::from_millis(200));
    };
    println!("\n==> {why}: stopping {} and the DNS server", proxy.name());
    envoy.daemon().stop();
    dns.stop();
    println!("==> stopped");
    if signals::caught().is_some() {
        Ok(())
    } else {
        Err(why)
    }
}

fn print_try_lines(cacert: &Path, run_dir: &Path, ports: &Ports, gateway_log: &Path, proxy: Proxy) {
    let ca = cacert.display();
    let base = format!("https://127.0.0.1:{}", ports.https);
    let q = format!("{base}/nic/update?hostname={DEMO_HOST}");
    let dns = ports.dns;
    // The Envoy bootstrap also listens on IPv6 loopback; the Pingora binary on one address.
    let v6 = match proxy {
        Proxy::Envoy => format!(" and https://[::1]:{}", ports.https),
        Proxy::Pingora => String::new(),
    };
    let dig = format!("dig +short @127.0.0.1 -p {dns} {DEMO_HOST}");
    println!(
        "
dynedge is up: {base}{v6}  (DNS: 127.0.0.1:{dns}, zone {DEMO_ZONE})
certificate (for --cacert): {ca}

Try (demo user demo / demo-password owns {DEMO_HOST}):
  curl --cacert {ca} -u demo:demo-password '{q}&myip=192.0.2.1'
      -> good 192.0.2.1          (again: nochg 192.0.2.1)
  curl --cacert {ca} -u demo:demo-password '{q}&myip6=2001:db8::1'
      -> good 2001:db8::1
  curl --cacert {ca} -H 'Authorization: Bearer {DEMO_TOKEN}' '{q}&myip=192.0.2.2'
      -> good 192.0.2.2
  curl --cacert {ca} -u demo:demo-password -H 'Accept: application/json' '{q}&myip=192.0.2.3'
      -> {{\"status\":\"good\",\"results\":[...]}}
  curl --cacert {ca} -u demo:wrong '{q}&myip=192.0.2.4'
      -> badauth
  curl --cacert {ca} -i '{q}&myip=192.0.2.5'
      -> HTTP/2 401, www-authenticate: Basic realm=\"dynedge\"
  {dig} A
  {dig} AAAA

Logs: {log}  {run}/access.log  {run}/pdns/pdns.log (or {run}/bind/named.log)
Ctrl-C (or SIGTERM) stops everything.",
        run = run_dir.display(),
        log = gateway_log.display()
    );
}

// ------------------------------------------------------------------------------------ test

struct Suite {
    name: &'static str,
    ok: bool,
    passed: u64,
    failed: u64,
    seconds: f64,
    /// Everything the suite printed, for the secrets check.
    output: Vec<String>,
}

/// Runs `cargo test ...`, echoing its output and adding up the `test result:` lines.
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
    let ok = match cmd.spawn() {
        Ok(mut child) => {
            if let Some(out) = child.stdout.take() {
                for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
                    println!("{line}");
                    if let Some(rest) = line.strip_prefix("test result: ") {
                        passed += count_before(rest, "passed");
                        failed += count_before(rest, "failed");
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
    Suite {
        name,
        ok: ok && failed == 0,
        passed,
        failed,
        seconds: started.elapsed().as_secs_f64(),
        output,
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
    }
}

// ------------------------------------------------------------------------------------ fuzz

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

fn fuzz_command(args: &[String]) -> Result<()> {
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

fn fuzz_suite(seconds: u64) -> Suite {
    fuzz_run(seconds, None).unwrap_or_else(|e| {
        eprintln!("xtask: fuzz: {e}");
        Suite {
            name: "fuzz",
            ok: false,
            passed: 0,
            failed: 1,
            seconds: 0.0,
            output: vec![],
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
    })
}

/// Where the hardening suite leaves the figures it measured (its output is captured).
fn figures_file() -> PathBuf {
    dynedge_envoy::target_dir().join("tmp/hardening/figures.txt")
}

fn test(args: &[String]) -> Result<()> {
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
        cargo_test(
            "the same end-to-end suite against dynedge-pingora (DYNEDGE_GATEWAY=pingora)",
            &[
                "-p",
                "dynedge-envoy",
                "--test",
                "dyndns2_over_envoy",
                "--test",
                "real_clients",
                "--test",
                "tls",
            ],
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
    let mut on_pingora = found.to_vec();
    on_pingora.push(("DYNEDGE_GATEWAY", OsStr::new("pingora")));
    let e2e = [
        "-p",
        "dynedge-envoy",
        "--test",
        "dyndns2_over_envoy",
        "a_curl_update_over_https_changes_the_a_record",
    ];
    suites.push(cargo_test("one update through Envoy", &e2e, &found));
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
}
