//! Safe extraction of a package into a fresh directory.
//!
//! Every entry's name is checked by [`EntryPath`] before anything is written; links must point
//! inside the directory; device files, FIFOs and sockets are refused; the bytes actually written
//! and the number of entries are counted against [`Limits`] (so a zip bomb stops at the limit,
//! whatever its headers claim). The caller extracts into a temporary directory and renames it once
//! this returns `Ok`, so a failed or killed extraction never leaves a directory that looks complete.
//!
//! WASI has no calls for file modes or symbolic links, so those are returned as [`Fixups`] for the
//! caller to apply with native commands; everything else is written here.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::entry_path::{EntryPath, PathRefusal};

/// How much one package may expand to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes written, all files together.
    pub max_bytes: u64,
    /// Most entries (files, directories, links).
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 4 << 30,
            max_entries: 100_000,
        }
    }
}

/// The archive formats a package can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.zip`.
    Zip,
    /// `.nupkg`: a zip whose packaging metadata is left out.
    NuGet,
    /// `.tar`.
    Tar,
    /// `.tar.gz` / `.tgz`.
    TarGz,
    /// A directory of files (an OCI artifact's files), copied as they are.
    Directory,
}

impl Format {
    /// The format a package file name says, else what its first bytes say.
    pub fn detect(file_name: &str, head: &[u8]) -> Option<Format> {
        let lower = file_name.to_ascii_lowercase();
        if lower.ends_with(".nupkg") {
            return Some(Format::NuGet);
        }
        if lower.ends_with(".zip") {
            return Some(Format::Zip);
        }
        if lower.ends_with(".tar.gz") || lower.ends_with(".tgz") {
            return Some(Format::TarGz);
        }
        if lower.ends_with(".tar") {
            return Some(Format::Tar);
        }
        if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
            return Some(Format::Zip);
        }
        if head.starts_with(&[0x1f, 0x8b]) {
            return Some(Format::TarGz);
        }
        if head.len() >= 262 && &head[257..262] == b"ustar" {
            return Some(Format::Tar);
        }
        None
    }

    /// Its name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Format::Zip => "zip archive",
            Format::NuGet => "NuGet package",
            Format::Tar => "tar archive",
            Format::TarGz => "gzip-compressed tar archive",
            Format::Directory => "directory of files",
        }
    }
}

/// Why extraction stopped. `Display` is one line naming the entry where there is one.
#[derive(Debug)]
pub enum ExtractError {
    /// The archive cannot be read.
    Corrupt {
        /// Its format.
        format: Format,
        /// What the reader said.
        reason: String,
    },
    /// An entry that must not be extracted.
    Refused {
        /// The entry's name as the archive has it.
        entry: String,
        /// Why.
        why: String,
    },
    /// More bytes than allowed.
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// More entries than allowed.
    TooManyEntries {
        /// The limit.
        limit: u64,
    },
    /// Writing failed.
    Io {
        /// What was being written.
        what: String,
        /// The error.
        error: io::Error,
    },
}

impl fmt::Display for ExtractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExtractError::Corrupt { format, reason } => {
                write!(f, "it is not a valid {}: {reason}", format.name())
            }
            ExtractError::Refused { entry, why } => {
                write!(f, "entry {entry:?} was refused: {why}")
            }
            ExtractError::TooLarge { limit } => write!(
                f,
                "it expands to more than {limit} bytes (the MaxExtractedBytes limit); refusing it as a possible archive bomb"
            ),
            ExtractError::TooManyEntries { limit } => write!(
                f,
                "it has more than {limit} entries (the MaxEntries limit); refusing it as a possible archive bomb"
            ),
            ExtractError::Io { what, error } => write!(f, "cannot write {what}: {error}"),
        }
    }
}

/// What WASI cannot do and the caller applies natively after extraction.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Fixups {
    /// Symbolic links to create: (link, target as written in the archive; checked to stay inside).
    pub symlinks: Vec<(EntryPath, String)>,
    /// Files to mark executable.
    pub executables: Vec<EntryPath>,
}

/// What was extracted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// Regular files written (hard links included).
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Links and modes to apply.
    pub fixups: Fixups,
}

