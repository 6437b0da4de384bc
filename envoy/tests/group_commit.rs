//! Group commit end to end (docs/group-commit.md): a storm of concurrent updates for one zone,
//! through the proxy `DYNEDGE_GATEWAY` names, to real PowerDNS (its API) and real BIND (RFC 2136
//! over its own DoH). Each storm is held behind a paused backend (SIGSTOP) until every client
//! has sent its request, so the writes that queue behind the zone's first one depend on what
//! the gateway does, not on how fast the machine spawns clients. The backends count the writes
//! (PowerDNS's log; BIND's SOA serial and its log of refused UPDATEs); DNS is read back for
//! every host told `good`.

// Test code: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use dynedge_envoy::rfc2136::{Bind, DEMO_CLUSTER, DEMO_KEY, ZONE};
use dynedge_envoy::{dig, free_port, poll_every, poll_until, within, Daemon, Proxy};
use serde_json::{json, Value};
use support::rfc2136::{gateway, relay_plugin, Relay};
use support::{test_dir, Stack};

/// Long enough that no call outlives its timeout while the backend is paused: a reply that
/// is not `good` then means the gateway failed it, not that the test was slow.
const PAUSE_PROOF_TIMEOUT_MS: u64 = 30_000;

/// The most writes a coalesced storm may take. Writes behind the first one wait for it; past
/// `max_wait_ms` (500) a waiting write escapes beside it, so a slow start of the clients adds
/// a few writes, never one per client.
const GROUPED_WRITES_AT_MOST: usize = 10;

fn host(i: usize) -> String {
    format!("gc{i:02}.{ZONE}")
}

fn token(i: usize) -> String {
    format!("dynedge_gc_storm_token_{i:02}")
}

/// `hosts` users, each owning one host and holding one token for it; rate limits off (one
/// client address sends the whole storm); `group_commit` set when given.
fn storm_config(cfg: &mut Value, backend: &str, hosts: usize, group_commit: Option<Value>) {
    let hash = cfg["users"][0]["password_hash"].clone();
    for i in 0..hosts {
        let name = format!("gc{i:02}");
        cfg["users"].as_array_mut().unwrap().push(json!({
            "name": name, "password_hash": hash, "hosts": [host(i)],
        }));
        cfg["tokens"].as_array_mut().unwrap().push(json!({
            "id": name, "user": name, "sha256": dynedge_core::adapter::token_hash(&token(i)), "scopes": ["update"],
        }));
    }
    cfg["rate_limits"] = json!({"enabled": false});
    cfg["backends"][backend]["timeout_ms"] = PAUSE_PROOF_TIMEOUT_MS.into();
    if let Some(gc) = group_commit {
        cfg["group_commit"] = gc;
    }
}

/// A backend stopped with SIGSTOP until dropped.
struct Paused(u32);

impl Paused {
    fn new(daemon: &Daemon) -> Paused {
        let pid = daemon.pid().expect("the backend is running");
        signal(pid, "-STOP");
        Paused(pid)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        signal(self.0, "-CONT");
    }
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success(), "kill {sig} {pid}");
}

/// One update: its host, the address asked for, and the reply (status, body).
struct Sent {
    host: String,
    ip: String,
    status: u16,
    body: String,
}

/// Host `i` asks for `ip(i)`, all at once, while `backend` is paused; the backend resumes once
/// every client has sent its request (or given up).
fn storm(
    url: impl Fn(&str) -> String,
    cacert: &Path,
    backend: &Daemon,
    hosts: usize,
    ip: impl Fn(usize) -> String,
) -> Vec<Sent> {
    let paused = Paused::new(backend);
    let sent = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..hosts)
        .map(|i| {
            let (host, ip) = (host(i), ip(i));
            let url = url(&format!("/nic/update?hostname={host}&myip={ip}"));
            let (cacert, sent, token) = (cacert.to_path_buf(), sent.clone(), token(i));
            thread::spawn(move || {
                let (status, body) = update(&url, &cacert, &token, &sent);
                Sent {
                    host,
                    ip,
                    status,
                    body,
                }
            })
        })
        .collect();
    let all_sent = poll_until(within(120), "every client sending its update", || {
        (sent.load(Ordering::SeqCst) == hosts).then_some(())
    });
    drop(paused);
    all_sent.unwrap_or_else(|e| panic!("{e}"));
    clients.into_iter().map(|c| c.join().unwrap()).collect()
}

