//! What the root context and the HTTP contexts of one VM (one Envoy worker thread) share: the
//! group commit of the zones' writes, and the exchanges of the streams, so that whichever
//! context learns a batch's answer can finish every request the batch carried
//! (docs/group-commit.md).
//!
//! Envoy cancels a context's callouts when its stream ends. A batch carries other clients'
//! writes, so batches are dispatched by the root context, which lives as long as the VM: an
//! HTTP context that forms a batch parks it and wakes the root through a shared queue of this
//! VM's own. The root then answers the waiting streams itself (`set_effective_context` +
//! `send_http_response`), and makes their further calls, if any, on their behalf.

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::rc::Rc;
use std::time::UNIX_EPOCH;

use dynedge_core::{
    BatchId, CalloutFailure, CalloutId, CalloutResult, Commits, Config, Env, Exchange, GroupCommit,
    Step, WriteAnswer,
};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::Context;
use proxy_wasm::types::{Action, LogLevel};

use crate::host::{self, Metrics, SharedData};
use crate::root::Outbox;

pub type SharedVm = Rc<RefCell<Vm>>;

/// What a stream's exchange is fed next.
enum Input {
    Call(CalloutId, CalloutResult),
    Write(CalloutId, WriteAnswer),
}

/// Who a dispatched call's answer belongs to.
enum Owner {
    Stream(u32, CalloutId),
    Batch(BatchId),
}

struct StreamSlot {
    cfg: Rc<Config>,
    /// `None` once answered.
    exchange: Option<Exchange>,
    /// Calls dispatched for this stream, forgotten with it.
    tokens: Vec<u32>,
}

/// The proxy-wasm SDK's `dispatch_http_call` registers the call to the context it is running
/// in; this stands for whichever that is.
struct Running;
impl Context for Running {}

pub struct Vm {
    root_id: u32,
    /// The root's configuration (group commit settings for the batches it forms).
    cfg: Option<Rc<Config>>,
    /// The shared queue that wakes the root; without one, no batch can go out.
    queue: Option<u32>,
    woken: bool,
    group: GroupCommit<u32>,
    streams: HashMap<u32, StreamSlot>,
    calls: HashMap<u32, Owner>,
    /// Batches an HTTP context formed, for the root to dispatch.
    parked: Vec<(BatchId, dynedge_core::Callout)>,
    /// Write answers for the root to deliver.
    answers: VecDeque<(u32, CalloutId, WriteAnswer)>,
    metrics: Rc<Metrics>,
    outbox: Outbox,
    random: RandomState,
    /// The proxy adds the Layer 0 headers to every response (the VM configuration says so).
    layer0_by_proxy: bool,
}

impl Vm {
    pub fn new(root_id: u32, metrics: Rc<Metrics>, outbox: Outbox) -> SharedVm {
        Rc::new(RefCell::new(Vm {
            root_id,
            cfg: None,
            queue: None,
            woken: false,
            group: GroupCommit::new(),
            streams: HashMap::new(),
            calls: HashMap::new(),
            parked: Vec::new(),
            answers: VecDeque::new(),
            metrics,
            outbox,
            random: RandomState::new(),
            layer0_by_proxy: false,
        }))
    }

    /// The root's wake-up queue, registered once per VM under a name no other VM uses (Envoy
    /// runs the queue's callback in the VM that registered the name first).
    pub fn register_queue(&mut self) {
        if self.queue.is_some() {
            return;
        }
        let name = format!(
            "dynedge-group-commit-{}-{:016x}",
            self.root_id,
            self.random.hash_one(now_ms())
        );
        match hostcalls::register_shared_queue(&name) {
            Ok(id) => self.queue = Some(id),
            Err(status) => host::log(
                LogLevel::Error,
                &format!("dynedge: no group commit queue ({status:?}): writes will fail"),
            ),
        }
    }

    pub fn queue(&self) -> Option<u32> {
        self.queue
    }

