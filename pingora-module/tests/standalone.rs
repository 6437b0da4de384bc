//! End to end: curl → dynedge-pingora (TLS) → PowerDNS, and → an upstream web server.
//! Needs pdns-server, pdns-backend-sqlite3, sqlite3, dig, curl, openssl, python3.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;

use support::{poll_until, run, within, Stack};

const DEMO: &str = "demo:demo-password";
const HOST: &str = "home.dyn.example.test";

fn update(stack: &Stack, query: &str, user: &str) -> support::Response {
    stack.gw.https(
        &format!("/nic/update?{query}"),
        &["-u", user, "-A", "dynedge-test/1.0"],
    )
}

#[test]
fn an_update_is_good_then_nochg_and_powerdns_serves_the_address() {
    let s = Stack::start("good");
    let r = update(&s, &format!("hostname={HOST}&myip=192.0.2.10"), DEMO);
    assert_eq!((r.status, r.body.as_str()), (200, "good 192.0.2.10\n"));
    assert_eq!(r.header("content-length"), Some("16"));
    assert_eq!(s.pdns.dig(HOST, "A"), "192.0.2.10");

    let r = update(&s, &format!("hostname={HOST}&myip=192.0.2.10"), DEMO);
    assert_eq!((r.status, r.body.as_str()), (200, "nochg 192.0.2.10\n"));

    // The audit line reaches the log, without the password.
    let log = s.gw.log();
    assert!(log.contains(r#""result":"good""#), "{log}");
    assert!(!log.contains("demo-password"), "password in the log");
}

#[test]
fn a_change_made_outside_dynedge_is_seen_once_the_record_cache_expires() {
    // With the record cache off, every update reads PowerDNS first: nochg only when it agrees.
    let cfg =
        support::demo_config().replace(r#""record_cache_ttl_s": 60"#, r#""record_cache_ttl_s": 0"#);
    let s = Stack::with_config("nocache", &cfg);
    let q = format!("hostname={HOST}&myip=192.0.2.20");
    assert_eq!(update(&s, &q, DEMO).body, "good 192.0.2.20\n");
    assert_eq!(update(&s, &q, DEMO).body, "nochg 192.0.2.20\n");
    let patch = format!(
        r#"{{"rrsets":[{{"name":"{HOST}.","type":"A","ttl":60,"changetype":"REPLACE","records":[{{"content":"192.0.2.99","disabled":false}}]}}]}}"#
    );
    assert_eq!(
        s.pdns
            .api("PATCH", "/zones/dyn.example.test.", Some(&patch))
            .0,
        "204"
    );
    assert_eq!(update(&s, &q, DEMO).body, "good 192.0.2.20\n");
    assert_eq!(s.pdns.dig(HOST, "A"), "192.0.2.20");
}

#[test]
fn a_wrong_password_is_badauth_and_changes_nothing() {
    let s = Stack::start("badauth");
    let r = update(
        &s,
        &format!("hostname={HOST}&myip=192.0.2.11"),
        "demo:wrong",
    );
    assert_eq!(r.body, "badauth\n");
    assert_eq!(s.pdns.dig(HOST, "A"), "");
}

#[test]
fn a_host_of_another_user_is_nohost() {
    let s = Stack::start("nohost");
    let r = update(
        &s,
        "hostname=neighbour.dyn.example.test&myip=192.0.2.12",
        DEMO,
    );
    assert_eq!(r.body, "nohost\n");
    assert_eq!(s.pdns.dig("neighbour.dyn.example.test", "A"), "");
}

#[test]
fn without_myip_the_client_address_is_used() {
    let s = Stack::start("peer");
    let r = update(&s, &format!("hostname={HOST}"), DEMO);
    assert_eq!(r.body, "good 127.0.0.1\n");
    assert_eq!(s.pdns.dig(HOST, "A"), "127.0.0.1");
}

#[test]
fn x_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let s = Stack::start("xff");
    let r = s.gw.https(
        &format!("/nic/update?hostname={HOST}"),
        &["-u", DEMO, "-A", "t/1", "-H", "X-Forwarded-For: 192.0.2.66"],
    );
    assert_eq!(r.body, "good 127.0.0.1\n");
}

#[test]
fn a_form_post_body_is_read() {
    let s = Stack::start("post");
    let r = s.gw.https(
        "/nic/update",
        &[
            "-u",
            DEMO,
            "-A",
            "t/1",
            "--data",
            &format!("hostname={HOST}&myip=192.0.2.13"),
        ],
    );
    assert_eq!(r.body, "good 192.0.2.13\n");
    assert_eq!(s.pdns.dig(HOST, "A"), "192.0.2.13");
}

#[test]
fn with_powerdns_stopped_the_update_fails_and_is_never_good() {
    let mut s = Stack::start("down");
    s.pdns.proc.stop();
    let r = update(&s, &format!("hostname={HOST}&myip=192.0.2.14"), DEMO);
    assert_eq!((r.status, r.body.as_str()), (200, "dnserr\n"));
    let log = s.gw.log();
    assert!(log.contains("PowerDNS unreachable"), "{log}");
    // The gateway is still serving.
    assert!(s.gw.proc.is_running());
    assert_eq!(s.gw.https("/health", &[]).status, 200);
}

#[test]
fn local_replies_and_proxied_responses_carry_hsts() {
    let s = Stack::start("hsts");
    let local = update(&s, "hostname=x", "demo:wrong");
    let hsts = local.header("strict-transport-security").unwrap();
    assert!(hsts.starts_with("max-age="), "{hsts}");

    let proxied = s.gw.https("/hello.txt", &[]);
    assert_eq!(proxied.status, 200);
    assert_eq!(proxied.body, "hello from the upstream\n");
    assert_eq!(proxied.header("strict-transport-security"), Some(hsts));
    // Exactly once.
    let n = proxied
        .headers
        .iter()
        .filter(|(k, _)| k == "strict-transport-security")
        .count();
    assert_eq!(n, 1);
}

#[test]
fn a_non_ddns_path_reaches_the_upstream_and_an_upstream_outage_is_a_502_with_hsts() {
    let mut s = Stack::start("upstream");
    let r = s.gw.https("/hello.txt", &[]);
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "hello from the upstream\n")
    );
    assert!(r.header("server").is_some_and(|v| v.contains("SimpleHTTP")));

    s.upstream.proc.stop();
    let r = s.gw.https("/hello.txt", &[]);
    assert_eq!(r.status, 502);
    assert!(r.header("strict-transport-security").is_some());
}

