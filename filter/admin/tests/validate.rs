//! `dynedge validate FILE`: exit 0 for a configuration the filter accepts, exit 1 and the
//! filter's own configure-time error text (`dynedge: configuration PATH: ...`) otherwise.
// Test support: failing loudly is its job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dynedge_core::Config;
use serde_json::{json, Value};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn validate(path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dynedge"))
        .arg("validate")
        .arg(path)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("validate");
    fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// examples/dynedge.json with its zone pointing at a backend that does not exist.
fn bad_config() -> Value {
    let mut v: Value =
        serde_json::from_str(&fs::read_to_string(examples().join("dynedge.json")).unwrap())
            .unwrap();
    v["zones"][0]["backend"] = json!("nowhere");
    v
}

#[test]
fn a_good_configuration_passes_with_exit_0() {
    let out = validate(&examples().join("dynedge.json"));
    assert!(out.status.success(), "{out:?}");
    assert!(
        text(&out.stdout).contains("dynedge: valid: 1 zone(s), 2 user(s), 1 token(s)"),
        "{out:?}"
    );
    assert!(out.stderr.is_empty(), "{out:?}");
}

#[test]
fn a_bad_configuration_fails_with_the_filters_error_text() {
    let path = scratch("bad.json");
    let bytes = serde_json::to_vec_pretty(&bad_config()).unwrap();
    fs::write(&path, &bytes).unwrap();
    let out = validate(&path);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    // What filter/proxy-wasm/src/root.rs logs when it refuses the configuration.
    let filter_says = format!("dynedge: {}", Config::from_json(&bytes).unwrap_err());
    assert_eq!(text(&out.stderr), format!("{filter_says}\n"));
    assert_eq!(
        filter_says,
        "dynedge: configuration zones[0].backend: no backend named 'nowhere'"
    );
}

#[test]
fn a_json_syntax_error_names_line_and_column() {
    let path = scratch("truncated.json");
    fs::write(&path, "{\"zones\": [\n").unwrap();
    let out = validate(&path);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).starts_with("dynedge: configuration line 2 column 0: "),
        "{out:?}"
    );
}

#[test]
fn wasmplugin_yaml_is_checked_plugin_by_plugin() {
    for file in ["istio-wasmplugin.yaml", "istio-wasmplugin-gateway-api.yaml"] {
        let out = validate(&examples().join(file));
        assert!(out.status.success(), "{file}: {out:?}");
        assert!(
            text(&out.stdout)
                .contains("WasmPlugin istio-system/dynedge: dynedge: valid: 1 zone(s)")
                || text(&out.stdout)
                    .contains("WasmPlugin dynedge/dynedge: dynedge: valid: 1 zone(s)"),
            "{file}: {out:?}"
        );
    }
    let yaml = format!(
        "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata:\n  name: broken\n  \
         namespace: edge\nspec:\n  url: oci://registry.example/dynedge:1\n  pluginConfig: {}\n",
        serde_json::to_string(&bad_config()).unwrap()
    );
    let path = scratch("broken.yaml");
    fs::write(&path, yaml).unwrap();
    let out = validate(&path);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        text(&out.stderr),
        "WasmPlugin edge/broken: dynedge: configuration zones[0].backend: no backend named 'nowhere'\n"
    );
}

#[test]
fn a_yaml_file_without_a_wasmplugin_is_an_error() {
    let path = scratch("none.yaml");
    fs::write(
        &path,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
    )
    .unwrap();
    let out = validate(&path);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains("no WasmPlugin resource"),
        "{out:?}"
    );
}

/// The built filter (`$DYNEDGE_WASM`, else the release build `cargo xtask wasm` makes).
fn filter_wasm() -> PathBuf {
    let path = std::env::var_os("DYNEDGE_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/wasm32-wasip1/release/dynedge_filter.wasm")
        });
    assert!(
        path.is_file(),
        "{} is missing: run `cargo xtask wasm` first",
        path.display()
    );
    path
}

#[test]
fn validate_prints_what_the_built_filter_logs_when_it_refuses_a_configuration() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("backend", serde_json::to_vec(&bad_config()).unwrap()),
        ("syntax", b"{\"zones\": [\n  {\"name\": }\n]}".to_vec()),
        ("unknown", br#"{"zone": []}"#.to_vec()),
        ("argon2i", {
            let mut v = bad_config();
            v["zones"][0]["backend"] = json!("pdns");
            v["users"][0]["password_hash"] =
                json!("$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g");
            serde_json::to_vec(&v).unwrap()
        }),
    ];
    let wasm = filter_wasm();
    for (name, bytes) in cases {
        let path = scratch(&format!("filter-{name}.json"));
        fs::write(&path, &bytes).unwrap();
        let out = validate(&path);
        assert_eq!(out.status.code(), Some(1), "{name}: {out:?}");
        let printed = text(&out.stderr);

        let mut host = dynedge_test_host::Host::load(&wasm).unwrap();
        assert!(
            !host.configure(&bytes).unwrap(),
            "{name}: the filter accepted it"
        );
        let refusals: Vec<String> = host
            .logs()
            .into_iter()
            .filter(|l| l.level == dynedge_test_host::LogLevel::Critical)
            .map(|l| format!("{}\n", l.message))
            .collect();
        assert_eq!(refusals, [printed], "{name}");
    }
}
