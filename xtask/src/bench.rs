//! `cargo xtask bench`: bounded wrk runs, one after another on this machine, against Envoy's own
//! `direct_response` ceiling, dynedge in Envoy (nochg, good, cold auth, bad-auth flood, scale),
//! the backends' direct throughput, and peers (the PyPI `dyndns` app on BIND). Prints figures and
//! writes them as markdown to `.run/bench/results.md`; nothing here asserts a time.
//!
//! Envoy is started from the same bootstrap template as `cargo xtask up` and the end-to-end
//! tests (`envoy/bootstrap.yaml.tmpl`), rendered by `dynedge_envoy::render_bootstrap` and then
//! varied by [`Variant`]: plain HTTP (no TLS transport socket), no wasm filter (the ceiling, the
//! route answers `direct_response` 200), plus an admin listener for `/memory` and `/stats`.
//!
//! Ports: 27000–27999 (27443 the gateway, 27901 its admin, 27053/27081 PowerDNS, 27054 BIND,
//! 27080 the Python peer).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use dynedge_envoy::{rfc2136, run, Certificate, Daemon, EnvoyConfig, PowerDns, DEMO_ZONE};
use serde_json::{json, Value};

use crate::Result;

const GATEWAY_PORT: u16 = 27443;
const ADMIN_PORT: u16 = 27901;
const PDNS_DNS_PORT: u16 = 27053;
const PDNS_API_PORT: u16 = 27081;
const BIND_PORT: u16 = 27054;
const PEER_PORT: u16 = 27080;
const SFTDYN_PORT: u16 = 27082;
const BIND_DOH_PORT: u16 = 27055;
const BIND_UPDATE_DNS_PORT: u16 = 27056;
const PDNS_KEY: &str = "dynedge-bench-pdns-key";
/// `demo:demo-password` (examples/dynedge.json), Base64 for the Basic header.
const DEMO_BASIC: &str = "ZGVtbzpkZW1vLXBhc3N3b3Jk";
/// `neighbour:wrong-password`.
const BAD_BASIC: &str = "bmVpZ2hib3VyOndyb25nLXBhc3N3b3Jk";
const HOST: &str = "home.dyn.example.test";
const PEER_SECRET: &str = "benchsecret123";

/// How a bench run is shaped (`--duration S`, `--connections N`, `--quick`).
#[derive(Debug, Clone)]
pub struct Opts {
    pub duration_s: u64,
    pub connections: u32,
    pub scale: Vec<usize>,
    pub peers: bool,
    /// `--only a,b`: just these sections (ceiling, nochg, good, cold, flood, scale, peers).
    pub only: Vec<String>,
}

impl Opts {
    pub fn from_args(args: &[String]) -> Result<Opts> {
        let value = |name: &str| -> Result<Option<u64>> {
            match crate::flag_value(args, name)? {
                None => Ok(None),
                Some(v) => v
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("{name}: not a number: {v}")),
            }
        };
        let quick = args.iter().any(|a| a == "--quick");
        Ok(Opts {
            duration_s: value("--duration")?.unwrap_or(if quick { 3 } else { 10 }),
            connections: value("--connections")?.map_or(16, |c| c as u32),
            scale: match crate::flag_value(args, "--scale")? {
                Some(list) => list
                    .split(',')
                    .map(|n| n.parse().map_err(|_| format!("--scale: not a number: {n}")))
                    .collect::<Result<Vec<usize>>>()?,
                None if quick => vec![10, 1_000],
                None => vec![10, 1_000, 100_000],
            },
            peers: !args.iter().any(|a| a == "--no-peers"),
            only: crate::flag_value(args, "--only")?
                .map(|v| v.split(',').map(str::to_string).collect())
                .unwrap_or_default(),
        })
    }

    fn wants(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }
}

// ------------------------------------------------------------------------------------- wrk

/// What one wrk run measured.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub requests: u64,
    pub non2xx: u64,
    pub socket_errors: u64,
    /// Reply words counted by the Lua `response` hook (`good`, `nochg`, ...), when asked for.
    pub replies: Vec<(String, u64)>,
    /// CPU time of the server process (and its children) per request, when known.
    pub cpu_us_per_req: Option<f64>,
}

/// A latency as wrk prints it (`812.00us`, `1.23ms`, `2.01s`) in milliseconds.
fn parse_latency(text: &str) -> Option<f64> {
    let t = text.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|v| v * scale)
}

/// The figures in wrk's `--latency` output (and the `reply WORD N` lines our Lua prints).
pub fn parse_wrk(out: &str) -> Result<Figures> {
    let mut f = Figures::default();
    let mut seen_rps = false;
    for line in out.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            f.rps = v.trim().parse().map_err(|_| format!("wrk: bad line {t}"))?;
            seen_rps = true;
        } else if let Some(v) = t.strip_prefix("50%") {
            f.p50_ms = parse_latency(v).unwrap_or(f64::NAN);
        } else if let Some(v) = t.strip_prefix("99%") {
            f.p99_ms = parse_latency(v).unwrap_or(f64::NAN);
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            f.non2xx = v.trim().parse().unwrap_or(0);
        } else if let Some(v) = t.strip_prefix("Socket errors:") {
            f.socket_errors = v
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum();
        } else if t.contains(" requests in ") {
            f.requests = t
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        } else if let Some(rest) = t.strip_prefix("reply ") {
            let mut it = rest.split_whitespace();
            if let (Some(w), Some(n)) = (it.next(), it.next().and_then(|n| n.parse().ok())) {
                f.replies.push((w.to_string(), n));
            }
        }
    }
    if !seen_rps {
        return Err(format!("wrk printed no Requests/sec:\n{out}"));
    }
    Ok(f)
}

/// The Lua that counts reply words per thread and prints them at the end (`reply good 12`).
const COUNT_REPLIES_LUA: &str = r#"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) counts = {} end
function response(status, headers, body)
  local w = string.match(body or "", "^(%a+)") or tostring(status)
  counts[w] = (counts[w] or 0) + 1
end
function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    local c = t:get("counts")
    for k, v in pairs(c) do total[k] = (total[k] or 0) + v end
  end
  for k, v in pairs(total) do io.write("reply ", k, " ", v, "\n") end
