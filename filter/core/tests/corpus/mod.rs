//! The DynDNS2 scenario corpus (`dyndns2.json`) and the one loop that plays it.
//!
//! Three runners play the same scenarios: natively against the core with the fake PowerDNS
//! (`filter/core/tests/dyndns2_corpus.rs`), the built filter in the wasmtime test host
//! (`test-host/tests/dyndns2.rs`), and real Envoy (or the Pingora gateway) with a real PowerDNS
//! (`envoy/tests/dyndns2_over_envoy.rs`). Each includes this file with `#[path]`.
//!
//! A scenario starts from `examples/dynedge.json` with `office.dyn.example.test` added to
//! demo's hosts, applies its `config` edits, plays its `steps` on a fresh gateway and backend,
//! then checks the records the backend holds and, where the runner sees them, the backend calls
//! made. `skip` names the runners that cannot play it, with the reason.
//!
//! Steps: a request (`get` or `path` with `method`, `form`, `auth`, `headers`, `no_user_agent`,
//! `repeat`) with what the reply must be (`status`, `body`, `body_starts`, `body_contains`,
//! `reply_headers`, `json` by JSON pointer, `pass`: the filter lets it through); `advance_s` (the
//! clock moves); `backend` (`unreachable`, `status_500`, `not_json`, `status_401`,
//! `writes_fail`, `up`); `seed` (records put in the backend behind the filter's back).
//! `{client}` stands for the client address the gateway sees.
#![allow(dead_code)]
// Test support: failing loudly is its job, and the corpus is trusted data.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde_json::Value;

pub const CORPUS: &str = include_str!("dyndns2.json");
const DEMO: &str = include_str!("../../../../examples/dynedge.json");
pub const DEMO_PASSWORD: &str = "demo-password";

/// One request as the client sends it (lower-case header names, `user-agent` and
/// `authorization` included); the runner supplies the peer address.
pub type Http = dynedge_core::Request;

/// What the filter answered.
#[derive(Debug, Clone)]
pub enum Seen {
    /// The filter let the request through to the upstream.
    Passed,
    Reply {
        status: u16,
        /// Lower-case names.
        headers: Vec<(String, String)>,
        body: String,
    },
}

/// How the backend behaves from this step on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Up,
    /// No answer at all (refused, reset or timed out).
    Unreachable,
    Status500,
    /// `200` with a body that is not JSON.
    NotJson,
    /// `401`, as for a wrong API key.
    Status401,
    /// Reads answer, writes fail with `500`.
    WritesFail,
}

impl Backend {
    /// The fault of `dynedge_core::testing::FakePowerDns` that plays this.
    pub fn fault(self) -> dynedge_core::testing::Fault {
        use dynedge_core::testing::Fault;
        match self {
            Backend::Up => Fault::None,
            Backend::Unreachable => Fault::Unreachable,
            Backend::Status500 => Fault::Status(500, "oops"),
            Backend::NotJson => Fault::Status(200, "<html>not json"),
            Backend::Status401 => Fault::Status(401, "Unauthorized"),
            Backend::WritesFail => Fault::WritesFail,
        }
    }
}

/// One way of playing the corpus.
pub trait Runner {
    /// The key of this runner in a scenario's `skip`: `native`, `test_host` or `envoy`.
    const NAME: &'static str;
    /// The client address as the gateway sees it.
    fn client(&self) -> String;
    fn send(&mut self, req: &Http) -> Seen;
    fn advance_s(&mut self, seconds: u64);
    fn backend(&mut self, backend: Backend);
    /// Puts records in the backend (`name` without the trailing dot).
    fn seed(&mut self, name: &str, rtype: &str, values: &[String]);
    fn records(&mut self, name: &str, rtype: &str) -> Vec<String>;
    /// The methods of the backend calls made so far, where the runner sees them.
    fn calls(&self) -> Option<Vec<String>>;
}

/// One scenario of the corpus.
pub struct Scenario {
    pub name: String,
    /// Its place in the file, from 0.
    pub index: usize,
    value: Value,
}

impl Scenario {
    /// Why `runner` cannot play this scenario, if it cannot.
    pub fn skipped_by(&self, runner: &str) -> Option<&str> {
        self.value["skip"][runner].as_str()
    }

