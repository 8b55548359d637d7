//! deploy-package: the built-in step that deploys a package the host acquired.
//!
//! The host mounts two directories into the sandbox and nothing else besides the step's work
//! directory: the package, read-only, at [`PACKAGE_MOUNT`], and the package's applications
//! directory (`<home>/Applications/<package>/`), read-write, at [`APPLICATIONS_MOUNT`]. The step
//!
//! 1. extracts the package ([`extract`]: zip, nupkg, tar, tar.gz, or an OCI artifact's files)
//!    into `.partial-<name>` beside its final directory, refusing unsafe entries and stopping at
//!    the size and entry limits, and renames it to `<version>` or `<version>_N` when complete;
//! 2. sets `Octopus.Action.Package.InstallationDirectoryPath`;
//! 3. runs the conventions in Octopus's order: `PreDeploy.sh`, substitution of `#{Variables}` in
//!    the files matching `Octopus.Action.SubstituteInFiles.TargetFiles`, JSON structured variables
//!    in the files matching `Octopus.Action.Package.JsonConfigurationVariablesTargets`,
//!    `Deploy.sh`, `PostDeploy.sh`; when one of them fails, `DeployFailed.sh`;
//! 4. keeps the newest `RetentionCount` deployments of the package ([`layout`]).
//!
//! Scripts run through the `process` import with run-script's Bash bootstrap (the same helper
//! functions and service messages), so they are confined like any step's scripts.

pub mod entry_path;
pub mod extract;
pub mod glob;
pub mod json_config;
pub mod layout;

/// run-script's bootstrap and substitution, shared rather than copied.
#[allow(dead_code)]
#[path = "../../run-script/src/bootstrap.rs"]
mod bootstrap;
#[allow(dead_code)]
#[path = "../../run-script/src/substitute.rs"]
mod substitute;

use octo_plugin_sdk::prelude::*;
use octo_plugin_sdk::process::{Command, ProcessError};
use octo_plugin_sdk::variables;
use std::fs;
use std::path::{Path, PathBuf};

use extract::{Extracted, Format, Limits};

/// Where the host mounts the directory holding the package (read-only).
pub const PACKAGE_MOUNT: &str = "/package";
/// Where the host mounts `<home>/Applications/<package>/` (read-write).
pub const APPLICATIONS_MOUNT: &str = "/applications";

/// The output variable with the deployment's directory.
pub const INSTALLATION_DIRECTORY: &str = "Octopus.Action.Package.InstallationDirectoryPath";
const TARGET_FILES: &str = "Octopus.Action.SubstituteInFiles.TargetFiles";
const JSON_TARGETS: &str = "Octopus.Action.Package.JsonConfigurationVariablesTargets";

/// `$0` of the fix-up script (links, modes), which bash reads on standard input.
const FIXUP_NAME: &str = "octo-package-fixups";

struct DeployPackage;

impl Step for DeployPackage {
    fn describe() -> Description {
        Description::new("Deploy a package")
            .param(Param::new("Package.Id").label("Package id").required())
            .param(
                Param::new("Package.Version")
                    .label("Package version")
                    .required(),
            )
            .param(
                Param::new("Package.FileName")
                    .label("Package file")
                    .help("The package's file name in the directory the host mounts at /package.")
                    .required(),
            )
            .param(
                Param::new("Package.ApplicationsPath")
                    .label("Applications directory")
                    .help(
                        "The host path of <home>/Applications/<package>, mounted at /applications; \
                         set by the host.",
                    )
                    .required(),
            )
            .param(
                Param::new("RetentionCount")
                    .label("Deployments kept")
                    .help("How many deployed directories of this package are kept.")
                    .default(3),
            )
            .param(
                Param::new("MaxExtractedBytes")
                    .label("Largest extracted size")
                    .help("A package that expands to more bytes is refused.")
                    .default(Limits::default().max_bytes),
            )
            .param(
                Param::new("MaxEntries")
                    .label("Most entries")
                    .help("A package with more entries is refused.")
                    .default(Limits::default().max_entries),
            )
            .param(
                Param::new(TARGET_FILES)
                    .label("Substitute variables in files")
                    .help("File patterns, one per line, in which #{Variable} is replaced.")
                    .default(""),
            )
            .param(
                Param::new(JSON_TARGETS)
                    .label("JSON configuration files")
                    .help(
                        "File patterns, one per line, of JSON files whose values named by \
                         variables such as Logging:LogLevel:Default are replaced.",
                    )
                    .default(""),
            )
    }

