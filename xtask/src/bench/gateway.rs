//! The gateway under load: Envoy from the shared bootstrap, varied for the bench, and the
//! plugin configuration it runs.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use dynedge_envoy::{Daemon, EnvoyConfig, DEMO_ZONE};
use serde_json::{json, Value};

use super::{ADMIN_PORT, BIND_DOH_PORT, DEMO_BASIC, GATEWAY_PORT, PDNS_API_PORT, PDNS_KEY};
use crate::Result;

/// How the bench varies the shared bootstrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Variant {
    /// The wasm filter removed; the route answers `direct_response` 200 `nochg 192.0.2.1`.
    Ceiling,
    Dynedge,
}

/// The rendered bootstrap without the line-block starting at the line whose trimmed text is
/// `head`. With `whole_item`, a list item `- key: ...` goes with all its keys; without, only
/// `key` and its value go (the item's other keys stay).
pub(super) fn drop_block(yaml: &str, head: &str, whole_item: bool) -> Result<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim() == head)
        .ok_or_else(|| format!("bootstrap: no line `{head}`"))?;
    let mut indent = lines[start].len() - lines[start].trim_start().len();
    if !whole_item && head.starts_with("- ") {
        indent += 2;
    }
    let mut end = start + 1;
    while end < lines.len() {
        let l = lines[end];
        let ind = l.len() - l.trim_start().len();
        if !l.trim().is_empty() && ind <= indent {
            break;
        }
        end += 1;
    }
    let mut out: Vec<&str> = lines[..start].to_vec();
    out.extend_from_slice(&lines[end..]);
    Ok(out.join("\n") + "\n")
}

/// The bootstrap for `variant`, TLS or plain, with an admin listener on [`ADMIN_PORT`] and
/// `extra_clusters` (e.g. BIND's DoH for the RFC 2136 backend).
pub(super) fn bootstrap_with(
    cfg: &EnvoyConfig,
    variant: Variant,
    tls: bool,
    extra_clusters: &str,
) -> Result<String> {
    let mut y = dynedge_envoy::render_bootstrap_with(cfg, extra_clusters)?;
    if !tls {
        // `- transport_socket:` opens the filter chain's list item; `filters:` takes it over.
        y = drop_block(&y, "- transport_socket:", false)?;
        y = y.replacen("\n      filters:\n", "\n    - filters:\n", 1);
    }
    if variant == Variant::Ceiling {
        y = drop_block(&y, "- name: envoy.filters.http.wasm", true)?;
        y = y.replacen(
            "status: 404\n                  body: {inline_string: \"not found\\n\"}",
            "status: 200\n                  body: {inline_string: \"nochg 192.0.2.1\"}",
            1,
        );
        if !y.contains("inline_string: \"nochg 192.0.2.1\"") {
            return Err("bootstrap: the direct_response route was not found".into());
        }
    }
    let _ = write!(
        y,
        "admin:\n  address:\n    socket_address: {{address: 127.0.0.1, port_value: {ADMIN_PORT}}}\n"
    );
    Ok(y)
}

pub(super) struct Gateway {
    pub(super) daemon: Daemon,
    pub(super) tls: bool,
    pub(super) ca: PathBuf,
    /// Seconds from spawning Envoy to the first dynedge reply (or 200 for the ceiling).
    pub(super) ready_s: f64,
}

impl Gateway {
    pub(super) fn start(
        dir: &Path,
        cfg: &EnvoyConfig,
        variant: Variant,
        tls: bool,
        probe: &str,
    ) -> Result<Gateway> {
        Gateway::start_full(dir, cfg, variant, tls, probe, DEMO_BASIC, "")
    }

    /// dynedge over plain HTTP, probed with the Basic credentials `basic`.
    pub(super) fn start_as(
        dir: &Path,
        cfg: &EnvoyConfig,
        probe: &str,
        basic: &str,
    ) -> Result<Gateway> {
        Gateway::start_full(dir, cfg, Variant::Dynedge, false, probe, basic, "")
    }

