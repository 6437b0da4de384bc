//! Real authoritative servers for the RFC 2136 backend, each a child process on loopback:
//! BIND 9.18 with its own DoH listener (plain HTTP/2, h2c), Knot 3.2 (plain DNS), and dnsdist
//! 1.7 as a DoH → DNS relay in front of Knot. Configurations follow research/doh.md.
//!
//! Every server is stopped by its pid when its handle drops (also when a test panics, and then
//! its log is printed). Ports come from the rfc2136 range 21000–21999.

#[path = "../../../../envoy/src/rfc2136.rs"]
pub mod stack;

use std::fs;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::thread;
use std::time::{Duration, Instant};

pub use stack::ZONE;
pub const KEY_NAME: &str = "ddns-key";
pub const KEY_SECRET: &str = "SU3E55TYJCfXunkqJgW75/rA5qLYv1yB7wB8o82HwMA=";
pub const KEY512_NAME: &str = "ddns-key512";
pub const KEY512_SECRET: &str =
    "e7K15czUYLDwp6QZqtZI9gdwr+vpbYcD9jvQlJjeE11yf8EL7Z5VgF/r7+fx2DMS/mDUtUrqqO1VpV1PrV/TWg==";

const READY_WITHIN: Duration = Duration::from_secs(20);

/// A free port in 21000–21999 (TCP and UDP), never handed out twice by this process.
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = 21000 + (std::process::id() % 40) as u16 * 20;
    for _ in 0..1000 {
        let off = NEXT.fetch_add(1, Ordering::Relaxed) % 1000;
        let port = 21000 + (start - 21000 + off) % 1000;
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && UdpSocket::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
    panic!("no free port in 21000-21999");
}

