//! The model of an update job: its hosts, their targets and edits, and the read-then-write flow
//! that turns them into backend callouts and finally into one [`HostOutcome`] per host.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::auth::Identity;
use crate::backends::{
    BackendEnv, BackendError, Callout, CalloutResult, RrSet, RrType, WriteCheck,
};
use crate::config::Config;
use crate::exchange::{CalloutId, Env, Outcome};
use crate::group_commit::{WriteAnswer, ZoneWrite};
use crate::kv::{keys, KvWrite};
use crate::names::Fqdn;
use crate::reply::Code;
use crate::request::Request;
use crate::{hoststate, metrics, webhooks};

mod model;
pub(crate) use model::{same_values, Edit, HostJob, HostOutcome, Refusal, Target};

/// Where a job stands after an input.
#[must_use]
pub enum Progress {
    /// Perform these calls and feed each answer to [`Job::on_callout`].
    Call(Vec<(CalloutId, Callout)>),
    /// Hand these writes to the group commit and feed each answer to [`Job::on_write`].
    Commit(Vec<(CalloutId, ZoneWrite)>),
    /// Answers are still outstanding.
    Wait,
    /// Every host is decided: the outcome (its reply still to render) and each host's line.
    Done(Outcome, Vec<HostOutcome>),
}

type Calls = Vec<(CalloutId, Callout)>;
type Commits = Vec<(CalloutId, ZoneWrite)>;

enum Pending {
    Read {
        host: usize,
        rtype: RrType,
    },
    Write {
        host: usize,
        check: WriteCheck,
    },
    /// Handed to the group commit, which judges the answer itself.
    Commit {
        host: usize,
    },
}

enum Phase {
    Reading,
    Writing,
}

/// Where the hosts' records live, and so how a job reads and writes them.
enum HostStore {
    /// The configured backend, read (through the record cache) and written through its API.
    Backend(BackendFlow),
    /// The etcd store's protocol, which replaces the read/write phases (`store::etcd`).
    Etcd {
        flow: crate::store::etcd::HostFlow,
        started: bool,
    },
}

/// The read-then-write phases against the configured backend.
struct BackendFlow {
    pending: HashMap<CalloutId, Pending>,
    next_id: CalloutId,
    phase: Phase,
    record_cache_ttl_ms: u64,
    /// Writes go through the group commit (`Progress::Commit`) rather than as calls.
    group_commit: bool,
}

/// One audit log line (JSON, keys in alphabetical order). A struct, not a `json!` map: it is
/// built for every update, nochg included, and the map was a tenth of the nochg path's cost.
#[derive(serde::Serialize)]
struct AuditLine<'a> {
    backend_ms: u64,
    dialect: &'a str,
    error: Option<&'a str>,
    event: &'a str,
    host: &'a str,
    new: Option<Vec<&'a String>>,
    old: Vec<&'a String>,
    result: &'a str,
    source: Option<IpAddr>,
    token_id: Option<&'a str>,
    ts_ms: u64,
    user: &'a str,
    user_agent: &'a str,
}

/// An authenticated update of one or more hosts.
pub struct Job {
    pub dialect: &'static str,
    pub identity: Identity,
    pub client: Option<IpAddr>,
    pub user_agent: String,
    pub hosts: Vec<HostJob>,
    pub writes: Vec<KvWrite>,
    pub counts: Vec<crate::limits::KvCount>,
    /// Record successful updates as signs of life for expiry (off for the expiry sweep itself).
    pub track_seen: bool,
    webhooks: Option<webhooks::WebhookSettings>,
    started_ms: u64,
    store: HostStore,
    /// `Retry-After` of a 429 for a host over its update limit (`rate_limits.good_per_host`).
    host_retry_after_s: u64,
}

