//! The request as the core sees it: a snapshot the adapter takes, plus strict parameter parsing.

use std::fmt;
use std::net::IpAddr;

use crate::addr::Cidr;

/// What the adapter knows about the downstream request.
#[derive(Clone, Default)]
pub struct Request {
    pub method: String,
    /// The raw `:path`, query string included.
    pub path: String,
    /// Header names as received; lookups are case-insensitive.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The peer of the TCP connection (Envoy `source.address`).
    pub peer: Option<IpAddr>,
}

impl fmt::Debug for Request {
    // Query strings and headers carry credentials: never print them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("path", &self.path_only())
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn path_only(&self) -> &str {
        self.path.split_once('?').map_or(&self.path, |(p, _)| p)
    }

    pub fn query(&self) -> &str {
        self.path.split_once('?').map_or("", |(_, q)| q)
    }

    pub fn wants_json(&self) -> bool {
        self.header("accept")
            .is_some_and(|a| a.to_ascii_lowercase().contains("application/json"))
    }

    /// The client address: the peer, or, when the peer is a trusted proxy, the address that
    /// proxy names. `X-Real-IP` (one address, set by the proxy next to us) comes first unless
    /// it is missing, garbled or itself a trusted proxy; then the right-most `X-Forwarded-For`
    /// entry that is not itself trusted.
    pub fn client_ip(&self, trusted: &[Cidr]) -> Option<IpAddr> {
        let peer = self.peer?;
        let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
        if !is_trusted(peer) {
            return Some(peer);
        }
        if let Some(real) = self
            .header("x-real-ip")
            .and_then(|v| v.trim().parse::<IpAddr>().ok())
            .filter(|ip| !is_trusted(*ip))
        {
            return Some(real);
        }
        let Some(xff) = self.header("x-forwarded-for") else {
            return Some(peer);
        };
        let mut client = peer;
        for hop in xff.rsplit(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    client = ip;
                    if !is_trusted(ip) {
                        break;
                    }
                }
                // A garbled hop ends the trusted chain; the last trusted address stands.
                Err(_) => break,
            }
        }
        Some(client)
    }
}

/// Why a query string or form body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamError {
    BadPercentEncoding,
    NotUtf8,
    Duplicate(String),
    TooLong,
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamError::BadPercentEncoding => f.write_str("broken percent-encoding"),
            ParamError::NotUtf8 => f.write_str("parameters are not valid UTF-8"),
            ParamError::Duplicate(n) => write!(f, "parameter '{n}' given more than once"),
            ParamError::TooLong => f.write_str("parameter value too long"),
        }
    }
}

/// Longest value accepted for any single parameter; a host list of 20 full names fits.
pub const MAX_PARAM_LEN: usize = 6 * 1024;

/// Decoded `application/x-www-form-urlencoded` pairs (query string and form bodies).
#[derive(Debug, Default, Clone)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(raw: &str) -> Result<Params, ParamError> {
        let mut out = Vec::new();
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (k, v) = (decode(k)?, decode(v)?);
            if v.len() > MAX_PARAM_LEN {
                return Err(ParamError::TooLong);
            }
            out.push((k, v));
        }
        Ok(Params(out))
    }

    /// Adds the pairs of `other` (a form body after the query string).
    pub fn extend(&mut self, other: Params) {
        self.0.extend(other.0);
    }

    /// The value of `name`; a parameter given twice is an error, never a silent pick.
    pub fn one(&self, name: &str) -> Result<Option<&str>, ParamError> {
        let mut found = self.0.iter().filter(|(k, _)| k == name);
        let first = found.next().map(|(_, v)| v.as_str());
        if found.next().is_some() {
            return Err(ParamError::Duplicate(name.to_string()));
        }
        Ok(first)
    }

    /// The first of several accepted names that is present (configurable endpoints).
    pub fn first_of(&self, names: &[String]) -> Result<Option<&str>, ParamError> {
        for n in names {
            if let Some(v) = self.one(n)? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }
}

