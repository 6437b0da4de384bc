//! dynedge in Envoy against Envoy's own ceiling: nochg, the filter's pass-through floor, good
//! against PowerDNS and BIND, the backends' own ceiling, cold auth and a bad-auth flood.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use dynedge_envoy::{rfc2136, DEMO_ZONE};
use serde_json::json;

use super::gateway::{plugin_config, plugin_config_from, Gateway, Variant};
use super::replies::{parse_curl_lines, Tally, CURL_MARK};
use super::report::cpu_ratio;
use super::wrk::{
    new_address_lua, varying_update_lua, wrk_with, Figures, COUNT_REPLIES_LUA, TIMEOUT_5S,
};
use super::{
    Bench, BAD_BASIC, BIND_DOH_PORT, BIND_UPDATE_DNS_PORT, DEMO_BASIC, HOST, PDNS_API_PORT,
    PDNS_KEY, UA,
};
use crate::Result;

impl Bench {
    /// The ceiling: Envoy without the filter answering the nochg update with `direct_response`.
    pub(super) fn ceiling_row(&mut self, tls: bool) -> Result<()> {
        let t = if tls { "TLS" } else { "plain HTTP" };
        crate::step(&format!("Envoy direct_response ceiling ({t})"));
        let gw = Gateway::start(
            &self.dir.join("envoy-ceiling"),
            &self.envoy_cfg(plugin_config(0, 300, None)?),
            Variant::Ceiling,
            tls,
            &self.nochg_path,
        )?;
        let f = self.wrk(
            gw.daemon.pid(),
            &format!("ceiling-{}", if tls { "tls" } else { "plain" }),
            &gw.url("/"),
            &self.basic_get_lua(&self.nochg_path, DEMO_BASIC),
            self.opts.connections,
        );
        if !tls {
            self.ceiling_rss = gw.memory().0;
        }
        if let Ok(f) = &f {
            self.ceiling.push((tls, f.clone()));
        }
        self.report.push(
            "Envoy ceiling: direct_response 200",
            &format!("Envoy ({t})"),
            f,
            String::new(),
        );
        if tls && self.opts.wants("newconn") {
            let f = self.wrk(
                gw.daemon.pid(),
                "ceiling-tls-newconn",
                &gw.url("/"),
                &self.basic_get_close_lua(&self.nochg_path, DEMO_BASIC),
                self.opts.connections,
            );
            if let Ok(f) = &f {
                self.ceiling_newconn = Some(f.clone());
            }
            self.report.push(
                "Envoy ceiling: direct_response 200, new TLS connection per request",
                "Envoy (TLS)",
                f,
                String::new(),
            );
        }
        gw.stop();
        Ok(())
    }

    /// nochg with the auth cache warm; over plain HTTP also the pass-through floor and good.
    pub(super) fn nochg_rows(&mut self, tls: bool) -> Result<()> {
        let t = if tls { "TLS" } else { "plain HTTP" };
        crate::step(&format!("dynedge nochg ({t})"));
        let gw = Gateway::start(
            &self.dir.join("envoy-dynedge"),
            &self.envoy_cfg(plugin_config(0, 300, None)?),
            Variant::Dynedge,
            tls,
            &self.nochg_path,
        )?;
        let (code, body) = gw.get(&self.nochg_path, DEMO_BASIC, None)?;
        if !body.starts_with("nochg") {
            return Err(format!("warming the nochg path gave {code} {body}"));
        }
        let f = self.wrk(
            gw.daemon.pid(),
            &format!("nochg-{}", if tls { "tls" } else { "plain" }),
            &gw.url("/"),
            &self.basic_get_lua(&self.nochg_path, DEMO_BASIC),
            self.opts.connections,
        );
        let note = match (&f, self.ceiling_of(tls)) {
            (Ok(f), Some(base)) => format!(
                "{:.0}% of the ceiling's req/s{}; p99 {:+.2} ms over it",
                100.0 * f.rps / base.rps,
                cpu_ratio(f, base),
                f.p99_ms - base.p99_ms
            ),
            _ => String::new(),
        };
        self.report.push(
            "dynedge nochg (auth cache warm)",
            &format!("dynedge in Envoy ({t})"),
            f,
            note,
        );
        if tls && self.opts.wants("newconn") {
            let f = self.wrk(
                gw.daemon.pid(),
                "nochg-tls-newconn",
                &gw.url("/"),
                &self.basic_get_close_lua(&self.nochg_path, DEMO_BASIC),
                self.opts.connections,
            );
            let note = self.newconn_note(&f);
            self.report.push(
                "dynedge nochg, new TLS connection per request",
                "dynedge in Envoy (TLS)",
                f,
                note,
            );
        }
        if !tls {
            self.pass_through_row(&gw);
        }
        if !tls && self.opts.wants("good") {
            self.good_pdns_row(&gw);
        }
        gw.stop();
        Ok(())
    }

