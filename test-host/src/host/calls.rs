//! Callouts: what the filter dispatched, and answering them (by hand, by a responder, or by
//! forwarding to a real server).

use std::collections::BTreeMap;

use super::{i, Host};
use crate::abi::Callback;
use crate::model::{Answer, Call, Ctx, Error, Headers, Token};
use crate::world::{Event, Message};

impl Host {
    /// Callouts dispatched by this context and not answered yet, oldest first.
    pub fn pending_calls(&self, ctx: Ctx) -> Vec<Call> {
        self.world()
            .calls
            .values()
            .filter(|c| c.context == ctx)
            .cloned()
            .collect()
    }

    /// Every pending callout, oldest first.
    pub fn all_pending_calls(&self) -> Vec<Call> {
        self.world().calls.values().cloned().collect()
    }

    /// Answers a callout: `proxy_on_http_call_response` with `:status` and these headers/body.
    pub fn answer(
        &mut self,
        token: Token,
        status: u16,
        headers: &[(&str, &str)],
        body: impl Into<Vec<u8>>,
    ) -> Result<(), Error> {
        self.answer_with(token, Answer::respond(status, headers, body))
    }

    /// Fails a callout: `proxy_on_http_call_response` with `num_headers = 0`, as Envoy does on
    /// timeout, reset or connection failure.
    pub fn fail(&mut self, token: Token) -> Result<(), Error> {
        self.answer_with(token, Answer::Fail)
    }

    /// Answers a callout with an [`Answer`] (`Hold` does nothing).
    pub fn answer_with(&mut self, token: Token, answer: Answer) -> Result<(), Error> {
        match answer {
            Answer::Hold => {
                self.held.insert(token.0);
                Ok(())
            }
            Answer::Fail => self.deliver(token, None),
            Answer::Respond {
                status,
                headers,
                body,
            } => {
                let mut all: Headers = vec![(":status".into(), status.to_string())];
                all.extend(headers);
                self.deliver(
                    token,
                    Some(Message {
                        headers: all,
                        body,
                        trailers: Vec::new(),
                    }),
                )
            }
        }
    }

    pub(super) fn deliver(&mut self, token: Token, response: Option<Message>) -> Result<(), Error> {
        let call = self
            .world()
            .calls
            .remove(&token.0)
            .ok_or_else(|| Error::Usage(format!("{token} is not pending")))?;
        self.held.remove(&token.0);
        let (nh, nb, nt) = response.as_ref().map_or((0, 0, 0), |m| {
            (
                m.headers.len() as u32,
                m.body.len() as u32,
                m.trailers.len() as u32,
            )
        });
        if let Some(w) = self.workers.get_mut(call.worker) {
            w.store.data_mut().call_response = response;
        }
        let result = self.invoke(
            call.worker,
            Callback::HttpCallResponse,
            call.context.0,
            "proxy_on_http_call_response",
            &[i(call.context.0), i(token.0), i(nh), i(nb), i(nt)],
        );
        if let Some(w) = self.workers.get_mut(call.worker) {
            w.store.data_mut().call_response = None;
        }
        result?;
        self.pump()
    }

    /// Answers every callout as it is dispatched (from now on, and those pending now).
    /// `Answer::Hold` leaves a call pending. Canned answers are fakes: name them so in tests.
    pub fn respond_with(
        &mut self,
        responder: impl FnMut(&Call) -> Answer + Send + 'static,
    ) -> Result<(), Error> {
        self.responder = Some(Box::new(responder));
        self.pump()
    }

    /// Forwards every callout to a real HTTP/1.1 server: `cluster name -> "host:port"`.
    /// Calls to other clusters fail (as Envoy fails a call to an unknown cluster's upstream).
    pub fn forward_to(&mut self, upstreams: &[(&str, &str)]) -> Result<(), Error> {
        let map: BTreeMap<String, String> = upstreams
            .iter()
            .map(|(c, a)| ((*c).to_owned(), (*a).to_owned()))
            .collect();
        self.respond_with(move |call| match map.get(&call.cluster) {
            Some(addr) => crate::forward::forward(addr, call),
            None => Answer::Fail,
        })
    }

    /// Stops answering callouts automatically.
    pub fn stop_responding(&mut self) {
        self.responder = None;
    }

    /// Runs deferred work until quiet: queue-ready notifications, then the responder.
    pub(super) fn pump(&mut self) -> Result<(), Error> {
        loop {
            let event = self.world().events.pop_front();
            if let Some(Event::QueueReady {
                worker,
                root,
                queue,
            }) = event
            {
                self.invoke(
                    worker,
                    Callback::QueueReady,
                    root,
                    "proxy_on_queue_ready",
                    &[i(root), i(queue)],
                )?;
                continue;
            }
            if self.responder.is_none() {
                return Ok(());
            }
            let next = {
                let world = self.world();
                world
                    .calls
                    .values()
                    .find(|c| !self.held.contains(&c.token.0))
                    .cloned()
            };
            let Some(call) = next else { return Ok(()) };
            let mut responder = self.responder.take();
            let answer = responder.as_mut().map_or(Answer::Hold, |r| r(&call));
            if self.responder.is_none() {
                self.responder = responder;
            }
            if answer == Answer::Hold {
                self.held.insert(call.token.0);
            } else {
                self.answer_with(call.token, answer)?;
            }
        }
    }
}
