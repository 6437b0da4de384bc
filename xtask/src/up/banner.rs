//! What `up` prints once the gateway listens: the URLs and commands to try.

use std::path::Path;

use dynedge_envoy::{Proxy, DEMO_ZONE};

use super::{Ports, DEMO_HOST, DEMO_TOKEN};

pub fn print_try_lines(
    cacert: &Path,
    run_dir: &Path,
    ports: &Ports,
    gateway_log: &Path,
    proxy: Proxy,
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

Logs: {log}  {run}/access.log  {run}/pdns/pdns.log (or {run}/bind/named.log)
Ctrl-C (or SIGTERM) stops everything.",
        run = run_dir.display(),
        log = gateway_log.display()
    );
}