/// curl with the token; counts `sent` once the request is on the wire (curl's verbose `> GET`
/// line), or once curl is done without having sent it.
fn update(url: &str, cacert: &Path, token: &str, sent: &AtomicUsize) -> (u16, String) {
    let mut child = Command::new("curl")
        .args(["-sS", "-v", "-m", "90", "-o", "-", "-w", "\n%{http_code}"])
        .arg("--cacert")
        .arg(cacert)
        .args(["-H", &format!("authorization: Bearer {token}")])
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut counted = false;
    let mut errors = String::new();
    // The verbose trace carries the token: only curl's own error lines are kept.
    for line in BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        if !counted && line.starts_with("> GET ") {
            counted = true;
            sent.fetch_add(1, Ordering::SeqCst);
        }
        if line.starts_with("curl:") {
            errors.push_str(&line);
        }
    }
    if !counted {
        sent.fetch_add(1, Ordering::SeqCst);
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let Some((body, status)) = text.rsplit_once('\n') else {
        return (0, errors);
    };
    (status.parse().unwrap_or(0), body.trim_end().to_string())
}

/// What a storm came to: hosts told `good` (checked against DNS by the caller) and `dnserr`.
struct Tally<'a> {
    good: Vec<&'a Sent>,
    dnserr: Vec<&'a Sent>,
}

/// Sorts a storm's replies; any reply but `good` with the host's address or `dnserr` fails the
/// test.
fn tally(sent: &[Sent]) -> Tally<'_> {
    let mut t = Tally {
        good: vec![],
        dnserr: vec![],
    };
    let mut other = vec![];
    for s in sent {
        if s.status == 200 && s.body == format!("good {}", s.ip) {
            t.good.push(s);
        } else if s.status == 200 && s.body == "dnserr" {
            t.dnserr.push(s);
        } else {
            other.push(s);
        }
    }
    assert!(other.is_empty(), "replies:\n{}", describe(&other));
    t
}

