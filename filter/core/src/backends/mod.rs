//! DNS backends. Each builds the outbound HTTP call for a read or a write and interprets the
//! answer; none performs I/O. A failure is always an error here, never a success.

pub mod powerdns;
pub mod rfc2136;
pub mod settings;

use std::fmt;

use crate::config::Backend;
use crate::names::Fqdn;

/// Record types dynedge manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RrType {
    A,
    Aaaa,
    Txt,
}

impl RrType {
    pub fn as_str(self) -> &'static str {
        match self {
            RrType::A => "A",
            RrType::Aaaa => "AAAA",
            RrType::Txt => "TXT",
        }
    }
}

/// The full desired content of one RRset; no values = delete the RRset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RrSet {
    pub name: Fqdn,
    pub rtype: RrType,
    pub ttl: u32,
    /// Presentation form: `192.0.2.1`, `2001:db8::1`, or the raw (unquoted) TXT string.
    pub values: Vec<String>,
}

/// An outbound HTTP request the adapter must perform.
#[derive(Clone, PartialEq, Eq)]
pub struct Callout {
    /// The proxy's cluster (Envoy) or upstream (Pingora) to send it to.
    pub cluster: String,
    pub method: &'static str,
    pub authority: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: u64,
}

impl fmt::Debug for Callout {
    // Headers carry API keys: print only where the call goes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Callout")
            .field("cluster", &self.cluster)
            .field("method", &self.method)
            .field("path", &self.path)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// What came back from a callout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalloutResult {
    Response {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// No HTTP response: refused, reset, timed out, or the proxy could not dispatch it.
    Failed(String),
}

/// Why a backend call did not succeed, for the audit log. Never contains secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendError(pub String);

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a write needs remembered to judge its answer (e.g. a TSIG request MAC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteCheck {
    PowerDns,
    /// The request MAC and id of a TSIG-signed UPDATE, to verify the signed answer.
    Rfc2136(rfc2136::Pending),
}

/// Inputs a backend may need that the core does not invent itself.
#[derive(Debug, Clone, Copy)]
pub struct BackendEnv {
    pub now_s: u64,
    pub random: u64,
}

impl Backend {
    /// A call that reads the current values of one RRset.
    pub fn read(&self, zone: &Fqdn, name: &Fqdn, rtype: RrType) -> Callout {
        match self {
            Backend::PowerDns(b) => powerdns::read(b, zone, name, rtype),
            Backend::Rfc2136(b) => rfc2136::read(b, name, rtype),
        }
    }

    pub fn parse_read(
        &self,
        name: &Fqdn,
        rtype: RrType,
        result: &CalloutResult,
    ) -> Result<Vec<String>, BackendError> {
        match self {
            Backend::PowerDns(_) => powerdns::parse_read(name, rtype, result),
            Backend::Rfc2136(_) => rfc2136::parse_read(name, rtype, result),
        }
    }

    /// A call that replaces the given RRsets (all in `zone`) in one operation. Fails when the
    /// change cannot be expressed (e.g. a value that is not an address).
    pub fn write(
        &self,
        zone: &Fqdn,
        sets: &[RrSet],
        env: BackendEnv,
    ) -> Result<(Callout, WriteCheck), BackendError> {
        match self {
            Backend::PowerDns(b) => Ok((powerdns::write(b, zone, sets), WriteCheck::PowerDns)),
            Backend::Rfc2136(b) => rfc2136::write(b, zone, sets, env)
                .map(|(c, pending)| (c, WriteCheck::Rfc2136(pending))),
        }
    }

    pub fn check_write(
        &self,
        check: &WriteCheck,
        result: &CalloutResult,
    ) -> Result<(), BackendError> {
        match (self, check) {
            (Backend::PowerDns(_), WriteCheck::PowerDns) => powerdns::check_write(result),
            (Backend::Rfc2136(b), WriteCheck::Rfc2136(p)) => rfc2136::check_write(b, p, result),
            _ => Err(BackendError(
                "answer checked against another backend".into(),
            )),
        }
    }
}
