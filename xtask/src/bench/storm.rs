//! The re-registration storm: N hosts owned by N users, each sending one real update, as fast
//! as the gateway takes them, against PowerDNS and BIND, through Envoy and through Pingora, beside
//! the backend's own one-write-per-call ceiling measured in the same run.
//!
//! Per backend and gateway, two phases of N updates each (one per host, `--storm-connections`
//! at once, wrk sending exactly N requests and stopping when the N-th reply is in):
//! 1. *first contact*: every host's first update (a record that does not exist yet; the
//!    gateway's auth and record caches are cold, so each is a read and a write);
//! 2. *new address*: every host again with a new address (caches warm: one write each).
//!
//! Reported per phase: time to drain, updates/s, p50/p99 (wrk), the gateway's CPU per update,
//! the reply words, backend calls per update from the backend's own counters (PowerDNS's
//! webserver log lines, BIND's statistics channel opcodes), and after phase 2 whether an AXFR of
//! the zone holds, for every host, exactly the address of its last `good`.
//!
//! The storm users' password hashes are Argon2id with m=8 KiB, t=1 (the demo user keeps the
//! OWASP parameters): a first contact then measures the update path, not N Argon2 runs (the
//! `cold auth` row has that cost).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use dynedge_envoy::{rfc2136, Daemon, EnvoyConfig, PowerDns, DEMO_ZONE};
use serde_json::{json, Value};

use super::gateway::{basic_of, plugin_config_from, Gateway, Variant};
use super::storm_check::{check_dns, host_name, parse_axfr, parse_replies, storm_addr, MAX_HOSTS};
use super::wrk::{wrk_with, Figures};
use super::{Bench, BIND_DOH_PORT, DEMO_BASIC, PDNS_KEY};
use crate::Result;

const STORM_PDNS_DNS_PORT: u16 = 27059;
const STORM_PDNS_API_PORT: u16 = 27083;
const STORM_BIND_DNS_PORT: u16 = 27057;
const STORM_BIND_STATS_PORT: u16 = 27058;
/// Names the ceiling rows write (outside the storm's `hN`).
const CEILING_WRITES: usize = 2_000;

/// The phase of the addresses the storm's hosts hold before it (see [`storm_addr`]).
const SEED_PHASE: u32 = 14;

/// Names per seeding write.
const SEED_CHUNK: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    PowerDns,
    Bind,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::PowerDns => "PowerDNS",
            Backend::Bind => "BIND (RFC 2136/DoH)",
        }
    }
}

/// The storm's DNS server, with its own counters of the calls it served.
enum Dns {
    PowerDns(PowerDns, PathBuf),
    Bind(Daemon),
}

impl Dns {
    fn start(backend: Backend, dir: &Path) -> Result<Dns> {
        match backend {
            Backend::PowerDns => {
                let mut p =
                    PowerDns::start(dir, STORM_PDNS_DNS_PORT, STORM_PDNS_API_PORT, PDNS_KEY)?;
                p.create_zone(DEMO_ZONE)?;
                Ok(Dns::PowerDns(p, dir.join("pdns.log")))
            }
            Backend::Bind => start_bind(dir).map(Dns::Bind),
        }
    }

    fn dns_port(&self) -> u16 {
        match self {
            Dns::PowerDns(..) => STORM_PDNS_DNS_PORT,
            Dns::Bind(_) => STORM_BIND_DNS_PORT,
        }
    }

    fn pid(&mut self) -> Option<u32> {
        match self {
            Dns::PowerDns(p, _) => p.daemon().and_then(|d| d.pid()),
            Dns::Bind(d) => d.pid(),
        }
    }

