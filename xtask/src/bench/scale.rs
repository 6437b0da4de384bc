//! Scale: nochg with N hosts (and N users) in the configuration, and what they cost in memory
//! and start-up time.

use dynedge_envoy::DEMO_ZONE;

use super::gateway::{basic_of, plugin_config, Gateway};
use super::Bench;
use crate::Result;

impl Bench {
    /// One row for `n` hosts: the probe with user `u{n/2}` first gets `good` (creating the
    /// record), then nochg is measured.
    pub(super) fn scale_row(&mut self, n: usize) -> Result<()> {
        crate::step(&format!("scale: {n} hosts"));
        let user = format!("u{}", n / 2);
        let path = format!("/nic/update?hostname=h{}.{DEMO_ZONE}&myip=192.0.2.1", n / 2);
        let config = plugin_config(n, 300, None)?;
        let bytes = config.len();
        let basic = basic_of(&user);
        let cfg = self.envoy_cfg(config);
        let workload = format!("scale: {n} hosts, nochg");
        let server = "dynedge in Envoy (plain HTTP)";
        let gw = match Gateway::start_as(&self.dir.join("envoy-scale"), &cfg, &path, &basic) {
            Ok(g) => g,
            Err(e) => {
                self.report.push(&workload, server, Err(e), String::new());
                return Ok(());
            }
        };
        let _ = gw.get(&path, &basic, None);
        let (rss, allocated) = gw.memory();
        let vms = gw.wasm_vms().max(1);
        let lua = self.basic_get_lua(&path, &basic);
        let f = self.wrk(
            gw.daemon.pid(),
            &format!("scale-{n}"),
            &gw.url("/"),
            &lua,
            self.opts.connections,
        );
        let per_vm = rss.saturating_sub(self.ceiling_rss) / vms;
        let note = format!(
            "config {} KiB; first reply after {:.2} s; RSS {} MiB (+{} MiB per VM over the ceiling Envoy, {vms} VMs); tcmalloc {} MiB",
            bytes / 1024,
            gw.ready_s,
            rss / 1024,
            per_vm / 1024,
            allocated >> 20
        );
        self.report.push(&workload, server, f, note);
        gw.stop();
        Ok(())
    }
}
