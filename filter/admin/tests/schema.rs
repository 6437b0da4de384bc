//! `examples/dynedge.schema.json` is what the configuration's serde types give, and every example
//! configuration (the JSON files and each Istio WasmPlugin's `pluginConfig`) satisfies it and
//! compiles with the filter's own `Config::from_json`.
// Test support: failing loudly is its job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use dynedge_core::Config;
use serde::Deserialize;
use serde_json::{json, Value};

const REFRESH: &str = "cargo run -q -p dynedge-admin -- schema > examples/dynedge.schema.json";

/// A change to one example document.
type Edit = fn(&mut Value);

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn schema_file() -> Value {
    let text = fs::read_to_string(examples().join("dynedge.schema.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&schema_file()).unwrap()
}

/// Every plugin configuration in `examples/`: (where, JSON).
fn example_configs() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = fs::read_dir(examples())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".json") && !name.ends_with(".schema.json") {
            let v = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
            out.push((name, v));
        } else if name.ends_with(".yaml") {
            let text = fs::read_to_string(&path).unwrap();
            for doc in serde_yaml::Deserializer::from_str(&text) {
                let v = Value::deserialize(doc).unwrap();
                if v["kind"] == "WasmPlugin" {
                    let label = format!("{name}: WasmPlugin {}", v["metadata"]["name"]);
                    out.push((label, v["spec"]["pluginConfig"].clone()));
                }
            }
        }
    }
    out
}

#[test]
fn the_schema_file_is_what_the_types_give() {
    let out = Command::new(env!("CARGO_BIN_EXE_dynedge"))
        .arg("schema")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, dynedge_core::adapter::json_schema());
    assert!(
        printed == schema_file(),
        "examples/dynedge.schema.json differs from the configuration types; refresh it: {REFRESH}"
    );
}

#[test]
fn every_example_configuration_satisfies_the_schema_and_compiles() {
    let configs = example_configs();
    let names: Vec<&str> = configs.iter().map(|(n, _)| n.as_str()).collect();
    // The three JSON configurations and at least the two WasmPlugins (selector, targetRefs).
    assert!(configs.len() >= 5, "too few examples found: {names:?}");
    let validator = validator();
    for (name, cfg) in &configs {
        let errors: Vec<String> = validator
            .iter_errors(cfg)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{name} against the schema: {errors:#?}");
        let bytes = serde_json::to_vec(cfg).unwrap();
        if let Err(e) = Config::from_json(&bytes) {
            panic!("{name}: the filter refuses it: {e}");
        }
    }
}

#[test]
fn the_schema_refuses_what_the_filter_refuses_for_its_shape() {
    let base: Value =
        serde_json::from_str(&fs::read_to_string(examples().join("dynedge.json")).unwrap())
            .unwrap();
    let validator = validator();
    assert!(validator.is_valid(&base));
    let broken: [(&str, Edit); 6] = [
        ("an unknown top-level field", |v| v["zone"] = json!([])),
        ("a zone without its backend", |v| {
            v["zones"][0].as_object_mut().unwrap().remove("backend");
        }),
        ("a ttl given as text", |v| {
            v["zones"][0]["ttl"] = json!("60")
        }),
        ("an unknown backend type", |v| {
            v["backends"]["pdns"]["type"] = json!("bind")
        }),
        ("a user without a password hash", |v| {
            v["users"][0]
                .as_object_mut()
                .unwrap()
                .remove("password_hash");
        }),
        ("an etcd store with an unknown field", |v| {
            v["store"] = json!({"type": "etcd", "ttl": 5})
        }),
    ];
    for (what, edit) in broken {
        let mut cfg = base.clone();
        edit(&mut cfg);
        assert!(!validator.is_valid(&cfg), "the schema accepts {what}");
        let bytes = serde_json::to_vec(&cfg).unwrap();
        assert!(
            Config::from_json(&bytes).is_err(),
            "the filter accepts {what}"
        );
    }
}