/// What kind of thing an entry is.
enum Kind {
    File,
    Directory,
    Symlink(String),
    Hardlink(String),
    /// Device files, FIFOs, sockets, sparse files...: refused with this description.
    Other(&'static str),
}

/// Extracts the package at `package` (a file, or a directory for [`Format::Directory`]) into
/// `root`, which must exist and be empty.
pub fn extract(
    package: &Path,
    format: Format,
    root: &Path,
    limits: Limits,
) -> Result<Extracted, ExtractError> {
    let mut out = Writer {
        root: root.to_path_buf(),
        limits,
        entries: 0,
        dirs: HashSet::new(),
        files: HashSet::new(),
        links: HashSet::new(),
        done: Extracted::default(),
    };
    let open = |p: &Path| {
        fs::File::open(p).map_err(|error| ExtractError::Io {
            what: format!("(reading) {}", p.display()),
            error,
        })
    };
    match format {
        Format::Zip | Format::NuGet => zip_entries(open(package)?, format, &mut out)?,
        Format::Tar => tar_entries(open(package)?, Format::Tar, &mut out)?,
        Format::TarGz => tar_entries(
            flate2::read::GzDecoder::new(io::BufReader::with_capacity(256 << 10, open(package)?)),
            Format::TarGz,
            &mut out,
        )?,
        Format::Directory => dir_entries(package, package, &mut out)?,
    }
    Ok(out.done)
}

fn corrupt(format: Format) -> impl Fn(io::Error) -> ExtractError {
    move |e| ExtractError::Corrupt {
        format,
        reason: e.to_string(),
    }
}

fn zip_entries(file: fs::File, format: Format, out: &mut Writer) -> Result<(), ExtractError> {
    let zip_corrupt = |e: zip::result::ZipError| ExtractError::Corrupt {
        format,
        reason: e.to_string(),
    };
    let mut archive = zip::ZipArchive::new(io::BufReader::new(file)).map_err(zip_corrupt)?;
    if archive.len() as u64 > out.limits.max_entries {
        return Err(ExtractError::TooManyEntries {
            limit: out.limits.max_entries,
        });
    }
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(zip_corrupt)?;
        let raw = entry.name().map_err(zip_corrupt)?.into_owned();
        let name = if format == Format::NuGet {
            if is_nuget_metadata(&raw) {
                continue;
            }
            percent_decode(&raw)
        } else {
            raw
        };
        let mode = entry.unix_mode();
        let kind = if entry.is_dir() {
            Kind::Directory
        } else if entry.is_symlink() {
            let mut target = String::new();
            entry
                .by_ref()
                .take(4096)
                .read_to_string(&mut target)
                .map_err(corrupt(format))?;
            Kind::Symlink(target)
        } else {
            match mode.map(|m| m & 0o170000) {
                None | Some(0) | Some(0o100000) => Kind::File,
                Some(0o040000) => Kind::Directory,
                Some(t) => Kind::Other(special_kind(t)),
            }
        };
        out.entry(&name, kind, mode, &mut entry, format)?;
    }
    Ok(())
}

fn tar_entries<R: Read>(reader: R, format: Format, out: &mut Writer) -> Result<(), ExtractError> {
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(corrupt(format))? {
        let mut entry = entry.map_err(corrupt(format))?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let link = || {
            entry
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        use tar::EntryType as T;
        let kind = match entry.header().entry_type() {
            T::Regular | T::Continuous => Kind::File,
            T::Directory => Kind::Directory,
            T::Symlink => Kind::Symlink(link()),
            T::Link => Kind::Hardlink(link()),
            T::Char => Kind::Other("it is a character device"),
            T::Block => Kind::Other("it is a block device"),
            T::Fifo => Kind::Other("it is a FIFO"),
            T::GNUSparse => Kind::Other("it is a sparse file"),
            // Extension headers the reader has applied to the next entry.
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => continue,
            _ => Kind::Other("it is of an unknown entry type"),
        };
        let mode = entry.header().mode().ok();
        out.entry(&name, kind, mode, &mut entry, format)?;
    }
    Ok(())
}

fn dir_entries(base: &Path, dir: &Path, out: &mut Writer) -> Result<(), ExtractError> {
    let io_err = |p: &Path| {
        let what = format!("(reading) {}", p.display());
        move |error| ExtractError::Io {
            what: what.clone(),
            error,
        }
    };
    let mut children: Vec<_> = fs::read_dir(dir)
        .map_err(io_err(dir))?
        .collect::<Result<_, _>>()
        .map_err(io_err(dir))?;
    children.sort_by_key(|e| e.file_name());
    for child in children {
        let path = child.path();
        let name = path
            .strip_prefix(base)
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        let meta = fs::symlink_metadata(&path).map_err(io_err(&path))?;
        if meta.is_dir() {
            out.entry(
                &name,
                Kind::Directory,
                None,
                &mut io::empty(),
                Format::Directory,
            )?;
            dir_entries(base, &path, out)?;
        } else if meta.is_file() {
            let mut file = fs::File::open(&path).map_err(io_err(&path))?;
            out.entry(&name, Kind::File, None, &mut file, Format::Directory)?;
        } else {
            out.entry(
                &name,
                Kind::Other("it is not a regular file"),
                None,
                &mut io::empty(),
                Format::Directory,
            )?;
        }
    }
    Ok(())
}

/// What Calamari leaves out of a NuGet package: the OPC packaging parts.
fn is_nuget_metadata(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower == "[content_types].xml"
        || lower.starts_with("_rels/")
        || lower.starts_with("package/services/metadata/")
}

/// NuGet escapes file names in the package as URI data (`%20`); undo it (a broken escape stays).
fn percent_decode(name: &str) -> String {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = name
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| name.to_owned())
}

