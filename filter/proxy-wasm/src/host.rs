//! Thin wrappers over proxy-wasm host calls: shared data as the core's KV, metrics, logs.

use std::cell::RefCell;
use std::collections::HashMap;

use dynedge_core::kv::keys;
use dynedge_core::{KvView, KvWrite};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, MetricType};

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

/// Publishes the raw configuration unless the same one is already there.
pub fn publish_config(raw: &[u8], fingerprint: &str) {
    if shared_get(keys::CONFIG_GENERATION).as_deref() == Some(fingerprint.as_bytes()) {
        return;
    }
    apply(&[
        KvWrite::put(keys::CONFIG.to_string(), raw.to_vec()),
        KvWrite::put(
            keys::CONFIG_GENERATION.to_string(),
            fingerprint.as_bytes().to_vec(),
        ),
    ]);
}

/// Counters by name, defined on first use (per VM; Envoy aggregates them).
#[derive(Default)]
pub struct Metrics {
    ids: RefCell<HashMap<String, u32>>,
}

impl Metrics {
    pub fn increment(&self, name: &str) {
        let mut ids = self.ids.borrow_mut();
        let id = match ids.get(name) {
            Some(id) => *id,
            None => match hostcalls::define_metric(MetricType::Counter, name) {
                Ok(id) => {
                    ids.insert(name.to_string(), id);
                    id
                }
                Err(_) => return,
            },
        };
        let _ = hostcalls::increment_metric(id, 1);
    }
}