impl Job {
    /// A job for an identity that passed the guard pipeline: `auth` can only come from
    /// `pipeline::authorize` (or the expiry sweep), and admitting the hosts applies ownership,
    /// de-duplication and the host limits to every target (`pipeline::Authorized::admit`).
    pub fn new(
        cfg: &Config,
        dialect: &'static str,
        auth: crate::pipeline::Authorized,
        req: &Request,
        mut hosts: Vec<HostJob>,
        env: &Env,
    ) -> Box<Job> {
        let admitted = auth.admit(cfg, &mut hosts, env);
        let store = match cfg.store.etcd() {
            Some(s) => HostStore::Etcd {
                flow: crate::store::etcd::HostFlow::new(s.clone(), hosts.len(), env.random),
                started: false,
            },
            None => HostStore::Backend(BackendFlow {
                pending: HashMap::new(),
                next_id: 0,
                phase: Phase::Reading,
                record_cache_ttl_ms: cfg.record_cache_ttl_s.saturating_mul(1000),
                group_commit: true,
            }),
        };
        Box::new(Job {
            store,
            dialect,
            identity: admitted.identity,
            client: req.client_ip(&cfg.trusted_proxies),
            user_agent: req
                .header("user-agent")
                .unwrap_or("")
                .chars()
                .take(200)
                .collect(),
            hosts,
            writes: admitted.writes,
            counts: admitted.counts,
            // Only the expiry sweep reads `seen`: without a zone that expires, every nochg
            // would write it for nothing (one shared-data write per request in Envoy).
            track_seen: cfg.zones.iter().any(|z| z.expiry_ttl_s > 0),
            webhooks: cfg.webhooks.clone(),
            started_ms: env.now_ms,
            host_retry_after_s: cfg.rate_limits.good_per_host.window_s,
        })
    }

    /// Reads what the KV does not know fresh, then writes what differs, then replies.
    /// `Retry-After` for a 429 that a host over its update limit gets (see `exchange::finish_reply`).
    pub(crate) fn host_retry_after_s(&self) -> u64 {
        self.host_retry_after_s
    }

    pub(crate) fn advance(&mut self, env: &Env) -> Progress {
        let done = match &mut self.store {
            HostStore::Etcd { flow, started } => {
                if !*started {
                    *started = true;
                    let calls = flow.start(&mut self.hosts, env);
                    if !calls.is_empty() {
                        return Progress::Call(calls);
                    }
                }
                flow.is_done()
            }
            HostStore::Backend(b) => {
                let (calls, commits) = b.advance(&mut self.hosts, env);
                if !calls.is_empty() {
                    return Progress::Call(calls);
                }
                if !commits.is_empty() {
                    return Progress::Commit(commits);
                }
                b.pending.is_empty()
            }
        };
        if done {
            self.done(env)
        } else {
            Progress::Wait
        }
    }

    pub(crate) fn on_callout(
        &mut self,
        id: CalloutId,
        result: CalloutResult,
        env: &Env,
    ) -> Progress {
        match &mut self.store {
            HostStore::Etcd { flow, .. } => {
                let calls = flow.on_callout(id, result, &mut self.hosts, env);
                if !calls.is_empty() {
                    return Progress::Call(calls);
                }
                if flow.is_done() {
                    self.done(env)
                } else {
                    Progress::Wait
                }
            }
            HostStore::Backend(b) => {
                if !b.on_callout(id, &result, &mut self.hosts, &mut self.writes, env)
                    || !b.pending.is_empty()
                {
                    // An unknown id, or other answers still outstanding.
                    return Progress::Wait;
                }
                self.advance(env)
            }
        }
    }

    /// A group-committed write's answer (after `Progress::Commit`).
    pub(crate) fn on_write(&mut self, id: CalloutId, answer: WriteAnswer, env: &Env) -> Progress {
        let HostStore::Backend(b) = &mut self.store else {
            return Progress::Wait;
        };
        if !matches!(b.pending.get(&id), Some(Pending::Commit { .. })) {
            return Progress::Wait;
        }
        let Some(Pending::Commit { host }) = b.pending.remove(&id) else {
            return Progress::Wait;
        };
        if let Some(h) = self.hosts.get_mut(host) {
            written(h, answer.0, &mut self.writes, env);
        }
        if !b.pending.is_empty() {
            return Progress::Wait;
        }
        self.advance(env)
    }

