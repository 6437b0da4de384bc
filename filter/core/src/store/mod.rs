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

use serde::Deserialize;

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

#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "lowercase")]
pub(crate) enum RawStore {
    Config {},
    Etcd(EtcdStore),
}

impl StoreConfig {
    /// Parses and checks the `"store"` value; errors are `(field, message)`.
    pub fn from_value(v: Option<&serde_json::Value>) -> Result<StoreConfig, (String, String)> {
        let Some(v) = v else {
            return Ok(StoreConfig::Config);
        };
        let raw: RawStore =
            serde_json::from_value(v.clone()).map_err(|e| ("store".into(), e.to_string()))?;
        match raw {
            RawStore::Config {} => Ok(StoreConfig::Config),
            RawStore::Etcd(e) => {
                if e.cluster.is_empty() || e.authority.is_empty() {
                    return Err(("store.cluster".into(), "must not be empty".into()));
                }
                if e.prefix.is_empty() {
                    return Err(("store.prefix".into(), "must not be empty".into()));
                }
                if !(1..=3600).contains(&e.ttl_s) {
                    return Err(("store.ttl_s".into(), "must be 1..=3600".into()));
                }
                if !(1..=60_000).contains(&e.timeout_ms) {
                    return Err(("store.timeout_ms".into(), "must be 1..=60000".into()));
                }
                Ok(StoreConfig::Etcd(e))
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

    #[test]
    fn absent_store_is_the_configuration() {
        assert_eq!(StoreConfig::from_value(None).unwrap(), StoreConfig::Config);
        let v = json!({"type": "config"});
        assert_eq!(
            StoreConfig::from_value(Some(&v)).unwrap(),
            StoreConfig::Config
        );
    }

    #[test]
    fn etcd_store_takes_defaults_and_refuses_nonsense() {
        let v = json!({"type": "etcd"});
        let s = StoreConfig::from_value(Some(&v)).unwrap();
        let e = s.etcd().unwrap();
        assert_eq!(e.prefix, "/dynedge/");
        assert_eq!(e.max_stale_ms(), 17_000);
        let v = json!({"type": "etcd", "ttl_s": 0});
        assert_eq!(
            StoreConfig::from_value(Some(&v)).unwrap_err().0,
            "store.ttl_s"
        );
        let v = json!({"type": "etcd", "endpoint": "x"});
        assert!(StoreConfig::from_value(Some(&v)).is_err());
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
