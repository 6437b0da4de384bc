//! What `up` prints once the gateway listens: the URLs and commands to try.

use std::path::Path;

use dynedge_envoy::dnssec::TrustAnchor;
use dynedge_envoy::{Proxy, DEMO_ZONE};

use super::{Ports, DEMO_HOST, DEMO_TOKEN};

pub fn print_try_lines(
    cacert: &Path,
    run_dir: &Path,
    ports: &Ports,
    gateway_log: &Path,
    proxy: Proxy,
    anchor: Option<&TrustAnchor>,
) {
    let ca = cacert.display();
    let base = format!("https://127.0.0.1:{}", ports.https);
    let q = format!("{base}/nic/update?hostname={DEMO_HOST}");
    let dns = ports.dns;
    // The Envoy bootstrap also listens on IPv6 loopback; the Pingora binary on one address.
    let v6 = match proxy {
        Proxy::Envoy => format!(" and https://[::1]:{}", ports.https),
        Proxy::Pingora => String::new(),
    };
    let dig = format!("dig +short @127.0.0.1 -p {dns} {DEMO_HOST}");
    println!(
        "
dynedge is up: {base}{v6}  (DNS: 127.0.0.1:{dns}, zone {DEMO_ZONE})
certificate (for --cacert): {ca}

Try (demo user demo / demo-password owns {DEMO_HOST}):
  curl --cacert {ca} -u demo:demo-password '{q}&myip=192.0.2.1'
      -> good 192.0.2.1          (again: nochg 192.0.2.1)
  curl --cacert {ca} -u demo:demo-password '{q}&myip6=2001:db8::1'
      -> good 2001:db8::1
  curl --cacert {ca} -H 'Authorization: Bearer {DEMO_TOKEN}' '{q}&myip=192.0.2.2'
      -> good 192.0.2.2
  curl --cacert {ca} -u demo:demo-password -H 'Accept: application/json' '{q}&myip=192.0.2.3'
      -> {{\"status\":\"good\",\"results\":[...]}}
  curl --cacert {ca} -u demo:wrong '{q}&myip=192.0.2.4'
      -> badauth
  curl --cacert {ca} -i '{q}&myip=192.0.2.5'
      -> HTTP/2 401, www-authenticate: Basic realm=\"dynedge\"
  {dig} A
  {dig} AAAA
{dnssec}
Logs: {log}  {run}/access.log  {run}/pdns/pdns.log (or {run}/bind/named.log)
Ctrl-C (or SIGTERM) stops everything.",
        dnssec = anchor.map_or_else(String::new, |a| dnssec_lines(a, dns)),
        run = run_dir.display(),
        log = gateway_log.display()
    );
}

/// `--dnssec`: where the trust anchor is, and how to check an update with it.
fn dnssec_lines(anchor: &TrustAnchor, dns_port: u16) -> String {
    let ds: String = std::fs::read_to_string(&anchor.ds_file)
        .unwrap_or_default()
        .lines()
        .map(|l| format!("  {l}\n"))
        .collect();
    format!(
        "
DNSSEC: {DEMO_ZONE} is signed; each update is served signed at once.
DS records (for the parent zone): {ds_file}
{ds}trust anchor (delv -a, or include it in a validating named.conf): {anchors}
Check an update (delv prints \"; fully validated\"):
  {a}
  {txt}
",
        ds_file = anchor.ds_file.display(),
        anchors = anchor.anchors_file.display(),
        a = anchor.delv_command(dns_port, DEMO_HOST, "A"),
        txt = anchor.delv_command(dns_port, &format!("_acme-challenge.{DEMO_HOST}"), "TXT"),
    )
}
