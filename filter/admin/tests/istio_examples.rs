//! The Istio examples (`examples/istio-*.yaml`) use only fields of the WasmPlugin API version
//! they name, fail closed, run in a named phase with a priority, and come with the buffer
//! filter POST updates need, on the same gateway. (Their `pluginConfig` is checked against the
//! schema and the filter in tests/schema.rs.)
// Test support: failing loudly is its job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

/// `spec` fields of WasmPlugin `extensions.istio.io/v1alpha1`, from Istio's API
/// (`extensions/v1alpha1/wasm.proto`, as of Istio 1.22+, which added `targetRefs`).
const V1ALPHA1_FIELDS: &[&str] = &[
    "selector",
    "targetRef",
    "targetRefs",
    "url",
    "sha256",
    "imagePullPolicy",
    "imagePullSecret",
    "verificationKey",
    "pluginConfig",
    "pluginName",
    "phase",
    "priority",
    "failStrategy",
    "vmConfig",
    "match",
    "type",
];
const PHASES: &[&str] = &["UNSPECIFIED_PHASE", "AUTHN", "AUTHZ", "STATS"];
const PULL_POLICIES: &[&str] = &["UNSPECIFIED_POLICY", "IfNotPresent", "Always"];
const TYPES: &[&str] = &["UNSPECIFIED_PLUGIN_TYPE", "HTTP", "NETWORK"];

