//! From parsed fields to the exchange's targets, and from host outcomes back to reply fields:
//! the zone's backend, the A/AAAA edits of an update, read-only targets, and the error an
//! unsuccessful outcome stands for.

use super::fields::{AddrOp, FieldError, Resolved};
use crate::backends::RrType;
use crate::config::{Config, Zone};
use crate::job::{Edit, HostOutcome, Refusal, Target};
use crate::names::Fqdn;
use crate::reply::{Code, ErrorCode};

pub(super) fn backend_of(cfg: &Config, zone: &Zone) -> Result<crate::config::Backend, FieldError> {
    cfg.backends
        .get(&zone.backend)
        .cloned()
        .ok_or_else(|| FieldError::status(500, ErrorCode::ServerError, "zone has no backend"))
}

/// The A/AAAA target of an update. With `keep_others`, every family it does not change is
/// read (`Keep`) so the reply can report what is now in DNS.
pub(super) fn addr_target(
    cfg: &Config,
    zone: &Zone,
    name: Fqdn,
    ttl: u32,
    r: &Resolved,
    keep_others: bool,
) -> Result<Target, FieldError> {
    let backend = backend_of(cfg, zone)?;
    let mut want = Vec::new();
    let mut edits = Vec::new();
    for (op, rtype) in [(&r.v4, RrType::A), (&r.v6, RrType::Aaaa)] {
        match op {
            AddrOp::Set(ip) => want.push((rtype, vec![ip.to_string()])),
            AddrOp::Delete => edits.push((
                rtype,
                Edit::Remove {
                    values: None,
                    must_exist: true,
                },
            )),
            AddrOp::Leave if keep_others => edits.push((rtype, Edit::Keep)),
            AddrOp::Leave => {}
        }
    }
    Ok(Target {
        name,
        zone: zone.name.clone(),
        backend,
        ttl,
        want,
        edits,
    })
}

pub(super) fn first_of(sets: &[(RrType, Vec<String>)], t: RrType) -> Option<String> {
    sets.iter()
        .find(|(r, _)| *r == t)
        .and_then(|(_, v)| v.first().cloned())
}

pub(super) fn values_of(sets: &[(RrType, Vec<String>)], t: RrType) -> Vec<String> {
    sets.iter()
        .find(|(r, _)| *r == t)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// The error an unsuccessful host outcome stands for.
pub(super) fn outcome_error(o: &HostOutcome) -> (u16, ErrorCode, String) {
    match (&o.refusal, o.code) {
        (Some(Refusal::TooManyValues { max, .. }), _) => (
            400,
            ErrorCode::TxtLimitExceeded,
            format!("At most {max} TXT values per name"),
        ),
        (Some(Refusal::NothingToDelete { rtype }), _) => (
            404,
            ErrorCode::RecordNotFound,
            format!("No {} record to delete", rtype.as_str()),
        ),
        (None, Code::Dnserr) => (502, ErrorCode::DnsError, "DNS backend error".into()),
        // The guard's last word: the token's policies do not cover this record type here.
        (None, Code::Nohost) => (
            403,
            ErrorCode::HostnameForbidden,
            "Token not authorized for this record type at this hostname".into(),
        ),
        (None, Code::Abuse) => (
            429,
            ErrorCode::RateLimited,
            "Too many updates of this hostname".into(),
        ),
        _ => (500, ErrorCode::ServerError, "Internal server error".into()),
    }
}

pub(super) fn keep_target(
    cfg: &Config,
    zone: &Zone,
    name: Fqdn,
    types: &[RrType],
) -> Result<Target, FieldError> {
    Ok(Target {
        name,
        zone: zone.name.clone(),
        backend: backend_of(cfg, zone)?,
        ttl: zone.ttl,
        want: vec![],
        edits: types.iter().map(|t| (*t, Edit::Keep)).collect(),
    })
}
