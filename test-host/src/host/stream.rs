//! Driving one HTTP stream through the filter: request, response, end of stream.

use std::collections::BTreeMap;

use super::{i, Host};
use crate::abi::Callback;
use crate::model::{Ctx, Error, Forwarded, LocalResponse, Outcome, Request, Response};
use crate::world::{Message, Stream};

impl Host {
    /// Sends a downstream request through the filter: context creation, request headers, body
    /// (if any), trailers (if any), stopping early if the filter replies or resets. Then
    /// answers callouts with the responder, if one is set.
    pub fn request(&mut self, req: Request) -> Result<Ctx, Error> {
        let worker = req.worker;
        let Some(root) = self.workers.get(worker).map(|w| w.root) else {
            return Err(Error::Usage(format!(
                "request on worker {worker}, but the host has {} worker(s)",
                self.workers.len()
            )));
        };
        let properties = request_properties(&req);
        let n_headers = req.headers.len() as u32;
        let (body_len, n_trailers) = (req.body.len() as u32, req.trailers.len() as u32);
        let id = {
            let mut world = self.world();
            let id = world.next_context;
            let mut props = properties;
            props
                .entry("request.id".into())
                .or_insert_with(|| format!("test-host-{id}").into_bytes());
            props
                .entry("connection_id".into())
                .or_insert_with(|| u64::from(id).to_le_bytes().to_vec());
            let stream = Stream::new(
                Message {
                    headers: req.headers,
                    body: req.body,
                    trailers: req.trailers,
                },
                props,
            );
            world.new_context(worker, root, Some(stream))
        };
        self.invoke(
            worker,
            Callback::ContextCreate,
            id,
            "proxy_on_context_create",
            &[i(id), i(root)],
        )?;
        let eos = body_len == 0 && n_trailers == 0;
        let a = self.invoke(
            worker,
            Callback::RequestHeaders,
            id,
            "proxy_on_request_headers",
            &[i(id), i(n_headers), i(eos as u32)],
        )?;
        self.after_request_callback(id, a, "proxy_on_request_headers");
        if body_len > 0 && !self.settled(id) {
            if let Some(s) = self.world().stream_mut(id) {
                s.body_seen = true;
            }
            let a = self.invoke(
                worker,
                Callback::RequestBody,
                id,
                "proxy_on_request_body",
                &[i(id), i(body_len), i((n_trailers == 0) as u32)],
            )?;
            self.after_request_callback(id, a, "proxy_on_request_body");
        }
        if n_trailers > 0 && !self.settled(id) {
            let a = self.invoke(
                worker,
                Callback::RequestTrailers,
                id,
                "proxy_on_request_trailers",
                &[i(id), i(n_trailers)],
            )?;
            self.after_request_callback(id, a, "proxy_on_request_trailers");
        }
        if let Some(s) = self.world().stream_mut(id) {
            s.request_delivered = true;
            if !s.paused && s.local_response.is_none() && !s.reset {
                s.forwarded = true;
            }
        }
        self.pump()?;
        Ok(Ctx(id))
    }

    pub(super) fn settled(&self, ctx: u32) -> bool {
        self.world().stream(ctx).is_none_or(Stream::request_settled)
    }

    pub(super) fn after_request_callback(&mut self, ctx: u32, action: Option<i32>, callback: &str) {
        let mut world = self.world();
        let paused = match action {
            None | Some(0) => false,
            Some(1) => true,
            Some(other) => {
                world.note(format!(
                    "{callback}: returned action {other}, which ABI 0.2.1 does not define (treated as Pause)"
                ));
                true
            }
        };
        if let Some(s) = world.stream_mut(ctx) {
            if s.local_response.is_none() {
                s.paused = paused;
            }
        }
    }

    /// Delivers an upstream response to a forwarded stream (response headers, body, trailers).
    pub fn respond(&mut self, ctx: Ctx, response: Response) -> Result<(), Error> {
        let worker = {
            let mut world = self.world();
            let worker = world.contexts.get(&ctx.0).map(|c| c.worker);
            match (worker, world.stream_mut(ctx.0)) {
                (Some(w), Some(s)) if s.forwarded => {
                    s.response = Some(Message {
                        headers: response.headers.clone(),
                        body: response.body.clone(),
                        trailers: response.trailers.clone(),
                    });
                    w
                }
                _ => {
                    return Err(Error::Usage(format!(
                        "{ctx} was not forwarded upstream, so it cannot get an upstream response"
                    )))
                }
            }
        };
        let id = ctx.0;
        let (nh, nb, nt) = (
            response.headers.len() as u32,
            response.body.len() as u32,
            response.trailers.len() as u32,
        );
        let a = self.invoke(
            worker,
            Callback::ResponseHeaders,
            id,
            "proxy_on_response_headers",
            &[i(id), i(nh), i((nb == 0 && nt == 0) as u32)],
        )?;
        self.set_response_paused(id, a);
        if nb > 0 {
            let a = self.invoke(
                worker,
                Callback::ResponseBody,
                id,
                "proxy_on_response_body",
                &[i(id), i(nb), i((nt == 0) as u32)],
            )?;
            self.set_response_paused(id, a);
        }
        if nt > 0 {
            let a = self.invoke(
                worker,
                Callback::ResponseTrailers,
                id,
                "proxy_on_response_trailers",
                &[i(id), i(nt)],
            )?;
            self.set_response_paused(id, a);
        }
        if let Some(s) = self.world().stream_mut(id) {
            if !s.response_paused {
                s.response_delivered = true;
            }
        }
        self.pump()
    }