    pub fn set_layer0_by_proxy(&mut self, yes: bool) {
        self.layer0_by_proxy = yes;
    }

    pub fn set_config(&mut self, cfg: Rc<Config>) {
        self.cfg = Some(cfg);
    }

    fn env(&self) -> Env<'static> {
        let now_ms = now_ms();
        Env {
            now_ms,
            random: self.random.hash_one(now_ms),
            kv: &SharedData,
        }
    }

    /// A stream's exchange, driven from its first step that is neither `Pass` nor
    /// `NeedBody` (the HTTP context handles those itself).
    /// `now_ms` is the clock the step was computed with.
    pub fn start(
        &mut self,
        ctx: u32,
        cfg: Rc<Config>,
        ex: Exchange,
        step: Step,
        now_ms: u64,
    ) -> Action {
        if let Step::Done(outcome) = step {
            // Answered at once (a nochg from the caches, a refusal): nothing to keep.
            self.finish(ctx, outcome, ctx, now_ms);
            return Action::Pause;
        }
        self.streams.insert(
            ctx,
            StreamSlot {
                cfg,
                exchange: Some(ex),
                tokens: Vec::new(),
            },
        );
        self.drive(ctx, step, VecDeque::new(), ctx)
    }

    /// The stream ended: its exchange, its waiting writes and its calls go (writes already
    /// in a batch stay in it: the batch is answered as a whole).
    pub fn end(&mut self, ctx: u32) {
        let Some(slot) = self.streams.remove(&ctx) else {
            return;
        };
        for t in slot.tokens {
            self.calls.remove(&t);
        }
        self.group.forget(&ctx);
    }

    /// A call's answer, received by the context `running`.
    pub fn on_response(&mut self, token: u32, result: CalloutResult, running: u32) -> bool {
        match self.calls.remove(&token) {
            Some(Owner::Stream(ctx, id)) => {
                if let Some(slot) = self.streams.get_mut(&ctx) {
                    slot.tokens.retain(|t| *t != token);
                }
                self.resume(ctx, Input::Call(id, result), running);
                true
            }
            Some(Owner::Batch(batch)) => {
                self.batch_answered(batch, result);
                // A stream sent this batch only because the root could not be woken: its
                // answers and the zone's next batch still need someone's turn.
                if running != self.root_id {
                    self.wake_root(running);
                }
                true
            }
            None => false,
        }
    }

    /// The root's turn (woken by the queue or a batch's answer), run by context `running`:
    /// dispatch what is parked, deliver every answer, until nothing is left.
    pub fn settle(&mut self, running: u32) {
        self.woken = false;
        loop {
            while let Some((batch, callout)) = self.parked.pop() {
                match host::dispatch(&Running, vec![(0, callout)]) {
                    (sent, _) if !sent.is_empty() => {
                        for (token, _) in sent {
                            self.calls.insert(token, Owner::Batch(batch));
                        }
                    }
                    (_, mut failed) => {
                        let result = failed.pop().map_or_else(not_sent, |(_, r)| r);
                        self.batch_answered(batch, result);
                    }
                }
            }
            let Some((ctx, id, answer)) = self.answers.pop_front() else {
                break;
            };
            self.resume(ctx, Input::Write(id, answer), running);
        }
    }

    fn batch_answered(&mut self, batch: BatchId, result: CalloutResult) {
        let Some(cfg) = self.cfg.clone() else {
            return;
        };
        let env = self.env();
        let commits = self
            .group
            .on_result(&cfg, batch, result, env.now_ms, env.random);
        self.take(commits);
    }

    /// A group commit's result: batches and answers wait for the root's turn.
    fn take(&mut self, commits: Commits<u32>) {
        let Commits {
            send,
            answers,
            samples,
        } = commits;
        for (name, value) in &samples {
            self.metrics.record(name, *value);
        }
        self.parked.extend(send);
        self.answers.extend(answers);
    }

    /// Asks the root for its turn (once until it comes), from the stream context `running`.
    fn wake_root(&mut self, running: u32) {
        if self.woken || (self.parked.is_empty() && self.answers.is_empty()) {
            return;
        }
        let queued = self
            .queue
            .map(|q| hostcalls::enqueue_shared_queue(q, Some(b"1")));
        if let Some(Ok(())) = queued {
            self.woken = true;
            return;
        }
        // Cannot happen once the root registered its queue. Dispatched from this stream,
        // a batch is lost if the stream ends first (Envoy cancels its calls).
        host::log(
            LogLevel::Error,
            "dynedge: cannot wake the root context; group commit runs in the request's context",
        );
        self.settle(running);
    }

    fn resume(&mut self, ctx: u32, input: Input, running: u32) {
        let _ = self.drive(ctx, Step::Wait, VecDeque::from([input]), running);
    }

    /// Performs stream `ctx`'s steps from context `running` (the stream itself or the
    /// root), feeding `ready` inputs whenever the exchange waits.
    fn drive(
        &mut self,
        ctx: u32,
        mut step: Step,
        mut ready: VecDeque<Input>,
        running: u32,
    ) -> Action {
        let Some(slot) = self.streams.get_mut(&ctx) else {
            return Action::Pause;
        };
        let Some(mut ex) = slot.exchange.take() else {
            return Action::Pause;
        };
        let cfg = slot.cfg.clone();
        let action = loop {
            step = match step {
                Step::Pass => break Action::Continue,
                // Only a request's first step asks for the body.
                Step::NeedBody { .. } => Step::Done(ex.abort(&cfg, &self.env())),
                Step::Call(calls) => {
                    let (in_flight, failed) = host::dispatch(&Running, calls);
                    for (token, id) in in_flight {
                        self.calls.insert(token, Owner::Stream(ctx, id));
                        if let Some(slot) = self.streams.get_mut(&ctx) {
                            slot.tokens.push(token);
                        }
                    }
                    ready.extend(failed.into_iter().map(|(id, r)| Input::Call(id, r)));
                    Step::Wait
                }
                Step::Commit(writes) => {
                    let env = self.env();
                    let commits = self.group.submit(&cfg, ctx, writes, env.now_ms, env.random);
                    self.take(commits);
                    Step::Wait
                }
                Step::Wait => match ready.pop_front() {
                    Some(Input::Call(id, r)) => ex.on_callout(id, r, &self.env()),
                    Some(Input::Write(id, a)) => ex.on_write(id, a, &self.env()),
                    None => break Action::Pause,
                },
                Step::Done(outcome) => {
                    self.finish(ctx, outcome, running, now_ms());
                    break Action::Pause;
                }
            };
        };
        if !ex.is_finished() {
            if let Some(slot) = self.streams.get_mut(&ctx) {
                slot.exchange = Some(ex);
            }
        }
        if running != self.root_id {
            self.wake_root(running);
        }
        action
    }

    fn finish(&mut self, ctx: u32, outcome: dynedge_core::Outcome, running: u32, now_ms: u64) {
        let (reply, notify) = host::record(outcome, &self.metrics, now_ms / 1000);
        if let Some(reply) = reply {
            let headers = reply.headers_to_send(self.layer0_by_proxy);
            // Another context finishing this stream speaks for it, then for itself again.
            if ctx != running {
                let _ = hostcalls::set_effective_context(ctx);
            }
            let _ =
                hostcalls::send_http_response(u32::from(reply.status), headers, Some(&reply.body));
            if ctx != running {
                let _ = hostcalls::set_effective_context(running);
            }
        }
        // After the reply: webhooks never delay it.
        self.outbox.borrow_mut().extend(notify);
    }
}

fn not_sent() -> CalloutResult {
    CalloutResult::Failed(CalloutFailure::NotSent("batch not dispatched".into()))
}

fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}