/// A child process, stopped (TERM, then KILL) when dropped.
pub struct Daemon {
    pub name: &'static str,
    child: Child,
    log: PathBuf,
    dir: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            let log = fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("---- {} log (last lines) ----", self.name);
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn run_dir(name: &str) -> PathBuf {
    static N: AtomicU16 = AtomicU16::new(0);
    let dir = std::env::temp_dir().join(format!(
        "dynedge-rfc2136-{}-{}-{}",
        name,
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn spawn(name: &'static str, dir: PathBuf, mut cmd: Command) -> Daemon {
    let log = dir.join(format!("{name}.log"));
    let out = fs::File::create(&log).unwrap();
    let err = out.try_clone().unwrap();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    Daemon {
        name,
        child,
        log,
        dir,
    }
}

/// BIND 9.18 serving the zone on plain DNS (`dns_port`) and DoH h2c (`doh_port`).
pub struct Bind {
    pub dns_port: u16,
    pub doh_port: u16,
    pub daemon: Daemon,
}

fn keys() -> [stack::TsigKeyText; 2] {
    [
        stack::TsigKeyText {
            name: KEY_NAME,
            algorithm: "hmac-sha256",
            secret: KEY_SECRET,
        },
        stack::TsigKeyText {
            name: KEY512_NAME,
            algorithm: "hmac-sha512",
            secret: KEY512_SECRET,
        },
    ]
}

impl Bind {
    pub fn start() -> Bind {
        let dir = run_dir("bind");
        let (dns_port, doh_port) = (free_port(), free_port());
        let cmd = stack::prepare_bind(&dir, dns_port, doh_port, &keys()).unwrap();
        let daemon = spawn("named", dir, cmd);
        wait_dns(dns_port);
        wait_tcp(doh_port);
        Bind {
            dns_port,
            doh_port,
            daemon,
        }
    }
}

/// Knot 3.2 on plain DNS, both keys allowed to update.
pub struct Knot {
    pub dns_port: u16,
    pub daemon: Daemon,
}

impl Knot {
    pub fn start() -> Knot {
        let dir = run_dir("knot");
        let dns_port = free_port();
        let cmd = stack::prepare_knot(&dir, dns_port, &keys()).unwrap();
        let daemon = spawn("knotd", dir, cmd);
        wait_dns(dns_port);
        Knot { dns_port, daemon }
    }
}

/// PowerDNS Authoritative 4.7 (sqlite3) with `dnsupdate=yes`, both keys allowed.
pub struct Pdns {
    pub dns_port: u16,
    pub daemon: Daemon,
}

impl Pdns {
    pub fn start() -> Pdns {
        let dir = run_dir("pdns");
        let dns_port = free_port();
        let cmd = stack::prepare_pdns(&dir, dns_port, &keys()).unwrap();
        let daemon = spawn("pdns_server", dir, cmd);
        wait_dns(dns_port);
        Pdns { dns_port, daemon }
    }
}

/// dnsdist 1.7: DoH on plain HTTP (no certificate) → one authoritative server over TCP.
pub struct Dnsdist {
    pub doh_port: u16,
    pub daemon: Daemon,
}

impl Dnsdist {
    pub fn start(backend_dns_port: u16) -> Dnsdist {
        let dir = run_dir("dnsdist");
        let (doh_port, dns_port) = (free_port(), free_port());
        let cmd = stack::prepare_dnsdist(&dir, doh_port, dns_port, backend_dns_port).unwrap();
        let daemon = spawn("dnsdist", dir, cmd);
        wait_tcp(doh_port);
        Dnsdist { doh_port, daemon }
    }
}

fn wait_tcp(port: u16) {
    let deadline = Instant::now() + READY_WITHIN;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on 127.0.0.1:{port}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn wait_dns(port: u16) {
    let deadline = Instant::now() + READY_WITHIN;
    while dig(port, ZONE, "SOA").is_empty() {
        assert!(Instant::now() < deadline, "no SOA from 127.0.0.1:{port}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// `dig +tcp +short`, sorted; empty on any failure (dig prints errors on stdout too).
pub fn dig(port: u16, name: &str, rtype: &str) -> Vec<String> {
    let out = Command::new("dig")
        .args([
            "+tcp",
            "+short",
            "+time=2",
            "+tries=1",
            "-p",
            &port.to_string(),
            "@127.0.0.1",
            name,
            rtype,
        ])
        .output()
        .unwrap();
    if !out.status.success() {
        return vec![];
    }
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

/// Applies an update with the real `nsupdate` (to prepare a zone, e.g. put a CNAME in place).
pub fn nsupdate(port: u16, commands: &str) {
    use std::io::Write;
    let mut child = Command::new("nsupdate")
        .args(["-v", "-y", &format!("hmac-sha256:{KEY_NAME}:{KEY_SECRET}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let script = format!("server 127.0.0.1 {port}\nzone {ZONE}\n{commands}\nsend\n");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "nsupdate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Envoy 1.40 as the HTTP hop in front of the DoH relays, with the clusters of
/// `envoy/rfc2136-clusters.yaml.tmpl`: `/dns-query` → `bind_doh`, `/knot` → `dnsdist_doh`
/// (rewritten to `/dns-query`), `/down` → a cluster where nothing listens. Plain HTTP/1.1 or h2c
/// downstream on `port`.
pub struct Envoy {
    pub port: u16,
    pub daemon: Daemon,
}

pub fn envoy_binary() -> PathBuf {
    match std::env::var_os("DYNEDGE_ENVOY") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/venv/bin/envoy"),
    }
}

impl Envoy {
    pub fn start(bind_doh_port: u16, dnsdist_doh_port: u16) -> Envoy {
        let dir = run_dir("envoy");
        let (port, down) = (free_port(), free_port());
        let clusters = stack::clusters_yaml(bind_doh_port, dnsdist_doh_port);
        let conf = format!(
            r#"static_resources:
  listeners:
  - name: relay
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: relay
          codec_type: AUTO
          route_config:
            virtual_hosts:
            - name: relay
              domains: ["*"]
              routes:
              - match: {{path: "/dns-query"}}
                route: {{cluster: bind_doh, timeout: 5s}}
              - match: {{path: "/knot"}}
                route: {{cluster: dnsdist_doh, timeout: 5s, prefix_rewrite: "/dns-query"}}
              - match: {{path: "/down"}}
                route: {{cluster: down, timeout: 5s}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
{clusters}
  - name: down
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: down
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {down}}}}}}}
"#
        );
        Envoy::run(dir, port, &conf)
    }

    /// Envoy with the dynedge filter (the built .wasm) configured by `plugin_json`, on plain
    /// HTTP, every other path 404; the clusters of `envoy/rfc2136-clusters.yaml.tmpl`.
    pub fn with_filter(plugin_json: &str, bind_doh_port: u16, dnsdist_doh_port: u16) -> Envoy {
        let dir = run_dir("envoy-filter");
        let port = free_port();
        let wasm = wasm_file();
        let clusters = stack::clusters_yaml(bind_doh_port, dnsdist_doh_port);
        let quoted = serde_json::to_string(plugin_json).unwrap();
        let conf = format!(
            r#"static_resources:
  listeners:
  - name: dynedge
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: dynedge
          codec_type: AUTO
          route_config:
            virtual_hosts:
            - name: dynedge
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                direct_response: {{status: 404, body: {{inline_string: "not found\n"}}}}
          http_filters:
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: dynedge
                root_id: dynedge
                fail_open: false
                vm_config:
                  vm_id: dynedge
                  runtime: envoy.wasm.runtime.v8
                  code: {{local: {{filename: "{wasm}"}}}}
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: {quoted}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
{clusters}
"#,
            wasm = wasm.display()
        );
        Envoy::run(dir, port, &conf)
    }

    fn run(dir: PathBuf, port: u16, conf: &str) -> Envoy {
        let path = dir.join("envoy.yaml");
        fs::write(&path, conf).unwrap();
        let mut cmd = Command::new(envoy_binary());
        cmd.arg("-c").arg(&path);
        cmd.args([
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "-l",
            "warning",
        ]);
        let daemon = spawn("envoy", dir, cmd);
        wait_tcp(port);
        Envoy { port, daemon }
    }
}

/// The built filter: `$DYNEDGE_WASM`, else the release build in the workspace's target dir.
pub fn wasm_file() -> PathBuf {
    let path = match std::env::var_os("DYNEDGE_WASM") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/wasm32-wasip1/release/dynedge_filter.wasm"),
    };
    assert!(
        path.is_file(),
        "the filter is not built: {} (cargo build --release --target wasm32-wasip1 -p dynedge-filter, or set DYNEDGE_WASM)",
        path.display()
    );
    path
}
