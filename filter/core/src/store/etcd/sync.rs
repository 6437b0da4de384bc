//! The credential sync: one transaction reads every user and token (and the settings), and the
//! plugin configuration is rebuilt with them, so both stores are validated by one piece of code.

use serde_json::{json, Value};

use super::wire::{call, parse_txn, prefix_op, range_op, settings_key, Kv};
use crate::backends::{Callout, CalloutResult};
use crate::kv::KvView;
use crate::store::EtcdStore;

/// Shared-data key: when the credential snapshot was last synced (unix ms).
pub const SYNCED_KEY: &str = "dynedge:store:etcd:synced_ms";

/// One round trip that reads every user and token, and the settings.
pub fn sync_call(s: &EtcdStore) -> Callout {
    call(
        s,
        "kv/txn",
        json!({"success": [
            {"request_range": prefix_op(&format!("{}users/", s.prefix))},
            {"request_range": prefix_op(&format!("{}tokens/", s.prefix))},
            {"request_range": range_op(&settings_key(s))},
        ]}),
    )
}

/// The plugin configuration with its users and tokens replaced by etcd's (and the settings
/// merged), ready for [`crate::Config::from_json`]: one validation for both stores.
pub fn sync_apply(base_raw: &[u8], result: &CalloutResult) -> Result<Vec<u8>, String> {
    let txn = parse_txn(result).map_err(|e| e.message)?;
    let [users, tokens, settings] = txn.ranges.as_slice() else {
        return Err("etcd sync: unexpected answer shape".into());
    };
    let mut cfg: Value =
        serde_json::from_slice(base_raw).map_err(|e| format!("plugin configuration: {e}"))?;
    let parse_all = |list: &[Kv]| -> Result<Vec<Value>, String> {
        list.iter()
            .map(|kv| {
                serde_json::from_slice(&kv.value).map_err(|e| format!("etcd key {}: {e}", kv.key))
            })
            .collect()
    };
    let Some(map) = cfg.as_object_mut() else {
        return Err("plugin configuration: not a JSON object".into());
    };
    if let Some(Value::Object(over)) = settings
        .first()
        .map(|kv| serde_json::from_slice::<Value>(&kv.value))
        .transpose()
        .map_err(|e| format!("etcd settings: {e}"))?
    {
        for (k, v) in over {
            if k != "store" && k != "users" && k != "tokens" {
                map.insert(k, v);
            }
        }
    }
    map.insert("users".into(), Value::Array(parse_all(users)?));
    map.insert("tokens".into(), Value::Array(parse_all(tokens)?));
    Ok(cfg.to_string().into_bytes())
}

/// Is the credential snapshot older than the store allows?
pub fn is_stale(s: &EtcdStore, kv: &dyn KvView, now_ms: u64) -> bool {
    let synced = kv
        .get(SYNCED_KEY)
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    synced.saturating_add(s.max_stale_ms()) < now_ms
}
