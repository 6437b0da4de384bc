//! The etcd store: the v3 JSON gateway's calls as [`Callout`]s (`etcd/wire.rs`), the credential
//! sync (`etcd/sync.rs`), and here the per-host update protocol ([`HostFlow`]). The protocol is
//! written down in `docs/etcd.md`.
//!
//! Keys under the configured prefix `P`:
//! - `P users/<name>`  → a user exactly as in the JSON configuration (`password_hash` a PHC string)
//! - `P tokens/<id>`   → a token exactly as in the JSON configuration (`sha256` of the token)
//! - `P hosts/<fqdn>`  → [`HostRecord`]: the host's current addresses and whether DNS holds them
//! - `P settings`      → optional JSON object merged over the plugin configuration's top level
//!   (never `store`)

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

mod sync;
mod wire;

pub use sync::{is_stale, sync_apply, sync_call, SYNCED_KEY};
pub use wire::*;

use super::EtcdStore;
use crate::backends::{BackendEnv, Callout, CalloutResult, RrSet, RrType, WriteCheck};
use crate::exchange::{CalloutId, Env};
use crate::job::HostJob;
use crate::reply::Code;

/// How often a host's update may lose a race before answering `911`.
const MAX_ATTEMPTS: u32 = 64;
/// How often an etcd call without an answer (or a 502/503/504 from the proxy) is retried; the
/// proxy sends the retry to another member.
const MAX_RETRIES: u32 = 2;
/// How often a failed DNS write is retried while our claim holds (e.g. PowerDNS with sqlite3
/// answers 500 "database is locked" to concurrent writers). Writes are idempotent, and a retry
/// that lands late is repaired like any late write.
const MAX_DNS_RETRIES: u32 = 4;

/// No answer, or the proxy's own "upstream unavailable" answer: worth another member.
fn etcd_retryable(result: &CalloutResult) -> bool {
    match result {
        CalloutResult::Failed(_) => true,
        CalloutResult::Response { status, .. } => matches!(status, 502..=504),
    }
}

// ------------------------------------------------------------------- host update protocol

/// A host's value in etcd: its addresses by type, and whether DNS is known to hold them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    #[serde(default)]
    pub rr: BTreeMap<String, Vec<String>>,
    /// `ok`: DNS holds `rr` (confirmed after a successful write). `pending`: a write of `rr`
    /// was claimed and its outcome is not confirmed: never a reason for `nochg`.
    pub state: String,
    /// The claim that wrote this value (a random id per attempt).
    #[serde(default)]
    pub claim: u64,
    #[serde(default)]
    pub at_ms: u64,
}

pub const OK: &str = "ok";
pub const PENDING: &str = "pending";

impl HostRecord {
    fn values(&self, rtype: RrType) -> &[String] {
        self.rr.get(rtype.as_str()).map_or(&[][..], |v| v)
    }
}

