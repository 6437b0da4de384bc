//! The adapter: snapshots a Pingora request, drives the core's [`Exchange`], performs its
//! [`Step`]s, and writes the core's reply. It makes no decisions of its own.

use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use dynedge_core::maintenance::Maintenance;
use dynedge_core::{
    Callout, CalloutId, CalloutResult, Config, Env, Exchange, MemoryKv, Outcome, Reply, Request,
    Step,
};
use pingora::connectors::http::Connector;
use pingora::connectors::ConnectorOptions;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use tokio::task::JoinSet;

use crate::callout::{self, Clusters};
use crate::group_commit::{Committer, Ticket};
use crate::metrics::Metrics;

/// How long the rest of an unread request body is discarded after an early reply.
const DRAIN_AFTER_REPLY: std::time::Duration = std::time::Duration::from_secs(1);

/// Where the core's audit lines (one JSON object each, secrets already absent) go.
pub type LogSink = Arc<dyn Fn(&str) + Send + Sync>;

/// Everything the core needs from its host, shared by every worker thread and every service
/// of the process: the configuration (swappable), the KV, the backend connections, counters.
pub struct Gateway {
    config: RwLock<Arc<Config>>,
    kv: MemoryKv,
    clusters: Clusters,
    connector: Connector,
    metrics: Metrics,
    log: LogSink,
    /// The sync, sweep and webhook schedule (run by [`crate::Maintainer`]).
    pub(crate) maintenance: Mutex<Maintenance>,
    /// The zones' write queues and batches in flight, shared by every request.
    pub(crate) committer: Committer,
}

/// Writes each audit line to standard output.
pub fn stdout_log() -> LogSink {
    Arc::new(|line: &str| println!("{line}"))
}

impl Gateway {
    /// A gateway for `config`, whose backends are reached through `clusters`. Share it with
    /// an `Arc` between every service of the server.
    /// The etcd store needs the plugin JSON itself: use [`Gateway::from_json`].
    pub fn new(config: Config, clusters: Clusters) -> Result<Gateway, String> {
        if config.store.etcd().is_some() {
            return Err(
                "the etcd store merges its credentials into the plugin JSON: \
                        build the gateway with Gateway::from_json"
                    .into(),
            );
        }
        Gateway::build(config, Vec::new(), clusters)
    }

    /// A gateway for the plugin JSON `raw` (either store).
    pub fn from_json(raw: Vec<u8>, clusters: Clusters) -> Result<Gateway, String> {
        let config = Config::from_json(&raw).map_err(|e| e.to_string())?;
        let fingerprint = dynedge_core::adapter::fingerprint(&raw);
        let gateway = Gateway::build(config, raw, clusters)?;
        gateway.metrics.config_loaded(Ok(&fingerprint));
        Ok(gateway)
    }

    fn build(config: Config, raw: Vec<u8>, clusters: Clusters) -> Result<Gateway, String> {
        clusters.check(&config)?;
        pingora::tls::install_default_crypto_provider();
        let connector = Connector::new(clusters.ca_file().map(|ca| ConnectorOptions {
            ca_file: Some(ca.to_string()),
            ..ConnectorOptions::new(128)
        }));
        Ok(Gateway {
            config: RwLock::new(Arc::new(config)),
            kv: MemoryKv::default(),
            clusters,
            connector,
            metrics: Metrics::default(),
            log: stdout_log(),
            maintenance: Mutex::new(Maintenance::new(raw)),
            committer: Committer::default(),
        })
    }

    /// Sends the audit lines to `log` instead of standard output.
    pub fn with_log(mut self, log: LogSink) -> Gateway {
        self.log = log;
        self
    }

