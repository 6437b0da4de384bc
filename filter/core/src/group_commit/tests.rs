//! Group commit against the fake PowerDNS of `testing` (a fake: no real backend runs in unit
//! tests; envoy/tests/group_commit_over_envoy.rs runs the same against real PowerDNS).
//!
//! Many exchanges run at once here, each updating its own host of one zone, so that writes
//! meet in the zone's queue the way concurrent requests do in an adapter.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::arithmetic_side_effects,
    clippy::panic
)]

use super::*;
use crate::testing::{get, FakePowerDns, RequestExt, TOKEN};
use crate::{CalloutFailure, Env, Exchange, MemoryKv, Step};

const HOSTS: usize = 30;
const NOW: u64 = 1_700_000_000_000;

fn config(max_batch: usize, max_wait_ms: u64) -> Config {
    let mut doc: serde_json::Value =
        serde_json::from_str(include_str!("../../../../examples/dynedge.json")).unwrap();
    let hosts: Vec<String> = (0..HOSTS)
        .map(|i| format!("h{i}.dyn.example.test"))
        .collect();
    doc["users"][0]["hosts"] = serde_json::json!(hosts);
    doc["group_commit"] = serde_json::json!({"max_batch": max_batch, "max_wait_ms": max_wait_ms});
    doc["record_cache_ttl_s"] = 0.into();
    Config::from_json(doc.to_string().as_bytes()).unwrap()
}

/// What the fake backend does with the next batch.
#[derive(Clone, Copy)]
enum Fate<'a> {
    /// Applies it and answers 204.
    Apply,
    /// Applies it, but the answer never arrives (a timeout after the commit).
    AppliedAnswerLost,
    /// Applies nothing and gives no answer.
    Lost,
    /// PowerDNS refuses the whole PATCH (422) when it carries this name; applies otherwise.
    RefuseName(&'a str),
}

struct World {
    cfg: Config,
    kv: MemoryKv,
    pdns: FakePowerDns,
    group: GroupCommit<usize>,
    exchanges: Vec<Option<Exchange>>,
    replies: Vec<Option<String>>,
    /// Batches sent and not yet answered, in the order they went out.
    held: VecDeque<(BatchId, Callout)>,
    patches: Vec<Callout>,
    samples: Vec<(String, u64)>,
    now_ms: u64,
}

impl World {
    fn new(cfg: Config) -> World {
        World {
            cfg,
            kv: MemoryKv::default(),
            pdns: FakePowerDns::default(),
            group: GroupCommit::new(),
            exchanges: (0..HOSTS).map(|_| None).collect(),
            replies: vec![None; HOSTS],
            held: VecDeque::new(),
            patches: Vec::new(),
            samples: Vec::new(),
            now_ms: NOW,
        }
    }

    /// Host `i` asks for `ip` (reads are answered at once; its write joins the queue).
    fn update(&mut self, i: usize, ip: &str) {
        let req = get(&format!(
            "/nic/update?hostname=h{i}.dyn.example.test&myip={ip}"
        ))
        .bearer(TOKEN);
        let env = Env {
            now_ms: self.now_ms,
            random: i as u64,
            kv: &self.kv,
        };
        let (ex, step) = Exchange::start(&self.cfg, req, true, &env);
        self.exchanges[i] = Some(ex);
        self.perform(i, step);
    }

