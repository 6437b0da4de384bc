//! The hardening fixture: real PowerDNS and one or more real gateways: Envoys running the
//! built filter, with Envoy's admin interface on loopback (cluster stats, `/stats` for the
//! filter's metrics), wasm logs at info (the audit lines), and optionally file-based LDS
//! (configuration reload); or, with `DYNEDGE_GATEWAY=pingora`, dynedge-pingora with its
//! `--stats` listener in the admin's place (the same `cluster.NAME.upstream_rq_total` counters)
//! and its audit lines on stdout. Fakes are named so.
#![allow(dead_code)]
// Test support: failing loudly is its job (clippy.toml allows these only inside #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use dynedge_envoy::{
    envoy_binary, pingora_binary, poll_every, render_bootstrap, run, tail, wasm_file,
    workspace_root, Certificate, Daemon, EnvoyConfig, PowerDns, Proxy, DEMO_ZONE,
};
use serde_json::Value;

pub const HOME: &str = "home.dyn.example.test";
pub const OFFICE: &str = "office.dyn.example.test";
pub const NEIGHBOUR: &str = "neighbour.dyn.example.test";
pub const DEMO_PASSWORD: &str = "demo-password";
pub const TOKEN: &str = "dynedge_test_demodemodemodemodemodemodemodemo";
pub const PDNS_KEY: &str = "dynedge-demo-pdns-key";
pub use dynedge_envoy::{
    free_port, log_files, poll_until, secrets_in_logs, within, TEST_SECRETS as SECRETS,
};

/// Where every hardening test keeps its files (the secrets test greps the logs under it).
pub fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("hardening")
}

/// Prints a measured figure and appends it to `target/tmp/hardening/figures.txt`, which
/// `cargo xtask test` prints after its summary (test output is captured).
pub fn figure(text: &str) {
    // The figures say "Envoy"; measured against dynedge-pingora, each line says so.
    let text = match Proxy::from_env() {
        Ok(Proxy::Pingora) => format!("[dynedge-pingora] {text}"),
        _ => text.to_string(),
    };
    println!("{text}");
    let _ = fs::create_dir_all(suite_dir());
    if let Ok(mut f) = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(suite_dir().join("figures.txt"))
    {
        let _ = f.write_all(format!("{text}\n").as_bytes());
    }
}

