//! The Pod sandbox image: the static `pause` binary (built from the Kubernetes module's
//! `pause.c`) as a one-layer OCI image archive, since there is no registry to pull it from.

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::PAUSE_IMAGE;
use crate::{Result, error};

const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Writes the sandbox image archive into `run` and returns its path.
pub(super) fn pause_image(run: &Path, pause: &Path) -> Result<PathBuf> {
    let failed = |what: &str, e: &dyn std::fmt::Display| error(format!("failed to {what}: {e}"));
    let binary = std::fs::read(pause).map_err(|e| failed("read pause", &e))?;
    let layer = tar(&[("pause", &binary, 0o755)]).map_err(|e| failed("make the layer", &e))?;
    let layer_digest = digest(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": architecture(),
        "os": "linux",
        "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }))
    .map_err(|e| failed("encode the image config", &e))?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": digest(&config), "size": config.len()},
        "layers": [{"mediaType": LAYER, "digest": layer_digest, "size": layer.len()}],
    }))
    .map_err(|e| failed("encode the manifest", &e))?;
    let (name, tag) = PAUSE_IMAGE
        .rsplit_once(':')
        .unwrap_or((PAUSE_IMAGE, "latest"));
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": MANIFEST,
            "digest": digest(&manifest),
            "size": manifest.len(),
            "annotations": {
                "io.containerd.image.name": format!("{name}:{tag}"),
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    }))
    .map_err(|e| failed("encode the index", &e))?;
    let blob = |bytes: &[u8]| format!("blobs/sha256/{}", &digest(bytes)["sha256:".len()..]);
    let archive = tar(&[
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#, 0o644),
        ("index.json", &index, 0o644),
        (&blob(&manifest), &manifest, 0o644),
        (&blob(&config), &config, 0o644),
        (&blob(&layer), &layer, 0o644),
    ])
    .map_err(|e| failed("make the archive", &e))?;
    let path = run.join("pause.tar");
    std::fs::write(&path, archive).map_err(|e| failed("write the pause image", &e))?;
    Ok(path)
}

fn digest(bytes: &[u8]) -> String {
    // sha2's digests print as lower-case hex.
    format!("sha256:{:x}", Sha256::digest(bytes))
}

fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// A tar of regular files, owned by root, dated 0.
fn tar(files: &[(&str, &[u8], u32)]) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, contents, mode) in files {
        let mut header = tar::Header::new_ustar();
        header.set_size(contents.len() as u64);
        header.set_mode(*mode);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, path, *contents)?;
    }
    builder.into_inner()
}