    /// `N% of the ceiling's req/s` against the ceiling's new-connection row.
    pub(super) fn newconn_note(&self, f: &Result<Figures>) -> String {
        match (f, &self.ceiling_newconn) {
            (Ok(f), Some(base)) if base.rps > 0.0 => format!(
                "{:.0}% of the new-connection ceiling's req/s{}",
                100.0 * f.rps / base.rps,
                cpu_ratio(f, base)
            ),
            _ => String::new(),
        }
    }

    fn ceiling_of(&self, tls: bool) -> Option<&Figures> {
        self.ceiling.iter().find(|(x, _)| *x == tls).map(|(_, f)| f)
    }

    /// The same VM and route table with nothing for the core to do: `/` is not a DDNS path, so
    /// the filter passes it on and the 404 direct_response route answers.
    fn pass_through_row(&mut self, gw: &Gateway) {
        crate::step("dynedge pass-through (plain HTTP): the wasm filter's own floor");
        let lua = self.basic_get_lua("/", DEMO_BASIC);
        let f = self.wrk(
            gw.daemon.pid(),
            "pass-plain",
            &gw.url("/"),
            &lua,
            self.opts.connections,
        );
        let note = match (&f, self.ceiling_of(false)) {
            (Ok(f), Some(base)) => format!(
                "{:.0}% of the ceiling's req/s{}; every reply the route's 404",
                100.0 * f.rps / base.rps,
                cpu_ratio(f, base)
            ),
            _ => String::new(),
        };
        self.report.push(
            "dynedge pass-through (not a DDNS path)",
            "dynedge in Envoy (plain HTTP)",
            f,
            note,
        );
    }

    /// An update with a new address on every request, written to PowerDNS.
    fn good_pdns_row(&mut self, gw: &Gateway) {
        crate::step("dynedge good path against PowerDNS (plain HTTP)");
        let f = self.wrk(
            gw.daemon.pid(),
            "good-pdns",
            &gw.url("/"),
            &good_lua(),
            self.opts.connections,
        );
        let note = String::new();
        self.report.push(
            "dynedge good (new address every request)",
            "dynedge in Envoy → PowerDNS",
            f,
            note,
        );
    }

    /// The backend's own ceiling: PATCH straight at the PowerDNS API, one connection (the
    /// gateway's pdns_api cluster also holds one: sqlite3 allows one writer).
    pub(super) fn pdns_direct_row(&mut self, pdns_pid: Option<u32>) {
        crate::step("PowerDNS API PATCH directly (one connection)");
        let patch_lua = new_address_lua(
            "",
            &format!(
                r#"wrk.format("PATCH", "/api/v1/servers/localhost/zones/{DEMO_ZONE}.", {{["X-API-Key"] = "{PDNS_KEY}", ["Content-Type"] = "application/json"}}, '{{"rrsets":[{{"name":"{HOST}.","type":"A","ttl":60,"changetype":"REPLACE","records":[{{"content":"' .. ip .. '","disabled":false}}]}}]}}')"#
            ),
        );
        let f = self.wrk(
            pdns_pid,
            "pdns-direct",
            &format!("http://127.0.0.1:{PDNS_API_PORT}/"),
            &patch_lua,
            1,
        );
        self.report.push(
            "backend ceiling: PowerDNS API PATCH",
            "PowerDNS 4 (sqlite3), wrk -c1",
            f,
            String::new(),
        );
    }

    /// good against BIND 9: a TSIG-signed RFC 2136 UPDATE over BIND's own DoH.
    pub(super) fn rfc2136_row(&mut self) {
        crate::step("dynedge good path against BIND 9 (RFC 2136 UPDATE, TSIG, over BIND's DoH)");
        let r = rfc2136::Bind::start(
            &self.dir.join("bind-doh"),
            BIND_UPDATE_DNS_PORT,
            BIND_DOH_PORT,
            &[rfc2136::DEMO_KEY],
        )
        .and_then(|mut bind| {
            let config = plugin_config_from("examples/dynedge-rfc2136.json", 0, 300, None)?;
            let gw = Gateway::start_full(
                &self.dir.join("envoy-rfc2136"),
                &self.envoy_cfg(config),
                Variant::Dynedge,
                false,
                &self.nochg_path,
                DEMO_BASIC,
                &rfc2136::bind_doh_cluster(BIND_DOH_PORT),
            )?;
            let f = self.wrk(
                gw.daemon.pid(),
                "good-rfc2136",
                &gw.url("/"),
                &good_lua(),
                self.opts.connections,
            );
            gw.stop();
            bind.daemon.stop();
            f
        });
        let note = String::new();
        self.report.push(
            "dynedge good (new address every request)",
            "dynedge in Envoy → BIND (RFC 2136/DoH)",
            r,
            note,
        );
    }

