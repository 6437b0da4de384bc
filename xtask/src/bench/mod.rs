//! `cargo xtask bench`: bounded wrk runs, one after another on this machine, against Envoy's own
//! `direct_response` ceiling, dynedge in Envoy (nochg, good, cold auth, bad-auth flood, scale),
//! the backends' direct throughput, peers (the PyPI `dyndns` app on BIND) and dynedge in
//! Pingora. Prints figures and writes them as markdown to `.run/bench/results.md`; nothing here
//! asserts a time.
//!
//! Envoy is started from the same bootstrap template as `cargo xtask up` and the end-to-end
//! tests (`envoy/bootstrap.yaml.tmpl`), rendered by `dynedge_envoy::render_bootstrap` and then
//! varied by [`gateway::Variant`]: plain HTTP (no TLS transport socket), no wasm filter (the
//! ceiling, the route answers `direct_response` 200), plus an admin listener for `/memory` and
//! `/stats`.
//!
//! Ports: 27000–27999 (27443 the gateway, 27901 its admin, 27053/27081 PowerDNS, 27054 BIND,
//! 27080 the Python peer); the etcd section's stack takes free ports.
//!
//! `wrk` runs wrk and reads its figures, `gateway` starts Envoy, `envoy_rows` and `scale`
//! measure dynedge in Envoy, `etcd` the etcd store against the configuration store, `peers`
//! and `pingora` the others, `report` keeps the rows.

mod docs;
mod envoy_rows;
mod etcd;
mod gateway;
mod peers;
mod pingora;
mod replies;
mod report;
mod scale;
mod storm;
mod storm_check;
mod wrk;

use std::fs;
use std::path::PathBuf;

use dynedge_envoy::{Certificate, EnvoyConfig, PowerDns, DEMO_ZONE};

use crate::Result;
use report::{loadavg, machine, Report};
use wrk::{fixed_lua, wrk_with, Figures, COUNT_REPLIES_LUA, TIMEOUT_5S};

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
    /// `--only a,b`: just these sections (nochg, good, cold, flood, scale, peers, pingora, etcd,
    /// storm, newconn).
    pub only: Vec<String>,
    /// `--storm N`: hosts (and users) in the storm.
    pub storm_hosts: usize,
    /// `--storm-connections C`: wrk's connections during the storm.
    pub storm_connections: u32,
    /// Write the table into docs/benchmarks.md and README.md (a full run, or `--write-docs`).
    pub write_docs: bool,
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
            storm_hosts: value("--storm")?
                .map_or(if quick { 1_000 } else { 10_000 }, |n| n as usize),
            storm_connections: value("--storm-connections")?.map_or(64, |c| c as u32),
            write_docs: args.iter().any(|a| a == "--write-docs")
                || !(quick || args.iter().any(|a| a == "--only" || a == "--no-docs")),
        })
    }

    fn wants(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }
}

const UA: (&str, &str) = ("User-Agent", "dynedge-bench/1.0");
/// The new-connection mode's header.
const CLOSE: (&str, &str) = ("Connection", "close");

/// What every section of a run shares.
struct Bench {
    opts: Opts,
    dir: PathBuf,
    wasm: PathBuf,
    certificate: Certificate,
    /// The update the nochg rows repeat (and every gateway is probed with).
    nochg_path: String,
    /// The ceiling's figures (TLS or not), the base of the nochg rows' notes.
    ceiling: Vec<(bool, Figures)>,
    /// The TLS ceiling with a new connection per request, the base of the other such rows.
    ceiling_newconn: Option<Figures>,
    /// The ceiling Envoy's resident set (KiB), the base of the scale rows' notes.
    ceiling_rss: u64,
    /// The backends' one-write-per-call rates (per second), the base of the storm rows' notes.
    storm_ceiling: Vec<(&'static str, f64)>,
    report: Report,
}

impl Bench {
    /// The shared bootstrap's settings for the bench gateway running `plugin_config`.
    fn envoy_cfg(&self, plugin_config: String) -> EnvoyConfig {
        EnvoyConfig {
            listen_address: "127.0.0.1".into(),
            listen_port: GATEWAY_PORT,
            certificate: self.certificate.clone(),
            wasm: self.wasm.clone(),
            plugin_config,
            pdns_api_port: PDNS_API_PORT,
            access_log: self.dir.join("access.log"),
            webhook_port: None,
        }
    }

    /// wrk for the run's duration; its script and output are kept as `name.lua`/`name.out`.
    fn wrk(
        &self,
        server: Option<u32>,
        name: &str,
        url: &str,
        lua: &str,
        conns: u32,
    ) -> Result<Figures> {
        // Every row counts the reply words it got.
        let counted;
        let lua = if lua.contains("function response") {
            lua
        } else {
            counted = format!("{lua}{COUNT_REPLIES_LUA}");
            &counted
        };
        wrk_with(
            server,
            &self.dir,
            name,
            url,
            lua,
            conns,
            self.opts.duration_s,
            TIMEOUT_5S,
        )
    }

