//! `cargo xtask up`: PowerDNS or BIND, then Envoy or the Pingora gateway, until a signal.

use std::fs;
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use dynedge_envoy::{
    port_is_free, rfc2136, workspace_root, Certificate, Envoy, EnvoyConfig, Proxy,
};

use crate::tools::{self, Need};
use crate::{flag_value, pingora, signals, step, up_etcd, wasm, Result};

mod banner;
mod dns;

use banner::print_try_lines;
use dns::DemoDns;

// The demo's fixed ports and names (README.md, examples/).
const DEMO_HTTPS_PORT: u16 = 8443;
const DEMO_DNS_PORT: u16 = 5353;
const DEMO_API_PORT: u16 = 18081;
const DEMO_API_KEY: &str = "dynedge-demo-pdns-key";
const DEMO_HOST: &str = "home.dyn.example.test";
const DEMO_TOKEN: &str = "dynedge_test_demodemodemodemodemodemodemodemo";

/// `$name` as a port, else `default`.
fn port_from_env(name: &str, default: u16) -> Result<u16> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .map_err(|_| format!("{name}={v:?} is not a port number")),
        Err(_) => Ok(default),
    }
}

/// Where `up` listens.
pub struct Ports {
    https: u16,
    dns: u16,
    api: u16,
    /// BIND's DoH (`--backend rfc2136`).
    doh: u16,
}

