//! Where credentials and host state live: the store seam.
//!
//! Two stores, same semantics:
//! - **config** (default): users, tokens and ownership come from the JSON plugin configuration;
//!   a host's current records are what the DNS backend holds (read through, cached in the KV).
//!   Right for one gateway.
//! - **etcd**: users, tokens and ownership live under a key prefix in etcd, and each host's
//!   current addresses with them. The root context syncs credentials into shared data every
//!   `ttl_s` ([`etcd::sync_call`], [`etcd::sync_apply`]); updates are serialised across gateways
//!   by a compare-on-revision transaction ([`etcd::HostFlow`]). See `docs/etcd.md`.
//!
//! Either way the request path sees one [`crate::Config`]: the etcd store materialises its
//! credentials as the same users/tokens the JSON configuration has, so authentication,
//! ownership and scopes are one piece of code.

pub mod etcd;
#[cfg(test)]
#[allow(clippy::string_slice, clippy::arithmetic_side_effects)] // test code
mod tests;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use crate::config::ConfigError;

/// `"store"` in the plugin configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StoreConfig {
    #[default]
    Config,
    Etcd(EtcdStore),
}

/// Where the etcd v3 JSON gateway is and how to use it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct EtcdStore {
    /// The proxy's cluster (Envoy) or upstream (Pingora) of the etcd client URLs.
    #[serde(default = "default_cluster")]
    pub cluster: String,
    #[serde(default = "default_cluster")]
    pub authority: String,
    /// Every key dynedge uses starts with this.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Credentials are re-read this often: the bound on how long a revocation takes.
    #[serde(default = "default_ttl")]
    pub ttl_s: u64,
    /// Without a successful sync for this long, updates answer `911` (fail closed).
    #[serde(default)]
    pub max_stale_s: Option<u64>,
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

fn default_cluster() -> String {
    "etcd".into()
}
fn default_prefix() -> String {
    "/dynedge/".into()
}
fn default_ttl() -> u64 {
    5
}
fn default_timeout() -> u64 {
    1500
}

impl EtcdStore {
    /// How old the credential snapshot may get before updates are refused.
    pub fn max_stale_ms(&self) -> u64 {
        self.max_stale_s
            .unwrap_or(self.ttl_s.saturating_mul(3).saturating_add(2))
            .saturating_mul(1000)
    }
}

/// `"store"` as written: `{"type": "config"}` or `{"type": "etcd", ...}`.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum RawStore {
    Config {},
    Etcd(EtcdStore),
}

impl RawStore {
    /// Reads `"store"` so that a shape error names its place (`store: unknown field ...`).
    pub(crate) fn named<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RawStore>, D::Error> {
        let v = Option::<serde_json::Value>::deserialize(d)?;
        v.map(|v| serde_json::from_value(v).map_err(|e| D::Error::custom(format!("store: {e}"))))
            .transpose()
    }
}

impl StoreConfig {
    /// Checks the `"store"` read from the configuration (absent = the configuration store).
    pub fn compile(raw: Option<RawStore>) -> Result<StoreConfig, ConfigError> {
        let e = |path: &str, message: &str| ConfigError {
            path: format!("store.{path}"),
            message: message.into(),
        };
        match raw {
            None | Some(RawStore::Config {}) => Ok(StoreConfig::Config),
            Some(RawStore::Etcd(s)) => {
                if s.cluster.is_empty() || s.authority.is_empty() {
                    return Err(e("cluster", "must not be empty"));
                }
                if s.prefix.is_empty() {
                    return Err(e("prefix", "must not be empty"));
                }
                if !(1..=3600).contains(&s.ttl_s) {
                    return Err(e("ttl_s", "must be 1..=3600"));
                }
                if !(1..=60_000).contains(&s.timeout_ms) {
                    return Err(e("timeout_ms", "must be 1..=60000"));
                }
                Ok(StoreConfig::Etcd(s))
            }
        }
    }

    pub fn etcd(&self) -> Option<&EtcdStore> {
        match self {
            StoreConfig::Etcd(e) => Some(e),
            StoreConfig::Config => None,
        }
    }
}

#[cfg(test)]
mod config_tests {
    use super::*;
    use serde_json::json;

    fn store(v: serde_json::Value) -> Result<StoreConfig, ConfigError> {
        let mut c: serde_json::Value =
            serde_json::from_slice(include_bytes!("../../../../examples/dynedge.json")).unwrap();
        c["store"] = v;
        crate::Config::from_json(c.to_string().as_bytes()).map(|c| c.store)
    }

    #[test]
    fn absent_store_is_the_configuration() {
        assert_eq!(StoreConfig::compile(None).unwrap(), StoreConfig::Config);
        assert_eq!(
            store(json!({"type": "config"})).unwrap(),
            StoreConfig::Config
        );
    }

    #[test]
    fn etcd_store_takes_defaults_and_refuses_nonsense() {
        let s = store(json!({"type": "etcd"})).unwrap();
        let e = s.etcd().unwrap();
        assert_eq!(e.prefix, "/dynedge/");
        assert_eq!(e.max_stale_ms(), 17_000);
        let e = store(json!({"type": "etcd", "ttl_s": 0})).unwrap_err();
        assert_eq!(e.path, "store.ttl_s");
        let e = store(json!({"type": "etcd", "endpoint": "x"})).unwrap_err();
        assert!(
            e.message.starts_with("store: unknown field `endpoint`"),
            "{e}"
        );
        let e = store(json!({"type": "redis"})).unwrap_err();
        assert!(
            e.message.starts_with("store: unknown variant `redis`"),
            "{e}"
        );
    }

    #[test]
    fn expiry_is_refused_with_the_etcd_store() {
        let mut v: serde_json::Value =
            serde_json::from_slice(include_bytes!("../../../../examples/dynedge.json")).unwrap();
        v["store"] = json!({"type": "etcd"});
        v["zones"][0]["expiry_ttl_s"] = 3600.into();
        let e = crate::Config::from_json(v.to_string().as_bytes()).unwrap_err();
        assert!(
            e.message.contains("not supported with the etcd store"),
            "{e}"
        );
        v["zones"][0]["expiry_ttl_s"] = 0.into();
        assert!(crate::Config::from_json(v.to_string().as_bytes()).is_ok());
    }
}
