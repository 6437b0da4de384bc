//! The RFC 2136 backend against real servers: the core's `Exchange` (and `Backend` for TXT)
//! builds every call; this test performs each one over real HTTP/2 (curl, h2c prior
//! knowledge) to a real DoH relay, and checks the zone with dig.
//!
//! - BIND 9.18 through its own DoH listener;
//! - Knot 3.2 through dnsdist 1.7's DoH frontend (Knot has no DoH).
//!
//! The same cases run against both. The adapters (Envoy, Pingora) only replace curl.
#![allow(
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::arithmetic_side_effects
)]
// Test code: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::IpAddr;
use std::process::Command;

use dynedge_core::testing::Fqdn;
use dynedge_core::testing::{BackendEnv, RrSet, RrType};
use dynedge_core::{
    Callout, CalloutFailure, CalloutResult, Config, Env, Exchange, MemoryKv, Request, Step,
};
use support::dns_servers::{
    self as dns, dig, nsupdate, start_bind, start_dnsdist, start_knot, start_pdns,
};

const TOKEN: &str = "dynedge_test_demodemodemodemodemodemodemodemo";

/// Where the zone is served: the relay's DoH port and the server's plain DNS port (for dig).
struct Target {
    doh_port: u16,
    dns_port: u16,
    /// What the audit log names for a wrong secret, an unknown key and a skewed clock
    /// (BIND and Knot: the TSIG errors; PowerDNS answers all three with a plain REFUSED).
    refusals: [&'static str; 3],
}

const TSIG_ERRORS: [&str; 3] = ["BADSIG", "BADKEY", "BADTIME"];

/// Performs a callout as an adapter would, with curl over h2c (prior knowledge).
fn perform(c: &Callout, port: u16) -> CalloutResult {
    let dir = std::env::temp_dir().join(format!("dynedge-curl-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (req, resp) = (dir.join("req.bin"), dir.join("resp.bin"));
    std::fs::write(&req, &c.body).unwrap();
    let _ = std::fs::remove_file(&resp);
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--http2-prior-knowledge", "-X", c.method.as_str()])
        .args([
            "--max-time",
            &format!("{:.3}", c.timeout_ms as f64 / 1000.0),
        ])
        .args(["-H", &format!("host: {}", c.authority)])
        .args(
            c.headers
                .iter()
                .flat_map(|(k, v)| ["-H".to_string(), format!("{k}: {v}")]),
        )
        .arg("--data-binary")
        .arg(format!("@{}", req.display()))
        .arg("-o")
        .arg(&resp)
        .args(["-w", "%{http_code} %{content_type}"])
        .arg(format!("http://127.0.0.1:{port}{}", c.path));
    let out = cmd.output().unwrap();
    if !out.status.success() {
        return CalloutResult::Failed(CalloutFailure::Connection(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    let meta = String::from_utf8_lossy(&out.stdout).to_string();
    let (status, ctype) = meta.split_once(' ').unwrap_or((&meta, ""));
    CalloutResult::Response {
        status: status.parse().unwrap(),
        headers: vec![("content-type".into(), ctype.to_string())],
        body: std::fs::read(&resp).unwrap_or_default(),
    }
}

fn is_update(c: &Callout) -> bool {
    c.body.len() > 2 && (c.body[2] >> 3) & 0xf == 5
}

/// The example configuration, pointed at `doh_port` with the given key.
fn config(key_name: &str, secret: &str) -> Config {
    let mut v: serde_json::Value =
        serde_json::from_slice(include_bytes!("../../../examples/dynedge-rfc2136.json")).unwrap();
    let b = &mut v["backends"]["bind"];
    b["cluster"] = "relay".into();
    b["key_name"] = key_name.into();
    b["secret"] = secret.into();
    Config::from_json(v.to_string().as_bytes()).unwrap()
}

struct Run {
    reply: String,
    updates: usize,
    log: Vec<String>,
}

/// One DynDNS2 request through the core, every callout performed against the relay.
fn nic_update(cfg: &Config, port: u16, query: &str, clock_skew_s: i64) -> Run {
    let kv = MemoryKv::default();
    let now_ms = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + clock_skew_s * 1000) as u64;
    let env = Env {
        now_ms,
        random: now_ms.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        kv: &kv,
    };
    let req = Request {
        method: "GET".into(),
        path: format!("/nic/update?{query}"),
        headers: vec![
            ("authorization".into(), format!("Bearer {TOKEN}")),
            ("user-agent".into(), "dynedge-rfc2136-test/1.0".into()),
        ],
        body: vec![],
        peer: None,
    };
    let (mut ex, mut step) = Exchange::start(cfg, req, true, &env);
    let mut updates = 0;
    loop {
        match step {
            Step::Call(calls) => {
                let mut next = Step::Wait;
                for (id, c) in calls {
                    assert_eq!(c.cluster, "relay");
                    updates += usize::from(is_update(&c));
                    next = ex.on_callout(id, perform(&c, port), &env);
                }
                step = next;
            }
            Step::Commit(writes) => {
                let mut next = Step::Wait;
                for (id, w) in writes {
                    let answer = match w.alone(env.now_ms, env.random) {
                        Ok((c, check)) => {
                            assert_eq!(c.cluster, "relay");
                            updates += usize::from(is_update(&c));
                            check.judge(&perform(&c, port))
                        }
                        Err(answer) => answer,
                    };
                    next = ex.on_write(id, answer, &env);
                }
                step = next;
            }
            Step::Done(o) => {
                return Run {
                    reply: o.reply.unwrap().body_text().trim_end().to_string(),
                    updates,
                    log: o.log,
                }
            }
            other => panic!("unexpected step {other:?}"),
        }
    }
}

const HOME: &str = "home.dyn.example.test";

fn good_key() -> Config {
    config(dns::KEY_NAME, dns::KEY_SECRET)
}

fn assert_a(t: &Target, want: &[&str]) {
    assert_eq!(dig(t.dns_port, HOME, "A"), want, "dig {HOME} A");
}

// ------------------------------------------------------------------------------ the cases

fn a_record_is_set_then_nochg_without_an_update(t: &Target) {
    let cfg = good_key();
    let r = nic_update(
        &cfg,
        t.doh_port,
        &format!("hostname={HOME}&myip=192.0.2.10"),
        0,
    );
    assert_eq!(
        (r.reply.as_str(), r.updates),
        ("good 192.0.2.10", 1),
        "{:?}",
        r.log
    );
    assert_a(t, &["192.0.2.10"]);
    let r = nic_update(
        &cfg,
        t.doh_port,
        &format!("hostname={HOME}&myip=192.0.2.10"),
        0,
    );
    assert_eq!(
        (r.reply.as_str(), r.updates),
        ("nochg 192.0.2.10", 0),
        "{:?}",
        r.log
    );
    let r = nic_update(
        &cfg,
        t.doh_port,
        &format!("hostname={HOME}&myip=192.0.2.11"),
        0,
    );
    assert_eq!(r.reply, "good 192.0.2.11", "{:?}", r.log);
    assert_a(t, &["192.0.2.11"]);
}

fn aaaa_and_dual_stack(t: &Target) {
    let cfg = good_key();
    let r = nic_update(
        &cfg,
        t.doh_port,
        &format!("hostname={HOME}&myip=2001:db8::10"),
        0,
    );
    assert_eq!(r.reply, "good 2001:db8::10", "{:?}", r.log);
    assert_eq!(dig(t.dns_port, HOME, "AAAA"), ["2001:db8::10"]);
    let r = nic_update(
        &cfg,
        t.doh_port,
        &format!("hostname={HOME}&myip=192.0.2.20&myipv6=2001:db8::20"),
        0,
    );
    assert_eq!(r.reply, "good 192.0.2.20 2001:db8::20", "{:?}", r.log);
    assert_a(t, &["192.0.2.20"]);
    assert_eq!(dig(t.dns_port, HOME, "AAAA"), ["2001:db8::20"]);
    // The TTL is the zone's (60 in the example configuration).
    let out = Command::new("dig")
        .args([
            "+tcp",
            "+noall",
            "+answer",
            "-p",
            &t.dns_port.to_string(),
            "@127.0.0.1",
            HOME,
            "A",
        ])
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(line.split_whitespace().nth(1) == Some("60"), "{line}");
}

/// TXT for ACME through `Backend::write`/`check_write` and reads (the dialect path through
/// Envoy is in `envoy/tests/rfc2136_over_envoy.rs`).
fn txt_add_then_delete(t: &Target) {
    let cfg = good_key();
    let backend = &cfg.backends["bind"];
    let zone = Fqdn::parse("dyn.example.test").unwrap();
    let name = Fqdn::parse_service("_acme-challenge.home.dyn.example.test").unwrap();
    let env = BackendEnv {
        now_s: now_s(),
        random: 7,
    };
    let set = |values: Vec<String>| RrSet {
        name: name.clone(),
        rtype: RrType::Txt,
        ttl: 60,
        values,
    };
    let token = "Dy1W3wgZ5Qp-acme-token_0123456789abcdefghijklm".to_string();
    let (c, check) = backend
        .write(&zone, &[set(vec![token.clone()])], env)
        .unwrap();
    assert_eq!(
        backend.check_write(&check, &perform(&c, t.doh_port)),
        Ok(())
    );
    assert_eq!(
        dig(t.dns_port, name.as_str(), "TXT"),
        [format!("\"{token}\"")]
    );
    // Read back through the relay, as the exchange does before deciding nochg.
    let read = backend.read(&zone, &name, RrType::Txt);
    assert_eq!(
        backend.parse_read(&name, RrType::Txt, &perform(&read, t.doh_port)),
        Ok(vec![token])
    );
    // Two challenges at once (a wildcard and its base name), one of them past 255 bytes.
    let long = "x".repeat(300);
    let (c, check) = backend
        .write(&zone, &[set(vec!["second".into(), long.clone()])], env)
        .unwrap();
    assert_eq!(
        backend.check_write(&check, &perform(&c, t.doh_port)),
        Ok(())
    );
    let read = backend.read(&zone, &name, RrType::Txt);
    let mut values = backend
        .parse_read(&name, RrType::Txt, &perform(&read, t.doh_port))
        .unwrap();
    values.sort();
    assert_eq!(values, vec!["second".to_string(), long]);
    assert_eq!(dig(t.dns_port, name.as_str(), "TXT").len(), 2);
    let (c, check) = backend.write(&zone, &[set(vec![])], env).unwrap();
    assert_eq!(
        backend.check_write(&check, &perform(&c, t.doh_port)),
        Ok(())
    );
    assert!(dig(t.dns_port, name.as_str(), "TXT").is_empty());
}

fn hmac_sha512_keys_work_too(t: &Target) {
    let mut v: serde_json::Value =
        serde_json::from_slice(include_bytes!("../../../examples/dynedge-rfc2136.json")).unwrap();
    let b = &mut v["backends"]["bind"];
    b["cluster"] = "relay".into();
    b["key_name"] = dns::KEY512_NAME.into();
    b["algorithm"] = "hmac-sha512".into();
    b["secret"] = dns::KEY512_SECRET.into();
    let cfg = Config::from_json(v.to_string().as_bytes()).unwrap();
    let r = nic_update(
        &cfg,
        t.doh_port,
        &format!("hostname={HOME}&myip=192.0.2.51"),
        0,
    );
    assert_eq!(
        (r.reply.as_str(), r.updates),
        ("good 192.0.2.51", 1),
        "{:?}",
        r.log
    );
    assert_a(t, &["192.0.2.51"]);
}

fn wrong_secret_and_unknown_key_are_dnserr(t: &Target) {
    let before = dig(t.dns_port, HOME, "A");
    assert!(!before.is_empty(), "the earlier cases left an A record");
    let q = format!("hostname={HOME}&myip=192.0.2.99");
    let r = nic_update(
        &config(dns::KEY_NAME, dns::KEY512_SECRET),
        t.doh_port,
        &q,
        0,
    );
    assert_eq!((r.reply.as_str(), r.updates), ("dnserr", 1));
    assert!(r.log[0].contains(t.refusals[0]), "{:?}", r.log);
    let r = nic_update(&config("no-such-key", dns::KEY_SECRET), t.doh_port, &q, 0);
    assert_eq!(r.reply, "dnserr");
    assert!(r.log[0].contains(t.refusals[1]), "{:?}", r.log);
    assert_eq!(dig(t.dns_port, HOME, "A"), before, "nothing changed");
}

fn clock_skew_is_dnserr(t: &Target) {
    let before = dig(t.dns_port, HOME, "A");
    let r = nic_update(
        &good_key(),
        t.doh_port,
        &format!("hostname={HOME}&myip=192.0.2.98"),
        3600,
    );
    assert_eq!(r.reply, "dnserr");
    assert!(r.log[0].contains(t.refusals[2]), "{:?}", r.log);
    assert_eq!(dig(t.dns_port, HOME, "A"), before, "nothing changed");
}

fn a_cname_at_the_name_is_left_untouched(t: &Target) {
    let alias = "alias.dyn.example.test";
    nsupdate(t.dns_port, &format!("update add {alias} 60 CNAME {HOME}."));
    // The demo token owns home only: take the ACME-style path of a user owning the zone.
    let mut v: serde_json::Value =
        serde_json::from_slice(include_bytes!("../../../examples/dynedge-rfc2136.json")).unwrap();
    v["backends"]["bind"]["cluster"] = "relay".into();
    v["backends"]["bind"]["key_name"] = dns::KEY_NAME.into();
    v["backends"]["bind"]["secret"] = dns::KEY_SECRET.into();
    v["users"][0]["hosts"]
        .as_array_mut()
        .unwrap()
        .push(alias.into());
    let cfg = Config::from_json(v.to_string().as_bytes()).unwrap();
    let r = nic_update(
        &cfg,
        t.doh_port,
        &format!("hostname={alias}&myip=192.0.2.30"),
        0,
    );
    assert_eq!((r.reply.as_str(), r.updates), ("dnserr", 1), "{:?}", r.log);
    assert!(r.log[0].contains("YXRRSET"), "{:?}", r.log);
    assert_eq!(dig(t.dns_port, alias, "CNAME"), [format!("{HOME}.")]);
    let out = Command::new("dig")
        .args([
            "+tcp",
            "+noall",
            "+answer",
            "-p",
            &t.dns_port.to_string(),
            "@127.0.0.1",
            alias,
            "A",
        ])
        .output()
        .unwrap();
    let answer = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        !answer.contains("192.0.2.30"),
        "the CNAME was clobbered: {answer}"
    );
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn every_case(t: &Target) {
    a_record_is_set_then_nochg_without_an_update(t);
    aaaa_and_dual_stack(t);
    txt_add_then_delete(t);
    hmac_sha512_keys_work_too(t);
    wrong_secret_and_unknown_key_are_dnserr(t);
    clock_skew_is_dnserr(t);
    a_cname_at_the_name_is_left_untouched(t);
}

// ------------------------------------------------------------------------------ the servers

#[test]
fn bind_through_its_own_doh_listener_passes_every_case() {
    let bind = start_bind();
    every_case(&Target {
        doh_port: bind.doh_port,
        dns_port: bind.dns_port,
        refusals: TSIG_ERRORS,
    });
}

#[test]
fn knot_through_dnsdist_passes_every_case() {
    let knot = start_knot();
    let relay = start_dnsdist(knot.dns_port);
    every_case(&Target {
        doh_port: relay.doh_port,
        dns_port: knot.dns_port,
        refusals: TSIG_ERRORS,
    });
}

#[test]
fn powerdns_through_dnsdist_passes_every_case() {
    let pdns = start_pdns();
    let relay = start_dnsdist(pdns.dns_port);
    every_case(&Target {
        doh_port: relay.doh_port,
        dns_port: pdns.dns_port,
        refusals: ["REFUSED", "REFUSED", "REFUSED"],
    });
}

#[test]
fn bind_through_dnsdist_verifies_answers_signed_with_the_relays_id() {
    // dnsdist rewrites the DNS id towards the server; the answer's TSIG carries that id.
    let bind = start_bind();
    let relay = start_dnsdist(bind.dns_port);
    let t = Target {
        doh_port: relay.doh_port,
        dns_port: bind.dns_port,
        refusals: TSIG_ERRORS,
    };
    a_record_is_set_then_nochg_without_an_update(&t);
    wrong_secret_and_unknown_key_are_dnserr(&t);
}

#[test]
fn a_relay_that_is_down_is_dnserr_for_reads_and_writes() {
    let nobody = dns::free_port();
    let r = nic_update(
        &good_key(),
        nobody,
        &format!("hostname={HOME}&myip=192.0.2.40"),
        0,
    );
    assert_eq!((r.reply.as_str(), r.updates), ("dnserr", 0));
    assert!(r.log[0].contains("unreachable"), "{:?}", r.log);
    // A write whose relay vanished: the check gets no answer at all.
    let cfg = good_key();
    let backend = &cfg.backends["bind"];
    let zone = Fqdn::parse("dyn.example.test").unwrap();
    let set = RrSet {
        name: Fqdn::parse(HOME).unwrap(),
        rtype: RrType::A,
        ttl: 60,
        values: vec![IpAddr::from([192, 0, 2, 41]).to_string()],
    };
    let (c, check) = backend
        .write(
            &zone,
            &[set],
            BackendEnv {
                now_s: now_s(),
                random: 1,
            },
        )
        .unwrap();
    assert!(backend.check_write(&check, &perform(&c, nobody)).is_err());
}

#[test]
fn the_demo_stack_of_xtask_up_matches_the_example_configuration() {
    use support::dns_servers::stack;
    let v: serde_json::Value =
        serde_json::from_slice(include_bytes!("../../../examples/dynedge-rfc2136.json")).unwrap();
    let b = &v["backends"]["bind"];
    assert_eq!(b["cluster"], stack::DEMO_CLUSTER);
    assert_eq!(
        b["authority"],
        format!("127.0.0.1:{}", stack::DEMO_DOH_PORT)
    );
    assert_eq!(b["key_name"], stack::DEMO_KEY.name);
    assert_eq!(b["algorithm"], stack::DEMO_KEY.algorithm);
    assert_eq!(b["secret"], stack::DEMO_KEY.secret);
    // The key file BIND gets is one dynedge accepts as `key_file`, giving the same key.
    let mut with_file = v.clone();
    let o = with_file["backends"]["bind"].as_object_mut().unwrap();
    o.remove("algorithm");
    o.remove("secret");
    o.insert("key_file".into(), stack::DEMO_KEY.bind_key_file().into());
    let a = Config::from_json(v.to_string().as_bytes()).unwrap();
    let b = Config::from_json(with_file.to_string().as_bytes()).unwrap();
    assert_eq!(
        format!("{:?}", a.backends["bind"]),
        format!("{:?}", b.backends["bind"])
    );
}

#[test]
fn the_rfc2136_example_is_the_demo_configuration_with_another_backend() {
    let mut demo: serde_json::Value =
        serde_json::from_slice(include_bytes!("../../../examples/dynedge.json")).unwrap();
    let mut rfc: serde_json::Value =
        serde_json::from_slice(include_bytes!("../../../examples/dynedge-rfc2136.json")).unwrap();
    for v in [&mut demo, &mut rfc] {
        v.as_object_mut().unwrap().remove("backends");
        v["zones"][0]["backend"] = "x".into();
    }
    assert_eq!(
        demo, rfc,
        "keep examples/dynedge-rfc2136.json in step with dynedge.json"
    );
}
