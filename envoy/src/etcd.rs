//! Many gateways, one store: an etcd cluster on loopback, the Envoy cluster (or the Pingora
//! `--cluster`) that reaches it, the admin command, and [`Gateways`] (etcd + PowerDNS + N
//! gateways, each Envoy or dynedge-pingora) for `cargo xtask up --store etcd` and
//! `tests/etcd_store.rs`.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{
    fresh_dir, poll_until, run, target_dir, wait_until, within, workspace_root, Certificate,
    Daemon, Envoy, EnvoyConfig, PowerDns, Proxy, Result, DEMO_ZONE,
};

struct Member {
    name: String,
    peer: u16,
    client: u16,
    daemon: Option<Daemon>,
}

/// etcd members on loopback, each our child (Debian `etcd-server`, the v3 JSON gateway on the
/// client URL).
pub struct EtcdCluster {
    dir: PathBuf,
    members: Vec<Member>,
}

impl EtcdCluster {
    /// Starts one member per `(peer, client)` port pair and waits until each is healthy.
    pub fn start(dir: &Path, ports: &[(u16, u16)]) -> Result<EtcdCluster> {
        fresh_dir(dir)?;
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, (peer, client))| Member {
                name: format!("n{}", i + 1),
                peer: *peer,
                client: *client,
                daemon: None,
            })
            .collect();
        let mut c = EtcdCluster {
            dir: dir.to_path_buf(),
            members,
        };
        for i in 0..c.members.len() {
            c.spawn(i)?;
        }
        for i in 0..c.members.len() {
            c.wait_healthy(i)?;
        }
        Ok(c)
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect();
        let m = &self.members[i];
        let peer = format!("http://127.0.0.1:{}", m.peer);
        let client = format!("http://127.0.0.1:{}", m.client);
        let mut cmd = Command::new("etcd");
        cmd.args(["--name", &m.name, "--data-dir"])
            .arg(self.dir.join(&m.name))
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--initial-cluster", &initial.join(",")])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "dynedge"])
            .args(["--log-level", "warn"]);
        let daemon = Daemon::spawn(
            &format!("etcd {}", m.name),
            cmd,
            &self.dir.join(format!("{}.log", m.name)),
        )?;
        self.members[i].daemon = Some(daemon);
        Ok(())
    }

    fn wait_healthy(&mut self, i: usize) -> Result<()> {
        let m = &mut self.members[i];
        let port = m.client;
        let Some(d) = m.daemon.as_mut() else {
            return Err(format!("etcd {} is not running", m.name));
        };
        wait_until(d, "report healthy", || {
            member_call(port, "/health", None).is_some_and(|body| body.contains("\"true\""))
        })
    }

    /// Stops member `i` (TERM, then KILL).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut d) = self.members[i].daemon.take() {
            d.stop();
        }
    }

    /// Starts member `i` again on its data directory and waits until the cluster is healthy.
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.spawn(i)?;
        self.wait_healthy(i)
    }

    /// The pid of member `i`, if it runs (to SIGKILL it in a test).
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].daemon.as_ref().and_then(Daemon::pid)
    }

    /// The index of the member that leads the cluster now, as the members themselves report it
    /// (`/v3/maintenance/status`: a member leads when its own id is the leader's).
    pub fn leader(&self) -> Option<usize> {
        self.members.iter().position(|m| {
            let Some(body) = member_call(m.client, "/v3/maintenance/status", Some("{}")) else {
                return false;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) else {
                return false;
            };
            let id = v["header"]["member_id"].as_str();
            id.is_some() && id == v["leader"].as_str()
        })
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Each member's client address, `127.0.0.1:P`.
    fn client_addrs(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client))
            .collect()
    }

    /// `http://127.0.0.1:P1,http://...` for the admin command.
    pub fn client_urls(&self) -> String {
        let urls: Vec<String> = self
            .client_addrs()
            .iter()
            .map(|a| format!("http://{a}"))
            .collect();
        urls.join(",")
    }

    /// The Envoy cluster `etcd` (YAML list item under `clusters:`): every member, round robin;
    /// a member that refuses connections is ejected for a while (the filter also retries a
    /// call that got no answer, which lands on another member).
    pub fn envoy_cluster(&self) -> String {
        let mut y = String::from(
            "  - name: etcd\n    type: STATIC\n    connect_timeout: 0.25s\n    lb_policy: ROUND_ROBIN\n    outlier_detection:\n      split_external_local_origin_errors: true\n      consecutive_local_origin_failure: 1\n      interval: 1s\n      base_ejection_time: 3s\n      max_ejection_percent: 67\n    load_assignment:\n      cluster_name: etcd\n      endpoints:\n      - lb_endpoints:\n",
        );
        for m in &self.members {
            let _ = writeln!(
                y,
                "        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}",
                m.client
            );
        }
        y
    }

    /// The `--cluster` of dynedge-pingora that reaches every member, round robin (the core
    /// retries a call that got no answer, which lands on the next member).
    pub fn pingora_cluster(&self) -> String {
        format!("etcd={}", self.client_addrs().join(","))
    }

    /// gRPC calls the members have handled so far (Range, Txn, Put, DeleteRange): the JSON
    /// gateway turns each HTTP call into one of these. Members that are down count nothing.
    pub fn kv_calls(&self) -> u64 {
        let mut total = 0;
        for m in &self.members {
            let Some(metrics) = member_call(m.client, "/metrics", None) else {
                continue;
            };
            for line in metrics.lines() {
                if line.starts_with("grpc_server_handled_total{")
                    && line.contains("grpc_service=\"etcdserverpb.KV\"")
                {
                    if let Some(v) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
                        total += v as u64;
                    }
                }
            }
        }
        total
    }
}

