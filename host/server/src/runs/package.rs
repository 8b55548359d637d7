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

/// A package file on this machine, with what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageFile {
    /// The file.
    pub path: PathBuf,
    /// The package id.
    pub id: String,
    /// Its version.
    pub version: String,
    /// Hex sha256 of the file.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// The feed it came from, if any.
    pub feed: Option<String>,
}

impl PackageFile {
    /// `package ID VERSION`, for messages.
    pub fn describe(&self) -> String {
        format!("package {} {}", self.id, self.version)
    }

    /// The file's name (what the step sees under `/package`).
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// A package file given on the command line: id and version from `Package.Id` / `Package.Version`
/// parameters, else from the file's name.
pub fn local_file(path: &Path, params: &[(String, String)]) -> Result<PackageFile> {
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
    Ok(PackageFile {
        path: path.to_path_buf(),
        id,
        version,
        sha256,
        size: meta.len(),
        feed: None,
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

/// Stages `package` for a run here: `<home>/work/package-*/<file>` (a hard link) mounted
/// read-only, `<home>/Applications/<package>/` read-write.
pub fn prepare_local(home: &Home, package: &PackageFile) -> Result<LocalDeployment> {
    let work = home.work()?;
    let staging = tempfile::Builder::new()
        .prefix("package-")
        .tempdir_in(&work)
        .with_context(|| format!("cannot create a directory in {}", work.display()))?;
    let name = deploy_package::stage(&package.path, staging.path()).with_context(|| {
        format!(
            "{}: cannot stage {}",
            package.describe(),
            package.path.display()
        )
    })?;
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