fn decode_record(kvs: &[Kv]) -> (HostRecord, i64) {
    match kvs.first() {
        Some(kv) => (
            serde_json::from_slice(&kv.value).unwrap_or_default(),
            kv.mod_revision,
        ),
        None => (HostRecord::default(), 0),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Read,
    /// A type the etcd record does not know yet (never written through this store) that an
    /// edit or a deletion depends on: DNS is read once, so they start from what it holds.
    DnsRead(RrType),
    Claim,
    DnsWrite,
    Confirm,
    /// After a failed repair write: mark the record not-ok so nobody answers `nochg` from it.
    Taint,
}

struct HostState {
    /// Our claim id; the record carries it so an ambiguous retry can recognise its own write.
    claim: u64,
    /// The value we claimed/confirm, and the revision it has in etcd.
    record: HostRecord,
    revision: i64,
    attempts: u32,
    /// A repair (re-writing a newer value after our own write) is under way.
    repairing: bool,
    first_read: bool,
    /// Values read from DNS for types the record lacks (see [`Op::DnsRead`]).
    dns_base: HashMap<RrType, Vec<String>>,
    /// The record that is decided on once the DNS reads are in, and how many are out.
    waiting: Option<(HostRecord, i64)>,
    reads_left: usize,
    /// The types this host's claim writes (from `want` and `edits`).
    types: Vec<RrType>,
}

struct InFlight {
    host: usize,
    op: Op,
    callout: Callout,
    retries: u32,
    check: Option<WriteCheck>,
}

/// Drives every host of a job through the etcd protocol (`docs/etcd.md`):
/// read → (`nochg` if confirmed and equal) → claim (CAS to `pending`) → DNS write → confirm
/// (CAS to `ok`); a lost CAS re-reads in the same round trip and decides again.
pub struct HostFlow {
    store: EtcdStore,
    states: Vec<HostState>,
    pending: HashMap<CalloutId, InFlight>,
    next_id: CalloutId,
    /// etcd calls made, for the audit log and the benchmark.
    pub etcd_calls: u32,
}

impl HostFlow {
    pub fn new(store: EtcdStore, hosts: usize, random: u64) -> HostFlow {
        HostFlow {
            store,
            states: (0..hosts)
                .map(|i| HostState {
                    claim: random.rotate_left((i as u32).wrapping_mul(7))
                        ^ (i as u64).wrapping_add(1),
                    record: HostRecord::default(),
                    revision: 0,
                    attempts: 0,
                    repairing: false,
                    first_read: true,
                    dns_base: HashMap::new(),
                    waiting: None,
                    reads_left: 0,
                    types: Vec::new(),
                })
                .collect(),
            pending: HashMap::new(),
            next_id: 0,
            etcd_calls: 0,
        }
    }

    fn send(
        &mut self,
        host: usize,
        op: Op,
        callout: Callout,
        check: Option<WriteCheck>,
        out: &mut Vec<(CalloutId, Callout)>,
    ) {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        if !matches!(op, Op::DnsWrite | Op::DnsRead(_)) {
            self.etcd_calls = self.etcd_calls.saturating_add(1);
        }
        out.push((id, callout.clone()));
        self.pending.insert(
            id,
            InFlight {
                host,
                op,
                callout,
                retries: 0,
                check,
            },
        );
    }

    /// The first calls; `None` when every host is already decided.
    pub fn start(&mut self, hosts: &mut [HostJob], env: &Env) -> Vec<(CalloutId, Callout)> {
        let mut out = Vec::new();
        let stale = is_stale(&self.store, env.kv, env.now_ms);
        for (i, h) in hosts.iter_mut().enumerate() {
            let Some(t) = h.target.as_ref().filter(|_| h.code.is_none()) else {
                continue;
            };
            if stale {
                h.code = Some(Code::Emergency);
                h.error = Some("etcd store: credential snapshot is stale".into());
                continue;
            }
            let c = range(&self.store, &host_key(&self.store, t.name.as_str()));
            self.send(i, Op::Read, c, None, &mut out);
        }
        out
    }

    pub fn is_done(&self) -> bool {
        self.pending.is_empty()
    }

    /// One result; returns the next calls (possibly none: then check [`HostFlow::is_done`]).
    pub fn on_callout(
        &mut self,
        id: CalloutId,
        result: CalloutResult,
        hosts: &mut [HostJob],
        env: &Env,
    ) -> Vec<(CalloutId, Callout)> {
        let mut out = Vec::new();
        let Some(mut f) = self.pending.remove(&id) else {
            return out;
        };
        let i = f.host;
        let Some(h) = hosts.get_mut(i) else {
            return out;
        };
        let (retry, limit) = match (&f.op, &h.target, &f.check) {
            (Op::DnsWrite, Some(t), Some(check)) => (
                t.backend.check_write(check, &result).is_err(),
                MAX_DNS_RETRIES,
            ),
            (Op::DnsWrite, _, _) | (Op::DnsRead(_), _, _) => (false, 0),
            _ => (etcd_retryable(&result), MAX_RETRIES),
        };
        if retry {
            // Safe for every call: reads are reads, a CAS that did apply is recognised by its
            // claim id, and a DNS write is idempotent while our claim holds.
            if f.retries < limit {
                f.retries = f.retries.saturating_add(1);
                if f.op != Op::DnsWrite {
                    self.etcd_calls = self.etcd_calls.saturating_add(1);
                }
                let nid = self.next_id;
                self.next_id = self.next_id.wrapping_add(1);
                out.push((nid, f.callout.clone()));
                self.pending.insert(nid, f);
                return out;
            }
        }
        match f.op {
            Op::DnsRead(rtype) => {
                if h.code.is_some() {
                    return out; // another read of this host failed already
                }
                let read = match &h.target {
                    Some(t) => t.backend.parse_read(&t.name, rtype, &result),
                    None => return out,
                };
                match read {
                    Ok(values) => {
                        let Some(st) = self.states.get_mut(i) else {
                            return out;
                        };
                        st.dns_base.insert(rtype, values);
                        st.reads_left = st.reads_left.saturating_sub(1);
                        if st.reads_left == 0 {
                            if let Some((rec, rev)) = st.waiting.take() {
                                self.decide(i, h, rec, rev, env, &mut out);
                            }
                        }
                    }
                    Err(e) => fail(h, Code::Dnserr, e.to_string()),
                }
            }
            Op::Read => match parse_range(&result) {
                Ok(kvs) => {
                    let (rec, rev) = decode_record(&kvs);
                    self.decide(i, h, rec, rev, env, &mut out);
                }
                Err(e) => fail(h, Code::Dnserr, e.message),
            },
            Op::Claim => match parse_txn(&result) {
                Ok(t) if t.succeeded => {
                    if let Some(st) = self.states.get_mut(i) {
                        st.revision = t.revision;
                    }
                    self.write_dns(i, h, env, &mut out);
                }
                Ok(t) => {
                    let (rec, rev) = decode_record(t.ranges.first().map_or(&[][..], |v| v));
                    if let Some(st) = self.states.get_mut(i).filter(|st| st.claim == rec.claim) {
                        // Our own claim, applied by an attempt whose answer was lost.
                        st.revision = rev;
                        self.write_dns(i, h, env, &mut out);
                    } else {
                        self.decide(i, h, rec, rev, env, &mut out);
                    }
                }
                Err(e) => fail(h, Code::Dnserr, e.message),
            },
            Op::DnsWrite => {
                let checked = match (&h.target, &f.check) {
                    (Some(t), Some(check)) => t.backend.check_write(check, &result),
                    _ => Err(crate::backends::BackendError::Invalid(
                        "no write check".into(),
                    )),
                };
                match checked {
                    Ok(()) => {
                        let Some(st) = self.states.get_mut(i) else {
                            return out;
                        };
                        st.record.state = OK.into();
                        st.record.at_ms = env.now_ms;
                        let value = serde_json::to_vec(&st.record).unwrap_or_default();
                        let key = host_key(&self.store, &h.label);
                        let c = compare_and_put(&self.store, &key, st.revision, &value);
                        self.send(i, Op::Confirm, c, None, &mut out);
                    }
                    Err(e) if self.states.get(i).is_some_and(|st| st.repairing) => {
                        // Our earlier write may be the last one DNS saw: the record must not
                        // stay `ok` for a value DNS may not hold.
                        h.error = Some(e.to_string());
                        self.taint(i, h, &mut out);
                    }
                    Err(e) => {
                        // The record stays `pending`: the next update writes again, never nochg.
                        fail(h, Code::Dnserr, e.to_string());
                    }
                }
            }
            Op::Confirm => match parse_txn(&result) {
                Ok(t) if t.succeeded => {
                    h.code = Some(Code::Good);
                }
                Ok(t) => {
                    let (rec, rev) = decode_record(t.ranges.first().map_or(&[][..], |v| v));
                    let Some(st) = self.states.get_mut(i) else {
                        return out;
                    };
                    if rec.claim == st.claim && rec.state == OK && rec.rr == st.record.rr {
                        h.code = Some(Code::Good); // our confirm, answered late
                    } else {
                        self.repair(i, h, rec, rev, env, &mut out);
                    }
                }
                Err(e) => fail(h, Code::Dnserr, e.message),
            },
            Op::Taint => match parse_txn(&result) {
                Ok(t) if t.succeeded => {
                    h.code = Some(Code::Dnserr);
                }
                Ok(t) => {
                    let (rec, rev) = decode_record(t.ranges.first().map_or(&[][..], |v| v));
                    if let Some(st) = self.states.get_mut(i).filter(|_| rec.state == OK) {
                        st.record = rec;
                        st.revision = rev;
                        self.taint(i, h, &mut out);
                    } else {
                        h.code = Some(Code::Dnserr);
                    }
                }
                Err(e) => fail(h, Code::Dnserr, e.message),
            },
        }
        out
    }

    /// Compare the store's current record with what the host wants: the target's `want` and
    /// its `edits` applied to the record's values (as the configuration store applies them to
    /// what it read from DNS).
    fn decide(
        &mut self,
        i: usize,
        h: &mut HostJob,
        rec: HostRecord,
        rev: i64,
        env: &Env,
        out: &mut Vec<(CalloutId, Callout)>,
    ) {
        let Some(t) = &h.target else { return };
        let types = t.types();
        let Some(st) = self.states.get_mut(i) else {
            return;
        };
        // Only edits and deletions depend on what is there; an address that replaces the type
        // outright costs no read.
        let depends = |r: &RrType| {
            t.edits.iter().any(|(e, _)| e == r)
                || t.want.iter().any(|(w, v)| w == r && v.is_empty())
        };
        let unknown: Vec<RrType> = types
            .iter()
            .copied()
            .filter(|r| {
                !rec.rr.contains_key(r.as_str()) && !st.dns_base.contains_key(r) && depends(r)
            })
            .collect();
        if !unknown.is_empty() {
            st.waiting = Some((rec, rev));
            st.reads_left = unknown.len();
            let reads: Vec<Callout> = unknown
                .iter()
                .map(|r| t.backend.read(&t.zone, &t.name, *r))
                .collect();
            for (rtype, c) in unknown.into_iter().zip(reads) {
                self.send(i, Op::DnsRead(rtype), c, None, out);
            }
            return;
        }
        let base: HashMap<RrType, Vec<String>> = types
            .iter()
            .map(|r| {
                let values = rec
                    .rr
                    .get(r.as_str())
                    .or_else(|| st.dns_base.get(r))
                    .cloned()
                    .unwrap_or_default();
                (*r, values)
            })
            .collect();
        let desired = match t.desired(&base) {
            Ok(d) => d,
            Err(r) => {
                // Refused before any claim: nothing was written, nothing is claimed.
                if st.first_read {
                    for (rtype, values) in base {
                        h.set_old(rtype, values);
                    }
                }
                h.refuse(r);
                return;
            }
        };
        // Only a confirmed record that knows every type may answer `nochg`.
        let same = desired.iter().all(|(rtype, want)| {
            rec.rr
                .get(rtype.as_str())
                .is_some_and(|have| crate::job::same_values(*rtype, have, want))
        });
        let name = t.name.clone();
        if st.first_read {
            st.first_read = false;
            for (rtype, values) in base {
                h.set_old(rtype, values);
            }
        }
        st.types = desired.iter().map(|(r, _)| *r).collect();
        let nochg = rec.state == OK && same;
        let mut next = rec;
        for (rtype, values) in &desired {
            next.rr.insert(rtype.as_str().into(), values.clone());
        }
        h.set_desired(desired);
        if nochg {
            h.code = Some(Code::Nochg);
            return;
        }
        st.attempts = st.attempts.saturating_add(1);
        if st.attempts > MAX_ATTEMPTS {
            fail(h, Code::Emergency, "etcd store: too much contention".into());
            return;
        }
        next.state = PENDING.into();
        next.claim = st.claim;
        next.at_ms = env.now_ms;
        let value = serde_json::to_vec(&next).unwrap_or_default();
        st.record = next;
        let c = compare_and_put(
            &self.store,
            &host_key(&self.store, name.as_str()),
            rev,
            &value,
        );
        self.send(i, Op::Claim, c, None, out);
    }

    /// Write the claimed values of our types to DNS.
    fn write_dns(
        &mut self,
        i: usize,
        h: &mut HostJob,
        env: &Env,
        out: &mut Vec<(CalloutId, Callout)>,
    ) {
        let Some(t) = &h.target else { return };
        let Some(st) = self.states.get(i) else {
            return;
        };
        let rec = &st.record;
        let sets: Vec<RrSet> = st
            .types
            .iter()
            .map(|rtype| RrSet {
                name: t.name.clone(),
                rtype: *rtype,
                ttl: t.ttl,
                values: rec.values(*rtype).to_vec(),
            })
            .collect();
        let benv = BackendEnv {
            now_s: env.now_s(),
            random: env.random,
        };
        match t.backend.write(&t.zone, &sets, benv) {
            Ok((c, check)) => self.send(i, Op::DnsWrite, c, Some(check), out),
            // Our claim stays pending, so a retry writes again instead of a false nochg.
            Err(e) => fail(h, Code::Dnserr, e.to_string()),
        }
    }

    /// Our confirm lost: someone changed the record after our claim, and our DNS write may
    /// have landed after theirs. Make DNS hold the store's current value, then confirm that.
    fn repair(
        &mut self,
        i: usize,
        h: &mut HostJob,
        rec: HostRecord,
        rev: i64,
        env: &Env,
        out: &mut Vec<(CalloutId, Callout)>,
    ) {
        let Some(st) = self.states.get_mut(i) else {
            return;
        };
        st.attempts = st.attempts.saturating_add(1);
        if st.attempts > MAX_ATTEMPTS {
            fail(h, Code::Emergency, "etcd store: too much contention".into());
            return;
        }
        let already = st.types.iter().all(|rtype| {
            crate::job::same_values(*rtype, rec.values(*rtype), st.record.values(*rtype))
        });
        st.repairing = true;
        st.revision = rev;
        let mut next = rec;
        next.claim = st.claim;
        st.record = next;
        if already {
            // DNS holds the store's value whatever the order of the writes: confirm it.
            st.record.state = OK.into();
            st.record.at_ms = env.now_ms;
            let value = serde_json::to_vec(&st.record).unwrap_or_default();
            let c = compare_and_put(&self.store, &host_key(&self.store, &h.label), rev, &value);
            self.send(i, Op::Confirm, c, None, out);
        } else {
            self.write_dns(i, h, env, out);
        }
    }

    fn taint(&mut self, i: usize, h: &mut HostJob, out: &mut Vec<(CalloutId, Callout)>) {
        let Some(st) = self.states.get_mut(i) else {
            return;
        };
        st.attempts = st.attempts.saturating_add(1);
        if st.attempts > MAX_ATTEMPTS {
            fail(h, Code::Emergency, "etcd store: too much contention".into());
            return;
        }
        st.record.state = PENDING.into();
        let value = serde_json::to_vec(&st.record).unwrap_or_default();
        let c = compare_and_put(
            &self.store,
            &host_key(&self.store, &h.label),
            st.revision,
            &value,
        );
        self.send(i, Op::Taint, c, None, out);
    }
}

fn fail(h: &mut HostJob, code: Code, why: String) {
    h.code = Some(code);
    h.error = Some(why);
}
