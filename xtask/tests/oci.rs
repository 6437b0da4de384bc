//! `cargo xtask oci`: the image is Istio's compat variant, reproducible, survives a real
//! registry (Debian's docker-registry) and a real client (skopeo) byte for byte, and the module
//! pulled back runs in Envoy and answers a DynDNS2 update.
// Test support below: failing loudly is its job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use dynedge_envoy::{
    free_port, wasm_file, workspace_root, Certificate, Daemon, Envoy, EnvoyConfig, PowerDns,
    DEMO_ZONE,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";

fn test_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("xtask-oci")
        .join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| {
        panic!(
            "cannot run {:?}: {e} (Debian: apt-get install skopeo docker-registry)",
            cmd.get_program()
        )
    });
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `xtask oci --no-build --out DIR --tag TAG [extra]`; the digest it printed.
fn xtask_oci(dir: &Path, tag: &str, extra: &[&str]) -> (String, String) {
    let out = run(Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["oci", "--no-build", "--out"])
        .arg(dir)
        .args(["--tag", tag])
        .args(extra));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let digest = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("image digest"))
        .map(|d| d.trim().to_string())
        .unwrap_or_else(|| panic!("no digest printed:\n{stdout}"));
    (digest, stdout)
}

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").unwrap();
    let bytes = fs::read(layout.join("blobs/sha256").join(hex)).unwrap();
    assert_eq!(
        sha256_hex(&bytes),
        hex,
        "blob {digest} does not match its name"
    );
    bytes
}

fn json_blob(layout: &Path, descriptor: &Value) -> (Value, Vec<u8>) {
    let bytes = blob(layout, descriptor["digest"].as_str().unwrap());
    assert_eq!(descriptor["size"].as_u64(), Some(bytes.len() as u64));
    (serde_json::from_slice(&bytes).unwrap(), bytes)
}

/// The manifest `tag` names in an OCI layout, and its raw bytes.
fn manifest_of(layout: &Path, tag: &str) -> (Value, Vec<u8>) {
    let layout_file: Value =
        serde_json::from_slice(&fs::read(layout.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(layout_file["imageLayoutVersion"], "1.0.0");
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no manifest tagged {tag} in {index}"));
    assert_eq!(entry["mediaType"], MANIFEST);
    json_blob(layout, entry)
}

/// What Istio's image fetcher does with a compat image: the last layer, which must be
/// tar+gzip, and in it the entry named `plugin.wasm`. Also returns the uncompressed tar.
fn plugin_wasm(layout: &Path, manifest: &Value) -> (Vec<u8>, Vec<u8>) {
    let layer = manifest["layers"].as_array().unwrap().last().unwrap();
    assert_eq!(layer["mediaType"], LAYER_GZIP);
    let gz = blob(layout, layer["digest"].as_str().unwrap());
    assert_eq!(layer["size"].as_u64(), Some(gz.len() as u64));
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut tar)
        .unwrap();
    let mut archive = tar::Archive::new(&tar[..]);
    let mut found = Vec::new();
    let mut names = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        if name == "plugin.wasm" {
            entry.read_to_end(&mut found).unwrap();
        }
        names.push(name);
    }
    assert_eq!(
        names,
        ["plugin.wasm"],
        "the layer holds exactly plugin.wasm"
    );
    (found, tar)
}

#[test]
fn the_layout_is_istios_compat_variant_and_the_same_on_every_build() {
    let wasm = fs::read(wasm_file().unwrap()).unwrap();
    let dir = test_dir("layout");
    let (digest, stdout) = xtask_oci(&dir.join("a"), "t1", &[]);
    let hex = digest.strip_prefix("sha256:").unwrap();
    assert!(
        stdout.contains(&format!("sha256: {hex}")),
        "the WasmPlugin sha256 is not printed:\n{stdout}"
    );
    assert!(stdout.contains(&sha256_hex(&wasm)), "{stdout}");

    let layout = dir.join("a");
    let (manifest, raw) = manifest_of(&layout, "t1");
    assert_eq!(format!("sha256:{}", sha256_hex(&raw)), digest);
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["mediaType"], MANIFEST);
    assert_eq!(
        manifest["annotations"]["module.wasm.image/variant"],
        "compat"
    );
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
    assert_eq!(manifest["config"]["mediaType"], CONFIG);
    let (config, _) = json_blob(&layout, &manifest["config"]);
    let (module, tar) = plugin_wasm(&layout, &manifest);
    assert!(module == wasm, "plugin.wasm differs from the built .wasm");
    assert_eq!(
        config["rootfs"],
        serde_json::json!({"type": "layers", "diff_ids": [format!("sha256:{}", sha256_hex(&tar))]})
    );
    assert_eq!(
        (config["architecture"].as_str(), config["os"].as_str()),
        (Some("wasm"), Some("wasip1"))
    );

    // Built again elsewhere: the same image, so the WasmPlugin's sha256 stays valid.
    let (again, _) = xtask_oci(&dir.join("b"), "t1", &[]);
    assert_eq!(again, digest);
}

