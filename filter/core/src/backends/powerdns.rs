//! PowerDNS Authoritative HTTP API: `GET`/`PATCH /api/v1/servers/{id}/zones/{zone}.`

use serde::Deserialize;
use serde_json::json;

use super::{BackendError, Callout, CalloutResult, Method, RrSet, RrType};
use crate::config::PowerDnsBackend;
use crate::names::Fqdn;

fn zone_path(b: &PowerDnsBackend, zone: &Fqdn) -> String {
    format!("/api/v1/servers/{}/zones/{}.", b.server_id, zone)
}

fn call(b: &PowerDnsBackend, method: Method, path: String, body: Vec<u8>) -> Callout {
    let mut headers = vec![
        ("x-api-key".to_string(), b.api_key.0.clone()),
        ("accept".to_string(), "application/json".to_string()),
    ];
    if !body.is_empty() {
        headers.push(("content-type".into(), "application/json".into()));
    }
    Callout {
        cluster: b.cluster.clone(),
        method,
        authority: b.authority.clone(),
        path,
        headers,
        body,
        timeout_ms: b.timeout_ms,
    }
}

pub fn read(b: &PowerDnsBackend, zone: &Fqdn, name: &Fqdn, rtype: RrType) -> Callout {
    let path = format!(
        "{}?rrset_name={}.&rrset_type={}",
        zone_path(b, zone),
        name,
        rtype.as_str()
    );
    call(b, Method::Get, path, Vec::new())
}

#[derive(Deserialize)]
struct ZoneDoc {
    rrsets: Vec<RrsetDoc>,
}

#[derive(Deserialize)]
struct RrsetDoc {
    name: String,
    #[serde(rename = "type")]
    rtype: String,
    records: Vec<RecordDoc>,
}

#[derive(Deserialize)]
struct RecordDoc {
    content: String,
    #[serde(default)]
    disabled: bool,
}

pub fn parse_read(
    name: &Fqdn,
    rtype: RrType,
    result: &CalloutResult,
) -> Result<Vec<String>, BackendError> {
    let body = ok_body(result, 200)?;
    let doc: ZoneDoc = serde_json::from_slice(body).map_err(|e| {
        // serde quotes the offending input: keep what reaches the audit log short.
        let why: String = e.to_string().chars().take(200).collect();
        BackendError::Invalid(format!("PowerDNS sent an unreadable zone document: {why}"))
    })?;
    let want_name = format!("{name}.");
    Ok(doc
        .rrsets
        .into_iter()
        .filter(|s| s.name.eq_ignore_ascii_case(&want_name) && s.rtype == rtype.as_str())
        .flat_map(|s| s.records)
        .filter(|r| !r.disabled)
        .map(|r| match rtype {
            RrType::Txt => unquote_txt(&r.content),
            _ => r.content,
        })
        .collect())
}

pub fn write(b: &PowerDnsBackend, zone: &Fqdn, sets: &[RrSet]) -> Callout {
    let rrsets: Vec<serde_json::Value> = sets
        .iter()
        .map(|s| {
            let records: Vec<serde_json::Value> = s
                .values
                .iter()
                .map(|v| {
                    let content = match s.rtype {
                        RrType::Txt => quote_txt(v),
                        _ => v.clone(),
                    };
                    json!({"content": content, "disabled": false})
                })
                .collect();
            if records.is_empty() {
                json!({"name": format!("{}.", s.name), "type": s.rtype.as_str(), "changetype": "DELETE"})
            } else {
                json!({"name": format!("{}.", s.name), "type": s.rtype.as_str(), "ttl": s.ttl,
                       "changetype": "REPLACE", "records": records})
            }
        })
        .collect();
    let body = json!({ "rrsets": rrsets }).to_string().into_bytes();
    call(b, Method::Patch, zone_path(b, zone), body)
}

pub fn check_write(result: &CalloutResult) -> Result<(), BackendError> {
    ok_body(result, 204).map(|_| ())
}

fn ok_body(result: &CalloutResult, want: u16) -> Result<&[u8], BackendError> {
    match result {
        CalloutResult::Failed(why) => Err(BackendError::Unreachable {
            backend: "PowerDNS",
            why: why.clone(),
        }),
        CalloutResult::Response { status, body, .. } if *status == want => Ok(body),
        CalloutResult::Response { status, body, .. } => {
            // 422 bodies are `{"error": "..."}`; others are short plain text.
            let detail: String = String::from_utf8_lossy(body).chars().take(200).collect();
            Err(BackendError::Status {
                backend: "PowerDNS",
                status: *status,
                detail,
            })
        }
    }
}