    /// Sends this job's writes as calls of their own (the expiry sweep, run outside any
    /// request, does not wait for a zone's batch).
    pub(crate) fn without_group_commit(&mut self) {
        if let HostStore::Backend(b) = &mut self.store {
            b.group_commit = false;
        }
    }

    /// Every host still waiting on a call fails (`dnserr` in the dialect's reply).
    pub(crate) fn abort(&mut self, env: &Env) -> (Outcome, Vec<HostOutcome>) {
        if let HostStore::Backend(b) = &mut self.store {
            b.pending.clear();
        }
        for h in &mut self.hosts {
            if h.code.is_none() && h.mirror_of.is_none() {
                h.fail(BackendError::NoAnswer);
            }
        }
        self.finish(env)
    }

    fn done(&mut self, env: &Env) -> Progress {
        let (outcome, hosts) = self.finish(env);
        Progress::Done(outcome, hosts)
    }

    /// Whether this job called the backend (only such jobs measure its latency).
    fn called_backend(&self) -> bool {
        matches!(&self.store, HostStore::Backend(b) if b.next_id > 0)
    }

    fn finish(&mut self, env: &Env) -> (Outcome, Vec<HostOutcome>) {
        let elapsed = env.now_ms.saturating_sub(self.started_ms);
        let mut log = Vec::new();
        let mut counters = Vec::new();
        let mut outcomes = Vec::new();
        let mut changes = Vec::new();
        for h in &self.hosts {
            if let Some(first) = h.mirror_of {
                // A repeat: answered as the host it repeats, without a second write or log line.
                let mut o = outcomes.get(first).cloned().unwrap_or_else(|| HostOutcome {
                    host: String::new(),
                    code: Code::Emergency,
                    addrs: vec![],
                    previous: vec![],
                    current: vec![],
                    refusal: None,
                });
                o.host = h.label.clone();
                outcomes.push(o);
                continue;
            }
            let code = h.code.unwrap_or(Code::Emergency);
            let (new, addrs, previous, current) = match &h.target {
                Some(t) => {
                    // Nothing planned (decided before any read): report what was asked for.
                    let planned = if h.desired.is_empty() {
                        &t.want
                    } else {
                        &h.desired
                    };
                    let shown = if code.is_success() { planned } else { &t.want };
                    let new: Vec<&String> = shown.iter().flat_map(|(_, v)| v).collect();
                    let addrs = shown
                        .iter()
                        .filter(|(r, _)| *r != RrType::Txt)
                        .flat_map(|(_, v)| v.iter().filter_map(|s| s.parse().ok()))
                        .collect();
                    let previous: Vec<(RrType, Vec<String>)> = t
                        .types()
                        .into_iter()
                        .filter_map(|r| h.old.get(&r).map(|v| (r, v.clone())))
                        .collect();
                    let current = if code.is_success() {
                        planned.clone()
                    } else {
                        vec![]
                    };
                    (Some(new), addrs, previous, current)
                }
                None => (None, vec![], vec![], vec![]),
            };
            let line = AuditLine {
                backend_ms: elapsed,
                dialect: self.dialect,
                error: h.error.as_deref(),
                event: "dynedge.update",
                host: &h.label,
                new,
                old: h.old.values().flatten().collect(),
                result: code.as_str(),
                source: self.client,
                token_id: self.identity.token_id.as_deref(),
                ts_ms: env.now_ms,
                user: &self.identity.user,
                user_agent: &self.user_agent,
            };
            log.push(serde_json::to_string(&line).unwrap_or_default());
            let backend = h.target.as_ref().map_or("none", |t| t.backend.kind());
            counters.extend(metrics::host_result(self.dialect, code, backend));
            if let (true, true, Some(t)) = (self.track_seen, code.is_success(), &h.target) {
                self.writes.push(KvWrite::put(
                    keys::seen(t.name.as_str()),
                    env.now_s().to_string().into_bytes(),
                ));
            }
            let outcome = HostOutcome {
                host: h.label.clone(),
                code,
                addrs,
                previous,
                current,
                refusal: h.refusal.clone(),
            };
            if let (Code::Good, Some(t)) = (code, &h.target) {
                if let Some(change) = hoststate::AddrChange::of(
                    &outcome.host,
                    &outcome.previous,
                    &outcome.current,
                    t.ttl,
                ) {
                    self.writes.push(hoststate::touch(env, &t.name, t.ttl));
                    changes.push(change);
                }
            }
            outcomes.push(outcome);
        }
        // Only exchanges that called the backend measure its latency.
        let samples = match self.hosts.iter().find_map(|h| h.target.as_ref()) {
            Some(t) if self.called_backend() => {
                vec![(
                    metrics::backend_latency(self.dialect, t.backend.kind()),
                    elapsed,
                )]
            }
            _ => vec![],
        };
        let notify = webhooks::deliveries(&self.webhooks, env, &self.identity.user, &changes);
        counters.extend(notify.iter().map(|_| metrics::webhooks_queued()));
        let outcome = Outcome {
            reply: None,
            writes: std::mem::take(&mut self.writes),
            log,
            counters,
            notify,
            counts: std::mem::take(&mut self.counts),
            samples,
        };
        (outcome, outcomes)
    }
}

