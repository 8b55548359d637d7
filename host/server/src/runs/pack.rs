//! `octo plugins pack` and `octo plugins inspect`.

use crate::error::{Context, Result};
use octo_manifest::Manifest;
use std::path::Path;

/// `octo plugins pack COMPONENT --manifest FILE -o OUT`: embeds the manifest and writes the packed
/// component atomically. Returns the manifest.
pub fn pack(component: &Path, manifest: &Path, output: &Path) -> Result<Manifest> {
    let bytes =
        std::fs::read(component).with_context(|| format!("cannot read {}", component.display()))?;
    let manifest_bytes =
        std::fs::read(manifest).with_context(|| format!("cannot read {}", manifest.display()))?;
    let parsed =
        Manifest::from_json(&manifest_bytes).with_context(|| format!("{}", manifest.display()))?;
    parsed.check_api_version()?;
    let packed = octo_manifest::embed_manifest(&bytes, &parsed)
        .with_context(|| format!("{}", component.display()))?;
    // A failure never leaves a half-written component.
    octo_fsutil::write_atomic(output, &packed)
        .with_context(|| format!("cannot write {}", output.display()))?;
    Ok(parsed)
}

/// `octo plugins inspect COMPONENT`: its manifest.
pub fn inspect(component: &Path) -> Result<Manifest> {
    let bytes =
        std::fs::read(component).with_context(|| format!("cannot read {}", component.display()))?;
    octo_manifest::read_manifest(&bytes).with_context(|| format!("{}", component.display()))
}
