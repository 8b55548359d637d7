//! `octo plugins pack` and `octo plugins inspect`.

use crate::cli::{InspectArgs, PackArgs};
use anyhow::Context;
use octo_manifest::Manifest;
use std::io::Write;

pub fn pack(args: PackArgs) -> anyhow::Result<()> {
    let component = std::fs::read(&args.component)
        .with_context(|| format!("cannot read {}", args.component.display()))?;
    let manifest_bytes = std::fs::read(&args.manifest)
        .with_context(|| format!("cannot read {}", args.manifest.display()))?;
    let manifest = Manifest::from_json(&manifest_bytes)
        .with_context(|| format!("{}", args.manifest.display()))?;
    manifest.check_api_version()?;
    let packed = octo_manifest::embed_manifest(&component, &manifest)
        .with_context(|| format!("{}", args.component.display()))?;
    // Write next to the destination and rename, so a failure never leaves a half-written component.
    let dir = args
        .output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    tmp.write_all(&packed)?;
    tmp.as_file().sync_all()?;
    tmp.persist(&args.output)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    println!(
        "packed {} {} ({} plugin, API {}) into {}",
        manifest.id,
        manifest.version,
        manifest.kind,
        manifest.api_version,
        args.output.display()
    );
    Ok(())
}

pub fn inspect(args: InspectArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.component)
        .with_context(|| format!("cannot read {}", args.component.display()))?;
    let manifest = octo_manifest::read_manifest(&bytes)
        .with_context(|| format!("{}", args.component.display()))?;
    println!("{}", serde_json::to_string_pretty(&manifest)?);
    Ok(())
}
