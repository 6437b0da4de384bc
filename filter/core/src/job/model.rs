//! The plain data of an update job: its hosts, their targets and edits, and each host's
//! outcome. It names no flow, so a store's flow and the job both build on it.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::addr::AddrPolicy;
use crate::backends::{BackendError, RrType};
use crate::config::Backend;
use crate::names::Fqdn;
use crate::reply::Code;

/// One host's line in the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostOutcome {
    pub host: String,
    pub code: Code,
    /// The addresses the host now has (for `good`/`nochg`).
    pub addrs: Vec<IpAddr>,
    /// What the backend held before, per type read (empty RRsets included).
    pub previous: Vec<(RrType, Vec<String>)>,
    /// What it holds now, per type (after a failure: unknown, so empty).
    pub current: Vec<(RrType, Vec<String>)>,
    /// Why an edit was refused after reading (the host's `code` is then `numhost`/`nohost`).
    pub refusal: Option<Refusal>,
}

/// An edit the current records make impossible; decided after reading, before any write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// [`Edit::Add`] would leave more than `max` values at the name.
    TooManyValues { rtype: RrType, max: usize },
    /// [`Edit::Remove`] with `must_exist` found nothing to remove.
    NothingToDelete { rtype: RrType },
    /// [`Edit::Prefix`] would write an address the zone's policy refuses.
    Forbidden { rtype: RrType, addr: IpAddr },
}

/// A change to one RRset that depends on what is there (`Target::want` replaces outright).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Add values to those present (ACME TXT: wildcard + apex at one name). Values already
    /// present are not duplicated; more than `max` in total is refused.
    Add { values: Vec<String>, max: usize },
    /// Remove these values (`None`: all). `must_exist` refuses when nothing is there.
    Remove {
        values: Option<Vec<String>>,
        must_exist: bool,
    },
    /// Report what is there and change nothing.
    Keep,
    /// Replace the first `len` bits of every address with `net`'s, keeping interface
    /// identifiers (dynv6 `ipv6prefix`); every rewritten address must pass `policy`.
    Prefix {
        net: std::net::Ipv6Addr,
        len: u8,
        policy: AddrPolicy,
    },
}

impl Edit {
    /// The values wanted, given what is there; `Err` when the edit must be refused.
    pub fn apply(&self, rtype: RrType, old: &[String]) -> Result<Vec<String>, Refusal> {
        match self {
            Edit::Add { values, max } => {
                let mut out = old.to_vec();
                for v in values {
                    if !out.contains(v) {
                        out.push(v.clone());
                    }
                }
                if out.len() > *max {
                    return Err(Refusal::TooManyValues { rtype, max: *max });
                }
                Ok(out)
            }
            Edit::Remove { values, must_exist } => {
                let out: Vec<String> = match values {
                    None => vec![],
                    Some(vs) => old.iter().filter(|o| !vs.contains(o)).cloned().collect(),
                };
                if *must_exist && out.len() == old.len() {
                    return Err(Refusal::NothingToDelete { rtype });
                }
                Ok(out)
            }
            Edit::Keep => Ok(old.to_vec()),
            Edit::Prefix { net, len, policy } => {
                let mask = u128::MAX
                    .checked_shl(128u32.saturating_sub(u32::from(*len)))
                    .unwrap_or(0);
                let mut out = Vec::with_capacity(old.len());
                for v in old {
                    let Ok(a) = v.parse::<std::net::Ipv6Addr>() else {
                        out.push(v.clone());
                        continue;
                    };
                    let new = std::net::Ipv6Addr::from(
                        (u128::from(*net) & mask) | (u128::from(a) & !mask),
                    );
                    if policy.check(IpAddr::V6(new)).is_err() {
                        return Err(Refusal::Forbidden {
                            rtype,
                            addr: IpAddr::V6(new),
                        });
                    }
                    out.push(new.to_string());
                }
                Ok(out)
            }
        }
    }
}

/// One host of an update job.
pub struct HostJob {
    /// As it appears in the reply: the normal form, or the input if it did not parse.
    pub label: String,
    pub target: Option<Target>,
    /// Decided before any call (`notfqdn`, `nohost`) or when the calls are done.
    pub code: Option<Code>,
    pub error: Option<String>,
    pub(super) old: HashMap<RrType, Vec<String>>,
    pub(super) refusal: Option<Refusal>,
    /// The content decided before writing (from `want` and `edits`).
    pub(super) desired: Vec<(RrType, Vec<String>)>,
    /// A repeat of an earlier host's target: not written again, answered as that host.
    pub(super) mirror_of: Option<usize>,
}