    /// The configuration new requests are served from.
    pub fn config(&self) -> Arc<Config> {
        match self.config.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Swaps in a new configuration (SIGHUP). Requests already running finish with the old
    /// one. Refused, and the old one kept, when a backend's cluster has no address.
    pub fn replace_config(&self, config: Config) -> Result<(), String> {
        self.clusters.check(&config)?;
        let new = Arc::new(config);
        match self.config.write() {
            Ok(mut c) => *c = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
        Ok(())
    }

    /// Reloads the plugin JSON. With the etcd store, it is served once the sync that runs at
    /// the next tick has merged the credentials into it (until then, the old one).
    pub fn reload_json(&self, raw: Vec<u8>) -> Result<(), String> {
        let fingerprint = dynedge_core::adapter::fingerprint(&raw);
        let result = self.reload_raw(raw);
        self.metrics.config_loaded(
            result
                .as_ref()
                .map(|()| fingerprint.as_str())
                .map_err(|_| ()),
        );
        result
    }

    fn reload_raw(&self, raw: Vec<u8>) -> Result<(), String> {
        let config = Config::from_json(&raw).map_err(|e| e.to_string())?;
        self.clusters.check(&config)?;
        let etcd = config.store.etcd().is_some();
        if let Ok(mut m) = self.maintenance.lock() {
            m.reconfigure(raw);
        }
        if etcd {
            Ok(())
        } else {
            self.replace_config(config)
        }
    }

    /// The counters, gauges and histograms the core named (`dynedge_core::metrics`).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The shared in-process KV (proxy-wasm shared data's equivalent).
    pub fn kv(&self) -> &MemoryKv {
        &self.kv
    }

    pub(crate) fn env(&self) -> Env<'_> {
        Env {
            now_ms: now_ms(),
            random: random_u64(),
            kv: &self.kv,
        }
    }

    /// Answers a dynedge route and returns `Ok(true)`, or returns `Ok(false)` for any other
    /// request (the caller proxies it). Call it first thing in a `request_filter`.
    pub async fn handle(self: &Arc<Self>, session: &mut Session) -> pingora::Result<bool> {
        let cfg = self.config();
        let req = snapshot(session);
        let end_of_stream = session.is_body_empty();
        let (mut ex, mut step) = Exchange::start(&cfg, req, end_of_stream, &self.env());
        if let Step::NeedBody { limit } = step {
            let body = read_body(session, limit).await?;
            step = ex.on_body(&cfg, body, &self.env());
        }
        let mut outcome = match self.drive(step, &mut ex).await {
            Step::Pass => return Ok(false),
            Step::Done(outcome) => outcome,
            // Wait: nothing is left to wait on (a lost task). NeedBody comes only first; Call
            // and Commit never come back from drive. The core answers in the dialect.
            Step::NeedBody { .. } | Step::Call(_) | Step::Commit(_) | Step::Wait => {
                ex.abort(&cfg, &self.env())
            }
        };
        // An exchange's outcome always carries a reply (`abort`'s too).
        let reply = outcome.reply.take().unwrap_or_else(Reply::emergency);
        self.record(outcome);
        write_reply(session, &reply).await?;
        // A reply sent before the whole body was read (413, or a refusal before the body):
        // closing with unread bytes makes the kernel reset the connection, which can destroy
        // the reply before the client reads it. Discard the rest for a moment first, as
        // Envoy's delayed close does.
        if !session.is_body_done() {
            let _ = tokio::time::timeout(DRAIN_AFTER_REPLY, session.drain_request_body()).await;
        }
        Ok(true)
    }

    /// Performs `Step::Call`s concurrently and hands `Step::Commit`s to the group commit,
    /// feeding each result and answer back to the exchange, until the core returns something
    /// else (`Pass`, `NeedBody` or `Done`), or `Wait` when nothing is outstanding any more.
    async fn drive(self: &Arc<Self>, mut step: Step, ex: &mut Exchange) -> Step {
        let mut calls: JoinSet<(CalloutId, CalloutResult)> = JoinSet::new();
        // Taken at the first write; dropping it (this future ends or is dropped with its
        // client) takes this request's waiting writes out of their zones' queues.
        let mut ticket = None;
        let mut writes_out = 0usize;
        loop {
            step = match step {
                Step::Call(list) => {
                    for (id, c) in list {
                        let gw = self.clone();
                        calls.spawn(async move { (id, gw.perform(&c).await) });
                    }
                    Step::Wait
                }
                Step::Commit(writes) => {
                    writes_out = writes_out.saturating_add(writes.len());
                    let t = ticket.get_or_insert_with(|| self.ticket());
                    self.commit(t, writes);
                    Step::Wait
                }
                Step::Wait => {
                    let answers = ticket
                        .as_mut()
                        .filter(|_| writes_out > 0)
                        .map(|t: &mut Ticket| &mut t.answers);
                    let waits_for_answer = answers.is_some();
                    let answer = async {
                        match answers {
                            Some(rx) => rx.recv().await,
                            None => None,
                        }
                    };
                    tokio::select! {
                        Some((id, a)) = answer, if waits_for_answer => {
                            writes_out = writes_out.saturating_sub(1);
                            ex.on_write(id, a, &self.env())
                        }
                        Some(joined) = calls.join_next(), if !calls.is_empty() => match joined {
                            Ok((id, result)) => ex.on_callout(id, result, &self.env()),
                            // A callout task never panics; were one lost, the core would wait
                            // on until the other results or the client's own timeout end it.
                            Err(_) => Step::Wait,
                        },
                        // The core still waits, but nothing is left to wait on.
                        else => return Step::Wait,
                    }
                }
                other => return other,
            };
        }
    }

    /// Applies an outcome except its reply (sent by the caller): KV writes and rate-limit
    /// counts, audit lines, counters, histogram samples; webhook deliveries go out in the
    /// background (never awaited by the request).
    pub(crate) fn record(self: &Arc<Self>, outcome: Outcome) {
        // Exhaustive: a new field of `Outcome` does not compile until it is applied here.
        let Outcome {
            reply: _,
            writes,
            log,
            counters,
            notify,
            counts,
            samples,
        } = outcome;
        if let Ok(mut m) = self.maintenance.lock() {
            for n in notify {
                for e in m.notify(n).errors {
                    eprintln!("{e}");
                }
            }
        }
        self.kv.apply(&writes);
        for c in &counts {
            self.kv.count(c, now_ms() / 1000);
        }
        for line in &log {
            (self.log)(line);
        }
        for name in &counters {
            self.metrics.increment(name);
        }
        for (name, value) in &samples {
            self.metrics.record(name, *value);
        }
    }
}

impl Gateway {
    /// Performs one callout (never an error: a failure is a result the core handles), and
    /// counts it as Envoy counts a cluster's requests (`cluster.NAME.upstream_rq_total`).
    pub(crate) async fn perform(&self, c: &Callout) -> CalloutResult {
        self.metrics
            .increment(&format!("cluster.{}.upstream_rq_total", c.cluster));
        callout::perform(&self.connector, &self.clusters, c).await
    }
}

/// The request as the core sees it.
fn snapshot(session: &Session) -> Request {
    let h = session.req_header();
    Request {
        method: h.method.as_str().to_string(),
        path: h
            .uri
            .path_and_query()
            .map_or_else(|| h.uri.path().to_string(), |pq| pq.as_str().to_string()),
        headers: h
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: Vec::new(),
        peer: session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip()),
    }
}

