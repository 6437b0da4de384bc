//! DNS backends. Each builds the outbound HTTP call for a read or a write and interprets the
//! answer; none performs I/O. A failure is always an error here, never a success.

pub mod powerdns;
pub mod rfc2136;
pub mod settings;
mod types;

pub use types::{
    BackendEnv, BackendError, Callout, CalloutFailure, CalloutResult, Method, RrSet, RrType,
};

use crate::config::Backend;
use crate::names::Fqdn;

/// What a write needs remembered to judge its answer (e.g. a TSIG request MAC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteCheck {
    PowerDns,
    /// The request MAC and id of a TSIG-signed UPDATE, to verify the signed answer.
    Rfc2136(rfc2136::Pending),
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
            _ => Err(BackendError::Invalid(
                "answer checked against another backend".into(),
            )),
        }
    }
}