/// Where and what to write for a host.
pub struct Target {
    pub name: Fqdn,
    pub zone: Fqdn,
    pub backend: Backend,
    pub ttl: u32,
    /// The desired RRsets, by type.
    pub want: Vec<(RrType, Vec<String>)>,
    /// Changes that depend on the current values (applied after `want`'s types).
    pub edits: Vec<(RrType, Edit)>,
}

impl Target {
    /// Every type this target reads, in order, without repeats.
    pub(crate) fn types(&self) -> Vec<RrType> {
        let mut out: Vec<RrType> = Vec::new();
        for t in self
            .want
            .iter()
            .map(|(t, _)| *t)
            .chain(self.edits.iter().map(|(t, _)| *t))
        {
            if !out.contains(&t) {
                out.push(t);
            }
        }
        out
    }

    /// The full desired content per type, given what was read.
    pub(crate) fn desired(
        &self,
        old: &HashMap<RrType, Vec<String>>,
    ) -> Result<Vec<(RrType, Vec<String>)>, Refusal> {
        let mut out = self.want.clone();
        for (rtype, edit) in &self.edits {
            let base = out
                .iter()
                .find(|(t, _)| t == rtype)
                .map(|(_, v)| v.clone())
                .or_else(|| old.get(rtype).cloned())
                .unwrap_or_default();
            let new = edit.apply(*rtype, &base)?;
            match out.iter_mut().find(|(t, _)| t == rtype) {
                Some(slot) => slot.1 = new,
                None => out.push((*rtype, new)),
            }
        }
        Ok(out)
    }
}

impl HostJob {
    pub fn decided(label: String, code: Code) -> HostJob {
        HostJob {
            label,
            target: None,
            code: Some(code),
            error: None,
            old: HashMap::new(),
            refusal: None,
            desired: Vec::new(),
            mirror_of: None,
        }
    }

    pub fn update(target: Target) -> HostJob {
        HostJob {
            label: target.name.to_string(),
            target: Some(target),
            code: None,
            error: None,
            old: HashMap::new(),
            refusal: None,
            desired: Vec::new(),
            mirror_of: None,
        }
    }

    /// Makes this host a repeat of host `first` (same target): one write, two answers.
    pub(crate) fn mirror(&mut self, first: usize) {
        self.target = None;
        self.mirror_of = Some(first);
    }

    /// The host's records before this update (for the audit log); set by a store.
    pub(crate) fn set_old(&mut self, rtype: RrType, values: Vec<String>) {
        self.old.insert(rtype, values);
    }

    /// The content a store decided to write (the reply and audit report it on success).
    pub(crate) fn set_desired(&mut self, desired: Vec<(RrType, Vec<String>)>) {
        self.desired = desired;
    }

    /// An edit the current records make impossible: answered without any write.
    pub(crate) fn refuse(&mut self, r: Refusal) {
        self.code = Some(match r {
            Refusal::TooManyValues { .. } => Code::Numhost,
            Refusal::NothingToDelete { .. } | Refusal::Forbidden { .. } => Code::Nohost,
        });
        self.refusal = Some(r);
    }

    pub(super) fn fail(&mut self, e: BackendError) {
        self.code = Some(Code::Dnserr);
        self.error = Some(e.to_string());
    }
}

/// Equal as sets; addresses compare as addresses (`2001:DB8::1` = `2001:db8::1`).
pub fn same_values(rtype: RrType, a: &[String], b: &[String]) -> bool {
    // The common nochg: the router sends the address the record already has, spelled the same.
    // Identical lists are equal sets without parsing and printing every address.
    if a == b {
        return true;
    }
    let norm = |v: &[String]| {
        let mut out: Vec<String> = v
            .iter()
            .map(|s| match rtype {
                RrType::Txt => s.clone(),
                _ => s.parse::<IpAddr>().map_or(s.clone(), |ip| ip.to_string()),
            })
            .collect();
        out.sort();
        out.dedup();
        out
    };
    norm(a) == norm(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(values: &[&str]) -> Vec<String> {
        values.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn values_compare_as_sets_and_addresses_as_addresses() {
        assert!(same_values(
            RrType::A,
            &v(&["192.0.2.1"]),
            &v(&["192.0.2.1"])
        ));
        assert!(same_values(
            RrType::Aaaa,
            &v(&["2001:DB8::1"]),
            &v(&["2001:db8:0::1"])
        ));
        assert!(same_values(
            RrType::A,
            &v(&["192.0.2.1", "192.0.2.2"]),
            &v(&["192.0.2.2", "192.0.2.1", "192.0.2.1"])
        ));
        assert!(!same_values(
            RrType::A,
            &v(&["192.0.2.1"]),
            &v(&["192.0.2.2"])
        ));
        assert!(!same_values(RrType::A, &v(&["192.0.2.1"]), &v(&[])));
        assert!(!same_values(RrType::Txt, &v(&["A"]), &v(&["a"])));
    }
}
