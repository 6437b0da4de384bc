//! The backends as the configuration compiles them (`config/backends.rs` reads the JSON).

use crate::backends::rfc2136::Rfc2136Backend;
use crate::config::Secret;

#[derive(Debug, Clone)]
pub enum Backend {
    PowerDns(PowerDnsBackend),
    Rfc2136(Rfc2136Backend),
}

impl Backend {
    /// What kind of backend this is: `powerdns` or `rfc2136` (the metrics' `backend` label).
    pub fn kind(&self) -> &'static str {
        match self {
            Backend::PowerDns(_) => "powerdns",
            Backend::Rfc2136(_) => "rfc2136",
        }
    }

    /// The proxy cluster (Envoy) or upstream (Pingora) this backend's callouts go to.
    pub fn cluster(&self) -> &str {
        match self {
            Backend::PowerDns(b) => &b.cluster,
            Backend::Rfc2136(b) => &b.cluster,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PowerDnsBackend {
    pub cluster: String,
    pub authority: String,
    pub server_id: String,
    pub api_key: Secret,
    pub timeout_ms: u64,
}
