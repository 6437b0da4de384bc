//! Thin wrappers over proxy-wasm host calls: shared data as the core's KV, metrics, logs.

use std::cell::RefCell;
use std::collections::HashMap;

use std::time::Duration;

use dynedge_core::adapter::keys;
use dynedge_core::metrics;
use dynedge_core::{
    merge_count, Callout, CalloutFailure, CalloutId, CalloutResult, KvCount, KvView, KvWrite,
    Notify, Outcome, Reply,
};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::Context;
use proxy_wasm::types::{LogLevel, MetricType, Status};

pub fn log(level: LogLevel, msg: &str) {
    let _ = hostcalls::log(level, msg);
}

pub fn shared_get(key: &str) -> Option<Vec<u8>> {
    match hostcalls::get_shared_data(key) {
        Ok((Some(v), _)) if !v.is_empty() => Some(v),
        _ => None,
    }
}

/// Proxy-wasm shared data, shared by every worker VM of the Envoy process.
pub struct SharedData;

impl KvView for SharedData {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        shared_get(key)
    }
}

pub fn apply(writes: &[KvWrite]) {
    for w in writes {
        // An empty value is how shared data forgets a key (it has no delete).
        let value = w.value.as_deref().unwrap_or(&[]);
        if let Err(status) = hostcalls::set_shared_data(&w.key, Some(value), None) {
            log(
                LogLevel::Error,
                &format!("dynedge: shared data write failed: {status:?}"),
            );
        }
    }
}

/// Rate-limit increments: read, merge, write back with the CAS token; retry on a conflict
/// with another worker so no increment is lost.
pub fn count(counts: &[KvCount], now_s: u64) {
    for c in counts {
        for _ in 0..16 {
            let (old, cas) = hostcalls::get_shared_data(&c.key).unwrap_or((None, None));
            let next = merge_count(old.as_deref(), now_s, c.window_s);
            match hostcalls::set_shared_data(&c.key, Some(&next), cas) {
                Err(Status::CasMismatch) => continue,
                _ => break,
            }
        }
    }
}

/// Publishes the raw configuration unless the same one is already there.
pub fn publish_config(raw: &[u8], fingerprint: &str, m: &Metrics) {
    m.set(
        &metrics::config_generation(),
        metrics::generation(fingerprint),
    );
    if shared_get(keys::CONFIG_GENERATION).as_deref() == Some(fingerprint.as_bytes()) {
        return;
    }
    // Only the first VM to publish a configuration counts it.
    m.increment(&metrics::config_load(true));
    apply(&[
        KvWrite::put(keys::CONFIG.to_string(), raw.to_vec()),
        KvWrite::put(
            keys::CONFIG_GENERATION.to_string(),
            fingerprint.as_bytes().to_vec(),
        ),
    ]);
}

/// Tokens of the calls in flight, and the calls that could not be dispatched at all.
pub type Dispatched = (Vec<(u32, CalloutId)>, Vec<(CalloutId, CalloutResult)>);

/// Dispatches the core's callouts from `ctx` (so the SDK routes each answer back to it).
/// Returns the tokens of the calls in flight and the calls that could not be dispatched.
pub fn dispatch<C: Context + ?Sized>(ctx: &C, calls: Vec<(CalloutId, Callout)>) -> Dispatched {
    let mut in_flight = Vec::new();
    let mut failed = Vec::new();
    for (id, c) in calls {
        let mut headers: Vec<(&str, &str)> = vec![
            (":method", c.method.as_str()),
            (":path", &c.path),
            (":authority", &c.authority),
        ];
        headers.extend(c.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let body = (!c.body.is_empty()).then_some(c.body.as_slice());
        match ctx.dispatch_http_call(
            &c.cluster,
            headers,
            body,
            vec![],
            Duration::from_millis(c.timeout_ms),
        ) {
            Ok(token) => in_flight.push((token, id)),
            Err(status) => failed.push((
                id,
                CalloutResult::Failed(CalloutFailure::NotSent(format!(
                    "dispatch to {} failed: {status:?}",
                    c.cluster
                ))),
            )),
        }
    }
    (in_flight, failed)
}

/// Reads a call's answer; Envoy reports a timeout, reset or refused connection as a response
/// without headers.
pub fn call_result<C: Context + ?Sized>(
    ctx: &C,
    num_headers: usize,
    body_size: usize,
) -> CalloutResult {
    if num_headers == 0 {
        return CalloutResult::Failed(CalloutFailure::NoResponse);
    }
    // Bytes, not Strings: the SDK's String form panics (and traps the VM) on a header value
    // that is not UTF-8, which a broken backend can send.
    let headers = lossy_headers(ctx.get_http_call_response_headers_bytes());
    let status = headers
        .iter()
        .find(|(k, _)| k == ":status")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    CalloutResult::Response {
        status,
        headers,
        body: ctx
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default(),
    }
}

/// Applies a finished outcome's KV writes, counts, audit log and metrics; returns what the
/// caller still owes: the reply to send, then the webhook deliveries to hand over.
pub fn record(outcome: Outcome, metrics: &Metrics, now_s: u64) -> (Option<Reply>, Vec<Notify>) {
    // Exhaustive: a new field of `Outcome` does not compile until it is applied here.
    let Outcome {
        reply,
        writes,
        log: lines,
        counters,
        notify,
        counts,
        samples,
    } = outcome;
    apply(&writes);
    count(&counts, now_s);
    for line in &lines {
        log(LogLevel::Info, line);
    }
    for c in &counters {
        metrics.increment(c);
    }
    for (name, value) in &samples {
        metrics.record(name, *value);
    }
    (reply, notify)
}

/// Counters and histograms by name, defined on first use (per VM; Envoy aggregates them).
#[derive(Default)]
pub struct Metrics {
    ids: RefCell<HashMap<String, u32>>,
}

impl Metrics {
    fn id(&self, kind: MetricType, name: &str) -> Option<u32> {
        let mut ids = self.ids.borrow_mut();
        if let Some(id) = ids.get(name) {
            return Some(*id);
        }
        let id = hostcalls::define_metric(kind, name).ok()?;
        ids.insert(name.to_string(), id);
        Some(id)
    }

    pub fn increment(&self, name: &str) {
        if let Some(id) = self.id(MetricType::Counter, name) {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }

    /// A gauge's value (Envoy: `record_metric` on a `Gauge` sets it).
    pub fn set(&self, name: &str, value: u64) {
        if let Some(id) = self.id(MetricType::Gauge, name) {
            let _ = hostcalls::record_metric(id, value);
        }
    }

    /// One histogram sample (Envoy: `record_metric` on a `Histogram`).
    pub fn record(&self, name: &str, value: u64) {
        if let Some(id) = self.id(MetricType::Histogram, name) {
            let _ = hostcalls::record_metric(id, value);
        }
    }
}

/// Header values as the core sees them: bytes that are not UTF-8 become U+FFFD.
pub fn lossy_headers(headers: Vec<(String, Vec<u8>)>) -> Vec<(String, String)> {
    headers
        .into_iter()
        .map(|(k, v)| {
            // A UTF-8 value (nearly all) keeps its buffer instead of being copied.
            let v = String::from_utf8(v)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            (k, v)
        })
        .collect()
}
