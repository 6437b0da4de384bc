//! `cargo xtask up --store etcd [--gateways N] [--proxy envoy|pingora]`: three etcd members,
//! one PowerDNS and N gateways (8443, 8444, ...; Envoys, or dynedge-pingora processes) sharing
//! the etcd store; demo data loaded with `dynedge admin import`.

use std::thread;
use std::time::Duration;

use dynedge_envoy::etcd::{GatewayPorts, Gateways};
use dynedge_envoy::{port_is_free, Certificate, Proxy};

use crate::{signals, step, Result};

/// etcd's demo client ports 18381–18383 (`DYNEDGE_ETCD_PORT` moves them); peers at +10.
pub const ETCD_CLIENT: u16 = 18381;

/// Base ports: gateways at `https`, `https+1`, ...; the PowerDNS front at `api+1`.
pub struct UpPorts {
    pub https: u16,
    pub dns: u16,
    pub api: u16,
    pub etcd: u16,
}
/// How often the gateways re-read credentials in the demo (the revocation bound).
const DEMO_TTL_S: u64 = 2;

pub fn up(
    p: UpPorts,
    gateways: usize,
    proxy: Proxy,
    certificate: Option<Certificate>,
    wasm: &std::path::Path,
    run_dir: &std::path::Path,
) -> Result<()> {
    if std::process::Command::new("etcd")
        .arg("--version")
        .output()
        .is_err()
    {
        return Err(
            "etcd is not installed: apt-get install etcd-server etcd-client (with a \
                    policy-rc.d that exits 101, or the package starts a system etcd on 2379)"
                .into(),
        );
    }
    if !(1..=9).contains(&gateways) {
        return Err("--gateways must be 1..=9".into());
    }
    let ports = GatewayPorts {
        etcd: (0..3).map(|i| (p.etcd + 10 + i, p.etcd + i)).collect(),
        dns: p.dns,
        pdns_api: p.api,
        pdns_front: p.api + 1,
        https: (0..gateways as u16).map(|i| p.https + i).collect(),
    };
    let all = ports
        .etcd
        .iter()
        .flat_map(|(p, c)| [*p, *c])
        .chain([ports.dns, ports.pdns_api, ports.pdns_front])
        .chain(ports.https.iter().copied());
    for port in all {
        if !port_is_free(port) {
            return Err(format!(
                "127.0.0.1:{port} is in use; is another `cargo xtask up` running?"
            ));
        }
    }
    step(&format!(
        "starting etcd (3 members, clients 127.0.0.1:{}-{}), PowerDNS, {gateways} {}(s) (https 127.0.0.1:{}-{}), importing the demo users with `dynedge admin`",
        p.etcd,
        p.etcd + 2,
        proxy.name(),
        p.https,
        p.https + gateways as u16 - 1
    ));
    let mut g = Gateways::start_mixed(
        run_dir,
        &ports,
        DEMO_TTL_S,
        true,
        certificate,
        wasm,
        &vec![proxy; gateways],
    )?;
    let ca = g.certificate.cert.display().to_string();
    println!(
        "\nready: {gateways} gateway(s) share etcd (credentials re-read every {DEMO_TTL_S} s)\n\
         try:\n  curl --cacert {ca} -u demo:demo-password 'https://127.0.0.1:{}/nic/update?hostname=home.dyn.example.test&myip=192.0.2.1'\n  \
         curl --cacert {ca} -u demo:demo-password 'https://127.0.0.1:{}/nic/update?hostname=home.dyn.example.test&myip=192.0.2.1'   # nochg\n\
         admin:\n  cargo run -q -p dynedge-admin -- admin --etcd {} --config {} token list\n\
         Ctrl-C stops everything.",
        p.https,
        p.https + gateways as u16 - 1,
        g.etcd.client_urls(),
        g.config_path.display()
    );
    let why = loop {
        if let Some(sig) = signals::caught() {
            break format!("{sig} received");
        }
        if let Some(i) = (0..gateways).find(|i| g.gateway_pid(*i).is_none()) {
            break format!("gateway {} is gone", i + 1);
        }
        thread::sleep(Duration::from_millis(200));
    };
    println!("\n==> {why}: stopping the gateways, PowerDNS and etcd");
    for i in 0..gateways {
        g.kill_gateway(i);
    }
    drop(g);
    println!("==> stopped");
    Ok(())
}
