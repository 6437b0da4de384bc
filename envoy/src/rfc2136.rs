//! The RFC 2136 stack on loopback, as text: BIND 9.18 with its own DoH listener (plain HTTP/2),
//! Knot 3.2, dnsdist 1.7 as a DoH relay, and the Envoy clusters that reach them. Used by
//! `cargo xtask up --backend rfc2136` (demo values below) and by the core's RFC 2136 tests
//! (`filter/core/tests/support/dns_servers.rs`, on free ports). Plain `std`. The
//! `prepare_*` functions write a server's files into an empty directory and return the command
//! that runs it in the foreground; [`Bind`], [`Knot`], [`Dnsdist`] and [`PowerDnsUpdate`] run it
//! as a [`Daemon`] (stopped by its pid on drop) and wait until it answers. docs/rfc2136.md
//! (Relays) explains the relays' settings.

use std::fs;
use std::io::{self, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::dnssec::TrustAnchor;
use crate::{dig, fresh_dir, wait_until, Daemon, Result};

/// Runs an nsupdate `script` (its `server`, `zone`, updates and `send` lines) over TCP (`-v`),
/// TSIG signed with `key`: a zone's owner changing it by hand, or a bench writing many names.
pub fn nsupdate(key: &TsigKeyText, script: &str) -> Result<()> {
    let mut child = Command::new("nsupdate")
        .args([
            "-v",
            "-y",
            &format!("{}:{}:{}", key.algorithm, key.name, key.secret),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("nsupdate: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| format!("nsupdate: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("nsupdate: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "nsupdate: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// The zone every example serves.
pub const ZONE: &str = "dyn.example.test";

/// The demo key of `examples/dynedge-rfc2136.json`.
pub const DEMO_KEY: TsigKeyText = TsigKeyText {
    name: "dynedge-demo-key",
    algorithm: "hmac-sha256",
    secret: "2EoBmZZI44ewlDWj5Ww1QaL0vITf+st46BOVgDLKlEY=",
};
/// BIND's plain DNS port in the demo (dig @127.0.0.1 -p 5353), shared with the PowerDNS demo.
pub const DEMO_DNS_PORT: u16 = 5353;
/// BIND's DoH port in the demo: the `authority` of `examples/dynedge-rfc2136.json`.
pub const DEMO_DOH_PORT: u16 = 18053;
/// The Envoy cluster name the example configuration calls.
pub const DEMO_CLUSTER: &str = "bind_doh";

/// The Envoy cluster for BIND's DoH (`envoy/rfc2136-bind-cluster.yaml.tmpl`).
pub const BIND_CLUSTER_TEMPLATE: &str = include_str!("../rfc2136-bind-cluster.yaml.tmpl");
/// The Envoy cluster for dnsdist's DoH (`envoy/rfc2136-dnsdist-cluster.yaml.tmpl`).
pub const DNSDIST_CLUSTER_TEMPLATE: &str = include_str!("../rfc2136-dnsdist-cluster.yaml.tmpl");

/// A TSIG key as the servers' configuration files spell it.
#[derive(Debug, Clone, Copy)]
pub struct TsigKeyText {
    pub name: &'static str,
    pub algorithm: &'static str,
    pub secret: &'static str,
}

impl TsigKeyText {
    /// BIND key-file syntax (also what dynedge's `key_file` accepts).
    pub fn bind_key_file(&self) -> String {
        format!(
            "key \"{}\" {{\n\talgorithm {};\n\tsecret \"{}\";\n}};\n",
            self.name, self.algorithm, self.secret
        )
    }
}

/// The zone file: SOA, NS and the name server's address; TTL 60.
pub fn zone_file() -> String {
    format!(
        "$ORIGIN {ZONE}.\n$TTL 60\n@ IN SOA ns1 hostmaster 1 3600 600 86400 60\n  IN NS ns1\nns1 IN A 127.0.0.1\n"
    )
}

/// named.conf for a throw-away BIND in `dir` (the zone file is `dir/ZONE.zone`): plain DNS on
/// `dns_port`, DoH without TLS (h2c, prior knowledge) on `doh_port` at `/dns-query`, every key
/// allowed to change any name in the zone, no rndc channel.
pub fn named_conf(dir: &Path, dns_port: u16, doh_port: u16, keys: &[TsigKeyText]) -> String {
    named_conf_with(dir, dns_port, doh_port, keys, Signing::Unsigned)
}

/// Whether BIND signs the zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    Unsigned,
    /// `dnssec-policy default` (one ECDSA P-256 CSK, generated into `dir/keys` at the first
    /// load) with inline signing: updates land in the unsigned zone and named re-signs what
    /// they changed before serving it.
    Dnssec,
}

/// [`named_conf`], signed or not.
pub fn named_conf_with(
    dir: &Path,
    dns_port: u16,
    doh_port: u16,
    keys: &[TsigKeyText],
    signing: Signing,
) -> String {
    let d = dir.display();
    let dnssec = match signing {
        Signing::Unsigned => String::new(),
        Signing::Dnssec => format!(
            "\tdnssec-policy default;\n\tinline-signing yes;\n\tkey-directory \"{d}/keys\";\n"
        ),
    };
    let mut conf = String::new();
    for k in keys {
        conf.push_str(&k.bind_key_file());
    }
    let grants: String = keys
        .iter()
        .map(|k| format!("grant {} zonesub ANY; ", k.name))
        .collect();
    conf.push_str(&format!(
        r#"// BIND's DoH is HTTP/2 only; with "tls none" it is h2c with prior knowledge.
http local-http {{ endpoints {{ "/dns-query"; }}; }};
options {{
	directory "{d}";
	pid-file "{d}/named.pid";
	session-keyfile "{d}/session.key";
	managed-keys-directory "{d}";
	listen-on port {dns_port} {{ 127.0.0.1; }};
	listen-on port {doh_port} tls none http local-http {{ 127.0.0.1; }};
	listen-on-v6 {{ none; }};
	recursion no; dnssec-validation no; notify no;
	allow-query {{ any; }}; allow-transfer {{ none; }};
}};
// Without this, named opens an rndc channel on 127.0.0.1:953 from /etc/bind/rndc.key.
controls {{ }};
zone "{ZONE}" {{
	type primary;
	file "{d}/{ZONE}.zone";
	update-policy {{ {grants}}};
{dnssec}}};
"#
    ));
    conf
}

/// knot.conf for a throw-away Knot in `dir`: plain DNS on `dns_port`, updates allowed with any
/// of `keys`, changes kept in the journal only.
pub fn knot_conf(dir: &Path, dns_port: u16, keys: &[TsigKeyText]) -> String {
    let d = dir.display();
    let key_blocks: String = keys
        .iter()
        .map(|k| {
            format!(
                "  - id: {}\n    algorithm: {}\n    secret: {}\n",
                k.name, k.algorithm, k.secret
            )
        })
        .collect();
    let ids: Vec<&str> = keys.iter().map(|k| k.name).collect();
    format!(
        "server:\n  rundir: \"{d}\"\n  listen: [ 127.0.0.1@{dns_port} ]\n\
         control:\n  listen: \"{d}/knot.sock\"\n\
         database:\n  storage: \"{d}\"\n\
         log:\n  - target: stderr\n    any: info\n\
         key:\n{key_blocks}\
         acl:\n  - id: ddns_update\n    key: [ {} ]\n    action: update\n\
         zone:\n  - domain: {ZONE}\n    storage: \"{d}\"\n    file: \"{ZONE}.zone\"\n    acl: ddns_update\n\
         \x20   zonefile-sync: -1\n    zonefile-load: difference-no-serial\n    journal-content: all\n",
        ids.join(", ")
    )
}

/// dnsdist.conf: DoH on plain HTTP (no certificate) at `doh_port` `/dns-query`, relayed over
/// TCP only to the server on `server_port`; its own plain DNS frontend on `dns_port` (without
/// one dnsdist binds 127.0.0.1:53).
pub fn dnsdist_conf(doh_port: u16, dns_port: u16, server_port: u16) -> String {
    format!(
        r#"setSecurityPollSuffix("")
setLocal("127.0.0.1:{dns_port}")
setACL({{"127.0.0.0/8"}})
newServer({{address="127.0.0.1:{server_port}", name="auth", tcpOnly=true,
           checkName="{ZONE}.", checkType="SOA", checkTimeout=1000}})
addDOHLocal("127.0.0.1:{doh_port}", nil, nil, {{ "/dns-query" }}, {{ idleTimeout=30 }})
"#
    )
}

/// The `bind_doh` cluster to 127.0.0.1:`port` (indented for `static_resources.clusters:`).
pub fn bind_doh_cluster(port: u16) -> String {
    BIND_CLUSTER_TEMPLATE
        .replace("{{DOH_ADDRESS}}", "127.0.0.1")
        .replace("{{DOH_PORT}}", &port.to_string())
}

/// The `dnsdist_doh` cluster to 127.0.0.1:`port`.
pub fn dnsdist_doh_cluster(port: u16) -> String {
    DNSDIST_CLUSTER_TEMPLATE
        .replace("{{DNSDIST_ADDRESS}}", "127.0.0.1")
        .replace("{{DNSDIST_PORT}}", &port.to_string())
}

/// Both clusters.
pub fn clusters_yaml(bind_doh_port: u16, dnsdist_doh_port: u16) -> String {
    bind_doh_cluster(bind_doh_port) + &dnsdist_doh_cluster(dnsdist_doh_port)
}

/// Writes named.conf and the zone into `dir`, checks them with `named-checkconf`, and returns
/// `named -g` (foreground, log to stderr, one worker thread).
pub fn prepare_bind(
    dir: &Path,
    dns_port: u16,
    doh_port: u16,
    keys: &[TsigKeyText],
) -> io::Result<Command> {
    prepare_bind_with(dir, dns_port, doh_port, keys, Signing::Unsigned)
}

/// [`prepare_bind`], signed or not.
pub fn prepare_bind_with(
    dir: &Path,
    dns_port: u16,
    doh_port: u16,
    keys: &[TsigKeyText],
    signing: Signing,
) -> io::Result<Command> {
    fs::write(dir.join(format!("{ZONE}.zone")), zone_file())?;
    if signing == Signing::Dnssec {
        fs::create_dir_all(dir.join("keys"))?;
    }
    let conf = dir.join("named.conf");
    fs::write(
        &conf,
        named_conf_with(dir, dns_port, doh_port, keys, signing),
    )?;
    check(Command::new("named-checkconf").arg(&conf))?;
    let mut cmd = Command::new("named");
    cmd.arg("-g").arg("-c").arg(&conf).args(["-n", "1"]);
    Ok(cmd)
}

/// Writes knot.conf and the zone into `dir`, checks them, and returns `knotd` (foreground).
pub fn prepare_knot(dir: &Path, dns_port: u16, keys: &[TsigKeyText]) -> io::Result<Command> {
    fs::write(dir.join(format!("{ZONE}.zone")), zone_file())?;
    let conf = dir.join("knot.conf");
    fs::write(&conf, knot_conf(dir, dns_port, keys))?;
    check(Command::new("knotc").arg("-c").arg(&conf).arg("conf-check"))?;
    let mut cmd = Command::new("knotd");
    cmd.arg("-c").arg(&conf);
    Ok(cmd)
}

/// Writes dnsdist.conf into `dir`, checks it, and returns `dnsdist` (foreground, no console).
pub fn prepare_dnsdist(
    dir: &Path,
    doh_port: u16,
    dns_port: u16,
    server_port: u16,
) -> io::Result<Command> {
    let conf = dir.join("dnsdist.conf");
    fs::write(&conf, dnsdist_conf(doh_port, dns_port, server_port))?;
    check(
        Command::new("dnsdist")
            .arg("--check-config")
            .arg("-C")
            .arg(&conf),
    )?;
    let mut cmd = Command::new("dnsdist");
    cmd.args(["--supervised", "--disable-syslog", "-C"])
        .arg(&conf);
    Ok(cmd)
}

fn check(cmd: &mut Command) -> io::Result<()> {
    let out = cmd.output()?;
    if out.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )))
}

/// pdns.conf for a throw-away PowerDNS Authoritative (sqlite3) in `dir` accepting RFC 2136 from
/// loopback (the relay's address), no caches (tests read back at once), no API.
pub fn pdns_conf(dir: &Path, dns_port: u16) -> String {
    let d = dir.display();
    format!(
        "launch=gsqlite3\ngsqlite3-database={d}/pdns.sqlite3\ngsqlite3-dnssec=no\n\
         local-address=127.0.0.1\nlocal-port={dns_port}\nsocket-dir={d}\n\
         daemon=no\nguardian=no\nwrite-pid=no\ndisable-syslog=yes\nloglevel=5\n\
         zone-cache-refresh-interval=0\ncache-ttl=0\nquery-cache-ttl=0\nnegquery-cache-ttl=0\n\
         default-soa-content=ns1.@ hostmaster.@ 1 3600 600 86400 60\nsecurity-poll-suffix=\n\
         dnsupdate=yes\nallow-dnsupdate-from=127.0.0.0/8\n"
    )
}

/// Creates the sqlite3 database, the zone (with `pdnsutil`) and the keys, allows the keys to
/// update the zone (`TSIG-ALLOW-DNSUPDATE`), and returns `pdns_server` (foreground).
pub fn prepare_pdns(dir: &Path, dns_port: u16, keys: &[TsigKeyText]) -> io::Result<Command> {
    fs::write(dir.join("pdns.conf"), pdns_conf(dir, dns_port))?;
    let schema = fs::read("/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql")?;
    let mut sqlite = Command::new("sqlite3")
        .arg(dir.join("pdns.sqlite3"))
        .stdin(std::process::Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = sqlite.stdin.take() {
        io::Write::write_all(&mut stdin, &schema)?;
    }
    if !sqlite.wait()?.success() {
        return Err(io::Error::other(
            "sqlite3 could not create the PowerDNS schema",
        ));
    }
    let pdnsutil = |args: &[&str]| {
        check(
            Command::new("pdnsutil")
                .arg(format!("--config-dir={}", dir.display()))
                .args(args),
        )
    };
    pdnsutil(&["create-zone", ZONE, &format!("ns1.{ZONE}")])?;
    pdnsutil(&["add-record", ZONE, "ns1", "A", "60", "127.0.0.1"])?;
    let mut meta = vec!["set-meta", ZONE, "TSIG-ALLOW-DNSUPDATE"];
    for k in keys {
        pdnsutil(&["import-tsig-key", k.name, k.algorithm, k.secret])?;
        meta.push(k.name);
    }
    pdnsutil(&meta)?;
    let mut cmd = Command::new("pdns_server");
    cmd.arg(format!("--config-dir={}", dir.display()));
    Ok(cmd)
}

// ---------------------------------------------------------------------------------- daemons

fn io_err(what: &str) -> impl Fn(io::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

fn wait_dns(daemon: &mut Daemon, port: u16) -> Result<()> {
    wait_until(daemon, "answer the zone's SOA", || {
        dig(port, ZONE, "SOA").is_ok_and(|l| !l.is_empty())
    })
}

fn wait_tcp(daemon: &mut Daemon, port: u16) -> Result<()> {
    wait_until(daemon, "accept connections", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
}

/// BIND serving [`ZONE`]: plain DNS on `dns_port`, DoH (h2c) on `doh_port`.
pub struct Bind {
    pub daemon: Daemon,
    pub dns_port: u16,
    pub doh_port: u16,
}

impl Bind {
    pub fn start(dir: &Path, dns_port: u16, doh_port: u16, keys: &[TsigKeyText]) -> Result<Bind> {
        fresh_dir(dir)?;
        let cmd = prepare_bind(dir, dns_port, doh_port, keys).map_err(io_err("BIND"))?;
        Bind::spawn(dir, cmd, dns_port, doh_port)
    }

    /// As [`Bind::start`], the zone signed ([`Signing::Dnssec`]); waits until DNS serves the
    /// DNSKEY, and writes the DS records of the key named made into `dir/dnssec`
    /// (`dnssec-dsfromkey`).
    pub fn start_signed(
        dir: &Path,
        dns_port: u16,
        doh_port: u16,
        keys: &[TsigKeyText],
    ) -> Result<(Bind, TrustAnchor)> {
        fresh_dir(dir)?;
        let cmd = prepare_bind_with(dir, dns_port, doh_port, keys, Signing::Dnssec)
            .map_err(io_err("BIND"))?;
        let mut bind = Bind::spawn(dir, cmd, dns_port, doh_port)?;
        wait_until(&mut bind.daemon, "serve the zone's DNSKEY", || {
            dig(dns_port, ZONE, "DNSKEY").is_ok_and(|l| !l.is_empty())
        })?;
        let key_dir = dir.join("keys");
        let mut ds = String::new();
        for entry in fs::read_dir(&key_dir).map_err(io_err("BIND's key directory"))? {
            let path = entry.map_err(io_err("BIND's key directory"))?.path();
            if path.extension().is_some_and(|e| e == "key") {
                ds.push_str(&crate::run(
                    "dnssec-dsfromkey",
                    Command::new("dnssec-dsfromkey").arg("-2").arg(&path),
                )?);
            }
        }
        let anchor = TrustAnchor::write(&dir.join("dnssec"), ZONE, &ds)?;
        Ok((bind, anchor))
    }

    fn spawn(dir: &Path, cmd: Command, dns_port: u16, doh_port: u16) -> Result<Bind> {
        let mut daemon = Daemon::spawn("BIND", cmd, &dir.join("named.log"))?;
        wait_dns(&mut daemon, dns_port)?;
        wait_tcp(&mut daemon, doh_port)?;
        Ok(Bind {
            daemon,
            dns_port,
            doh_port,
        })
    }
}

/// Knot serving [`ZONE`] on plain DNS.
pub struct Knot {
    pub daemon: Daemon,
    pub dns_port: u16,
}

impl Knot {
    pub fn start(dir: &Path, dns_port: u16, keys: &[TsigKeyText]) -> Result<Knot> {
        fresh_dir(dir)?;
        let cmd = prepare_knot(dir, dns_port, keys).map_err(io_err("Knot"))?;
        let mut daemon = Daemon::spawn("Knot", cmd, &dir.join("knotd.log"))?;
        wait_dns(&mut daemon, dns_port)?;
        Ok(Knot { daemon, dns_port })
    }
}

/// PowerDNS Authoritative serving [`ZONE`] with RFC 2136 enabled (`dnsupdate=yes`).
pub struct PowerDnsUpdate {
    pub daemon: Daemon,
    pub dns_port: u16,
}

impl PowerDnsUpdate {
    pub fn start(dir: &Path, dns_port: u16, keys: &[TsigKeyText]) -> Result<PowerDnsUpdate> {
        fresh_dir(dir)?;
        let cmd = prepare_pdns(dir, dns_port, keys).map_err(io_err("PowerDNS"))?;
        let mut daemon = Daemon::spawn("PowerDNS", cmd, &dir.join("pdns.log"))?;
        wait_dns(&mut daemon, dns_port)?;
        Ok(PowerDnsUpdate { daemon, dns_port })
    }
}

/// dnsdist relaying DoH on `doh_port` to the server on `server_port`.
pub struct Dnsdist {
    pub daemon: Daemon,
    pub doh_port: u16,
}

impl Dnsdist {
    pub fn start(dir: &Path, doh_port: u16, dns_port: u16, server_port: u16) -> Result<Dnsdist> {
        fresh_dir(dir)?;
        let cmd =
            prepare_dnsdist(dir, doh_port, dns_port, server_port).map_err(io_err("dnsdist"))?;
        let mut daemon = Daemon::spawn("dnsdist", cmd, &dir.join("dnsdist.log"))?;
        wait_tcp(&mut daemon, doh_port)?;
        Ok(Dnsdist { daemon, doh_port })
    }
}
