//! Sealing bytes that leave the process through a shared medium (the PostgreSQL relay of calls to
//! polling tentacles): ChaCha20-Poly1305 with a key derived (HKDF-SHA256) from an [`Identity`]'s
//! private key and a purpose. Every node holding the same server identity derives the same key;
//! whoever reads the database without it sees only ciphertext. A sealed message is bound to a
//! context (e.g. the request id and direction): opened with another context it is refused, so a row
//! cannot be replayed as another row.

use ring::aead::{self, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

use crate::identity::Identity;

/// Why a sealed message could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// Too short, altered, sealed with another key, or for another context.
    #[error(
        "a sealed message could not be opened (altered, for another context, or sealed by a server with another identity)"
    )]
    Open,
    /// The system's random source failed.
    #[error("no random bytes for a nonce")]
    Random,
}

/// A key for one purpose.
pub struct SealKey {
    key: LessSafeKey,
    random: SystemRandom,
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(..)")
    }
}

/// Salt of the derivation (fixed: the secret is the private key).
const SALT: &[u8] = b"octo seal v1";

impl SealKey {
    /// The key `identity` derives for `purpose` (the same on every node holding that identity).
    pub fn derive(identity: &Identity, purpose: &str) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(identity.private_key_secret());
        let info = [purpose.as_bytes()];
        let okm = prk
            .expand(&info, &CHACHA20_POLY1305)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Self {
            key: LessSafeKey::new(UnboundKey::from(okm)),
            random: SystemRandom::new(),
        }
    }

    /// `plaintext` sealed for `context`: a random 96-bit nonce, then ciphertext and tag.
    pub fn seal(&self, context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; aead::NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| SealError::Random)?;
        let mut out = Vec::with_capacity(aead::NONCE_LEN + plaintext.len() + aead::MAX_TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context),
                &mut out[aead::NONCE_LEN..],
            )
            .map_err(|_| SealError::Random)?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// The plaintext of `sealed`, if it was sealed with this key for `context`.
    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < aead::NONCE_LEN + CHACHA20_POLY1305.tag_len() {
            return Err(SealError::Open);
        }
        let (nonce, body) = sealed.split_at(aead::NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Open)?;
        let mut body = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context), &mut body)
            .map_err(|_| SealError::Open)?;
        let len = plain.len();
        body.truncate(len);
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_bytes_open_only_with_the_same_identity_and_context() {
        let a = Identity::generate("a").unwrap();
        let b = Identity::generate("b").unwrap();
        let key = SealKey::derive(&a, "relay");
        let sealed = key.seal(b"r1", b"secret value").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        // Another node with the same identity opens it.
        let same = SealKey::derive(&a.clone(), "relay");
        assert_eq!(same.open(b"r1", &sealed).unwrap(), b"secret value");
        assert!(same.open(b"r2", &sealed).is_err(), "another context");
        assert!(SealKey::derive(&a, "other").open(b"r1", &sealed).is_err());
        assert!(SealKey::derive(&b, "relay").open(b"r1", &sealed).is_err());
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(key.open(b"r1", &altered).is_err());
        assert!(key.open(b"r1", &sealed[..10]).is_err());
        // A fresh nonce each time.
        assert_ne!(
            key.seal(b"r1", b"x").unwrap(),
            key.seal(b"r1", b"x").unwrap()
        );
    }
}
