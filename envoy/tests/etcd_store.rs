//! Many gateways, one store: three real etcd members, one real PowerDNS and three real
//! gateways with the etcd store (Envoys running the filter, or dynedge-pingora with
//! `DYNEDGE_GATEWAY=pingora`; one test mixes both).
//! Demo data is loaded with the admin command. Tests run one at a time (each is a whole stack).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use dynedge_envoy::etcd::{GatewayPorts, Gateways};
use dynedge_envoy::{wasm_file, Proxy};

const HOME: &str = "home.dyn.example.test";
const DEMO: &[&str] = &["-u", "demo:demo-password"];
const TTL_S: u64 = 2;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Three gateways of the proxy `DYNEDGE_GATEWAY` names.
fn stack(name: &str) -> (MutexGuard<'static, ()>, Gateways) {
    let proxy = Proxy::from_env().unwrap_or_else(|e| panic!("{e}"));
    stack_of(name, &[proxy; 3])
}

fn stack_of(name: &str, proxies: &[Proxy]) -> (MutexGuard<'static, ()>, Gateways) {
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("etcd-e2e")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    let ports = GatewayPorts::free(proxies.len());
    let wasm = if proxies.contains(&Proxy::Envoy) {
        wasm_file().unwrap_or_else(|e| panic!("{e}"))
    } else {
        std::path::PathBuf::new()
    };
    let g = Gateways::start_mixed(&dir, &ports, TTL_S, false, None, &wasm, proxies)
        .unwrap_or_else(|e| panic!("{e}"));
    (guard, g)
}

fn update(ip: &str) -> String {
    format!("/nic/update?hostname={HOME}&myip={ip}")
}

fn dns_a(g: &Gateways) -> Vec<String> {
    g.pdns.lookup(HOME, "A").unwrap_or_else(|e| panic!("{e}"))
}

/// Waits long enough for every gateway to have synced after a change: one TTL, one tick, and
/// a second of slack for the sync call itself.
fn after_ttl() {
    thread::sleep(Duration::from_secs(TTL_S + 2));
}

/// Every value the host's key has had, oldest first: `(mod_revision, record)`.
fn history(g: &Gateways, key: &str) -> Vec<(i64, serde_json::Value)> {
    let endpoints = g.etcd.client_urls();
    let etcdctl = |args: &[&str]| -> String {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &endpoints])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let now: serde_json::Value =
        serde_json::from_str(&etcdctl(&["get", key, "-w", "json"])).unwrap();
    let kv = &now["kvs"][0];
    let (first, last) = (
        kv["create_revision"].as_i64().unwrap(),
        kv["mod_revision"].as_i64().unwrap(),
    );
    let mut out: Vec<(i64, serde_json::Value)> = Vec::new();
    for rev in first..=last {
        let text = etcdctl(&["get", key, "--rev", &rev.to_string(), "--print-value-only"]);
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        if out.last().map(|(_, last)| last) != Some(&v) {
            out.push((rev, v));
        }
    }
    out
}

#[test]
fn an_address_written_through_one_gateway_is_nochg_through_the_others_and_alternating_updates_end_in_dns(
) {
    let (_one, g) = stack("nochg");
    assert_eq!(g.curl(0, &update("192.0.2.10"), DEMO), "good 192.0.2.10");
    assert_eq!(g.curl(1, &update("192.0.2.10"), DEMO), "nochg 192.0.2.10");
    assert_eq!(g.curl(2, &update("192.0.2.10"), DEMO), "nochg 192.0.2.10");
    let mut last = String::new();
    for k in 0..9 {
        last = format!("192.0.2.{}", 20 + k);
        assert_eq!(g.curl(k % 3, &update(&last), DEMO), format!("good {last}"));
        // The previous address, through the next gateway: the store says it is gone.
        if k > 0 {
            let prev = format!("192.0.2.{}", 19 + k);
            assert_ne!(
                g.curl((k + 1) % 3, &update(&prev), DEMO),
                format!("nochg {prev}")
            );
            assert_eq!(g.curl(k % 3, &update(&last), DEMO), format!("good {last}"));
        }
    }
    assert_eq!(dns_a(&g), vec![last]);
}