    fn run(args: Args) -> Result {
        let id = args.required("Package.Id")?.to_owned();
        let version = args.required("Package.Version")?.to_owned();
        let what = format!("package {id} {version}");
        for (name, value) in [("id", &id), ("version", &version)] {
            if !layout::valid_component(value) {
                bail!("{what}: the {name} {value:?} cannot name a directory");
            }
        }
        let file_name = args.required("Package.FileName")?;
        let host_apps = PathBuf::from(args.required("Package.ApplicationsPath")?);
        let keep: usize = args.get_or("RetentionCount", 3)?;
        let limits = Limits {
            max_bytes: args.get_or("MaxExtractedBytes", Limits::default().max_bytes)?,
            max_entries: args.get_or("MaxEntries", Limits::default().max_entries)?,
        };
        let package = Path::new(PACKAGE_MOUNT).join(file_name);
        let apps = Path::new(APPLICATIONS_MOUNT);

        let format = detect(&package).map_err(|e| Error::msg(format!("{what}: {e}")))?;
        let name = extract_into_place(&package, format, apps, &host_apps, limits, &what)?;
        let dir_host = host_apps.join(&name);
        let dir_guest = apps.join(&name);
        let dir_text = dir_host.display().to_string();
        variables::set_output(INSTALLATION_DIRECTORY, &dir_text);
        info!("Deployed {what} to {dir_text}");

        let deployment = variables::all();
        let mut pairs: Vec<(&str, &str)> = deployment
            .iter()
            .map(|v| (v.name.as_str(), v.value.as_str()))
            .collect();
        pairs.extend([
            (INSTALLATION_DIRECTORY, dir_text.as_str()),
            ("Octopus.Action.Package.PackageId", id.as_str()),
            ("Octopus.Action.Package.PackageVersion", version.as_str()),
        ]);
        let setting = |name: &str| -> String {
            args.raw(name)
                .filter(|v| !v.trim().is_empty())
                .map(str::to_owned)
                .or_else(|| variables::get(name))
                .unwrap_or_default()
        };
        let conventions = Conventions {
            dir_guest: &dir_guest,
            dir_host: &dir_host,
            pairs: &pairs,
            target_files: glob::patterns(&setting(TARGET_FILES)),
            json_targets: glob::patterns(&setting(JSON_TARGETS)),
        };
        if let Err(failure) = conventions.run() {
            if dir_guest.join("DeployFailed.sh").is_file() {
                warn!("The deployment failed; running DeployFailed.sh");
                if let Err(e) = conventions.script("DeployFailed.sh") {
                    warn!("DeployFailed.sh failed too: {e}");
                }
            }
            bail!("{what}: {failure}");
        }
        retain(apps, keep);
        Ok(())
    }
}

fn detect(package: &Path) -> std::result::Result<Format, String> {
    let meta = fs::metadata(package)
        .map_err(|e| format!("cannot open the package file {}: {e}", package.display()))?;
    if meta.is_dir() {
        return Ok(Format::Directory);
    }
    let mut head = [0u8; 512];
    let n = {
        use std::io::Read;
        let mut file = fs::File::open(package)
            .map_err(|e| format!("cannot open the package file {}: {e}", package.display()))?;
        let mut n = 0;
        while n < head.len() {
            match file.read(&mut head[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) => return Err(format!("cannot read the package file: {e}")),
            }
        }
        n
    };
    let name = package.file_name().and_then(|n| n.to_str()).unwrap_or("");
    Format::detect(name, &head[..n]).ok_or_else(|| {
        format!("{name} is not a package this step can extract (.zip, .nupkg, .tar, .tar.gz, .tgz)")
    })
}

