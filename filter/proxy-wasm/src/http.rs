//! One HTTP stream: snapshot the request, drive the core's exchange, perform its steps.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::UNIX_EPOCH;

use dynedge_core::{CalloutId, CalloutResult, Config, Env, Exchange, Request, Step};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use crate::host::{self, Metrics, SharedData};
use crate::root::Outbox;

pub struct DynedgeHttp {
    cfg: Rc<Config>,
    metrics: Rc<Metrics>,
    exchange: Option<Exchange>,
    body_limit: Option<usize>,
    in_flight: HashMap<u32, CalloutId>,
    random: RandomState,
    /// Webhook deliveries go to the root context, which dispatches and retries them.
    outbox: Outbox,
    layer0_by_proxy: bool,
    /// The clock as the current callback read it: its outcome is stamped with the same time
    /// without asking the host again.
    clock_ms: u64,
}

impl DynedgeHttp {
    pub fn new(
        cfg: Rc<Config>,
        metrics: Rc<Metrics>,
        outbox: Outbox,
        layer0_by_proxy: bool,
    ) -> Self {
        DynedgeHttp {
            cfg,
            metrics,
            exchange: None,
            body_limit: None,
            in_flight: HashMap::new(),
            random: RandomState::new(),
            outbox,
            layer0_by_proxy,
            clock_ms: 0,
        }
    }

    fn now_ms(&mut self) -> u64 {
        self.clock_ms = self
            .get_current_time()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.clock_ms
    }

    fn snapshot(&self) -> Request {
        // Bytes, not Strings: the SDK's String form panics (trapping the VM for every later
        // request) on a header value that is not UTF-8 — old routers send Latin-1 user agents.
        let headers = host::lossy_headers(self.get_http_request_headers_bytes());
        let pseudo = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let peer = self
            .get_property(vec!["source", "address"])
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| parse_peer(&s));
        Request {
            method: pseudo(":method"),
            path: pseudo(":path"),
            headers: headers
                .iter()
                .filter(|(k, _)| !k.starts_with(':'))
                .cloned()
                .collect(),
            body: Vec::new(),
            peer,
        }
    }

    /// Performs one step; returns what the current callback should return.
    fn drive(&mut self, step: Step) -> Action {
        match step {
            Step::Pass => Action::Continue,
            Step::NeedBody { limit } => {
                self.body_limit = Some(limit);
                // Not Pause: the host turns a paused request-headers callback into
                // StopAllIterationAndWatermark, and then the body never reaches this filter.
                // The headers go on to the next filter, which must hold the request until the
                // body is complete (envoy/bootstrap.yaml.tmpl puts envoy.filters.http.buffer
                // there); this filter pauses the body until its end and answers locally.
                Action::Continue
            }
            Step::Wait => Action::Pause,
            Step::Call(calls) => {
                let (in_flight, failed) = host::dispatch(self, calls);
                self.in_flight.extend(in_flight);
                // A call that could not even be dispatched is answered as failed right away.
                let mut action = Action::Pause;
                for (id, result) in failed {
                    action = self.feed(id, result);
                }
                action
            }
            Step::Done(outcome) => {
                let (reply, notify) = host::record(outcome, &self.metrics, self.clock_ms / 1000);
                if let Some(reply) = reply {
                    let headers = reply.headers_to_send(self.layer0_by_proxy);
                    self.send_http_response(u32::from(reply.status), headers, Some(&reply.body));
                }
                // After the reply: webhooks never delay it.
                self.outbox.borrow_mut().extend(notify);
                Action::Pause
            }
        }
    }

    fn feed(&mut self, id: CalloutId, result: CalloutResult) -> Action {
        let now_ms = self.now_ms();
        let random = self.random.hash_one(now_ms);
        let Some(ex) = self.exchange.as_mut() else {
            return Action::Pause;
        };
        let env = Env {
            now_ms,
            random,
            kv: &SharedData,
        };
        let step = ex.on_callout(id, result, &env);
        self.drive(step)
    }
}

fn parse_peer(s: &str) -> Option<IpAddr> {
    s.parse::<SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| s.parse::<IpAddr>())
        .ok()
}

impl Context for DynedgeHttp {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(id) = self.in_flight.remove(&token) else {
            return;
        };
        let result = host::call_result(self, num_headers, body_size);
        let _ = self.feed(id, result);
    }
}

impl HttpContext for DynedgeHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let req = self.snapshot();
        let now_ms = self.now_ms();
        let env = Env {
            now_ms,
            random: self.random.hash_one(now_ms),
            kv: &SharedData,
        };
        let logged = dynedge_core::adapter::loggable_path(&req.path);
        let raw = req.path.clone();
        let (ex, step) = Exchange::start(&self.cfg, req, end_of_stream, &env);
        if !matches!(step, Step::Pass) && logged != raw {
            // dynedge answers this request itself: what Envoy logs as its path must not carry
            // the query's passwords or a path token (access logs, tap, tracing).
            self.set_http_request_header(":path", Some(&logged));
        }
        self.exchange = Some(ex);
        self.drive(step)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(limit) = self.body_limit else {
            return Action::Continue;
        };
        if !end_of_stream && body_size <= limit {
            return Action::Pause; // let Envoy buffer until the end
        }
        self.finish_body(body_size.min(limit + 1))
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        // With trailers the body never reports end_of_stream: the trailers end it.
        if self.body_limit.is_none() {
            return Action::Continue;
        }
        let size = self
            .get_http_request_body(0, usize::MAX >> 1)
            .map_or(0, |b| b.len());
        self.finish_body(size)
    }
}

impl DynedgeHttp {
    fn finish_body(&mut self, size: usize) -> Action {
        self.body_limit = None;
        let body = self.get_http_request_body(0, size).unwrap_or_default();
        let now_ms = self.now_ms();
        let env = Env {
            now_ms,
            random: self.random.hash_one(now_ms),
            kv: &SharedData,
        };
        let Some(ex) = self.exchange.as_mut() else {
            return Action::Continue;
        };
        let step = ex.on_body(&self.cfg, body, &env);
        self.drive(step)
    }
}
