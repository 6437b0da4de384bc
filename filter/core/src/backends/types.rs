//! What every backend and the core share: record types and sets, the outbound call and its
//! result, and a backend's error. Nothing here knows a particular backend.

use std::fmt;

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

/// The HTTP methods the core's callouts use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }

    /// The method named by `s` (exact, upper case), if the core uses it.
    pub fn parse(s: &str) -> Option<Method> {
        [
            Method::Get,
            Method::Post,
            Method::Put,
            Method::Patch,
            Method::Delete,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
    }

    /// Whether a request with this method carries a body (and so a `Content-Length`, even 0).
    pub fn has_body(self) -> bool {
        matches!(self, Method::Post | Method::Put | Method::Patch)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An outbound HTTP request the adapter must perform.
#[derive(Clone, PartialEq, Eq)]
pub struct Callout {
    /// The proxy's cluster (Envoy) or upstream (Pingora) to send it to.
    pub cluster: String,
    pub method: Method,
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
    /// No HTTP response.
    Failed(CalloutFailure),
}

/// Why a callout brought no HTTP response. The texts are for logs; they never hold secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalloutFailure {
    /// The proxy would not send it (an unknown cluster, a dispatch the host refused).
    NotSent(String),
    /// No answer within the call's timeout.
    Timeout { after_ms: u64 },
    /// Refused, reset or closed before a whole response.
    Connection(String),
    /// No response headers at all; the proxy does not say why (Envoy: timeout, reset or
    /// refused).
    NoResponse,
    /// Something came back that is not an acceptable HTTP response (e.g. too large).
    BadResponse(String),
}

impl fmt::Display for CalloutFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CalloutFailure::NotSent(why) => write!(f, "not sent: {why}"),
            CalloutFailure::Timeout { after_ms } => write!(f, "timed out after {after_ms} ms"),
            CalloutFailure::Connection(why) => write!(f, "connection failed: {why}"),
            CalloutFailure::NoResponse => f.write_str("no response (timeout, reset or refused)"),
            CalloutFailure::BadResponse(why) => write!(f, "bad response: {why}"),
        }
    }
}

/// Why a backend call did not succeed, for the audit log. Never contains secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendError {
    /// The backend (or its DoH relay) gave no HTTP answer.
    Unreachable {
        backend: &'static str,
        why: CalloutFailure,
    },
    /// An HTTP answer with a status other than the one wanted.
    Status {
        backend: &'static str,
        status: u16,
        detail: String,
    },
    /// The answer, or the change asked for, could not be used (a broken document, a refused
    /// update, a value that is not an address, an unusable key).
    Invalid(String),
    /// A signed answer refusing the whole change for something one name's change may cause
    /// (an RFC 2136 prerequisite): nothing was applied.
    Refused(String),
    /// The exchange ended before the backend answered.
    NoAnswer,
}

impl BackendError {
    /// Whether the backend applied nothing and one host's change may be the cause, so a
    /// batch of hosts may be split and retried (`group_commit`): a failed RFC 2136
    /// prerequisite, or PowerDNS refusing a PATCH (one transaction) as invalid.
    pub fn nothing_applied(&self) -> bool {
        match self {
            BackendError::Refused(_) => true,
            BackendError::Status {
                backend: "PowerDNS",
                status,
                ..
            } => matches!(status, 400 | 422),
            _ => false,
        }
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendError::Unreachable { backend, why } => write!(f, "{backend} unreachable: {why}"),
            BackendError::Status {
                backend,
                status,
                detail,
            } => write!(f, "{backend} answered {status}: {detail}"),
            BackendError::Invalid(why) | BackendError::Refused(why) => f.write_str(why),
            BackendError::NoAnswer => f.write_str("no answer from the backend"),
        }
    }
}

/// Inputs a backend may need that the core does not invent itself.
#[derive(Debug, Clone, Copy)]
pub struct BackendEnv {
    pub now_s: u64,
    pub random: u64,
}
