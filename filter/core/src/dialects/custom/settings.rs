//! `endpoints` in the plugin configuration: operator-defined update endpoints.

use serde::Deserialize;

use crate::config::ConfigError;
use crate::dialects::dyndns2::settings::StatusMode;

#[derive(Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawEndpoint {
    path: String,
    #[serde(default)]
    params: RawParams,
    /// `"certadns"` (default: 401 badauth, 404 nohost, ...) or `"always200"`.
    #[serde(default)]
    status: Option<String>,
}

#[derive(Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct RawParams {
    hostname: Option<Vec<String>>,
    ipv4: Option<Vec<String>>,
    ipv6: Option<Vec<String>>,
    username: Option<Vec<String>>,
    password: Option<Vec<String>>,
    /// Accepted for ddns-service configurations; changes are announced by webhooks instead.
    notify_change: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub path: String,
    pub hostname: Vec<String>,
    pub ipv4: Vec<String>,
    pub ipv6: Vec<String>,
    pub username: Vec<String>,
    pub password: Vec<String>,
    pub notify_change: Vec<String>,
    pub mode: StatusMode,
}

fn names(v: Option<Vec<String>>, default: &[&str]) -> Vec<String> {
    v.unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect())
}

pub fn compile(raw: Vec<RawEndpoint>) -> Result<Vec<Endpoint>, ConfigError> {
    let mut out: Vec<Endpoint> = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let e = |field: &str, m: String| ConfigError {
            path: format!("endpoints[{i}].{field}"),
            message: m,
        };
        if !r.path.starts_with('/') || r.path.contains(['?', '#', ' ']) || r.path.len() > 256 {
            return Err(e("path", "must be an absolute path without query".into()));
        }
        if out.iter().any(|o| o.path == r.path) {
            return Err(e("path", format!("{} is listed twice", r.path)));
        }
        let mode = match r.status.as_deref() {
            None | Some("certadns") => StatusMode::CertaDns,
            Some("always200") => StatusMode::Always200,
            Some(other) => {
                return Err(e(
                    "status",
                    format!("'{other}' is not certadns or always200"),
                ))
            }
        };
        let p = r.params;
        let ep = Endpoint {
            path: r.path,
            hostname: names(p.hostname, &["hostname", "host"]),
            ipv4: names(p.ipv4, &["myip", "ipv4", "ip4"]),
            ipv6: names(p.ipv6, &["myip6", "ipv6", "ip6"]),
            username: names(p.username, &["username", "user"]),
            password: names(p.password, &["password", "pass", "token"]),
            notify_change: names(p.notify_change, &["notify_change"]),
            mode,
        };
        if ep.hostname.is_empty() {
            return Err(e(
                "params.hostname",
                "cannot be disabled: every update names a host".into(),
            ));
        }
        for (field, list) in [
            ("hostname", &ep.hostname),
            ("ipv4", &ep.ipv4),
            ("ipv6", &ep.ipv6),
            ("username", &ep.username),
            ("password", &ep.password),
        ] {
            if list.iter().any(|n| n.is_empty()) {
                return Err(e(
                    &format!("params.{field}"),
                    "names must not be empty".into(),
                ));
            }
        }
        out.push(ep);
    }
    Ok(out)
}
