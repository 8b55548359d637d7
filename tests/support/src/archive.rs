//! Package archives for tests, including the malformed and hostile ones a package feed may serve:
//! names with `..` or absolute paths, links out of the package, device files.

use std::io::Write;

/// One entry of a test archive.
#[derive(Debug, Clone)]
pub enum Entry {
    /// A regular file with its bytes and mode.
    File(String, Vec<u8>, u32),
    /// A directory.
    Dir(String),
    /// A symbolic link and its target.
    Symlink(String, String),
    /// A hard link and its target.
    Hardlink(String, String),
    /// A character device.
    CharDevice(String),
}

impl Entry {
    /// A regular file, mode 0644.
    pub fn file(name: &str, bytes: impl AsRef<[u8]>) -> Entry {
        Entry::File(name.into(), bytes.as_ref().to_vec(), 0o644)
    }

    /// An executable file, mode 0755.
    pub fn executable(name: &str, bytes: impl AsRef<[u8]>) -> Entry {
        Entry::File(name.into(), bytes.as_ref().to_vec(), 0o755)
    }
}

/// A tar archive of `entries`, names written as given (no checks).
pub fn tar(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        let (name, size, data): (&str, u64, &[u8]) = match e {
            Entry::File(name, data, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                (name, data.len() as u64, data)
            }
            Entry::Dir(name) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                (name, 0, &[])
            }
            Entry::Symlink(name, target) | Entry::Hardlink(name, target) => {
                h.set_entry_type(if matches!(e, Entry::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                h.set_link_name_literal(target).expect("short link target");
                h.set_mode(0o777);
                (name, 0, &[])
            }
            Entry::CharDevice(name) => {
                h.set_entry_type(tar::EntryType::Char);
                h.set_mode(0o644);
                (name, 0, &[])
            }
        };
        let gnu = h.as_gnu_mut().expect("a GNU header");
        assert!(name.len() < 100, "test entry names are short");
        gnu.name = [0; 100];
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(size);
        h.set_cksum();
        b.append(&h, data).expect("append to a Vec");
    }
    b.into_inner().expect("finish a Vec")
}

/// `tar(entries)`, gzip-compressed.
pub fn tar_gz(entries: &[Entry]) -> Vec<u8> {
    gzip(&tar(entries))
}

/// `bytes`, gzip-compressed (fast).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).expect("write to a Vec");
    gz.finish().expect("finish a Vec")
}