/// Reads the request body, stopping one byte past `limit` (the core refuses what is longer).
async fn read_body(session: &mut Session, limit: usize) -> pingora::Result<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = session.read_request_body().await? {
        body.extend_from_slice(&chunk);
        if body.len() > limit {
            body.truncate(limit + 1);
            break;
        }
    }
    Ok(body)
}

/// Sends a core reply as is, with `Content-Length`, through the downstream modules (so a
/// module such as HSTS sees local replies too).
pub async fn write_reply(session: &mut Session, reply: &Reply) -> pingora::Result<()> {
    let mut resp = ResponseHeader::build(reply.status, Some(reply.headers.len() + 1))?;
    for (k, v) in &reply.headers {
        resp.append_header(k.clone(), v.as_str())?;
    }
    resp.insert_header("content-length", reply.body.len().to_string())?;
    session.write_response_header(Box::new(resp), false).await?;
    session
        .write_response_body(Some(Bytes::copy_from_slice(&reply.body)), true)
        .await
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// 64 random bits from the TLS provider's CSPRNG (ring); the core uses them for ids and nonces.
fn random_u64() -> u64 {
    let mut buf = [0u8; 8];
    if let Some(p) = pingora::tls::CryptoProvider::get_default() {
        if p.secure_random.fill(&mut buf).is_ok() {
            return u64::from_le_bytes(buf);
        }
    }
    // No provider installed (cannot happen after `Gateway::new`): std's per-instance hash keys.
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}