/// Envoy and Pingora gateways on one etcd store: what one writes, the other reads and claims
/// (a `nochg` from the store's record, then a claim of a new address), in both directions;
/// a user disabled through the admin command is refused by both.
#[test]
fn envoy_and_pingora_gateways_share_one_etcd_store_both_ways() {
    let (_one, g) = stack_of("mixed", &[Proxy::Pingora, Proxy::Envoy]);
    assert_eq!(g.proxies, [Proxy::Pingora, Proxy::Envoy]);
    // Written through Pingora, read and claimed through Envoy.
    assert_eq!(g.curl(0, &update("192.0.2.31"), DEMO), "good 192.0.2.31");
    assert_eq!(g.curl(1, &update("192.0.2.31"), DEMO), "nochg 192.0.2.31");
    assert_eq!(g.curl(1, &update("192.0.2.32"), DEMO), "good 192.0.2.32");
    assert_eq!(dns_a(&g), ["192.0.2.32"]);
    // And back: Envoy's write is Pingora's nochg; Pingora claims the next one.
    assert_eq!(g.curl(0, &update("192.0.2.32"), DEMO), "nochg 192.0.2.32");
    assert_eq!(g.curl(0, &update("192.0.2.33"), DEMO), "good 192.0.2.33");
    assert_eq!(g.curl(1, &update("192.0.2.33"), DEMO), "nochg 192.0.2.33");
    assert_eq!(dns_a(&g), ["192.0.2.33"]);
    let key = format!("/dynedge/hosts/{HOME}");
    let states: Vec<String> = history(&g, &key)
        .iter()
        .map(|(_, v)| format!("{} {}", v["rr"]["A"], v["state"]))
        .collect();
    assert_eq!(
        states.last().map(String::as_str),
        Some(r#"["192.0.2.33"] "ok""#),
        "{states:?}"
    );
    // Credentials come from the same store: disabled once, refused by both after the TTL.
    g.admin(&["user", "disable", "demo"], "").unwrap();
    after_ttl();
    for i in 0..2 {
        assert_eq!(
            g.curl(i, &update("192.0.2.34"), DEMO),
            "badauth",
            "gateway {i}"
        );
    }
    assert_eq!(dns_a(&g), ["192.0.2.33"]);
}

/// ACME TXT challenges and deletions go through the store's protocol like addresses: each is
/// written to DNS and to the host's record, and seen by the other gateways.
#[test]
fn txt_challenges_and_deletions_through_the_etcd_store_reach_dns_and_every_gateway() {
    const TOKEN: &str = "dynedge_test_demodemodemodemodemodemodemodemo";
    let (_one, g) = stack("edits");
    let name = format!("_acme-challenge.{HOME}");
    let txt = |i: usize, action: &str, value: &str| {
        let body = format!(r#"{{"fqdn":"{name}.","value":"{value}"}}"#);
        let args = [
            DEMO,
            &[
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &body,
            ],
        ]
        .concat();
        g.curl(i, &format!("/httpreq/{action}"), &args)
    };
    let dns_txt = || {
        let mut v = g
            .pdns
            .lookup(&name, "TXT")
            .unwrap_or_else(|e| panic!("{e}"));
        v.sort();
        v
    };
    assert_eq!(txt(0, "present", "wildcard-token"), "ok");
    assert_eq!(txt(1, "present", "apex-token"), "ok");
    assert_eq!(dns_txt(), ["\"apex-token\"", "\"wildcard-token\""]);
    assert_eq!(txt(2, "cleanup", "wildcard-token"), "ok");
    assert_eq!(dns_txt(), ["\"apex-token\""]);
    assert_eq!(txt(0, "cleanup", "apex-token"), "ok");
    assert!(dns_txt().is_empty());

    let dynv6 = |i: usize, q: &str| {
        g.curl(
            i,
            &format!("/api/update?zone={HOME}&token={TOKEN}&{q}"),
            &[],
        )
    };
    assert_eq!(
        dynv6(0, "ipv4=192.0.2.70&ipv6=2001:db8::70"),
        "addresses updated"
    );
    assert_eq!(dynv6(1, "ipv4=-"), "addresses updated");
    assert!(dns_a(&g).is_empty());
    assert_eq!(g.pdns.lookup(HOME, "AAAA").unwrap(), ["2001:db8::70"]);
    assert_eq!(dynv6(2, "ipv4=-"), "addresses unchanged");
    assert_eq!(
        g.curl(2, &format!("/delete-by-path/{TOKEN}/{HOME}"), &[]),
        format!("UPDATED: Deleted \"{HOME}\".")
    );
    assert!(g.pdns.lookup(HOME, "AAAA").unwrap().is_empty());
    assert_eq!(
        g.curl(0, &format!("/delete-by-path/{TOKEN}/{HOME}"), &[]),
        format!("UNCHANGED: Deletion not successful \"{HOME}\".")
    );
}

#[test]
fn three_gateways_times_eight_clients_on_one_host_get_only_truthful_replies_and_nothing_is_lost() {
    let (_one, g) = stack("hammer");
    let g = Arc::new(g);
    let replies = Arc::new(Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    for gw in 0..3 {
        for client in 0..8 {
            let (g, replies) = (g.clone(), replies.clone());
            threads.push(thread::spawn(move || {
                for n in 0..6 {
                    let ip = format!("198.51.100.{}", 1 + (gw * 8 + client + n) % 4);
                    let body = g.curl(gw, &update(&ip), DEMO);
                    replies.lock().unwrap().push((ip, body));
                }
            }));
        }
    }
    for t in threads {
        t.join().unwrap();
    }
    let replies = replies.lock().unwrap().clone();
    let hist = history(&g, &format!("/dynedge/hosts/{HOME}"));
    let a = |v: &serde_json::Value| v["rr"]["A"][0].as_str().unwrap_or("").to_string();
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    for (ip, body) in &replies {
        let code = body.split(' ').next().unwrap_or("").to_string();
        *codes.entry(code.clone()).or_default() += 1;
        match code.as_str() {
            // Our claim of this address was, at its revision, the store's value.
            "good" => assert!(
                hist.iter().any(|(_, v)| a(v) == *ip),
                "good {ip} but the store never held it"
            ),
            // nochg only against a confirmed record of that address.
            "nochg" => assert!(
                hist.iter().any(|(_, v)| a(v) == *ip && v["state"] == "ok"),
                "nochg {ip} but no confirmed record ever held it"
            ),
            "911" => {} // too much contention: truthful "try later", never a claim
            other => panic!("unexpected reply {other:?} for {ip}"),
        }
        if code != "911" {
            assert_eq!(body, &format!("{code} {ip}"));
        }
    }
    let (_, last) = hist.last().unwrap();
    assert_eq!(last["state"], "ok", "the last record is confirmed");
    assert_eq!(dns_a(&g), vec![a(last)], "DNS holds the store's last value");
    println!(
        "3x8 hammer: {} replies {codes:?}, {} store revisions",
        replies.len(),
        hist.len()
    );
    assert!(codes.get("good").copied().unwrap_or(0) > 0);
}

#[test]
fn a_revoked_token_a_changed_password_and_a_disabled_user_are_refused_by_every_gateway_after_the_ttl(
) {
    let (_one, g) = stack("revoke");
    let issued = g
        .admin(
            &[
                "token", "issue", "demo", "--id", "router", "--scope", "update",
            ],
            "",
        )
        .unwrap();
    let token = issued.lines().last().unwrap().trim().to_string();
    assert!(token.starts_with("dynedge_"), "{issued}");
    let bearer = format!("Authorization: Bearer {token}");
    after_ttl();
    for gw in 0..3 {
        let body = g.curl(gw, &update("192.0.2.50"), &["-H", &bearer]);
        assert!(
            body == "good 192.0.2.50" || body == "nochg 192.0.2.50",
            "gateway {gw}: {body}"
        );
    }
    g.admin(&["token", "revoke", "router"], "").unwrap();
    g.admin(&["user", "passwd", "demo"], "a much better passphrase\n")
        .unwrap();
    after_ttl();
    for gw in 0..3 {
        assert_eq!(
            g.curl(gw, &update("192.0.2.51"), &["-H", &bearer]),
            "badauth",
            "gateway {gw} still accepts the revoked token"
        );
        assert_eq!(
            g.curl(gw, &update("192.0.2.51"), DEMO),
            "badauth",
            "gateway {gw} still accepts the old password"
        );
        let body = g.curl(
            gw,
            &update("192.0.2.51"),
            &["-u", "demo:a much better passphrase"],
        );
        assert!(body.ends_with("192.0.2.51"), "gateway {gw}: {body}");
    }
    assert!(g
        .admin(&["user", "passwd", "demo"], "password123\n")
        .is_err());
    g.admin(&["user", "disable", "demo"], "").unwrap();
    after_ttl();
    for gw in 0..3 {
        assert_eq!(
            g.curl(
                gw,
                &update("192.0.2.52"),
                &["-u", "demo:a much better passphrase"]
            ),
            "badauth",
            "gateway {gw} still accepts a disabled user"
        );
    }
}

/// Clients updating through every gateway until `stop`; the replies.
fn load(
    g: &Arc<Gateways>,
    gateways: &[usize],
    stop: &Arc<AtomicBool>,
) -> Vec<thread::JoinHandle<Vec<(usize, String, String)>>> {
    let mut threads = Vec::new();
    for &gw in gateways {
        for client in 0..2 {
            let (g, stop) = (g.clone(), stop.clone());
            threads.push(thread::spawn(move || {
                let mut out = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let ip = format!("203.0.113.{}", 1 + (gw * 2 + client + n) % 50);
                    out.push((gw, ip.clone(), g.curl(gw, &update(&ip), DEMO)));
                }
                out
            }));
        }
    }
    threads
}

#[test]
fn one_etcd_member_killed_fails_no_update_and_below_quorum_is_never_good_until_it_recovers() {
    let (_one, g) = stack("quorum");
    let g = Arc::new(Mutex::new(g));
    // Load while member 3 is killed.
    let snapshot = {
        let mut gw = g.lock().unwrap();
        gw.etcd.kill(2);
        drop(gw);
        let gw = g.lock().unwrap();
        let mut replies = Vec::new();
        for n in 0..30 {
            let ip = format!("203.0.113.{}", 1 + n % 7);
            replies.push((ip.clone(), gw.curl(n % 3, &update(&ip), DEMO)));
        }
        replies
    };
    for (ip, body) in &snapshot {
        assert!(
            *body == format!("good {ip}") || *body == format!("nochg {ip}"),
            "with one member down: {body}"
        );
    }
    // Below quorum: never good.
    let mut gw = g.lock().unwrap();
    gw.etcd.kill(1);
    for n in 0..6 {
        let ip = format!("203.0.113.{}", 100 + n);
        let body = gw.curl(n % 3, &update(&ip), DEMO);
        assert!(
            body == "dnserr" || body == "911",
            "below quorum answered {body:?}"
        );
    }
    assert!(!dns_a(&gw).contains(&"203.0.113.105".to_string()));
    // Back to full strength: the gateways recover by themselves.
    gw.etcd.restart(1).unwrap();
    gw.etcd.restart(2).unwrap();
    let mut recovered = vec![false; 3];
    for _ in 0..60 {
        for (i, ok) in recovered.iter_mut().enumerate() {
            let ip = format!("203.0.113.{}", 150 + i);
            if !*ok && gw.curl(i, &update(&ip), DEMO).ends_with(&ip) {
                *ok = true;
            }
        }
        if recovered.iter().all(|r| *r) {
            break;
        }
        thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(recovered, vec![true; 3], "every gateway serves again");
}

/// A follower, not the leader: killing the leader stalls every write for an election (about a
/// second, longer under load), and an update caught in it answers `dnserr` once its two tries
/// time out; `one_etcd_member_killed_...` shows that no reply is a false `good` then.
#[test]
fn an_etcd_follower_killed_during_concurrent_load_fails_no_update() {
    let (_one, g) = stack("member-load");
    let g = Arc::new(g);
    let leader = g.etcd.leader();
    assert!(leader.is_some(), "the members name their leader");
    let follower = (0..g.etcd.len())
        .rev()
        .find(|i| Some(*i) != leader)
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let threads = load(&g, &[0, 1, 2], &stop);
    thread::sleep(Duration::from_secs(2));
    let etcd_pid_killed = sigkill(g.etcd.pid(follower));
    thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::SeqCst);
    let replies: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert!(etcd_pid_killed, "member {follower} was killed");
    assert!(replies.len() > 20, "the load ran: {}", replies.len());
    for (gw, ip, body) in &replies {
        assert!(
            *body == format!("good {ip}") || *body == format!("nochg {ip}"),
            "gateway {gw}: an update failed: {body:?}"
        );
    }
}

/// SIGKILL by pid: no goodbye to peers or clients.
fn sigkill(pid: Option<u32>) -> bool {
    let Some(pid) = pid else { return false };
    Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_gateway_killed_mid_load_leaves_the_others_serving() {
    let (_one, g) = stack("gateway-kill");
    let g = Arc::new(g);
    let stop = Arc::new(AtomicBool::new(false));
    let survivors = load(&g, &[0, 1], &stop);
    let victim = load(&g, &[2], &stop);
    thread::sleep(Duration::from_secs(2));
    assert!(sigkill(g.gateway_pid(2)), "gateway 3 was killed");
    thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::SeqCst);
    let served: Vec<_> = survivors
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let victim: Vec<_> = victim.into_iter().flat_map(|t| t.join().unwrap()).collect();
    assert!(
        victim.iter().any(|(_, _, b)| b.is_empty()),
        "gateway 3 stopped answering"
    );
    assert!(served.len() > 20, "the load ran: {}", served.len());
    for (gw, ip, body) in &served {
        assert!(
            *body == format!("good {ip}") || *body == format!("nochg {ip}"),
            "gateway {gw}: {body:?}"
        );
    }
}