pub fn test_dir(name: &str) -> PathBuf {
    let dir = suite_dir().join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// `examples/dynedge.json` pointed at PowerDNS's API, with office and `extra_hosts` added to
/// demo's hosts, then `edit`ed.
pub fn plugin_config(api_port: u16, extra_hosts: usize, edit: impl FnOnce(&mut Value)) -> String {
    let text = fs::read_to_string(workspace_root().join("examples/dynedge.json")).unwrap();
    let mut cfg: Value = serde_json::from_str(&text).unwrap();
    cfg["backends"]["pdns"]["authority"] = format!("127.0.0.1:{api_port}").into();
    let demo = cfg["users"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|u| u["name"] == "demo")
        .unwrap();
    let hosts = demo["hosts"].as_array_mut().unwrap();
    hosts.push(OFFICE.into());
    for i in 0..extra_hosts {
        hosts.push(load_host(i).into());
    }
    edit(&mut cfg);
    serde_json::to_string_pretty(&cfg).unwrap()
}

pub fn load_host(i: usize) -> String {
    format!("h{i}.{DEMO_ZONE}")
}

/// PowerDNS with the demo zone, and a certificate for the gateways.
pub struct Backend {
    pub dir: PathBuf,
    pub pdns: PowerDns,
    pub cert: Certificate,
}

impl Backend {
    pub fn start(dir: &Path) -> Backend {
        let (dns, api) = (free_port(), free_port());
        let mut pdns = PowerDns::start(&dir.join("pdns"), dns, api, PDNS_KEY)
            .unwrap_or_else(|e| panic!("{e}"));
        pdns.create_zone(DEMO_ZONE)
            .unwrap_or_else(|e| panic!("{e}"));
        let cert = Certificate::self_signed(&dir.join("tls")).unwrap_or_else(|e| panic!("{e}"));
        Backend {
            dir: dir.to_path_buf(),
            pdns,
            cert,
        }
    }

    pub fn api_port(&self) -> u16 {
        self.pdns.api_port
    }

    pub fn records(&self, name: &str, rtype: &str) -> Vec<String> {
        self.pdns
            .lookup(name, rtype)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The zone's RRsets as PowerDNS's API lists them (sorted; SOA left out).
    pub fn zone(&self) -> Vec<Value> {
        let out = run(
            "curl (PowerDNS zone)",
            Command::new("curl")
                .args(["-sS", "-m", "5", "-H", &format!("X-API-Key: {PDNS_KEY}")])
                .arg(self.pdns.api_url(&format!("/zones/{DEMO_ZONE}."))),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let doc: Value = serde_json::from_str(&out).unwrap();
        let mut sets: Vec<Value> = doc["rrsets"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|s| s["type"] != "SOA")
            .collect();
        sets.sort_by_key(|s| s.to_string());
        sets
    }
}

/// How a gateway is built.
#[derive(Clone)]
pub struct GatewayOptions {
    pub plugin_config: String,
    /// Where the `pdns_api` cluster points (PowerDNS's API, or a fake).
    pub cluster_port: u16,
    pub concurrency: u32,
    /// Listeners from a watched file (dynamic LDS) instead of the bootstrap.
    pub lds: bool,
    pub listen_port: u16,
}

/// Envoy with the filter, an admin interface on loopback, wasm logs at info (or
/// dynedge-pingora, see the module's documentation).
pub struct Gateway {
    pub proxy: Proxy,
    pub daemon: Daemon,
    pub dir: PathBuf,
    pub opts: GatewayOptions,
    pub admin_port: u16,
    pub cert: PathBuf,
    pub access_log: PathBuf,
}

impl Gateway {
    pub fn options(backend: &Backend, plugin_config: String) -> GatewayOptions {
        GatewayOptions {
            plugin_config,
            cluster_port: backend.api_port(),
            concurrency: 1,
            lds: false,
            listen_port: free_port(),
        }
    }

    pub fn start(dir: &Path, backend: &Backend, opts: GatewayOptions) -> Gateway {
        match Proxy::from_env().unwrap_or_else(|e| panic!("{e}")) {
            Proxy::Envoy => Gateway::start_envoy(dir, backend, opts),
            Proxy::Pingora => Gateway::start_pingora(dir, backend, opts),
        }
    }

    /// dynedge-pingora with the same listener, certificate, `pdns_api` cluster (one call at a
    /// time, as the bootstrap's circuit breaker) and worker count; `--stats` on the admin port.
    fn start_pingora(dir: &Path, backend: &Backend, opts: GatewayOptions) -> Gateway {
        assert!(!opts.lds, "LDS is Envoy's");
        fs::create_dir_all(dir).unwrap();
        let access_log = dir.join("access.log");
        let plugin = dir.join("dynedge.json");
        fs::write(&plugin, &opts.plugin_config).unwrap();
        let admin_port = free_port();
        let mut cmd = Command::new(pingora_binary().unwrap_or_else(|e| panic!("{e}")));
        cmd.arg("--config")
            .arg(&plugin)
            .args(["--tls", &format!("127.0.0.1:{}", opts.listen_port)])
            .arg("--cert")
            .arg(&backend.cert.cert)
            .arg("--key")
            .arg(&backend.cert.key)
            .args([
                "--cluster",
                &format!("pdns_api=127.0.0.1:{},max_requests=1", opts.cluster_port),
            ])
            .arg("--access-log")
            .arg(&access_log)
            .args(["--stats", &format!("127.0.0.1:{admin_port}")])
            .args(["--threads", &opts.concurrency.to_string()])
            .args(["--grace-period", "1"]);
        let daemon = Daemon::spawn("dynedge-pingora", cmd, &dir.join("pingora.log"))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut gw = Gateway {
            proxy: Proxy::Pingora,
            daemon,
            dir: dir.to_path_buf(),
            opts,
            admin_port,
            cert: backend.cert.cert.clone(),
            access_log,
        };
        gw.wait_ready();
        gw
    }

    /// Envoy whatever `DYNEDGE_GATEWAY` says (for a test that compares Envoy with Pingora).
    pub fn start_envoy(dir: &Path, backend: &Backend, opts: GatewayOptions) -> Gateway {
        fs::create_dir_all(dir).unwrap();
        let access_log = dir.join("access.log");
        let cfg = EnvoyConfig {
            listen_address: "127.0.0.1".into(),
            listen_port: opts.listen_port,
            certificate: backend.cert.clone(),
            wasm: wasm_file().unwrap_or_else(|e| panic!("{e}")),
            plugin_config: opts.plugin_config.clone(),
            pdns_api_port: opts.cluster_port,
            access_log: access_log.clone(),
            webhook_port: None,
        };
        let admin_port = free_port();
        let mut yaml = format!(
            "admin:\n  address:\n    socket_address: {{address: 127.0.0.1, port_value: {admin_port}}}\n\
             stats_flush_interval: 1s\n\
             node: {{id: dynedge-hardening, cluster: dynedge}}\n{}",
            render_bootstrap(&cfg).unwrap_or_else(|e| panic!("{e}"))
        );
        if opts.lds {
            let (bootstrap, listeners) = split_listeners(&yaml);
            write_atomically(&dir.join("lds.yaml"), &listeners);
            yaml = format!(
                "{bootstrap}dynamic_resources:\n  lds_config:\n    resource_api_version: V3\n    \
                 path_config_source: {{path: \"{}\"}}\n",
                dir.join("lds.yaml").display()
            );
        }
        let bootstrap = dir.join("envoy.yaml");
        fs::write(&bootstrap, &yaml).unwrap();
        let mut cmd = Command::new(envoy_binary().unwrap_or_else(|e| panic!("{e}")));
        cmd.arg("-c").arg(&bootstrap).args([
            "--disable-hot-restart",
            "--concurrency",
            &opts.concurrency.to_string(),
            "-l",
            "warning",
            "--component-log-level",
            "wasm:info",
            "--drain-time-s",
            "5",
        ]);
        let daemon =
            Daemon::spawn("Envoy", cmd, &dir.join("envoy.log")).unwrap_or_else(|e| panic!("{e}"));
        let mut gw = Gateway {
            proxy: Proxy::Envoy,
            daemon,
            dir: dir.to_path_buf(),
            opts,
            admin_port,
            cert: backend.cert.cert.clone(),
            access_log,
        };
        gw.wait_ready();
        gw
    }

    /// Until the gateway answers HTTPS: the bootstrap's `/health` route on Envoy, any HTTP
    /// answer from dynedge-pingora (which has no such route: 404).
    fn wait_ready(&mut self) {
        let served = poll_until(within(60), "the gateway serving /health", || {
            if let Err(e) = self.daemon.check_alive() {
                panic!("{e}");
            }
            self.try_get("/health", &[])
                .is_some_and(|r| r.status == 200 || self.proxy == Proxy::Pingora)
                .then_some(())
        });
        if let Err(e) = served {
            panic!("{e}:\n{}", tail(&self.daemon.log_text(), 40));
        }
    }

    /// Rewrites the listener file with a new plugin configuration (LDS picks it up).
    pub fn reconfigure(&mut self, plugin_config: String) {
        assert!(self.opts.lds, "reconfigure needs lds: true");
        self.opts.plugin_config = plugin_config;
        let cfg = EnvoyConfig {
            listen_address: "127.0.0.1".into(),
            listen_port: self.opts.listen_port,
            certificate: Certificate {
                cert: self.cert.clone(),
                key: self.cert.with_file_name("key.pem"),
            },
            wasm: wasm_file().unwrap(),
            plugin_config: self.opts.plugin_config.clone(),
            pdns_api_port: self.opts.cluster_port,
            access_log: self.access_log.clone(),
            webhook_port: None,
        };
        let yaml = render_bootstrap(&cfg).unwrap();
        let (_, listeners) = split_listeners(&yaml);
        write_atomically(&self.dir.join("lds.yaml"), &listeners);
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.opts.listen_port)
    }

    /// GET over HTTPS with curl (`extra` curl arguments); `None` when no HTTP answer came.
    pub fn try_get(&self, path: &str, extra: &[&str]) -> Option<Reply> {
        let out = Command::new("curl")
            .args(["-sS", "-i", "-m", "10", "--cacert"])
            .arg(&self.cert)
            .args(extra)
            .arg(self.url(path))
            .stdin(Stdio::null())
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        Reply::parse(&out.stdout)
    }

    pub fn get(&self, path: &str, extra: &[&str]) -> Reply {
        self.try_get(path, extra)
            .unwrap_or_else(|| panic!("no HTTP answer for {}", path.split('?').next().unwrap()))
    }

    pub fn update(&self, query: &str) -> Reply {
        self.get(
            &format!("/nic/update?{query}"),
            &["-u", &format!("demo:{DEMO_PASSWORD}")],
        )
    }

    /// Sends raw bytes over TLS (HTTP/1.1, `openssl s_client`) and reads until Envoy closes
    /// the connection (send `Connection: close`); `None` when no HTTP answer came in 10 s.
    pub fn raw(&self, request: &[u8]) -> Option<Reply> {
        let mut child = Command::new("openssl")
            .args(["s_client", "-quiet", "-verify_quiet", "-connect"])
            .arg(format!("127.0.0.1:{}", self.opts.listen_port))
            .arg("-CAfile")
            .arg(&self.cert)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut stdin = child.stdin.take()?;
        let req = request.to_vec();
        // -quiet ignores EOF on stdin: the session ends when Envoy closes it.
        let writer = thread::spawn(move || {
            let _ = stdin.write_all(&req);
        });
        let mut stdout = child.stdout.take()?;
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        let reader = thread::spawn(move || {
            let mut chunk = [0u8; 16384];
            while let Ok(n) = stdout.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        // Envoy closes a `Connection: close` stream only after its delayed-close timeout (1 s):
        // stop as soon as the whole response (head + Content-Length) is in, asking every 2 ms
        // (the corpus's figure times these replies); past the deadline, what came is the answer.
        let _ = poll_every(
            Duration::from_millis(2),
            within(10),
            "the whole response",
            || {
                (complete(&got.lock().unwrap()) || matches!(child.try_wait(), Ok(Some(_))))
                    .then_some(())
            },
        );
        let _ = child.kill();
        let _ = child.wait();
        let _ = writer.join();
        let _ = reader.join();
        let bytes = got.lock().unwrap().clone();
        Reply::parse(&bytes)
    }

    /// Envoy's admin (dynedge-pingora: its `--stats` listener, which answers `/stats` only).
    pub fn admin(&self, path: &str) -> String {
        run(
            "curl (Envoy admin)",
            Command::new("curl")
                .args(["-sS", "-m", "5"])
                .arg(format!("http://127.0.0.1:{}{path}", self.admin_port)),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A counter or gauge from `/stats` (0 when absent).
    pub fn stat(&self, name: &str) -> u64 {
        self.admin(&format!("/stats?filter=^{}$", name.replace('.', "\\.")))
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// How many HTTP calls the filter sent to PowerDNS's API.
    pub fn pdns_calls(&self) -> u64 {
        self.stat("cluster.pdns_api.upstream_rq_total")
    }

    pub fn log(&self) -> String {
        self.daemon.log_text()
    }

    /// Panics if the VM logged a panic or Envoy a critical error.
    pub fn assert_no_panic(&self) {
        let log = self.log();
        for bad in [
            "panic",
            "[critical]",
            "Critical",
            "wasm trap",
            "Function: proxy_on",
        ] {
            assert!(
                !log.contains(bad),
                "Envoy's log contains {bad:?}:\n{}",
                tail(&log, 40)
            );
        }
    }

    /// Stops Envoy (TERM by pid).
    pub fn stop(&mut self) {
        self.daemon.stop();
    }
}

/// Whether `bytes` hold a whole HTTP/1.1 response with a Content-Length.
fn complete(bytes: &[u8]) -> bool {
    dynedge_http1::read_response(&mut &bytes[..])
        .is_ok_and(|r| r.header("content-length").is_some())
}

/// Splits a rendered bootstrap into (bootstrap without listeners, LDS file with them).
fn split_listeners(yaml: &str) -> (String, String) {
    let start = yaml.find("  listeners:\n").unwrap();
    let end = yaml.find("  clusters:\n").unwrap();
    let mut lds = String::from("resources:\n");
    let mut first = true;
    for line in yaml[start..end].lines().skip(1) {
        let line = line.strip_prefix("  ").unwrap_or(line);
        if let Some(rest) = line.strip_prefix("- ") {
            lds.push_str("- \"@type\": type.googleapis.com/envoy.config.listener.v3.Listener\n  ");
            lds.push_str(rest);
            first = false;
        } else {
            lds.push_str(line);
        }
        lds.push('\n');
    }
    assert!(!first, "no listener in the bootstrap");
    let bootstrap = format!("{}{}", &yaml[..start], &yaml[end..]);
    (bootstrap, lds)
}

/// Writes `path` by renaming a temporary file over it (how Envoy's file watch wants it).
pub fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, path).unwrap();
}

/// One HTTP response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// Parses `curl -i` / raw HTTP/1.1 output (after any interim `100 Continue`).
    pub fn parse(bytes: &[u8]) -> Option<Reply> {
        let r = dynedge_http1::parse_printed(bytes).ok()?;
        Some(Reply {
            status: r.status,
            headers: r.headers,
            body: String::from_utf8_lossy(&r.body).into_owned(),
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The DynDNS2 codes in the body (first word of each line, or the JSON statuses).
    pub fn codes(&self) -> Vec<String> {
        dynedge_core::fuzzing::reply_codes(&dynedge_core::Reply {
            status: self.status,
            headers: vec![],
            body: self.body.clone().into_bytes(),
        })
    }
}

// ------------------------------------------------------------------------------ fake backend

/// How the **fake** backend (a small HTTP listener standing in for a broken PowerDNS) answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeMode {
    /// Accepts and never answers (beyond any callout timeout).
    Slow,
    /// `200` with a body that is not a zone document, for every call.
    Garbage,
    /// `500 Internal Server Error` for every call.
    Status5xx,
    /// Reads answer an empty zone document; writes answer `200` garbage instead of `204`.
    WriteGarbage,
    /// Closes every connection without a byte.
    Reset,
}

/// A fake PowerDNS API on a hardening port: counts the requests it got.
pub struct FakeBackend {
    pub port: u16,
    pub requests: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl FakeBackend {
    pub fn start(mode: FakeMode) -> FakeBackend {
        let port = free_port();
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let requests = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (n, halt) = (requests.clone(), stop.clone());
        thread::spawn(move || {
            while !halt.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let (n, halt) = (n.clone(), halt.clone());
                        thread::spawn(move || serve_fake(s, mode, &n, &halt));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FakeBackend {
            port,
            requests,
            stop,
        }
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for FakeBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn serve_fake(mut s: TcpStream, mode: FakeMode, n: &AtomicU64, halt: &AtomicBool) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if halt.load(Ordering::SeqCst) {
            return;
        }
        // one request: the head, then Content-Length bytes of body
        let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n");
        if let Some(end) = head_end {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                n.fetch_add(1, Ordering::SeqCst);
                let is_write = head.starts_with("patch");
                buf.drain(..end + 4 + len);
                let (status, body): (&str, &str) = match mode {
                    FakeMode::Reset => {
                        let _ = s.shutdown(Shutdown::Both);
                        return;
                    }
                    FakeMode::Slow => {
                        while !halt.load(Ordering::SeqCst) {
                            thread::sleep(Duration::from_millis(50));
                        }
                        return;
                    }
                    FakeMode::Garbage => ("200 OK", "<html>\u{0}\u{ff}not json"),
                    FakeMode::Status5xx => ("500 Internal Server Error", "fake: broken"),
                    FakeMode::WriteGarbage if is_write => ("200 OK", "{\"garbage\": tru"),
                    FakeMode::WriteGarbage => ("200 OK", "{\"rrsets\": []}"),
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                if s.write_all(reply.as_bytes()).is_err() {
                    return;
                }
                continue;
            }
        }
        match s.read(&mut chunk) {
            Ok(0) => return,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
            Err(_) => {}
        }
    }
}