end
"#;

/// Runs wrk (one thread, `conns` connections, `duration_s`, `--latency`) with `lua`.
fn wrk(
    server: Option<u32>,
    dir: &Path,
    name: &str,
    url: &str,
    lua: &str,
    conns: u32,
    duration_s: u64,
) -> Result<Figures> {
    let script = dir.join(format!("{name}.lua"));
    fs::write(&script, lua).map_err(|e| format!("{}: {e}", script.display()))?;
    let cpu_before = server.map(cpu_ticks);
    let out = Command::new("wrk")
        .args(["-t1", "-c", &conns.to_string(), "-d"])
        .arg(format!("{duration_s}s"))
        .args(["--timeout", "5s", "--latency", "-s"])
        .arg(&script)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run wrk (apt-get install wrk): {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = fs::write(dir.join(format!("{name}.out")), &text);
    // A Lua error does not fail wrk: it falls back to GET of the bare URL. Refuse that.
    if text.contains(".lua:") || text.to_lowercase().contains("script error") {
        return Err(format!("wrk {name}: Lua error:\n{text}"));
    }
    let mut f = parse_wrk(&text)?;
    if let (Some(pid), Some(before)) = (server, cpu_before) {
        let ticks = cpu_ticks(pid).saturating_sub(before);
        if f.requests > 0 {
            f.cpu_us_per_req = Some(ticks as f64 * 1e6 / CLOCK_TICKS_PER_S / f.requests as f64);
        }
    }
    Ok(f)
}

/// `sysconf(_SC_CLK_TCK)` on Linux.
const CLOCK_TICKS_PER_S: f64 = 100.0;

/// CPU time (user + system, clock ticks) of process `root` and its children, reaped or not
/// (gunicorn's workers, sftdyn's nsupdate runs): robust to the load of other processes.
fn cpu_ticks(root: u32) -> u64 {
    let Ok(entries) = fs::read_dir("/proc") else {
        return 0;
    };
    let mut total = 0;
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // After the `(comm)`: state ppid ... utime(11) stime(12) cutime(13) cstime(14).
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ppid = f.get(1).and_then(|v| v.parse::<u32>().ok());
        if pid == root || ppid == Some(root) {
            total += (11..=14)
                .filter_map(|i| f.get(i)?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    total
}

/// A fixed request: `path` with `headers`.
fn fixed_lua(method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> String {
    let mut s = format!("wrk.method = \"{method}\"\nwrk.path = \"{path}\"\n");
    for (k, v) in headers {
        let _ = writeln!(s, "wrk.headers[\"{k}\"] = \"{v}\"");
    }
    if let Some(b) = body {
        let _ = writeln!(s, "wrk.body = [[{b}]]");
    }
    s
}

/// An update whose `myip` changes every request (198.51.100.1–250, 203.0.113.1–250, in turn).
fn varying_update_lua(path_prefix: &str, headers: &[(&str, &str)], count: bool) -> String {
    let mut s = String::from("local n = 0\nlocal hdrs = {}\n");
    for (k, v) in headers {
        let _ = writeln!(s, "hdrs[\"{k}\"] = \"{v}\"");
    }
    let _ = write!(
        s,
        r#"function request()
  n = n + 1
  local net = (n % 2 == 0) and "198.51.100." or "203.0.113."
  local ip = net .. tostring(math.floor(n / 2) % 250 + 1)
  return wrk.format("GET", "{path_prefix}" .. ip, hdrs)
end
"#
    );
    if count {
        s.push_str(COUNT_REPLIES_LUA);
    }
    s
}

// ---------------------------------------------------------------------------------- Envoy

/// How the bench varies the shared bootstrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// The wasm filter removed; the route answers `direct_response` 200 `nochg 192.0.2.1`.
    Ceiling,
    Dynedge,
}

/// The rendered bootstrap without the line-block starting at the line whose trimmed text is
/// `head`. With `whole_item`, a list item `- key: ...` goes with all its keys; without, only
/// `key` and its value go (the item's other keys stay).
fn drop_block(yaml: &str, head: &str, whole_item: bool) -> Result<String> {
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
fn bootstrap_with(
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

struct Gateway {
    daemon: Daemon,
    tls: bool,
    ca: PathBuf,
    /// Seconds from spawning Envoy to the first dynedge reply (or 200 for the ceiling).
    ready_s: f64,
}

impl Gateway {
    fn start(
        dir: &Path,
        cfg: &EnvoyConfig,
        variant: Variant,
        tls: bool,
        probe: &str,
    ) -> Result<Gateway> {
        Gateway::start_full(dir, cfg, variant, tls, probe, DEMO_BASIC, "")
    }

    /// dynedge over plain HTTP, probed with the Basic credentials `basic`.
    fn start_as(dir: &Path, cfg: &EnvoyConfig, probe: &str, basic: &str) -> Result<Gateway> {
        Gateway::start_full(dir, cfg, Variant::Dynedge, false, probe, basic, "")
    }

    /// Starts Envoy and polls `probe` until it answers 200 `good`/`nochg`.
    fn start_full(
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

    fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{GATEWAY_PORT}{path}")
    }

    /// One GET with curl: `(status, body)`; status 0 when nothing answered.
    fn get(&self, path: &str, basic: &str, interface: Option<&str>) -> Result<(u16, String)> {
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

    fn admin(&self, path: &str) -> String {
        Command::new("curl")
            .args(["-s", "-m", "5"])
            .arg(format!("http://127.0.0.1:{ADMIN_PORT}{path}"))
            .stdin(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// Envoy's resident set (KiB, /proc) and tcmalloc's allocated bytes (admin `/memory`).
    fn memory(&self) -> (u64, u64) {
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
    fn wasm_vms(&self) -> u64 {
        self.admin("/stats?filter=wasm.envoy.wasm.runtime.v8.active")
            .lines()
            .find_map(|l| l.rsplit_once(": ")?.1.trim().parse().ok())
            .unwrap_or(0)
    }

    fn stop(mut self) {
        self.daemon.stop();
    }
}

// ------------------------------------------------------------------------------ configuration

/// examples/dynedge.json pointed at the bench PowerDNS, rate limits off (unless `limits` is
/// given), plus `extra_hosts` users `uN` (password `demo-password`, demo's hash shared) owning
/// `hN.dyn.example.test`.
fn plugin_config(
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

fn plugin_config_from(
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
fn basic_of(user: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:demo-password"))
}

// ------------------------------------------------------------------------------------ peers

/// BIND 9 (`named -g`) serving the demo zone on 127.0.0.1:[`BIND_PORT`], dynamic updates
/// allowed with an hmac-sha512 TSIG key (the Python peer's setup).
fn start_bind(dir: &Path) -> Result<(Daemon, String)> {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let keygen = run(
        "tsig-keygen",
        Command::new("tsig-keygen").args(["-a", "hmac-sha512", &format!("{DEMO_ZONE}.")]),
    )?;
    let secret = keygen
        .lines()
        .find_map(|l| l.trim().strip_prefix("secret \""))
        .and_then(|s| s.strip_suffix("\";"))
        .ok_or("tsig-keygen: no secret line")?
        .to_string();
    let d = dir.display();
    let conf = format!(
        "options {{ directory \"{d}\"; listen-on port {BIND_PORT} {{ 127.0.0.1; }}; \
         listen-on-v6 {{ none; }}; pid-file \"{d}/named.pid\"; session-keyfile \"{d}/session.key\"; \
         recursion no; dnssec-validation no; allow-query {{ any; }}; }};\n\
         controls {{ }};\n{keygen}\n\
         zone \"{DEMO_ZONE}\" {{ type primary; file \"{d}/db.zone\"; \
         allow-update {{ key \"{DEMO_ZONE}.\"; }}; }};\n"
    );
    fs::write(dir.join("named.conf"), conf).map_err(|e| e.to_string())?;
    fs::write(
        dir.join("db.zone"),
        "$TTL 60\n@ IN SOA ns1 hostmaster 1 3600 600 86400 60\n@ IN NS ns1\nns1 IN A 127.0.0.1\n",
    )
    .map_err(|e| e.to_string())?;
    let mut cmd = Command::new("named");
    cmd.arg("-g").arg("-c").arg(dir.join("named.conf"));
    let mut daemon = Daemon::spawn("BIND (bench)", cmd, &dir.join("named.log"))?;
    let started = Instant::now();
    loop {
        daemon.check_alive()?;
        let soa = Command::new("dig")
            .args(["+short", "+time=1", "+tries=1", "@127.0.0.1", "-p"])
            .arg(BIND_PORT.to_string())
            .args([DEMO_ZONE, "SOA"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        if soa.contains("hostmaster") {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err(format!(
                "BIND did not serve the zone:\n{}",
                daemon.log_text()
            ));
        }
        thread::sleep(Duration::from_millis(100));
    }
    Ok((daemon, secret))
}

/// The PyPI `dyndns` app (seed 003) under gunicorn, 2 sync workers, plain HTTP on
/// 127.0.0.1:[`PEER_PORT`], configured against the BIND of [`start_bind`].
fn start_python_peer(dir: &Path, tsig_secret: &str) -> Result<Daemon> {
    let venv = dynedge_envoy::workspace_root().join(".tools/dyndns");
    let gunicorn = venv.join("bin/gunicorn");
    if !gunicorn.is_file() {
        return Err(format!(
            "{} missing: python3 -m venv .tools/dyndns && .tools/dyndns/bin/pip install dyndns gunicorn",
            gunicorn.display()
        ));
    }
    fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let config = dir.join("dyndns.yml");
    fs::write(
        &config,
        format!(
            "secret: {PEER_SECRET}\nnameserver: 127.0.0.1\nport: {BIND_PORT}\nlog_level: 40\n\
             zones:\n  - name: {DEMO_ZONE}\n    tsig_key: {tsig_secret}\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&gunicorn);
    cmd.current_dir(dir)
        .env("dyndns_CONFIG_FILE", &config)
        .args(["-w", "2", "-b"])
        .arg(format!("127.0.0.1:{PEER_PORT}"))
        .args(["--log-level", "warning", "dyndns.wsgi:app"]);
    let mut daemon = Daemon::spawn("dyndns (PyPI, gunicorn)", cmd, &dir.join("dyndns.log"))?;
    let url = format!(
        "http://127.0.0.1:{PEER_PORT}/update-by-query?secret={PEER_SECRET}&fqdn={HOST}&ipv4=192.0.2.1"
    );
    let started = Instant::now();
    loop {
        daemon.check_alive()?;
        let body = Command::new("curl")
            .args(["-s", "-m", "5", &url])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        if body.contains("192.0.2.1") {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err(format!("dyndns gave no update reply (last: {body})"));
        }
        thread::sleep(Duration::from_millis(200));
    }
    Ok(daemon)
}

/// PyPI `sftdyn` 0.10 (aiohttp, one process), plain HTTP on 127.0.0.1:[`SFTDYN_PORT`]: the
/// path is the client's key, the address its `X-Bench-IP` header (its `get_ip` hook), and an
/// update runs `nsupdate` against the BIND of [`start_bind`]. sftdyn runs `nsupdate -l`
/// (local session key, port 53); a wrapper first in its PATH drops `-l` so the commands' own
/// `server`/`key` lines reach BIND on [`BIND_PORT`].
fn start_sftdyn(dir: &Path, tsig_secret: &str) -> Result<Daemon> {
    let python = dynedge_envoy::workspace_root().join(".tools/sftdyn/bin/python");
    if !python.is_file() {
        return Err(format!(
            "{} missing: python3 -m venv .tools/sftdyn && .tools/sftdyn/bin/pip install aiohttp setuptools && .tools/sftdyn/bin/pip install --no-build-isolation sftdyn",
            python.display()
        ));
    }
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).map_err(|e| e.to_string())?;
    let wrapper = bin.join("nsupdate");
    fs::write(&wrapper, "#!/bin/sh\nexec /usr/bin/nsupdate\n").map_err(|e| e.to_string())?;
    run("chmod", Command::new("chmod").arg("755").arg(&wrapper))?;
    let conf = dir.join("sftdyn.conf");
    fs::write(
        &conf,
        format!(
            "def get_host(key, ip):\n    return {{'{PEER_SECRET}': '{HOST}'}}.get(key)\n\n\
             def get_ip(ip, headers, key):\n    return headers.get('X-Bench-IP', ip)\n\n\
             def nsupdatecommands(host, ip, headers):\n    return ['server 127.0.0.1 {BIND_PORT}', \
             'key hmac-sha512:{DEMO_ZONE}. {tsig_secret}', 'zone {DEMO_ZONE}', \
             'update delete ' + host + ' A', 'update add ' + host + ' 60 A ' + ip, 'send']\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new(&python);
    cmd.env("PATH", path)
        .args(["-m", "sftdyn", "-q", "-l"])
        .arg(format!("127.0.0.1:{SFTDYN_PORT}"))
        .arg(&conf);
    let mut daemon = Daemon::spawn("sftdyn (PyPI)", cmd, &dir.join("sftdyn.log"))?;
    let started = Instant::now();
    loop {
        daemon.check_alive()?;
        let body = Command::new("curl")
            .args(["-s", "-m", "5", "-H", "X-Bench-IP: 192.0.2.1"])
            .arg(format!("http://127.0.0.1:{SFTDYN_PORT}/{PEER_SECRET}"))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        if body == "OK" || body == "UPTODATE" {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err(format!("sftdyn gave no OK (last: {body})"));
        }
        thread::sleep(Duration::from_millis(200));
    }
    Ok(daemon)
}

// -------------------------------------------------------------------------------- the run

/// One line of the results table.
struct Row {
    workload: String,
    server: String,
    figures: Option<Figures>,
    note: String,
}

fn fmt_ms(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else if v < 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.1}")
    }
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    let mem = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let envoy = dynedge_envoy::envoy_binary()
        .ok()
        .and_then(|e| Command::new(e).arg("--version").output().ok())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let envoy = envoy.rsplit(": ").next().unwrap_or(&envoy).to_string();
    format!(
        "{cpu}, {cores} logical CPUs, {} GiB RAM, Linux {}; Envoy {envoy}; wrk 4.1.0 (Debian)",
        mem / 1024 / 1024,
        kernel.trim()
    )
}

/// Runs the good client: sequential keep-alive GETs from 127.0.0.2 with curl for `for_s`:
/// (statuses 200 with `nochg`/`good` body, other, p50 ms, p99 ms, seconds).
fn good_client(
    gw_url: &str,
    ca: &Path,
    dir: &Path,
    for_s: f64,
) -> Result<(usize, usize, f64, f64, f64)> {
    // Batches of 20 requests on one keep-alive connection each, until `for_s` has passed.
    let mut cfg = String::new();
    for _ in 0..20 {
        let _ = writeln!(cfg, "url = \"{gw_url}\"\noutput = \"/dev/null\"");
    }
    let file = dir.join("good-client.curl");
    fs::write(&file, cfg).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut text = String::new();
    while started.elapsed().as_secs_f64() < for_s {
        let out = Command::new("curl")
            .args(["-s", "-m", "10", "--interface", "127.0.0.2", "--cacert"])
            .arg(ca)
            .args(["-A", "dynedge-bench/1.0", "-H"])
            .arg(format!("Authorization: Basic {DEMO_BASIC}"))
            .args(["-w", "%{http_code} %{time_total} %{size_download}\n", "-K"])
            .arg(&file)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("curl: {e}"))?;
        text.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    let secs = started.elapsed().as_secs_f64();
    let (mut ok, mut bad) = (0, 0);
    let mut times: Vec<f64> = Vec::new();
    for l in text.lines() {
        let mut it = l.split_whitespace();
        let code = it.next().unwrap_or("");
        let t: f64 = it.next().and_then(|t| t.parse().ok()).unwrap_or(0.0);
        if code == "200" {
            ok += 1;
        } else {
            bad += 1;
        }
        times.push(t * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| -> f64 {
        if times.is_empty() {
            f64::NAN
        } else {
            times[((times.len() - 1) as f64 * p) as usize]
        }
    };
    Ok((ok, bad, pct(0.5), pct(0.99), secs))
}

pub fn bench(args: &[String]) -> Result<()> {
    let opts = Opts::from_args(args)?;
    let root = dynedge_envoy::workspace_root();
    let dir = root.join(".run/bench");
    for port in [
        GATEWAY_PORT,
        ADMIN_PORT,
        PDNS_DNS_PORT,
        PDNS_API_PORT,
        BIND_PORT,
        PEER_PORT,
        SFTDYN_PORT,
        BIND_DOH_PORT,
    ] {
        if !dynedge_envoy::port_is_free(port) {
            return Err(format!(
                "127.0.0.1:{port} is in use; is another bench running?"
            ));
        }
    }
    let wasm = crate::wasm()?;
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let load_start = loadavg();
    let machine = machine();
    let d = opts.duration_s;
    let c = opts.connections;
    crate::step(&format!("machine: {machine}; load average {load_start}"));

    crate::step("PowerDNS (sqlite3) for the good path");
    let mut pdns = PowerDns::start(&dir.join("pdns"), PDNS_DNS_PORT, PDNS_API_PORT, PDNS_KEY)?;
    pdns.create_zone(DEMO_ZONE)?;
    let certificate = Certificate::self_signed(&dir.join("tls"))?;
    let envoy_cfg = |plugin_config: String| EnvoyConfig {
        listen_address: "127.0.0.1".into(),
        listen_port: GATEWAY_PORT,
        certificate: certificate.clone(),
        wasm: wasm.clone(),
        plugin_config,
        pdns_api_port: PDNS_API_PORT,
        access_log: dir.join("access.log"),
        webhook_port: None,
    };
    let nochg_path = format!("/nic/update?hostname={HOST}&myip=192.0.2.1");
    let ua = ("User-Agent", "dynedge-bench/1.0");
    let nochg_lua = |basic: &str| {
        fixed_lua(
            "GET",
            &nochg_path,
            &[("Authorization", &format!("Basic {basic}")), ua],
            None,
        )
    };
    let mut rows: Vec<Row> = Vec::new();
    let mut loads: Vec<(String, String)> = vec![("start".into(), load_start.clone())];
    let push = |rows: &mut Vec<Row>,
                workload: &str,
                server: &str,
                f: Result<Figures>,
                note: String| {
        match f {
            Ok(f) => {
                println!(
                    "    {workload:<44} {server:<34} {:>9.0} req/s  p50 {:>7} ms  p99 {:>7} ms  cpu {:>6} µs/req  {note}",
                    f.rps,
                    fmt_ms(f.p50_ms),
                    fmt_ms(f.p99_ms),
                    f.cpu_us_per_req.map_or("–".into(), |c| format!("{c:.0}"))
                );
                rows.push(Row {
                    workload: workload.into(),
                    server: server.into(),
                    figures: Some(f),
                    note,
                });
            }
            Err(e) => {
                println!("    {workload:<44} {server:<34} FAILED: {e}");
                rows.push(Row {
                    workload: workload.into(),
                    server: server.into(),
                    figures: None,
                    note: format!("failed: {}", e.lines().next().unwrap_or("")),
                });
            }
        }
    };

    // 1. Ceiling and nochg, TLS and plain.
    let mut ceiling: Vec<(bool, Figures)> = Vec::new();
    let mut ceiling_rss = 0u64;
    let base_config = plugin_config(0, 300, None)?;
    if opts.wants("nochg") || opts.wants("good") {
        for tls in [true, false] {
            let t = if tls { "TLS" } else { "plain HTTP" };
            crate::step(&format!("Envoy direct_response ceiling ({t})"));
            let gw = Gateway::start(
                &dir.join("envoy-ceiling"),
                &envoy_cfg(base_config.clone()),
                Variant::Ceiling,
                tls,
                &nochg_path,
            )?;
            let f = wrk(
                gw.daemon.pid(),
                &dir,
                &format!("ceiling-{}", if tls { "tls" } else { "plain" }),
                &gw.url("/"),
                &nochg_lua(DEMO_BASIC),
                c,
                d,
            );
            if !tls {
                ceiling_rss = gw.memory().0;
            }
            if let Ok(f) = &f {
                ceiling.push((tls, f.clone()));
            }
            push(
                &mut rows,
                "Envoy ceiling: direct_response 200",
                &format!("Envoy ({t})"),
                f,
                String::new(),
            );
            gw.stop();

            crate::step(&format!("dynedge nochg ({t})"));
            let gw = Gateway::start(
                &dir.join("envoy-dynedge"),
                &envoy_cfg(base_config.clone()),
                Variant::Dynedge,
                tls,
                &nochg_path,
            )?;
            let (code, body) = gw.get(&nochg_path, DEMO_BASIC, None)?;
            if !body.starts_with("nochg") {
                return Err(format!("warming the nochg path gave {code} {body}"));
            }
            let f = wrk(
                gw.daemon.pid(),
                &dir,
                &format!("nochg-{}", if tls { "tls" } else { "plain" }),
                &gw.url("/"),
                &nochg_lua(DEMO_BASIC),
                c,
                d,
            );
            let note = match (&f, ceiling.iter().find(|(x, _)| *x == tls)) {
                (Ok(f), Some((_, base))) => format!(
                    "{:.0}% of the ceiling's req/s{}; p99 {:+.2} ms over it",
                    100.0 * f.rps / base.rps,
                    cpu_ratio(f, base),
                    f.p99_ms - base.p99_ms
                ),
                _ => String::new(),
            };
            push(
                &mut rows,
                "dynedge nochg (auth cache warm)",
                &format!("dynedge in Envoy ({t})"),
                f,
                note,
            );

            if !tls {
                // The same VM and route table with nothing for the core to do: `/` is not a DDNS
                // path, so the filter passes it on and the 404 direct_response route answers.
                crate::step("dynedge pass-through (plain HTTP): the wasm filter's own floor");
                let lua = fixed_lua(
                    "GET",
                    "/",
                    &[("Authorization", &format!("Basic {DEMO_BASIC}")), ua],
                    None,
                );
                let f = wrk(
                    gw.daemon.pid(),
                    &dir,
                    "pass-plain",
                    &gw.url("/"),
                    &lua,
                    c,
                    d,
                );
                let note = match (&f, ceiling.iter().find(|(x, _)| !*x)) {
                    (Ok(f), Some((_, base))) => format!(
                        "{:.0}% of the ceiling's req/s{}; every reply the route's 404",
                        100.0 * f.rps / base.rps,
                        cpu_ratio(f, base)
                    ),
                    _ => String::new(),
                };
                push(
                    &mut rows,
                    "dynedge pass-through (not a DDNS path)",
                    "dynedge in Envoy (plain HTTP)",
                    f,
                    note,
                );
            }
            if !tls && opts.wants("good") {
                crate::step("dynedge good path against PowerDNS (plain HTTP)");
                let lua = varying_update_lua(
                    &format!("/nic/update?hostname={HOST}&myip="),
                    &[("Authorization", &format!("Basic {DEMO_BASIC}")), ua],
                    true,
                );
                let f = wrk(gw.daemon.pid(), &dir, "good-pdns", &gw.url("/"), &lua, c, d);
                let note = f.as_ref().map(replies_note).unwrap_or_default();
                push(
                    &mut rows,
                    "dynedge good (new address every request)",
                    "dynedge in Envoy → PowerDNS",
                    f,
                    note,
                );
            }
            gw.stop();
        }
    }
    loads.push(("after ceiling/nochg/good".into(), loadavg()));

    // The backend's own ceiling: PATCH straight at the PowerDNS API, one connection (the
    // gateway's pdns_api cluster also holds one: sqlite3 allows one writer).
    if opts.wants("good") {
        let pdns_pid = pdns.daemon().and_then(|d| d.pid());
        crate::step("PowerDNS API PATCH directly (one connection)");
        let patch_lua = format!(
            r#"local n = 0
function request()
  n = n + 1
  local net = (n % 2 == 0) and "198.51.100." or "203.0.113."
  local ip = net .. tostring(math.floor(n / 2) % 250 + 1)
  local body = '{{"rrsets":[{{"name":"{HOST}.","type":"A","ttl":60,"changetype":"REPLACE","records":[{{"content":"' .. ip .. '","disabled":false}}]}}]}}'
  return wrk.format("PATCH", "/api/v1/servers/localhost/zones/{DEMO_ZONE}.", {{["X-API-Key"] = "{PDNS_KEY}", ["Content-Type"] = "application/json"}}, body)
end
"#
        );
        let f = wrk(
            pdns_pid,
            &dir,
            "pdns-direct",
            &format!("http://127.0.0.1:{PDNS_API_PORT}/"),
            &patch_lua,
            1,
            d,
        );
        push(
            &mut rows,
            "backend ceiling: PowerDNS API PATCH",
            "PowerDNS 4 (sqlite3), wrk -c1",
            f,
            String::new(),
        );
    }
    if opts.wants("good") {
        crate::step("dynedge good path against BIND 9 (RFC 2136 UPDATE, TSIG, over BIND's DoH)");
        let r = rfc2136::Bind::start(
            &dir.join("bind-doh"),
            BIND_UPDATE_DNS_PORT,
            BIND_DOH_PORT,
            &[rfc2136::DEMO_KEY],
        )
        .and_then(|mut bind| {
            let config = plugin_config_from("examples/dynedge-rfc2136.json", 0, 300, None)?;
            let gw = Gateway::start_full(
                &dir.join("envoy-rfc2136"),
                &envoy_cfg(config),
                Variant::Dynedge,
                false,
                &nochg_path,
                DEMO_BASIC,
                &rfc2136::bind_doh_cluster(BIND_DOH_PORT),
            )?;
            let lua = varying_update_lua(
                &format!("/nic/update?hostname={HOST}&myip="),
                &[("Authorization", &format!("Basic {DEMO_BASIC}")), ua],
                true,
            );
            let f = wrk(
                gw.daemon.pid(),
                &dir,
                "good-rfc2136",
                &gw.url("/"),
                &lua,
                c,
                d,
            );
            gw.stop();
            bind.daemon.stop();
            f
        });
        let note = r.as_ref().map(replies_note).unwrap_or_default();
        push(
            &mut rows,
            "dynedge good (new address every request)",
            "dynedge in Envoy → BIND (RFC 2136/DoH)",
            r,
            note,
        );
    }
    // 2. Cold auth: Argon2 on every request.
    if opts.wants("cold") {
        crate::step(
            "cold auth: auth_cache_ttl_s 0 (Argon2id m=19456 t=2 p=1 per request, plain HTTP)",
        );
        let gw = Gateway::start(
            &dir.join("envoy-cold"),
            &envoy_cfg(plugin_config(0, 0, None)?),
            Variant::Dynedge,
            false,
            &nochg_path,
        )?;
        let cold = wrk(
            gw.daemon.pid(),
            &dir,
            "cold-auth",
            &gw.url("/"),
            &nochg_lua(DEMO_BASIC),
            c.min(4),
            d,
        );
        let note = cold
            .as_ref()
            .map(|f| match f.cpu_us_per_req {
                Some(cpu) => format!(
                    "one Argon2id verification per request: ≈ {:.1} ms of CPU in the wasm VM",
                    cpu / 1000.0
                ),
                None => String::new(),
            })
            .unwrap_or_default();
        push(
            &mut rows,
            "cold auth (auth_cache_ttl_s 0)",
            "dynedge in Envoy (plain HTTP)",
            cold,
            note,
        );
        gw.stop();
    }
    // 3. Bad-auth flood from 127.0.0.1 while a good client on 127.0.0.2 updates.
    if opts.wants("flood") {
        for limited in [true, false] {
            let limits = limited.then(|| {
                json!({"enabled": true,
                   "good_per_client": {"limit": 1_000_000_000u32, "window_s": 60},
                   "good_per_host": {"limit": 1_000_000_000u32, "window_s": 60}})
            });
            let what = if limited {
                "rate limits on (defaults for bad auth)"
            } else {
                "rate limits off"
            };
            crate::step(&format!("bad-auth flood, {what}"));
            let gw = Gateway::start(
                &dir.join("envoy-flood"),
                &envoy_cfg(plugin_config(0, 300, limits)?),
                Variant::Dynedge,
                false,
                &nochg_path,
            )?;
            let lua = fixed_lua(
                "GET",
                &nochg_path,
                &[("Authorization", &format!("Basic {BAD_BASIC}")), ua],
                None,
            ) + COUNT_REPLIES_LUA;
            let url = gw.url("/");
            let flood_dir = dir.clone();
            let name = format!("flood-{}", if limited { "limited" } else { "unlimited" });
            let pid = gw.daemon.pid();
            let flood = thread::spawn(move || wrk(pid, &flood_dir, &name, &url, &lua, c, d));
            thread::sleep(Duration::from_millis(500));
            let good = good_client(&gw.url(&nochg_path), &gw.ca, &dir, d as f64 - 1.0);
            let f = flood
                .join()
                .map_err(|_| "flood thread panicked".to_string())?;
            let note = f.as_ref().map(replies_note).unwrap_or_default();
            push(
                &mut rows,
                &format!("bad-auth flood, {what}"),
                "dynedge in Envoy (plain HTTP)",
                f,
                note,
            );
            match good {
                Ok((ok, bad, p50, p99, secs)) => {
                    let fig = Figures {
                        rps: (ok + bad) as f64 / secs,
                        p50_ms: p50,
                        p99_ms: p99,
                        requests: (ok + bad) as u64,
                        ..Figures::default()
                    };
                    push(
                        &mut rows,
                        "  … meanwhile a good client (curl, 127.0.0.2)",
                        "sequential, keep-alive",
                        Ok(fig),
                        format!("{ok} nochg 200, {bad} other"),
                    );
                }
                Err(e) => push(
                    &mut rows,
                    "  … meanwhile a good client",
                    "",
                    Err(e),
                    String::new(),
                ),
            }
            gw.stop();
        }
    }
    loads.push(("after cold auth/flood".into(), loadavg()));

    // 4. Scale.
    let mut scale_rows: Vec<String> = Vec::new();
    if opts.wants("scale") {
        for &n in &opts.scale {
            crate::step(&format!("scale: {n} hosts"));
            let user = format!("u{}", n / 2);
            let path = format!("/nic/update?hostname=h{}.{DEMO_ZONE}&myip=192.0.2.1", n / 2);
            let config = plugin_config(n, 300, None)?;
            let bytes = config.len();
            let basic = basic_of(&user);
            let cfg = envoy_cfg(config);
            let dir_n = dir.join("envoy-scale");
            // Probe with the scale user: first reply good (creates the record), then nochg.
            let gw = Gateway::start_as(&dir_n, &cfg, &path, &basic);
            let gw = match gw {
                Ok(g) => g,
                Err(e) => {
                    push(
                        &mut rows,
                        &format!("scale: {n} hosts, nochg"),
                        "dynedge in Envoy (plain HTTP)",
                        Err(e),
                        String::new(),
                    );
                    continue;
                }
            };
            let _ = gw.get(&path, &basic, None);
            let (rss, allocated) = gw.memory();
            let vms = gw.wasm_vms().max(1);
            let lua = fixed_lua(
                "GET",
                &path,
                &[("Authorization", &format!("Basic {basic}")), ua],
                None,
            );
            let f = wrk(
                gw.daemon.pid(),
                &dir,
                &format!("scale-{n}"),
                &gw.url("/"),
                &lua,
                c,
                d,
            );
            let per_vm = rss.saturating_sub(ceiling_rss) / vms;
            push(
            &mut rows,
            &format!("scale: {n} hosts, nochg"),
            "dynedge in Envoy (plain HTTP)",
            f,
            format!("config {} KiB; first reply after {:.2} s; RSS {} MiB (+{} MiB per VM over the ceiling Envoy, {vms} VMs); tcmalloc {} MiB", bytes / 1024, gw.ready_s, rss / 1024, per_vm / 1024, allocated >> 20),
        );
            scale_rows.push(format!("{n}"));
            gw.stop();
        }
    }
    loads.push(("after scale".into(), loadavg()));

    // 5. Peers.
    if opts.peers && opts.wants("peers") {
        crate::step("peer: PyPI dyndns 2.0.0 (Flask, gunicorn -w 2) on BIND 9, plain HTTP");
        match start_bind(&dir.join("bind")).and_then(|(bind, key)| {
            let peer = start_python_peer(&dir.join("dyndns"), &key)?;
            Ok((bind, key, peer))
        }) {
            Ok((mut bind, key, mut peer)) => {
                let url = format!("http://127.0.0.1:{PEER_PORT}/");
                let same = fixed_lua(
                    "GET",
                    &format!("/update-by-query?secret={PEER_SECRET}&fqdn={HOST}&ipv4=192.0.2.1"),
                    &[ua],
                    None,
                );
                let f = wrk(peer.pid(), &dir, "peer-dyndns-same", &url, &same, c, d);
                let note = nochg_ratio_note(&rows, &f);
                push(
                    &mut rows,
                    "peer, same address (its nochg)",
                    "dyndns (PyPI) → BIND",
                    f,
                    note,
                );
                let lua = varying_update_lua(
                    &format!("/update-by-query?secret={PEER_SECRET}&fqdn={HOST}&ipv4="),
                    &[ua],
                    false,
                );
                let f = wrk(peer.pid(), &dir, "peer-dyndns-good", &url, &lua, c, d);
                push(
                    &mut rows,
                    "peer, new address every request",
                    "dyndns (PyPI) → BIND",
                    f,
                    String::new(),
                );
                peer.stop();
                crate::step("peer: PyPI sftdyn 0.10 (aiohttp) → nsupdate → BIND 9, plain HTTP");
                match start_sftdyn(&dir.join("sftdyn"), &key) {
                    Ok(mut sft) => {
                        let url = format!("http://127.0.0.1:{SFTDYN_PORT}/");
                        let same = fixed_lua(
                            "GET",
                            &format!("/{PEER_SECRET}"),
                            &[("X-Bench-IP", "192.0.2.1"), ua],
                            None,
                        );
                        let f = wrk(sft.pid(), &dir, "peer-sftdyn-same", &url, &same, c, d);
                        let note = nochg_ratio_note(&rows, &f);
                        push(
                            &mut rows,
                            "peer, same address (UPTODATE)",
                            "sftdyn (PyPI)",
                            f,
                            note,
                        );
                        let lua = format!(
                            r#"local n = 0
function request()
  n = n + 1
  local net = (n % 2 == 0) and "198.51.100." or "203.0.113."
  local ip = net .. tostring(math.floor(n / 2) % 250 + 1)
  return wrk.format("GET", "/{PEER_SECRET}", {{["X-Bench-IP"] = ip}})
end
"#
                        );
                        let f = wrk(sft.pid(), &dir, "peer-sftdyn-good", &url, &lua, c, d);
                        push(
                            &mut rows,
                            "peer, new address every request",
                            "sftdyn (PyPI) → nsupdate → BIND",
                            f,
                            String::new(),
                        );
                        sft.stop();
                    }
                    Err(e) => push(&mut rows, "peer: PyPI sftdyn", "", Err(e), String::new()),
                }
                bind.stop();
            }
            Err(e) => push(&mut rows, "peer: PyPI dyndns", "", Err(e), String::new()),
        }
    }
    if opts.wants("pingora") || opts.wants("nochg") {
        crate::step("dynedge-pingora (the Pingora module, one worker thread, TLS): nochg and good");
        match pingora_rows(&dir, &envoy_cfg(base_config.clone()), &nochg_path, c, d) {
            Ok(r) => rows.extend(r.into_iter().map(|(w, s, f)| {
                let note = f.as_ref().map(replies_note).unwrap_or_default();
                let f = f.map_err(|e| e.to_string());
                match f {
                    Ok(f) => Row {
                        workload: w,
                        server: s,
                        figures: Some(f),
                        note,
                    },
                    Err(e) => Row {
                        workload: w,
                        server: s,
                        figures: None,
                        note: format!("failed: {e}"),
                    },
                }
            })),
            Err(e) => push(
                &mut rows,
                "dynedge nochg",
                "dynedge-pingora",
                Err(e),
                String::new(),
            ),
        }
    }
    pdns.stop();
    loads.push(("end".into(), loadavg()));

    let md = markdown(&rows, &machine, &loads, &opts);
    let out = dir.join("results.md");
    fs::write(&out, &md).map_err(|e| format!("{}: {e}", out.display()))?;
    println!("\n{md}");
    crate::step(&format!("written to {}", out.display()));
    Ok(())
}

/// `, N% by CPU per request`: the ceiling's server CPU per request over ours.
fn cpu_ratio(ours: &Figures, ceiling: &Figures) -> String {
    match (ours.cpu_us_per_req, ceiling.cpu_us_per_req) {
        (Some(a), Some(b)) if a > 0.0 => format!(", {:.0}% by CPU per request", 100.0 * b / a),
        _ => String::new(),
    }
}

/// The Pingora module (`dynedge-pingora`, `$DYNEDGE_PINGORA` or the release build), started
/// by the harness as the end-to-end tests start it: nochg (TLS) and good against PowerDNS.
fn pingora_rows(
    dir: &Path,
    cfg: &EnvoyConfig,
    nochg_path: &str,
    c: u32,
    d: u64,
) -> Result<Vec<(String, String, Result<Figures>)>> {
    let mut gw = dynedge_envoy::Envoy::start_pingora(&dir.join("pingora"), cfg)?;
    let pid = gw.daemon().pid();
    let url = gw.url("/");
    let ua = ("User-Agent", "dynedge-bench/1.0");
    let auth = format!("Basic {DEMO_BASIC}");
    for _ in 0..2 {
        let _ = run(
            "curl (warm-up)",
            Command::new("curl")
                .args(["-s", "-A", "dynedge-bench/1.0", "-H"])
                .arg(format!("Authorization: {auth}"))
                .arg("--cacert")
                .arg(&cfg.certificate.cert)
                .arg(gw.url(nochg_path)),
        );
    }
    let nochg = wrk(
        pid,
        dir,
        "pingora-nochg-tls",
        &url,
        &(fixed_lua("GET", nochg_path, &[("Authorization", &auth), ua], None) + COUNT_REPLIES_LUA),
        c,
        d,
    );
    let lua = varying_update_lua(
        &format!("/nic/update?hostname={HOST}&myip="),
        &[("Authorization", &auth), ua],
        true,
    );
    let good = wrk(pid, dir, "pingora-good-pdns", &url, &lua, c, d);
    gw.daemon().stop();
    Ok(vec![
        (
            "dynedge nochg (auth cache warm)".into(),
            "dynedge-pingora (TLS)".into(),
            nochg,
        ),
        (
            "dynedge good (new address every request)".into(),
            "dynedge-pingora (TLS) → PowerDNS".into(),
            good,
        ),
    ])
}

fn replies_note(f: &Figures) -> String {
    let mut r = f.replies.clone();
    r.sort();
    let parts: Vec<String> = r.iter().map(|(w, n)| format!("{n} {w}")).collect();
    let mut s = parts.join(", ");
    if f.non2xx > 0 {
        let _ = write!(s, "; {} non-2xx", f.non2xx);
    }
    if f.socket_errors > 0 {
        let _ = write!(s, "; {} socket errors/timeouts", f.socket_errors);
    }
    s
}

fn nochg_ratio_note(rows: &[Row], peer: &Result<Figures>) -> String {
    let ours = rows
        .iter()
        .find(|r| r.workload.starts_with("dynedge nochg") && r.server.contains("plain"))
        .and_then(|r| r.figures.as_ref());
    match (ours, peer) {
        (Some(o), Ok(p)) if p.rps > 0.0 => {
            format!("dynedge nochg (plain) is {:.1}× this", o.rps / p.rps)
        }
        _ => String::new(),
    }
}

fn markdown(rows: &[Row], machine: &str, loads: &[(String, String)], opts: &Opts) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Machine: {machine}.  ");
    let _ = writeln!(
        s,
        "Load: wrk -t1 -c{} -d{}s --latency (Lua scripts), on the same machine as the servers; Envoy --concurrency 1.  ",
        opts.connections, opts.duration_s
    );
    let _ = writeln!(
        s,
        "Load average (1/5/15 min): {}.\n",
        loads
            .iter()
            .map(|(w, l)| format!("{w} {l}"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    s.push_str(
        "| workload | server | req/s | p50 ms | p99 ms | server CPU µs/req | notes |\n|---|---|---:|---:|---:|---:|---|\n",
    );
    for r in rows {
        match &r.figures {
            Some(f) => {
                let _ = writeln!(
                    s,
                    "| {} | {} | {:.0} | {} | {} | {} | {} |",
                    r.workload,
                    r.server,
                    f.rps,
                    fmt_ms(f.p50_ms),
                    fmt_ms(f.p99_ms),
                    f.cpu_us_per_req.map_or("–".into(), |c| format!("{c:.0}")),
                    r.note
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "| {} | {} | – | – | – | – | {} |",
                    r.workload, r.server, r.note
                );
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK: &str = "Running 3s test @ http://127.0.0.1:27443/
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   812.00us  200.00us   5.00ms   90.00%
  Latency Distribution
     50%  750.00us
     75%    0.90ms
     90%    1.10ms
     99%    2.31ms
  30000 requests in 3.00s, 4.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:  10000.50
Transfer/sec:      1.33MB
reply nochg 29993
";

    #[test]
    fn wrk_output_gives_rate_percentiles_errors_and_reply_counts() {
        let f = parse_wrk(WRK).unwrap();
        assert!((f.rps - 10000.5).abs() < 1e-9);
        assert!((f.p50_ms - 0.75).abs() < 1e-9);
        assert!((f.p99_ms - 2.31).abs() < 1e-9);
        assert_eq!(f.requests, 30000);
        assert_eq!(f.non2xx, 7);
        assert_eq!(f.socket_errors, 3);
        assert_eq!(f.replies, vec![("nochg".to_string(), 29993)]);
    }

    #[test]
    fn wrk_output_without_a_rate_is_an_error() {
        assert!(parse_wrk("unable to connect to 127.0.0.1:27443 Connection refused").is_err());
    }

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
