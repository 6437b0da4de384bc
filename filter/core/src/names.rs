//! Hostnames: one normal form (lower-case A-labels) so that ownership lookups are exact.

use std::fmt;

pub const MAX_NAME_OCTETS: usize = 253;
pub const MAX_LABEL_OCTETS: usize = 63;

/// A validated, normalised fully qualified name without the trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fqdn(String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    Empty,
    TooLong,
    TooFewLabels,
    BadLabel(String),
    BadIdn,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => f.write_str("empty hostname"),
            NameError::TooLong => write!(f, "hostname longer than {MAX_NAME_OCTETS} octets"),
            NameError::TooFewLabels => f.write_str("hostname needs at least two labels"),
            NameError::BadLabel(l) => write!(f, "invalid label '{l}'"),
            NameError::BadIdn => f.write_str("invalid internationalised name"),
        }
    }
}

impl Fqdn {
    /// A host name as clients send it: letters, digits and hyphens per label.
    pub fn parse(input: &str) -> Result<Fqdn, NameError> {
        Self::parse_with(input, false)
    }

    /// An owner name that may carry service labels with a leading underscore
    /// (`_acme-challenge.host.zone`), as TXT records for ACME need.
    pub fn parse_service(input: &str) -> Result<Fqdn, NameError> {
        Self::parse_with(input, true)
    }

    fn parse_with(input: &str, underscore: bool) -> Result<Fqdn, NameError> {
        // An absolute name (`host.zone.`) is the same name; exactly one root dot is dropped, so
        // `.`, `..` and `host..` still fail on their empty label.
        let input = match input.strip_suffix('.') {
            Some(relative) if !relative.is_empty() => relative,
            _ => input,
        };
        if input.is_empty() {
            return Err(NameError::Empty);
        }
        if input.len() > 4 * MAX_NAME_OCTETS {
            return Err(NameError::TooLong);
        }
        let ascii = if input.is_ascii() {
            input.to_ascii_lowercase()
        } else {
            // IDNA2008 (UTS 46, non-transitional) to A-labels; rejects disallowed code points.
            idna::domain_to_ascii_strict(input).map_err(|_| NameError::BadIdn)?
        };
        if ascii.len() > MAX_NAME_OCTETS {
            return Err(NameError::TooLong);
        }
        let labels: Vec<&str> = ascii.split('.').collect();
        if labels.len() < 2 {
            return Err(NameError::TooFewLabels);
        }
        for label in &labels {
            if !label_ok(label, underscore) {
                return Err(NameError::BadLabel(label.chars().take(70).collect()));
            }
        }
        Ok(Fqdn(ascii))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when `self` is `zone` or a name below it.
    pub fn is_within(&self, zone: &Fqdn) -> bool {
        self.0 == zone.0
            || self
                .0
                .strip_suffix(zone.0.as_str())
                .is_some_and(|below| below.ends_with('.'))
    }
}

fn label_ok(label: &str, underscore: bool) -> bool {
    let bytes = label.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    let body_ok = bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    let service = underscore
        && *first == b'_'
        && bytes.len() > 1
        && bytes
            .iter()
            .skip(1)
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    bytes.len() <= MAX_LABEL_OCTETS
        && ((body_ok && *first != b'-' && *last != b'-') || service)
        && !(label.starts_with("xn--") && idna::domain_to_unicode(label).1.is_err())
}

impl fmt::Display for Fqdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: &[(&str, Result<&str, ()>)] = &[
        ("home.dyn.example.test", Ok("home.dyn.example.test")),
        ("HOME.Dyn.Example.TEST", Ok("home.dyn.example.test")),
        (
            "bücher.dyn.example.test",
            Ok("xn--bcher-kva.dyn.example.test"),
        ),
        (
            "xn--bcher-kva.dyn.example.test",
            Ok("xn--bcher-kva.dyn.example.test"),
        ),
        ("a-b.c1.test", Ok("a-b.c1.test")),
        ("localhost", Err(())),
        ("home.dyn.example.test.", Ok("home.dyn.example.test")),
        ("Home.Dyn.Example.Test.", Ok("home.dyn.example.test")),
        ("home.dyn.example.test..", Err(())),
        (".", Err(())),
        ("..", Err(())),
        ("test.", Err(())),
        (".home.test", Err(())),
        ("a..test", Err(())),
        ("-a.test", Err(())),
        ("a-.test", Err(())),
        ("a_b.test", Err(())),
        ("_acme-challenge.home.test", Err(())),
        ("a b.test", Err(())),
        ("a%2e.test", Err(())),
        ("xn--zz.test", Err(())),
        ("a\0.test", Err(())),
        ("", Err(())),
    ];

    #[test]
    fn parse_normalises_valid_names_and_rejects_the_rest() {
        for (input, want) in NAMES {
            let got = Fqdn::parse(input).map(|f| f.0).map_err(|_| ());
            assert_eq!(
                got.as_deref(),
                want.as_deref().map_err(|_| &()),
                "{input:?}"
            );
        }
    }

    #[test]
    fn length_limits_are_octets_of_the_ascii_form() {
        let label = "a".repeat(63);
        let ok = format!("{label}.{label}.{label}.{}", "b".repeat(61));
        assert_eq!(ok.len(), 253);
        assert!(Fqdn::parse(&ok).is_ok());
        assert_eq!(Fqdn::parse(&format!("c{ok}")), Err(NameError::TooLong));
        let long_label = format!("{}.test", "a".repeat(64));
        assert!(matches!(
            Fqdn::parse(&long_label),
            Err(NameError::BadLabel(_))
        ));
    }

    #[test]
    fn service_names_allow_a_leading_underscore_label() {
        let n = Fqdn::parse_service("_acme-challenge.Home.dyn.example.test").unwrap();
        assert_eq!(n.as_str(), "_acme-challenge.home.dyn.example.test");
        assert!(Fqdn::parse_service("a_b.test").is_err());
        assert!(Fqdn::parse_service("_.test").is_err());
    }

    #[test]
    fn is_within_respects_label_boundaries() {
        let zone = Fqdn::parse("example.test").unwrap();
        assert!(Fqdn::parse("a.example.test").unwrap().is_within(&zone));
        assert!(Fqdn::parse("example.test").unwrap().is_within(&zone));
        assert!(!Fqdn::parse("badexample.test").unwrap().is_within(&zone));
    }
}
