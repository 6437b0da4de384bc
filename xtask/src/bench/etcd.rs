//! The etcd store against the configuration store: nochg and good through one gateway with a
//! Bearer token over TLS, and the etcd calls each request costs.

use std::thread;
use std::time::Duration;

use dynedge_envoy::etcd::{GatewayPorts, Gateways};

use super::gateway::{plugin_config, Gateway, Variant};
use super::wrk::{fixed_lua, varying_update_lua, Figures};
use super::{Bench, HOST, UA};
use crate::Result;

/// The demo token (examples/dynedge.json and the etcd demo data).
const TOKEN: &str = "dynedge_test_demodemodemodemodemodemodemodemo";
/// nochg with four connections; good with one, so one writer.
const NOCHG_CONNS: u32 = 4;
const GOOD_CONNS: u32 = 1;

impl Bench {
    /// Both stores, the same load: the configuration store first, then three etcd members and
    /// three gateways with the load through gateway 1.
    pub(super) fn etcd_rows(&mut self) {
        crate::step("configuration store, Bearer token (TLS): nochg and good");
        if let Err(e) = self.config_store_rows() {
            self.report.push(
                "store: configuration",
                "dynedge in Envoy (TLS)",
                Err(e),
                String::new(),
            );
        }
        crate::step("etcd store: 3 members, 3 gateways, load through gateway 1 (TLS)");
        if let Err(e) = self.etcd_store_rows() {
            self.report.push(
                "store: etcd",
                "dynedge in Envoy (TLS)",
                Err(e),
                String::new(),
            );
        }
    }

    fn config_store_rows(&mut self) -> Result<()> {
        let gw = Gateway::start(
            &self.dir.join("envoy-config-store"),
            &self.envoy_cfg(plugin_config(0, 300, None)?),
            Variant::Dynedge,
            true,
            &self.nochg_path,
        )?;
        let url = gw.url("/");
        let pid = gw.daemon.pid();
        let nochg = self.wrk(
            pid,
            "store-config-nochg",
            &url,
            &bearer_nochg_lua(),
            NOCHG_CONNS,
        );
        let good = self.wrk(
            pid,
            "store-config-good",
            &url,
            &bearer_good_lua(),
            GOOD_CONNS,
        );
        gw.stop();
        self.push_store_rows("configuration", nochg, good, None);
        Ok(())
    }

    fn etcd_store_rows(&mut self) -> Result<()> {
        let g = Gateways::start(
            &self.dir.join("etcd-store"),
            &GatewayPorts::free(3),
            2,
            false,
            Some(self.certificate.clone()),
            &self.wasm,
        )?;
        let auth = format!("Authorization: Bearer {TOKEN}");
        let warm = g.curl(0, &self.nochg_path, &["-H", &auth]);
        if !warm.ends_with("192.0.2.1") {
            return Err(format!("warming the etcd gateway gave {warm:?}"));
        }
        // Every gateway's credential sync runs in the background (one txn per ttl each):
        // measured idle for as long as a run lasts, and subtracted.
        let idle0 = g.etcd.kv_calls();
        thread::sleep(Duration::from_secs(self.opts.duration_s));
        let idle = g.etcd.kv_calls().saturating_sub(idle0);
        let url = format!("https://127.0.0.1:{}/", g.port(0));
        let pid = g.gateway_pid(0);
        let before = g.etcd.kv_calls();
        let nochg = self.wrk(
            pid,
            "store-etcd-nochg",
            &url,
            &bearer_nochg_lua(),
            NOCHG_CONNS,
        );
        let mid = g.etcd.kv_calls();
        let good = self.wrk(pid, "store-etcd-good", &url, &bearer_good_lua(), GOOD_CONNS);
        let after = g.etcd.kv_calls();
        let per = |delta: u64, f: &Result<Figures>| match f {
            Ok(f) if f.requests > 0 => {
                format!(
                    "{:.2} etcd calls per request",
                    delta.saturating_sub(idle) as f64 / f.requests as f64
                )
            }
            _ => String::new(),
        };
        let calls = (per(mid - before, &nochg), per(after - mid, &good));
        self.push_store_rows("etcd", nochg, good, Some(calls));
        Ok(())
    }

    fn push_store_rows(
        &mut self,
        store: &str,
        nochg: Result<Figures>,
        good: Result<Figures>,
        calls: Option<(String, String)>,
    ) {
        let (nochg_note, good_note) = calls.unwrap_or_default();
        let server = format!("dynedge in Envoy (TLS), {store} store");
        self.report.push(
            &format!("store: nochg, Bearer token, {NOCHG_CONNS} connections"),
            &server,
            nochg,
            nochg_note,
        );
        self.report.push(
            &format!("store: good, Bearer token, {GOOD_CONNS} connection"),
            &server,
            good,
            good_note,
        );
    }
}

fn bearer_nochg_lua() -> String {
    fixed_lua(
        "GET",
        &format!("/nic/update?hostname={HOST}&myip=192.0.2.1"),
        &[("Authorization", &format!("Bearer {TOKEN}")), UA],
        None,
    )
}

fn bearer_good_lua() -> String {
    varying_update_lua(
        &format!("/nic/update?hostname={HOST}&myip="),
        &[("Authorization", &format!("Bearer {TOKEN}")), UA],
        true,
    )
}