/// Debian's docker-registry on loopback, storing into `dir`.
fn registry(dir: &Path, port: u16) -> Daemon {
    let config = dir.join("registry.yml");
    fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new("docker-registry");
    cmd.arg("serve").arg(&config);
    let mut daemon = Daemon::spawn("docker-registry", cmd, &dir.join("registry.log"))
        .unwrap_or_else(|e| panic!("{e} (Debian: apt-get install docker-registry)"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        daemon.check_alive().unwrap_or_else(|e| panic!("{e}"));
        let ok = Command::new("curl")
            .args(["-sf", "-o", "/dev/null", "-m", "2"])
            .arg(format!("http://127.0.0.1:{port}/v2/"))
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return daemon;
        }
        assert!(Instant::now() < deadline, "docker-registry did not answer");
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn pushed_to_a_registry_and_pulled_back_with_skopeo_the_module_runs_in_envoy() {
    let wasm = fs::read(wasm_file().unwrap()).unwrap();
    let dir = test_dir("registry");
    let reg_port = free_port();
    let _registry = registry(&dir, reg_port);
    let reference = format!("127.0.0.1:{reg_port}/dynedge:e2e");

    // Build and push as a user would.
    let (digest, stdout) = xtask_oci(
        &dir.join("built"),
        "e2e",
        &["--push", &reference, "--insecure"],
    );
    assert!(stdout.contains("pushed"), "{stdout}");

    // The registry serves the manifest unchanged: its digest is the one to put in the WasmPlugin,
    // which Istio compares with what it pulls.
    let raw = run(Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}")))
    .stdout;
    assert_eq!(format!("sha256:{}", sha256_hex(&raw)), digest);

    let pulled = dir.join("pulled");
    run(Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .arg(format!("oci:{}:e2e", pulled.display())));
    let (manifest, raw_pulled) = manifest_of(&pulled, "e2e");
    assert_eq!(raw_pulled, raw);
    let (module, _) = plugin_wasm(&pulled, &manifest);
    assert!(
        module == wasm,
        "the pulled plugin.wasm differs from the built .wasm"
    );
    let module_file = dir.join("plugin.wasm");
    fs::write(&module_file, &module).unwrap();

    // Envoy loads the pulled module and it answers a DynDNS2 update.
    let (dns_port, api_port, https_port) = (free_port(), free_port(), free_port());
    let mut pdns = PowerDns::start(
        &dir.join("pdns"),
        dns_port,
        api_port,
        "dynedge-demo-pdns-key",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    pdns.create_zone(DEMO_ZONE)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut plugin: Value = serde_json::from_str(
        &fs::read_to_string(workspace_root().join("examples/dynedge.json")).unwrap(),
    )
    .unwrap();
    plugin["backends"]["pdns"]["authority"] = format!("127.0.0.1:{api_port}").into();
    let certificate = Certificate::self_signed(&dir.join("tls")).unwrap_or_else(|e| panic!("{e}"));
    let cfg = EnvoyConfig {
        listen_address: "127.0.0.1".into(),
        listen_port: https_port,
        certificate,
        wasm: module_file,
        plugin_config: plugin.to_string(),
        pdns_api_port: api_port,
        access_log: dir.join("access.log"),
        webhook_port: None,
    };
    let envoy = Envoy::start(&dir.join("envoy"), &cfg).unwrap_or_else(|e| panic!("{e}"));
    let out = run(Command::new("curl")
        .args(["-sS", "-m", "10", "-u", "demo:demo-password", "--cacert"])
        .arg(&envoy.certificate.cert)
        .arg(envoy.url(&format!(
            "/nic/update?hostname=home.{DEMO_ZONE}&myip=192.0.2.77"
        ))));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "good 192.0.2.77\n");
    assert_eq!(
        pdns.lookup(&format!("home.{DEMO_ZONE}"), "A")
            .unwrap_or_else(|e| panic!("{e}")),
        ["192.0.2.77"]
    );
    drop(envoy);
}
