//! One HTTP stream: snapshot the request, drive the core's exchange, perform its steps.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::UNIX_EPOCH;

use dynedge_core::{Config, Env, Exchange, Request, Step};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use crate::host::{self, SharedData};
use crate::vm::SharedVm;

pub struct DynedgeHttp {
    id: u32,
    cfg: Rc<Config>,
    /// Once the exchange needs more than its first step, it lives in the VM's state, where
    /// whichever context learns its calls' and writes' answers can drive it.
    vm: SharedVm,
    /// The exchange while it waits for the request body.
    awaiting_body: Option<(Exchange, usize)>,
    random: RandomState,
}

impl DynedgeHttp {
    pub fn new(id: u32, cfg: Rc<Config>, vm: SharedVm) -> Self {
        DynedgeHttp {
            id,
            cfg,
            vm,
            awaiting_body: None,
            random: RandomState::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.get_current_time()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
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

    fn env(&self, now_ms: u64) -> Env<'static> {
        Env {
            now_ms,
            random: self.random.hash_one(now_ms),
            kv: &SharedData,
        }
    }

    /// Performs the exchange's first step, computed at `now_ms` (the clock is read once per
    /// callback); returns what the current callback should return.
    fn drive(&mut self, ex: Exchange, step: Step, now_ms: u64) -> Action {
        match step {
            Step::Pass => Action::Continue,
            Step::NeedBody { limit } => {
                self.awaiting_body = Some((ex, limit));
                // Not Pause: the host turns a paused request-headers callback into
                // StopAllIterationAndWatermark, and then the body never reaches this filter.
                // The headers go on to the next filter, which must hold the request until the
                // body is complete (envoy/bootstrap.yaml.tmpl puts envoy.filters.http.buffer
                // there); this filter pauses the body until its end and answers locally.
                Action::Continue
            }
            step => self
                .vm
                .borrow_mut()
                .start(self.id, self.cfg.clone(), ex, step, now_ms),
        }
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
        let result = host::call_result(self, num_headers, body_size);
        self.vm.borrow_mut().on_response(token, result, self.id);
    }
}

impl Drop for DynedgeHttp {
    fn drop(&mut self) {
        self.vm.borrow_mut().end(self.id);
    }
}

impl HttpContext for DynedgeHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let req = self.snapshot();
        let now_ms = self.now_ms();
        let env = self.env(now_ms);
        let logged = dynedge_core::adapter::loggable_path(&req.path);
        let raw = req.path.clone();
        let (ex, step) = Exchange::start(&self.cfg, req, end_of_stream, &env);
        if !matches!(step, Step::Pass) && logged != raw {
            // dynedge answers this request itself: what Envoy logs as its path must not carry
            // the query's passwords or a path token (access logs, tap, tracing).
            self.set_http_request_header(":path", Some(&logged));
        }
        self.drive(ex, step, now_ms)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(limit) = self.awaiting_body.as_ref().map(|(_, l)| *l) else {
            return Action::Continue;
        };
        if !end_of_stream && body_size <= limit {
            return Action::Pause; // let Envoy buffer until the end
        }
        self.finish_body(body_size.min(limit + 1))
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        // With trailers the body never reports end_of_stream: the trailers end it.
        if self.awaiting_body.is_none() {
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
        let Some((mut ex, _)) = self.awaiting_body.take() else {
            return Action::Continue;
        };
        let body = self.get_http_request_body(0, size).unwrap_or_default();
        let now_ms = self.now_ms();
        let step = ex.on_body(&self.cfg, body, &self.env(now_ms));
        self.drive(ex, step, now_ms)
    }
}
