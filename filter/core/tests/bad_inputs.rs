//! The bad-input corpus (`tests/data/bad_requests.jsonl`) against the core: every
//! malformed request gets its clear error and never reaches the backend. The same corpus runs
//! through real Envoy + the .wasm + PowerDNS in `envoy/tests/hardening.rs`.
#![cfg(feature = "testing")]

use std::collections::BTreeMap;

use dynedge_core::fuzzing::{bad_requests, cheap_demo, reply_codes, BAD_REQUESTS};
use dynedge_core::testing::Driver;

const SECRETS: &[&str] = &[
    "demo-password",
    "ZGVtbzpkZW1vLXBhc3N3b3Jk",
    "dynedge_test_demodemodemodemodemodemodemodemo",
    "dynedge-demo-pdns-key",
];

#[test]
fn the_corpus_has_at_least_200_malformed_requests_in_every_category() {
    let cases = bad_requests(BAD_REQUESTS).unwrap();
    assert!(cases.len() >= 200, "only {} cases", cases.len());
    let mut per: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &cases {
        *per.entry(c.category.as_str()).or_default() += 1;
    }
    for cat in [
        "percent-encoding",
        "non-utf8",
        "nul-control",
        "duplicate",
        "method",
        "body",
        "credentials",
        "address",
        "hostname",
        "idn-case",
        "injection",
        "path",
    ] {
        assert!(per.get(cat).copied().unwrap_or(0) >= 5, "{cat}: {per:?}");
    }
    let mut ids: Vec<&str> = cases.iter().map(|c| c.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), cases.len(), "ids are unique");
}

#[test]
fn every_malformed_request_gets_its_clear_error_and_no_backend_call() {
    let mut failures = Vec::new();
    for case in bad_requests(BAD_REQUESTS).unwrap() {
        let mut d = Driver::new(cheap_demo().clone());
        let reply = d.send(case.request());
        let verdict = match &reply {
            None => case.judge(404, &["pass".to_string()]),
            Some(r) => case.judge(r.status, &reply_codes(r)),
        };
        let verdict = verdict.and_then(|()| match d.calls.len() {
            0 => Ok(()),
            n => Err(format!("{n} backend call(s)")),
        });
        let leaked = d.log.iter().find(|l| SECRETS.iter().any(|s| l.contains(s)));
        if let Err(e) = verdict {
            let body = reply.map(|r| r.body_text().chars().take(120).collect::<String>());
            failures.push(format!("{}: {e} (body {body:?})", case.id));
        } else if let Some(line) = leaked {
            failures.push(format!("{}: a secret in the audit log: {line}", case.id));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