fn quote_txt(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

fn unquote_txt(content: &str) -> String {
    // PowerDNS may split long TXT into several quoted strings; join them.
    let mut out = String::new();
    let mut in_quotes = false;
    let mut chars = content.chars();
    while let Some(c) = chars.next() {
        match (c, in_quotes) {
            ('"', _) => in_quotes = !in_quotes,
            ('\\', true) => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            (c, true) => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn backend() -> PowerDnsBackend {
        PowerDnsBackend {
            cluster: "pdns_api".into(),
            authority: "127.0.0.1:18081".into(),
            server_id: "localhost".into(),
            api_key: Secret("k".into()),
            timeout_ms: 1000,
        }
    }

    fn name(s: &str) -> Fqdn {
        Fqdn::parse_service(s).unwrap()
    }

    #[test]
    fn write_builds_replace_and_delete_rrsets() {
        let sets = [
            RrSet {
                name: name("h.dyn.example.test"),
                rtype: RrType::A,
                ttl: 60,
                values: vec!["192.0.2.1".into()],
            },
            RrSet {
                name: name("h.dyn.example.test"),
                rtype: RrType::Aaaa,
                ttl: 60,
                values: vec![],
            },
            RrSet {
                name: name("_acme-challenge.h.dyn.example.test"),
                rtype: RrType::Txt,
                ttl: 60,
                values: vec!["say \"hi\"".into()],
            },
        ];
        let c = write(&backend(), &name("dyn.example.test"), &sets);
        assert_eq!(c.method, Method::Patch);
        assert_eq!(c.path, "/api/v1/servers/localhost/zones/dyn.example.test.");
        let v: serde_json::Value = serde_json::from_slice(&c.body).unwrap();
        assert_eq!(v["rrsets"][0]["changetype"], "REPLACE");
        assert_eq!(v["rrsets"][0]["name"], "h.dyn.example.test.");
        assert_eq!(v["rrsets"][0]["records"][0]["content"], "192.0.2.1");
        assert_eq!(v["rrsets"][1]["changetype"], "DELETE");
        assert_eq!(
            v["rrsets"][2]["records"][0]["content"],
            "\"say \\\"hi\\\"\""
        );
        assert!(c.headers.iter().any(|(k, v)| k == "x-api-key" && v == "k"));
    }

    #[test]
    fn parse_read_picks_the_rrset_and_unquotes_txt() {
        let body = br#"{"rrsets":[
            {"name":"h.dyn.example.test.","type":"A","records":[{"content":"192.0.2.1","disabled":false},{"content":"192.0.2.9","disabled":true}]},
            {"name":"other.dyn.example.test.","type":"A","records":[{"content":"192.0.2.2"}]},
            {"name":"h.dyn.example.test.","type":"TXT","records":[{"content":"\"ab\" \"c\\\"d\""}]}]}"#;
        let r = CalloutResult::Response {
            status: 200,
            headers: vec![],
            body: body.to_vec(),
        };
        let n = name("h.dyn.example.test");
        assert_eq!(parse_read(&n, RrType::A, &r).unwrap(), vec!["192.0.2.1"]);
        assert_eq!(parse_read(&n, RrType::Txt, &r).unwrap(), vec!["abc\"d"]);
        assert!(parse_read(&n, RrType::Aaaa, &r).unwrap().is_empty());
    }

    #[test]
    fn anything_but_the_expected_status_is_an_error() {
        for r in [
            CalloutResult::Failed(crate::backends::CalloutFailure::Timeout { after_ms: 1000 }),
            CalloutResult::Response {
                status: 422,
                headers: vec![],
                body: br#"{"error":"x"}"#.to_vec(),
            },
            CalloutResult::Response {
                status: 200,
                headers: vec![],
                body: vec![],
            },
            CalloutResult::Response {
                status: 500,
                headers: vec![],
                body: vec![],
            },
        ] {
            assert!(check_write(&r).is_err(), "{r:?}");
        }
        let garbage = CalloutResult::Response {
            status: 200,
            headers: vec![],
            body: b"<html>".to_vec(),
        };
        assert!(parse_read(&name("a.test"), RrType::A, &garbage).is_err());
    }
}
