//! A native driver for the exchange, for tests in every crate (feature `testing`).
//!
//! `FakePowerDns` is a **fake** of the PowerDNS API (named so on purpose): it keeps RRsets in
//! memory and answers the GET/PATCH calls the PowerDNS backend makes. Real PowerDNS is used by
//! the end-to-end suites; this one makes core tests fast and lets them inject faults.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::backends::{Callout, CalloutFailure, CalloutResult, Method};
use crate::exchange::{Env, Exchange, Outcome, Step};
use crate::kv::MemoryKv;
use crate::reply::Reply;
use crate::request::Request;
use crate::webhooks::Notify;
use crate::Config;

// What tests that drive a backend or the limiter directly (against real servers, or in the test
// host) name, beyond the adapter contract.
pub use crate::backends::{BackendEnv, RrSet, RrType};
pub use crate::config::Backend;
pub use crate::limits::count_bad;
pub use crate::names::Fqdn;

/// The demo token of `examples/dynedge.json` (user `demo`, every scope).
pub const TOKEN: &str = "dynedge_test_demodemodemodemodemodemodemodemo";

/// How the fake backend behaves for the next calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    None,
    /// No response at all (Envoy: timeout, reset or refused).
    Unreachable,
    /// Every call answers with this status and body.
    Status(u16, &'static str),
    /// Reads succeed, writes fail with 500.
    WritesFail,
}

pub struct FakePowerDns {
    /// (name with trailing dot, type) → contents in PowerDNS presentation form.
    pub rrsets: BTreeMap<(String, String), Vec<String>>,
    pub fault: Fault,
}

impl Default for FakePowerDns {
    fn default() -> Self {
        FakePowerDns {
            rrsets: BTreeMap::new(),
            fault: Fault::None,
        }
    }
}

impl FakePowerDns {
    /// Seeds an RRset (`name` without the trailing dot; TXT values unquoted).
    pub fn set(&mut self, name: &str, rtype: &str, values: &[&str]) {
        let v = values
            .iter()
            .map(|s| {
                if rtype == "TXT" {
                    format!("\"{s}\"")
                } else {
                    s.to_string()
                }
            })
            .collect();
        self.rrsets
            .insert((format!("{name}."), rtype.to_string()), v);
    }

    /// The values as DNS serves them (TXT unquoted).
    pub fn get(&self, name: &str, rtype: &str) -> Vec<String> {
        self.records(name, rtype)
            .into_iter()
            .map(|v| v.trim_matches('"').to_string())
            .collect()
    }

