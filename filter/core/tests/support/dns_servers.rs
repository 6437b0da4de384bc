//! Real authoritative servers for the RFC 2136 backend, each a child process on loopback:
//! BIND 9.18 with its own DoH listener (plain HTTP/2, h2c), Knot 3.2 and PowerDNS 4.7 (plain
//! DNS), dnsdist 1.7 as a DoH → DNS relay, and Envoy as an HTTP hop. The servers' files and
//! processes come from `dynedge_envoy::rfc2136` (the same code `cargo xtask up --backend
//! rfc2136` runs); this module picks their directories; ports come from `free_port`.
//! Every server is stopped by its pid when its handle drops.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU16, Ordering};

pub use dynedge_envoy::free_port;
pub use dynedge_envoy::rfc2136::{self as stack, Bind, Dnsdist, Knot, PowerDnsUpdate, ZONE};
use dynedge_envoy::{envoy_binary, poll_until, within, Daemon};

pub const KEY_NAME: &str = "ddns-key";
pub const KEY_SECRET: &str = "SU3E55TYJCfXunkqJgW75/rA5qLYv1yB7wB8o82HwMA=";
pub const KEY512_NAME: &str = "ddns-key512";
pub const KEY512_SECRET: &str =
    "e7K15czUYLDwp6QZqtZI9gdwr+vpbYcD9jvQlJjeE11yf8EL7Z5VgF/r7+fx2DMS/mDUtUrqqO1VpV1PrV/TWg==";

/// Both test keys, allowed to update the zone on every server.
pub fn keys() -> [stack::TsigKeyText; 2] {
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

/// A fresh directory under cargo's test tmpdir (kept after the run, for the logs).
fn run_dir(name: &str) -> PathBuf {
    static N: AtomicU16 = AtomicU16::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "rfc2136/{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn start_bind() -> Bind {
    Bind::start(&run_dir("bind"), free_port(), free_port(), &keys())
        .unwrap_or_else(|e| panic!("{e}"))
}

pub fn start_knot() -> Knot {
    Knot::start(&run_dir("knot"), free_port(), &keys()).unwrap_or_else(|e| panic!("{e}"))
}

pub fn start_pdns() -> PowerDnsUpdate {
    PowerDnsUpdate::start(&run_dir("pdns"), free_port(), &keys()).unwrap_or_else(|e| panic!("{e}"))
}

/// dnsdist's DoH in front of the server on `server_port`.
pub fn start_dnsdist(server_port: u16) -> Dnsdist {
    Dnsdist::start(&run_dir("dnsdist"), free_port(), free_port(), server_port)
        .unwrap_or_else(|e| panic!("{e}"))
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
    let script = format!("server 127.0.0.1 {port}\nzone {ZONE}\n{commands}\nsend\n");
    stack::nsupdate(&keys()[0], &script).unwrap();
}

/// Envoy 1.40 as the HTTP hop in front of the DoH relays, with the clusters of
/// `envoy/rfc2136-*-cluster.yaml.tmpl`: `/dns-query` → `bind_doh`, `/knot` → `dnsdist_doh`
/// (rewritten to `/dns-query`), `/down` → a cluster where nothing listens. Plain HTTP/1.1 or h2c
/// downstream on `port`.
pub struct Envoy {
    pub port: u16,
    pub daemon: Daemon,
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

    fn run(dir: PathBuf, port: u16, conf: &str) -> Envoy {
        let path = dir.join("envoy.yaml");
        fs::write(&path, conf).unwrap();
        let mut cmd = Command::new(envoy_binary().unwrap_or_else(|e| panic!("{e}")));
        cmd.arg("-c").arg(&path);
        cmd.args([
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "-l",
            "warning",
        ]);
        let daemon = Daemon::spawn("Envoy", cmd, &dir.join("envoy.log")).unwrap();
        poll_until(within(30), &format!("Envoy listening on {port}"), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        })
        .unwrap_or_else(|e| panic!("{e}"));
        Envoy { port, daemon }
    }
}
