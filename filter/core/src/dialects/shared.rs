//! What every dialect shares and that names no dialect: the error wordings, a rejection, and
//! small JSON and path helpers.

use crate::reply::{ErrorCode, Reply};

/// A percent-encoded path segment (`encodeURIComponent` on the client side).
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    crate::request::Params::parse(&format!("v={}", s.replace('+', "%2B")))
        .ok()?
        .one("v")
        .ok()
        .flatten()
        .map(str::to_string)
}

/// `doc[key] = value` for a JSON object, without serde_json's panic for anything else (which
/// leaves it unchanged).
pub(crate) fn set_field(doc: &mut serde_json::Value, key: &str, value: serde_json::Value) {
    if let Some(map) = doc.as_object_mut() {
        map.insert(key.to_string(), value);
    }
}

/// Why a dialect refused a request while parsing it: the HTTP status, the wire code, what to
/// tell the client, and when to come back (a rate limit's `Retry-After`). A dialect words it in
/// its own format, or with [`Rejection::reply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub code: ErrorCode,
    pub message: String,
    pub retry_after_s: Option<u64>,
}

impl Rejection {
    pub fn new(status: u16, code: impl Into<ErrorCode>, message: impl Into<String>) -> Rejection {
        Rejection {
            status,
            code: code.into(),
            message: message.into(),
            retry_after_s: None,
        }
    }

    pub fn retry_after(self, s: u64) -> Rejection {
        Rejection {
            retry_after_s: Some(s),
            ..self
        }
    }

    /// `code: message` as text, or the JSON error body ([`error_reply`]).
    pub fn reply(&self, json: bool) -> Reply {
        self.finish(error_reply(json, self.status, self.code, &self.message))
    }

    /// A dialect's own wording of this rejection, with its `Retry-After`.
    pub fn finish(&self, reply: Reply) -> Reply {
        match self.retry_after_s {
            Some(s) => reply.with_header("retry-after", &s.to_string()),
            None => reply,
        }
    }
}

/// The JSON error body every non-ApertoDNS dialect uses: `{"status": "error", "code", "message"}`.
pub fn json_error(status: u16, code: ErrorCode, message: &str) -> Reply {
    Reply::json(
        status,
        &serde_json::json!({"status": "error", "code": code, "message": message}),
    )
}

/// An error as plain text (`code: message`) or, with `Accept: application/json`, [`json_error`].
pub fn error_reply(json: bool, status: u16, code: impl Into<ErrorCode>, message: &str) -> Reply {
    let code = code.into();
    if json {
        json_error(status, code, message)
    } else {
        Reply::text(status, format!("{code}: {message}\n"))
    }
}
