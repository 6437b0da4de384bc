//! dynedge in Pingora: the module's binary (`dynedge-pingora`, `$DYNEDGE_PINGORA` or the
//! release build), started by the harness as the end-to-end tests start it.

use std::process::Command;

use dynedge_envoy::run;

use super::envoy_rows::good_lua;
use super::gateway::plugin_config;
use super::{Bench, DEMO_BASIC};
use crate::Result;

impl Bench {
    /// nochg (TLS) and good against PowerDNS, one worker thread.
    pub(super) fn pingora_rows(&mut self) {
        crate::step("dynedge-pingora (the Pingora module, one worker thread, TLS): nochg and good");
        if let Err(e) = self.try_pingora_rows() {
            self.report
                .push("dynedge nochg", "dynedge-pingora", Err(e), String::new());
        }
    }

    fn try_pingora_rows(&mut self) -> Result<()> {
        let cfg = self.envoy_cfg(plugin_config(0, 300, None)?);
        let mut gw = dynedge_envoy::Envoy::start_pingora(&self.dir.join("pingora"), &cfg)?;
        let pid = gw.daemon().pid();
        let url = gw.url("/");
        for _ in 0..2 {
            let _ = run(
                "curl (warm-up)",
                Command::new("curl")
                    .args(["-s", "-A", "dynedge-bench/1.0", "-H"])
                    .arg(format!("Authorization: Basic {DEMO_BASIC}"))
                    .arg("--cacert")
                    .arg(&cfg.certificate.cert)
                    .arg(gw.url(&self.nochg_path)),
            );
        }
        let c = self.opts.connections;
        let nochg_lua = self.basic_get_lua(&self.nochg_path, DEMO_BASIC);
        let nochg = self.wrk(pid, "pingora-nochg-tls", &url, &nochg_lua, c);
        let good = self.wrk(pid, "pingora-good-pdns", &url, &good_lua(), c);
        let newconn = self.opts.wants("newconn").then(|| {
            let lua = self.basic_get_close_lua(&self.nochg_path, DEMO_BASIC);
            self.wrk(pid, "pingora-nochg-tls-newconn", &url, &lua, c)
        });
        gw.daemon().stop();
        if let Some(f) = newconn {
            let note = self.newconn_note(&f);
            self.report.push(
                "dynedge nochg, new TLS connection per request",
                "dynedge-pingora (TLS)",
                f,
                note,
            );
        }
        for (workload, server, f) in [
            (
                "dynedge nochg (auth cache warm)",
                "dynedge-pingora (TLS)",
                nochg,
            ),
            (
                "dynedge good (new address every request)",
                "dynedge-pingora (TLS) → PowerDNS",
                good,
            ),
        ] {
            self.report.push(workload, server, f, String::new());
        }
        Ok(())
    }
}
