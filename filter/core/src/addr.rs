//! Strict address parsing and address ranges.
//!
//! Clients send addresses in query strings, so everything here is text in, typed value out.
//! `std`'s parsers are already strict (no `1.2.3`, no leading zeros, no zone ids); this module
//! adds the special ranges (docs/dialects.md, Protocol rules) and the per-zone allow-list.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Why a text is not an acceptable address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddrError {
    /// Not an address of the expected family at all.
    Malformed,
    /// A valid IPv6 address where IPv4 was asked for.
    WrongFamilyV6,
    /// A valid IPv4 address where IPv6 was asked for.
    WrongFamilyV4,
    /// Well formed, but in a range the zone does not allow.
    Forbidden { range: Cidr },
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrError::Malformed => f.write_str("is not an IP address"),
            AddrError::WrongFamilyV6 => f.write_str("is an IPv6 address where IPv4 is expected"),
            AddrError::WrongFamilyV4 => f.write_str("is an IPv4 address where IPv6 is expected"),
            AddrError::Forbidden { range } => write!(f, "is in the special range {range}"),
        }
    }
}

/// Parses either family. Rejects zone ids (`fe80::1%eth0`), brackets and surrounding space.
pub fn parse_ip(text: &str) -> Result<IpAddr, AddrError> {
    if text.is_empty() || text.len() > 45 {
        return Err(AddrError::Malformed);
    }
    IpAddr::from_str(text).map_err(|_| AddrError::Malformed)
}

pub fn parse_v4(text: &str) -> Result<Ipv4Addr, AddrError> {
    match parse_ip(text)? {
        IpAddr::V4(v4) => Ok(v4),
        IpAddr::V6(_) => Err(AddrError::WrongFamilyV6),
    }
}

pub fn parse_v6(text: &str) -> Result<Ipv6Addr, AddrError> {
    match parse_ip(text)? {
        IpAddr::V6(v6) => Ok(v6),
        IpAddr::V4(_) => Err(AddrError::WrongFamilyV4),
    }
}

/// Parses a delegated IPv6 prefix (`2001:db8:1:2::/64`; no length means /64). Longer than /64
/// is refused: the lower 64 bits belong to the interface identifier.
pub fn parse_v6_prefix(text: &str) -> Result<Cidr, AddrError> {
    let (ip, len) = match text.split_once('/') {
        Some((ip, len)) => (ip, Some(len)),
        None => (text, None),
    };
    let net = parse_v6(ip)?;
    let prefix = match len {
        None => 64,
        Some(l) if !l.is_empty() && l.len() <= 3 && l.bytes().all(|b| b.is_ascii_digit()) => l
            .parse::<u8>()
            .ok()
            .filter(|l| *l <= 64)
            .ok_or(AddrError::Malformed)?,
        Some(_) => return Err(AddrError::Malformed),
    };
    Ok(Cidr {
        net: IpAddr::V6(net),
        prefix,
    })
}

/// `prefix`'s network bits followed by `iid`'s remaining bits; `None` for an IPv4 prefix.
pub fn with_interface_id(prefix: &Cidr, iid: Ipv6Addr) -> Option<Ipv6Addr> {
    let IpAddr::V6(net) = prefix.net else {
        return None;
    };
    let mask = u128::MAX
        .checked_shl(128u32.saturating_sub(u32::from(prefix.prefix)))
        .unwrap_or(0);
    Some(Ipv6Addr::from(
        (u128::from(net) & mask) | (u128::from(iid) & !mask),
    ))
}

/// A configured interface identifier: the lower 64 bits only, not all zero.
pub fn parse_interface_id(text: &str) -> Result<Ipv6Addr, String> {
    let iid = parse_v6(text).map_err(|e| format!("'{text}' {e}"))?;
    let bits = u128::from(iid);
    if bits == 0 {
        return Err("an all-zero interface identifier names the subnet, not a host".into());
    }
    if bits >> 64 != 0 {
        return Err(format!(
            "'{text}' has bits inside the /64 prefix; write only the lower 64 bits (e.g. ::1:2:3:4)"
        ));
    }
    Ok(iid)
}

