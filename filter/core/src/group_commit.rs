//! Group commit: updates for one zone that arrive while a write to that zone is in flight wait
//! and go out together in the zone's next write (one PowerDNS PATCH with many RRsets, one
//! RFC 2136 UPDATE with many names). A storm then costs the backend a few large writes instead
//! of one write per router (docs/group-commit.md).
//!
//! Sans-IO like [`crate::Exchange`]. An exchange hands its writes over with
//! [`crate::Step::Commit`]; the adapter keeps one [`GroupCommit`] per event loop (a proxy-wasm
//! VM, the Pingora process), passes the writes to [`GroupCommit::submit`], sends the batches it
//! gets back, feeds each batch's answer to [`GroupCommit::on_result`], and hands every
//! [`WriteAnswer`] to its owner's [`crate::Exchange::on_write`].
//!
//! What each client is told stays exact:
//! - a write is answered only once the batch carrying it has been answered;
//! - a batch the backend refused as a whole (PowerDNS 4xx, a signed RFC 2136 error such as a
//!   failed prerequisite) applied nothing, so it is split in halves and retried until each
//!   refusal is pinned on the one host that caused it; its neighbours still succeed;
//! - a batch whose fate is unknown (timeout, connection lost, 5xx) fails every host in it;
//!   none is ever told `good` without the backend's confirmation;
//! - two writes to the same name never share a batch nor overtake each other.

pub mod settings;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};

use crate::backends::{BackendEnv, BackendError, Callout, CalloutResult, RrSet, WriteCheck};
use crate::config::{Backend, Config};
use crate::env::CalloutId;
use crate::metrics;
use crate::names::Fqdn;

/// Names a batch the adapter sends; its answer goes back to [`GroupCommit::on_result`].
pub type BatchId = u64;

/// Writes waiting at most (all zones together): a bound on memory whatever the proxy admits.
const MAX_QUEUED: usize = 20_000;

/// One host's change, to be written with whatever else its zone has waiting.
#[derive(Debug, Clone)]
pub struct ZoneWrite {
    pub(crate) backend: Backend,
    pub(crate) zone: Fqdn,
    pub(crate) sets: Vec<RrSet>,
}

/// The answer to one [`ZoneWrite`]: whether the backend confirmed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteAnswer(pub(crate) Result<(), BackendError>);

impl WriteAnswer {
    pub fn is_confirmed(&self) -> bool {
        self.0.is_ok()
    }
}

/// How to judge the answer of a write sent alone ([`ZoneWrite::alone`]).
#[derive(Debug, Clone)]
pub struct SoloCheck {
    backend: Backend,
    check: WriteCheck,
}

impl SoloCheck {
    pub fn judge(&self, result: &CalloutResult) -> WriteAnswer {
        WriteAnswer(self.backend.check_write(&self.check, result))
    }
}

impl ZoneWrite {
    /// The write as a call of its own, for a driver without a [`GroupCommit`] (tools, tests);
    /// `Err` answers the write at once (a change the backend cannot express).
    pub fn alone(&self, now_ms: u64, random: u64) -> Result<(Callout, SoloCheck), WriteAnswer> {
        let env = BackendEnv {
            now_s: now_ms / 1000,
            random,
        };
        match self.backend.write(&self.zone, &self.sets, env) {
            Ok((callout, check)) => Ok((
                callout,
                SoloCheck {
                    backend: self.backend.clone(),
                    check,
                },
            )),
            Err(e) => Err(WriteAnswer(Err(e))),
        }
    }

    fn names(&self) -> impl Iterator<Item = &Fqdn> {
        self.sets.iter().map(|s| &s.name)
    }
}

/// What the adapter must do after a submit or a batch's answer.
#[must_use = "the adapter must send every batch and deliver every answer"]
pub struct Commits<O> {
    /// Send each, and feed its answer to [`GroupCommit::on_result`] with its id.
    pub send: Vec<(BatchId, Callout)>,
    /// Hand each to its owner's [`crate::Exchange::on_write`] with the write's id.
    pub answers: Vec<(O, CalloutId, WriteAnswer)>,
    /// Histogram samples (metric name, value): batch sizes and waits.
    pub samples: Vec<(String, u64)>,
}

