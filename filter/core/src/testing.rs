//! A native driver for the exchange, for tests in every crate (feature `testing`).
//!
//! `FakePowerDns` is a **fake** of the PowerDNS API (named so on purpose): it keeps RRsets in
//! memory and answers the GET/PATCH calls the PowerDNS backend makes. Real PowerDNS is used by
//! the end-to-end suites; this one makes core tests fast and lets them inject faults.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::backends::{Callout, CalloutResult};
use crate::exchange::{Env, Exchange, Outcome, Step};
use crate::kv::MemoryKv;
use crate::reply::Reply;
use crate::request::Request;
use crate::Config;

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
            Fault::Unreachable => return CalloutResult::Failed("fake: unreachable".into()),
            Fault::Status(s, b) => return respond(*s, b.as_bytes().to_vec()),
            Fault::WritesFail if c.method == "PATCH" => return respond(500, b"fake".to_vec()),
            _ => {}
        }
        match c.method {
            "GET" => {
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
            "PATCH" => {
                let Ok(doc) = serde_json::from_slice::<Value>(&c.body) else {
                    return respond(400, b"Bad Request".to_vec());
                };
                for set in doc["rrsets"].as_array().cloned().unwrap_or_default() {
                    let key = (
                        set["name"].as_str().unwrap_or("").to_string(),
                        set["type"].as_str().unwrap_or("").to_string(),
                    );
                    let values: Vec<String> = set["records"]
                        .as_array()
                        .map(|r| {
                            r.iter()
                                .filter_map(|x| x["content"].as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    if set["changetype"] == "DELETE" || values.is_empty() {
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
        let body = req.body.clone();
        let has_body = !body.is_empty();
        let (mut ex, mut step) = {
            let env = Env {
                now_ms: self.now_ms,
                random: 7,
                kv: &self.kv,
            };
            Exchange::start(&self.cfg, req, !has_body, &env)
        };
        let mut queue = Vec::new();
        loop {
            match step {
                Step::Pass => return None,
                Step::NeedBody { .. } => {
                    let env = Env {
                        now_ms: self.now_ms,
                        random: 7,
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
                Step::Wait => {
                    let Some((id, r)) = queue.pop() else {
                        unreachable!("exchange waits with no call outstanding");
                    };
                    let env = Env {
                        now_ms: self.now_ms,
                        random: 7,
                        kv: &self.kv,
                    };
                    step = ex.on_callout(id, r, &env);
                }
                Step::Done(Outcome {
                    reply,
                    writes,
                    log,
                    counts,
                    ..
                }) => {
                    self.kv.apply(&writes);
                    for c in &counts {
                        self.kv.count(c, self.now_ms / 1000);
                    }
                    self.log.extend(log);
                    return reply;
                }
            }
        }
    }

    pub fn advance_ms(&mut self, ms: u64) {
        self.now_ms += ms;
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

pub trait RequestExt {
    fn header(self, name: &str, value: &str) -> Request;
    fn basic(self, user: &str, password: &str) -> Request;
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
}