/// An address range in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32u32.saturating_sub(u32::from(self.prefix)))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128u32.saturating_sub(u32::from(self.prefix)))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }

    /// Is every address of `self` inside `outer`?
    pub fn within(&self, outer: &Cidr) -> bool {
        self.prefix >= outer.prefix && outer.contains(self.net)
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let net = parse_ip(ip).map_err(|_| format!("'{s}' is not an address range"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max && !p.to_string().is_empty())
                .ok_or_else(|| format!("'{s}' has a bad prefix length"))?,
        };
        Ok(Cidr { net, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// The ranges every zone rejects unless it allows them (docs/dialects.md, Protocol rules: special ranges).
pub const SPECIAL_RANGES: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "255.255.255.255/32",
    "::/128",
    "::1/128",
    "::ffff:0:0/96",
    "64:ff9b::/96",
    "100::/64",
    "2001:db8::/32",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
];

/// The address policy of one zone: special ranges are refused unless explicitly allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrPolicy {
    special: Vec<Cidr>,
    allowed: Vec<Cidr>,
}

impl AddrPolicy {
    pub fn new(allowed: Vec<Cidr>) -> Self {
        let special = SPECIAL_RANGES
            .iter()
            .filter_map(|r| r.parse::<Cidr>().ok())
            .collect();
        AddrPolicy { special, allowed }
    }

    /// The ranges that this policy opens up, for the start-up warning.
    pub fn allowed(&self) -> &[Cidr] {
        &self.allowed
    }

    pub fn check(&self, ip: IpAddr) -> Result<(), AddrError> {
        if self.allowed.iter().any(|c| c.contains(ip)) {
            return Ok(());
        }
        match self.special.iter().find(|c| c.contains(ip)) {
            Some(range) => Err(AddrError::Forbidden { range: *range }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARSE: &[(&str, bool)] = &[
        ("192.0.2.7", true),
        ("2001:db8::1", true),
        ("::ffff:192.0.2.1", true),
        ("1.2.3", false),
        ("1.2.3.4.5", false),
        ("01.2.3.4", false),
        ("192.0.2.07", false),
        ("999.1.1.1", false),
        ("256.0.0.1", false),
        (" 1.2.3.4", false),
        ("1.2.3.4 ", false),
        ("fe80::1%eth0", false),
        ("[2001:db8::1]", false),
        ("0x7f.0.0.1", false),
        ("2130706433", false),
        ("", false),
        ("2001:db8:::1", false),
        ("1.2.3.4/24", false),
    ];

    #[test]
    fn parse_ip_accepts_only_strict_forms() {
        for (text, ok) in PARSE {
            assert_eq!(parse_ip(text).is_ok(), *ok, "{text}");
        }
    }

    #[test]
    fn family_specific_parsers_name_the_wrong_family() {
        assert_eq!(parse_v4("2001:db8::1"), Err(AddrError::WrongFamilyV6));
        assert_eq!(parse_v6("192.0.2.1"), Err(AddrError::WrongFamilyV4));
        assert!(parse_v4("192.0.2.1").is_ok());
    }

    #[test]
    fn cidr_contains_matches_prefix_only() {
        let c: Cidr = "192.0.2.0/24".parse().unwrap();
        assert!(c.contains("192.0.2.255".parse().unwrap()));
        assert!(!c.contains("192.0.3.0".parse().unwrap()));
        assert!(!c.contains("2001:db8::1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let host: Cidr = "2001:db8::1".parse().unwrap();
        assert!(host.contains("2001:db8::1".parse().unwrap()));
        assert!(!host.contains("2001:db8::2".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("10.0.0.0/".parse::<Cidr>().is_err());
        assert!("nope/8".parse::<Cidr>().is_err());
    }

    #[test]
    fn default_policy_rejects_every_special_range_and_allows_public() {
        let p = AddrPolicy::new(vec![]);
        for r in SPECIAL_RANGES {
            let net = r.split('/').next().unwrap();
            assert!(p.check(net.parse().unwrap()).is_err(), "{r}");
        }
        assert!(p.check("8.8.8.8".parse().unwrap()).is_ok());
        assert!(p.check("2a00:1450::1".parse().unwrap()).is_ok());
    }

    #[test]
    fn allowed_ranges_open_only_themselves() {
        let p = AddrPolicy::new(vec!["192.0.2.0/24".parse().unwrap()]);
        assert!(p.check("192.0.2.9".parse().unwrap()).is_ok());
        assert!(p.check("10.0.0.1".parse().unwrap()).is_err());
    }

    #[test]
    fn lan_prefix_and_interface_id_combine() {
        let p = parse_v6_prefix("2001:db8:1:2::").unwrap();
        assert_eq!(p.to_string(), "2001:db8:1:2::/64");
        let iid = parse_interface_id("::1:2:3:4").unwrap();
        let want: Ipv6Addr = "2001:db8:1:2:1:2:3:4".parse().unwrap();
        assert_eq!(with_interface_id(&p, iid), Some(want));
        let p56 = parse_v6_prefix("2001:db8:1:200::/56").unwrap();
        let want: Ipv6Addr = "2001:db8:1:200:1:2:3:4".parse().unwrap();
        assert_eq!(with_interface_id(&p56, iid), Some(want));
        for bad in [
            "2001:db8::/65",
            "2001:db8::/+5",
            "2001:db8::/",
            "192.0.2.0/24",
            "x/64",
        ] {
            assert!(parse_v6_prefix(bad).is_err(), "{bad}");
        }
        assert!(parse_interface_id("::").is_err());
        assert!(parse_interface_id("1::1").is_err());
        assert!(parse_interface_id("1.2.3.4").is_err());
    }
}
