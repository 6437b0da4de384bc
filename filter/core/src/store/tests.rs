//! The etcd store's protocol against `FakeEtcd`, a **fake** of etcd's v3 JSON gateway (range,
//! put, txn with MOD compares, revisions) so races can be scripted call by call. Real etcd and
//! real Envoy run in `envoy/tests/etcd_store.rs`.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

use super::etcd::{self, HostRecord, SYNCED_KEY};
use crate::backends::{Callout, CalloutResult};
use crate::exchange::{CalloutId, Env, Exchange, Step};
use crate::kv::{KvWrite, MemoryKv};
use crate::reply::Reply;
use crate::request::Request;
use crate::testing::{get, request, FakePowerDns, Fault, RequestExt, TOKEN};
use crate::Config;

const NOW: u64 = 1_700_000_000_000;
const HOME: &str = "home.dyn.example.test";

/// A fake etcd: keys with mod revisions and one global revision.
#[derive(Default)]
struct FakeEtcd {
    kv: BTreeMap<Vec<u8>, (Vec<u8>, i64)>,
    revision: i64,
    /// The next answer of this many calls is lost after the call was applied.
    lose_answers: u32,
    calls: u32,
}

impl FakeEtcd {
    fn dec(v: &Value) -> Vec<u8> {
        v.as_str()
            .and_then(|s| B64.decode(s).ok())
            .unwrap_or_default()
    }

    fn range(&self, op: &Value) -> Value {
        let key = Self::dec(&op["key"]);
        let end = Self::dec(&op["range_end"]);
        let kvs: Vec<Value> = self
            .kv
            .iter()
            .filter(|(k, _)| {
                if end.is_empty() {
                    **k == key
                } else {
                    **k >= key && **k < end
                }
            })
            .map(|(k, (v, m))| {
                json!({"key": B64.encode(k), "value": B64.encode(v),
                       "mod_revision": m.to_string()})
            })
            .collect();
        if kvs.is_empty() {
            json!({"header": {"revision": self.revision.to_string()}})
        } else {
            json!({"header": {"revision": self.revision.to_string()}, "kvs": kvs})
        }
    }

    fn put(&mut self, op: &Value) {
        self.revision += 1;
        self.kv.insert(
            Self::dec(&op["key"]),
            (Self::dec(&op["value"]), self.revision),
        );
    }

    fn ops(&mut self, ops: &Value) -> Vec<Value> {
        let mut out = vec![];
        for op in ops.as_array().cloned().unwrap_or_default() {
            if let Some(p) = op.get("request_put") {
                self.put(p);
                out.push(json!({"response_put": {}}));
            } else if let Some(r) = op.get("request_range") {
                out.push(json!({"response_range": self.range(r)}));
            }
        }
        out
    }