/// The body of an HTTP call to the member whose client port is `port`: a GET of `path`, or a
/// POST of the JSON `body` (the v3 gateway's calls); `None` when curl could not run or the
/// member did not answer within 2 s.
fn member_call(port: u16, path: &str, body: Option<&str>) -> Option<String> {
    let mut cmd = Command::new("curl");
    cmd.args(["-sf", "-m", "2"]);
    if let Some(json) = body {
        cmd.args([
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-d",
            json,
        ]);
    }
    let out = cmd
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .stdin(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

// ------------------------------------------------------------------------------ admin command

/// The admin command, built on demand (`cargo build -p dynedge-admin`).
pub fn admin_binary() -> Result<PathBuf> {
    let path = target_dir().join("debug/dynedge");
    run(
        "cargo build -p dynedge-admin",
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "-q", "-p", "dynedge-admin"])
            .current_dir(workspace_root()),
    )?;
    Ok(path)
}

/// Runs `dynedge admin --etcd URLS --config CONFIG ARGS...` with `stdin`; its stdout, or an
/// error with stderr.
pub fn admin(etcd: &str, config: &Path, args: &[&str], stdin: &str) -> Result<String> {
    use std::io::Write;
    let mut child = Command::new(admin_binary()?)
        .args(["admin", "--etcd", etcd, "--config"])
        .arg(config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("dynedge admin: {e}"))?;
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(stdin.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("dynedge admin: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "dynedge admin {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `examples/dynedge-etcd.json` pointed at this PowerDNS API, with the given sync interval.
pub fn etcd_plugin_config(pdns_api_port: u16, ttl_s: u64) -> Result<String> {
    let path = workspace_root().join("examples/dynedge-etcd.json");
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut cfg: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    cfg["backends"]["pdns"]["authority"] = format!("127.0.0.1:{pdns_api_port}").into();
    cfg["store"]["ttl_s"] = ttl_s.into();
    serde_json::to_string_pretty(&cfg).map_err(|e| e.to_string())
}

// ------------------------------------------------------------------------------ pdns front

/// A plain Envoy in front of the PowerDNS API that lets one call through at a time, for all
/// gateways together. PowerDNS's sqlite3 backend answers concurrent writers with HTTP 500
/// "database is locked" (one gateway serialises its own calls; several gateways cannot). A
/// deployment with a client/server database behind PowerDNS does not need it.
pub struct PdnsFront {
    daemon: Daemon,
    pub port: u16,
}

impl PdnsFront {
    pub fn start(dir: &Path, port: u16, api_port: u16) -> Result<PdnsFront> {
        fresh_dir(dir)?;
        let yaml = format!(
            r#"static_resources:
  listeners:
  - name: pdns_front
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: pdns_front
          route_config:
            virtual_hosts:
            - name: pdns
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route: {{cluster: pdns, timeout: 10s}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: pdns
    type: STATIC
    connect_timeout: 1s
    circuit_breakers:
      thresholds:
      - {{max_connections: 1, max_requests: 1, max_pending_requests: 4096}}
    load_assignment:
      cluster_name: pdns
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {api_port}}}}}}}
"#
        );
        let bootstrap = dir.join("pdns-front.yaml");
        fs::write(&bootstrap, yaml).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(crate::envoy_binary()?);
        cmd.arg("-c")
            .arg(&bootstrap)
            .args([
                "--disable-hot-restart",
                "--concurrency",
                "1",
                "-l",
                "warning",
            ])
            .args(["--base-id", &port.to_string()]);
        let mut daemon = Daemon::spawn("PowerDNS front (Envoy)", cmd, &dir.join("envoy.log"))?;
        let url = format!("http://127.0.0.1:{port}/");
        wait_until(&mut daemon, "answer HTTP", || {
            Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-m", "2", &url])
                .stdin(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })?;
        Ok(PdnsFront { daemon, port })
    }

    pub fn pid(&self) -> Option<u32> {
        self.daemon.pid()
    }
}

