//! Every fuzz seed and every input that ever crashed a fuzz target, replayed as a plain test.
//!
//! Seeds live in `fuzz/seeds/<target>/`, crashes in `fuzz/regressions/<target>/` (copy the
//! artifact libFuzzer prints there, fix the core, and this test keeps it fixed).
#![cfg(feature = "testing")]
#![allow(
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::arithmetic_side_effects
)]

use std::fs;
use std::path::Path;

use dynedge_core::fuzzing::{exchange_input, fuzz_world, TARGETS};

fn replay(dir: &str) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(dir);
    let mut n = 0;
    for (name, check) in TARGETS {
        let Ok(entries) = fs::read_dir(root.join(name)) else {
            continue;
        };
        for path in entries.flatten().map(|e| e.path()) {
            eprintln!("{name}: {}", path.display());
            match fs::read(&path) {
                Ok(bytes) => check(&bytes),
                Err(e) => unreachable!("{} cannot be read: {e}", path.display()),
            }
            n += 1;
        }
    }
    n
}

#[test]
fn every_fuzz_seed_holds_the_targets_properties() {
    assert!(replay("seeds") >= TARGETS.len(), "seeds are missing");
}

#[test]
fn every_input_that_once_crashed_a_fuzz_target_now_passes() {
    replay("regressions");
}

#[test]
fn every_fuzz_target_has_seeds_and_a_cargo_fuzz_binary() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let manifest = fs::read_to_string(root.join("Cargo.toml")).unwrap();
    for (name, _) in TARGETS {
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "{name} is not a cargo-fuzz target"
        );
        assert!(
            fs::read_dir(root.join("seeds").join(name)).unwrap().count() > 0,
            "{name} has no seeds"
        );
    }
}

/// The structured seeds of `exchange` (`s_*`, byte 1 the credential: 0 none, 2 a wrong
/// password) reach their routes authenticated: the fuzzer starts behind authentication.
#[test]
fn structured_exchange_seeds_get_past_authentication() {
    let world = fuzz_world();
    assert!(world.token.starts_with("dynedge_"), "{}", world.token);
    assert!(world.token_id.starts_with("tok_") && world.webhook_id.starts_with("wh_"));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/exchange");
    let (mut n, mut refused) = (0, vec![]);
    for path in fs::read_dir(dir).unwrap().flatten().map(|e| e.path()) {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let bytes = fs::read(&path).unwrap();
        if !name.starts_with("s_") || matches!(bytes.get(1), Some(0 | 2) | None) {
            continue;
        }
        let (mut d, req) = exchange_input(&bytes);
        let reply = d.send(req).unwrap_or_else(|| panic!("{name}: passed on"));
        if [401, 403, 404, 405].contains(&reply.status) {
            refused.push(format!("{name}: {} {}", reply.status, reply.body_text()));
        }
        n += 1;
    }
    assert!(refused.is_empty(), "{refused:#?}");
    assert!(n >= 20, "only {n} structured seeds");
}