impl BackendFlow {
    fn call(&mut self, p: Pending, c: Callout, out: &mut Vec<(CalloutId, Callout)>) {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.pending.insert(id, p);
        out.push((id, c));
    }

    /// The next calls: reads of what the KV does not know fresh, then writes of what differs.
    /// None once every host is decided or waiting.
    /// Writes are calls of their own, or handed to the group commit (the second list).
    fn advance(&mut self, hosts: &mut [HostJob], env: &Env) -> (Calls, Commits) {
        let mut calls = Vec::new();
        let mut commits = Vec::new();
        if !matches!(self.phase, Phase::Reading) {
            return (calls, commits);
        }
        for (i, h) in hosts.iter_mut().enumerate() {
            let Some(t) = h.target.as_ref().filter(|_| h.code.is_none()) else {
                continue;
            };
            let mut reads = Vec::new();
            for rtype in t.types() {
                if h.old.contains_key(&rtype) {
                    continue; // read already (the first pass); don't read again
                }
                match cached(env, &t.name, rtype, self.record_cache_ttl_ms) {
                    Some(values) => {
                        h.old.insert(rtype, values);
                    }
                    None => reads.push((rtype, t.backend.read(&t.zone, &t.name, rtype))),
                }
            }
            for (rtype, c) in reads {
                self.call(Pending::Read { host: i, rtype }, c, &mut calls);
            }
        }
        if !calls.is_empty() {
            return (calls, commits);
        }
        self.phase = Phase::Writing;
        let benv = BackendEnv {
            now_s: env.now_s(),
            random: env.random,
        };
        for (i, h) in hosts.iter_mut().enumerate() {
            let Some(t) = h.target.as_ref().filter(|_| h.code.is_none()) else {
                continue;
            };
            let desired = match t.desired(&h.old) {
                Ok(d) => d,
                Err(r) => {
                    h.refuse(r);
                    continue;
                }
            };
            let sets: Vec<RrSet> = desired
                .iter()
                .filter(|(rtype, values)| {
                    !same_values(*rtype, h.old.get(rtype).map_or(&[][..], |v| v), values)
                })
                .map(|(rtype, values)| RrSet {
                    name: t.name.clone(),
                    rtype: *rtype,
                    ttl: t.ttl,
                    values: values.clone(),
                })
                .collect();
            h.desired = desired;
            if sets.is_empty() {
                h.code = Some(Code::Nochg);
                continue;
            }
            if self.group_commit {
                let id = self.next_id;
                self.next_id = self.next_id.wrapping_add(1);
                self.pending.insert(id, Pending::Commit { host: i });
                commits.push((
                    id,
                    ZoneWrite {
                        backend: t.backend.clone(),
                        zone: t.zone.clone(),
                        sets,
                    },
                ));
                continue;
            }
            match t.backend.write(&t.zone, &sets, benv) {
                Ok((c, check)) => self.call(Pending::Write { host: i, check }, c, &mut calls),
                Err(e) => h.fail(e),
            }
        }
        (calls, commits)
    }

