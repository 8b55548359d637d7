//! The package of `octo run-step deploy-package`: which one (`--package-file PATH` or
//! `--package FEED:ID@REQ`), how targets get it (`--acquire server|target`), and how a run on this
//! machine mounts it for the step (see `octo_builtin_plugins::deploy_package`).

use crate::error::{Context, Result};
use crate::home::Home;
use octo_builtin_plugins::deploy_package;
use octo_runtime::Mount;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Which package to deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackageSource {
    /// A package file the administrator has.
    File(PathBuf),
    /// A package from a configured feed: `FEED:ID@REQ` (`@REQ` optional: the newest).
    Feed(FeedPackage),
}

/// `FEED:ID[@REQ]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedPackage {
    /// The feed's name (`octo feeds list`).
    pub feed: String,
    /// The package id.
    pub id: String,
    /// A version requirement, or none for the newest.
    pub requirement: Option<String>,
}

impl FromStr for FeedPackage {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (feed, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("expected FEED:ID[@VERSION], got {s:?}"))?;
        let (id, requirement) = match rest.rsplit_once('@') {
            Some((id, req)) => (id, Some(req.trim().to_owned()).filter(|r| !r.is_empty())),
            None => (rest, None),
        };
        if feed.trim().is_empty() || id.trim().is_empty() {
            return Err(format!("expected FEED:ID[@VERSION], got {s:?}"));
        }
        Ok(FeedPackage {
            feed: feed.trim().to_owned(),
            id: id.trim().to_owned(),
            requirement,
        })
    }
}

impl fmt::Display for FeedPackage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.feed, self.id)?;
        if let Some(r) = &self.requirement {
            write!(f, "@{r}")?;
        }
        Ok(())
    }
}

/// Who downloads a feed package for targets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Acquire {
    /// The server downloads once and uploads to each target that lacks it.
    #[default]
    Server,
    /// Each target downloads directly from the feed, through its own web request proxy.
    Target,
}

impl FromStr for Acquire {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "server" => Ok(Acquire::Server),
            "target" => Ok(Acquire::Target),
            _ => Err(format!("expected server or target, got {s:?}")),
        }
    }
}

/// A package on this machine: what it is and its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPackage {
    /// The package id.
    pub id: String,
    /// Its version.
    pub version: String,
    /// The feed it came from (none for a file the administrator gave).
    pub feed: Option<String>,
    /// Its files (one for an archive; one per layer for an OCI artifact).
    pub files: Vec<LocalFile>,
}

/// One file of a [`LocalPackage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    /// Its name in the package (what the step sees).
    pub name: String,
    /// Where it is here.
    pub path: PathBuf,
    /// Hex sha256.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

impl LocalPackage {
    /// `package ID VERSION`, for messages.
    pub fn describe(&self) -> String {
        format!("package {} {}", self.id, self.version)
    }

