//! Group commit in dynedge's filter (docs/group-commit.md): concurrent updates of one zone on
//! one VM meet in its queue and go out in shared PATCHes, which the root context dispatches.
//! PowerDNS is `FakePowerDns` (dynedge-core's fake, named so). It answers the reads at once;
//! the PATCHes are held, so each test decides when and how each batch is answered.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use dynedge_core::testing::FakePowerDns;
use dynedge_core::CalloutResult;
use dynedge_test_host::{Answer, Call, Ctx, Host, Request};

const DEMO: &str = include_str!("../../examples/dynedge.json");
const ZONE: &str = "dyn.example.test";
const PASSWORD: &str = "demo-password";
const PEER: &str = "192.0.2.200:5555";
const BATCH_HOSTS: &str = "dynedge_group_commit_batch_hosts";
const MAX_WAIT_MS: u64 = 500;

/// Host `i`, owned by user `u{i}`.
fn host_name(i: usize) -> String {
    format!("h{i}.{ZONE}")
}

/// The new address host `i` asks for.
fn address(i: usize) -> String {
    format!("192.0.2.{}", 10 + i)
}

/// Argon2id at its cheapest (m=8 KiB, t=1): each user's first login verifies the password,
/// and twenty full-cost verifications would dwarf what these tests look at.
fn cheap_hash(password: &str) -> String {
    let params = Params::new(8, 1, 1, None).unwrap();
    let salt = SaltString::encode_b64(b"dynedge-group-commit").unwrap();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

/// The demo configuration plus `users` users `u{i}`, each owning host `h{i}`. Rate limits are
/// off: every update comes from the same client.
fn config(users: usize, max_batch: usize) -> String {
    let mut doc: serde_json::Value = serde_json::from_str(DEMO).unwrap();
    let hash = cheap_hash(PASSWORD);
    let list = doc["users"].as_array_mut().unwrap();
    for i in 0..users {
        list.push(serde_json::json!({
            "name": format!("u{i}"),
            "password_hash": hash,
            "hosts": [host_name(i)],
        }));
    }
    doc["rate_limits"] = serde_json::json!({"enabled": false});
    doc["group_commit"] = serde_json::json!({"max_batch": max_batch, "max_wait_ms": MAX_WAIT_MS});
    doc.to_string()
}

/// The hosts whose RRsets a PATCH carries, in the order it carries them.
fn hosts_in(patch: &Call) -> Vec<String> {
    let doc: serde_json::Value = serde_json::from_slice(&patch.body).unwrap();
    let mut hosts: Vec<String> = Vec::new();
    for set in doc["rrsets"].as_array().unwrap() {
        let name = set["name"]
            .as_str()
            .unwrap()
            .trim_end_matches('.')
            .to_owned();
        if !hosts.contains(&name) {
            hosts.push(name);
        }
    }
    hosts
}

fn names(hosts: impl IntoIterator<Item = usize>) -> Vec<String> {
    hosts.into_iter().map(host_name).collect()
}

/// The hosts a PATCH carries, whatever their order, and the hosts it should carry.
fn carried_set(patch: &Call) -> BTreeSet<String> {
    hosts_in(patch).into_iter().collect()
}

fn name_set(hosts: impl IntoIterator<Item = usize>) -> BTreeSet<String> {
    hosts.into_iter().map(host_name).collect()
}

fn good(i: usize) -> Option<String> {
    Some(format!("good {}\n", address(i)))
}

fn dnserr() -> Option<String> {
    Some("dnserr\n".to_owned())
}

/// The filter on one worker, the fake PowerDNS answering reads and holding writes, and the
/// update streams by host.
struct Rig {
    host: Host,
    pdns: Arc<Mutex<FakePowerDns>>,
    streams: BTreeMap<usize, Ctx>,
}

impl Rig {
    fn new(users: usize, max_batch: usize) -> Rig {
        Rig::with(1, users, max_batch)
    }

    fn with(workers: usize, users: usize, max_batch: usize) -> Rig {
        let mut host = Host::builder(common::filter_wasm())
            .workers(workers)
            .build()
            .expect("the filter loads");
        assert!(
            host.configure(config(users, max_batch))
                .expect("configure runs"),
            "configuration refused:\n{}",
            host.log_text()
        );
        let pdns = Arc::new(Mutex::new(FakePowerDns::default()));
        let fake = pdns.clone();
        host.respond_with(move |call| {
            if call.method() != "GET" {
                return Answer::Hold;
            }
            common::fake_pdns_answer(&mut fake.lock().unwrap(), call)
        })
        .unwrap();
        Rig {
            host,
            pdns,
            streams: BTreeMap::new(),
        }
    }

    /// Host `i` asks for its new address; the stream runs until it waits for its write.
    fn update(&mut self, i: usize) {
        self.update_on(0, i);
    }

    fn update_on(&mut self, worker: usize, i: usize) {
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("u{i}:{PASSWORD}"));
        let req = Request::get(&format!(
            "/nic/update?hostname={}&myip={}",
            host_name(i),
            address(i)
        ))
        .header("authorization", &format!("Basic {credentials}"))
        .header("user-agent", "dynedge-test/1")
        .peer(PEER)
        .worker(worker);
        let ctx = self.host.request(req).expect("request runs");
        self.streams.insert(i, ctx);
    }

    fn updates(&mut self, hosts: impl IntoIterator<Item = usize>) {
        for i in hosts {
            self.update(i);
        }
    }

    /// The client of host `i` goes away.
    fn finish(&mut self, i: usize) {
        self.host.finish(self.streams[&i]).expect("stream ends");
    }

    /// PATCHes sent and not answered yet, oldest first.
    fn patches(&self) -> Vec<Call> {
        self.host
            .all_pending_calls()
            .into_iter()
            .filter(|c| c.method() == "PATCH")
            .collect()
    }

    /// The one PATCH in flight.
    fn only_patch(&self) -> Call {
        let patches = self.patches();
        assert_eq!(
            patches.len(),
            1,
            "PATCHes in flight: {:?}",
            patches.iter().map(hosts_in).collect::<Vec<_>>()
        );
        patches[0].clone()
    }

    /// The fake PowerDNS applies the PATCH and answers it.
    fn apply(&mut self, patch: &Call) {
        // The fake's lock is released before the answer: answering runs the filter, whose
        // next reads go to the same fake.
        let result = self.pdns.lock().unwrap().answer(&common::to_callout(patch));
        let CalloutResult::Response {
            status,
            headers,
            body,
        } = result
        else {
            panic!("the fake PowerDNS failed a PATCH: {result:?}");
        };
        assert_eq!(
            status,
            204,
            "the fake PowerDNS refused {:?}",
            hosts_in(patch)
        );
        let answer = Answer::Respond {
            status,
            headers,
            body,
        };
        self.host.answer_with(patch.token, answer).unwrap();
    }

    /// PowerDNS refuses the PATCH as a whole, applying nothing (as it does for an invalid
    /// record: one transaction per PATCH).
    fn refuse(&mut self, patch: &Call) {
        self.host
            .answer(
                patch.token,
                422,
                &[("content-type", "application/json")],
                r#"{"error": "refused by the fake PowerDNS"}"#,
            )
            .unwrap();
    }

    /// What the client of host `i` was told so far.
    fn reply(&self, i: usize) -> Option<String> {
        self.host.local_response(self.streams[&i]).map(|r| r.text())
    }

    fn replies(&self, hosts: impl IntoIterator<Item = usize>) -> Vec<Option<String>> {
        hosts.into_iter().map(|i| self.reply(i)).collect()
    }

    /// The A records the fake PowerDNS holds for host `i`.
    fn held(&self, i: usize) -> Vec<String> {
        self.pdns.lock().unwrap().records(&host_name(i), "A")
    }

    fn root(&self) -> Ctx {
        self.root_of(0)
    }

    fn root_of(&self, worker: usize) -> Ctx {
        self.host.root(worker).unwrap()
    }

    fn assert_no_abi_errors(&self) {
        assert!(
            self.host.abi_errors().is_empty(),
            "{:?}\n{}",
            self.host.abi_errors(),
            self.host.log_text()
        );
    }

    /// The sizes of the batches sent so far (the group commit's histogram; its flat name
    /// carries the backend label before the family name).
    fn batch_sizes(&self) -> Vec<u64> {
        self.host
            .metrics()
            .into_iter()
            .find(|m| m.name.ends_with(BATCH_HOSTS))
            .map(|m| m.samples)
            .unwrap_or_default()
    }
}