fn describe(sent: &[&Sent]) -> String {
    sent.iter()
        .map(|s| format!("{} {} -> {} {:?}", s.host, s.ip, s.status, s.body))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Lines of `log` that `is_write` picks, once their count has not changed for a while: the
/// backend logs a write after answering it, so the last line may trail the last reply.
fn settled_count(log: &Path, is_write: impl Fn(&str) -> bool) -> usize {
    let count = || {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter(|l| is_write(l))
            .count()
    };
    let mut last = count();
    poll_every(
        Duration::from_millis(300),
        within(10),
        "a settled log",
        || {
            let now = count();
            let settled = now == last;
            last = now;
            settled.then_some(now)
        },
    )
    .unwrap_or(last)
}

fn is_patch(line: &str) -> bool {
    line.contains(&format!("\"PATCH /api/v1/servers/localhost/zones/{ZONE}. "))
}

/// An UPDATE BIND refused (a failed prerequisite): it changed nothing, so the serial does not
/// count it.
fn is_refused_update(line: &str) -> bool {
    line.contains("update unsuccessful")
}

/// The zone's SOA serial: BIND adds one for every UPDATE it applies.
fn soa_serial(port: u16) -> usize {
    let soa = dig(port, ZONE, "SOA").unwrap_or_else(|e| panic!("{e}"));
    let fields: Vec<&str> = soa
        .first()
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    fields
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no serial in {soa:?}"))
}

/// The UPDATEs BIND has handled: (applied, refused).
fn bind_updates(bind: &Bind, log: &Path) -> (usize, usize) {
    (
        soa_serial(bind.dns_port),
        settled_count(log, is_refused_update),
    )
}

fn figure(text: &str) {
    let proxy = Proxy::from_env().unwrap_or_else(|e| panic!("{e}"));
    println!("[{}] {text}", proxy.name());
}

// ------------------------------------------------------------------------------- PowerDNS

const PDNS_HOSTS: usize = 50;

/// One storm of [`PDNS_HOSTS`] updates against PowerDNS: its PATCH count. Every `good` is read
/// back from PowerDNS's DNS.
fn pdns_storm(name: &str, group_commit: Option<Value>) -> usize {
    let mut stack = Stack::start_with(name, |cfg| {
        storm_config(cfg, "pdns", PDNS_HOSTS, group_commit);
    });
    let log = stack.dir.join("pdns/pdns.log");
    let before = settled_count(&log, is_patch);
    let cacert = stack.cacert().to_path_buf();
    let sent = {
        let backend = stack.pdns.daemon().expect("PowerDNS is running");
        let envoy = &stack.envoy;
        storm(
            |p| envoy.url(p),
            &cacert,
            backend,
            PDNS_HOSTS,
            |i| format!("198.51.100.{}", i + 1),
        )
    };
    let patches = settled_count(&log, is_patch) - before;
    let t = tally(&sent);
    assert!(
        !t.good.is_empty(),
        "no update told good:\n{}",
        describe(&t.dnserr)
    );
    for s in &t.good {
        assert_eq!(stack.records(&s.host, "A"), [s.ip.as_str()], "{}", s.host);
    }
    figure(&format!(
        "group commit {}: {PDNS_HOSTS} concurrent updates → {} good, {} dnserr, {patches} PowerDNS PATCHes",
        name.trim_start_matches("gc-pdns-"),
        t.good.len(),
        t.dnserr.len()
    ));
    patches
}

#[test]
fn a_storm_of_updates_is_few_powerdns_patches_and_every_good_is_in_dns() {
    let grouped = pdns_storm("gc-pdns-grouped", None);
    assert!(
        grouped <= GROUPED_WRITES_AT_MOST,
        "{grouped} PATCHes for {PDNS_HOSTS} updates with group commit"
    );
    let alone = pdns_storm("gc-pdns-off", Some(json!({"max_batch": 1})));
    assert_eq!(alone, PDNS_HOSTS, "one PATCH per update with max_batch 1");
}

// ----------------------------------------------------------------------------------- BIND

const BIND_HOSTS: usize = 30;

/// BIND with the demo key, and the gateway in front of it with [`storm_config`].
fn bind_stack(dir: &Path, group_commit: Option<Value>) -> (Bind, dynedge_envoy::Envoy) {
    let bind = Bind::start(&dir.join("bind"), free_port(), free_port(), &[DEMO_KEY])
        .unwrap_or_else(|e| panic!("{e}"));
    let mut cfg = relay_plugin(DEMO_CLUSTER, DEMO_KEY.name, DEMO_KEY.secret);
    // One more host than the storm's: its update opens the gateway's connection to BIND.
    storm_config(&mut cfg, "bind", BIND_HOSTS + 1, group_commit);
    let gw = gateway(dir, cfg.to_string(), Some(Relay::bind(bind.doh_port)));
    (bind, gw)
}

/// One storm of [`BIND_HOSTS`] updates against BIND: the replies and its UPDATEs (applied,
/// refused).
///
/// A gateway in service holds a connection to BIND before the storm: without one, every
/// concurrent call dials while BIND is paused, which tests the listen queue, not the gateway.
fn bind_storm(bind: &Bind, gw: &dynedge_envoy::Envoy, log: &Path) -> (Vec<Sent>, (usize, usize)) {
    let warm = gw.url(&format!(
        "/nic/update?hostname={}&myip=192.0.2.1",
        host(BIND_HOSTS)
    ));
    let reply = update(
        &warm,
        &gw.certificate.cert,
        &token(BIND_HOSTS),
        &AtomicUsize::new(0),
    );
    assert_eq!(
        reply,
        (200, "good 192.0.2.1".to_string()),
        "the first update"
    );
    let before = bind_updates(bind, log);
    let sent = storm(
        |p| gw.url(p),
        &gw.certificate.cert,
        &bind.daemon,
        BIND_HOSTS,
        |i| format!("203.0.113.{}", i + 1),
    );
    let after = bind_updates(bind, log);
    (sent, (after.0 - before.0, after.1 - before.1))
}

fn assert_goods_in_dns(bind: &Bind, t: &Tally) {
    for s in &t.good {
        assert_eq!(
            dig(bind.dns_port, &s.host, "A").unwrap_or_else(|e| panic!("{e}")),
            [s.ip.as_str()],
            "{}",
            s.host
        );
    }
}

#[test]
fn a_storm_of_updates_is_few_rfc2136_updates_to_bind_and_every_good_is_in_dns() {
    let mut counts = vec![];
    for (name, gc) in [("grouped", None), ("off", Some(json!({"max_batch": 1})))] {
        let dir = test_dir(&format!("gc-bind-{name}"));
        let (bind, gw) = bind_stack(&dir, gc);
        let log = dir.join("bind/named.log");
        let (sent, (applied, refused)) = bind_storm(&bind, &gw, &log);
        let updates = applied + refused;
        let t = tally(&sent);
        assert!(
            !t.good.is_empty(),
            "no update told good:\n{}",
            describe(&t.dnserr)
        );
        assert_goods_in_dns(&bind, &t);
        figure(&format!(
            "group commit {name}: {BIND_HOSTS} concurrent updates → {} good, {} dnserr, {updates} BIND UPDATEs",
            t.good.len(),
            t.dnserr.len()
        ));
        counts.push(updates);
    }
    assert!(
        counts[0] <= GROUPED_WRITES_AT_MOST,
        "{} UPDATEs for {BIND_HOSTS} updates with group commit",
        counts[0]
    );
    assert_eq!(
        counts[1], BIND_HOSTS,
        "one UPDATE per update with max_batch 1"
    );
}

/// Puts a CNAME at `name` with the real nsupdate (the zone's owner doing it by hand).
fn nsupdate_cname(port: u16, name: &str) {
    let script = format!(
        "server 127.0.0.1 {port}\nzone {ZONE}\nupdate add {name} 60 CNAME ns1.{ZONE}.\nsend\n"
    );
    dynedge_envoy::rfc2136::nsupdate(&DEMO_KEY, &script).unwrap();
}

/// Storm hosts with a CNAME at their name. Several: only one write of a storm goes out alone
/// (the first, to a quiet zone), so the others share batches.
const ALIASES: [usize; 3] = [5, 15, 25];

#[test]
fn a_cname_in_a_storm_fails_only_its_own_host() {
    let dir = test_dir("gc-bind-cname");
    let (bind, gw) = bind_stack(&dir, None);
    let aliases: Vec<String> = ALIASES.iter().map(|i| host(*i)).collect();
    for name in &aliases {
        nsupdate_cname(bind.dns_port, name);
    }
    let log = dir.join("bind/named.log");
    let (sent, (applied, refused)) = bind_storm(&bind, &gw, &log);
    let t = tally(&sent);
    assert_eq!(
        t.dnserr.iter().map(|s| s.host.clone()).collect::<Vec<_>>(),
        aliases,
        "only the names with a CNAME fail"
    );
    assert_eq!(t.good.len(), BIND_HOSTS - aliases.len());
    assert_goods_in_dns(&bind, &t);
    for name in &aliases {
        assert_eq!(
            dig(bind.dns_port, name, "CNAME").unwrap_or_else(|e| panic!("{e}")),
            [format!("ns1.{ZONE}.")]
        );
    }
    // More refusals than names: a batch carrying a CNAME name with others was refused whole,
    // then halved down to that name alone.
    assert!(
        refused > aliases.len(),
        "{refused} refused UPDATEs: no batch was split"
    );
    figure(&format!(
        "group commit with a CNAME at {} of {BIND_HOSTS} names: {} good, {} dnserr, \
         {applied} BIND UPDATEs applied, {refused} refused",
        aliases.len(),
        t.good.len(),
        t.dnserr.len()
    ));
}