fn s_client(port: u16, version: &str) -> (bool, String) {
    let out = run(Command::new("bash").args([
        "-c",
        &format!(
            "openssl s_client -connect 127.0.0.1:{port} {version} -cipher 'DEFAULT:@SECLEVEL=0' \
             -brief </dev/null 2>&1"
        ),
    ]));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let negotiated = text.contains("Protocol version:") || text.contains("CONNECTION ESTABLISHED");
    (negotiated, text)
}

#[test]
fn tls_1_1_is_refused_and_tls_1_2_and_1_3_are_accepted() {
    let s = Stack::start("tls");
    // Control: this client does complete TLS 1.1 with a server that allows it.
    let port = support::free_port();
    let mut control = support::Proc::spawn(
        "openssl s_server",
        Command::new("openssl")
            .args(["s_server", "-accept", &port.to_string(), "-tls1_1"])
            .args(["-cipher", "DEFAULT:@SECLEVEL=0", "-cert"])
            .arg(s.dir.join("server.pem"))
            .arg("-key")
            .arg(s.dir.join("server.key")),
        &s.dir.join("s_server.log"),
    );
    support::wait_tcp(port, "openssl s_server");
    let (ok, text) = s_client(port, "-tls1_1");
    assert!(ok && text.contains("TLSv1.1"), "control failed: {text}");
    control.stop();

    let (ok, text) = s_client(s.gw.tls_port, "-tls1_1");
    assert!(!ok, "TLS 1.1 was accepted: {text}");
    let (ok, text) = s_client(s.gw.tls_port, "-tls1_2");
    assert!(ok && text.contains("TLSv1.2"), "{text}");
    let (ok, text) = s_client(s.gw.tls_port, "-tls1_3");
    assert!(ok && text.contains("TLSv1.3"), "{text}");
}

