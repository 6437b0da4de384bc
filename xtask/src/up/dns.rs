//! The DNS side of `up`.

use std::fs;
use std::path::Path;

use dynedge_envoy::dnssec::TrustAnchor;
use dynedge_envoy::{rfc2136, Daemon, PowerDns, DEMO_ZONE};

use super::{Ports, DEMO_API_KEY};
use crate::{step, Result};

/// The DNS side of the demo: PowerDNS (HTTP API backend, the default) or BIND (RFC 2136 backend).
pub enum DemoDns {
    PowerDns(PowerDns),
    Bind(rfc2136::Bind),
}

impl DemoDns {
    /// Starts the backend's server with the demo zone; signed when `dnssec`, with the trust
    /// anchor it wrote.
    pub fn start(
        backend: &str,
        run_dir: &Path,
        ports: &Ports,
        dnssec: bool,
    ) -> Result<(DemoDns, Option<TrustAnchor>)> {
        match backend {
            "powerdns" => {
                step(&format!(
                    "starting PowerDNS (DNS 127.0.0.1:{}, API 127.0.0.1:{})",
                    ports.dns, ports.api
                ));
                let mut pdns =
                    PowerDns::start(&run_dir.join("pdns"), ports.dns, ports.api, DEMO_API_KEY)?;
                if let Some(pid) = pdns.daemon().and_then(|d| d.pid()) {
                    println!("    PowerDNS pid {pid}");
                }
                step(&format!("creating zone {DEMO_ZONE}"));
                pdns.create_zone(DEMO_ZONE)?;
                let anchor = if dnssec {
                    step(&format!(
                        "signing {DEMO_ZONE} (pdnsutil secure-zone; PowerDNS signs each answer)"
                    ));
                    Some(pdns.secure_zone(DEMO_ZONE)?)
                } else {
                    None
                };
                Ok((DemoDns::PowerDns(pdns), anchor))
            }
            "rfc2136" => {
                step(&format!(
                    "starting BIND (DNS 127.0.0.1:{}, DoH h2c 127.0.0.1:{}, zone {DEMO_ZONE}, TSIG key {})",
                    ports.dns,
                    ports.doh,
                    rfc2136::DEMO_KEY.name
                ));
                let dir = run_dir.join("bind");
                let keys = [rfc2136::DEMO_KEY];
                let (bind, anchor) = if dnssec {
                    step("signing it (dnssec-policy default, inline signing)");
                    let (bind, anchor) =
                        rfc2136::Bind::start_signed(&dir, ports.dns, ports.doh, &keys)?;
                    (bind, Some(anchor))
                } else {
                    (
                        rfc2136::Bind::start(&dir, ports.dns, ports.doh, &keys)?,
                        None,
                    )
                };
                if let Some(pid) = bind.daemon.pid() {
                    println!("    BIND pid {pid}");
                }
                Ok((DemoDns::Bind(bind), anchor))
            }
            other => Err(format!("--backend {other}: use powerdns or rfc2136")),
        }
    }

    /// The plugin configuration file, its text for these ports, and the extra Envoy clusters.
    pub fn plugin(&self, root: &Path, ports: &Ports) -> Result<(&'static str, String, String)> {
        let file = match self {
            DemoDns::PowerDns(_) => "examples/dynedge.json",
            DemoDns::Bind(_) => "examples/dynedge-rfc2136.json",
        };
        let path = root.join(file);
        let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(match self {
            DemoDns::PowerDns(_) => (file, text, String::new()),
            DemoDns::Bind(_) => (
                file,
                text.replace(
                    &format!("127.0.0.1:{}", rfc2136::DEMO_DOH_PORT),
                    &format!("127.0.0.1:{}", ports.doh),
                ),
                rfc2136::bind_doh_cluster(ports.doh),
            ),
        })
    }

    pub fn daemon(&mut self) -> Option<&mut Daemon> {
        match self {
            DemoDns::PowerDns(p) => p.daemon(),
            DemoDns::Bind(b) => Some(&mut b.daemon),
        }
    }

    pub fn stop(&mut self) {
        match self {
            DemoDns::PowerDns(p) => p.stop(),
            DemoDns::Bind(b) => b.daemon.stop(),
        }
    }
}