    /// (reads, writes) the server has answered so far: PowerDNS API GETs and PATCHes of the
    /// zone (its webserver log), BIND QUERY and UPDATE messages (its statistics channel).
    fn calls(&self) -> Result<(u64, u64)> {
        match self {
            Dns::PowerDns(_, log) => {
                let text =
                    fs::read_to_string(log).map_err(|e| format!("{}: {e}", log.display()))?;
                Ok(pdns_api_calls(&text, DEMO_ZONE))
            }
            Dns::Bind(_) => {
                let out = Command::new("curl")
                    .args(["-s", "-m", "5"])
                    .arg(format!(
                        "http://127.0.0.1:{STORM_BIND_STATS_PORT}/json/v1/server"
                    ))
                    .stdin(Stdio::null())
                    .output()
                    .map_err(|e| format!("curl: {e}"))?;
                let v: Value = serde_json::from_slice(&out.stdout)
                    .map_err(|e| format!("BIND statistics: {e}"))?;
                let op = |name: &str| v["opcodes"][name].as_u64().unwrap_or(0);
                Ok((op("QUERY"), op("UPDATE")))
            }
        }
    }

    fn axfr(&self) -> Result<String> {
        dynedge_envoy::run(
            "dig AXFR",
            Command::new("dig")
                .args([
                    "+noall",
                    "+answer",
                    "+time=10",
                    "+tries=1",
                    "@127.0.0.1",
                    "-p",
                ])
                .arg(self.dns_port().to_string())
                .args([DEMO_ZONE, "AXFR"]),
        )
    }

    fn stop(self) {
        match self {
            Dns::PowerDns(mut p, _) => p.stop(),
            Dns::Bind(mut d) => d.stop(),
        }
    }
}

/// Zone API calls in a PowerDNS webserver log: (GETs, PATCHes).
pub(super) fn pdns_api_calls(log: &str, zone: &str) -> (u64, u64) {
    let path = format!("/api/v1/servers/localhost/zones/{zone}.");
    let (mut reads, mut writes) = (0, 0);
    for line in log.lines().filter(|l| l.contains("[webserver]")) {
        if line.contains(&format!("\"GET {path}")) {
            reads += 1;
        } else if line.contains(&format!("\"PATCH {path}")) {
            writes += 1;
        }
    }
    (reads, writes)
}