    /// Cold auth: Argon2 on every request.
    pub(super) fn cold_row(&mut self) -> Result<()> {
        crate::step(
            "cold auth: auth_cache_ttl_s 0 (Argon2id m=19456 t=2 p=1 per request, plain HTTP)",
        );
        let gw = Gateway::start(
            &self.dir.join("envoy-cold"),
            &self.envoy_cfg(plugin_config(0, 0, None)?),
            Variant::Dynedge,
            false,
            &self.nochg_path,
        )?;
        let cold = self.wrk(
            gw.daemon.pid(),
            "cold-auth",
            &gw.url("/"),
            &self.basic_get_lua(&self.nochg_path, DEMO_BASIC),
            self.opts.connections.min(4),
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
        self.report.push(
            "cold auth (auth_cache_ttl_s 0)",
            "dynedge in Envoy (plain HTTP)",
            cold,
            note,
        );
        gw.stop();
        Ok(())
    }

    /// A bad-auth flood from 127.0.0.1 while a good client on 127.0.0.2 updates.
    pub(super) fn flood_rows(&mut self, limited: bool) -> Result<()> {
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
            &self.dir.join("envoy-flood"),
            &self.envoy_cfg(plugin_config(0, 300, limits)?),
            Variant::Dynedge,
            false,
            &self.nochg_path,
        )?;
        let lua = self.basic_get_lua(&self.nochg_path, BAD_BASIC) + COUNT_REPLIES_LUA;
        let url = gw.url("/");
        let flood_dir = self.dir.clone();
        let name = format!("flood-{}", if limited { "limited" } else { "unlimited" });
        let pid = gw.daemon.pid();
        let (c, d) = (self.opts.connections, self.opts.duration_s);
        let flood =
            thread::spawn(move || wrk_with(pid, &flood_dir, &name, &url, &lua, c, d, TIMEOUT_5S));
        thread::sleep(Duration::from_millis(500));
        let good = good_client(&gw.url(&self.nochg_path), &gw.ca, &self.dir, d as f64 - 1.0);
        let f = flood
            .join()
            .map_err(|_| "flood thread panicked".to_string())?;
        let note = String::new();
        self.report.push(
            &format!("bad-auth flood, {what}"),
            "dynedge in Envoy (plain HTTP)",
            f,
            note,
        );
        match good {
            Ok(g) => {
                let n = g.tally.total();
                let fig = Figures {
                    rps: n as f64 / g.secs,
                    p50_ms: g.p50_ms,
                    p99_ms: g.p99_ms,
                    requests: n,
                    ..Figures::default()
                };
                self.report.push(
                    "  … meanwhile a good client (curl, 127.0.0.2)",
                    "sequential, keep-alive",
                    Ok(fig),
                    format!("{} (reply bodies)", g.tally.note()),
                );
            }
            Err(e) => self
                .report
                .push("  … meanwhile a good client", "", Err(e), String::new()),
        }
        gw.stop();
        Ok(())
    }
}

/// A DynDNS2 update as the demo user with a new address on every request, replies counted.
pub(super) fn good_lua() -> String {
    varying_update_lua(
        &format!("/nic/update?hostname={HOST}&myip="),
        &[("Authorization", &format!("Basic {DEMO_BASIC}")), UA],
        true,
    )
}

/// What the good client saw.
struct GoodClient {
    /// The reply words of its requests (`nochg`, `abuse`, ...).
    tally: Tally,
    p50_ms: f64,
    p99_ms: f64,
    secs: f64,
}

/// Runs the good client: sequential keep-alive GETs from 127.0.0.2 with curl for `for_s`.
fn good_client(gw_url: &str, ca: &Path, dir: &Path, for_s: f64) -> Result<GoodClient> {
    // Batches of 20 requests on one keep-alive connection each, until `for_s` has passed. Each
    // reply's body goes to stdout followed by a marker line with its status and its time.
    let mut cfg = String::new();
    for _ in 0..20 {
        let _ = writeln!(cfg, "url = \"{gw_url}\"");
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
            .arg("-w")
            .arg(format!("\n{CURL_MARK}%{{http_code}} %{{time_total}}\n"))
            .arg("-K")
            .arg(&file)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("curl: {e}"))?;
        text.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    let _ = fs::write(dir.join("good-client.out"), &text);
    let secs = started.elapsed().as_secs_f64();
    let (tally, mut times) = parse_curl_lines(&text);
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| -> f64 {
        if times.is_empty() {
            f64::NAN
        } else {
            times[((times.len() - 1) as f64 * p) as usize]
        }
    };
    Ok(GoodClient {
        tally,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        secs,
    })
}