    fn answer(&mut self, c: &Callout) -> CalloutResult {
        self.calls += 1;
        let body: Value = serde_json::from_slice(&c.body).unwrap();
        let answer = match c.path.as_str() {
            "/v3/kv/range" => self.range(&body),
            "/v3/kv/put" => {
                self.put(&body);
                json!({"header": {"revision": self.revision.to_string()}})
            }
            "/v3/kv/txn" => {
                let ok = body["compare"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .all(|cmp| {
                        assert_eq!(cmp["target"], "MOD");
                        let want: i64 = cmp["mod_revision"].as_str().unwrap().parse().unwrap();
                        let have = self.kv.get(&Self::dec(&cmp["key"])).map_or(0, |e| e.1);
                        have == want
                    });
                let responses = self.ops(if ok {
                    &body["success"]
                } else {
                    &body["failure"]
                });
                let mut v = json!({"header": {"revision": self.revision.to_string()},
                                   "responses": responses});
                if ok {
                    v["succeeded"] = true.into();
                }
                v
            }
            other => panic!("fake etcd: unexpected {other}"),
        };
        if self.lose_answers > 0 {
            self.lose_answers -= 1;
            return CalloutResult::Failed(crate::backends::CalloutFailure::Connection(
                "fake: answer lost".into(),
            ));
        }
        CalloutResult::Response {
            status: 200,
            headers: vec![],
            body: answer.to_string().into_bytes(),
        }
    }

    fn host(&self, name: &str) -> (HostRecord, i64) {
        let (v, m) = self
            .kv
            .get(format!("/dynedge/hosts/{name}").as_bytes())
            .cloned()
            .unwrap();
        (serde_json::from_slice(&v).unwrap(), m)
    }
}

fn etcd_config() -> Config {
    let mut v: Value =
        serde_json::from_slice(include_bytes!("../../../../examples/dynedge.json")).unwrap();
    v["store"] = json!({"type": "etcd", "ttl_s": 2});
    Config::from_json(v.to_string().as_bytes()).unwrap()
}

/// One gateway: its own shared data (a fresh credential snapshot in it).
fn gateway() -> MemoryKv {
    let kv = MemoryKv::default();
    kv.apply(&[KvWrite::put(
        SYNCED_KEY.into(),
        NOW.to_string().into_bytes(),
    )]);
    kv
}

struct World {
    cfg: Config,
    etcd: FakeEtcd,
    pdns: FakePowerDns,
}

/// An exchange in progress with its outstanding calls, driven one answer at a time.
struct Run {
    ex: Exchange,
    queue: Vec<(CalloutId, Callout)>,
    reply: Option<Reply>,
    random: u64,
}

impl World {
    fn new() -> World {
        World {
            cfg: etcd_config(),
            etcd: FakeEtcd::default(),
            pdns: FakePowerDns::default(),
        }
    }

    fn start(&mut self, kv: &MemoryKv, query: &str, random: u64) -> Run {
        let req =
            get(&format!("/nic/update?hostname={HOME}&{query}")).basic("demo", "demo-password");
        self.start_request(kv, req, random)
    }

    fn start_request(&mut self, kv: &MemoryKv, req: Request, random: u64) -> Run {
        let env = Env {
            now_ms: NOW,
            random,
            kv,
        };
        let (ex, step) = Exchange::start(&self.cfg, req, true, &env);
        let mut run = Run {
            ex,
            queue: vec![],
            reply: None,
            random,
        };
        run.take(step);
        run
    }

    /// Answers the run's oldest outstanding call whose path contains `what`.
    fn answer(&mut self, run: &mut Run, kv: &MemoryKv, what: &str) {
        let i = run
            .queue
            .iter()
            .position(|(_, c)| c.path.contains(what))
            .unwrap_or_else(|| panic!("no outstanding {what}: {:?}", run.queue));
        let (id, c) = run.queue.remove(i);
        let r = if c.cluster == "etcd" {
            self.etcd.answer(&c)
        } else {
            self.pdns.answer(&c)
        };
        let env = Env {
            now_ms: NOW,
            random: run.random,
            kv,
        };
        let step = run.ex.on_callout(id, r, &env);
        run.take(step);
    }

    fn finish(&mut self, run: &mut Run, kv: &MemoryKv) -> String {
        while run.reply.is_none() {
            let what = run.queue.first().map(|(_, c)| c.path.clone()).unwrap();
            self.answer(run, kv, &what);
        }
        String::from_utf8(run.reply.take().unwrap().body)
            .unwrap()
            .trim_end()
            .to_string()
    }

    /// Any request of any dialect, driven to its reply: (status, body).
    fn send(&mut self, kv: &MemoryKv, req: Request) -> (u16, String) {
        let mut run = self.start_request(kv, req, 9);
        while run.reply.is_none() {
            let what = run.queue.first().map(|(_, c)| c.path.clone()).unwrap();
            self.answer(&mut run, kv, &what);
        }
        let reply = run.reply.take().unwrap();
        (reply.status, String::from_utf8(reply.body).unwrap())
    }

