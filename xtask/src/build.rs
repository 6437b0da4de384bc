//! Building the filter (.wasm) and the Pingora gateway.

use std::fs;
use std::path::PathBuf;

use dynedge_envoy::workspace_root;

use crate::tools::WASM_TARGET;
use crate::{cargo, run_visible, step, Result};

/// `cargo build -p dynedge-filter --target wasm32-wasip1 --release`; the .wasm's path.
pub fn wasm() -> Result<PathBuf> {
    step("building the filter and the test-host probe (cargo build -p dynedge-filter -p dynedge-probe-filter --target wasm32-wasip1 --release)");
    run_visible(
        "cargo build (filter)",
        cargo().current_dir(workspace_root()).args([
            "build",
            "-p",
            "dynedge-filter",
            "-p",
            "dynedge-probe-filter",
            "--release",
            "--target",
            WASM_TARGET,
        ]),
    )?;
    let path = dynedge_envoy::wasm_file()?;
    let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!("    {} ({} KiB)", path.display(), size.div_ceil(1024));
    Ok(path)
}

/// `cargo build -p dynedge-pingora --release`; the binary's path.
pub fn pingora() -> Result<PathBuf> {
    step("building the Pingora gateway (cargo build -p dynedge-pingora --release)");
    run_visible(
        "cargo build (dynedge-pingora)",
        cargo()
            .current_dir(workspace_root())
            .args(["build", "-p", "dynedge-pingora", "--release"]),
    )?;
    dynedge_envoy::pingora_binary()
}