    /// Starts Envoy and polls `probe` until it answers 200 `good`/`nochg`.
    pub(super) fn start_full(
        dir: &Path,
        cfg: &EnvoyConfig,
        variant: Variant,
        tls: bool,
        probe: &str,
        basic: &str,
        extra_clusters: &str,
    ) -> Result<Gateway> {
        let _ = fs::remove_dir_all(dir);
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join("envoy.yaml");
        fs::write(&path, bootstrap_with(cfg, variant, tls, extra_clusters)?)
            .map_err(|e| format!("{e}"))?;
        let mut cmd = Command::new(dynedge_envoy::envoy_binary()?);
        cmd.arg("-c").arg(&path).args([
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "-l",
            "warning",
        ]);
        let started = Instant::now();
        let daemon = Daemon::spawn("Envoy (bench)", cmd, &dir.join("envoy.log"))?;
        let mut gw = Gateway {
            daemon,
            tls,
            ca: cfg.certificate.cert.clone(),
            ready_s: 0.0,
        };
        loop {
            gw.daemon.check_alive()?;
            let (code, body) = gw.get(probe, basic, None)?;
            if code == 200 && (body.starts_with("good") || body.starts_with("nochg")) {
                break;
            }
            if started.elapsed() > Duration::from_secs(300) {
                return Err(format!(
                    "Envoy gave no good/nochg within 300 s (last: {code} {body})"
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
        gw.ready_s = started.elapsed().as_secs_f64();
        Ok(gw)
    }

    pub(super) fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{GATEWAY_PORT}{path}")
    }

    /// One GET with curl: `(status, body)`; status 0 when nothing answered.
    pub(super) fn get(
        &self,
        path: &str,
        basic: &str,
        interface: Option<&str>,
    ) -> Result<(u16, String)> {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-m", "5", "-w", "\n%{http_code}", "--cacert"])
            .arg(&self.ca)
            .args(["-A", "dynedge-bench/1.0", "-H"])
            .arg(format!("Authorization: Basic {basic}"));
        if let Some(i) = interface {
            cmd.args(["--interface", i]);
        }
        let out = cmd
            .arg(self.url(path))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("curl: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        Ok((code.trim().parse().unwrap_or(0), body.to_string()))
    }

    pub(super) fn admin(&self, path: &str) -> String {
        Command::new("curl")
            .args(["-s", "-m", "5"])
            .arg(format!("http://127.0.0.1:{ADMIN_PORT}{path}"))
            .stdin(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// Envoy's resident set (KiB, /proc) and tcmalloc's allocated bytes (admin `/memory`).
    pub(super) fn memory(&self) -> (u64, u64) {
        let rss = self
            .daemon
            .pid()
            .and_then(|pid| fs::read_to_string(format!("/proc/{pid}/status")).ok())
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
            })
            .unwrap_or(0);
        let mem = self.admin("/memory");
        let allocated = serde_json::from_str::<Value>(&mem)
            .ok()
            .and_then(|v| v.get("allocated")?.as_str()?.parse().ok())
            .unwrap_or(0);
        (rss, allocated)
    }

    /// Wasm VMs alive (`wasm.envoy.wasm.runtime.v8.active`).
    pub(super) fn wasm_vms(&self) -> u64 {
        self.admin("/stats?filter=wasm.envoy.wasm.runtime.v8.active")
            .lines()
            .find_map(|l| l.rsplit_once(": ")?.1.trim().parse().ok())
            .unwrap_or(0)
    }

    pub(super) fn stop(mut self) {
        self.daemon.stop();
    }
}

/// examples/dynedge.json pointed at the bench PowerDNS, rate limits off (unless `limits` is
/// given), plus `extra_hosts` users `uN` (password `demo-password`, demo's hash shared) owning
/// `hN.dyn.example.test`.
pub(super) fn plugin_config(
    extra_hosts: usize,
    auth_cache_ttl_s: u64,
    limits: Option<Value>,
) -> Result<String> {
    plugin_config_from(
        "examples/dynedge.json",
        extra_hosts,
        auth_cache_ttl_s,
        limits,
    )
}

pub(super) fn plugin_config_from(
    file: &str,
    extra_hosts: usize,
    auth_cache_ttl_s: u64,
    limits: Option<Value>,
) -> Result<String> {
    let path = dynedge_envoy::workspace_root().join(file);
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut cfg: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if cfg["backends"].get("pdns").is_some() {
        cfg["backends"]["pdns"]["authority"] = json!(format!("127.0.0.1:{PDNS_API_PORT}"));
        cfg["backends"]["pdns"]["api_key"] = json!(PDNS_KEY);
    }
    if cfg["backends"].get("bind").is_some() {
        cfg["backends"]["bind"]["authority"] = json!(format!("127.0.0.1:{BIND_DOH_PORT}"));
    }
    cfg["auth_cache_ttl_s"] = json!(auth_cache_ttl_s);
    cfg["rate_limits"] = limits.unwrap_or_else(|| json!({"enabled": false}));
    let hash = cfg["users"][0]["password_hash"].clone();
    if let Some(users) = cfg["users"].as_array_mut() {
        for i in 0..extra_hosts {
            users.push(json!({
                "name": format!("u{i}"),
                "password_hash": hash,
                "hosts": [format!("h{i}.{DEMO_ZONE}")],
            }));
        }
    }
    serde_json::to_string(&cfg).map_err(|e| e.to_string())
}

/// Basic credentials of scale user `uN` (password `demo-password`).
pub(super) fn basic_of(user: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:demo-password"))
}

#[cfg(test)]
mod tests {
    use dynedge_envoy::Certificate;

    use super::*;

    #[test]
    fn the_plain_variant_has_no_tls_and_the_ceiling_has_no_wasm_filter() {
        let cfg = EnvoyConfig {
            listen_address: "127.0.0.1".into(),
            listen_port: GATEWAY_PORT,
            certificate: Certificate {
                cert: "/c.pem".into(),
                key: "/k.pem".into(),
            },
            wasm: "/f.wasm".into(),
            plugin_config: "{}".into(),
            pdns_api_port: PDNS_API_PORT,
            access_log: "/dev/null".into(),
            webhook_port: None,
        };
        let tls = bootstrap_with(&cfg, Variant::Dynedge, true, "").unwrap();
        assert!(tls.contains("DownstreamTlsContext") && tls.contains("envoy.filters.http.wasm"));
        let plain = bootstrap_with(&cfg, Variant::Ceiling, false, "").unwrap();
        assert!(!plain.contains("DownstreamTlsContext"), "{plain}");
        assert!(!plain.contains("envoy.filters.http.wasm"), "{plain}");
        assert!(plain.contains("    - filters:\n"), "{plain}");
        assert!(plain.contains("envoy.filters.http.router"));
        assert!(plain.contains(&format!("port_value: {ADMIN_PORT}")));
    }

    #[test]
    fn scale_users_get_basic_credentials_with_the_demo_password() {
        assert_eq!(basic_of("demo"), DEMO_BASIC);
    }
}