    /// What a start request carries (files by digest), without a direct download.
    pub fn step_package(&self) -> Result<octo_protocol::StepPackage> {
        let files = self
            .files
            .iter()
            .map(|f| {
                Ok(octo_protocol::PackageFileRef {
                    name: f.name.clone(),
                    sha256: octo_protocol::Sha256Digest::parse(&f.sha256)
                        .map_err(|e| err!(Failed, "{}: {e}", self.describe()))?,
                    size: f.size,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(octo_protocol::StepPackage {
            feed: self.feed.clone().unwrap_or_default(),
            id: self.id.clone(),
            version: self.version.clone(),
            files,
            direct: None,
        })
    }
}

/// A package file given on the command line: id and version from `Package.Id` / `Package.Version`
/// parameters, else from the file's name.
pub fn local_file(path: &Path, params: &[(String, String)]) -> Result<LocalPackage> {
    let param = |name: &str| {
        params
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| err!(Invalid, "{} is not a package file", path.display()))?;
    let parsed = deploy_package::id_and_version(file_name);
    let (id, version) = match (param("Package.Id"), param("Package.Version"), parsed) {
        (Some(id), Some(version), _) => (id, version),
        (id, version, Some((pid, pversion))) => (id.unwrap_or(pid), version.unwrap_or(pversion)),
        _ => bail!(
            Invalid,
            "cannot tell the package id and version from the file name {file_name:?}; give --param Package.Id=ID --param Package.Version=VERSION"
        ),
    };
    deploy_package::directory_name(&id).map_err(|e| err!(Invalid, "{e}"))?;
    deploy_package::check_version(&id, &version).map_err(|e| err!(Invalid, "{e}"))?;
    let file = std::fs::File::open(path)
        .with_context(|| format!("package {id} {version}: cannot read {}", path.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read {}", path.display()))?;
    if !meta.is_file() {
        bail!(
            Invalid,
            "package {id} {version}: {} is not a file",
            path.display()
        );
    }
    let sha256 = digest_of(file)
        .with_context(|| format!("package {id} {version}: cannot read {}", path.display()))?;
    let path =
        std::fs::canonicalize(path).with_context(|| format!("cannot find {}", path.display()))?;
    Ok(LocalPackage {
        id,
        version,
        feed: None,
        files: vec![LocalFile {
            name: file_name.to_owned(),
            path,
            sha256,
            size: meta.len(),
        }],
    })
}

/// A feed package in the server's cache (downloaded once through the web request proxy if it was
/// not there; see `crate::packages::acquire`).
pub fn from_feed(home: &Home, spec: &FeedPackage) -> Result<LocalPackage> {
    let acquired = crate::packages::acquire(
        home,
        &spec.feed,
        &spec.id,
        spec.requirement.as_deref(),
        &Default::default(),
        &crate::sink::Sink::silent(),
    )?;
    let download = &acquired.entry.download;
    let files = download
        .files
        .iter()
        .zip(&acquired.paths)
        .map(|(f, path)| LocalFile {
            name: f.name.clone(),
            path: path.clone(),
            sha256: f.sha256.clone().unwrap_or_default(),
            size: f.size.unwrap_or_default(),
        })
        .collect();
    Ok(LocalPackage {
        id: download.package_id.clone(),
        version: download.version.clone(),
        feed: Some(spec.feed.clone()),
        files,
    })
}

/// Acquisition `target`: the server resolves the version (through the gate and the web request
/// proxy, recorded under `package-feeds`) and hands each tentacle what to download, every file's
/// digest and the feed's credentials for that run. A sha256 the feed does not publish is taken
/// from the server's cache; else a NuGet feed's registration may publish the SHA-512 (then the
/// file is named by it in the download description only, and the tentacle verifies that);
/// without either the tentacle could not verify its download, so that is refused.
pub fn for_targets(home: &Home, spec: &FeedPackage) -> Result<octo_protocol::StepPackage> {
    let stored = crate::package_feeds::get(home, &spec.feed)?;
    let sink = crate::sink::Sink::silent();
    let label = match &spec.requirement {
        Some(r) => format!("{}@{r}", spec.id),
        None => spec.id.clone(),
    };
    let opened = crate::packages::open_feed(home, &stored, &format!("resolve {label}"), &sink)?;
    let mut download =
        crate::feeds::block_on(opened.client.resolve(&spec.id, spec.requirement.as_deref()))?
            .map_err(crate::packages::to_error)?;
    let what = format!(
        "feed {}, package {}@{}",
        spec.feed, download.package_id, download.version
    );
    if !download.fully_pinned() {
        let cache = crate::packages::cache::PackageCache::open(home.packages())?;
        let key = crate::packages::cache::PackageCache::key(
            &spec.feed,
            &download.package_id,
            &download.version,
        );
        match cache.get(&key) {
            Some(entry) if entry.download.files.len() == download.files.len() => {
                for (file, cached) in download.files.iter_mut().zip(&entry.download.files) {
                    file.sha256 = file.sha256.clone().or(cached.sha256.clone());
                    file.size = file.size.or(cached.size);
                }
            }
            _ => {
                crate::feeds::block_on(opened.client.fill_published_hashes(&mut download))?
                    .map_err(crate::packages::to_error)?;
                if !download.verifiable() {
                    bail!(
                        Failed,
                        "{what}: the feed publishes no digest for it, so a tentacle could not verify a direct download; run `octo packages download {} {}@{}` once (the server records its digest) or use --acquire server",
                        spec.feed,
                        download.package_id,
                        download.version
                    );
                }
            }
        }
    }
    let mut files = Vec::new();
    // A file known only by its SHA-512 is listed in the download description alone.
    for f in download.files.iter().filter(|f| f.sha256.is_some()) {
        files.push(octo_protocol::PackageFileRef {
            name: f.name.clone(),
            sha256: octo_protocol::Sha256Digest::parse(f.sha256.as_deref().unwrap_or_default())
                .map_err(|e| err!(Failed, "{what}: {e}"))?,
            size: f.size.unwrap_or_default(),
        });
    }
    let credentials = stored.spec.credentials.clone();
    Ok(octo_protocol::StepPackage {
        feed: spec.feed.clone(),
        id: download.package_id.clone(),
        version: download.version.clone(),
        files,
        direct: Some(octo_protocol::DirectDownload {
            download: serde_json::to_value(&download).map_err(|e| err!(Failed, "{what}: {e}"))?,
            username: credentials.as_ref().map(|c| c.username.clone()),
            password: credentials.map(|c| c.password),
        }),
    })
}

/// Hex sha256 of what `reader` reads.
pub fn digest_of(mut reader: impl std::io::Read) -> std::io::Result<String> {
    let mut hasher = octo_fsutil::Sha256Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match reader.read(&mut buf)? {
            0 => return Ok(hasher.finish_hex()),
            n => hasher.update(&buf[..n]),
        }
    }
}

/// What a run of deploy-package on this machine adds to its request; the staging directory lives
/// as long as this.
pub struct LocalDeployment {
    /// The step's arguments from the package (they win over the user's).
    pub arguments: BTreeMap<String, String>,
    /// The sandbox's mounts.
    pub mounts: Vec<Mount>,
    _staging: tempfile::TempDir,
}

/// Stages `package` for a run here: `<home>/work/package-*/<files>` (hard links) mounted
/// read-only, `<home>/Applications/<package>/` read-write.
pub fn prepare_local(home: &Home, package: &LocalPackage) -> Result<LocalDeployment> {
    let work = home.work()?;
    // Named after this process, so a run killed before it cleaned up is cleaned up by the next.
    let staging = super::work_dirs::create_package_staging(&work)
        .with_context(|| format!("cannot create a directory in {}", work.display()))?;
    let files: Vec<(PathBuf, String)> = package
        .files
        .iter()
        .map(|f| (f.path.clone(), f.name.clone()))
        .collect();
    let name = deploy_package::stage(&files, staging.path())
        .with_context(|| format!("{}: cannot stage its files", package.describe()))?;
    let invocation = deploy_package::invocation(
        &home.applications(),
        staging.path(),
        &name,
        &package.id,
        &package.version,
    )
    .map_err(|e| err!(Invalid, "{e}"))?;
    Ok(LocalDeployment {
        arguments: invocation.arguments,
        mounts: invocation.mounts.into_iter().map(to_mount).collect(),
        _staging: staging,
    })
}

/// The runtime's mount for a spec.
pub fn to_mount(spec: deploy_package::MountSpec) -> Mount {
    if spec.writable {
        Mount::read_write(spec.host, spec.guest)
    } else {
        Mount::read_only(spec.host, spec.guest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_package_specs() {
        let p: FeedPackage = "nuget:Acme.Web@[1.0,2.0)".parse().unwrap();
        assert_eq!(p.feed, "nuget");
        assert_eq!(p.id, "Acme.Web");
        assert_eq!(p.requirement.as_deref(), Some("[1.0,2.0)"));
        let p: FeedPackage = "oci:org/app".parse().unwrap();
        assert_eq!((p.id.as_str(), p.requirement), ("org/app", None));
        assert!("noid".parse::<FeedPackage>().is_err());
        assert!(":x".parse::<FeedPackage>().is_err());
        assert_eq!("TARGET".parse::<Acquire>(), Ok(Acquire::Target));
        assert!("both".parse::<Acquire>().is_err());
    }
}
