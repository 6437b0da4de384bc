//! Every fuzz seed and every input that ever crashed a fuzz target, replayed as a plain test.
//!
//! Seeds live in `fuzz/seeds/<target>/`, crashes in `fuzz/regressions/<target>/` (copy the
//! artifact libFuzzer prints there, fix the core, and this test keeps it fixed).
#![cfg(feature = "testing")]

use std::fs;
use std::path::Path;

use dynedge_core::fuzzing::TARGETS;

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
