//! Values that name things on a tentacle's disk, validated when parsed so that no code further
//! on has to think about what they may contain.

use std::fmt;
use std::str::FromStr;

/// Why a value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// A ticket is 1–64 characters of `A-Z a-z 0-9 . _ -`, not starting with `.` or `-`.
    #[error(
        "invalid ticket {0:?}: use 1-64 characters of letters, digits, '.', '_' and '-', not starting with '.' or '-'"
    )]
    Ticket(String),
    /// A digest is 64 hexadecimal digits.
    #[error("invalid sha256 digest {0:?}: expected 64 hexadecimal digits")]
    Digest(String),
}

/// The name of one step run, chosen by the server. Starting a step twice with the same ticket
/// is idempotent; the tentacle keeps the run's state and log under `work/<ticket>/`, so a ticket
/// is a safe single directory name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(String);

impl Ticket {
    /// Longest ticket.
    pub const MAX_LEN: usize = 64;

    /// Validates `input`.
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        let ok = !input.is_empty()
            && input.len() <= Self::MAX_LEN
            && !input.starts_with(['.', '-'])
            && input
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(Self(input.to_owned()))
        } else {
            Err(ValueError::Ticket(input.chars().take(80).collect()))
        }
    }

    /// The ticket text (also its directory name).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Ticket {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A SHA-256 digest as 64 lower-case hexadecimal digits (upper case is accepted and
/// normalised).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    /// Validates `input`.
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        let mut bytes = [0u8; 32];
        if input.len() != 64 || hex::decode_to_slice(input, &mut bytes).is_err() {
            return Err(ValueError::Digest(input.chars().take(80).collect()));
        }
        Ok(Self(bytes))
    }

    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        use sha2::Digest;
        Self(sha2::Sha256::digest(data).into())
    }

    /// From a finished hasher's output.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl FromStr for Sha256Digest {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

macro_rules! string_serde {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_serde!(Ticket);
string_serde!(Sha256Digest);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets() {
        for good in ["ServerTasks-1234", "a", "t.1_x-2", &"x".repeat(64)] {
            assert_eq!(Ticket::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "-x",
            "a/b",
            "a\\b",
            "a b",
            "é",
            "a\0",
            &"x".repeat(65),
        ] {
            assert!(Ticket::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn digests() {
        let d = Sha256Digest::of(b"abc");
        assert_eq!(
            d.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Sha256Digest::parse(&d.to_hex().to_uppercase()).unwrap(), d);
        assert!(Sha256Digest::parse("ba78").is_err());
        assert!(Sha256Digest::parse(&"g".repeat(64)).is_err());
    }
}