impl<O> Default for Commits<O> {
    fn default() -> Self {
        Commits {
            send: Vec::new(),
            answers: Vec::new(),
            samples: Vec::new(),
        }
    }
}

struct Queued<O> {
    owner: O,
    id: CalloutId,
    write: ZoneWrite,
    since_ms: u64,
}

struct Batch<O> {
    zone: Fqdn,
    backend: Backend,
    members: Vec<Queued<O>>,
    check: WriteCheck,
}

/// The writes waiting per zone and the batches in flight, for one event loop.
pub struct GroupCommit<O> {
    queues: HashMap<Fqdn, VecDeque<Queued<O>>>,
    batches: HashMap<BatchId, Batch<O>>,
    next_batch: BatchId,
    queued: usize,
}

impl<O> Default for GroupCommit<O> {
    fn default() -> Self {
        GroupCommit {
            queues: HashMap::new(),
            batches: HashMap::new(),
            next_batch: 0,
            queued: 0,
        }
    }
}

impl<O: Clone + PartialEq> GroupCommit<O> {
    pub fn new() -> Self {
        Self::default()
    }

    /// An exchange's writes (from [`crate::Step::Commit`]). Each joins its zone's queue; what
    /// can go out now is in `send`.
    pub fn submit(
        &mut self,
        cfg: &Config,
        owner: O,
        writes: Vec<(CalloutId, ZoneWrite)>,
        now_ms: u64,
        random: u64,
    ) -> Commits<O> {
        let mut out = Commits::default();
        let mut zones = Vec::new();
        for (id, write) in writes {
            if self.queued >= MAX_QUEUED {
                out.answers.push((
                    owner.clone(),
                    id,
                    WriteAnswer(Err(BackendError::Invalid(
                        "too many updates waiting for the backend; not sent".into(),
                    ))),
                ));
                continue;
            }
            if !zones.contains(&write.zone) {
                zones.push(write.zone.clone());
            }
            self.queued = self.queued.saturating_add(1);
            self.queues
                .entry(write.zone.clone())
                .or_default()
                .push_back(Queued {
                    owner: owner.clone(),
                    id,
                    write,
                    since_ms: now_ms,
                });
        }
        for zone in zones {
            self.pump(cfg, &zone, now_ms, random, &mut out);
        }
        out
    }

    /// A batch's answer: answers for its writes, and the zone's next batches.
    pub fn on_result(
        &mut self,
        cfg: &Config,
        batch: BatchId,
        result: CalloutResult,
        now_ms: u64,
        random: u64,
    ) -> Commits<O> {
        let mut out = Commits::default();
        let Some(b) = self.batches.remove(&batch) else {
            return out;
        };
        let verdict = b.backend.check_write(&b.check, &result);
        let zone = b.zone.clone();
        match verdict {
            Ok(()) => answer_all(b.members, Ok(()), &mut out),
            Err(e) if e.nothing_applied() && b.members.len() > 1 => {
                // Refused as a whole: nothing was applied. Halves go out at once, before the
                // queue, so the names they hold stay ahead of later writes to them.
                let mut first = b.members;
                let second = first.split_off(first.len() / 2);
                self.send(&zone, &b.backend, first, now_ms, random, &mut out);
                self.send(&zone, &b.backend, second, now_ms, random, &mut out);
            }
            Err(e) => answer_all(b.members, Err(e), &mut out),
        }
        self.pump(cfg, &zone, now_ms, random, &mut out);
        out
    }

    /// Forgets the waiting writes of an exchange that ended (its client went away). Writes in
    /// flight stay: their batch is answered as a whole.
    pub fn forget(&mut self, owner: &O) {
        for q in self.queues.values_mut() {
            q.retain(|w| &w.owner != owner);
        }
        self.queues.retain(|_, q| !q.is_empty());
        self.queued = self.queues.values().map(VecDeque::len).sum();
    }