// ------------------------------------------------------------------------------- gateways

/// Ports of a multi-gateway stack.
#[derive(Debug, Clone)]
pub struct GatewayPorts {
    /// `(peer, client)` per etcd member.
    pub etcd: Vec<(u16, u16)>,
    pub dns: u16,
    pub pdns_api: u16,
    /// The [`PdnsFront`] every gateway calls instead of the API itself.
    pub pdns_front: u16,
    /// One HTTPS port per gateway.
    pub https: Vec<u16>,
}

impl GatewayPorts {
    /// Three etcd members and `gateways` gateways, every port from [`crate::free_port`].
    pub fn free(gateways: usize) -> GatewayPorts {
        GatewayPorts {
            etcd: (0..3)
                .map(|_| (crate::free_port(), crate::free_port()))
                .collect(),
            dns: crate::free_port(),
            pdns_api: crate::free_port(),
            pdns_front: crate::free_port(),
            https: (0..gateways).map(|_| crate::free_port()).collect(),
        }
    }
}

/// etcd, one PowerDNS, and one gateway per HTTPS port (Envoy with the filter, or
/// dynedge-pingora), all with the etcd store; demo data loaded through the admin command
/// (`import examples/dynedge.json`).
pub struct Gateways {
    // Gateways first: dropped (stopped) before the stores.
    pub envoys: Vec<Option<Envoy>>,
    /// Which proxy each gateway is.
    pub proxies: Vec<Proxy>,
    pub pdns_front: PdnsFront,
    pub pdns: PowerDns,
    pub etcd: EtcdCluster,
    pub certificate: Certificate,
    /// The plugin configuration every gateway runs (for `admin --config`).
    pub config_path: PathBuf,
    pub dir: PathBuf,
}

impl Gateways {
    /// Envoy gateways. `rate_limits: false` turns the per-gateway limits off (load tests come
    /// from one address).
    pub fn start(
        dir: &Path,
        ports: &GatewayPorts,
        ttl_s: u64,
        rate_limits: bool,
        certificate: Option<Certificate>,
        wasm: &Path,
    ) -> Result<Gateways> {
        let proxies = vec![Proxy::Envoy; ports.https.len()];
        Gateways::start_mixed(dir, ports, ttl_s, rate_limits, certificate, wasm, &proxies)
    }

    /// As [`Gateways::start`], gateway `i` run by `proxies[i]` (Envoy when missing); `wasm`
    /// is unused when no gateway is Envoy.
    pub fn start_mixed(
        dir: &Path,
        ports: &GatewayPorts,
        ttl_s: u64,
        rate_limits: bool,
        certificate: Option<Certificate>,
        wasm: &Path,
        proxies: &[Proxy],
    ) -> Result<Gateways> {
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let etcd = EtcdCluster::start(&dir.join("etcd"), &ports.etcd)?;
        let mut pdns = PowerDns::start(&dir.join("pdns"), ports.dns, ports.pdns_api, PDNS_KEY)?;
        pdns.create_zone(DEMO_ZONE)?;
        let pdns_front =
            PdnsFront::start(&dir.join("pdns-front"), ports.pdns_front, ports.pdns_api)?;
        let mut plugin_config = etcd_plugin_config(ports.pdns_front, ttl_s)?;
        if !rate_limits {
            let mut v: serde_json::Value =
                serde_json::from_str(&plugin_config).map_err(|e| e.to_string())?;
            v["rate_limits"] = serde_json::json!({"enabled": false});
            plugin_config = serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?;
        }
        let config_path = dir.join("dynedge-etcd.json");
        fs::write(&config_path, &plugin_config).map_err(|e| e.to_string())?;
        admin(
            &etcd.client_urls(),
            &config_path,
            &[
                "import",
                &workspace_root()
                    .join("examples/dynedge.json")
                    .display()
                    .to_string(),
            ],
            "",
        )?;
        let certificate = match certificate {
            Some(c) => c,
            None => Certificate::self_signed(&dir.join("tls"))?,
        };
        let mut envoys = Vec::new();
        let proxies: Vec<Proxy> = (0..ports.https.len())
            .map(|i| proxies.get(i).copied().unwrap_or(Proxy::Envoy))
            .collect();
        for (i, port) in ports.https.iter().enumerate() {
            let cfg = EnvoyConfig {
                listen_address: "127.0.0.1".into(),
                listen_port: *port,
                certificate: certificate.clone(),
                wasm: wasm.to_path_buf(),
                plugin_config: plugin_config.clone(),
                pdns_api_port: ports.pdns_front,
                access_log: dir.join(format!("access-{}.log", i + 1)),
                webhook_port: None,
            };
            let gateway_dir = dir.join(format!("gateway-{}", i + 1));
            envoys.push(Some(match proxies[i] {
                Proxy::Envoy => {
                    Envoy::start_with_clusters(&gateway_dir, &cfg, &etcd.envoy_cluster())?
                }
                Proxy::Pingora => Envoy::start_pingora_with_clusters(
                    &gateway_dir,
                    &cfg,
                    &[etcd.pingora_cluster()],
                )?,
            }));
        }
        let g = Gateways {
            envoys,
            proxies,
            pdns_front,
            pdns,
            etcd,
            certificate,
            config_path,
            dir: dir.to_path_buf(),
        };
        for i in 0..g.envoys.len() {
            g.wait_synced(i)?;
        }
        Ok(g)
    }