fn special_kind(file_type: u32) -> &'static str {
    match file_type {
        0o020000 => "it is a character device",
        0o060000 => "it is a block device",
        0o010000 => "it is a FIFO",
        0o140000 => "it is a socket",
        _ => "it is of an unknown file type",
    }
}

/// Writes entries under `root`, keeping count.
struct Writer {
    root: PathBuf,
    limits: Limits,
    entries: u64,
    dirs: HashSet<EntryPath>,
    files: HashSet<EntryPath>,
    links: HashSet<String>,
    done: Extracted,
}

impl Writer {
    fn entry(
        &mut self,
        name: &str,
        kind: Kind,
        mode: Option<u32>,
        data: &mut dyn Read,
        format: Format,
    ) -> Result<(), ExtractError> {
        let refused = |why: String| ExtractError::Refused {
            entry: name.to_owned(),
            why,
        };
        let path_refused = |r: PathRefusal| refused(r.to_string());
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(ExtractError::TooManyEntries {
                limit: self.limits.max_entries,
            });
        }
        if let Kind::Other(why) = kind {
            return Err(refused(why.to_owned()));
        }
        let Some(path) = EntryPath::parse(name).map_err(path_refused)? else {
            return match kind {
                Kind::Directory => Ok(()),
                _ => Err(refused("it names the package's own directory".into())),
            };
        };
        // Nothing is written through a link: a link may point anywhere inside, and is created last.
        if let Some(link) = path
            .ancestors()
            .chain(std::iter::once(path.as_str()))
            .find(|a| self.links.contains(*a))
        {
            return Err(refused(format!(
                "it goes through or replaces the link {link:?} that the package created"
            )));
        }
        self.make_parents(&path, name)?;
        let full = self.root.join(path.as_str());
        match kind {
            Kind::Directory => {
                if !self.dirs.contains(&path) {
                    if self.files.contains(&path) {
                        return Err(refused("a file of that name came before it".into()));
                    }
                    fs::create_dir(&full)
                        .or_else(exists_ok)
                        .map_err(self.io(&path))?;
                    self.dirs.insert(path);
                }
            }
            Kind::File => {
                if self.dirs.contains(&path) {
                    return Err(refused("a directory of that name came before it".into()));
                }
                self.write_file(&path, &full, data, format)?;
                if mode.is_some_and(|m| m & 0o111 != 0) {
                    self.done.fixups.executables.push(path.clone());
                }
                self.files.insert(path);
            }
            Kind::Hardlink(target) => {
                let Some(target_path) = EntryPath::parse(&target).map_err(|r| {
                    refused(format!("it is a hard link whose target {target:?}: {r}"))
                })?
                else {
                    return Err(refused("it is a hard link to the directory itself".into()));
                };
                if !self.files.contains(&target_path) {
                    return Err(refused(format!(
                        "it is a hard link to {target:?}, which is not a file extracted before it"
                    )));
                }
                let mut source = fs::File::open(self.root.join(target_path.as_str()))
                    .map_err(self.io(&target_path))?;
                self.write_file(&path, &full, &mut source, format)?;
                self.files.insert(path);
            }
            Kind::Symlink(target) => {
                path.resolve_link(&target).map_err(|r| {
                    refused(format!(
                        "it is a symbolic link to {target:?}, outside the package ({r})"
                    ))
                })?;
                if self.dirs.contains(&path) || self.files.contains(&path) {
                    return Err(refused(
                        "a file or directory of that name came before it".into(),
                    ));
                }
                self.links.insert(path.as_str().to_owned());
                self.done.fixups.symlinks.push((path, target));
            }
            Kind::Other(_) => unreachable!("refused above"),
        }
        Ok(())
    }

    fn io(&self, path: &EntryPath) -> impl Fn(io::Error) -> ExtractError {
        let what = path.to_string();
        move |error| ExtractError::Io {
            what: what.clone(),
            error,
        }
    }

    fn make_parents(&mut self, path: &EntryPath, name: &str) -> Result<(), ExtractError> {
        for dir in path.ancestors() {
            let dir = EntryPath::parse(dir)
                .ok()
                .flatten()
                .expect("an ancestor of a checked path is a checked path");
            if self.dirs.contains(&dir) {
                continue;
            }
            if self.files.contains(&dir) {
                return Err(ExtractError::Refused {
                    entry: name.to_owned(),
                    why: format!("its directory {dir} is a file in the package"),
                });
            }
            fs::create_dir(self.root.join(dir.as_str()))
                .or_else(exists_ok)
                .map_err(self.io(&dir))?;
            self.dirs.insert(dir);
        }
        Ok(())
    }

    fn write_file(
        &mut self,
        path: &EntryPath,
        full: &Path,
        data: &mut dyn Read,
        format: Format,
    ) -> Result<(), ExtractError> {
        let mut file = fs::File::create(full).map_err(self.io(path))?;
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = match data.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(ExtractError::Corrupt {
                        format,
                        reason: format!("reading {path}: {e}"),
                    });
                }
            };
            self.done.bytes += n as u64;
            if self.done.bytes > self.limits.max_bytes {
                return Err(ExtractError::TooLarge {
                    limit: self.limits.max_bytes,
                });
            }
            file.write_all(&buf[..n]).map_err(self.io(path))?;
        }
        self.done.files += 1;
        Ok(())
    }
}