    /// Batches in flight and writes waiting (for the adapter's tests and the bench).
    pub fn load(&self) -> (usize, usize) {
        (self.batches.len(), self.queued)
    }

    /// Forms and sends the zone's batches while it may: one when nothing is in flight, another
    /// when the oldest waiting write is older than `max_wait_ms`, any number when group commit
    /// is off. A write to a name held by a batch in flight, or by an earlier waiting write,
    /// waits.
    fn pump(&mut self, cfg: &Config, zone: &Fqdn, now_ms: u64, random: u64, out: &mut Commits<O>) {
        let settings = cfg.group_commit;
        loop {
            let in_flight: Vec<&Batch<O>> =
                self.batches.values().filter(|b| &b.zone == zone).collect();
            let Some(queue) = self.queues.get_mut(zone) else {
                return;
            };
            let Some(front) = queue.front() else {
                self.queues.remove(zone);
                return;
            };
            let may = in_flight.is_empty()
                || !settings.enabled()
                || now_ms.saturating_sub(front.since_ms) >= settings.max_wait_ms;
            if !may {
                return;
            }
            let mut held: HashSet<Fqdn> = in_flight
                .iter()
                .flat_map(|b| b.members.iter().flat_map(|m| m.write.names().cloned()))
                .collect();
            let mut taken = Vec::new();
            let mut left = VecDeque::new();
            for w in queue.drain(..) {
                let free = w.write.names().all(|n| !held.contains(n));
                held.extend(w.write.names().cloned());
                if free && taken.len() < settings.max_batch {
                    taken.push(w);
                } else {
                    left.push_back(w);
                }
            }
            *queue = left;
            // None taken: every waiting write is behind a name in flight.
            let Some(backend) = taken.first().map(|w| w.write.backend.clone()) else {
                return;
            };
            self.queued = self.queued.saturating_sub(taken.len());
            self.send(zone, &backend, taken, now_ms, random, out);
        }
    }

    /// One write carrying `members`; a change the backend cannot express is split until the
    /// host it belongs to is answered alone.
    fn send(
        &mut self,
        zone: &Fqdn,
        backend: &Backend,
        members: Vec<Queued<O>>,
        now_ms: u64,
        random: u64,
        out: &mut Commits<O>,
    ) {
        if members.is_empty() {
            return;
        }
        let sets: Vec<RrSet> = members
            .iter()
            .flat_map(|m| m.write.sets.iter().cloned())
            .collect();
        let env = BackendEnv {
            now_s: now_ms / 1000,
            random: random.wrapping_add(self.next_batch),
        };
        match backend.write(zone, &sets, env) {
            Ok((callout, check)) => {
                let id = self.next_batch;
                self.next_batch = self.next_batch.wrapping_add(1);
                let kind = backend.kind();
                out.samples
                    .push((metrics::group_commit_batch(kind), members.len() as u64));
                for m in &members {
                    out.samples.push((
                        metrics::group_commit_wait(kind),
                        now_ms.saturating_sub(m.since_ms),
                    ));
                }
                self.batches.insert(
                    id,
                    Batch {
                        zone: zone.clone(),
                        backend: backend.clone(),
                        members,
                        check,
                    },
                );
                out.send.push((id, callout));
            }
            Err(_) if members.len() > 1 => {
                let mut first = members;
                let second = first.split_off(first.len() / 2);
                self.send(zone, backend, first, now_ms, random, out);
                self.send(zone, backend, second, now_ms, random, out);
            }
            Err(e) => answer_all(members, Err(e), out),
        }
    }
}

fn answer_all<O>(members: Vec<Queued<O>>, verdict: Result<(), BackendError>, out: &mut Commits<O>) {
    for m in members {
        out.answers
            .push((m.owner, m.id, WriteAnswer(verdict.clone())));
    }
}
