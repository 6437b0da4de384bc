//! PowerDNS Authoritative with the sqlite3 backend and its HTTP API, and `dig` to read what a
//! DNS server serves.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::dnssec::TrustAnchor;
use crate::{fresh_dir, run, wait_until, write, Daemon, Result};

/// Where PowerDNS's package keeps the sqlite3 schema.
const PDNS_SQLITE_SCHEMA: &str = "/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql";

/// PowerDNS Authoritative in the foreground: sqlite3 backend, DNS on 127.0.0.1/::1:`dns_port`,
/// HTTP API on 127.0.0.1:`api_port`, every cache off so a read-back sees each change at once.
/// The backend keeps DNSSEC keys, so [`PowerDns::secure_zone`] can sign a zone; PowerDNS
/// signs online (each answer when it is sent), so records changed through the API are served
/// signed at once.
pub struct PowerDns {
    daemon: Option<Daemon>,
    dir: PathBuf,
    pub dns_port: u16,
    pub api_port: u16,
    api_key: String,
}

impl PowerDns {
    /// Starts from an empty `dir` and waits until the API answers.
    pub fn start(dir: &Path, dns_port: u16, api_port: u16, api_key: &str) -> Result<PowerDns> {
        fresh_dir(dir)?;
        let db = dir.join("pdns.sqlite3");
        let schema = File::open(PDNS_SQLITE_SCHEMA).map_err(|e| {
            format!("{PDNS_SQLITE_SCHEMA}: {e} (is pdns-backend-sqlite3 installed?)")
        })?;
        let out = Command::new("sqlite3")
            .arg(&db)
            .stdin(schema)
            .output()
            .map_err(|e| format!("cannot run sqlite3: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "sqlite3 (PowerDNS schema) failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let conf = format!(
            "launch=gsqlite3\n\
             gsqlite3-database={db}\n\
             gsqlite3-dnssec=yes\n\
             local-address=127.0.0.1, ::1\n\
             local-port={dns_port}\n\
             api=yes\n\
             api-key={api_key}\n\
             webserver=yes\n\
             webserver-address=127.0.0.1\n\
             webserver-port={api_port}\n\
             webserver-allow-from=127.0.0.1,::1\n\
             webserver-loglevel=normal\n\
             socket-dir={dir}\n\
             daemon=no\n\
             guardian=no\n\
             write-pid=no\n\
             disable-syslog=yes\n\
             log-timestamp=yes\n\
             loglevel=6\n\
             zone-cache-refresh-interval=0\n\
             cache-ttl=0\n\
             query-cache-ttl=0\n\
             negquery-cache-ttl=0\n\
             dnssec-key-cache-ttl=0\n\
             default-soa-content=ns1.@ hostmaster.@ 0 10800 3600 604800 3600\n\
             security-poll-suffix=\n",
            db = db.display(),
            dir = dir.display(),
        );
        write(&dir.join("pdns.conf"), &conf)?;
        let mut pdns = PowerDns {
            daemon: None,
            dir: dir.to_path_buf(),
            dns_port,
            api_port,
            api_key: api_key.to_string(),
        };
        pdns.resume()?;
        Ok(pdns)
    }

    /// Starts the server again on the same database (after [`PowerDns::stop`]).
    pub fn resume(&mut self) -> Result<()> {
        self.stop();
        let mut cmd = Command::new("pdns_server");
        cmd.arg(format!("--config-dir={}", self.dir.display()));
        let mut daemon = Daemon::spawn("PowerDNS", cmd, &self.dir.join("pdns.log"))?;
        let url = self.api_url("");
        let key = self.api_key.clone();
        wait_until(&mut daemon, "answer on its API", || {
            api_status(&key, "GET", &url, None).is_ok_and(|(s, _)| s == 200)
        })?;
        self.daemon = Some(daemon);
        Ok(())
    }

    /// Stops the server (TERM by pid); the database stays.
    pub fn stop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.stop();
        }
    }

    pub fn daemon(&mut self) -> Option<&mut Daemon> {
        self.daemon.as_mut()
    }

    /// `http://127.0.0.1:PORT/api/v1/servers/localhost{rest}`.
    pub fn api_url(&self, rest: &str) -> String {
        format!(
            "http://127.0.0.1:{}/api/v1/servers/localhost{rest}",
            self.api_port
        )
    }