fn exists_ok(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::AlreadyExists {
        Ok(())
    } else {
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    struct Temp(PathBuf);
    impl Temp {
        fn new() -> Temp {
            use std::sync::atomic::{AtomicU64, Ordering};
            static N: AtomicU64 = AtomicU64::new(0);
            let dir = std::env::temp_dir().join(format!(
                "octo-deploy-package-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir_all(&dir).unwrap();
            Temp(dir)
        }
    }
    impl Drop for Temp {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    enum E<'a> {
        File(&'a str, &'a [u8], u32),
        Dir(&'a str),
        Sym(&'a str, &'a str),
        Hard(&'a str, &'a str),
        Dev(&'a str),
    }

    fn tar_bytes(entries: &[E]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            let mut h = tar::Header::new_gnu();
            match e {
                E::File(name, data, mode) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(data.len() as u64);
                    h.set_mode(*mode);
                    set_name(&mut h, name);
                    h.set_cksum();
                    b.append(&h, *data).unwrap();
                    continue;
                }
                E::Dir(name) => {
                    h.set_entry_type(tar::EntryType::Directory);
                    set_name(&mut h, name);
                }
                E::Sym(name, target) | E::Hard(name, target) => {
                    h.set_entry_type(if matches!(e, E::Sym(..)) {
                        tar::EntryType::Symlink
                    } else {
                        tar::EntryType::Link
                    });
                    set_name(&mut h, name);
                    h.set_link_name_literal(target).unwrap();
                }
                E::Dev(name) => {
                    h.set_entry_type(tar::EntryType::Char);
                    set_name(&mut h, name);
                }
            }
            h.set_size(0);
            h.set_mode(0o755);
            h.set_cksum();
            b.append(&h, std::io::empty()).unwrap();
        }
        b.into_inner().unwrap()
    }

    /// Writes the name bytes directly: the builder's helpers refuse `..` and absolute names,
    /// which is exactly what these tests need to make.
    fn set_name(h: &mut tar::Header, name: &str) {
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name = [0; 100];
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
    }

    fn run(bytes: &[u8], file: &str, limits: Limits) -> (Temp, Result<Extracted, ExtractError>) {
        let t = Temp::new();
        let package = t.0.join(file);
        fs::write(&package, bytes).unwrap();
        let root = t.0.join("out");
        fs::create_dir(&root).unwrap();
        let format = Format::detect(file, bytes).unwrap();
        let r = extract(&package, format, &root, limits);
        (t, r)
    }

    fn refused(bytes: &[u8], file: &str) -> String {
        let (_t, r) = run(bytes, file, Limits::default());
        r.unwrap_err().to_string()
    }

    #[test]
    fn extracts_tar_with_links_and_modes() {
        let tar = tar_bytes(&[
            E::Dir("app/"),
            E::File("app/run.sh", b"echo hi", 0o755),
            E::File("app/conf/a.json", b"{}", 0o644),
            E::Sym("app/current", "run.sh"),
            E::Hard("app/copy.sh", "app/run.sh"),
        ]);
        let (t, r) = run(&tar, "p.tar", Limits::default());
        let done = r.unwrap();
        let out = t.0.join("out");
        assert_eq!(fs::read(out.join("app/run.sh")).unwrap(), b"echo hi");
        assert_eq!(fs::read(out.join("app/copy.sh")).unwrap(), b"echo hi");
        assert_eq!(fs::read(out.join("app/conf/a.json")).unwrap(), b"{}");
        assert_eq!(done.files, 3);
        assert_eq!(
            done.fixups.symlinks,
            [(
                EntryPath::parse("app/current").unwrap().unwrap(),
                "run.sh".to_owned()
            )]
        );
        assert_eq!(done.fixups.executables.len(), 1);
        // The same, gzip-compressed.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let (_t, r) = run(&gz.finish().unwrap(), "p.tgz", Limits::default());
        assert_eq!(r.unwrap().files, 3);
    }

    #[test]
    fn refuses_unsafe_tar_entries_naming_them() {
        let cases: [(&[E], &str); 6] = [
            (&[E::File("../x", b"x", 0o644)], "\"../x\""),
            (&[E::File("/etc/x", b"x", 0o644)], "\"/etc/x\""),
            (&[E::Sym("root", "/")], "\"root\""),
            (&[E::Sym("up", "../../etc")], "\"up\""),
            (&[E::Dev("null")], "\"null\""),
            (&[E::Hard("h", "/etc/passwd")], "\"h\""),
        ];
        for (entries, name) in cases {
            let message = refused(&tar_bytes(entries), "p.tar");
            assert!(message.contains(name), "{message}");
            assert!(message.contains("refused"), "{message}");
        }
        let message = refused(
            &tar_bytes(&[E::Sym("l", "sub"), E::File("l/x", b"x", 0o644)]),
            "p.tar",
        );
        assert!(message.contains("link"), "{message}");
    }

    #[test]
    fn limits_stop_bombs() {
        let big = vec![0u8; 10_000];
        let tar = tar_bytes(&[E::File("a", &big, 0o644), E::File("b", &big, 0o644)]);
        let limits = Limits {
            max_bytes: 15_000,
            max_entries: 10,
        };
        let (_t, r) = run(&tar, "p.tar", limits);
        assert!(matches!(r, Err(ExtractError::TooLarge { limit: 15_000 })));
        let limits = Limits {
            max_bytes: 1 << 30,
            max_entries: 1,
        };
        let (_t, r) = run(&tar, "p.tar", limits);
        assert!(matches!(r, Err(ExtractError::TooManyEntries { limit: 1 })));
    }

    #[test]
    fn corrupt_archives_are_errors() {
        let message = refused(b"PK\x03\x04 this is not really a zip", "p.zip");
        assert!(message.contains("not a valid zip archive"), "{message}");
        let message = refused(&[0x1f, 0x8b, 8, 0, 1, 2, 3], "p.tar.gz");
        assert!(
            message.contains("not a valid gzip-compressed tar"),
            "{message}"
        );
    }

    fn zip_bytes(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in entries {
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated);
            w.start_file(*name, options).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn zip_and_nupkg() {
        let zip = zip_bytes(&[("a/b.txt", b"hello"), ("c.txt", b"x")]);
        let (t, r) = run(&zip, "p.zip", Limits::default());
        assert_eq!(r.unwrap().files, 2);
        assert_eq!(fs::read(t.0.join("out/a/b.txt")).unwrap(), b"hello");

        let nupkg = zip_bytes(&[
            ("[Content_Types].xml", b"<x/>"),
            ("_rels/.rels", b"<x/>"),
            (
                "package/services/metadata/core-properties/x.psmdcp",
                b"<x/>",
            ),
            ("Acme.nuspec", b"<package/>"),
            ("content/my%20file.txt", b"spaced"),
        ]);
        let (t, r) = run(&nupkg, "Acme.1.0.0.nupkg", Limits::default());
        assert_eq!(r.unwrap().files, 2);
        assert!(!t.0.join("out/[Content_Types].xml").exists());
        assert!(!t.0.join("out/_rels").exists());
        assert!(!t.0.join("out/package").exists());
        assert_eq!(
            fs::read(t.0.join("out/content/my file.txt")).unwrap(),
            b"spaced"
        );

        let message = refused(&zip_bytes(&[("../evil", b"x")]), "p.zip");
        assert!(message.contains("\"../evil\""), "{message}");
    }
}