#[test]
fn sighup_reloads_the_configuration_and_a_bad_file_keeps_the_old_one() {
    let mut s = Stack::start("reload");
    let q = format!("hostname={HOST}&myip=192.0.2.15");
    assert_eq!(update(&s, &q, DEMO).body, "good 192.0.2.15\n");

    // Deactivate demo: after SIGHUP its (cached) credentials no longer work.
    let cfg = support::demo_config().replacen(
        r#""hosts": [
        "home.dyn.example.test"
      ]"#,
        r#""hosts": [
        "home.dyn.example.test"
      ],
      "active": false"#,
        1,
    );
    assert!(cfg.contains(r#""active": false"#));
    std::fs::write(&s.gw.config, cfg).unwrap();
    s.gw.proc.signal("HUP");
    wait_for_log(&s, "configuration reloaded");
    assert!(s.gw.proc.is_running());
    assert_eq!(update(&s, &q, DEMO).body, "badauth\n");

    std::fs::write(&s.gw.config, "{ not json").unwrap();
    s.gw.proc.signal("HUP");
    wait_for_log(&s, "keeping the old configuration");
    assert!(s.gw.proc.is_running());
    assert_eq!(update(&s, &q, DEMO).body, "badauth\n");
}

fn wait_for_log(s: &Stack, needle: &str) {
    if let Err(e) = poll_until(within(5), needle, || {
        s.gw.log().contains(needle).then_some(())
    }) {
        panic!("{e}: never logged:\n{}", s.gw.log());
    }
}

#[test]
fn the_plain_listener_answers_without_adding_hsts_to_proxied_responses() {
    let s = Stack::start("plain");
    let url = format!("http://127.0.0.1:{}/hello.txt", s.gw.plain_port);
    let r = support::curl(&url, &s.dir.join("ca.pem"), &[]);
    assert_eq!(r.body, "hello from the upstream\n");
    assert_eq!(r.header("strict-transport-security"), None);
}

#[test]
fn the_access_log_has_one_line_per_request_without_query_or_credentials() {
    let s = Stack::start("access");
    let r = s.gw.https(
        &format!(
            "/nic/update?hostname={HOST}&myip=192.0.2.16&username=demo&password=demo-password"
        ),
        &["-A", "t/1"],
    );
    assert_eq!(r.body, "good 192.0.2.16\n");
    let r = s.gw.https("/hello.txt", &["--http1.1"]);
    assert_eq!(r.status, 200);
    let log = s.gw.access_log_lines(2);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(
        lines[0].contains(r#""GET /nic/update HTTP/2" 200 - 16 "#),
        "{log}"
    );
    assert!(lines[0].ends_with(r#" 127.0.0.1 "t/1""#), "{log}");
    assert!(
        lines[1].contains(r#""GET /hello.txt HTTP/1.1" 200 - 24 "#),
        "{log}"
    );
    for secret in ["demo-password", "password=", "myip=", "?"] {
        assert!(!log.contains(secret), "{secret} in {log}");
    }
}

#[test]
fn after_five_failed_logins_the_client_is_refused_with_abuse_across_worker_threads() {
    let s = Stack::start("abuse");
    let q = format!("hostname={HOST}&myip=192.0.2.17");
    // Each curl is a new connection, so the requests spread over both worker threads: the
    // counts only add up if the KV is shared.
    for i in 0..5 {
        assert_eq!(
            update(&s, &q, "demo:wrong").body,
            "badauth\n",
            "attempt {i}"
        );
    }
    assert_eq!(update(&s, &q, "demo:wrong").body, "abuse\n");
    // Refused before the password is even checked: the right one is refused too.
    assert_eq!(update(&s, &q, DEMO).body, "abuse\n");
    assert_eq!(s.pdns.dig(HOST, "A"), "");
}

#[test]
fn requests_running_across_repeated_sighup_reloads_are_all_answered() {
    // The load repeats one host far beyond the per-host rate limit: switch limits off, so
    // every answer must be the same nochg however fast the machine is.
    let cfg = support::demo_config().replacen('{', r#"{"rate_limits": {"enabled": false},"#, 1);
    let mut s = Stack::with_config("reload_load", &cfg);
    let q = format!("hostname={HOST}&myip=192.0.2.18");
    assert_eq!(update(&s, &q, DEMO).body, "good 192.0.2.18\n");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let answers = std::thread::scope(|scope| {
        let client = scope.spawn(|| {
            let mut answers = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) || answers.len() < 20 {
                answers.push(update(&s, &q, DEMO).body);
            }
            answers
        });
        for _ in 0..5 {
            s.gw.proc.signal("HUP");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        client.join().unwrap()
    });
    let reloads = || s.gw.log().matches("configuration reloaded").count();
    let _ = poll_until(within(5), "five reloads", || (reloads() >= 5).then_some(()));
    assert_eq!(reloads(), 5, "{}", s.gw.log());
    assert!(s.gw.proc.is_running());
    assert!(
        answers.iter().all(|a| a == "nochg 192.0.2.18\n"),
        "{answers:?}"
    );
}

#[test]
fn the_stats_listener_counts_results_per_dialect() {
    let s = Stack::start("stats");
    let q = format!("hostname={HOST}&myip=192.0.2.19");
    assert_eq!(update(&s, &q, DEMO).body, "good 192.0.2.19\n");
    assert_eq!(update(&s, &q, DEMO).body, "nochg 192.0.2.19\n");
    assert_eq!(update(&s, &q, DEMO).body, "nochg 192.0.2.19\n");
    let url = format!("http://127.0.0.1:{}/stats", s.gw.stats_port);
    let stats = support::curl(&url, &s.dir.join("ca.pem"), &[]);
    assert_eq!(stats.status, 200);
    let lines: Vec<&str> = stats.body.lines().collect();
    let good = "dialect=.=dyndns2;.;result=.=good;.;backend=.=powerdns;.;dynedge_updates_total";
    assert!(lines.contains(&format!("{good}: 1").as_str()), "{lines:?}");
    let url = format!("http://127.0.0.1:{}/stats/prometheus", s.gw.stats_port);
    let prom = support::curl(&url, &s.dir.join("ca.pem"), &[]);
    assert_eq!(prom.status, 200);
    let lines: Vec<&str> = prom.body.lines().collect();
    let series = r#"dynedge_updates_total{dialect="dyndns2",result="nochg",backend="powerdns"} 2"#;
    assert!(lines.contains(&series), "{lines:?}");
    assert!(
        lines.contains(&"# TYPE dynedge_updates_total counter"),
        "{lines:?}"
    );
}

#[test]
fn an_update_records_its_backend_latency_in_the_stats_histogram() {
    let s = Stack::start("latency");
    let url = format!("http://127.0.0.1:{}/stats", s.gw.stats_port);
    let before = support::curl(&url, &s.dir.join("ca.pem"), &[]);
    assert!(!before.body.contains("latency"), "{}", before.body);
    let q = format!("hostname={HOST}&myip=192.0.2.20");
    assert_eq!(update(&s, &q, DEMO).body, "good 192.0.2.20\n");
    let stats = support::curl(&url, &s.dir.join("ca.pem"), &[]);
    let line = stats
        .body
        .lines()
        .find(|l| {
            l.contains("dialect=.=dyndns2;.;backend=.=powerdns;.;dynedge_backend_latency_ms: ")
        })
        .unwrap_or_else(|| panic!("no latency histogram in {}", stats.body));
    assert!(line.contains(" count=1 "), "{line}");
}

#[test]
fn a_host_silent_beyond_its_expiry_ttl_loses_its_address_until_it_updates_again() {
    let cfg = support::demo_config()
        .replace(r#""ttl": 60,"#, r#""ttl": 60, "expiry_ttl_s": 2,"#)
        .replace(
            r#""record_cache_ttl_s": 60"#,
            r#""record_cache_ttl_s": 60, "expiry_sweep_interval_s": 1"#,
        );
    assert!(cfg.contains("expiry_ttl_s") && cfg.contains("expiry_sweep_interval_s"));
    let s = Stack::with_config("expiry", &cfg);
    let q = format!("hostname={HOST}&myip=192.0.2.21");
    assert_eq!(update(&s, &q, DEMO).body, "good 192.0.2.21\n");
    assert_eq!(s.pdns.dig(HOST, "A"), "192.0.2.21");
    let gone = poll_until(within(10), "the record expired", || {
        s.pdns.dig(HOST, "A").is_empty().then_some(())
    });
    assert!(gone.is_ok(), "never expired:\n{}", s.gw.log());
    assert!(
        s.gw.log().contains(r#""dialect":"expiry""#),
        "{}",
        s.gw.log()
    );
    // The next update puts it back (a write, not a stale nochg).
    assert_eq!(update(&s, &q, DEMO).body, "good 192.0.2.21\n");
    assert_eq!(s.pdns.dig(HOST, "A"), "192.0.2.21");
}

#[test]
fn a_backend_that_accepts_but_never_answers_times_out_into_dnserr() {
    // A named fake: a TCP listener that accepts and then says nothing (a hung PowerDNS).
    let dir = support::tempdir("hung");
    support::make_certs(&dir);
    let port = support::free_port();
    let hung = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        for c in hung.incoming().take(1) {
            conns.push(c);
            std::thread::sleep(std::time::Duration::from_secs(5));
        }
    });
    let cfg = support::demo_config().replace(r#""timeout_ms": 2000"#, r#""timeout_ms": 500"#);
    let upstream = support::Upstream::start(&dir);
    let gw = support::Gateway::start(&dir, &cfg, port, upstream.port);
    let r = gw.https(
        &format!("/nic/update?hostname={HOST}&myip=192.0.2.22"),
        &["-u", DEMO, "-A", "t/1"],
    );
    assert_eq!(r.body, "dnserr\n");
    assert!(gw.log().contains("timed out after 500 ms"), "{}", gw.log());
    drop(held);
}
