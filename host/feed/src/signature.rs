//! Ed25519 signatures over the exact bytes of the feed index.
//!
//! The signature is detached, in `index.json.sig` next to the index. Its format is text:
//!
//! ```text
//! <base64 of the 64-byte ed25519 signature>
//! key <base64 of the 32-byte public key that made it>
//! ```
//!
//! Only the first line is needed (a plain base64 signature, as in the `x-octo-signature` header, is
//! accepted). The `key` line is a hint, never trusted: verification always uses the pinned key, and the
//! hint only lets a failure say "signed with another key" ([`SignatureError::WrongKey`]) rather than
//! "bad signature" ([`SignatureError::BadSignature`]).
//!
//! Keys are base64 text: the public key is the 32-byte ed25519 key, the signing key its 32-byte seed.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use std::fmt;

/// Why a signature or a key is not acceptable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// There is no signature (no `index.json.sig`, or it is empty).
    #[error("the feed index is not signed (no index.json.sig); refusing an unsigned feed")]
    Missing,
    /// The signature file is not base64 of 64 bytes.
    #[error("the feed index signature is malformed: {0}")]
    Malformed(String),
    /// The signature does not verify with the pinned key: the index was changed after signing.
    #[error(
        "the feed index signature does not verify with the pinned key: the index was altered or the signature is corrupt"
    )]
    BadSignature,
    /// The index was signed by another key than the pinned one.
    #[error(
        "the feed index is signed with key {found}, but the pinned feed key is {pinned}; if the feed's key changed legitimately, update the pinned key in the settings"
    )]
    WrongKey {
        /// The pinned public key (base64).
        pinned: String,
        /// The key the signature file names (base64).
        found: String,
    },
    /// A key is not base64 of 32 bytes (or not a valid ed25519 point).
    #[error("invalid feed key: {0}")]
    InvalidKey(String),
    /// The operating system's random source failed.
    #[error("cannot generate a key: {0}")]
    Random(String),
}

/// The public key a host pins to trust a feed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FeedPublicKey(VerifyingKey);

/// The secret key a feed signs its index with.
#[derive(Clone)]
pub struct FeedSigningKey(SigningKey);

impl FeedPublicKey {
    /// Parses the base64 text form.
    pub fn from_base64(text: &str) -> Result<Self, SignatureError> {
        let bytes = B64
            .decode(text.trim())
            .map_err(|e| SignatureError::InvalidKey(format!("public key is not base64: {e}")))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            SignatureError::InvalidKey(format!("public key must be 32 bytes, found {}", b.len()))
        })?;
        VerifyingKey::from_bytes(&bytes)
            .map(FeedPublicKey)
            .map_err(|_| SignatureError::InvalidKey("not a valid ed25519 public key".into()))
    }

    /// The base64 text form.
    pub fn to_base64(&self) -> String {
        B64.encode(self.0.as_bytes())
    }
}

impl fmt::Display for FeedPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for FeedPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FeedPublicKey({})", self.to_base64())
    }
}

impl FeedSigningKey {
    /// Parses the base64 text form of the 32-byte seed.
    pub fn from_base64(text: &str) -> Result<Self, SignatureError> {
        let bytes = B64
            .decode(text.trim())
            .map_err(|e| SignatureError::InvalidKey(format!("signing key is not base64: {e}")))?;
        let seed: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            SignatureError::InvalidKey(format!("signing key must be 32 bytes, found {}", b.len()))
        })?;
        Ok(FeedSigningKey(SigningKey::from_bytes(&seed)))
    }

    /// The base64 text form of the seed. Secret: store it with mode 0600.
    pub fn to_base64(&self) -> String {
        B64.encode(self.0.to_bytes())
    }

    /// The matching public key.
    pub fn public_key(&self) -> FeedPublicKey {
        FeedPublicKey(self.0.verifying_key())
    }
}

impl fmt::Debug for FeedSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FeedSigningKey(public {})", self.public_key())
    }
}

/// A new random key pair, from the operating system's random source.
pub fn generate_keypair() -> Result<(FeedSigningKey, FeedPublicKey), SignatureError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| SignatureError::Random(e.to_string()))?;
    let key = FeedSigningKey(SigningKey::from_bytes(&seed));
    let public = key.public_key();
    Ok((key, public))
}

/// The contents of a detached signature file for `bytes`: the base64 signature and a `key` hint line.
pub fn sign(key: &FeedSigningKey, bytes: &[u8]) -> String {
    format!("{}\nkey {}\n", sign_base64(key, bytes), key.public_key())
}

/// Just the base64 signature of `bytes` (for a header such as `x-octo-signature`).
pub fn sign_base64(key: &FeedSigningKey, bytes: &[u8]) -> String {
    B64.encode(key.0.sign(bytes).to_bytes())
}

