//! Where the tests find their .wasm files. A missing file fails the test (it never skips).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test]
#![allow(dead_code)]

use std::path::PathBuf;

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
