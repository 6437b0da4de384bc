//! Peers: other dynamic DNS servers from PyPI on BIND 9, measured like dynedge.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use dynedge_envoy::{run, Daemon, DEMO_ZONE};

use super::wrk::{fixed_lua, new_address_lua, varying_update_lua};
use super::{Bench, BIND_PORT, CLOSE, HOST, PEER_PORT, PEER_SECRET, SFTDYN_PORT, UA};
use crate::Result;

impl Bench {
    /// The PyPI `dyndns` app and `sftdyn` on one BIND 9, plain HTTP: same address and new
    /// address every request.
    pub(super) fn peer_rows(&mut self) {
        crate::step("peer: PyPI dyndns 2.0.0 (Flask, gunicorn -w 2) on BIND 9, plain HTTP");
        let (mut bind, key) = match start_bind(&self.dir.join("bind")) {
            Ok(b) => b,
            Err(e) => {
                return self
                    .report
                    .push("peer: PyPI dyndns", "", Err(e), String::new())
            }
        };
        match start_python_peer(&self.dir.join("dyndns"), &key) {
            Ok(mut peer) => {
                self.dyndns_rows(peer.pid());
                peer.stop();
                self.sftdyn_rows(&key);
            }
            Err(e) => self
                .report
                .push("peer: PyPI dyndns", "", Err(e), String::new()),
        }
        bind.stop();
    }

    fn dyndns_rows(&mut self, pid: Option<u32>) {
        let url = format!("http://127.0.0.1:{PEER_PORT}/");
        let c = self.opts.connections;
        let same = fixed_lua(
            "GET",
            &format!("/update-by-query?secret={PEER_SECRET}&fqdn={HOST}&ipv4=192.0.2.1"),
            &[UA],
            None,
        );
        let f = self.wrk(pid, "peer-dyndns-same", &url, &same, c);
        let note = self.report.nochg_ratio_note(&f);
        self.report.push(
            "peer, same address (its nochg)",
            "dyndns (PyPI) → BIND",
            f,
            note,
        );
        if self.opts.wants("newconn") {
            let close = fixed_lua(
                "GET",
                &format!("/update-by-query?secret={PEER_SECRET}&fqdn={HOST}&ipv4=192.0.2.1"),
                &[UA, CLOSE],
                None,
            );
            let f = self.wrk(pid, "peer-dyndns-same-newconn", &url, &close, c);
            self.report.push(
                "peer, same address, new connection per request",
                "dyndns (PyPI) → BIND (plain HTTP)",
                f,
                String::new(),
            );
        }
        let lua = varying_update_lua(
            &format!("/update-by-query?secret={PEER_SECRET}&fqdn={HOST}&ipv4="),
            &[UA],
            false,
        );
        let f = self.wrk(pid, "peer-dyndns-good", &url, &lua, c);
        self.report.push(
            "peer, new address every request",
            "dyndns (PyPI) → BIND",
            f,
            String::new(),
        );
    }

