//! Where the tests find their .wasm files (a missing file fails the test, it never skips), and
//! how a test answers the filter's callouts with the core's fake PowerDNS.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test]
#![allow(dead_code)]

use std::path::PathBuf;

use dynedge_core::testing::FakePowerDns;
use dynedge_core::{Callout, CalloutResult, Method};
use dynedge_test_host::{Answer, Call};

/// `$env` (for the filter also `$DYNEDGE_WASM`) if set, else `<workspace>/target/wasm32-wasip1/release/<file>`.
fn wasm(env: &str, file: &str, package: &str) -> PathBuf {
    // `cargo xtask test` exports DYNEDGE_WASM for dynedge's filter.
    let alias = (env == "DYNEDGE_FILTER_WASM")
        .then(|| std::env::var_os("DYNEDGE_WASM"))
        .flatten();
    let path = std::env::var_os(env)
        .or(alias)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/wasm32-wasip1/release")
                .join(file)
        });
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build -p {package} --target wasm32-wasip1 --release` \
         (or `cargo xtask test`), or point {env} at the .wasm",
        path.display()
    );
    path
}

/// The probe filter (`test-host/probe-filter`).
pub fn probe_wasm() -> PathBuf {
    wasm(
        "DYNEDGE_PROBE_WASM",
        "dynedge_probe_filter.wasm",
        "dynedge-probe-filter",
    )
}

/// dynedge's filter (`filter/proxy-wasm`).
pub fn filter_wasm() -> PathBuf {
    wasm(
        "DYNEDGE_FILTER_WASM",
        "dynedge_filter.wasm",
        "dynedge-filter",
    )
}

/// A callout the filter made, as the core's [`Callout`].
pub fn to_callout(call: &Call) -> Callout {
    Callout {
        cluster: call.cluster.clone(),
        method: Method::parse(call.method()).expect("a method the core sends"),
        authority: call.header(":authority").unwrap_or("").to_owned(),
        path: call.path().to_owned(),
        headers: call.headers.clone(),
        body: call.body.clone(),
        timeout_ms: u64::from(call.timeout_ms),
    }
}

/// The fake PowerDNS's answer to a callout, as the test host delivers it (a fake: tests that
/// use it say so).
pub fn fake_pdns_answer(pdns: &mut FakePowerDns, call: &Call) -> Answer {
    match pdns.answer(&to_callout(call)) {
        CalloutResult::Response {
            status,
            headers,
            body,
        } => Answer::Respond {
            status,
            headers,
            body,
        },
        CalloutResult::Failed(_) => Answer::Fail,
    }
}
