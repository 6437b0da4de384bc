//! `cargo xtask oci`: the filter as an OCI image, in the layout Istio's `WasmPlugin` pulls.
//!
//! The image is the Wasm image spec's *compat* variant: a plain OCI image whose single layer
//! (`application/vnd.oci.image.layer.v1.tar+gzip`) is a tar holding `plugin.wasm`, with the
//! manifest annotation `module.wasm.image/variant: compat`. Istio's image fetcher takes the last
//! layer of that media type, gunzips it and reads the `plugin.wasm` entry; any registry and any
//! OCI tool (skopeo, crane, oras, docker) handles it, unlike the custom wasm media types.
//!
//! It is written as an OCI image layout directory (`oci-layout`, `index.json`,
//! `blobs/sha256/...`), by default `target/oci`, tagged with the workspace version. Nothing in it
//! depends on the time or the machine, so the same .wasm always gives the same digest.
//!
//!   cargo xtask oci [--no-build] [--out DIR] [--tag TAG] [--push REF [--insecure]]
//!
//! `--push docker-registry.example/dynedge:0.1.0` copies it with `skopeo copy` (skopeo must be
//! installed; `--insecure`: plain HTTP or an unverified certificate). The `sha256` to put in the
//! WasmPlugin is the manifest's digest, which a registry keeps as is.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use flate2::write::GzEncoder;
use flate2::Compression;
use oci_spec::image::{
    Arch, Descriptor, DescriptorBuilder, Digest, ImageConfigurationBuilder, ImageIndexBuilder,
    ImageManifestBuilder, MediaType, OciLayoutBuilder, Os, RootFsBuilder, Sha256Digest,
    ANNOTATION_REF_NAME, ANNOTATION_TITLE, ANNOTATION_VERSION,
};
use sha2::{Digest as _, Sha256};

use crate::{flag_value, run_visible, step, Result};

/// The file name Istio looks for in the layer.
pub const PLUGIN_FILE: &str = "plugin.wasm";
/// Marks the compat variant (Istio also recognises it without, by its layer).
pub const VARIANT_ANNOTATION: &str = "module.wasm.image/variant";

/// What was written.
pub struct Image {
    pub dir: PathBuf,
    pub tag: String,
    /// `sha256:...` of the manifest: the image digest a registry reports.
    pub digest: String,
    /// Hex SHA-256 of the .wasm itself (the `sha256` for an `https://` url).
    pub wasm_sha256: String,
}

pub fn oci(args: &[String]) -> Result<()> {
    let wasm = if args.iter().any(|a| a == "--no-build") {
        dynedge_envoy::wasm_file()?
    } else {
        crate::wasm()?
    };
    let out = match flag_value(args, "--out")? {
        Some(dir) => PathBuf::from(dir),
        None => dynedge_envoy::target_dir().join("oci"),
    };
    let tag = flag_value(args, "--tag")?
        .unwrap_or(env!("CARGO_PKG_VERSION"))
        .to_string();
    step(&format!(
        "OCI image of {} (compat variant: one tar+gzip layer holding {PLUGIN_FILE})",
        wasm.display()
    ));
    let bytes = fs::read(&wasm).map_err(|e| format!("{}: {e}", wasm.display()))?;
    let image = write_layout(&bytes, &out, &tag)?;
    let hex = image.digest.trim_start_matches("sha256:");
    println!(
        "    layout        {} (oci:{}:{})",
        out.display(),
        out.display(),
        image.tag
    );
    println!("    image digest  {}", image.digest);
    println!(
        "    WasmPlugin    url: oci://REGISTRY/dynedge:{}",
        image.tag
    );
    println!("                  sha256: {hex}");
    println!(
        "    plugin.wasm   sha256 {} (the WasmPlugin sha256 for an https:// url instead)",
        image.wasm_sha256
    );
    match flag_value(args, "--push")? {
        Some(reference) => push(&image, reference, args.iter().any(|a| a == "--insecure")),
        None => {
            println!(
                "    push with     skopeo copy oci:{}:{} docker://REGISTRY/dynedge:{}",
                out.display(),
                image.tag,
                image.tag
            );
            Ok(())
        }
    }
}

