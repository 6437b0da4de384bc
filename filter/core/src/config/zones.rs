//! `zones`: the DNS zones the gateway updates, each through a named backend.

use std::collections::HashMap;

use serde::Deserialize;

use super::error::{err, ConfigError};
use crate::addr::AddrPolicy;
use crate::names::Fqdn;

#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub(super) struct RawZone {
    name: String,
    backend: String,
    #[serde(default = "default_ttl")]
    ttl: u32,
    #[serde(default)]
    allow_ranges: Vec<String>,
    /// Remove a host's addresses when it has not updated for this long; 0 = never.
    #[serde(default)]
    expiry_ttl_s: u64,
}

fn default_ttl() -> u32 {
    60
}

#[derive(Debug, Clone)]
pub struct Zone {
    pub name: Fqdn,
    pub backend: String,
    pub ttl: u32,
    pub policy: AddrPolicy,
    pub expiry_ttl_s: u64,
}

/// The zones, longest name first (so the first match is the most specific); `backends` are the
/// names a zone may refer to.
pub(super) fn compile<B>(
    raw: Vec<RawZone>,
    backends: &HashMap<String, B>,
) -> Result<Vec<Zone>, ConfigError> {
    let mut zones = Vec::new();
    for (i, z) in raw.into_iter().enumerate() {
        let path = format!("zones[{i}]");
        let name = Fqdn::parse(&z.name).map_err(|e| err(format!("{path}.name"), e.to_string()))?;
        if zones.iter().any(|other: &Zone| other.name == name) {
            return Err(err(
                format!("{path}.name"),
                format!("zone {name} listed twice"),
            ));
        }
        if !backends.contains_key(&z.backend) {
            return Err(err(
                format!("{path}.backend"),
                format!("no backend named '{}'", z.backend),
            ));
        }
        if !(1..=86_400).contains(&z.ttl) {
            return Err(err(format!("{path}.ttl"), "must be 1..=86400"));
        }
        let mut allowed = Vec::new();
        for (j, r) in z.allow_ranges.iter().enumerate() {
            allowed.push(
                r.parse()
                    .map_err(|e| err(format!("{path}.allow_ranges[{j}]"), e))?,
            );
        }
        zones.push(Zone {
            name,
            backend: z.backend,
            ttl: z.ttl,
            policy: AddrPolicy::new(allowed),
            expiry_ttl_s: z.expiry_ttl_s,
        });
    }
    zones.sort_by_key(|z| std::cmp::Reverse(z.name.as_str().len()));
    Ok(zones)
}
