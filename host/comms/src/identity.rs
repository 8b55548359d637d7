//! This side's certificate identity: a self-signed certificate (rcgen) with a subject name, stored
//! as `cert.pem` + `key.pem` (mode 0600) in a directory of its own, known by its [`Thumbprint`].

mod lock;
mod thumbprint;
mod x509;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub use thumbprint::{Thumbprint, ThumbprintParseError};
pub use x509::subject_common_name;

/// File name of the certificate inside an identity directory.
pub const CERT_FILE: &str = "cert.pem";
/// File name of the private key inside an identity directory.
pub const KEY_FILE: &str = "key.pem";
/// A new identity (certificate and key in one file) whose installation has not finished yet.
const PENDING_FILE: &str = ".pending.pem";
/// The lock file that serialises creating, replacing and loading the identity in a directory.
pub const LOCK_FILE: &str = ".lock";

/// A certificate and its private key. `Debug` never shows the key.
pub struct Identity {
    certificate: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
    thumbprint: Thumbprint,
    subject_name: Option<String>,
}

impl Identity {
    /// Generates a new self-signed identity (ECDSA P-256) whose subject common name is `name`.
    pub fn generate(name: &str) -> Result<Self, IdentityError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(IdentityError::EmptyName);
        }
        let key = rcgen::KeyPair::generate().map_err(IdentityError::Generate)?;
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Octo");
        let certificate = params.self_signed(&key).map_err(IdentityError::Generate)?;
        Self::from_parts(
            certificate.der().clone(),
            PrivatePkcs8KeyDer::from(key.serialize_der()),
        )
    }

    /// Builds an identity from DER parts, checking that the key belongs to the certificate.
    pub fn from_parts(
        certificate: CertificateDer<'static>,
        key: PrivatePkcs8KeyDer<'static>,
    ) -> Result<Self, IdentityError> {
        let signing_key = crate::crypto_provider()
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(key.clone_key()))
            .map_err(|e| IdentityError::Invalid(format!("unusable private key: {e}")))?;
        rustls::sign::CertifiedKey::new(vec![certificate.clone()], signing_key)
            .keys_match()
            .map_err(|e| {
                IdentityError::Invalid(format!("the key does not match the certificate ({e})"))
            })?;
        Ok(Self {
            thumbprint: Thumbprint::of_der(&certificate),
            subject_name: subject_common_name(&certificate),
            certificate,
            key,
        })
    }

    /// Parses PEM text: one certificate and one PKCS#8 private key.
    pub fn from_pem(certificate_pem: &str, key_pem: &str) -> Result<Self, IdentityError> {
        let certificate = CertificateDer::from_pem_slice(certificate_pem.as_bytes())
            .map_err(|e| IdentityError::Invalid(format!("cannot read the certificate PEM: {e}")))?;
        let key = PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| {
            IdentityError::Invalid(format!("cannot read the PKCS#8 private key PEM: {e}"))
        })?;
        Self::from_parts(certificate, key)
    }

    /// Loads the identity stored in `dir`.
    ///
    /// Takes the directory's lock, so it never sees a key and a certificate from two different
    /// identities while another process replaces them.
    pub fn load(dir: &Path) -> Result<Self, IdentityError> {
        let _lock = lock::DirLock::acquire(dir)?;
        Self::load_locked(dir)
    }

    /// Loads the identity stored in `dir`, or creates one named `name` if there is no certificate
    /// there yet. The subject name of an existing certificate is kept even if `name` differs:
    /// peers have pinned its thumbprint.
    ///
    /// Two processes doing this at once on a fresh directory agree on one identity: the check and
    /// the creation happen under the directory's lock.
    pub fn load_or_create(dir: &Path, name: &str) -> Result<Self, IdentityError> {
        let _lock = lock::DirLock::create_and_acquire(dir)?;
        if dir.join(CERT_FILE).exists() || dir.join(PENDING_FILE).exists() {
            return Self::load_locked(dir);
        }
        // A key without a certificate is a creation that never finished: nobody can have
        // pinned it, so it is replaced.
        let identity = Self::generate(name)?;
        identity.save_locked(dir)?;
        Ok(identity)
    }

    /// Creates a new identity named `name` in `dir`, replacing any existing one (the
    /// `new-certificate` command). Peers that pinned the old thumbprint no longer trust this side.
    pub fn regenerate(dir: &Path, name: &str) -> Result<Self, IdentityError> {
        let identity = Self::generate(name)?;
        identity.save(dir)?;
        Ok(identity)
    }

    /// Writes `cert.pem` and `key.pem` into `dir` (created with mode 0700 if missing), each with
    /// mode 0600, as one atomic step under the directory's lock.
    ///
    /// Both go first into one file, `.pending.pem`, written atomically: that rename is the commit.
    /// Then `key.pem` and `cert.pem` are replaced and the pending file removed. Whoever next takes
    /// the lock and finds a pending file finishes the job, so a crash at any point leaves the old
    /// identity or the new one, never a key that does not match its certificate.
    pub fn save(&self, dir: &Path) -> Result<(), IdentityError> {
        let _lock = lock::DirLock::create_and_acquire(dir)?;
        self.save_locked(dir)
    }

    fn save_locked(&self, dir: &Path) -> Result<(), IdentityError> {
        let pending = format!("{}{}", self.certificate_pem(), self.private_key_pem());
        write_private(&dir.join(PENDING_FILE), pending.as_bytes())?;
        self.install_locked(dir)
    }

    /// Replaces `key.pem` and `cert.pem` with this identity and drops the pending file.
    fn install_locked(&self, dir: &Path) -> Result<(), IdentityError> {
        write_private(&dir.join(KEY_FILE), self.private_key_pem().as_bytes())?;
        write_private(&dir.join(CERT_FILE), self.certificate_pem().as_bytes())?;
        let pending = dir.join(PENDING_FILE);
        match std::fs::remove_file(&pending) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(IdentityError::Io {
                path: pending,
                source,
            }),
        }
    }

    /// Loads with the lock held: a pending identity (a save that did not finish) is completed first.
    fn load_locked(dir: &Path) -> Result<Self, IdentityError> {
        let pending_path = dir.join(PENDING_FILE);
        match std::fs::read_to_string(&pending_path) {
            Ok(text) => {
                if let Ok(identity) = Self::from_pem(&text, &text) {
                    // Best effort when the directory is read-only: the pending identity is the
                    // current one either way.
                    let _ = identity.install_locked(dir);
                    return Ok(identity);
                }
                // Not a whole identity (edited by hand): the files it was meant to replace stand.
                let _ = std::fs::remove_file(&pending_path);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(IdentityError::Io {
                    path: pending_path,
                    source,
                });
            }
        }
        let cert_path = dir.join(CERT_FILE);
        let key_path = dir.join(KEY_FILE);
        let cert_pem = read(&cert_path)?;
        let key_pem = read(&key_path)?;
        Self::from_pem(&cert_pem, &key_pem).map_err(|e| match e {
            IdentityError::Invalid(detail) => IdentityError::InvalidFiles {
                dir: dir.to_owned(),
                detail,
            },
            other => other,
        })
    }

    /// The SHA-256 thumbprint of the DER certificate.
    pub fn thumbprint(&self) -> Thumbprint {
        self.thumbprint
    }

    /// The certificate's subject common name, if it has one.
    pub fn subject_name(&self) -> Option<&str> {
        self.subject_name.as_deref()
    }

    /// The DER-encoded certificate.
    pub fn certificate_der(&self) -> &CertificateDer<'static> {
        &self.certificate
    }

    /// The certificate as PEM text.
    pub fn certificate_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.certificate)
    }

    fn private_key_pem(&self) -> String {
        pem_encode("PRIVATE KEY", self.key.secret_pkcs8_der())
    }

    /// The private key's PKCS#8 bytes, for deriving keys from it (`seal`).
    pub(crate) fn private_key_secret(&self) -> &[u8] {
        self.key.secret_pkcs8_der()
    }

    /// The private key, for building TLS configurations.
    pub(crate) fn private_key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            certificate: self.certificate.clone(),
            key: self.key.clone_key(),
            thumbprint: self.thumbprint,
            subject_name: self.subject_name.clone(),
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("subject_name", &self.subject_name)
            .field("thumbprint", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

fn write_private(path: &Path, contents: &[u8]) -> Result<(), IdentityError> {
    octo_fsutil::write_atomic(path, contents).map_err(|source| IdentityError::Io {
        path: path.to_owned(),
        source,
    })
}

fn read(path: &Path) -> Result<String, IdentityError> {
    std::fs::read_to_string(path).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            IdentityError::Missing {
                path: path.to_owned(),
            }
        } else {
            IdentityError::Io {
                path: path.to_owned(),
                source,
            }
        }
    })
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Why an identity could not be created, loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The subject name was empty.
    #[error("the certificate subject name is empty")]
    EmptyName,
    /// rcgen could not generate the key or certificate.
    #[error("could not generate a certificate: {0}")]
    Generate(#[source] rcgen::Error),
    /// A file of the identity does not exist.
    #[error("{} does not exist; create a certificate with new-certificate", path.display())]
    Missing {
        /// The missing file.
        path: PathBuf,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The stored files are not a usable certificate and key.
    #[error(
        "the certificate in {} is unusable: {detail}; replace it with new-certificate",
        dir.display()
    )]
    InvalidFiles {
        /// The identity directory.
        dir: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// Certificate or key material given in memory is unusable.
    #[error("invalid certificate identity: {0}")]
    Invalid(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_has_name_and_thumbprint_of_der() {
        let id = Identity::generate("tentacle-a").unwrap();
        assert_eq!(id.subject_name(), Some("tentacle-a"));
        assert_eq!(id.thumbprint(), Thumbprint::of_der(id.certificate_der()));
        assert!(!format!("{id:?}").contains("PRIVATE"));
        assert!(matches!(
            Identity::generate("  "),
            Err(IdentityError::EmptyName)
        ));
    }

    #[test]
    fn load_or_create_persists_with_private_modes() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("certs");
        let first = Identity::load_or_create(&dir, "octo-server").unwrap();
        let again = Identity::load_or_create(&dir, "another-name").unwrap();
        assert_eq!(first.thumbprint(), again.thumbprint());
        assert_eq!(again.subject_name(), Some("octo-server"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&dir.join(CERT_FILE)), 0o600);
            assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
        }
        // No temporary files are left behind (the lock file stays: it is not temporary).
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n != LOCK_FILE)
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn regenerate_replaces_the_identity() {
        let home = tempfile::tempdir().unwrap();
        let first = Identity::load_or_create(home.path(), "a").unwrap();
        let second = Identity::regenerate(home.path(), "b").unwrap();
        assert_ne!(first.thumbprint(), second.thumbprint());
        let loaded = Identity::load(home.path()).unwrap();
        assert_eq!(loaded.thumbprint(), second.thumbprint());
        assert_eq!(loaded.subject_name(), Some("b"));
    }

    #[test]
    fn mismatched_or_missing_files_are_reported() {
        let home = tempfile::tempdir().unwrap();
        assert!(matches!(
            Identity::load(home.path()),
            Err(IdentityError::Missing { .. })
        ));
        let a = Identity::generate("a").unwrap();
        let b = Identity::generate("b").unwrap();
        a.save(home.path()).unwrap();
        std::fs::write(home.path().join(KEY_FILE), b.private_key_pem()).unwrap();
        let err = Identity::load(home.path()).unwrap_err();
        assert!(matches!(err, IdentityError::InvalidFiles { .. }), "{err}");
        assert!(err.to_string().contains("does not match"), "{err}");
        std::fs::write(home.path().join(CERT_FILE), "garbage").unwrap();
        let err = Identity::load(home.path()).unwrap_err();
        assert!(matches!(err, IdentityError::InvalidFiles { .. }), "{err}");
    }

    #[test]
    fn a_key_without_certificate_is_replaced() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join(KEY_FILE), "half-written").unwrap();
        let id = Identity::load_or_create(home.path(), "fresh").unwrap();
        assert_eq!(
            Identity::load(home.path()).unwrap().thumbprint(),
            id.thumbprint()
        );
    }

    #[test]
    fn concurrent_first_use_agrees_on_one_identity() {
        for _ in 0..20 {
            let home = tempfile::tempdir().unwrap();
            let dir = home.path().join("certs");
            let thumbprints: Vec<Thumbprint> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..4)
                    .map(|_| s.spawn(|| Identity::load_or_create(&dir, "x").unwrap().thumbprint()))
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let stored = Identity::load(&dir).unwrap().thumbprint();
            assert!(thumbprints.iter().all(|t| *t == stored), "{thumbprints:?}");
        }
    }

    #[test]
    fn an_unfinished_save_is_completed_by_the_next_reader() {
        let home = tempfile::tempdir().unwrap();
        let old = Identity::load_or_create(home.path(), "old").unwrap();
        let new = Identity::generate("new").unwrap();
        // A save that crashed after its commit point: the pending file and the new key are there,
        // the certificate is still the old one.
        std::fs::write(
            home.path().join(PENDING_FILE),
            format!("{}{}", new.certificate_pem(), new.private_key_pem()),
        )
        .unwrap();
        std::fs::write(home.path().join(KEY_FILE), new.private_key_pem()).unwrap();
        let loaded = Identity::load_or_create(home.path(), "other").unwrap();
        assert_eq!(loaded.thumbprint(), new.thumbprint());
        assert_ne!(loaded.thumbprint(), old.thumbprint());
        assert!(!home.path().join(PENDING_FILE).exists());
        let cert = std::fs::read_to_string(home.path().join(CERT_FILE)).unwrap();
        let key = std::fs::read_to_string(home.path().join(KEY_FILE)).unwrap();
        assert_eq!(
            Identity::from_pem(&cert, &key).unwrap().thumbprint(),
            new.thumbprint()
        );
    }
}
