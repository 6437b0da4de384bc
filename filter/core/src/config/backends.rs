//! `backends`: where DNS changes go, by name. The compiled types live with their logic
//! (`backends/settings.rs`); this reads the JSON and names the place of every error.

use std::collections::HashMap;

use serde::Deserialize;

use super::error::{err, ConfigError, Secret};
use crate::backends::rfc2136::{key_from_spec, KeyError, KeySpec, Rfc2136Backend};
use crate::backends::settings::{Backend, PowerDnsBackend};

#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub(super) enum RawBackend {
    Powerdns {
        cluster: String,
        authority: String,
        #[serde(default = "default_server_id")]
        server_id: String,
        api_key: Secret,
        #[serde(default = "default_timeout")]
        timeout_ms: u64,
    },
    /// RFC 2136 UPDATE + TSIG over a DoH relay (`backends/rfc2136/`).
    Rfc2136 {
        cluster: String,
        authority: String,
        #[serde(default = "default_doh_path")]
        path: String,
        #[serde(default)]
        key_name: Option<String>,
        #[serde(default)]
        algorithm: Option<String>,
        #[serde(default)]
        secret: Option<Secret>,
        /// The text of a BIND key file.
        #[serde(default)]
        key_file: Option<Secret>,
        #[serde(default = "default_doh_timeout")]
        timeout_ms: u64,
    },
}

fn default_doh_path() -> String {
    "/dns-query".into()
}
/// Above dnsdist's 3.7 s "no downstream" answer and Knot's rare 1 s UPDATE (docs/rfc2136.md, Measured).
fn default_doh_timeout() -> u64 {
    5000
}

fn default_server_id() -> String {
    "localhost".into()
}
fn default_timeout() -> u64 {
    2000
}

/// Where a backend's callouts go: a proxy cluster, an authority, a timeout.
fn check_http_target(
    path: &str,
    cluster: &str,
    authority: &str,
    timeout_ms: u64,
) -> Result<(), ConfigError> {
    if cluster.is_empty() {
        return Err(err(format!("{path}.cluster"), "must not be empty"));
    }
    if authority.is_empty() {
        return Err(err(format!("{path}.authority"), "must not be empty"));
    }
    if !(1..=60_000).contains(&timeout_ms) {
        return Err(err(format!("{path}.timeout_ms"), "must be 1..=60000"));
    }
    Ok(())
}

pub(super) fn compile(
    raw: HashMap<String, RawBackend>,
) -> Result<HashMap<String, Backend>, ConfigError> {
    let mut backends = HashMap::new();
    for (name, b) in raw {
        let path = format!("backends.{name}");
        let backend = match b {
            RawBackend::Powerdns {
                cluster,
                authority,
                server_id,
                api_key,
                timeout_ms,
            } => {
                check_http_target(&path, &cluster, &authority, timeout_ms)?;
                if api_key.0.is_empty() {
                    return Err(err(format!("{path}.api_key"), "must not be empty"));
                }
                Backend::PowerDns(PowerDnsBackend {
                    cluster,
                    authority,
                    server_id,
                    api_key,
                    timeout_ms,
                })
            }
            RawBackend::Rfc2136 {
                cluster,
                authority,
                path: doh_path,
                key_name,
                algorithm,
                secret,
                key_file,
                timeout_ms,
            } => {
                check_http_target(&path, &cluster, &authority, timeout_ms)?;
                if !doh_path.starts_with('/') {
                    return Err(err(format!("{path}.path"), "must start with '/'"));
                }
                let key = key_from_spec(&KeySpec {
                    key_name: key_name.as_deref(),
                    algorithm: algorithm.as_deref(),
                    secret: secret.as_ref().map(|s| s.0.as_str()),
                    key_file: key_file.as_ref().map(|s| s.0.as_str()),
                })
                .map_err(|e| match e {
                    KeyError::Name(m) => err(format!("{path}.key_name"), m),
                    KeyError::Algorithm(m) => err(format!("{path}.algorithm"), m),
                    KeyError::Secret(m) => err(format!("{path}.secret"), m),
                    KeyError::KeyFile(m) => err(format!("{path}.key_file"), m),
                })?;
                Backend::Rfc2136(Rfc2136Backend {
                    cluster,
                    authority,
                    path: doh_path,
                    key,
                    timeout_ms,
                })
            }
        };
        backends.insert(name, backend);
    }
    Ok(backends)
}