    /// A GET of `path` with Basic credentials `basic`, every request the same.
    fn basic_get_lua(&self, path: &str, basic: &str) -> String {
        fixed_lua(
            "GET",
            path,
            &[("Authorization", &format!("Basic {basic}")), UA],
            None,
        )
    }

    /// [`Bench::basic_get_lua`] with `Connection: close`: a new connection (and over TLS a full
    /// handshake) for every request, as most DDNS clients connect.
    fn basic_get_close_lua(&self, path: &str, basic: &str) -> String {
        fixed_lua(
            "GET",
            path,
            &[("Authorization", &format!("Basic {basic}")), UA, CLOSE],
            None,
        )
    }
}

pub fn bench(args: &[String]) -> Result<()> {
    let opts = Opts::from_args(args)?;
    let dir = dynedge_envoy::workspace_root().join(".run/bench");
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
    if opts.wants("pingora") || opts.wants("nochg") || opts.wants("newconn") || opts.wants("storm")
    {
        // The Pingora rows measure this tree, not whatever binary was built last.
        if std::env::var_os("DYNEDGE_PINGORA").is_none() {
            crate::step("building dynedge-pingora (cargo build --release -p dynedge-pingora)");
            crate::run_visible(
                "cargo build (dynedge-pingora)",
                crate::cargo()
                    .current_dir(dynedge_envoy::workspace_root())
                    .args(["build", "--release", "-p", "dynedge-pingora"]),
            )?;
        }
    }
    let commit = docs::commit();
    let started = docs::utc_now();
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let load_start = loadavg();
    let machine = machine();
    crate::step(&format!("machine: {machine}; load average {load_start}"));

    crate::step("PowerDNS (sqlite3) for the good path");
    let mut pdns = PowerDns::start(&dir.join("pdns"), PDNS_DNS_PORT, PDNS_API_PORT, PDNS_KEY)?;
    pdns.create_zone(DEMO_ZONE)?;
    let certificate = dynedge_envoy::Certificate::self_signed(&dir.join("tls"))?;
    let mut b = Bench {
        opts,
        dir,
        wasm,
        certificate,
        nochg_path: format!("/nic/update?hostname={HOST}&myip=192.0.2.1"),
        ceiling: Vec::new(),
        ceiling_newconn: None,
        ceiling_rss: 0,
        storm_ceiling: Vec::new(),
        report: Report::default(),
    };
    b.report.load("start");
    b.run_sections(pdns.daemon().and_then(|d| d.pid()))?;
    pdns.stop();
    b.report.load("end");

    let args_text = if args.is_empty() {
        String::new()
    } else {
        format!(" {}", args.join(" "))
    };
    let md = format!(
        "Command: `cargo xtask bench{args_text}`, commit {commit}, run {started}–{} UTC, on a \
         machine shared with other engineers' builds and tests (see the load averages): \
         absolute rates move with that load; CPU per request and the reply counts do not.\n\n{}",
        docs::utc_now().rsplit(' ').next().unwrap_or_default(),
        b.report.markdown(&machine, &b.opts)
    );
    let out = b.dir.join("results.md");
    fs::write(&out, &md).map_err(|e| format!("{}: {e}", out.display()))?;
    println!("\n{md}");
    crate::step(&format!("written to {}", out.display()));
    if b.opts.write_docs {
        docs::write(&md)?;
        crate::step(&format!("table written into {}", docs::FILES.join(" and ")));
    }
    Ok(())
}

impl Bench {
    /// Every section `--only` asks for, in the order that keeps the notes' bases measured first.
    fn run_sections(&mut self, pdns_pid: Option<u32>) -> Result<()> {
        if self.opts.wants("nochg") || self.opts.wants("good") || self.opts.wants("newconn") {
            for tls in [true, false] {
                self.ceiling_row(tls)?;
                self.nochg_rows(tls)?;
            }
        }
        self.report.load("after ceiling/nochg/good");
        if self.opts.wants("good") {
            self.pdns_direct_row(pdns_pid);
            self.rfc2136_row();
        }
        if self.opts.wants("cold") {
            self.cold_row()?;
        }
        if self.opts.wants("flood") {
            for limited in [true, false] {
                self.flood_rows(limited)?;
            }
        }
        self.report.load("after cold auth/flood");
        if self.opts.wants("scale") {
            for n in self.opts.scale.clone() {
                self.scale_row(n)?;
            }
        }
        self.report.load("after scale");
        if self.opts.peers && (self.opts.wants("peers") || self.opts.wants("newconn")) {
            self.peer_rows();
        }
        if self.opts.wants("pingora") || self.opts.wants("nochg") || self.opts.wants("newconn") {
            self.pingora_rows();
        }
        if self.opts.wants("etcd") {
            self.etcd_rows();
        }
        if self.opts.wants("storm") {
            self.storm_rows();
        }
        self.report.load("after storm");
        Ok(())
    }
}