/// BIND for the storm: the harness's named.conf (`rfc2136::named_conf`, DoH on
/// [`BIND_DOH_PORT`]) with zone transfers to loopback and a statistics channel.
fn start_bind(dir: &Path) -> Result<Daemon> {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    fs::write(
        dir.join(format!("{}.zone", rfc2136::ZONE)),
        rfc2136::zone_file(),
    )
    .map_err(|e| e.to_string())?;
    let base = rfc2136::named_conf(
        dir,
        STORM_BIND_DNS_PORT,
        BIND_DOH_PORT,
        &[rfc2136::DEMO_KEY],
    );
    let conf = base.replace("allow-transfer { none; }", "allow-transfer { 127.0.0.1; }");
    if conf == base {
        return Err("named.conf: no `allow-transfer { none; }` to open for the AXFR".into());
    }
    let conf = format!(
        "{conf}statistics-channels {{ inet 127.0.0.1 port {STORM_BIND_STATS_PORT} allow {{ 127.0.0.1; }}; }};\n"
    );
    let path = dir.join("named.conf");
    fs::write(&path, conf).map_err(|e| e.to_string())?;
    let mut cmd = Command::new("named");
    cmd.arg("-g").arg("-c").arg(&path).args(["-n", "1"]);
    let mut daemon = Daemon::spawn("BIND (storm)", cmd, &dir.join("named.log"))?;
    let started = Instant::now();
    loop {
        daemon.check_alive()?;
        let soa = dynedge_envoy::dig(STORM_BIND_DNS_PORT, DEMO_ZONE, "SOA").unwrap_or_default();
        if !soa.is_empty() && TcpStream::connect(("127.0.0.1", BIND_DOH_PORT)).is_ok() {
            return Ok(daemon);
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err(format!(
                "BIND did not serve the zone:\n{}",
                daemon.log_text()
            ));
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// The gateway under the storm: Envoy with the filter, or dynedge-pingora; TLS either way.
enum Proxy {
    Envoy(Gateway),
    Pingora(dynedge_envoy::Envoy),
}

impl Proxy {
    fn name(&self) -> &'static str {
        match self {
            Proxy::Envoy(_) => "dynedge in Envoy",
            Proxy::Pingora(_) => "dynedge-pingora",
        }
    }

    fn pid(&self) -> Option<u32> {
        match self {
            Proxy::Envoy(g) => g.daemon.pid(),
            Proxy::Pingora(p) => p.pid(),
        }
    }

    fn url(&self, path: &str) -> String {
        match self {
            Proxy::Envoy(g) => g.url(path),
            Proxy::Pingora(p) => p.url(path),
        }
    }

    fn stop(self) {
        match self {
            Proxy::Envoy(g) => g.stop(),
            Proxy::Pingora(mut p) => p.daemon().stop(),
        }
    }
}

/// An Argon2id PHC string of `password` with the cheapest parameters (m=8 KiB, t=1, p=1).
fn cheap_hash(password: &str) -> Result<String> {
    let params = Params::new(8, 1, 1, None).map_err(|e| e.to_string())?;
    let salt = SaltString::encode_b64(b"dynedge-storm-salt").map_err(|e| e.to_string())?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// The storm's plugin configuration: the example for `backend` plus users `u0..uN` owning
/// `h0..hN` ([`cheap_hash`] of `demo-password`), 10.0.0.0/8 allowed, caches kept for an hour.
fn storm_config(backend: Backend, hosts: usize) -> Result<String> {
    let file = match backend {
        Backend::PowerDns => "examples/dynedge.json",
        Backend::Bind => "examples/dynedge-rfc2136.json",
    };
    let text = plugin_config_from(file, hosts, 3600, None)?;
    let mut cfg: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let hash = cheap_hash("demo-password")?;
    if let Some(users) = cfg["users"].as_array_mut() {
        for u in users.iter_mut().filter(|u| {
            u["name"]
                .as_str()
                .is_some_and(|n| n.starts_with('u') && n[1..].parse::<usize>().is_ok())
        }) {
            u["password_hash"] = json!(hash);
        }
    }
    if let Some(ranges) = cfg["zones"][0]["allow_ranges"].as_array_mut() {
        ranges.push(json!("10.0.0.0/8"));
    }
    cfg["record_cache_ttl_s"] = json!(3600);
    if cfg["backends"].get("pdns").is_some() {
        cfg["backends"]["pdns"]["authority"] = json!(format!("127.0.0.1:{STORM_PDNS_API_PORT}"));
    }
    serde_json::to_string(&cfg).map_err(|e| e.to_string())
}

/// A wrk script that sends the requests of `requests` (one per line: method, path,
/// Authorization value or empty, body or empty, tab-separated) once each, then stops as soon as
/// every reply is in: `delay()` holds back a connection that would send more, the N-th reply
/// stops the thread and wakes wrk's main thread (SIGINT, wrk's own stop) so the run's time is
/// the time to drain. Each reply is written to `replies` as `status<TAB>body`.
pub(super) fn list_lua(requests: &Path, replies: &Path, headers: &[(&str, &str)]) -> String {
    let mut static_headers = String::new();
    for (k, v) in headers {
        let _ = writeln!(static_headers, "static[\"{k}\"] = \"{v}\"");
    }
    format!(
        r#"local ffi = require("ffi")
ffi.cdef[[ int getpid(void); int tgkill(int tgid, int tid, int sig); ]]
local lines = {{}}
for l in io.lines("{requests}") do lines[#lines + 1] = l end
local N = #lines
local static = {{}}
{static_headers}sent, got = 0, 0
replies = {{}}
local threads = {{}}
function setup(thread) table.insert(threads, thread) end
function delay()
  if sent >= N then return 3600000 end
  return 0
end
-- wrk calls request() once before the run to check the script: that call sends nothing.
local checked = false
function request()
  local n = 1
  if checked then
    sent = sent + 1
    n = math.min(sent, N)
  end
  checked = true
  local method, path, auth, body = string.match(lines[n], "^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
  local h = {{}}
  for k, v in pairs(static) do h[k] = v end
  if auth ~= "" then h["Authorization"] = auth end
  if body == "" then body = nil end
  return wrk.format(method, path, h, body)
end
function response(status, headers, body)
  got = got + 1
  replies[got] = tostring(status) .. "\t" .. string.gsub(body or "", "[\r\n\t]", " ")
  if got == N then
    wrk.thread:stop()
    local pid = ffi.C.getpid()
    ffi.C.tgkill(pid, pid, 2)
  end
end
function done(summary, latency, requests)
  local f = io.open("{replies}", "w")
  for _, t in ipairs(threads) do
    local r = t:get("replies")
    for i = 1, #r do f:write(r[i], "\n") end
    io.write("list got ", t:get("got"), " of ", N, "\n")
  end
  f:close()
end
"#,
        requests = requests.display(),
        replies = replies.display(),
    )
}

/// What one list run gave: wrk's figures and the replies (`status<TAB>body` lines).
struct ListRun {
    figures: Figures,
    replies: String,
    drained: bool,
}

impl Bench {
    /// Sends every line of `lines` once through `conns` connections (see [`list_lua`]).
    fn run_list(
        &self,
        server: Option<u32>,
        name: &str,
        url: &str,
        lines: &[String],
        headers: &[(&str, &str)],
        conns: u32,
    ) -> Result<ListRun> {
        let requests = self.dir.join(format!("{name}.requests"));
        let replies = self.dir.join(format!("{name}.replies"));
        fs::write(&requests, lines.join("\n") + "\n").map_err(|e| e.to_string())?;
        let _ = fs::remove_file(&replies);
        let lua = list_lua(&requests, &replies, headers);
        // Bounded: a storm that does not drain ends here and says so.
        let max_s = 60 + lines.len() as u64 / 10;
        let figures = wrk_with(
            server,
            &self.dir,
            name,
            url,
            &lua,
            conns,
            max_s,
            &["--timeout", "30s"],
        )?;
        let text = fs::read_to_string(&replies).unwrap_or_default();
        let drained = text.lines().count() >= lines.len();
        let _ = fs::remove_file(&requests);
        Ok(ListRun {
            figures,
            replies: text,
            drained,
        })
    }

    /// Every storm row: PowerDNS then BIND; per backend its ceiling, then Envoy and Pingora.
    pub(super) fn storm_rows(&mut self) {
        let hosts = self.opts.storm_hosts.min(MAX_HOSTS);
        for backend in [Backend::PowerDns, Backend::Bind] {
            for (k, pingora) in [false, true].into_iter().enumerate() {
                if let Err(e) = self.storm(backend, pingora, hosts, k == 0) {
                    let gw = if pingora {
                        "dynedge-pingora"
                    } else {
                        "dynedge in Envoy"
                    };
                    self.report.push(
                        &format!("storm: {hosts} hosts"),
                        &format!("{gw} (TLS) → {}", backend.name()),
                        Err(e),
                        String::new(),
                    );
                }
            }
        }
    }

    fn storm(
        &mut self,
        backend: Backend,
        pingora: bool,
        hosts: usize,
        ceiling: bool,
    ) -> Result<()> {
        let tag = format!(
            "storm-{}-{}",
            if backend == Backend::PowerDns {
                "pdns"
            } else {
                "bind"
            },
            if pingora { "pingora" } else { "envoy" }
        );
        crate::step(&format!(
            "storm: {hosts} hosts, {} via {}",
            backend.name(),
            if pingora { "dynedge-pingora" } else { "Envoy" }
        ));
        let mut dns = Dns::start(backend, &self.dir.join(format!("{tag}-dns")))?;
        self.seed_zone(backend, &mut dns, hosts)?;
        if ceiling {
            self.ceiling_rows(backend, &mut dns);
        }
        let config = storm_config(backend, hosts)?;
        let cfg = EnvoyConfig {
            pdns_api_port: STORM_PDNS_API_PORT,
            ..self.envoy_cfg(config)
        };
        let gw = match (pingora, backend) {
            (false, _) => Proxy::Envoy(Gateway::start_full(
                &self.dir.join(format!("{tag}-gw")),
                &cfg,
                Variant::Dynedge,
                true,
                &self.nochg_path,
                DEMO_BASIC,
                &if backend == Backend::Bind {
                    rfc2136::bind_doh_cluster(BIND_DOH_PORT)
                } else {
                    String::new()
                },
            )?),
            (true, Backend::PowerDns) => Proxy::Pingora(dynedge_envoy::Envoy::start_pingora(
                &self.dir.join(format!("{tag}-gw")),
                &cfg,
            )?),
            (true, Backend::Bind) => {
                Proxy::Pingora(dynedge_envoy::Envoy::start_pingora_with_clusters(
                    &self.dir.join(format!("{tag}-gw")),
                    &cfg,
                    &[format!(
                        "{}=127.0.0.1:{BIND_DOH_PORT},h2c",
                        rfc2136::DEMO_CLUSTER
                    )],
                )?)
            }
        };
        let server = format!("{} (TLS) → {}", gw.name(), backend.name());
        let conns = self.opts.storm_connections;
        let mut last_good = BTreeMap::new();
        let phases = [
            (0u32, "storm, first contact (record and caches cold)"),
            (1u32, "storm, new address (caches warm)"),
        ];
        let mut result = Ok(());
        for (phase, what) in phases {
            let mut r_note_extra = String::new();
            let lines: Vec<String> = (0..hosts)
                .map(|i| {
                    format!(
                        "GET\t/nic/update?hostname={}&myip={}\tBasic {}\t",
                        host_name(i, DEMO_ZONE),
                        storm_addr(phase, i),
                        basic_of(&format!("u{i}"))
                    )
                })
                .collect();
            let before = dns.calls()?;
            let run = self.run_list(
                gw.pid(),
                &format!("{tag}-{phase}"),
                &gw.url("/"),
                &lines,
                &[super::UA],
                conns,
            );
            let after = dns.calls()?;
            let run = match run {
                Ok(r) => r,
                Err(e) => {
                    self.report.push(
                        &format!("{what}: {hosts} hosts"),
                        &server,
                        Err(e),
                        String::new(),
                    );
                    result = Err("storm phase failed".to_string());
                    break;
                }
            };
            let r = parse_replies(&run.replies, phase);
            last_good.extend(r.good.iter().map(|(k, v)| (*k, *v)));
            let extra = run.replies.lines().count().saturating_sub(hosts);
            if extra > 0 {
                // The list's script repeats its last line when wrk asks for more requests than
                // the list holds (it does after reconnecting a connection the server closed).
                let _ = write!(
                    r_note_extra,
                    "; {extra} replies past the {hosts} of the list (wrk sent its last request again)"
                );
            }
            if r.foreign > 0 {
                let _ = write!(
                    r_note_extra,
                    "; {} good replies named no host of this phase",
                    r.foreign
                );
            }
            let (reads, writes) = (after.0 - before.0, after.1 - before.1);
            let per = |n: u64| n as f64 / hosts.max(1) as f64;
            let mut note =
                format!(
                "{}; {} with -c{conns}; backend calls per update {:.2} ({:.2} read + {:.2} write)",
                r.tally.note(),
                if run.drained {
                    format!("drained in {:.1} s", run.figures.elapsed_s)
                } else {
                    format!("NOT drained: {} of {hosts} replies", run.replies.lines().count())
                },
                per(reads + writes),
                per(reads),
                per(writes)
            );
            if let Some(c) = self
                .storm_ceiling
                .iter()
                .find(|(b, _)| *b == backend.name())
                .map(|(_, c)| *c)
            {
                let _ = write!(
                    note,
                    "; {:.2}× the backend's one-write-per-call ceiling",
                    run.figures.rps / c
                );
            }
            note.push_str(&r_note_extra);
            if phase == 1 {
                let axfr = dns.axfr().map(|t| parse_axfr(&t));
                let _ = write!(
                    note,
                    "; {}",
                    match axfr {
                        Ok(a) =>
                            check_dns(hosts, DEMO_ZONE, phase, &last_good, &r.good, &a).note(hosts),
                        Err(e) => format!("AXFR failed: {e}"),
                    }
                );
            }
            let mut f = run.figures;
            f.replies.clear();
            self.report
                .push(&format!("{what}: {hosts} hosts"), &server, Ok(f), note);
        }
        gw.stop();
        dns.stop();
        result
    }

    /// Gives every storm host a record with an old address ([`SEED_PHASE`]) before the
    /// ceiling and the storm, in writes of [`SEED_CHUNK`] names: the routers of a storm had
    /// records before it, and both the ceiling and the storm then write to a zone of the same
    /// size (PowerDNS rectifies the whole zone on every API write, so a write's cost grows
    /// with the zone).
    fn seed_zone(&mut self, backend: Backend, dns: &mut Dns, hosts: usize) -> Result<()> {
        crate::step(&format!("storm: seeding {hosts} records"));
        let chunks: Vec<Vec<usize>> = (0..hosts)
            .collect::<Vec<_>>()
            .chunks(SEED_CHUNK)
            .map(<[usize]>::to_vec)
            .collect();
        match backend {
            Backend::PowerDns => {
                let lines: Vec<String> = chunks
                    .iter()
                    .map(|chunk| {
                        let rrsets: Vec<String> = chunk
                            .iter()
                            .map(|&i| {
                                format!(
                                    "{{\"name\":\"{}.\",\"type\":\"A\",\"ttl\":60,\"changetype\":\"REPLACE\",\"records\":[{{\"content\":\"{}\",\"disabled\":false}}]}}",
                                    host_name(i, DEMO_ZONE),
                                    storm_addr(SEED_PHASE, i)
                                )
                            })
                            .collect();
                        format!(
                            "PATCH\t/api/v1/servers/localhost/zones/{DEMO_ZONE}.\t\t{{\"rrsets\":[{}]}}",
                            rrsets.join(",")
                        )
                    })
                    .collect();
                let run = self.run_list(
                    dns.pid(),
                    "storm-seed-pdns",
                    &format!("http://127.0.0.1:{STORM_PDNS_API_PORT}/"),
                    &lines,
                    &[
                        ("X-API-Key", PDNS_KEY),
                        ("Content-Type", "application/json"),
                    ],
                    1,
                )?;
                let ok = run.replies.lines().filter(|l| l.starts_with("204")).count();
                if ok != lines.len() {
                    return Err(format!(
                        "seeding PowerDNS: {ok} of {} PATCHes answered 204",
                        lines.len()
                    ));
                }
            }
            Backend::Bind => {
                let mut script =
                    format!("server 127.0.0.1 {STORM_BIND_DNS_PORT}\nzone {DEMO_ZONE}\n");
                for chunk in &chunks {
                    for &i in chunk {
                        let _ = writeln!(
                            script,
                            "update add {} 60 A {}",
                            host_name(i, DEMO_ZONE),
                            storm_addr(SEED_PHASE, i)
                        );
                    }
                    script.push_str("send\n");
                }
                rfc2136::nsupdate(&rfc2136::DEMO_KEY, &script)?;
            }
        }
        Ok(())
    }

    /// The backend's one-write-per-call ceiling: [`CEILING_WRITES`] single-name writes, one
    /// at a time (PowerDNS: PATCH with wrk -c1; BIND: one nsupdate, one UPDATE per `send`).
    fn ceiling_rows(&mut self, backend: Backend, dns: &mut Dns) {
        let n = CEILING_WRITES.min(self.opts.storm_hosts.max(100));
        let pid = dns.pid();
        let f = match backend {
            Backend::PowerDns => {
                let lines: Vec<String> = (0..n)
                    .map(|i| {
                        format!(
                            "PATCH\t/api/v1/servers/localhost/zones/{DEMO_ZONE}.\t\t{{\"rrsets\":[{{\"name\":\"c{i}.{DEMO_ZONE}.\",\"type\":\"A\",\"ttl\":60,\"changetype\":\"REPLACE\",\"records\":[{{\"content\":\"{}\",\"disabled\":false}}]}}]}}",
                            storm_addr(15, i)
                        )
                    })
                    .collect();
                self.run_list(
                    pid,
                    "storm-ceiling-pdns",
                    &format!("http://127.0.0.1:{STORM_PDNS_API_PORT}/"),
                    &lines,
                    &[
                        ("X-API-Key", PDNS_KEY),
                        ("Content-Type", "application/json"),
                    ],
                    1,
                )
                .and_then(|r| {
                    if !r.drained {
                        return Err(format!("{} of {n} replies", r.replies.lines().count()));
                    }
                    let ok = r.replies.lines().filter(|l| l.starts_with("204")).count();
                    let mut f = r.figures;
                    f.replies = vec![("204".into(), ok as u64)];
                    Ok(f)
                })
            }
            Backend::Bind => nsupdate_ceiling(n, pid),
        };
        if let Ok(f) = &f {
            self.storm_ceiling.push((backend.name(), f.rps));
        }
        let what = match backend {
            Backend::PowerDns => "PowerDNS 4 (sqlite3) API PATCH, wrk -c1",
            Backend::Bind => "BIND 9 UPDATE (TSIG), one nsupdate",
        };
        let note = f
            .as_ref()
            .map(|f| format!("{n} names, one RRset per call; {} answered", f.requests))
            .unwrap_or_default();
        self.report
            .push("storm: backend ceiling, one write per call", what, f, note);
    }
}

/// `n` UPDATEs of one name each, sent one after another by one nsupdate over TCP (`-v`), TSIG
/// signed with the demo key: BIND's one-write-per-call rate. No per-request latency is known.
fn nsupdate_ceiling(n: usize, pid: Option<u32>) -> Result<Figures> {
    let mut script = format!("server 127.0.0.1 {STORM_BIND_DNS_PORT}\nzone {DEMO_ZONE}\n");
    for i in 0..n {
        let _ = write!(
            script,
            "update delete c{i}.{DEMO_ZONE} A\nupdate add c{i}.{DEMO_ZONE} 60 A {}\nsend\n",
            storm_addr(15, i)
        );
    }
    let before = pid.map(super::wrk::cpu_ticks);
    let started = Instant::now();
    rfc2136::nsupdate(&rfc2136::DEMO_KEY, &script)?;
    let secs = started.elapsed().as_secs_f64();
    let mut f = Figures {
        rps: n as f64 / secs,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        requests: n as u64,
        elapsed_s: secs,
        ..Figures::default()
    };
    if let (Some(p), Some(b)) = (pid, before) {
        let ticks = super::wrk::cpu_ticks(p).saturating_sub(b);
        f.cpu_us_per_req = Some(ticks as f64 * 1e6 / super::wrk::CLOCK_TICKS_PER_S / n as f64);
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn powerdns_zone_calls_are_counted_from_its_webserver_log() {
        let log = "Dec 02 [webserver] a 127.0.0.1:1 \"GET /api/v1/servers/localhost/zones/dyn.example.test./rrsets?x HTTP/1.1\" 200 9\n\
                   Dec 02 [webserver] b 127.0.0.1:1 \"PATCH /api/v1/servers/localhost/zones/dyn.example.test. HTTP/1.1\" 204 0\n\
                   Dec 02 [webserver] c 127.0.0.1:1 \"PATCH /api/v1/servers/localhost/zones/dyn.example.test. HTTP/1.1\" 204 0\n\
                   Dec 02 [webserver] d 127.0.0.1:1 \"GET /api/v1/servers/localhost HTTP/1.1\" 200 9\n\
                   Dec 02 gsqlite3: connection successful\n";
        assert_eq!(pdns_api_calls(log, "dyn.example.test"), (1, 2));
    }

    #[test]
    fn storm_users_get_a_cheap_argon2id_hash_and_the_storm_range() {
        let cfg: Value =
            serde_json::from_str(&storm_config(Backend::PowerDns, 3).unwrap()).unwrap();
        let users = cfg["users"].as_array().unwrap();
        let u2 = users.iter().find(|u| u["name"] == "u2").unwrap();
        assert!(u2["password_hash"]
            .as_str()
            .unwrap()
            .starts_with("$argon2id$v=19$m=8,t=1,p=1$"));
        assert_eq!(u2["hosts"][0], "h2.dyn.example.test");
        let demo = users.iter().find(|u| u["name"] == "demo").unwrap();
        assert!(demo["password_hash"].as_str().unwrap().contains("m=19456"));
        assert!(cfg["zones"][0]["allow_ranges"]
            .as_array()
            .unwrap()
            .contains(&json!("10.0.0.0/8")));
    }
}