    /// Until gateway `i` has synced the credentials: an update of a host demo does not own is
    /// `nohost` (before the first sync nobody exists: `badauth`). Changes nothing.
    pub fn wait_synced(&self, i: usize) -> Result<()> {
        let mut body = String::new();
        poll_until(
            within(30),
            &format!("gateway {} synced from etcd", i + 1),
            || {
                body = self.curl(
                    i,
                    "/nic/update?hostname=probe.dyn.example.test&myip=192.0.2.1",
                    &["-u", "demo:demo-password"],
                );
                body.starts_with("nohost").then_some(())
            },
        )
        .map_err(|e| format!("{e} (last answer {body:?})"))
    }

    /// HTTPS port of gateway `i`.
    pub fn port(&self, i: usize) -> u16 {
        self.envoys[i].as_ref().map_or(0, |e| e.port)
    }

    /// GET through gateway `i` with curl; the body (empty on a transport error).
    pub fn curl(&self, i: usize, path_and_query: &str, extra: &[&str]) -> String {
        let url = format!("https://127.0.0.1:{}{path_and_query}", self.port(i));
        Command::new("curl")
            .args(["-s", "-m", "10", "-A", "dynedge-e2e/1", "--cacert"])
            .arg(&self.certificate.cert)
            .args(extra)
            .arg(url)
            .stdin(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    }

    /// The pid of gateway `i`'s proxy, if it runs.
    pub fn gateway_pid(&self, i: usize) -> Option<u32> {
        self.envoys[i].as_ref().and_then(Envoy::pid)
    }

    /// Stops gateway `i`.
    pub fn kill_gateway(&mut self, i: usize) {
        if let Some(mut e) = self.envoys[i].take() {
            e.daemon().stop();
        }
    }

    pub fn admin(&self, args: &[&str], stdin: &str) -> Result<String> {
        admin(&self.etcd.client_urls(), &self.config_path, args, stdin)
    }
}

/// The demo PowerDNS API key (examples/dynedge.json).
pub const PDNS_KEY: &str = "dynedge-demo-pdns-key";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::free_port;

    #[test]
    fn a_lone_member_leads_and_counts_the_kv_calls_it_handled() {
        let dir = target_dir().join("tmp/etcd-unit");
        let client = free_port();
        let mut etcd = EtcdCluster::start(&dir, &[(free_port(), client)]).unwrap();
        assert_eq!(etcd.client_urls(), format!("http://127.0.0.1:{client}"));
        assert_eq!(etcd.pingora_cluster(), format!("etcd=127.0.0.1:{client}"));
        assert_eq!(etcd.leader(), Some(0));
        let before = etcd.kv_calls();
        // The key `k`, base64 as the v3 JSON gateway wants it.
        let put = member_call(
            client,
            "/v3/kv/put",
            Some(r#"{"key": "aw==", "value": "dg=="}"#),
        );
        assert!(put.is_some_and(|b| b.contains("\"header\"")));
        assert!(etcd.kv_calls() > before);
        etcd.kill(0);
        assert_eq!(etcd.leader(), None);
        assert_eq!(etcd.kv_calls(), 0, "a member that is down counts nothing");
        assert_eq!(member_call(client, "/health", None), None);
    }
}
