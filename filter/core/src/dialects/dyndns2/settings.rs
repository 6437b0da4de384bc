//! `dyndns2` in the plugin configuration, and how a DynDNS2 endpoint shapes its replies.

use serde::Deserialize;

use crate::config::ConfigError;

/// How a DynDNS2 endpoint maps reply codes to HTTP statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMode {
    /// dyn.com and ApertoDNS Layer 1: 200 for every code (old routers read only the body).
    Always200,
    /// CertaDNS: 401 badauth, 404 nohost, 429 abuse, 500 dnserr, ...
    CertaDns,
}

#[derive(Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawDyndns2 {
    #[serde(default)]
    require_user_agent: Option<bool>,
    #[serde(default)]
    max_hosts: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct Dyndns2Settings {
    pub require_user_agent: bool,
    pub max_hosts: usize,
}

impl RawDyndns2 {
    pub fn compile(self) -> Result<Dyndns2Settings, ConfigError> {
        let max_hosts = self.max_hosts.unwrap_or(20);
        if !(1..=100).contains(&max_hosts) {
            return Err(ConfigError {
                path: "dyndns2.max_hosts".into(),
                message: "must be 1..=100".into(),
            });
        }
        Ok(Dyndns2Settings {
            require_user_agent: self.require_user_agent.unwrap_or(true),
            max_hosts,
        })
    }
}