    pub(super) fn set_response_paused(&mut self, ctx: u32, action: Option<i32>) {
        if let Some(s) = self.world().stream_mut(ctx) {
            s.response_paused = action.unwrap_or(0) != 0;
        }
    }

    /// The upstream response as the downstream client gets it (after the filter's changes),
    /// once the filter let it through.
    pub fn downstream_response(&self, ctx: Ctx) -> Option<Response> {
        let world = self.world();
        let s = world.stream(ctx.0)?;
        if !(s.response_delivered || (s.response.is_some() && !s.response_paused)) {
            return None;
        }
        s.response.as_ref().map(|m| Response {
            headers: m.headers.clone(),
            body: m.body.clone(),
            trailers: m.trailers.clone(),
        })
    }

    /// Ends the stream as Envoy does: `proxy_on_log`, `proxy_on_done`, `proxy_on_delete`.
    /// Pending callouts of the stream are cancelled.
    pub fn finish(&mut self, ctx: Ctx) -> Result<(), Error> {
        let worker = self
            .world()
            .contexts
            .get(&ctx.0)
            .filter(|c| c.root != 0)
            .map(|c| c.worker)
            .ok_or_else(|| Error::Usage(format!("{ctx} is not a stream")))?;
        for (cb, name) in [
            (Callback::Log, "proxy_on_log"),
            (Callback::Done, "proxy_on_done"),
            (Callback::Delete, "proxy_on_delete"),
        ] {
            self.invoke(worker, cb, ctx.0, name, &[i(ctx.0)])?;
        }
        let mut world = self.world();
        world.calls.retain(|_, c| c.context != ctx);
        if let Some(s) = world.stream_mut(ctx.0) {
            s.finished = true;
        }
        Ok(())
    }

    /// Where the stream stands.
    pub fn outcome(&self, ctx: Ctx) -> Outcome {
        let world = self.world();
        match world.stream(ctx.0) {
            None => Outcome::Paused,
            Some(s) => {
                if let Some(r) = &s.local_response {
                    Outcome::Replied(r.clone())
                } else if s.reset {
                    Outcome::Reset
                } else if s.forwarded {
                    Outcome::Forwarded(Forwarded {
                        headers: s.request.headers.clone(),
                        body: s.request.body.clone(),
                        trailers: s.request.trailers.clone(),
                    })
                } else {
                    Outcome::Paused
                }
            }
        }
    }

    /// The local reply the filter sent on this stream, if any.
    pub fn local_response(&self, ctx: Ctx) -> Option<LocalResponse> {
        self.world().stream(ctx.0)?.local_response.clone()
    }

    /// The request as forwarded upstream, if the filter let it through.
    pub fn forwarded(&self, ctx: Ctx) -> Option<Forwarded> {
        match self.outcome(ctx) {
            Outcome::Forwarded(f) => Some(f),
            _ => None,
        }
    }
}

/// Properties Envoy exposes for a stream, derived from the request.
fn request_properties(req: &Request) -> BTreeMap<String, Vec<u8>> {
    let mut p = BTreeMap::new();
    let h = |n: &str| crate::model::find(&req.headers, n).unwrap_or("").to_owned();
    p.insert("source.address".to_owned(), req.peer.clone().into_bytes());
    if let Some(port) = req
        .peer
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse::<i64>().ok())
    {
        p.insert("source.port".to_owned(), port.to_le_bytes().to_vec());
    }
    p.insert(
        "destination.address".to_owned(),
        b"127.0.0.1:10000".to_vec(),
    );
    p.insert(
        "destination.port".to_owned(),
        10000i64.to_le_bytes().to_vec(),
    );
    let path = h(":path");
    p.insert(
        "request.url_path".to_owned(),
        path.split('?').next().unwrap_or("").as_bytes().to_vec(),
    );
    p.insert("request.path".to_owned(), path.into_bytes());
    p.insert("request.method".to_owned(), h(":method").into_bytes());
    p.insert("request.host".to_owned(), h(":authority").into_bytes());
    p.insert("request.scheme".to_owned(), h(":scheme").into_bytes());
    p.insert("request.protocol".to_owned(), b"HTTP/1.1".to_vec());
    if let Some(v) = &req.tls_version {
        p.insert("connection.tls_version".to_owned(), v.clone().into_bytes());
        p.insert("connection.mtls".to_owned(), vec![0]);
    }
    for (k, v) in &req.properties {
        p.insert(k.clone(), v.clone());
    }
    p
}
