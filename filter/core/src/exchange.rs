//! The state machine between a request and its reply: the whole contract with the adapters.
//!
//! Every input (`start`, `on_body`, `on_callout`) returns one [`Step`] telling the adapter what
//! to do next. Time, randomness and a read view of the KV come in with every input; nothing in
//! here performs I/O. After `Step::Done` the exchange is over: late inputs change nothing.

use crate::backends::{Callout, CalloutResult};
use crate::config::Config;
use crate::dialects::{self, Render, Route, Start};
use crate::group_commit::{WriteAnswer, ZoneWrite};
use crate::job::{HostOutcome, Job, Progress};
use crate::reply::{Code, Reply};
use crate::request::Request;

pub use crate::outcome::Outcome;

pub use crate::env::{CalloutId, Env};

/// What the adapter must do next.
#[must_use = "the adapter must perform every Step"]
#[derive(Debug)]
pub enum Step {
    /// Not a dynedge route: let the proxy carry on.
    Pass,
    /// Keep the request paused and call `on_body` with the whole body (at most `limit` bytes).
    NeedBody { limit: usize },
    /// Perform each call and feed each result to `on_callout` with its id.
    Call(Vec<(CalloutId, Callout)>),
    /// Hand each write to the adapter's [`crate::GroupCommit`] and feed each answer to
    /// `on_write` with its id.
    Commit(Vec<(CalloutId, ZoneWrite)>),
    /// Results are still outstanding: stay paused.
    Wait,
    /// Apply the writes, emit the log lines and counters, send the reply.
    Done(Outcome),
}

/// Largest request body any dialect accepts.
pub const BODY_LIMIT: usize = 16 * 1024;

pub struct Exchange {
    state: State,
}

enum State {
    AwaitingBody(Request, Route),
    Running(Box<Job>, Render),
    Finished,
}

impl Exchange {
    /// Starts on the request headers. `end_of_stream` says whether a body follows.
    pub fn start(cfg: &Config, req: Request, end_of_stream: bool, env: &Env) -> (Exchange, Step) {
        let Some(route) = dialects::route_request(cfg, &req) else {
            return (
                Exchange {
                    state: State::Finished,
                },
                Step::Pass,
            );
        };
        if !end_of_stream && route.reads_body() {
            let ex = Exchange {
                state: State::AwaitingBody(req, route),
            };
            return (ex, Step::NeedBody { limit: BODY_LIMIT });
        }
        let mut ex = Exchange {
            state: State::Finished,
        };
        let step = ex.begin(cfg, req, route, env);
        (ex, step)
    }

    /// The complete request body (after `Step::NeedBody`).
    pub fn on_body(&mut self, cfg: &Config, body: Vec<u8>, env: &Env) -> Step {
        let State::AwaitingBody(mut req, route) =
            std::mem::replace(&mut self.state, State::Finished)
        else {
            return Step::Wait;
        };
        if body.len() > BODY_LIMIT {
            return Step::Done(Outcome::reply(dialects::payload_too_large(&req, route)));
        }
        req.body = body;
        self.begin(cfg, req, route, env)
    }

    /// A callout's result. Unknown or late ids are ignored.
    pub fn on_callout(&mut self, id: CalloutId, result: CalloutResult, env: &Env) -> Step {
        let State::Running(job, render) = &mut self.state else {
            return Step::Wait;
        };
        let retry_after_s = job.host_retry_after_s();
        let step = reply_with(job.on_callout(id, result, env), render, retry_after_s);
        if matches!(step, Step::Done(_)) {
            self.state = State::Finished;
        }
        step
    }

    /// A group-committed write's answer. Unknown or late ids are ignored.
    pub fn on_write(&mut self, id: CalloutId, answer: WriteAnswer, env: &Env) -> Step {
        let State::Running(job, render) = &mut self.state else {
            return Step::Wait;
        };
        let retry_after_s = job.host_retry_after_s();
        let step = reply_with(job.on_write(id, answer, env), render, retry_after_s);
        if matches!(step, Step::Done(_)) {
            self.state = State::Finished;
        }
        step
    }

    /// Ends the exchange when the host can deliver no more callout results or body (a lost
    /// task): every outstanding call counts as failed and the dialect renders the reply,
    /// exactly as if each had come back `CalloutResult::Failed`; a body still awaited is a
    /// `911` in the dialect's words. Always carries a reply.
    pub fn abort(&mut self, cfg: &Config, env: &Env) -> Outcome {
        match std::mem::replace(&mut self.state, State::Finished) {
            State::AwaitingBody(req, route) => {
                Outcome::reply(dialects::emergency(cfg, &req, route))
            }
            State::Running(mut job, render) => {
                let retry_after_s = job.host_retry_after_s();
                let (mut outcome, hosts) = job.abort(env);
                outcome.reply = Some(finish_reply(&render, &hosts, retry_after_s));
                outcome
            }
            State::Finished => Outcome::reply(Reply::emergency()),
        }
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Finished)
    }

    fn begin(&mut self, cfg: &Config, req: Request, route: Route, env: &Env) -> Step {
        match dialects::handle(cfg, &req, route, env) {
            // While the etcd credential snapshot is missing or stale the pipeline verifies and
            // counts nothing (`pipeline::Denied::Unavailable`).
            Start::Reply(outcome) => Step::Done(outcome),
            Start::Job(mut job, render) => {
                let retry_after_s = job.host_retry_after_s();
                let step = reply_with(job.advance(env), &render, retry_after_s);
                if !matches!(step, Step::Done(_)) {
                    self.state = State::Running(job, render);
                }
                step
            }
        }
    }
}

/// The job's progress as a step; a finished job's outcomes rendered into the dialect's reply.
fn reply_with(progress: Progress, render: &Render, retry_after_s: u64) -> Step {
    match progress {
        Progress::Call(calls) => Step::Call(calls),
        Progress::Commit(writes) => Step::Commit(writes),
        Progress::Wait => Step::Wait,
        Progress::Done(mut outcome, hosts) => {
            outcome.reply = Some(finish_reply(render, &hosts, retry_after_s));
            Step::Done(outcome)
        }
    }
}

/// The dialect's reply; a 429 for a host over its update limit says when to come back,
/// whichever dialect rendered it.
fn finish_reply(render: &Render, hosts: &[HostOutcome], retry_after_s: u64) -> Reply {
    let reply = render.render(hosts);
    if reply.status == 429
        && reply.header("retry-after").is_none()
        && hosts.iter().any(|o| o.code == Code::Abuse)
    {
        return reply.with_header("retry-after", &retry_after_s.to_string());
    }
    reply
}
