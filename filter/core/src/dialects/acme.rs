//! What every ACME DNS-01 dialect shares (ApertoDNS `/txt`, acme-dns, httpreq): the challenge
//! label and the TTL of the TXT records they write.

use crate::names::{Fqdn, NameError};

/// The label an ACME DNS-01 challenge lives under (RFC 8555 §8.4).
pub(crate) const TXT_PREFIX: &str = "_acme-challenge.";
/// TTL of the challenge TXT records the dialects write.
pub(crate) const DEFAULT_TXT_TTL: u32 = 60;

/// `_acme-challenge.{host}`: the TXT owner name of `host`'s challenge.
pub(crate) fn challenge_name(host: &Fqdn) -> Result<Fqdn, NameError> {
    Fqdn::parse_service(&format!("{TXT_PREFIX}{host}"))
}
