//! How a host runs the deploy-package step, the same on the server and on a tentacle: the
//! package's directory mounted read-only at [`PACKAGE_MOUNT`], the package's applications
//! directory `<applications>/<package>/` mounted read-write at [`APPLICATIONS_MOUNT`], and the
//! arguments that tell the step what it is deploying. Nothing else of the host is visible to it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where the step sees the directory holding the package (read-only).
pub const PACKAGE_MOUNT: &str = "/package";
/// Where the step sees `<applications>/<package>/` (read-write).
pub const APPLICATIONS_MOUNT: &str = "/applications";

/// One directory the step sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    /// On the host.
    pub host: PathBuf,
    /// In the sandbox.
    pub guest: &'static str,
    /// Read-write (else read-only).
    pub writable: bool,
}

/// The arguments and mounts of one deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The step's arguments (the caller adds the user's own; these win).
    pub arguments: BTreeMap<String, String>,
    /// What the sandbox mounts besides the work directory.
    pub mounts: Vec<MountSpec>,
    /// `<applications>/<package>/`.
    pub applications_dir: PathBuf,
}

/// A package id or version that cannot be deployed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPackage(pub String);

impl fmt::Display for InvalidPackage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidPackage {}

/// The directory name of a package id: letters, digits, `.`, `_`, `-` and `+` as they are, `/`
/// (OCI repositories) as `_`; anything else, a leading `.`, or an empty id is refused.
pub fn directory_name(id: &str) -> Result<String, InvalidPackage> {
    let name: String = id.chars().map(|c| if c == '/' { '_' } else { c }).collect();
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'));
    if ok {
        Ok(name)
    } else {
        Err(InvalidPackage(format!(
            "package id {id:?} cannot name a directory: use letters, digits, '.', '_', '-', '+' (and '/' for OCI repositories)"
        )))
    }
}

/// Checks a version the same way (it names the deployment's directory).
pub fn check_version(id: &str, version: &str) -> Result<(), InvalidPackage> {
    let ok = !version.is_empty()
        && version.len() <= 128
        && !version.starts_with('.')
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'));
    if ok {
        Ok(())
    } else {
        Err(InvalidPackage(format!(
            "package {id}: version {version:?} cannot name a directory"
        )))
    }
}

/// The invocation for deploying `file_name` (inside `package_dir`) as `id` `version`;
/// `<applications>/<package>/` is created.
pub fn invocation(
    applications: &Path,
    package_dir: &Path,
    file_name: &str,
    id: &str,
    version: &str,
) -> Result<Invocation, Box<dyn std::error::Error + Send + Sync>> {
    let dir_name = directory_name(id)?;
    check_version(id, version)?;
    let applications_dir = applications.join(dir_name);
    std::fs::create_dir_all(&applications_dir).map_err(|e| {
        format!(
            "package {id} {version}: cannot create {}: {e}",
            applications_dir.display()
        )
    })?;
    let arguments = BTreeMap::from([
        ("Package.Id".to_owned(), id.to_owned()),
        ("Package.Version".to_owned(), version.to_owned()),
        ("Package.FileName".to_owned(), file_name.to_owned()),
        (
            "Package.ApplicationsPath".to_owned(),
            applications_dir.display().to_string(),
        ),
    ]);
    Ok(Invocation {
        arguments,
        mounts: vec![
            MountSpec {
                host: package_dir.to_path_buf(),
                guest: PACKAGE_MOUNT,
                writable: false,
            },
            MountSpec {
                host: applications_dir.clone(),
                guest: APPLICATIONS_MOUNT,
                writable: true,
            },
        ],
        applications_dir,
    })
}

/// Puts the package's `files` (path here, name in the package) into the empty directory `staging`,
/// as hard links where the file system allows (no copy), else as copies; returns the name the step
/// opens under [`PACKAGE_MOUNT`]: the file itself for one archive, else `.` (the directory: an OCI
/// artifact's files, deployed as they are).
pub fn stage(files: &[(PathBuf, String)], staging: &Path) -> std::io::Result<String> {
    for (path, name) in files {
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
            return Err(std::io::Error::other(format!(
                "{name:?} is not a plain file name"
            )));
        }
        let target = staging.join(name);
        if std::fs::hard_link(path, &target).is_err() {
            std::fs::copy(path, &target)?;
        }
    }
    Ok(mount_name(files.iter().map(|(_, n)| n.as_str())))
}

/// What the step opens under [`PACKAGE_MOUNT`] for a package with these file names: the file for a
/// single archive, else `.` (the directory of files).
pub fn mount_name<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.into_iter().collect();
    match names.as_slice() {
        [one] if is_archive_name(one) => (*one).to_owned(),
        _ => ".".to_owned(),
    }
}

/// Whether a file name says it is an archive deploy-package extracts.
pub fn is_archive_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".tar.gz", ".tgz", ".tar", ".zip", ".nupkg"]
        .iter()
        .any(|ext| lower.ends_with(ext))
}

/// The id and version a package file's name says, NuGet style (`Acme.Web.1.2.3.nupkg`) or with a
/// dash (`acme-web-1.2.3.tar.gz`): the version starts at the first `.` or `-` followed by a digit.
pub fn id_and_version(file_name: &str) -> Option<(String, String)> {
    let lower = file_name.to_ascii_lowercase();
    let stem_len = [".tar.gz", ".tgz", ".tar", ".zip", ".nupkg"]
        .iter()
        .find(|ext| lower.ends_with(*ext))
        .map(|ext| file_name.len() - ext.len())?;
    let stem = &file_name[..stem_len];
    let bytes = stem.as_bytes();
    let at = (1..bytes.len())
        .find(|&i| matches!(bytes[i - 1], b'.' | b'-') && bytes[i].is_ascii_digit())?;
    let (id, version) = (&stem[..at - 1], &stem[at..]);
    (!id.is_empty()).then(|| (id.to_owned(), version.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_files() {
        let p = |n| id_and_version(n);
        assert_eq!(
            p("Acme.Web.1.2.3.nupkg"),
            Some(("Acme.Web".into(), "1.2.3".into()))
        );
        assert_eq!(
            p("acme-web-1.2.3-beta.tar.gz"),
            Some(("acme-web".into(), "1.2.3-beta".into()))
        );
        assert_eq!(p("app.2.0.zip"), Some(("app".into(), "2.0".into())));
        assert_eq!(p("app.zip"), None);
        assert_eq!(p("app-1.0.exe"), None);
    }

    #[test]
    fn directory_names() {
        assert_eq!(directory_name("Acme.Web").unwrap(), "Acme.Web");
        assert_eq!(directory_name("org/app").unwrap(), "org_app");
        for bad in ["", "..", ".x", "a b", "a\\b", "a:b", "x\0"] {
            assert!(directory_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_version("a", "1.0.0-rc.1+build").is_ok());
        assert!(check_version("a", "../1").is_err());
    }
}