// ---- one PATCH for the updates that waited -----------------------------------------------

#[test]
fn updates_that_wait_behind_a_write_go_out_in_one_patch() {
    let mut rig = Rig::new(20, 100);
    rig.updates(0..20);
    let first = rig.only_patch();
    assert_eq!(
        hosts_in(&first),
        names([0]),
        "the first write goes out alone"
    );
    assert_eq!(first.context, rig.root(), "batches are the root's calls");
    assert_eq!(
        rig.replies(0..20),
        vec![None; 20],
        "nobody is answered before PowerDNS"
    );

    rig.apply(&first);
    assert_eq!(rig.reply(0), good(0));
    let batch = rig.only_patch();
    assert_eq!(
        carried_set(&batch),
        name_set(1..20),
        "one PATCH carries the 19 that waited"
    );
    assert_eq!(batch.context, rig.root());
    assert_eq!(
        rig.replies(1..20),
        vec![None; 19],
        "answered only with their batch"
    );

    rig.apply(&batch);
    for i in 0..20 {
        assert_eq!(rig.reply(i), good(i), "host {i}");
        assert_eq!(
            rig.held(i),
            vec![address(i)],
            "host {i}: DNS matches the reply"
        );
    }
    assert!(rig.patches().is_empty());
    assert_eq!(rig.batch_sizes(), vec![1, 19]);
    rig.assert_no_abi_errors();
}