fn push(image: &Image, reference: &str, insecure: bool) -> Result<()> {
    step(&format!("skopeo copy to docker://{reference}"));
    let mut cmd = Command::new("skopeo");
    cmd.arg("copy");
    if insecure {
        cmd.arg("--dest-tls-verify=false");
    }
    cmd.arg(format!("oci:{}:{}", image.dir.display(), image.tag))
        .arg(format!("docker://{reference}"));
    run_visible(
        "skopeo copy (is skopeo installed? apt-get install skopeo)",
        &mut cmd,
    )?;
    println!(
        "    pushed; WasmPlugin url: oci://{reference}  sha256: {}",
        image.digest.trim_start_matches("sha256:")
    );
    Ok(())
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn oci_err(e: impl std::fmt::Display) -> String {
    format!("OCI image: {e}")
}

/// Stores `bytes` under `blobs/sha256/` and describes it.
fn blob(dir: &Path, media_type: MediaType, bytes: &[u8]) -> Result<(Descriptor, String)> {
    let hex = sha256_hex(bytes);
    let path = dir.join("blobs/sha256").join(&hex);
    fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let digest: Sha256Digest = hex.parse().map_err(oci_err)?;
    let descriptor = Descriptor::new(media_type, bytes.len() as u64, Digest::from(digest));
    Ok((descriptor, hex))
}

/// The layer: a tar with `plugin.wasm` alone, fixed owner, mode and time, gzipped.
fn layer(wasm: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut header = tar::Header::new_ustar();
    header.set_path(PLUGIN_FILE).map_err(oci_err)?;
    header.set_size(wasm.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&header, wasm).map_err(oci_err)?;
    let tar = builder.into_inner().map_err(oci_err)?;
    // GzEncoder writes mtime 0 and no file name: the same bytes on every machine.
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    std::io::Write::write_all(&mut gz, &tar).map_err(oci_err)?;
    let gz = gz.finish().map_err(oci_err)?;
    Ok((tar, gz))
}

/// Writes the image layout for `wasm` into `dir` (replacing what was there).
pub fn write_layout(wasm: &[u8], dir: &Path, tag: &str) -> Result<Image> {
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    fs::create_dir_all(dir.join("blobs/sha256")).map_err(|e| format!("{}: {e}", dir.display()))?;

    let (tar, gz) = layer(wasm)?;
    let (mut layer_desc, _) = blob(dir, MediaType::ImageLayerGzip, &gz)?;
    layer_desc.set_annotations(Some(HashMap::from([(
        ANNOTATION_TITLE.to_string(),
        PLUGIN_FILE.to_string(),
    )])));

    let config = ImageConfigurationBuilder::default()
        .architecture(Arch::Wasm)
        .os(Os::Other("wasip1".into()))
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(vec![format!("sha256:{}", sha256_hex(&tar))])
                .build()
                .map_err(oci_err)?,
        )
        .build()
        .map_err(oci_err)?;
    let config_json = serde_json::to_vec(&config).map_err(oci_err)?;
    let (config_desc, _) = blob(dir, MediaType::ImageConfig, &config_json)?;

    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config_desc)
        .layers(vec![layer_desc])
        .annotations(HashMap::from([
            (VARIANT_ANNOTATION.to_string(), "compat".to_string()),
            (ANNOTATION_TITLE.to_string(), "dynedge".to_string()),
            (ANNOTATION_VERSION.to_string(), tag.to_string()),
        ]))
        .build()
        .map_err(oci_err)?;
    // HashMap order varies between runs; sorted keys keep the digest stable.
    let mut manifest_value = serde_json::to_value(&manifest).map_err(oci_err)?;
    manifest_value.sort_all_objects();
    let manifest_json = serde_json::to_vec(&manifest_value).map_err(oci_err)?;
    let (manifest_desc, manifest_hex) = blob(dir, MediaType::ImageManifest, &manifest_json)?;

    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![DescriptorBuilder::default()
            .media_type(MediaType::ImageManifest)
            .size(manifest_desc.size())
            .digest(manifest_desc.digest().clone())
            .annotations(HashMap::from([(
                ANNOTATION_REF_NAME.to_string(),
                tag.to_string(),
            )]))
            .build()
            .map_err(oci_err)?])
        .build()
        .map_err(oci_err)?;
    index
        .to_file_pretty(dir.join("index.json"))
        .map_err(oci_err)?;
    OciLayoutBuilder::default()
        .image_layout_version("1.0.0")
        .build()
        .map_err(oci_err)?
        .to_file(dir.join("oci-layout"))
        .map_err(oci_err)?;

    Ok(Image {
        dir: dir.to_path_buf(),
        tag: tag.to_string(),
        digest: format!("sha256:{manifest_hex}"),
        wasm_sha256: sha256_hex(wasm),
    })
}
