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

impl serde::Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every error code dynedge puts on the wire besides the DynDNS2 words ([`Code`]): the JSON
/// APIs' `code` fields (ApertoDNS, the management API, dynv6, acme-dns, path/query) and their
/// per-field validation codes. Only this table spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// A DynDNS2 word used as an error code (dynv6: `badauth`, `abuse`, `911`, ...).
    Dyndns2(Code),
    InvalidRequest,
    InvalidIp,
    InvalidJson,
    InvalidHostname,
    InvalidTtl,
    InvalidType,
    InvalidFormat,
    InvalidValue,
    Required,
    ValidationError,
    NotFound,
    MethodNotAllowed,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
    InvalidToken,
    TokenRevoked,
    TokenExpired,
    Forbidden,
    ServiceUnavailable,
    ServerError,
    DnsError,
    HostnameNotOwned,
    HostnameForbidden,
    TxtInvalidName,
    TxtValueTooLong,
    TxtLimitExceeded,
    RecordNotFound,
    BulkLimitExceeded,
    WebhookNotFound,
    TokenNotFound,
    Ipv4AutoFailed,
    Ipv6AutoFailed,
    InvalidAllowfromCidr,
    RegistrationDisabled,
    RegistrationUnavailable,
    MalformedJsonPayload,
    BadTxt,
    BadSubdomain,
    DbError,
    Unavailable,
    ParameterError,
    DnsServerError,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Dyndns2(code) => code.as_str(),
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidIp => "invalid_ip",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidHostname => "invalid_hostname",
            ErrorCode::InvalidTtl => "invalid_ttl",
            ErrorCode::InvalidType => "invalid_type",
            ErrorCode::InvalidFormat => "invalid_format",
            ErrorCode::InvalidValue => "invalid_value",
            ErrorCode::Required => "required",
            ErrorCode::ValidationError => "validation_error",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::TokenRevoked => "token_revoked",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::ServiceUnavailable => "service_unavailable",
            ErrorCode::ServerError => "server_error",
            ErrorCode::DnsError => "dns_error",
            ErrorCode::HostnameNotOwned => "hostname_not_owned",
            ErrorCode::HostnameForbidden => "hostname_forbidden",
            ErrorCode::TxtInvalidName => "txt_invalid_name",
            ErrorCode::TxtValueTooLong => "txt_value_too_long",
            ErrorCode::TxtLimitExceeded => "txt_limit_exceeded",
            ErrorCode::RecordNotFound => "record_not_found",
            ErrorCode::BulkLimitExceeded => "bulk_limit_exceeded",
            ErrorCode::WebhookNotFound => "webhook_not_found",
            ErrorCode::TokenNotFound => "token_not_found",
            ErrorCode::Ipv4AutoFailed => "ipv4_auto_failed",
            ErrorCode::Ipv6AutoFailed => "ipv6_auto_failed",
            ErrorCode::InvalidAllowfromCidr => "invalid_allowfrom_cidr",
            ErrorCode::RegistrationDisabled => "registration_disabled",
            ErrorCode::RegistrationUnavailable => "registration_unavailable",
            ErrorCode::MalformedJsonPayload => "malformed_json_payload",
            ErrorCode::BadTxt => "bad_txt",
            ErrorCode::BadSubdomain => "bad_subdomain",
            ErrorCode::DbError => "db_error",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::ParameterError => "parameter_error",
            ErrorCode::DnsServerError => "dns_server_error",
        }
    }
}

impl From<Code> for ErrorCode {
    fn from(code: Code) -> ErrorCode {
        ErrorCode::Dyndns2(code)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
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

    /// Whether the proxy-wasm VM configuration says the proxy adds [`SECURITY_HEADERS`] to
    /// every response itself: `{"layer0_headers": "proxy"}`, set in envoy/bootstrap.yaml.tmpl
    /// beside the header mutation that adds them. Anything else (nothing, other JSON, garbage)
    /// leaves them to the filter, so a proxy that adds none (a bare Istio) still sends each one;
    /// a wrong setting can only send a header twice, never drop it.
    pub fn layer0_by_proxy(vm_config: &[u8]) -> bool {
        #[derive(serde::Deserialize)]
        struct VmConfig {
            layer0_headers: Option<String>,
        }
        serde_json::from_slice::<VmConfig>(vm_config)
            .ok()
            .and_then(|c| c.layer0_headers)
            .is_some_and(|who| who == "proxy")
    }

    /// The headers an adapter sends: all of them, or without the [`SECURITY_HEADERS`] when the
    /// proxy adds those to every response itself ([`Reply::layer0_by_proxy`]), which saves the
    /// proxy setting each one twice.
    pub fn headers_to_send(&self, layer0_by_proxy: bool) -> Vec<(&str, &str)> {
        self.headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .filter(|kv| !(layer0_by_proxy && SECURITY_HEADERS.contains(kv)))
            .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_explicit_proxy_setting_leaves_the_layer0_headers_to_the_proxy() {
        assert!(Reply::layer0_by_proxy(br#"{"layer0_headers": "proxy"}"#));
        for other in [
            &b""[..],
            b"{}",
            br#"{"layer0_headers": "filter"}"#,
            br#"{"layer0_headers": true}"#,
            br#"{"layer0_headers": "PROXY"}"#,
            b"layer0_headers=proxy",
            b"\xff\xfe",
        ] {
            assert!(!Reply::layer0_by_proxy(other), "{other:?}");
        }
    }

    #[test]
    fn every_layer0_header_is_sent_once_by_the_filter_or_left_to_the_proxy() {
        let reply = Reply::text(200, "nochg 192.0.2.1\n").with_header("retry-after", "60");
        let all = reply.headers_to_send(false);
        for pair in SECURITY_HEADERS {
            assert_eq!(all.iter().filter(|kv| *kv == pair).count(), 1, "{pair:?}");
        }
        assert_eq!(all.len(), reply.headers.len());
        let rest = reply.headers_to_send(true);
        assert_eq!(
            rest,
            vec![
                ("content-type", "text/plain; charset=utf-8"),
                ("retry-after", "60")
            ]
        );
    }
}
