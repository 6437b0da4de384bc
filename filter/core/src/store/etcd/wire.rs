//! The etcd v3 JSON gateway: each call as a [`Callout`], each answer parsed (values base64
//! decoded, proto3's string-encoded 64-bit numbers read).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

use crate::backends::{Callout, CalloutResult};
use crate::store::EtcdStore;

pub fn user_key(s: &EtcdStore, name: &str) -> String {
    format!("{}users/{name}", s.prefix)
}
pub fn token_key(s: &EtcdStore, id: &str) -> String {
    format!("{}tokens/{id}", s.prefix)
}
pub fn host_key(s: &EtcdStore, name: &str) -> String {
    format!("{}hosts/{name}", s.prefix)
}
pub fn settings_key(s: &EtcdStore) -> String {
    format!("{}settings", s.prefix)
}

fn b64(s: &[u8]) -> String {
    B64.encode(s)
}

/// The `range_end` that lists every key starting with `prefix`.
pub fn prefix_end(prefix: &str) -> String {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last.saturating_add(1));
            return b64(&end);
        }
    }
    b64(&[0])
}

pub(super) fn call(s: &EtcdStore, op: &str, body: Value) -> Callout {
    Callout {
        cluster: s.cluster.clone(),
        method: crate::backends::Method::Post,
        authority: s.authority.clone(),
        path: format!("/v3/{op}"),
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
        timeout_ms: s.timeout_ms,
    }
}

pub(super) fn range_op(key: &str) -> Value {
    json!({"key": b64(key.as_bytes())})
}

pub(super) fn prefix_op(prefix: &str) -> Value {
    json!({"key": b64(prefix.as_bytes()), "range_end": prefix_end(prefix)})
}

/// A linearizable read of one key.
pub fn range(s: &EtcdStore, key: &str) -> Callout {
    call(s, "kv/range", range_op(key))
}

pub fn delete(s: &EtcdStore, key: &str) -> Callout {
    call(s, "kv/deleterange", range_op(key))
}

/// Put `value` only if `key`'s mod_revision is still `mod_revision` (0 = the key is absent);
/// otherwise read the key, in the same round trip.
pub fn compare_and_put(s: &EtcdStore, key: &str, mod_revision: i64, value: &[u8]) -> Callout {
    let k = b64(key.as_bytes());
    call(
        s,
        "kv/txn",
        json!({
            "compare": [{"key": k, "target": "MOD", "result": "EQUAL",
                         "mod_revision": mod_revision.to_string()}],
            "success": [{"request_put": {"key": k, "value": b64(value)}}],
            "failure": [{"request_range": {"key": k}}],
        }),
    )
}

/// One key-value as the gateway returns it (base64 decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub mod_revision: i64,
}

/// What a call answered, or why it did not; `retryable` = no HTTP answer at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdError {
    pub message: String,
    pub retryable: bool,
}

fn body_json(result: &CalloutResult) -> Result<Value, EtcdError> {
    match result {
        CalloutResult::Failed(why) => Err(EtcdError {
            message: format!("etcd unreachable: {why}"),
            retryable: true,
        }),
        CalloutResult::Response { status, body, .. } => {
            if *status != 200 {
                let text: String = String::from_utf8_lossy(body).chars().take(200).collect();
                return Err(EtcdError {
                    message: format!("etcd answered {status}: {text}"),
                    retryable: false,
                });
            }
            serde_json::from_slice(body).map_err(|e| EtcdError {
                message: format!("etcd answer is not JSON: {e}"),
                retryable: false,
            })
        }
    }
}

/// proto3 JSON: 64-bit numbers are strings, defaults are omitted.
fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn kvs(v: &Value) -> Vec<Kv> {
    let decode = |v: &Value| {
        v.as_str()
            .and_then(|s| B64.decode(s).ok())
            .unwrap_or_default()
    };
    v.get("kvs")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|kv| Kv {
                    key: String::from_utf8_lossy(&decode(&kv["key"])).into_owned(),
                    value: decode(&kv["value"]),
                    mod_revision: int(&kv["mod_revision"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn parse_range(result: &CalloutResult) -> Result<Vec<Kv>, EtcdError> {
    Ok(kvs(&body_json(result)?))
}

/// A transaction's answer: did the compare hold, the revision after it, and its range results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResult {
    pub succeeded: bool,
    pub revision: i64,
    pub ranges: Vec<Vec<Kv>>,
}

pub fn parse_txn(result: &CalloutResult) -> Result<TxnResult, EtcdError> {
    let v = body_json(result)?;
    let ranges = v
        .get("responses")
        .and_then(Value::as_array)
        .map(|rs| {
            rs.iter()
                .filter_map(|r| r.get("response_range").map(kvs))
                .collect()
        })
        .unwrap_or_default();
    Ok(TxnResult {
        succeeded: v.get("succeeded").and_then(Value::as_bool).unwrap_or(false),
        revision: v.pointer("/header/revision").map_or(0, int),
        ranges,
    })
}
