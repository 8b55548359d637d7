//! Compiled code on disk, keyed by the component's sha256 and the engine's compatibility hash.
//!
//! Only files this cache wrote itself are ever deserialised: they live in a directory created with mode
//! 0700 and are written by temp file + rename, so a crash never leaves a half-written artifact under a
//! final name. A stale or unreadable entry is deleted and recompiled.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use wasmtime::Engine;
use wasmtime::component::Component;

pub(crate) enum CacheError {
    Compile(wasmtime::Error),
    Io(String),
}

pub(crate) struct CompiledCache {
    dir: Option<PathBuf>,
    engine_key: String,
}

impl CompiledCache {
    pub(crate) fn new(dir: Option<PathBuf>, engine: &Engine) -> Self {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        CompiledCache {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
        }
    }

    fn path_for(&self, digest: &str) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{digest}-{}.cwasm", self.engine_key)))
    }

    pub(crate) fn contains(&self, digest: &str) -> bool {
        self.path_for(digest).is_some_and(|p| p.is_file())
    }

    pub(crate) fn load_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        digest: &str,
    ) -> Result<Component, CacheError> {
        let Some(path) = self.path_for(digest) else {
            return Component::new(engine, bytes).map_err(CacheError::Compile);
        };
        if path.is_file() {
            // SAFETY: the file is one this cache serialised (see module docs); wasmtime also checks
            // the header and the engine compatibility before using it.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "discarding unusable compiled-code cache entry");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let component = Component::new(engine, bytes).map_err(CacheError::Compile)?;
        let serialized = component.serialize().map_err(CacheError::Compile)?;
        // 0600 in a 0700 directory, temp file + fsync + rename + fsync of the directory.
        octo_fsutil::write_atomic(&path, &serialized)
            .map_err(|e| CacheError::Io(format!("cannot write {}: {e}", path.display())))?;
        Ok(component)
    }
}