    fn sftdyn_rows(&mut self, key: &str) {
        crate::step("peer: PyPI sftdyn 0.10 (aiohttp) → nsupdate → BIND 9, plain HTTP");
        let mut sft = match start_sftdyn(&self.dir.join("sftdyn"), key) {
            Ok(s) => s,
            Err(e) => {
                return self
                    .report
                    .push("peer: PyPI sftdyn", "", Err(e), String::new())
            }
        };
        let url = format!("http://127.0.0.1:{SFTDYN_PORT}/");
        let c = self.opts.connections;
        let same = fixed_lua(
            "GET",
            &format!("/{PEER_SECRET}"),
            &[("X-Bench-IP", "192.0.2.1"), UA],
            None,
        );
        let f = self.wrk(sft.pid(), "peer-sftdyn-same", &url, &same, c);
        let note = self.report.nochg_ratio_note(&f);
        self.report
            .push("peer, same address (UPTODATE)", "sftdyn (PyPI)", f, note);
        if self.opts.wants("newconn") {
            let close = fixed_lua(
                "GET",
                &format!("/{PEER_SECRET}"),
                &[("X-Bench-IP", "192.0.2.1"), UA, CLOSE],
                None,
            );
            let f = self.wrk(sft.pid(), "peer-sftdyn-same-newconn", &url, &close, c);
            self.report.push(
                "peer, same address, new connection per request",
                "sftdyn (PyPI) (plain HTTP)",
                f,
                String::new(),
            );
        }
        let lua = new_address_lua(
            "",
            &format!(r#"wrk.format("GET", "/{PEER_SECRET}", {{["X-Bench-IP"] = ip}})"#),
        );
        let f = self.wrk(sft.pid(), "peer-sftdyn-good", &url, &lua, c);
        self.report.push(
            "peer, new address every request",
            "sftdyn (PyPI) → nsupdate → BIND",
            f,
            String::new(),
        );
        sft.stop();
    }
}

/// BIND 9 (`named -g`) serving the demo zone on 127.0.0.1:[`BIND_PORT`], dynamic updates
/// allowed with an hmac-sha512 TSIG key (the Python peer's setup).
fn start_bind(dir: &Path) -> Result<(Daemon, String)> {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let keygen = run(
        "tsig-keygen",
        Command::new("tsig-keygen").args(["-a", "hmac-sha512", &format!("{DEMO_ZONE}.")]),
    )?;
    let secret = keygen
        .lines()
        .find_map(|l| l.trim().strip_prefix("secret \""))
        .and_then(|s| s.strip_suffix("\";"))
        .ok_or("tsig-keygen: no secret line")?
        .to_string();
    let d = dir.display();
    let conf = format!(
        "options {{ directory \"{d}\"; listen-on port {BIND_PORT} {{ 127.0.0.1; }}; \
         listen-on-v6 {{ none; }}; pid-file \"{d}/named.pid\"; session-keyfile \"{d}/session.key\"; \
         recursion no; dnssec-validation no; allow-query {{ any; }}; }};\n\
         controls {{ }};\n{keygen}\n\
         zone \"{DEMO_ZONE}\" {{ type primary; file \"{d}/db.zone\"; \
         allow-update {{ key \"{DEMO_ZONE}.\"; }}; }};\n"
    );
    fs::write(dir.join("named.conf"), conf).map_err(|e| e.to_string())?;
    fs::write(
        dir.join("db.zone"),
        "$TTL 60\n@ IN SOA ns1 hostmaster 1 3600 600 86400 60\n@ IN NS ns1\nns1 IN A 127.0.0.1\n",
    )
    .map_err(|e| e.to_string())?;
    let mut cmd = Command::new("named");
    cmd.arg("-g").arg("-c").arg(dir.join("named.conf"));
    let mut daemon = Daemon::spawn("BIND (bench)", cmd, &dir.join("named.log"))?;
    let started = Instant::now();
    loop {
        daemon.check_alive()?;
        let soa = Command::new("dig")
            .args(["+short", "+time=1", "+tries=1", "@127.0.0.1", "-p"])
            .arg(BIND_PORT.to_string())
            .args([DEMO_ZONE, "SOA"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        if soa.contains("hostmaster") {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err(format!(
                "BIND did not serve the zone:\n{}",
                daemon.log_text()
            ));
        }
        thread::sleep(Duration::from_millis(100));
    }
    Ok((daemon, secret))
}

/// The PyPI `dyndns` app (seed 003) under gunicorn, 2 sync workers, plain HTTP on
/// 127.0.0.1:[`PEER_PORT`], configured against the BIND of [`start_bind`].
fn start_python_peer(dir: &Path, tsig_secret: &str) -> Result<Daemon> {
    let venv = dynedge_envoy::workspace_root().join(".tools/dyndns");
    let gunicorn = venv.join("bin/gunicorn");
    if !gunicorn.is_file() {
        return Err(format!(
            "{} missing: python3 -m venv .tools/dyndns && .tools/dyndns/bin/pip install dyndns gunicorn",
            gunicorn.display()
        ));
    }
    fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let config = dir.join("dyndns.yml");
    fs::write(
        &config,
        format!(
            "secret: {PEER_SECRET}\nnameserver: 127.0.0.1\nport: {BIND_PORT}\nlog_level: 40\n\
             zones:\n  - name: {DEMO_ZONE}\n    tsig_key: {tsig_secret}\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&gunicorn);
    cmd.current_dir(dir)
        .env("dyndns_CONFIG_FILE", &config)
        .args(["-w", "2", "-b"])
        .arg(format!("127.0.0.1:{PEER_PORT}"))
        .args(["--log-level", "warning", "dyndns.wsgi:app"]);
    let mut daemon = Daemon::spawn("dyndns (PyPI, gunicorn)", cmd, &dir.join("dyndns.log"))?;
    let url = format!(
        "http://127.0.0.1:{PEER_PORT}/update-by-query?secret={PEER_SECRET}&fqdn={HOST}&ipv4=192.0.2.1"
    );
    let started = Instant::now();
    loop {
        daemon.check_alive()?;
        let body = Command::new("curl")
            .args(["-s", "-m", "5", &url])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        if body.contains("192.0.2.1") {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err(format!("dyndns gave no update reply (last: {body})"));
        }
        thread::sleep(Duration::from_millis(200));
    }
    Ok(daemon)
}

/// PyPI `sftdyn` 0.10 (aiohttp, one process), plain HTTP on 127.0.0.1:[`SFTDYN_PORT`]: the
/// path is the client's key, the address its `X-Bench-IP` header (its `get_ip` hook), and an
/// update runs `nsupdate` against the BIND of [`start_bind`]. sftdyn runs `nsupdate -l`
/// (local session key, port 53); a wrapper first in its PATH drops `-l` so the commands' own
/// `server`/`key` lines reach BIND on [`BIND_PORT`].
fn start_sftdyn(dir: &Path, tsig_secret: &str) -> Result<Daemon> {
    let python = dynedge_envoy::workspace_root().join(".tools/sftdyn/bin/python");
    if !python.is_file() {
        return Err(format!(
            "{} missing: python3 -m venv .tools/sftdyn && .tools/sftdyn/bin/pip install aiohttp setuptools && .tools/sftdyn/bin/pip install --no-build-isolation sftdyn",
            python.display()
        ));
    }
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).map_err(|e| e.to_string())?;
    let wrapper = bin.join("nsupdate");
    fs::write(&wrapper, "#!/bin/sh\nexec /usr/bin/nsupdate\n").map_err(|e| e.to_string())?;
    run("chmod", Command::new("chmod").arg("755").arg(&wrapper))?;
    let conf = dir.join("sftdyn.conf");
    fs::write(
        &conf,
        format!(
            "def get_host(key, ip):\n    return {{'{PEER_SECRET}': '{HOST}'}}.get(key)\n\n\
             def get_ip(ip, headers, key):\n    return headers.get('X-Bench-IP', ip)\n\n\
             def nsupdatecommands(host, ip, headers):\n    return ['server 127.0.0.1 {BIND_PORT}', \
             'key hmac-sha512:{DEMO_ZONE}. {tsig_secret}', 'zone {DEMO_ZONE}', \
             'update delete ' + host + ' A', 'update add ' + host + ' 60 A ' + ip, 'send']\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new(&python);
    cmd.env("PATH", path)
        .args(["-m", "sftdyn", "-q", "-l"])
        .arg(format!("127.0.0.1:{SFTDYN_PORT}"))
        .arg(&conf);
    let mut daemon = Daemon::spawn("sftdyn (PyPI)", cmd, &dir.join("sftdyn.log"))?;
    let started = Instant::now();
    loop {
        daemon.check_alive()?;
        let body = Command::new("curl")
            .args(["-s", "-m", "5", "-H", "X-Bench-IP: 192.0.2.1"])
            .arg(format!("http://127.0.0.1:{SFTDYN_PORT}/{PEER_SECRET}"))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        if body == "OK" || body == "UPTODATE" {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err(format!("sftdyn gave no OK (last: {body})"));
        }
        thread::sleep(Duration::from_millis(200));
    }
    Ok(daemon)
}