    /// The gateway configuration: the demo's, `office` added, this scenario's edits applied.
    pub fn config(&self, client: &str) -> Value {
        let mut cfg: Value = serde_json::from_str(DEMO).unwrap();
        cfg["users"][0]["hosts"]
            .as_array_mut()
            .unwrap()
            .push("office.dyn.example.test".into());
        for edit in self.value["config"].as_array().into_iter().flatten() {
            let pointer = edit[0].as_str().unwrap();
            let value = fill(&edit[1], client);
            match pointer.strip_suffix("/-") {
                Some(array) => cfg
                    .pointer_mut(array)
                    .and_then(Value::as_array_mut)
                    .unwrap_or_else(|| panic!("{}: no array at {array}", self.name))
                    .push(value),
                None => {
                    let (parent, key) = pointer.rsplit_once('/').unwrap();
                    let parent = cfg
                        .pointer_mut(parent)
                        .unwrap_or_else(|| panic!("{}: nothing at {parent}", self.name));
                    match parent {
                        Value::Array(a) => a[key.parse::<usize>().unwrap()] = value,
                        Value::Object(o) => {
                            o.insert(key.to_owned(), value);
                        }
                        _ => panic!("{}: {parent} holds no {key}", self.name),
                    }
                }
            }
        }
        cfg
    }

    /// Plays the scenario on `r` and checks every expectation.
    pub fn play(&self, r: &mut impl Runner) {
        let client = r.client();
        let steps = self.value["steps"].as_array().unwrap();
        for (i, step) in steps.iter().enumerate() {
            let at = format!("{} step {}", self.name, i + 1);
            if let Some(s) = step["advance_s"].as_u64() {
                r.advance_s(s);
            } else if let Some(b) = step["backend"].as_str() {
                r.backend(backend(b, &at));
            } else if let Some(seed) = step["seed"].as_object() {
                for (key, values) in seed {
                    let (name, rtype) = key.split_once(' ').unwrap();
                    r.seed(name, rtype, &strings(values, &client));
                }
            } else {
                let req = request(step, &at);
                for n in 0..step["repeat"].as_u64().unwrap_or(1) {
                    let seen = r.send(&req);
                    expect(step, &seen, &client, &format!("{at} (#{})", n + 1));
                }
            }
        }
        for (key, want) in self.value["records"].as_object().into_iter().flatten() {
            let (name, rtype) = key.split_once(' ').unwrap();
            let want = strings(want, &client);
            assert_eq!(r.records(name, rtype), want, "{}: records {key}", self.name);
        }
        if let (Some(want), Some(got)) = (self.value.get("calls"), r.calls()) {
            assert_eq!(got, strings(want, &client), "{}: backend calls", self.name);
        }
    }
}

/// Every scenario of the corpus, in file order.
pub fn scenarios() -> Vec<Scenario> {
    let corpus: Value = serde_json::from_str(CORPUS).unwrap();
    corpus["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(index, s)| Scenario {
            name: s["name"].as_str().unwrap().to_owned(),
            index,
            value: s.clone(),
        })
        .collect()
}

/// Plays every scenario `R` can play, `threads` at a time, each on a runner from `start`;
/// fails listing every scenario that failed. `DYNEDGE_CORPUS=name,name` plays only those.
/// Returns how many were played.
pub fn play_all<R: Runner>(threads: usize, start: impl Fn(&Scenario) -> R + Sync) -> usize {
    let only = std::env::var("DYNEDGE_CORPUS").ok();
    let all = scenarios();
    let mut names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), all.len(), "scenario names are unique");
    let todo: Vec<&Scenario> = all
        .iter()
        .filter(|s| {
            only.as_deref()
                .is_none_or(|o| o.split(',').any(|n| n == s.name))
        })
        .filter(|s| match s.skipped_by(R::NAME) {
            Some(why) => {
                eprintln!("{}: skipped by {}: {why}", s.name, R::NAME);
                false
            }
            None => true,
        })
        .collect();
    let next = AtomicUsize::new(0);
    let failed = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                let Some(s) = todo.get(next.fetch_add(1, Ordering::SeqCst)) else {
                    return;
                };
                let played = catch_unwind(AssertUnwindSafe(|| s.play(&mut start(s))));
                if let Err(e) = played {
                    let why = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    failed.lock().unwrap().push(format!("{}: {why}", s.name));
                }
            });
        }
    });
    let failed = failed.into_inner().unwrap();
    assert!(
        failed.is_empty(),
        "{} of {} scenarios failed on {}:\n{}",
        failed.len(),
        todo.len(),
        R::NAME,
        failed.join("\n")
    );
    assert!(!todo.is_empty(), "no scenario played");
    eprintln!(
        "{}: {} of {} scenarios played",
        R::NAME,
        todo.len(),
        all.len()
    );
    todo.len()
}