#[test]
fn updates_that_waited_max_wait_ms_go_out_beside_the_write_in_flight() {
    let mut rig = Rig::new(3, 100);
    rig.updates(0..2);
    let first = rig.only_patch();
    rig.host
        .advance_clock(Duration::from_millis(MAX_WAIT_MS))
        .unwrap();
    assert_eq!(
        rig.only_patch(),
        first,
        "the wait is checked on traffic, not by a timer"
    );

    rig.update(2);
    let patches = rig.patches();
    let carried: Vec<Vec<String>> = patches.iter().map(hosts_in).collect();
    assert_eq!(carried, vec![names([0]), names([1, 2])]);
    assert!(patches.iter().all(|p| p.context == rig.root()));
    // The escaped batch is answered first: nothing ties it to the one it overtook.
    rig.apply(&patches[1]);
    assert_eq!(rig.replies(0..3), vec![None, good(1), good(2)]);
    rig.apply(&patches[0]);
    assert_eq!(rig.reply(0), good(0));
    rig.assert_no_abi_errors();
}

// ---- a batch of unknown fate ---------------------------------------------------------------

/// Host 0's write goes out alone and succeeds; hosts 1..=9 then go out together and their
/// PATCH meets `end`; hosts 10..=19, which waited behind it, go out next.
fn unknown_fate_fails_its_whole_batch(end: impl FnOnce(&mut Rig, &Call)) {
    let mut rig = Rig::new(20, 100);
    rig.update(0);
    rig.updates(1..=9);
    let first = rig.only_patch();
    rig.apply(&first);
    assert_eq!(rig.reply(0), good(0));
    let doomed = rig.only_patch();
    assert_eq!(carried_set(&doomed), name_set(1..=9));
    rig.updates(10..20);

    end(&mut rig, &doomed);
    assert_eq!(
        rig.replies(1..=9),
        vec![dnserr(); 9],
        "every host of the batch, none told good"
    );
    for i in 1..=9 {
        assert!(rig.held(i).is_empty(), "host {i} was never applied");
    }

    let later = rig.only_patch();
    assert_eq!(
        carried_set(&later),
        name_set(10..20),
        "the next batch carries only the later hosts"
    );
    rig.apply(&later);
    for i in 10..20 {
        assert_eq!(rig.reply(i), good(i), "host {i} of the later batch");
        assert_eq!(rig.held(i), vec![address(i)]);
    }
    rig.assert_no_abi_errors();
}

#[test]
fn a_batch_that_times_out_fails_every_host_in_it() {
    unknown_fate_fails_its_whole_batch(|rig, patch| {
        let timeout = Duration::from_millis(u64::from(patch.timeout_ms));
        rig.host
            .advance_clock(timeout - Duration::from_millis(1))
            .unwrap();
        assert_eq!(rig.reply(1), None, "not before the backend's timeout");
        rig.host.advance_clock(Duration::from_millis(1)).unwrap();
    });
}

#[test]
fn a_batch_whose_connection_fails_fails_every_host_in_it() {
    unknown_fate_fails_its_whole_batch(|rig, patch| rig.host.fail(patch.token).unwrap());
}

// ---- a refusal pinned on one host ----------------------------------------------------------

#[test]
fn a_refused_batch_is_split_until_only_the_guilty_host_fails() {
    const GUILTY: usize = 7;
    let mut rig = Rig::new(20, 100);
    rig.updates(0..20);
    let first = rig.only_patch();
    rig.apply(&first);
    let mut sent = Vec::new();
    while let Some(patch) = rig.patches().into_iter().next() {
        let hosts = hosts_in(&patch);
        if hosts.contains(&host_name(GUILTY)) {
            rig.refuse(&patch);
        } else {
            rig.apply(&patch);
        }
        sent.push(hosts);
    }
    assert_eq!(
        sent[0].len(),
        19,
        "the 19 that waited went out together first"
    );
    assert_eq!(
        sent.last(),
        Some(&names([GUILTY])),
        "the refusal was pinned on the guilty host alone"
    );
    assert!(sent.len() > 2, "the batch was split: {sent:?}");
    for i in (0..20).filter(|i| *i != GUILTY) {
        assert_eq!(rig.reply(i), good(i), "neighbour {i}");
        assert_eq!(rig.held(i), vec![address(i)]);
    }
    assert_eq!(rig.reply(GUILTY), dnserr());
    assert!(rig.held(GUILTY).is_empty());
    rig.assert_no_abi_errors();
}

