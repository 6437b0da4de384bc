//! `acme_dns` in the plugin configuration.

use serde::Deserialize;

use crate::config::{ConfigError, Zone};
use crate::dialects::apertodns::ApertoSettings;
use crate::names::Fqdn;

pub const DEFAULT_PREFIX: &str = "/acme-dns";

/// `acme_dns` in the plugin configuration.
#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawAcmeDns {
    /// Where registrations live: `{subdomain}.{zone}`; must lie inside a configured zone.
    zone: String,
    /// `open` (default, as acme-dns), `closed` (no `/register`), `token` (a dynedge password or
    /// API token with the `txt` scope must come with `/register`).
    #[serde(default)]
    registration: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    /// Also serve `POST /register` and `POST /update` + `X-Api-User` at the root (default on).
    #[serde(default)]
    root_paths: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    Open,
    Closed,
    Token,
}

#[derive(Debug, Clone)]
pub struct AcmeDnsSettings {
    pub zone: Fqdn,
    pub registration: Registration,
    pub prefix: String,
    pub root_paths: bool,
}

impl AcmeDnsSettings {
    pub fn compile(
        raw: RawAcmeDns,
        zones: &[Zone],
        aperto: &ApertoSettings,
    ) -> Result<AcmeDnsSettings, ConfigError> {
        let e = |path: &str, m: String| ConfigError {
            path: format!("acme_dns.{path}"),
            message: m,
        };
        let zone = Fqdn::parse(&raw.zone).map_err(|x| e("zone", x.to_string()))?;
        if !zones.iter().any(|z| zone.is_within(&z.name)) {
            return Err(e(
                "zone",
                format!("{zone} is not inside a configured zone (its records need a backend)"),
            ));
        }
        let registration = match raw.registration.as_deref().unwrap_or("open") {
            "open" => Registration::Open,
            "closed" => Registration::Closed,
            "token" => Registration::Token,
            other => {
                return Err(e(
                    "registration",
                    format!("'{other}': expected open, closed or token"),
                ))
            }
        };
        if registration != Registration::Closed && aperto.token_key.is_none() {
            return Err(e(
                "registration",
                "registering accounts needs apertodns.token_key (it seeds new credentials)".into(),
            ));
        }
        let prefix = raw.prefix.unwrap_or_else(|| DEFAULT_PREFIX.into());
        if !prefix.starts_with('/')
            || prefix.ends_with('/')
            || prefix.len() < 2
            || prefix.contains(['?', '#', ' '])
        {
            return Err(e(
                "prefix",
                format!("'{prefix}': a path like /acme-dns (leading /, no trailing /)"),
            ));
        }
        Ok(AcmeDnsSettings {
            zone,
            registration,
            prefix,
            root_paths: raw.root_paths.unwrap_or(true),
        })
    }
}
