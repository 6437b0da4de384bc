//! Test support: a native driver that runs [`Exchange`] against [`MemoryKv`] and a scripted
//! PowerDNS **fake** (`FakePdns`). The fake answers the core's callouts like the PowerDNS HTTP API
//! (GET zone with `rrset_name`/`rrset_type`, PATCH with REPLACE/DELETE rrsets) from an in-memory
//! record table; it stands in where a unit test cannot start the real server. The real server is
//! exercised by the end-to-end suites.

use std::collections::BTreeMap;
use std::net::IpAddr;

use base64::Engine;
use serde_json::{json, Value};

use crate::backends::{Callout, CalloutResult};
use crate::config::Config;
use crate::exchange::{Env, Exchange, Outcome, Step};
use crate::kv::MemoryKv;
use crate::request::Request;

pub const TOKEN: &str = "dynedge_test_demodemodemodemodemodemodemodemo";

/// What the fake does with the next callouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Every call fails at the transport level (timeout/reset).
    Unreachable,
    /// Every PATCH gets a 422.
    RejectWrites,
}

#[derive(Debug)]
pub struct FakePdns {
    /// (name without dot, type) → contents in PowerDNS presentation form.
    pub records: BTreeMap<(String, String), Vec<String>>,
    pub fault: Fault,
    pub reads: usize,
    pub writes: usize,
    pub bodies: Vec<Value>,
}

impl Default for FakePdns {
    fn default() -> Self {
        FakePdns {
            records: BTreeMap::new(),
            fault: Fault::None,
            reads: 0,
            writes: 0,
            bodies: vec![],
        }
    }
}

impl FakePdns {
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
        self.records.insert((name.into(), rtype.into()), v);
    }

    /// Values as the DNS would serve them (TXT unquoted).
    pub fn get(&self, name: &str, rtype: &str) -> Vec<String> {
        self.records
            .get(&(name.to_string(), rtype.to_string()))
            .map(|v| v.iter().map(|s| s.trim_matches('"').to_string()).collect())
            .unwrap_or_default()
    }

    pub fn calls(&self) -> usize {
        self.reads + self.writes
    }

    pub fn answer(&mut self, c: &Callout) -> CalloutResult {
        if self.fault == Fault::Unreachable {
            return CalloutResult::Failed("fake: connection reset".into());
        }
        let ok_key = c
            .headers
            .iter()
            .any(|(k, v)| k == "x-api-key" && v == "dynedge-demo-pdns-key");
        if !ok_key {
            return resp(401, b"Unauthorized".to_vec());
        }
        match c.method {
            "GET" => {
                self.reads += 1;
                let q = c.path.split_once('?').map_or("", |(_, q)| q);
                let mut name = String::new();
                let mut rtype = String::new();
                for kv in q.split('&') {
                    match kv.split_once('=') {
                        Some(("rrset_name", v)) => name = v.trim_end_matches('.').to_string(),
                        Some(("rrset_type", v)) => rtype = v.to_string(),
                        _ => {}
                    }
                }
                let recs: Vec<Value> = self
                    .records
                    .get(&(name.clone(), rtype.clone()))
                    .map(|v| {
                        v.iter()
                            .map(|c| json!({"content": c, "disabled": false}))
                            .collect()
                    })
                    .unwrap_or_default();
                let rrsets = if recs.is_empty() {
                    json!([])
                } else {
                    json!([{"name": format!("{name}."), "type": rtype, "ttl": 60, "records": recs}])
                };
                resp(
                    200,
                    json!({"name": "zone.", "rrsets": rrsets})
                        .to_string()
                        .into_bytes(),
                )
            }
            "PATCH" => {
                self.writes += 1;
                if self.fault == Fault::RejectWrites {
                    return resp(422, br#"{"error": "fake: rejected"}"#.to_vec());
                }
                let Ok(body) = serde_json::from_slice::<Value>(&c.body) else {
                    return resp(400, b"bad json".to_vec());
                };
                self.bodies.push(body.clone());
                for s in body["rrsets"].as_array().cloned().unwrap_or_default() {
                    let name = s["name"]
                        .as_str()
                        .unwrap_or("")
                        .trim_end_matches('.')
                        .to_string();
                    let rtype = s["type"].as_str().unwrap_or("").to_string();
                    match s["changetype"].as_str() {
                        Some("DELETE") => {
                            self.records.remove(&(name, rtype));
                        }
                        Some("REPLACE") => {
                            let v = s["records"]
                                .as_array()
                                .cloned()
                                .unwrap_or_default()
                                .iter()
                                .map(|r| r["content"].as_str().unwrap_or("").to_string())
                                .collect();
                            self.records.insert((name, rtype), v);
                        }
                        _ => return resp(422, b"bad changetype".to_vec()),
                    }
                }
                resp(204, vec![])
            }
            _ => resp(405, vec![]),
        }
    }
}