/// A change to one example document.
type Edit = fn(&mut Value);

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Each `examples/istio-*.yaml`: (file name, its documents).
fn istio_files() -> Vec<(String, Vec<Value>)> {
    let mut out = Vec::new();
    for entry in fs::read_dir(examples()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !(name.starts_with("istio-") && name.ends_with(".yaml")) {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap();
        let docs = serde_yaml::Deserializer::from_str(&text)
            .map(|d| Value::deserialize(d).unwrap())
            .collect();
        out.push((name, docs));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// Everything wrong with one WasmPlugin, as text (empty: fine).
fn wasmplugin_problems(p: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    if p["apiVersion"] != "extensions.istio.io/v1alpha1" {
        problems.push(format!("unknown apiVersion {}", p["apiVersion"]));
        return problems;
    }
    let spec = p["spec"].as_object().cloned().unwrap_or_default();
    for key in spec.keys() {
        if !V1ALPHA1_FIELDS.contains(&key.as_str()) {
            problems.push(format!("spec.{key} is not a v1alpha1 WasmPlugin field"));
        }
    }
    let has = |k: &str| spec.contains_key(k);
    if has("selector") == has("targetRefs") {
        problems.push("exactly one of spec.selector and spec.targetRefs must be set".into());
    }
    if let Some(refs) = spec.get("targetRefs") {
        for r in refs.as_array().cloned().unwrap_or_default() {
            if r["group"] != "gateway.networking.k8s.io" || r["kind"] != "Gateway" {
                problems.push(format!("targetRefs entry {r} is not a Gateway API Gateway"));
            }
        }
    }
    let url = spec.get("url").and_then(Value::as_str).unwrap_or("");
    if !url.starts_with("oci://") {
        problems.push(format!("spec.url {url:?} is not an oci:// image"));
    }
    let sha = spec.get("sha256").and_then(Value::as_str).unwrap_or("");
    if sha.len() != 64
        || !sha
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        problems.push(format!(
            "spec.sha256 {sha:?} is not 64 lower-case hex digits"
        ));
    }
    if spec.get("failStrategy").and_then(Value::as_str) != Some("FAIL_CLOSE") {
        problems
            .push("spec.failStrategy must be FAIL_CLOSE (an auth filter never fails open)".into());
    }
    match spec.get("phase").and_then(Value::as_str) {
        Some(phase) if PHASES.contains(&phase) && phase != "UNSPECIFIED_PHASE" => {}
        other => problems.push(format!("spec.phase {other:?} is not a named phase")),
    }
    match spec.get("priority").and_then(Value::as_i64) {
        Some(p) if i32::try_from(p).is_ok() => {}
        other => problems.push(format!("spec.priority {other:?} is not an int32")),
    }
    if let Some(policy) = spec.get("imagePullPolicy").and_then(Value::as_str) {
        if !PULL_POLICIES.contains(&policy) {
            problems.push(format!(
                "spec.imagePullPolicy {policy} is not a pull policy"
            ));
        }
    }
    if let Some(t) = spec.get("type").and_then(Value::as_str) {
        if t != "HTTP" || !TYPES.contains(&t) {
            problems.push(format!("spec.type {t}: dynedge is an HTTP filter"));
        }
    }
    // On a gateway, SERVER traffic is none of it: Istio reads gateway listeners as CLIENT.
    for m in spec
        .get("match")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        if m["mode"] == "SERVER" {
            problems.push("spec.match mode SERVER never matches on a gateway".into());
        }
    }
    if !spec.contains_key("pluginConfig") {
        problems.push("spec.pluginConfig is missing".into());
    }
    problems
}

/// The pod labels the WasmPlugin applies to, as a workloadSelector would name them.
fn gateway_labels(p: &Value) -> Value {
    if let Some(labels) = p["spec"]["selector"].get("matchLabels") {
        return labels.clone();
    }
    let name = p["spec"]["targetRefs"][0]["name"].clone();
    serde_json::json!({ "gateway.networking.k8s.io/gateway-name": name })
}

/// Whether `f` inserts Envoy's buffer filter before the router (so after every WasmPlugin) on
/// the gateway with `labels` in `namespace`.
fn buffers_posts_for(f: &Value, labels: &Value, namespace: &Value) -> bool {
    if f["apiVersion"] != "networking.istio.io/v1alpha3" || &f["metadata"]["namespace"] != namespace
    {
        return false;
    }
    if &f["spec"]["workloadSelector"]["labels"] != labels {
        return false;
    }
    let patches = f["spec"]["configPatches"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    patches.iter().any(|c| {
        let value = &c["patch"]["value"];
        c["applyTo"] == "HTTP_FILTER"
            && c["match"]["context"] == "GATEWAY"
            && c["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"]
                == "envoy.filters.http.router"
            && c["patch"]["operation"] == "INSERT_BEFORE"
            && value["name"] == "envoy.filters.http.buffer"
            && value["typed_config"]["@type"]
                == "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer"
            && value["typed_config"]["max_request_bytes"].as_u64() == Some(65536)
    })
}

#[test]
fn the_examples_cover_selector_and_targetrefs() {
    let files = istio_files();
    let plugins: Vec<&Value> = files
        .iter()
        .flat_map(|(_, docs)| of_kind(docs, "WasmPlugin"))
        .collect();
    let by = |field: &str| {
        plugins
            .iter()
            .filter(|p| p["spec"].get(field).is_some())
            .count()
    };
    assert!(by("selector") >= 1, "no WasmPlugin with a selector");
    assert!(by("targetRefs") >= 1, "no WasmPlugin with targetRefs");
}

#[test]
fn every_wasmplugin_uses_only_fields_of_its_api_version_and_fails_closed() {
    for (file, docs) in istio_files() {
        for p in of_kind(&docs, "WasmPlugin") {
            let problems = wasmplugin_problems(p);
            assert!(problems.is_empty(), "{file}: {problems:#?}");
        }
    }
}

#[test]
fn every_wasmplugin_comes_with_the_buffer_filter_on_its_gateway() {
    for (file, docs) in istio_files() {
        let filters = of_kind(&docs, "EnvoyFilter");
        for p in of_kind(&docs, "WasmPlugin") {
            let labels = gateway_labels(p);
            let ns = &p["metadata"]["namespace"];
            assert!(
                filters.iter().any(|f| buffers_posts_for(f, &labels, ns)),
                "{file}: no EnvoyFilter adds envoy.filters.http.buffer before the router for {labels} in {ns}"
            );
        }
    }
}

#[test]
fn the_checks_catch_what_istio_would_refuse_or_misapply() {
    let files = istio_files();
    let good = files
        .iter()
        .flat_map(|(_, docs)| of_kind(docs, "WasmPlugin"))
        .next()
        .unwrap()
        .clone();
    assert!(wasmplugin_problems(&good).is_empty());
    let edits: [(&str, Edit); 6] = [
        ("a field of another version", |p| {
            p["spec"]["rootID"] = "dynedge".into()
        }),
        ("fail open", |p| {
            p["spec"]["failStrategy"] = "FAIL_OPEN".into()
        }),
        ("no phase", |p| {
            p["spec"].as_object_mut().unwrap().remove("phase");
        }),
        ("a digest with the sha256: prefix", |p| {
            p["spec"]["sha256"] = format!("sha256:{}", "0".repeat(64)).into()
        }),
        ("SERVER traffic on a gateway", |p| {
            p["spec"]["match"] = serde_json::json!([{"mode": "SERVER"}])
        }),
        ("both selector and targetRefs", |p| {
            p["spec"]["selector"] = serde_json::json!({"matchLabels": {"istio": "ingressgateway"}});
            p["spec"]["targetRefs"] = serde_json::json!([{"group": "gateway.networking.k8s.io",
                                                          "kind": "Gateway", "name": "g"}]);
        }),
    ];
    for (what, edit) in edits {
        let mut p = good.clone();
        edit(&mut p);
        assert!(!wasmplugin_problems(&p).is_empty(), "not caught: {what}");
    }
    let fields: BTreeSet<&str> = V1ALPHA1_FIELDS.iter().copied().collect();
    assert_eq!(fields.len(), V1ALPHA1_FIELDS.len());
}