pub fn up(args: &[String]) -> Result<()> {
    signals::install();
    let root = workspace_root();
    let run_dir =
        std::env::var_os("DYNEDGE_RUN_DIR").map_or_else(|| root.join(".run"), PathBuf::from);
    let ports = Ports {
        https: port_from_env("DYNEDGE_HTTPS_PORT", DEMO_HTTPS_PORT)?,
        dns: port_from_env("DYNEDGE_DNS_PORT", DEMO_DNS_PORT)?,
        api: port_from_env("DYNEDGE_API_PORT", DEMO_API_PORT)?,
        doh: port_from_env("DYNEDGE_DOH_PORT", rfc2136::DEMO_DOH_PORT)?,
    };
    let backend = flag_value(args, "--backend")?.unwrap_or("powerdns");
    let proxy = Proxy::parse(flag_value(args, "--proxy")?.unwrap_or("envoy"))?;
    let dnssec = args.iter().any(|a| a == "--dnssec");
    if dnssec && flag_value(args, "--store")?.is_some_and(|s| s != "config") {
        return Err("--dnssec signs the zone of the configuration store's demo only".into());
    }
    tools::ensure(Need::Up)?;
    let no_build = args.iter().any(|a| a == "--no-build");
    let wasm = match (proxy, no_build) {
        (Proxy::Envoy, true) => dynedge_envoy::wasm_file()?,
        (Proxy::Envoy, false) => wasm()?,
        (Proxy::Pingora, true) => {
            dynedge_envoy::pingora_binary()?;
            PathBuf::new()
        }
        (Proxy::Pingora, false) => {
            pingora()?;
            PathBuf::new()
        }
    };
    if let Some(store) = flag_value(args, "--store")?.filter(|s| *s != "config") {
        if store != "etcd" {
            return Err(format!("--store {store}: config or etcd"));
        }
        let gateways = match flag_value(args, "--gateways")? {
            Some(n) => n.parse().map_err(|_| format!("--gateways {n}: a number"))?,
            None => 3,
        };
        let certificate = match (flag_value(args, "--cert")?, flag_value(args, "--key")?) {
            (Some(cert), Some(key)) => Some(Certificate {
                cert: fs::canonicalize(cert).map_err(|e| format!("--cert {cert}: {e}"))?,
                key: fs::canonicalize(key).map_err(|e| format!("--key {key}: {e}"))?,
            }),
            _ => None,
        };
        let etcd_port = port_from_env("DYNEDGE_ETCD_PORT", up_etcd::ETCD_CLIENT)?;
        return up_etcd::up(
            up_etcd::UpPorts {
                https: ports.https,
                dns: ports.dns,
                api: ports.api,
                etcd: etcd_port,
            },
            gateways,
            proxy,
            certificate,
            &wasm,
            &run_dir.join("etcd"),
        );
    }

    let wanted = match backend {
        "rfc2136" => [
            (ports.https, "the gateway (HTTPS)"),
            (ports.dns, "BIND (DNS)"),
            (ports.doh, "BIND (DoH)"),
        ],
        _ => [
            (ports.https, "the gateway (HTTPS)"),
            (ports.dns, "PowerDNS (DNS)"),
            (ports.api, "the PowerDNS API"),
        ],
    };
    for (port, what) in wanted {
        if !port_is_free(port) {
            return Err(format!(
                "127.0.0.1:{port} ({what}) is in use; is another `cargo xtask up` running?"
            ));
        }
    }

    let (mut dns, anchor) = DemoDns::start(backend, &run_dir, &ports, dnssec)?;

    let certificate = match (flag_value(args, "--cert")?, flag_value(args, "--key")?) {
        (Some(cert), Some(key)) => Certificate {
            cert: fs::canonicalize(cert).map_err(|e| format!("--cert {cert}: {e}"))?,
            key: fs::canonicalize(key).map_err(|e| format!("--key {key}: {e}"))?,
        },
        (None, None) => {
            step("generating a self-signed certificate (openssl)");
            Certificate::self_signed(&run_dir.join("tls"))?
        }
        _ => return Err("give both --cert and --key, or neither".into()),
    };

    let (config_file, plugin_config, extra_clusters) = dns.plugin(&root, &ports)?;
    let envoy_dir = run_dir.join(match proxy {
        Proxy::Envoy => "envoy",
        Proxy::Pingora => "pingora",
    });
    step(&format!(
        "starting {} (https://127.0.0.1:{}) with {config_file}",
        proxy.name(),
        ports.https
    ));
    let cfg = EnvoyConfig {
        listen_address: "127.0.0.1".into(),
        listen_port: ports.https,
        certificate: certificate.clone(),
        wasm,
        plugin_config,
        pdns_api_port: ports.api,
        access_log: run_dir.join("access.log"),
        webhook_port: None,
    };
    let mut envoy = match proxy {
        Proxy::Envoy => Envoy::start_with_clusters(&envoy_dir, &cfg, &extra_clusters)?,
        Proxy::Pingora => {
            let clusters = match dns {
                DemoDns::PowerDns(_) => vec![],
                DemoDns::Bind(_) => vec![format!(
                    "{}=127.0.0.1:{},h2c",
                    rfc2136::DEMO_CLUSTER,
                    ports.doh
                )],
            };
            Envoy::start_pingora_with_clusters(&envoy_dir, &cfg, &clusters)?
        }
    };

    if let Some(pid) = envoy.daemon().pid() {
        println!("    {} pid {pid}", proxy.name());
    }
    print_try_lines(
        &certificate.cert,
        &run_dir,
        &ports,
        envoy.daemon().log_path(),
        proxy,
        anchor.as_ref(),
    );

    // Run until a signal or until a child dies; then stop the rest (Envoy first).
    let why = loop {
        if let Some(sig) = signals::caught() {
            break format!("{sig} received");
        }
        if let Some(status) = envoy.daemon().exited() {
            break format!(
                "{} exited ({status}); see {}",
                proxy.name(),
                envoy.daemon().log_path().display()
            );
        }
        if let Some(d) = dns.daemon() {
            if let Some(status) = d.exited() {
                break format!(
                    "{} exited ({status}); see {}",
                    d.name(),
                    d.log_path().display()
                );
            }
        }
        thread::sleep(Duration::from_millis(200));
    };
    println!("\n==> {why}: stopping {} and the DNS server", proxy.name());
    envoy.daemon().stop();
    dns.stop();
    println!("==> stopped");
    if signals::caught().is_some() {
        Ok(())
    } else {
        Err(why)
    }
}