fn decode(s: &str) -> Result<String, ParamError> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        out.push(match b {
            b'%' => {
                let mut nibble = || bytes.next().and_then(hex_val);
                let (Some(hi), Some(lo)) = (nibble(), nibble()) else {
                    return Err(ParamError::BadPercentEncoding);
                };
                hi << 4 | lo
            }
            b'+' => b' ',
            b => b,
        });
    }
    let text = String::from_utf8(out).map_err(|_| ParamError::NotUtf8)?;
    if text.chars().any(|c| c.is_control()) {
        // NUL, CR/LF and friends have no business in a DDNS parameter.
        return Err(ParamError::NotUtf8);
    }
    Ok(text)
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_decode_percent_and_plus() {
        let p = Params::parse("hostname=a.test%2Cb.test&myip=2001%3adb8%3a%3a1&x=a+b").unwrap();
        assert_eq!(p.one("hostname").unwrap(), Some("a.test,b.test"));
        assert_eq!(p.one("myip").unwrap(), Some("2001:db8::1"));
        assert_eq!(p.one("x").unwrap(), Some("a b"));
        assert_eq!(p.one("missing").unwrap(), None);
    }

    #[test]
    fn params_reject_broken_input() {
        for bad in ["a=%", "a=%4", "a=%zz", "a=%ff", "a=%00", "a=%0d%0a"] {
            assert!(Params::parse(bad).is_err(), "{bad}");
        }
        let dup = Params::parse("hostname=a&hostname=b").unwrap();
        assert_eq!(
            dup.one("hostname"),
            Err(ParamError::Duplicate("hostname".into()))
        );
        let long = format!("a={}", "x".repeat(MAX_PARAM_LEN + 1));
        assert_eq!(Params::parse(&long).unwrap_err(), ParamError::TooLong);
    }

    #[test]
    fn first_of_takes_the_first_present_alias() {
        let p = Params::parse("ip4=192.0.2.2&myip=192.0.2.1").unwrap();
        let names = vec!["myip".to_string(), "ip4".to_string()];
        assert_eq!(p.first_of(&names).unwrap(), Some("192.0.2.1"));
        assert_eq!(p.first_of(&[]).unwrap(), None);
    }

    #[test]
    fn real_ip_counts_only_through_trusted_hops_and_comes_first() {
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        let with = |peer: &str, real: &str, xff: Option<&str>| {
            let mut r = req(peer, xff);
            r.headers.push(("X-Real-IP".into(), real.into()));
            r.client_ip(&trusted)
        };
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        // untrusted peer: spoofed header ignored
        assert_eq!(
            with("198.51.100.1", "203.0.113.9", None),
            ip("198.51.100.1")
        );
        // trusted peer: X-Real-IP, also over X-Forwarded-For
        assert_eq!(with("10.0.0.1", " 2001:db8::9 ", None), ip("2001:db8::9"));
        assert_eq!(
            with("10.0.0.1", "203.0.113.9", Some("198.51.100.7")),
            ip("203.0.113.9")
        );
        // garbled or trusted X-Real-IP: X-Forwarded-For, then the peer
        assert_eq!(
            with("10.0.0.1", "garbage", Some("198.51.100.7")),
            ip("198.51.100.7")
        );
        assert_eq!(
            with("10.0.0.1", "10.0.0.3", Some("198.51.100.7")),
            ip("198.51.100.7")
        );
        assert_eq!(with("10.0.0.1", "10.0.0.3", None), ip("10.0.0.1"));
    }

    fn req(peer: &str, xff: Option<&str>) -> Request {
        let mut r = Request {
            peer: Some(peer.parse().unwrap()),
            ..Request::default()
        };
        if let Some(x) = xff {
            r.headers.push(("X-Forwarded-For".into(), x.into()));
        }
        r
    }

    #[test]
    fn forwarded_for_counts_only_through_trusted_hops() {
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        // untrusted peer: its header is ignored
        assert_eq!(
            req("198.51.100.1", Some("203.0.113.9")).client_ip(&trusted),
            Some("198.51.100.1".parse().unwrap())
        );
        // trusted peer: right-most untrusted entry wins, spoofed left entries do not
        assert_eq!(
            req("10.0.0.1", Some("1.1.1.1, 203.0.113.9, 10.0.0.2")).client_ip(&trusted),
            Some("203.0.113.9".parse().unwrap())
        );
        assert_eq!(
            req("10.0.0.1", None).client_ip(&trusted),
            Some("10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            req("10.0.0.1", Some("garbage")).client_ip(&trusted),
            Some("10.0.0.1".parse().unwrap())
        );
    }
}
