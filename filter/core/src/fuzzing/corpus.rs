//! The bad-request corpus (`tests/data/bad_requests.jsonl`): malformed requests and the
//! errors they must get, natively here and through Envoy in `envoy/tests/hardening.rs`.

use crate::reply::Reply;
use crate::request::Request;

/// The DynDNS2 result codes of a reply: one per host line, or from the JSON document.
pub fn reply_codes(reply: &Reply) -> Vec<String> {
    let body = String::from_utf8_lossy(&reply.body);
    if let Ok(doc) = serde_json::from_str::<serde_json::Value>(&body) {
        fn text<'a>(v: &'a serde_json::Value, k: &str) -> Option<&'a str> {
            v.get(k)?.as_str()
        }
        let mut codes: Vec<String> = doc
            .get("results")
            .and_then(|r| r.as_array())
            .map(|r| {
                r.iter()
                    .filter_map(|x| text(x, "status").map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if codes.is_empty() {
            codes.extend(
                text(&doc, "code")
                    .or(text(&doc, "status"))
                    .map(str::to_string),
            );
        }
        return codes;
    }
    body.lines()
        .filter_map(|l| l.split([' ', ':']).next())
        .map(str::to_string)
        .collect()
}

/// Codes that say the backend was (or may have been) asked: anything else is a rejection.
pub const ATTEMPT_CODES: &[&str] = &["good", "nochg", "dnserr", "911"];

/// Statuses that refuse a request outright in every dialect: no backend call may precede them.
pub const REFUSAL_STATUSES: &[u16] = &[401, 403, 405, 413, 429];

/// One malformed request of `tests/data/bad_requests.jsonl` and the error it must get.
#[derive(Debug, Clone)]
pub struct BadRequest {
    pub id: String,
    pub category: String,
    pub method: Vec<u8>,
    pub path: Vec<u8>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
    /// The acceptable reply codes (`pass`: not a dynedge route).
    pub expect: Vec<String>,
    /// The HTTP statuses the core may answer (one per acceptable code).
    pub status: Vec<u16>,
    /// The status when Envoy's own codec refuses the request before the filter.
    pub envoy_status: Option<u16>,
}

/// The corpus as checked in.
pub const BAD_REQUESTS: &str = include_str!("../../tests/data/bad_requests.jsonl");

/// `{{xHH}}` → one raw byte, `{{repeat:N:TEXT}}` → TEXT N times; the rest is UTF-8 text.
pub fn expand(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some((before, after)) = rest.split_once("{{") {
        out.extend_from_slice(before.as_bytes());
        let Some((token, tail)) = after.split_once("}}") else {
            rest = rest.get(before.len()..).unwrap_or_default();
            break;
        };
        if let Some(hex) = token.strip_prefix('x') {
            out.extend(u8::from_str_radix(hex, 16).ok());
        } else if let Some(spec) = token.strip_prefix("repeat:") {
            let (n, what) = spec.split_once(':').unwrap_or(("0", ""));
            out.extend(what.as_bytes().repeat(n.parse().unwrap_or(0)));
        }
        rest = tail;
    }
    out.extend_from_slice(rest.as_bytes());
    out
}

fn status(v: &serde_json::Value) -> Option<u16> {
    v.as_u64().and_then(|s| u16::try_from(s).ok())
}

/// Parses the corpus; a malformed line is an error naming it.
pub fn bad_requests(text: &str) -> Result<Vec<BadRequest>, String> {
    let mut out = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("line {}: {e}", n.saturating_add(1)))?;
        let null = serde_json::Value::Null;
        let get = |k: &str| v.get(k).unwrap_or(&null);
        let s = |k: &str| get(k).as_str().unwrap_or("").to_string();
        out.push(BadRequest {
            id: s("id"),
            category: s("category"),
            method: expand(&s("method")),
            path: expand(&s("path")),
            headers: get("headers")
                .as_array()
                .map(|hs| {
                    hs.iter()
                        .map(|h| {
                            let part =
                                |i: usize| expand(h.get(i).and_then(|p| p.as_str()).unwrap_or(""));
                            (part(0), part(1))
                        })
                        .collect()
                })
                .unwrap_or_default(),
            body: expand(&s("body")),
            expect: s("expect").split('|').map(str::to_string).collect(),
            status: match get("status") {
                serde_json::Value::Array(all) => all.iter().filter_map(status).collect(),
                one => status(one).into_iter().collect(),
            },
            envoy_status: status(get("envoy_status")),
        });
        if out.last().is_some_and(|c| c.status.is_empty()) {
            return Err(format!("line {}: no status", n.saturating_add(1)));
        }
    }
    Ok(out)
}

impl BadRequest {
    /// The request as an adapter snapshots it (bytes that are not UTF-8 replaced, as the
    /// proxy-wasm adapter does).
    pub fn request(&self) -> Request {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Request {
            method: text(&self.method),
            path: text(&self.path),
            headers: self
                .headers
                .iter()
                .map(|(k, v)| (text(k), text(v)))
                .collect(),
            body: self.body.clone(),
            peer: "198.51.100.77".parse().ok(),
        }
    }

    /// Whether a reply (`None`: passed on) is the error this case expects.
    pub fn judge(&self, status: u16, codes: &[String]) -> Result<(), String> {
        if !self.status.contains(&status) {
            return Err(format!("status {status}, expected {:?}", self.status));
        }
        if !codes.iter().any(|c| self.expect.contains(c)) {
            return Err(format!(
                "codes {codes:?}, expected one of {:?}",
                self.expect
            ));
        }
        if codes.iter().any(|c| ATTEMPT_CODES.contains(&c.as_str())) {
            return Err(format!("codes {codes:?} include an update attempt"));
        }
        Ok(())
    }
}
