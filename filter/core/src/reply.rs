//! Replies: result codes, the security headers every response carries, and the bytes.

use std::fmt;

/// DynDNS2 result codes. Only this module turns them into text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Code {
    Good,
    Nochg,
    Badauth,
    Notfqdn,
    Nohost,
    Numhost,
    Abuse,
    Badagent,
    Dnserr,
    /// `911`: server-side failure or maintenance.
    Emergency,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Good => "good",
            Code::Nochg => "nochg",
            Code::Badauth => "badauth",
            Code::Notfqdn => "notfqdn",
            Code::Nohost => "nohost",
            Code::Numhost => "numhost",
            Code::Abuse => "abuse",
            Code::Badagent => "badagent",
            Code::Dnserr => "dnserr",
            Code::Emergency => "911",
        }
    }

    pub fn is_success(self) -> bool {
        matches!(self, Code::Good | Code::Nochg)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Layer 0 headers (docs/dialects.md, Protocol rules: Layer 0) on every reply the core produces.
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    (
        "strict-transport-security",
        "max-age=63072000; includeSubDomains; preload",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
    ("referrer-policy", "no-referrer"),
    (
        "cache-control",
        "no-store, no-cache, must-revalidate, private",
    ),
];

/// A complete local reply. Adapters send it as is; the body length is always known, so the
/// proxy sends `Content-Length` (ddclient cannot read chunked replies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        let mut headers: Vec<(String, String)> = SECURITY_HEADERS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        headers.push(("content-type".into(), content_type.into()));
        Reply {
            status,
            headers,
            body: body.into(),
        }
    }

    pub fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply::new(status, "text/plain; charset=utf-8", body.into())
    }

    /// `911` with a 500: the answer when nothing better is known (no dialect to render it).
    pub fn emergency() -> Reply {
        Reply::text(500, format!("{}\n", Code::Emergency.as_str()))
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply::new(status, "application/json", value.to_string())
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap_or("")
    }
}