/// Extracts into `.partial-<name>`, applies the fix-ups, renames to `<name>` and records it in the
/// journal; returns the name. Nothing under a final name exists unless all of that succeeded.
fn extract_into_place(
    package: &Path,
    format: Format,
    apps: &Path,
    host_apps: &Path,
    limits: Limits,
    what: &str,
) -> Result<String> {
    let existing: Vec<String> = fs::read_dir(apps)
        .with_context(|| format!("{what}: cannot list {}", host_apps.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    // What a killed deployment left; never a finished one.
    for stale in existing
        .iter()
        .filter(|n| n.starts_with(layout::PARTIAL_PREFIX))
    {
        verbose!("Removing {stale}, left by a deployment that did not finish");
        let _ = fs::remove_dir_all(apps.join(stale));
    }
    let version = package_version(what);
    let finished = existing
        .iter()
        .filter(|n| !n.starts_with(layout::PARTIAL_PREFIX));
    let name = layout::next_name(version, finished.map(String::as_str));
    let partial = apps.join(format!("{}{name}", layout::PARTIAL_PREFIX));
    fs::create_dir(&partial)
        .with_context(|| format!("{what}: cannot create {}", host_apps.join(&name).display()))?;
    let fail = |message: String| -> Error {
        let _ = fs::remove_dir_all(&partial);
        Error::msg(format!("{what}: {message}"))
    };
    verbose!(
        "Extracting the {} into {}",
        format.name(),
        host_apps.display()
    );
    let extracted =
        extract::extract(package, format, &partial, limits).map_err(|e| fail(e.to_string()))?;
    info!(
        "Extracted {} files ({} bytes) from the {}",
        extracted.files,
        extracted.bytes,
        format.name()
    );
    let host_partial = host_apps.join(format!("{}{name}", layout::PARTIAL_PREFIX));
    apply_fixups(&extracted, &host_partial).map_err(|e| fail(e.to_string()))?;
    fs::rename(&partial, apps.join(&name))
        .map_err(|e| fail(format!("cannot rename the extracted directory: {e}")))?;
    let journal = apps.join(layout::JOURNAL);
    let mut names = layout::read_journal(&fs::read_to_string(&journal).unwrap_or_default());
    names.push(name.clone());
    write_journal(apps, &names);
    Ok(name)
}

/// The version part of `package ID VERSION`.
fn package_version(what: &str) -> &str {
    what.rsplit(' ').next().unwrap_or(what)
}

fn write_journal(apps: &Path, names: &[String]) {
    let temp = apps.join(format!("{}.tmp", layout::JOURNAL));
    if fs::write(&temp, layout::write_journal(names)).is_ok() {
        let _ = fs::rename(&temp, apps.join(layout::JOURNAL));
    }
}

/// Symbolic links and executable modes, which WASI cannot set, applied with one native script.
fn apply_fixups(extracted: &Extracted, host_dir: &Path) -> Result {
    let fixups = &extracted.fixups;
    if fixups.symlinks.is_empty() && fixups.executables.is_empty() {
        return Ok(());
    }
    let q = bootstrap::ansi_c_quote;
    let mut script = format!("set -e\ncd -- {}\n", q(&host_dir.display().to_string()));
    for (link, target) in &fixups.symlinks {
        script.push_str(&format!("ln -s -- {} {}\n", q(target), q(link.as_str())));
    }
    for chunk in fixups.executables.chunks(200) {
        script.push_str("chmod +x --");
        for file in chunk {
            script.push(' ');
            script.push_str(&q(file.as_str()));
        }
        script.push('\n');
    }
    let status = Command::new("bash")
        .args(["-c", ". /dev/stdin", FIXUP_NAME])
        .stdin(script.into_bytes())
        .status();
    match status {
        Ok(0) => Ok(()),
        Ok(code) => bail!("setting the package's links and file modes failed (exit code {code})"),
        Err(e) => bail!("setting the package's links and file modes failed: {e}"),
    }
}

struct Conventions<'a> {
    dir_guest: &'a Path,
    dir_host: &'a Path,
    pairs: &'a [(&'a str, &'a str)],
    target_files: Vec<String>,
    json_targets: Vec<String>,
}

impl Conventions<'_> {
    fn run(&self) -> std::result::Result<(), String> {
        self.script_if_present("PreDeploy.sh")?;
        if !self.target_files.is_empty() {
            self.substitute()?;
        }
        if !self.json_targets.is_empty() {
            self.json()?;
        }
        self.script_if_present("Deploy.sh")?;
        self.script_if_present("PostDeploy.sh")?;
        Ok(())
    }

    fn script_if_present(&self, name: &str) -> std::result::Result<(), String> {
        if self.dir_guest.join(name).is_file() {
            info!("Running {name}");
            self.script(name)?;
        }
        Ok(())
    }

    /// Runs a script of the package with run-script's bootstrap, in the deployment directory. As
    /// in run-script, the variables (sensitive ones included) reach bash on standard input only.
    fn script(&self, name: &str) -> std::result::Result<(), String> {
        let wrapper = format!(
            "cd -- {} || exit 1\nsource ./{}\n",
            bootstrap::ansi_c_quote(&self.dir_host.display().to_string()),
            bootstrap::ansi_c_quote(name)
        );
        let status = Command::new("bash")
            .args(["-c", ". /dev/stdin", bootstrap::BOOTSTRAP_FILE])
            .stdin(
                bootstrap::bootstrap_with_script(self.pairs.iter().copied(), &wrapper).into_bytes(),
            )
            .status();
        match status {
            Ok(0) => Ok(()),
            Ok(code) => Err(format!("{name} exited with code {code}")),
            Err(ProcessError::SpawnFailed { reason, .. }) => {
                Err(format!("could not start bash for {name}: {reason}"))
            }
            Err(e) => Err(format!("{name}: {e}")),
        }
    }

    /// The deployment's files (relative paths), for the file patterns.
    fn files(&self) -> Vec<String> {
        fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
            let Ok(entries) = fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() {
                    walk(base, &path, out);
                } else if kind.is_file()
                    && let Ok(rel) = path.strip_prefix(base)
                {
                    out.push(rel.to_string_lossy().into_owned());
                }
            }
        }
        let mut out = Vec::new();
        walk(self.dir_guest, self.dir_guest, &mut out);
        out.sort();
        out
    }

    fn matching(&self, patterns: &[String], setting: &str) -> Vec<String> {
        let files = self.files();
        let mut out = Vec::new();
        for pattern in patterns {
            let hits: Vec<&String> = files.iter().filter(|f| glob::matches(pattern, f)).collect();
            if hits.is_empty() {
                warn!("No file matches {pattern:?} ({setting})");
            }
            for hit in hits {
                if !out.contains(hit) {
                    out.push(hit.clone());
                }
            }
        }
        out
    }

    fn substitute(&self) -> std::result::Result<(), String> {
        let vars = substitute::Variables::new(self.pairs.iter().copied());
        for file in self.matching(&self.target_files, TARGET_FILES) {
            let path = self.dir_guest.join(&file);
            let Ok(text) = fs::read_to_string(&path) else {
                warn!("{file} is not UTF-8 text; variables were not substituted in it");
                continue;
            };
            let out = substitute::substitute(&text, &vars);
            if out != text {
                fs::write(&path, out).map_err(|e| format!("cannot write {file}: {e}"))?;
            }
            info!("Substituted variables in {file}");
        }
        Ok(())
    }

    fn json(&self) -> std::result::Result<(), String> {
        for file in self.matching(&self.json_targets, JSON_TARGETS) {
            let path = self.dir_guest.join(&file);
            let text = fs::read_to_string(&path)
                .map_err(|e| format!("cannot read the JSON file {file}: {e}"))?;
            match json_config::apply(&text, self.pairs.iter().copied()) {
                Ok(Some((out, used))) => {
                    fs::write(&path, out).map_err(|e| format!("cannot write {file}: {e}"))?;
                    info!(
                        "Replaced {} JSON values in {file}: {}",
                        used.len(),
                        used.join(", ")
                    );
                }
                Ok(None) => verbose!("No variable names a value in {file}"),
                Err(e) => return Err(format!("{file} is not valid JSON: {e}")),
            }
        }
        Ok(())
    }
}

/// Keeps the newest `keep` deployments; the rest are removed (failures are warnings).
fn retain(apps: &Path, keep: usize) {
    let journal = apps.join(layout::JOURNAL);
    let names = layout::read_journal(&fs::read_to_string(&journal).unwrap_or_default());
    let (kept, gone) = layout::retention(&names, keep);
    if gone.is_empty() {
        return;
    }
    for name in &gone {
        match fs::remove_dir_all(apps.join(name)) {
            Ok(()) => info!("Removed the old deployment {name} (keeping {keep})"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!("Could not remove the old deployment {name}: {e}"),
        }
    }
    write_journal(apps, &kept);
}

step!(
    DeployPackage,
    description = "Extracts a package into a fresh directory and runs the Octopus deployment conventions (PreDeploy.sh, variable substitution, JSON variables, Deploy.sh, PostDeploy.sh)",
    capabilities = ["process"],
);
