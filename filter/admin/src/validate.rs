//! `dynedge validate FILE` and `dynedge schema`: check a plugin configuration before rollout.
//!
//! The configuration is compiled by the same [`Config::from_json`] the filter runs at configure
//! time, and a refusal is printed as the filter logs it (`dynedge: configuration PATH: ...`).
//! FILE is the plugin configuration as JSON, or YAML holding Istio `WasmPlugin` resources
//! (each one's `spec.pluginConfig` is checked, as Istio hands it to the filter).

use std::process::ExitCode;

use dynedge_core::Config;
use serde::Deserialize;
use serde_json::Value;

/// Runs `validate FILE` or `schema`; `None` for any other command.
pub fn command(args: &[String]) -> Option<ExitCode> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["validate", file] => Some(match validate(file) {
            Ok(lines) => {
                lines.iter().for_each(|l| println!("{l}"));
                ExitCode::SUCCESS
            }
            Err(lines) => {
                lines.iter().for_each(|l| eprintln!("{l}"));
                ExitCode::FAILURE
            }
        }),
        ["schema"] => {
            print!("{}", schema_text());
            Some(ExitCode::SUCCESS)
        }
        _ => None,
    }
}

/// One configuration to check: where it came from, and its JSON.
struct Candidate {
    label: Option<String>,
    json: Vec<u8>,
}

/// Every error the filter would log for `path`, as `Err` lines; the summary lines as `Ok`.
pub fn validate(path: &str) -> Result<Vec<String>, Vec<String>> {
    let text = std::fs::read(path).map_err(|e| vec![format!("{path}: {e}")])?;
    let yaml = path.ends_with(".yaml") || path.ends_with(".yml");
    let candidates = if yaml {
        wasm_plugins(&text).map_err(|e| vec![format!("{path}: {e}")])?
    } else {
        vec![Candidate {
            label: None,
            json: text,
        }]
    };
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    for c in candidates {
        let prefix = c.label.map(|l| format!("{l}: ")).unwrap_or_default();
        match Config::from_json(&c.json) {
            Ok(cfg) => {
                for w in cfg.warnings() {
                    ok.push(format!("{prefix}dynedge: {w}"));
                }
                ok.push(format!(
                    "{prefix}dynedge: valid: {} zone(s), {} user(s), {} token(s)",
                    cfg.zones.len(),
                    cfg.users.len(),
                    cfg.tokens.len()
                ));
            }
            Err(e) => errors.push(format!("{prefix}dynedge: {e}")),
        }
    }
    if errors.is_empty() {
        Ok(ok)
    } else {
        Err(errors)
    }
}

/// The `spec.pluginConfig` of each `WasmPlugin` in a YAML stream, as JSON.
fn wasm_plugins(text: &[u8]) -> Result<Vec<Candidate>, String> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_slice(text) {
        let v = Value::deserialize(doc).map_err(|e| e.to_string())?;
        if v["kind"] != "WasmPlugin" {
            continue;
        }
        let name = v["metadata"]["name"].as_str().unwrap_or("?");
        let label = match v["metadata"]["namespace"].as_str() {
            Some(ns) => format!("WasmPlugin {ns}/{name}"),
            None => format!("WasmPlugin {name}"),
        };
        // Istio hands an absent pluginConfig to the filter as an empty configuration.
        let json = match v["spec"].get("pluginConfig") {
            Some(cfg) => serde_json::to_vec(cfg).map_err(|e| e.to_string())?,
            None => Vec::new(),
        };
        out.push(Candidate {
            label: Some(label),
            json,
        });
    }
    if out.is_empty() {
        return Err("no WasmPlugin resource in this file".into());
    }
    Ok(out)
}

/// `examples/dynedge.schema.json`, as `dynedge schema` prints it.
pub fn schema_text() -> String {
    let pretty =
        serde_json::to_string_pretty(&dynedge_core::adapter::json_schema()).unwrap_or_default();
    format!("{pretty}\n")
}