fn resp(status: u16, body: Vec<u8>) -> CalloutResult {
    CalloutResult::Response {
        status,
        headers: vec![],
        body,
    }
}

/// Runs requests through the core like an adapter would, answering callouts with the fake.
pub struct Driver {
    pub cfg: Config,
    pub kv: MemoryKv,
    pub pdns: FakePdns,
    pub now_ms: u64,
    pub random: u64,
    /// Every fire-and-forget call the core asked for.
    pub notified: Vec<crate::webhooks::Notify>,
}

impl Driver {
    pub fn new(cfg: Config) -> Driver {
        Driver {
            cfg,
            kv: MemoryKv::default(),
            pdns: FakePdns::default(),
            now_ms: 1_735_732_800_000,
            random: 7,
            notified: vec![],
        }
    }

    pub fn demo() -> Driver {
        Driver::new(crate::config::tests::demo())
    }

    pub fn send(&mut self, req: Request) -> Outcome {
        self.random = self
            .random
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1);
        let body = std::mem::take(&mut { req.body.clone() });
        let has_body = !body.is_empty();
        let mut req = req;
        req.body = vec![];
        let env = Env {
            now_ms: self.now_ms,
            random: self.random,
            kv: &self.kv,
        };
        let (mut ex, mut step) = Exchange::start(&self.cfg, req, !has_body, &env);
        loop {
            let env = Env {
                now_ms: self.now_ms,
                random: self.random,
                kv: &self.kv,
            };
            step = match step {
                Step::Pass => panic!("request was not routed to dynedge"),
                Step::NeedBody { .. } => ex.on_body(&self.cfg, body.clone(), &env),
                Step::Call(calls) => {
                    let mut last = Step::Wait;
                    for (id, c) in calls {
                        let r = self.pdns.answer(&c);
                        last = ex.on_callout(id, r, &env);
                    }
                    last
                }
                Step::Wait => panic!("exchange waits with nothing outstanding"),
                Step::Done(o) => {
                    self.kv.apply(&o.writes);
                    self.notified.extend(o.notify.iter().cloned());
                    return o;
                }
            };
        }
    }
}

pub fn get(path: &str) -> Request {
    Request {
        method: "GET".into(),
        path: path.into(),
        headers: vec![("user-agent".into(), "test/1.0".into())],
        body: vec![],
        peer: Some("192.0.2.55".parse().unwrap()),
    }
}

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
    fn header(self, k: &str, v: &str) -> Request;
    fn bearer(self, token: &str) -> Request;
    fn basic(self, user: &str, password: &str) -> Request;
    fn from(self, peer: &str) -> Request;
}

impl RequestExt for Request {
    fn header(mut self, k: &str, v: &str) -> Request {
        self.headers.push((k.into(), v.into()));
        self
    }
    fn bearer(self, token: &str) -> Request {
        self.header("authorization", &format!("Bearer {token}"))
    }
    fn basic(self, user: &str, password: &str) -> Request {
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.header("authorization", &format!("Basic {b}"))
    }
    fn from(mut self, peer: &str) -> Request {
        self.peer = Some(peer.parse::<IpAddr>().unwrap());
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

pub fn json_body(o: &Outcome) -> Value {
    serde_json::from_str(&body(o)).unwrap_or_else(|e| panic!("not JSON ({e}): {}", body(o)))
}

pub fn header<'a>(o: &'a Outcome, name: &str) -> Option<&'a str> {
    o.reply.as_ref().and_then(|r| r.header(name))
}
