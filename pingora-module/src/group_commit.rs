//! Group commit in the Pingora process: one [`GroupCommit`] for every worker thread, so the
//! writes of all concurrent requests to a zone share the zone's next backend call
//! (docs/group-commit.md). Each batch is sent by a task of its own, which outlives the request
//! that triggered it: a client that goes away never strands the hosts batched with it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use dynedge_core::{CalloutId, Commits, GroupCommit, WriteAnswer, ZoneWrite};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::gateway::Gateway;

/// An exchange's writes in the shared [`GroupCommit`].
pub(crate) type Owner = u64;

/// Where each request's write answers go.
type Answers = UnboundedSender<(CalloutId, WriteAnswer)>;

#[derive(Default)]
pub(crate) struct Committer {
    state: Mutex<State>,
    next_owner: AtomicU64,
}

#[derive(Default)]
struct State {
    group: GroupCommit<Owner>,
    owners: HashMap<Owner, Answers>,
}

/// One request's end of the committer: its answers arrive on `answers`; dropping it (the
/// request ended, or its client went away) forgets its writes that have not gone out yet.
pub(crate) struct Ticket {
    gateway: Arc<Gateway>,
    owner: Owner,
    pub(crate) answers: UnboundedReceiver<(CalloutId, WriteAnswer)>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self.gateway.committer.lock();
        state.owners.remove(&self.owner);
        state.group.forget(&self.owner);
    }
}

impl Committer {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the queues half-updated in a way that
        // matters more than refusing every later write would.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Gateway {
    /// A request's place in the group commit, taken before its first write.
    pub(crate) fn ticket(self: &Arc<Self>) -> Ticket {
        let owner = self.committer.next_owner.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = unbounded_channel();
        self.committer.lock().owners.insert(owner, tx);
        Ticket {
            gateway: self.clone(),
            owner,
            answers: rx,
        }
    }

    /// Hands an exchange's writes to its zones' queues.
    pub(crate) fn commit(self: &Arc<Self>, ticket: &Ticket, writes: Vec<(CalloutId, ZoneWrite)>) {
        let cfg = self.config();
        let env = self.env();
        let commits =
            self.committer
                .lock()
                .group
                .submit(&cfg, ticket.owner, writes, env.now_ms, env.random);
        self.carry_out(commits);
    }

    /// Sends each batch from a task of its own and delivers every answer to its request.
    fn carry_out(self: &Arc<Self>, commits: Commits<Owner>) {
        let Commits {
            send,
            answers,
            samples,
        } = commits;
        for (name, value) in &samples {
            self.metrics().record(name, *value);
        }
        if !answers.is_empty() {
            let state = self.committer.lock();
            for (owner, id, answer) in answers {
                // A request that ended has no receiver left: its answer has no one to tell.
                if let Some(tx) = state.owners.get(&owner) {
                    let _ = tx.send((id, answer));
                }
            }
        }
        for (batch, callout) in send {
            let gw = self.clone();
            tokio::spawn(async move {
                let result = gw.perform(&callout).await;
                let cfg = gw.config();
                let env = gw.env();
                let next = gw
                    .committer
                    .lock()
                    .group
                    .on_result(&cfg, batch, result, env.now_ms, env.random);
                gw.carry_out(next);
            });
        }
    }
}