#[test]
fn each_worker_commits_the_updates_of_its_own_streams() {
    let mut rig = Rig::with(2, 6, 100);
    for i in 0..6 {
        rig.update_on(i % 2, i);
    }
    let firsts = rig.patches();
    assert_eq!(firsts.len(), 2, "one write in flight per VM");
    for (worker, patch) in firsts.iter().enumerate() {
        assert_eq!(patch.worker, worker);
        assert_eq!(
            patch.context,
            rig.root_of(worker),
            "sent by its own VM's root"
        );
        assert_eq!(hosts_in(patch), names([worker]));
    }
    for patch in &firsts {
        rig.apply(patch);
    }
    let batches = rig.patches();
    let carried: Vec<Vec<String>> = batches.iter().map(hosts_in).collect();
    assert_eq!(carried, vec![names([2, 4]), names([3, 5])]);
    for patch in &batches {
        rig.apply(patch);
    }
    for i in 0..6 {
        assert_eq!(rig.reply(i), good(i), "host {i}");
    }
    rig.assert_no_abi_errors();
}

// ---- clients that go away -------------------------------------------------------------------

#[test]
fn a_client_gone_before_its_write_is_sent_is_forgotten() {
    let mut rig = Rig::new(6, 100);
    rig.updates(0..6);
    let first = rig.only_patch();
    rig.finish(3);

    rig.apply(&first);
    let batch = rig.only_patch();
    assert_eq!(
        carried_set(&batch),
        name_set([1, 2, 4, 5]),
        "host 3's write is not sent"
    );
    rig.apply(&batch);
    for i in [0, 1, 2, 4, 5] {
        assert_eq!(rig.reply(i), good(i), "host {i}");
    }
    assert_eq!(rig.reply(3), None);
    assert!(rig.held(3).is_empty());
    assert!(rig.patches().is_empty());
    rig.assert_no_abi_errors();
}

#[test]
fn a_batch_outlives_the_stream_whose_write_formed_it() {
    let mut rig = Rig::new(6, 100);
    rig.update(0);
    let first = rig.only_patch();
    assert_eq!(first.context, rig.root(), "not the call of host 0's stream");
    rig.updates(1..6);

    // Envoy cancels the calls of a stream that ends; the batch is not one of them.
    rig.finish(0);
    assert_eq!(rig.only_patch(), first, "the batch is still in flight");
    rig.apply(&first);
    assert_eq!(rig.held(0), vec![address(0)]);

    let batch = rig.only_patch();
    assert_eq!(carried_set(&batch), name_set(1..6));
    rig.apply(&batch);
    for i in 1..6 {
        assert_eq!(rig.reply(i), good(i), "host {i}");
    }
    rig.assert_no_abi_errors();
}

#[test]
fn a_batch_in_flight_is_answered_as_a_whole_when_one_of_its_clients_goes_away() {
    let mut rig = Rig::new(6, 100);
    rig.updates(0..6);
    let first = rig.only_patch();
    rig.apply(&first);
    let batch = rig.only_patch();
    assert_eq!(carried_set(&batch), name_set(1..6));

    rig.finish(3);
    assert_eq!(rig.only_patch(), batch, "the batch is still in flight");
    rig.apply(&batch);
    for i in [1, 2, 4, 5] {
        assert_eq!(rig.reply(i), good(i), "host {i}");
    }
    assert_eq!(rig.reply(3), None);
    assert_eq!(rig.held(3), vec![address(3)], "applied with its batch");
    rig.assert_no_abi_errors();
}

// ---- group commit off -----------------------------------------------------------------------

#[test]
fn with_max_batch_1_every_update_is_its_own_patch_sent_at_once() {
    let mut rig = Rig::new(5, 1);
    rig.updates(0..5);
    let patches = rig.patches();
    let carried: Vec<Vec<String>> = patches.iter().map(hosts_in).collect();
    assert_eq!(
        carried,
        (0..5).map(|i| names([i])).collect::<Vec<_>>(),
        "five PATCHes in flight at once, one host each"
    );
    for patch in &patches {
        rig.apply(patch);
    }
    for i in 0..5 {
        assert_eq!(rig.reply(i), good(i), "host {i}");
        assert_eq!(rig.held(i), vec![address(i)]);
    }
    assert_eq!(rig.batch_sizes(), vec![1; 5]);
    rig.assert_no_abi_errors();
}
