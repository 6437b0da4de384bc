//! `apertodns` in the plugin configuration: provider identity, token prefix, TXT limits, the
//! key that seeds new tokens and webhook secrets, and whether the protocol's rate limits apply.

use serde::Deserialize;

use crate::config::{ConfigError, Secret};

/// `apertodns` in the plugin configuration (all optional).
#[derive(Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawAperto {
    #[serde(default)]
    provider: Option<RawProvider>,
    /// Token prefix: `{provider_id}_{environment}_{random}`.
    #[serde(default)]
    provider_id: Option<String>,
    #[serde(default)]
    environment: Option<String>,
    #[serde(default)]
    txt_max_records: Option<usize>,
    /// Key that turns the host's randomness into new tokens and webhook secrets
    /// (`/api/tokens`, `/api/webhooks`); without it those cannot create anything.
    #[serde(default)]
    token_key: Option<Secret>,
    /// Per-token and per-address request limits (Protocol rules: rate limits; default on).
    #[serde(default)]
    #[cfg_attr(
        feature = "schema",
        schemars(description = "Per-token and per-address request limits (default on).")
    )]
    rate_limits: Option<bool>,
}

#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct RawProvider {
    name: String,
    website: String,
    documentation: String,
    support_email: String,
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub website: String,
    pub documentation: String,
    pub support_email: String,
}

#[derive(Debug, Clone)]
pub struct ApertoSettings {
    pub provider: Provider,
    pub provider_id: String,
    pub environment: String,
    pub txt_max_records: usize,
    pub token_key: Option<Secret>,
    pub rate_limits: bool,
}

impl ApertoSettings {
    pub fn compile(raw: RawAperto) -> Result<ApertoSettings, ConfigError> {
        let e = |path: &str, m: &str| ConfigError {
            path: format!("apertodns.{path}"),
            message: m.into(),
        };
        let provider_id = raw.provider_id.unwrap_or_else(|| "dynedge".into());
        if !(3..=20).contains(&provider_id.len())
            || !provider_id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(e("provider_id", "must be 3-20 characters of [a-z0-9-]"));
        }
        let environment = raw.environment.unwrap_or_else(|| "live".into());
        if !["live", "test", "sandbox"].contains(&environment.as_str()) {
            return Err(e("environment", "must be live, test or sandbox"));
        }
        let txt_max_records = raw.txt_max_records.unwrap_or(5);
        if !(1..=50).contains(&txt_max_records) {
            return Err(e("txt_max_records", "must be 1..=50"));
        }
        if raw.token_key.as_ref().is_some_and(|k| k.0.len() < 32) {
            return Err(e("token_key", "must be at least 32 characters"));
        }
        let provider = match raw.provider {
            Some(p) => Provider {
                name: p.name,
                website: p.website,
                documentation: p.documentation,
                support_email: p.support_email,
            },
            None => Provider {
                name: "dynedge".into(),
                website: "https://dynedge.invalid/".into(),
                documentation: "https://dynedge.invalid/docs/dialects".into(),
                support_email: "support@dynedge.invalid".into(),
            },
        };
        Ok(ApertoSettings {
            provider,
            provider_id,
            environment,
            txt_max_records,
            token_key: raw.token_key,
            rate_limits: raw.rate_limits.unwrap_or(true),
        })
    }
}