/// Fails naming every scenario marked skipped for `runner` (for a runner that must play all).
pub fn assert_none_skipped(runner: &str) {
    let skipped: Vec<String> = scenarios()
        .into_iter()
        .filter(|s| s.skipped_by(runner).is_some())
        .map(|s| s.name)
        .collect();
    assert!(
        skipped.is_empty(),
        "{runner} must play every scenario: {skipped:?}"
    );
}

fn backend(name: &str, at: &str) -> Backend {
    match name {
        "up" => Backend::Up,
        "unreachable" => Backend::Unreachable,
        "status_500" => Backend::Status500,
        "not_json" => Backend::NotJson,
        "status_401" => Backend::Status401,
        "writes_fail" => Backend::WritesFail,
        _ => panic!("{at}: unknown backend state {name:?}"),
    }
}

fn request(step: &Value, at: &str) -> Http {
    let (method, path) = match (step["get"].as_str(), step["path"].as_str()) {
        (Some(p), None) => ("GET", p),
        (None, Some(p)) => (step["method"].as_str().unwrap_or("GET"), p),
        _ => panic!("{at}: a request step has `get` or `path`"),
    };
    let mut headers = Vec::new();
    if step["no_user_agent"] != true {
        headers.push(("user-agent".to_owned(), "dynedge-test/1".to_owned()));
    }
    let auth = step["auth"].as_str().unwrap_or("demo");
    let authorization = match auth.split_once(' ') {
        _ if auth == "none" => None,
        _ if auth == "demo" => Some(basic("demo", DEMO_PASSWORD)),
        Some(("basic", pair)) => {
            let (user, password) = pair.split_once(':').unwrap();
            Some(basic(user, password))
        }
        Some(("bearer", token)) => Some(format!("Bearer {token}")),
        _ => panic!("{at}: auth is none, demo, `basic USER:PASS` or `bearer TOKEN`"),
    };
    if let Some(a) = authorization {
        headers.push(("authorization".to_owned(), a));
    }
    for h in step["headers"].as_array().into_iter().flatten() {
        let name = h[0].as_str().unwrap().to_ascii_lowercase();
        headers.push((name, h[1].as_str().unwrap().to_owned()));
    }
    let (method, body) = match step["form"].as_str() {
        Some(form) => {
            headers.push((
                "content-type".to_owned(),
                "application/x-www-form-urlencoded".to_owned(),
            ));
            ("POST", form.as_bytes().to_vec())
        }
        None => (method, Vec::new()),
    };
    Http {
        method: method.to_owned(),
        path: path.to_owned(),
        headers,
        body,
        peer: None,
    }
}

fn expect(step: &Value, seen: &Seen, client: &str, at: &str) {
    let (status, headers, body) = match seen {
        Seen::Passed => {
            assert_eq!(step["pass"], true, "{at}: the filter let it through");
            return;
        }
        Seen::Reply {
            status,
            headers,
            body,
        } => (*status, headers, body.as_str()),
    };
    assert_ne!(step["pass"], true, "{at}: answered {status} {body:?}");
    if let Some(want) = step["status"].as_u64() {
        assert_eq!(u64::from(status), want, "{at}: status ({body:?})");
    }
    if let Some(want) = step["body"].as_str() {
        assert_eq!(body, fill_str(want, client), "{at}: body");
    }
    if let Some(want) = step["body_starts"].as_str() {
        assert!(
            body.starts_with(want),
            "{at}: {body:?} starts with {want:?}"
        );
    }
    for want in step["body_contains"].as_array().into_iter().flatten() {
        let want = want.as_str().unwrap();
        assert!(body.contains(want), "{at}: {body:?} contains {want:?}");
    }
    for (name, want) in step["reply_headers"].as_object().into_iter().flatten() {
        assert_eq!(find(headers, name), want.as_str(), "{at}: header {name}");
    }
    for (pointer, want) in step["json"].as_object().into_iter().flatten() {
        let got: Value = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("{at}: {body:?} is not JSON: {e}"));
        assert_eq!(got.pointer(pointer), Some(want), "{at}: JSON {pointer}");
    }
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {v}")
}

fn find<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn fill_str(text: &str, client: &str) -> String {
    text.replace("{client}", client)
}

fn fill(v: &Value, client: &str) -> Value {
    serde_json::from_str(&fill_str(&v.to_string(), client)).unwrap()
}

fn strings(v: &Value, client: &str) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| fill_str(s.as_str().unwrap(), client))
        .collect()
}