    /// Creates a Native zone with `ns1.<zone>. A 127.0.0.1` and waits until DNS serves its SOA.
    pub fn create_zone(&mut self, zone: &str) -> Result<()> {
        let body = format!(
            r#"{{"name":"{zone}.","kind":"Native","nameservers":["ns1.{zone}."],"rrsets":[{{"name":"ns1.{zone}.","type":"A","ttl":60,"changetype":"REPLACE","records":[{{"content":"127.0.0.1","disabled":false}}]}}]}}"#
        );
        let (status, text) =
            api_status(&self.api_key, "POST", &self.api_url("/zones"), Some(&body))?;
        if status != 201 {
            return Err(format!(
                "PowerDNS: creating zone {zone} gave HTTP {status}: {text}"
            ));
        }
        let port = self.dns_port;
        let zone = zone.to_string();
        match self.daemon.as_mut() {
            Some(d) => wait_until(d, "serve the zone's SOA", || {
                dig(port, &zone, "SOA").is_ok_and(|a| !a.is_empty())
            }),
            None => Err("PowerDNS is not running".into()),
        }
    }

    /// Signs `zone` (`pdnsutil secure-zone`: one ECDSA P-256 CSK, NSEC), rectifies it, and
    /// writes its DS records into `dnssec/` ([`TrustAnchor`]); waits until DNS serves the
    /// DNSKEY. Changes through the API are rectified by the API itself (`default-api-rectify`).
    pub fn secure_zone(&mut self, zone: &str) -> Result<TrustAnchor> {
        let config = format!("--config-dir={}", self.dir.display());
        run(
            "pdnsutil secure-zone",
            Command::new("pdnsutil").args([&config, "secure-zone", zone]),
        )?;
        run(
            "pdnsutil rectify-zone",
            Command::new("pdnsutil").args([&config, "rectify-zone", zone]),
        )?;
        let ds = run(
            "pdnsutil export-zone-ds",
            Command::new("pdnsutil").args([&config, "export-zone-ds", zone]),
        )?;
        let anchor = TrustAnchor::write(&self.dir.join("dnssec"), zone, &ds)?;
        let port = self.dns_port;
        match self.daemon.as_mut() {
            Some(d) => wait_until(d, "serve the zone's DNSKEY", || {
                dig(port, zone, "DNSKEY").is_ok_and(|a| !a.is_empty())
            })?,
            None => return Err("PowerDNS is not running".into()),
        }
        Ok(anchor)
    }

    /// The records of `name`/`rtype` as `dig +short` prints them.
    pub fn lookup(&self, name: &str, rtype: &str) -> Result<Vec<String>> {
        dig(self.dns_port, name, rtype)
    }
}

/// One HTTP request to the PowerDNS API with curl: `(status, body)`.
fn api_status(key: &str, method: &str, url: &str, body: Option<&str>) -> Result<(u16, String)> {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-m", "5", "-X", method, "-w", "\n%{http_code}"])
        .args(["-H", &format!("X-API-Key: {key}")])
        .args(["-H", "Content-Type: application/json"]);
    if let Some(b) = body {
        cmd.args(["--data-binary", b]);
    }
    cmd.arg(url);
    let out = run("curl (PowerDNS API)", &mut cmd)?;
    let (text, code) = out.rsplit_once('\n').unwrap_or(("", out.as_str()));
    let status = code
        .trim()
        .parse()
        .map_err(|_| format!("curl printed no status: {out}"))?;
    Ok((status, text.to_string()))
}

/// `dig +short @127.0.0.1 -p PORT NAME TYPE`: the answer lines. An error (not an empty answer)
/// when dig could not talk to the server (dig prints that on stdout, in lines starting with `;`).
pub fn dig(port: u16, name: &str, rtype: &str) -> Result<Vec<String>> {
    let out = run(
        "dig",
        Command::new("dig")
            .args(["+short", "+norecurse", "+time=2", "+tries=1"])
            .arg("@127.0.0.1")
            .args(["-p", &port.to_string(), name, rtype]),
    )?;
    let lines: Vec<String> = out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if let Some(bad) = lines.iter().find(|l| l.starts_with(';')) {
        return Err(format!("dig: {bad}"));
    }
    Ok(lines)
}