    fn perform(&mut self, i: usize, step: Step) {
        match step {
            Step::Call(calls) => {
                for (id, c) in calls {
                    let r = self.pdns.answer(&c);
                    let env = Env {
                        now_ms: self.now_ms,
                        random: 1,
                        kv: &self.kv,
                    };
                    let next = self.exchanges[i].as_mut().unwrap().on_callout(id, r, &env);
                    self.perform(i, next);
                }
            }
            Step::Commit(writes) => {
                let c = self.group.submit(&self.cfg, i, writes, self.now_ms, 9);
                self.absorb(c);
            }
            Step::Done(o) => {
                self.kv.apply(&o.writes);
                let reply = o.reply.unwrap();
                self.replies[i] = Some(reply.body_text().trim_end().to_string());
                self.exchanges[i] = None;
            }
            Step::Wait => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    fn absorb(&mut self, c: Commits<usize>) {
        self.held.extend(c.send);
        self.samples.extend(c.samples);
        for (owner, id, answer) in c.answers {
            let env = Env {
                now_ms: self.now_ms,
                random: 1,
                kv: &self.kv,
            };
            let Some(ex) = self.exchanges[owner].as_mut() else {
                continue;
            };
            let next = ex.on_write(id, answer, &env);
            self.perform(owner, next);
        }
    }

    /// Answers the oldest batch in flight as `fate` says; false when none is in flight.
    fn answer_next(&mut self, fate: Fate) -> bool {
        let Some((batch, c)) = self.held.pop_front() else {
            return false;
        };
        self.patches.push(c.clone());
        let body = String::from_utf8_lossy(&c.body).to_string();
        let result = match fate {
            Fate::Apply => self.pdns.answer(&c),
            Fate::AppliedAnswerLost => {
                let _ = self.pdns.answer(&c);
                CalloutResult::Failed(CalloutFailure::Timeout { after_ms: 2000 })
            }
            Fate::Lost => CalloutResult::Failed(CalloutFailure::NoResponse),
            Fate::RefuseName(name) if body.contains(&format!("\"{name}.\"")) => {
                CalloutResult::Response {
                    status: 422,
                    headers: vec![],
                    body: br#"{"error": "refused by the fake"}"#.to_vec(),
                }
            }
            Fate::RefuseName(_) => self.pdns.answer(&c),
        };
        let c = self
            .group
            .on_result(&self.cfg, batch, result, self.now_ms, 9);
        self.absorb(c);
        true
    }

    fn drain(&mut self, fate: Fate) {
        while self.answer_next(fate) {}
    }

    fn reply(&self, i: usize) -> &str {
        self.replies[i].as_deref().unwrap_or("(none)")
    }

    /// Hosts carried by each PATCH, in the order sent.
    fn batch_sizes(&self) -> Vec<usize> {
        self.patches.iter().map(rrsets).collect()
    }

    /// Every `good` reply's address is what the backend holds: no false `good`.
    fn assert_replies_match_dns(&self) {
        for i in 0..HOSTS {
            let reply = self.reply(i);
            if let Some(ip) = reply.strip_prefix("good ") {
                assert_eq!(
                    self.pdns.get(&format!("h{i}.dyn.example.test"), "A"),
                    vec![ip.to_string()],
                    "host {i} was told good"
                );
            }
        }
    }
}

fn rrsets(c: &Callout) -> usize {
    let doc: serde_json::Value = serde_json::from_slice(&c.body).unwrap();
    doc["rrsets"].as_array().unwrap().len()
}

fn ip(i: usize) -> String {
    format!("192.0.2.{}", i + 1)
}

#[test]
fn updates_arriving_while_a_write_is_in_flight_share_the_next_write() {
    let mut w = World::new(config(100, 500));
    for i in 0..HOSTS {
        w.update(i, &ip(i));
    }
    // The first went out alone; the other 29 wait behind it.
    assert_eq!(w.held.len(), 1);
    assert_eq!(w.group.load(), (1, HOSTS - 1));
    w.drain(Fate::Apply);
    assert_eq!(w.batch_sizes(), vec![1, HOSTS - 1]);
    for i in 0..HOSTS {
        assert_eq!(w.reply(i), format!("good {}", ip(i)), "host {i}");
    }
    w.assert_replies_match_dns();
    assert_eq!(w.group.load(), (0, 0));
    // Every write reports its wait and every batch its size.
    let sizes: Vec<u64> = w
        .samples
        .iter()
        .filter(|(n, _)| n.ends_with("dynedge_group_commit_batch_hosts"))
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(sizes, vec![1, (HOSTS - 1) as u64]);
    let waits = w
        .samples
        .iter()
        .filter(|(n, _)| n.ends_with("dynedge_group_commit_wait_ms"))
        .count();
    assert_eq!(waits, HOSTS);
}

#[test]
fn a_batch_never_carries_more_than_max_batch_hosts() {
    let mut w = World::new(config(8, 500));
    for i in 0..HOSTS {
        w.update(i, &ip(i));
    }
    w.drain(Fate::Apply);
    assert_eq!(w.batch_sizes(), vec![1, 8, 8, 8, 5]);
    assert!((0..HOSTS).all(|i| w.reply(i).starts_with("good ")));
    w.assert_replies_match_dns();
}

#[test]
fn a_batch_whose_fate_is_unknown_fails_every_host_in_it_and_tells_none_good() {
    for fate in [Fate::Lost, Fate::AppliedAnswerLost] {
        let mut w = World::new(config(100, 500));
        for i in 0..HOSTS {
            w.update(i, &ip(i));
        }
        assert!(w.answer_next(Fate::Apply)); // the first, alone
        assert!(w.answer_next(fate)); // the 29 together
        assert!(w.held.is_empty(), "an unknown fate is never retried");
        assert_eq!(w.reply(0), format!("good {}", ip(0)));
        for i in 1..HOSTS {
            assert_eq!(w.reply(i), "dnserr", "host {i}");
        }
        w.assert_replies_match_dns();
    }
}

#[test]
fn a_refused_batch_is_split_until_only_the_guilty_host_fails() {
    let mut w = World::new(config(100, 500));
    for i in 0..HOSTS {
        w.update(i, &ip(i));
    }
    w.drain(Fate::RefuseName("h17.dyn.example.test"));
    for i in 0..HOSTS {
        let want = if i == 17 {
            "dnserr".to_string()
        } else {
            format!("good {}", ip(i))
        };
        assert_eq!(w.reply(i), want, "host {i}");
    }
    w.assert_replies_match_dns();
    assert!(w.pdns.get("h17.dyn.example.test", "A").is_empty());
    // Halving 29 hosts down to the one: a handful of writes, not one per host.
    assert!(w.patches.len() <= 2 + 2 * 5, "{} writes", w.patches.len());
}

#[test]
fn a_host_with_two_rrsets_is_never_split_across_writes() {
    let mut w = World::new(config(100, 500));
    w.update(0, &ip(0));
    for i in 1..6 {
        w.update(i, &format!("{},2001:db8::{i}", ip(i)));
    }
    w.drain(Fate::RefuseName("h3.dyn.example.test"));
    for c in &w.patches {
        let doc: serde_json::Value = serde_json::from_slice(&c.body).unwrap();
        let names: Vec<&str> = doc["rrsets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        for n in &names {
            if *n != "h0.dyn.example.test." {
                assert_eq!(names.iter().filter(|m| *m == n).count(), 2, "{names:?}");
            }
        }
    }
    assert_eq!(w.reply(3), "dnserr");
    assert!(w.pdns.get("h3.dyn.example.test", "AAAA").is_empty());
    for i in [1, 2, 4, 5] {
        assert_eq!(w.reply(i), format!("good {} 2001:db8::{i}", ip(i)));
        assert_eq!(
            w.pdns.get(&format!("h{i}.dyn.example.test"), "AAAA"),
            vec![format!("2001:db8::{i}")]
        );
    }
}

#[test]
fn two_writes_to_one_name_never_share_a_write_nor_overtake_each_other() {
    let mut w = World::new(config(100, 500));
    w.update(0, &ip(0));
    // Hosts 1 and 2 both write h5 (the same name, different owners), host 3 another name.
    let req = |addr: &str| {
        get(&format!(
            "/nic/update?hostname=h5.dyn.example.test&myip={addr}"
        ))
        .bearer(TOKEN)
    };
    for (slot, addr) in [(1, "198.51.100.1"), (2, "198.51.100.2")] {
        let env = Env {
            now_ms: w.now_ms,
            random: slot as u64,
            kv: &w.kv,
        };
        let (ex, step) = Exchange::start(&w.cfg, req(addr), true, &env);
        w.exchanges[slot] = Some(ex);
        w.perform(slot, step);
    }
    w.update(3, &ip(3));
    assert!(w.answer_next(Fate::Apply)); // host 0 alone
    assert_eq!(rrsets(&w.held[0].1), 2, "h5 (first) and h3");
    assert!(String::from_utf8_lossy(&w.held[0].1.body).contains("198.51.100.1"));
    w.drain(Fate::Apply);
    assert_eq!(w.batch_sizes(), vec![1, 2, 1]);
    assert_eq!(w.reply(1), "good 198.51.100.1");
    assert_eq!(w.reply(2), "good 198.51.100.2");
    // The later request's address is the one left in DNS.
    assert_eq!(w.pdns.get("h5.dyn.example.test", "A"), vec!["198.51.100.2"]);
}

#[test]
fn a_write_waiting_longer_than_max_wait_goes_out_beside_the_one_in_flight() {
    let mut w = World::new(config(100, 200));
    w.update(0, &ip(0));
    w.update(1, &ip(1));
    assert_eq!(w.held.len(), 1, "host 1 waits behind host 0");
    w.now_ms += 250;
    w.update(2, &ip(2));
    // Host 1 waited past max_wait_ms: it and host 2 go out without waiting for host 0.
    assert_eq!(w.held.len(), 2);
    assert_eq!(rrsets(&w.held[1].1), 2);
    w.drain(Fate::Apply);
    assert!((0..3).all(|i| w.reply(i) == format!("good {}", ip(i))));
    w.assert_replies_match_dns();
}

#[test]
fn max_batch_1_turns_group_commit_off() {
    let mut w = World::new(config(1, 500));
    for i in 0..5 {
        w.update(i, &ip(i));
    }
    assert_eq!(w.held.len(), 5, "every write sent at once");
    w.drain(Fate::Apply);
    assert_eq!(w.batch_sizes(), vec![1; 5]);
    assert!((0..5).all(|i| w.reply(i) == format!("good {}", ip(i))));
}

#[test]
fn a_gone_exchange_is_forgotten_and_the_others_still_answered() {
    let mut w = World::new(config(100, 500));
    for i in 0..4 {
        w.update(i, &ip(i));
    }
    // Host 2's client went away before its write was sent.
    w.exchanges[2] = None;
    w.group.forget(&2);
    assert_eq!(w.group.load(), (1, 2));
    w.drain(Fate::Apply);
    assert_eq!(w.batch_sizes(), vec![1, 2]);
    assert!(w.pdns.get("h2.dyn.example.test", "A").is_empty());
    for i in [0, 1, 3] {
        assert_eq!(w.reply(i), format!("good {}", ip(i)));
    }
}

#[test]
fn group_commit_settings_are_validated() {
    for bad in [0, MAX_BATCH_LIMIT_FOR_TEST + 1] {
        let mut doc: serde_json::Value =
            serde_json::from_str(include_str!("../../../../examples/dynedge.json")).unwrap();
        doc["group_commit"] = serde_json::json!({ "max_batch": bad });
        let e = Config::from_json(doc.to_string().as_bytes()).unwrap_err();
        assert!(e.to_string().contains("group_commit.max_batch"), "{e}");
    }
}

const MAX_BATCH_LIMIT_FOR_TEST: usize = settings::MAX_BATCH_LIMIT;

#[test]
fn the_queue_is_bounded() {
    let cfg = config(100, 500);
    let mut g: GroupCommit<usize> = GroupCommit::new();
    let Backend::PowerDns(_) = &cfg.backends["pdns"] else {
        panic!("demo backend is PowerDNS");
    };
    let write = |n: usize| ZoneWrite {
        backend: cfg.backends["pdns"].clone(),
        zone: Fqdn::parse("dyn.example.test").unwrap(),
        sets: vec![RrSet {
            name: Fqdn::parse(&format!("q{n}.dyn.example.test")).unwrap(),
            rtype: crate::backends::RrType::A,
            ttl: 60,
            values: vec!["192.0.2.1".into()],
        }],
    };
    let mut refused = 0;
    for n in 0..MAX_QUEUED + 5 {
        let c = g.submit(&cfg, n, vec![(0, write(n))], NOW, 1);
        refused += c
            .answers
            .iter()
            .filter(|(_, _, a)| !a.is_confirmed())
            .count();
    }
    assert_eq!(
        refused, 4,
        "one in flight, MAX_QUEUED waiting, the rest refused"
    );
    assert_eq!(g.load(), (1, MAX_QUEUED));
}