    fn update(&mut self, kv: &MemoryKv, ip: &str) -> String {
        let mut run = self.start(kv, &format!("myip={ip}"), 1);
        self.finish(&mut run, kv)
    }
}

impl Run {
    fn take(&mut self, step: Step) {
        match step {
            Step::Call(calls) => self.queue.extend(calls),
            Step::Done(out) => {
                self.reply = out.reply;
                // Every write this path asks of shared data must be a verification cache.
                for w in out.writes {
                    assert!(
                        !w.key.starts_with("dynedge:rr:"),
                        "etcd store must not cache records"
                    );
                }
            }
            Step::Wait => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn first_update_is_good_and_leaves_a_confirmed_record_and_dns() {
    let mut w = World::new();
    let kv = gateway();
    assert_eq!(w.update(&kv, "192.0.2.10"), "good 192.0.2.10");
    let (rec, _) = w.etcd.host(HOME);
    assert_eq!(rec.state, etcd::OK);
    assert_eq!(rec.rr["A"], vec!["192.0.2.10"]);
    assert_eq!(w.pdns.records(HOME, "A"), vec!["192.0.2.10"]);
    assert_eq!(w.etcd.calls, 3, "read, claim, confirm");
}

#[test]
fn the_same_address_through_another_gateway_is_nochg_with_one_etcd_read() {
    let mut w = World::new();
    assert_eq!(w.update(&gateway(), "192.0.2.10"), "good 192.0.2.10");
    let calls = w.etcd.calls;
    assert_eq!(w.update(&gateway(), "192.0.2.10"), "nochg 192.0.2.10");
    assert_eq!(w.etcd.calls - calls, 1);
}

#[test]
fn a_failed_dns_write_leaves_the_record_pending_so_the_retry_is_good_not_nochg() {
    let mut w = World::new();
    let kv = gateway();
    w.pdns.fault = Fault::WritesFail;
    assert_eq!(w.update(&kv, "192.0.2.10"), "dnserr");
    assert_eq!(w.etcd.host(HOME).0.state, etcd::PENDING);
    w.pdns.fault = Fault::None;
    assert_eq!(w.update(&kv, "192.0.2.10"), "good 192.0.2.10");
    assert_eq!(w.pdns.records(HOME, "A"), vec!["192.0.2.10"]);
}

#[test]
fn of_two_racing_claims_one_wins_and_the_loser_rereads_and_answers_truthfully() {
    let mut w = World::new();
    let (g1, g2) = (gateway(), gateway());
    let mut a = w.start(&g1, "myip=192.0.2.1", 11);
    let mut b = w.start(&g2, "myip=192.0.2.2", 22);
    w.answer(&mut a, &g1, "range");
    w.answer(&mut b, &g2, "range");
    w.answer(&mut a, &g1, "txn"); // a's claim wins
    w.answer(&mut b, &g2, "txn"); // b's claim loses, sees a's pending record in the same trip
    let (rec, _) = w.etcd.host(HOME);
    assert_eq!(rec.state, etcd::PENDING);
    assert_eq!(
        rec.rr["A"],
        vec!["192.0.2.1"],
        "b did not overwrite blindly"
    );
    assert_eq!(w.finish(&mut a, &g1), "good 192.0.2.1");
    assert_eq!(w.finish(&mut b, &g2), "good 192.0.2.2");
    assert_eq!(w.pdns.records(HOME, "A"), vec!["192.0.2.2"]);
    assert_eq!(w.etcd.host(HOME).0.state, etcd::OK);
}

#[test]
fn a_dns_write_landing_after_a_newer_one_is_repaired_by_its_writer() {
    let mut w = World::new();
    let (g1, g2) = (gateway(), gateway());
    let mut a = w.start(&g1, "myip=192.0.2.1", 11);
    w.answer(&mut a, &g1, "range");
    w.answer(&mut a, &g1, "txn"); // a claimed; its DNS write is now in flight
    let mut b = w.start(&g2, "myip=192.0.2.2", 22);
    assert_eq!(w.finish(&mut b, &g2), "good 192.0.2.2");
    assert_eq!(w.pdns.records(HOME, "A"), vec!["192.0.2.2"]);
    w.answer(&mut a, &g1, "zones"); // a's slow write lands last: DNS now wrong
    assert_eq!(w.pdns.records(HOME, "A"), vec!["192.0.2.1"]);
    assert_eq!(w.finish(&mut a, &g1), "good 192.0.2.1");
    assert_eq!(
        w.pdns.records(HOME, "A"),
        vec!["192.0.2.2"],
        "a saw its confirm fail and wrote the store's value back"
    );
    let (rec, _) = w.etcd.host(HOME);
    assert_eq!(
        (rec.state.as_str(), rec.rr["A"].clone()),
        (etcd::OK, vec!["192.0.2.2".to_string()])
    );
}

#[test]
fn a_claim_whose_answer_was_lost_is_recognised_on_retry() {
    let mut w = World::new();
    let kv = gateway();
    let mut run = w.start(&kv, "myip=192.0.2.7", 5);
    w.answer(&mut run, &kv, "range");
    w.etcd.lose_answers = 1;
    w.answer(&mut run, &kv, "txn"); // applied, answer lost: retried, compare now fails
    assert_eq!(w.finish(&mut run, &kv), "good 192.0.2.7");
    assert_eq!(w.etcd.host(HOME).0.state, etcd::OK);
}

#[test]
fn a_stale_credential_snapshot_refuses_updates_with_911() {
    let mut w = World::new();
    let kv = MemoryKv::default(); // never synced
    assert_eq!(w.update(&kv, "192.0.2.10"), "911");
    assert_eq!(w.etcd.calls, 0);
}

#[test]
fn while_the_snapshot_is_stale_right_and_wrong_passwords_get_one_answer_without_argon2() {
    let mut d = crate::testing::Driver::new(etcd_config()); // never synced: stale
    let nic = |password: &str| {
        get(&format!("/nic/update?hostname={HOME}&myip=192.0.2.1")).basic("demo", password)
    };
    let before = crate::auth::argon2_runs();
    for i in 0..30 {
        let password = if i % 2 == 0 { "demo-password" } else { "guess" };
        let o = d.run(nic(password));
        assert_eq!(crate::testing::body(&o), "911\n", "attempt {i}");
        assert!(o.counts.is_empty(), "nothing is counted while stale");
    }
    assert_eq!(
        crate::auth::argon2_runs(),
        before,
        "nothing is verified while stale"
    );
    assert!(d.calls.is_empty());
    // Synced: the answers differ again, and the failures count.
    d.kv.apply(&[KvWrite::put(
        SYNCED_KEY.into(),
        d.now_ms.to_string().into_bytes(),
    )]);
    let o = d.run(nic("guess"));
    assert_eq!(crate::testing::body(&o), "badauth\n");
    assert!(!o.counts.is_empty());
}

#[test]
fn etcd_unreachable_is_dnserr_never_good() {
    let mut w = World::new();
    let kv = gateway();
    w.etcd.lose_answers = 100;
    assert_eq!(w.update(&kv, "192.0.2.10"), "dnserr");
    assert!(w.pdns.records(HOME, "A").is_empty());
}

#[test]
fn sync_replaces_users_and_tokens_and_a_revoked_token_is_gone() {
    let base = include_bytes!("../../../../examples/dynedge.json");
    let cfg = etcd_config();
    let store = cfg.store.etcd().unwrap().clone();
    let mut fake = FakeEtcd::default();
    let base_v: Value = serde_json::from_slice(base).unwrap();
    let user = &base_v["users"][0];
    fake.put(&json!({"key": B64.encode(etcd::user_key(&store, "demo")),
                     "value": B64.encode(user.to_string())}));
    let answer = fake.answer(&etcd::sync_call(&store));
    let raw = etcd::sync_apply(base, &answer).unwrap();
    let synced = Config::from_json(&raw).unwrap();
    assert_eq!(synced.users.len(), 1);
    assert!(synced.tokens.is_empty(), "no token in etcd, none accepted");
    assert!(synced.users.contains_key("demo"));
}

#[test]
fn the_configuration_store_and_the_etcd_store_answer_the_same_sequence_alike() {
    let steps: &[(&str, &str, &str)] = &[
        (
            "demo",
            "demo-password",
            "hostname=home.dyn.example.test&myip=192.0.2.10",
        ),
        (
            "demo",
            "demo-password",
            "hostname=home.dyn.example.test&myip=192.0.2.10",
        ),
        (
            "demo",
            "wrong-password",
            "hostname=home.dyn.example.test&myip=192.0.2.11",
        ),
        (
            "demo",
            "demo-password",
            "hostname=neighbour.dyn.example.test&myip=192.0.2.11",
        ),
        (
            "demo",
            "demo-password",
            "hostname=home.dyn.example.test&myip=192.0.2.11",
        ),
        (
            "demo",
            "demo-password",
            "hostname=home.dyn.example.test,x..y&myip=192.0.2.11",
        ),
    ];
    let mut config = crate::testing::Driver::demo();
    let mut w = World::new();
    let kv = gateway();
    for (user, pw, query) in steps {
        let req = || get(&format!("/nic/update?{query}")).basic(user, pw);
        let by_config = String::from_utf8(config.send(req()).unwrap().body).unwrap();
        let env = Env {
            now_ms: NOW,
            random: 3,
            kv: &kv,
        };
        let (ex, step) = Exchange::start(&w.cfg, req(), true, &env);
        let mut run = Run {
            ex,
            queue: vec![],
            reply: None,
            random: 3,
        };
        run.take(step);
        let by_etcd = w.finish(&mut run, &kv);
        assert_eq!(by_config.trim_end(), by_etcd, "{query}");
    }
    assert_eq!(config.pdns.records(HOME, "A"), w.pdns.records(HOME, "A"));
}

const V1: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA1";
const V2: &str = "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB2";

fn txt(action: &str, value: &str) -> Request {
    let body = json!({"fqdn": format!("_acme-challenge.{HOME}."), "value": value});
    request("POST", &format!("/httpreq/{action}"), &body.to_string()).basic("demo", "demo-password")
}

#[test]
fn acme_txt_values_are_added_and_removed_through_the_etcd_store() {
    let mut w = World::new();
    let kv = gateway();
    let name = format!("_acme-challenge.{HOME}");
    // A value already in DNS that etcd never saw is kept: the first edit reads DNS.
    w.pdns.set(&name, "TXT", &["left-by-hand"]);
    assert_eq!(w.send(&kv, txt("present", V1)), (200, "ok\n".into()));
    assert_eq!(w.send(&kv, txt("present", V2)), (200, "ok\n".into()));
    assert_eq!(w.pdns.get(&name, "TXT"), ["left-by-hand", V1, V2]);
    let (rec, _) = w.etcd.host(&name);
    assert_eq!((rec.state.as_str(), rec.rr["TXT"].len()), (etcd::OK, 3));
    assert_eq!(w.send(&kv, txt("cleanup", V1)), (200, "ok\n".into()));
    assert_eq!(w.pdns.get(&name, "TXT"), ["left-by-hand", V2]);
    // Another gateway (no shared data in common) sees the same state in etcd.
    assert_eq!(w.send(&gateway(), txt("cleanup", V2)), (200, "ok\n".into()));
    assert_eq!(w.pdns.get(&name, "TXT"), ["left-by-hand"]);
    assert_eq!(w.etcd.host(&name).0.rr["TXT"], ["left-by-hand"]);
}

#[test]
fn too_many_txt_values_are_refused_through_the_etcd_store_and_nothing_is_claimed() {
    let mut w = World::new();
    let kv = gateway();
    let name = format!("_acme-challenge.{HOME}");
    let max = w.cfg.apertodns.txt_max_records;
    let values: Vec<String> = (0..max).map(|i| format!("value-{i}")).collect();
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    w.pdns.set(&name, "TXT", &refs);
    let (status, _) = w.send(&kv, txt("present", V1));
    assert_eq!(status, 400);
    assert_eq!(w.pdns.get(&name, "TXT"), values);
    assert!(!w.etcd.kv.keys().any(|k| k.ends_with(name.as_bytes())));
}

#[test]
fn dynv6_dash_and_delete_by_path_remove_records_through_the_etcd_store() {
    let mut w = World::new();
    let kv = gateway();
    let set = get(&format!(
        "/api/update?zone={HOME}&token={TOKEN}&ipv4=192.0.2.7&ipv6=2001:db8::7"
    ));
    assert_eq!(w.send(&kv, set).1, "addresses updated\n");
    let v4_gone = get(&format!("/api/update?zone={HOME}&token={TOKEN}&ipv4=-"));
    assert_eq!(w.send(&kv, v4_gone).1, "addresses updated\n");
    assert!(w.pdns.get(HOME, "A").is_empty());
    assert_eq!(w.pdns.get(HOME, "AAAA"), ["2001:db8::7"]);
    let (rec, _) = w.etcd.host(HOME);
    assert_eq!((rec.state.as_str(), rec.rr["A"].len()), (etcd::OK, 0));
    let delete = || get(&format!("/delete-by-path/{TOKEN}/{HOME}"));
    assert_eq!(
        w.send(&gateway(), delete()).1,
        "UPDATED: Deleted \"home.dyn.example.test\".\n"
    );
    assert!(w.pdns.get(HOME, "A").is_empty() && w.pdns.get(HOME, "AAAA").is_empty());
    assert_eq!(
        w.send(&gateway(), delete()).1,
        "UNCHANGED: Deletion not successful \"home.dyn.example.test\".\n"
    );
}

#[test]
fn deleting_records_etcd_never_saw_removes_them_from_dns() {
    let mut w = World::new();
    let kv = gateway();
    w.pdns.set(HOME, "A", &["192.0.2.1"]);
    w.pdns.set(HOME, "AAAA", &["2001:db8::1"]);
    let delete = get(&format!("/delete-by-path/{TOKEN}/{HOME}"));
    assert_eq!(
        w.send(&kv, delete).1,
        "UPDATED: Deleted \"home.dyn.example.test\".\n"
    );
    assert!(w.pdns.get(HOME, "A").is_empty() && w.pdns.get(HOME, "AAAA").is_empty());
}

#[test]
fn dynv6_ipv6prefix_moves_the_hosts_below_the_zone_through_the_etcd_store() {
    let mut v: Value =
        serde_json::from_slice(include_bytes!("../../../../examples/dynedge.json")).unwrap();
    v["store"] = json!({"type": "etcd", "ttl_s": 2});
    let (nas, tv) = ("nas.home.dyn.example.test", "tv.home.dyn.example.test");
    v["users"][0]["hosts"] = json!([HOME, nas, tv]);
    let mut w = World::new();
    w.cfg = Config::from_json(v.to_string().as_bytes()).unwrap();
    let kv = gateway();
    // nas through the etcd store first; tv only in DNS, as before the store was etcd.
    let nas_set = get(&format!(
        "/nic/update?hostname={nas}&myip=2001:db8:1:1:aaaa:bbbb:cccc:dddd"
    ))
    .basic("demo", "demo-password");
    assert_eq!(
        w.send(&kv, nas_set).1.trim_end(),
        "good 2001:db8:1:1:aaaa:bbbb:cccc:dddd"
    );
    w.pdns
        .set(tv, "AAAA", &["2001:db8:1:1::10", "2001:db8:1:1::11"]);
    w.pdns.set(HOME, "AAAA", &["2001:db8:1:1::1"]);
    let prefix = get(&format!(
        "/api/update?zone={HOME}&token={TOKEN}&ipv6prefix=2001:db8:2:2::/64"
    ));
    assert_eq!(w.send(&kv, prefix).1, "addresses updated\n");
    assert_eq!(
        w.pdns.get(nas, "AAAA"),
        ["2001:db8:2:2:aaaa:bbbb:cccc:dddd"]
    );
    assert_eq!(
        w.pdns.get(tv, "AAAA"),
        ["2001:db8:2:2::10", "2001:db8:2:2::11"]
    );
    assert_eq!(w.pdns.get(HOME, "AAAA"), ["2001:db8:1:1::1"]);
    let (rec, _) = w.etcd.host(tv);
    assert_eq!(rec.state, etcd::OK);
    assert_eq!(rec.rr["AAAA"], ["2001:db8:2:2::10", "2001:db8:2:2::11"]);
    let again = get(&format!(
        "/api/update?zone={HOME}&token={TOKEN}&ipv6prefix=2001:db8:2:2::/64"
    ));
    assert_eq!(w.send(&gateway(), again).1, "addresses unchanged\n");
}