/// Verifies `signature` (the contents of a signature file or header; `None` when there is none) over
/// exactly `bytes`, with the pinned key.
pub fn verify(
    bytes: &[u8],
    signature: Option<&[u8]>,
    pinned: &FeedPublicKey,
) -> Result<(), SignatureError> {
    let text = match signature {
        None => return Err(SignatureError::Missing),
        Some(s) => std::str::from_utf8(s)
            .map_err(|_| SignatureError::Malformed("not UTF-8 text".into()))?,
    };
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let Some(first) = lines.next() else {
        return Err(SignatureError::Missing);
    };
    let raw = B64
        .decode(first)
        .map_err(|e| SignatureError::Malformed(format!("not base64: {e}")))?;
    let raw: [u8; 64] = raw.try_into().map_err(|b: Vec<u8>| {
        SignatureError::Malformed(format!(
            "an ed25519 signature is 64 bytes, found {}",
            b.len()
        ))
    })?;
    let mut signer_hint = None;
    for line in lines {
        match line.strip_prefix("key ") {
            Some(key) => signer_hint = Some(key.trim().to_string()),
            None => {
                return Err(SignatureError::Malformed(format!(
                    "unexpected line {line:?}"
                )));
            }
        }
    }
    let signature = ed25519_dalek::Signature::from_bytes(&raw);
    if pinned.0.verify_strict(bytes, &signature).is_ok() {
        return Ok(());
    }
    match signer_hint {
        Some(found) if found != pinned.to_base64() => Err(SignatureError::WrongKey {
            pinned: pinned.to_base64(),
            found,
        }),
        _ => Err(SignatureError::BadSignature),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &[u8] = br#"{"schema":1,"plugins":[]}"#;

    #[test]
    fn sign_then_verify() {
        let (key, public) = generate_keypair().unwrap();
        let sig = sign(&key, INDEX);
        assert!(sig.ends_with(&format!("key {public}\n")));
        verify(INDEX, Some(sig.as_bytes()), &public).unwrap();
        // A bare base64 signature (header form) works too.
        verify(INDEX, Some(sign_base64(&key, INDEX).as_bytes()), &public).unwrap();
    }

    #[test]
    fn keys_round_trip_through_base64() {
        let (key, public) = generate_keypair().unwrap();
        let key2 = FeedSigningKey::from_base64(&key.to_base64()).unwrap();
        assert_eq!(key2.public_key(), public);
        assert_eq!(
            FeedPublicKey::from_base64(&format!(" {public}\n")).unwrap(),
            public
        );
        assert_eq!(
            sign(&key, INDEX),
            sign(&key2, INDEX),
            "ed25519 is deterministic"
        );
        assert!(
            !format!("{key:?}").contains(&key.to_base64()),
            "Debug must not print the secret"
        );
    }

    #[test]
    fn missing_signature() {
        let (_, public) = generate_keypair().unwrap();
        assert_eq!(verify(INDEX, None, &public), Err(SignatureError::Missing));
        assert_eq!(
            verify(INDEX, Some(b" \n"), &public),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn malformed_signature() {
        let (key, public) = generate_keypair().unwrap();
        for bad in [
            &b"!!!not base64"[..],
            b"AAAA",
            b"\xff\xfe",
            &sign(&key, INDEX).replace("key ", "kee ").into_bytes(),
        ] {
            assert!(
                matches!(
                    verify(INDEX, Some(bad), &public),
                    Err(SignatureError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn bad_signature_when_the_index_changed() {
        let (key, public) = generate_keypair().unwrap();
        let sig = sign(&key, INDEX);
        let mut tampered = INDEX.to_vec();
        tampered[2] ^= 1;
        assert_eq!(
            verify(&tampered, Some(sig.as_bytes()), &public),
            Err(SignatureError::BadSignature)
        );
        // Trailing bytes count: the signature is over the exact bytes.
        let mut longer = INDEX.to_vec();
        longer.push(b'\n');
        assert_eq!(
            verify(&longer, Some(sig.as_bytes()), &public),
            Err(SignatureError::BadSignature)
        );
    }

    #[test]
    fn wrong_key_is_reported_as_such() {
        let (key, _) = generate_keypair().unwrap();
        let (_, pinned) = generate_keypair().unwrap();
        let err = verify(INDEX, Some(sign(&key, INDEX).as_bytes()), &pinned).unwrap_err();
        assert_eq!(
            err,
            SignatureError::WrongKey {
                pinned: pinned.to_base64(),
                found: key.public_key().to_base64()
            }
        );
        assert!(err.to_string().contains("update the pinned key"));
        // Without the hint line it can only say "bad signature".
        assert_eq!(
            verify(INDEX, Some(sign_base64(&key, INDEX).as_bytes()), &pinned),
            Err(SignatureError::BadSignature)
        );
        // A lying hint that names the pinned key does not help a forger.
        let forged = format!("{}\nkey {pinned}\n", sign_base64(&key, INDEX));
        assert_eq!(
            verify(INDEX, Some(forged.as_bytes()), &pinned),
            Err(SignatureError::BadSignature)
        );
    }

    #[test]
    fn invalid_keys() {
        assert!(matches!(
            FeedPublicKey::from_base64("nope!"),
            Err(SignatureError::InvalidKey(_))
        ));
        assert!(
            matches!(FeedPublicKey::from_base64("AAAA"), Err(SignatureError::InvalidKey(m)) if m.contains("32 bytes"))
        );
        assert!(matches!(
            FeedSigningKey::from_base64("AAAA"),
            Err(SignatureError::InvalidKey(_))
        ));
    }
}