    pub fn records(&self, name: &str, rtype: &str) -> Vec<String> {
        self.rrsets
            .get(&(format!("{name}."), rtype.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    pub fn answer(&mut self, c: &Callout) -> CalloutResult {
        let respond = |status: u16, body: Vec<u8>| CalloutResult::Response {
            status,
            headers: vec![],
            body,
        };
        match &self.fault {
            Fault::Unreachable => {
                return CalloutResult::Failed(CalloutFailure::Connection(
                    "fake: unreachable".into(),
                ))
            }
            Fault::Status(s, b) => return respond(*s, b.as_bytes().to_vec()),
            Fault::WritesFail if c.method == Method::Patch => {
                return respond(500, b"fake".to_vec())
            }
            _ => {}
        }
        match c.method {
            Method::Get => {
                let query = c.path.split_once('?').map_or("", |(_, q)| q);
                let param = |k: &str| {
                    query
                        .split('&')
                        .find_map(|p| p.strip_prefix(&format!("{k}=")))
                        .unwrap_or("")
                        .to_string()
                };
                let (name, rtype) = (param("rrset_name"), param("rrset_type"));
                let rrsets: Vec<Value> = self
                    .rrsets
                    .iter()
                    .filter(|((n, t), _)| *n == name && *t == rtype)
                    .map(|((n, t), v)| {
                        let recs: Vec<Value> = v
                            .iter()
                            .map(|c| json!({"content": c, "disabled": false}))
                            .collect();
                        json!({"name": n, "type": t, "ttl": 60, "records": recs})
                    })
                    .collect();
                respond(200, json!({"rrsets": rrsets}).to_string().into_bytes())
            }
            Method::Patch => {
                let Ok(doc) = serde_json::from_slice::<Value>(&c.body) else {
                    return respond(400, b"Bad Request".to_vec());
                };
                let rrsets = doc.get("rrsets").and_then(Value::as_array);
                for set in rrsets.cloned().unwrap_or_default() {
                    let text = |k: &str| set.get(k).and_then(Value::as_str).unwrap_or("");
                    let key = (text("name").to_string(), text("type").to_string());
                    let values: Vec<String> = set
                        .get("records")
                        .and_then(Value::as_array)
                        .map(|r| {
                            r.iter()
                                .filter_map(|x| x.get("content").and_then(Value::as_str))
                                .map(str::to_string)
                                .collect()
                        })
                        .unwrap_or_default();
                    if text("changetype") == "DELETE" || values.is_empty() {
                        self.rrsets.remove(&key);
                    } else {
                        self.rrsets.insert(key, values);
                    }
                }
                respond(204, vec![])
            }
            _ => respond(405, vec![]),
        }
    }
}

/// Runs exchanges to completion against the fake backend, with a KV and a clock it controls.
pub struct Driver {
    pub cfg: Config,
    pub kv: MemoryKv,
    pub now_ms: u64,
    pub pdns: FakePowerDns,
    /// Every callout made, in order.
    pub calls: Vec<Callout>,
    /// Every audit line logged.
    pub log: Vec<String>,
    /// Every fire-and-forget call (webhook) the core asked for.
    pub notified: Vec<Notify>,
    /// `Env::random` of the next exchange (advanced per request).
    pub random: u64,
    /// Writes are group-committed as in the adapters (one exchange at a time here).
    pub group: crate::GroupCommit<()>,
}

impl Driver {
    pub fn new(cfg: Config) -> Driver {
        Driver {
            cfg,
            kv: MemoryKv::default(),
            now_ms: 1_700_000_000_000,
            pdns: FakePowerDns::default(),
            calls: vec![],
            log: vec![],
            notified: vec![],
            random: 7,
            group: crate::GroupCommit::new(),
        }
    }

    /// The demo configuration (`examples/dynedge.json`).
    pub fn demo() -> Driver {
        match Config::from_json(include_bytes!("../../../examples/dynedge.json")) {
            Ok(cfg) => Driver::new(cfg),
            Err(e) => unreachable!("demo configuration must compile: {e}"),
        }
    }

    /// Sends one request (body included) and returns the reply; `None` means `Step::Pass`.
    pub fn send(&mut self, req: Request) -> Option<Reply> {
        self.run(req).reply
    }

    /// Backend writes (PATCH calls) made so far.
    pub fn writes(&self) -> usize {
        self.calls
            .iter()
            .filter(|c| c.method == Method::Patch)
            .count()
    }

    /// Sends one request and returns the whole outcome (reply, writes, notifications).
    pub fn run(&mut self, req: Request) -> Outcome {
        self.random = self
            .random
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let random = self.random;
        let body = req.body.clone();
        let has_body = !body.is_empty();
        let (mut ex, mut step) = {
            let env = Env {
                now_ms: self.now_ms,
                random,
                kv: &self.kv,
            };
            Exchange::start(&self.cfg, req, !has_body, &env)
        };
        let mut queue = Vec::new();
        let mut answered = Vec::new();
        loop {
            match step {
                Step::Pass => return Outcome::default(),
                Step::NeedBody { .. } => {
                    let env = Env {
                        now_ms: self.now_ms,
                        random,
                        kv: &self.kv,
                    };
                    step = ex.on_body(&self.cfg, body.clone(), &env);
                }
                Step::Call(calls) => {
                    for (id, c) in calls {
                        let r = self.pdns.answer(&c);
                        self.calls.push(c);
                        queue.push((id, r));
                    }
                    step = Step::Wait;
                }
                Step::Commit(writes) => {
                    let mut commits = self
                        .group
                        .submit(&self.cfg, (), writes, self.now_ms, random);
                    while !commits.send.is_empty() || !commits.answers.is_empty() {
                        answered.extend(commits.answers.drain(..).map(|(_, id, a)| (id, a)));
                        let mut next = crate::Commits::default();
                        for (batch, c) in commits.send.drain(..) {
                            let r = self.pdns.answer(&c);
                            self.calls.push(c);
                            let more =
                                self.group
                                    .on_result(&self.cfg, batch, r, self.now_ms, random);
                            next.send.extend(more.send);
                            next.answers.extend(more.answers);
                        }
                        commits = next;
                    }
                    step = Step::Wait;
                }
                Step::Wait => {
                    let env = Env {
                        now_ms: self.now_ms,
                        random,
                        kv: &self.kv,
                    };
                    if let Some((id, a)) = answered.pop() {
                        step = ex.on_write(id, a, &env);
                        continue;
                    }
                    let Some((id, r)) = queue.pop() else {
                        unreachable!("exchange waits with no call outstanding");
                    };
                    step = ex.on_callout(id, r, &env);
                }
                Step::Done(o) => {
                    self.kv.apply(&o.writes);
                    for c in &o.counts {
                        self.kv.count(c, self.now_ms / 1000);
                    }
                    self.log.extend(o.log.iter().cloned());
                    self.notified.extend(o.notify.iter().cloned());
                    return o;
                }
            }
        }
    }

    pub fn advance_ms(&mut self, ms: u64) {
        self.now_ms = self.now_ms.saturating_add(ms);
    }
}

/// A request as a router sends it: GET, a user agent, a peer address.
pub fn get(path: &str) -> Request {
    Request {
        method: "GET".into(),
        path: path.into(),
        headers: vec![("user-agent".into(), "dynedge-test/1".into())],
        body: vec![],
        peer: "192.0.2.200".parse().ok(),
    }
}

/// A request with a method and a (JSON) body.
pub fn request(method: &str, path: &str, body: &str) -> Request {
    let mut r = get(path);
    r.method = method.into();
    r.body = body.as_bytes().to_vec();
    if !body.is_empty() {
        r.headers
            .push(("content-type".into(), "application/json".into()));
    }
    r
}

pub trait RequestExt {
    fn header(self, name: &str, value: &str) -> Request;
    fn basic(self, user: &str, password: &str) -> Request;
    fn bearer(self, token: &str) -> Request;
    /// From this peer address.
    fn from(self, peer: &str) -> Request;
}

impl RequestExt for Request {
    fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }
    fn basic(self, user: &str, password: &str) -> Request {
        use base64::Engine;
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.header("authorization", &format!("Basic {v}"))
    }
    fn bearer(self, token: &str) -> Request {
        self.header("authorization", &format!("Bearer {token}"))
    }
    fn from(mut self, peer: &str) -> Request {
        self.peer = peer.parse().ok();
        self
    }
}

pub fn status(o: &Outcome) -> u16 {
    o.reply.as_ref().map_or(0, |r| r.status)
}

pub fn body(o: &Outcome) -> String {
    o.reply
        .as_ref()
        .map(|r| r.body_text().to_string())
        .unwrap_or_default()
}

/// The reply body as JSON (`Value::Null` if it is not JSON, so a test fails on its fields).
pub fn json_body(o: &Outcome) -> Value {
    serde_json::from_str(&body(o)).unwrap_or(Value::Null)
}

pub fn header<'a>(o: &'a Outcome, name: &str) -> Option<&'a str> {
    o.reply.as_ref().and_then(|r| r.header(name))
}