    /// One answer; false when the id is not (or no longer) ours.
    fn on_callout(
        &mut self,
        id: CalloutId,
        result: &CalloutResult,
        hosts: &mut [HostJob],
        writes: &mut Vec<KvWrite>,
        env: &Env,
    ) -> bool {
        if matches!(self.pending.get(&id), Some(Pending::Commit { .. })) {
            return false; // answered through `Job::on_write` only
        }
        let Some(p) = self.pending.remove(&id) else {
            return false;
        };
        match p {
            Pending::Read { host, rtype } => {
                let Some(h) = hosts.get_mut(host) else {
                    return true;
                };
                if let Some(t) = &h.target {
                    match t.backend.parse_read(&t.name, rtype, result) {
                        Ok(values) => {
                            writes.push(cache_put(&t.name, rtype, &values, env));
                            h.old.insert(rtype, values);
                        }
                        Err(e) => h.fail(e),
                    }
                }
            }
            Pending::Write { host, check } => {
                let Some(h) = hosts.get_mut(host) else {
                    return true;
                };
                if let Some(t) = &h.target {
                    let verdict = t.backend.check_write(&check, result);
                    written(h, verdict, writes, env);
                }
            }
            // A group-committed write is answered through `Job::on_write`, never as a call.
            Pending::Commit { .. } => {}
        }
        true
    }
}

/// A host's write was judged: `good` (and the record cache learns the new values), or
/// `dnserr` (and the cache forgets the name: the backend may or may not have applied it).
fn written(
    h: &mut HostJob,
    verdict: Result<(), BackendError>,
    writes: &mut Vec<KvWrite>,
    env: &Env,
) {
    let Some(t) = &h.target else {
        return;
    };
    match verdict {
        Ok(()) => {
            for (rtype, values) in &h.desired {
                writes.push(cache_put(&t.name, *rtype, values, env));
            }
            h.code = Some(Code::Good);
        }
        Err(e) => {
            for (rtype, _) in &h.desired {
                writes.push(KvWrite::remove(keys::record(
                    t.name.as_str(),
                    rtype.as_str(),
                )));
            }
            h.fail(e);
        }
    }
}

fn cache_put(name: &Fqdn, rtype: RrType, values: &[String], env: &Env) -> KvWrite {
    KvWrite::put(
        keys::record(name.as_str(), rtype.as_str()),
        format!("{}|{}", env.now_ms, values.join("\n")).into_bytes(),
    )
}

fn cached(env: &Env, name: &Fqdn, rtype: RrType, ttl_ms: u64) -> Option<Vec<String>> {
    let raw = env.kv.get(&keys::record(name.as_str(), rtype.as_str()))?;
    let text = String::from_utf8(raw).ok()?;
    let (at, values) = text.split_once('|')?;
    let at: u64 = at.parse().ok()?;
    if at.saturating_add(ttl_ms) <= env.now_ms {
        return None;
    }
    Some(if values.is_empty() {
        vec![]
    } else {
        values.split('\n').map(str::to_string).collect()
    })
}
