//! The SHA-256 thumbprint that names a peer, and its lenient parser.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// The SHA-256 digest of a DER-encoded certificate: how a peer is known and pinned.
///
/// Displayed as 64 upper-case hexadecimal digits. Parsed leniently from user input: any case,
/// optional `:` (or `-`, or space) separators between digits, surrounding whitespace.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Thumbprint([u8; 32]);

impl Thumbprint {
    /// Number of hexadecimal digits in a thumbprint.
    pub const HEX_DIGITS: usize = 64;

    /// The thumbprint of a DER-encoded certificate.
    pub fn of_der(certificate_der: &[u8]) -> Self {
        Self(Sha256::digest(certificate_der).into())
    }

    /// Wraps raw digest bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw digest bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses user input leniently (see the type's documentation).
    pub fn parse(input: &str) -> Result<Self, ThumbprintParseError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(ThumbprintParseError::Empty);
        }
        let mut nibbles = Vec::with_capacity(Self::HEX_DIGITS);
        for (position, ch) in input.chars().enumerate() {
            if matches!(ch, ':' | '-' | ' ') {
                continue;
            }
            match ch.to_digit(16) {
                Some(value) => nibbles.push(value as u8),
                None => {
                    return Err(ThumbprintParseError::InvalidCharacter {
                        character: ch,
                        position: position + 1,
                    });
                }
            }
        }
        if nibbles.len() != Self::HEX_DIGITS {
            return Err(ThumbprintParseError::WrongLength {
                digits: nibbles.len(),
            });
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(nibbles.chunks_exact(2)) {
            *byte = (pair[0] << 4) | pair[1];
        }
        Ok(Self(bytes))
    }

    /// A short form for logs: the first 8 hexadecimal digits.
    pub fn short(&self) -> String {
        self.to_string()[..8].to_owned()
    }
}

impl fmt::Display for Thumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Thumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Thumbprint({self})")
    }
}

impl FromStr for Thumbprint {
    type Err = ThumbprintParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for Thumbprint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Thumbprint {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Why a string is not a thumbprint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThumbprintParseError {
    /// Nothing but whitespace was given.
    #[error("the thumbprint is empty; expected 64 hexadecimal digits (the certificate's SHA-256)")]
    Empty,
    /// A character that is neither a hexadecimal digit nor a separator.
    #[error(
        "the thumbprint has an invalid character {character:?} at position {position}; expected hexadecimal digits 0-9 and A-F, optionally separated by ':'"
    )]
    InvalidCharacter {
        /// The offending character.
        character: char,
        /// Its 1-based position in the trimmed input.
        position: usize,
    },
    /// The wrong number of hexadecimal digits.
    #[error(
        "the thumbprint has {digits} hexadecimal digits; expected 64 (the certificate's SHA-256){hint}",
        hint = if *digits == 40 { " - this looks like a SHA-1 thumbprint, which Octo does not use" } else { "" }
    )]
    WrongLength {
        /// How many digits were found (separators not counted).
        digits: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF";

    #[test]
    fn display_is_uppercase_hex_and_round_trips() {
        let t = Thumbprint::parse(HEX).unwrap();
        assert_eq!(t.to_string(), HEX);
        assert_eq!(t.short(), "01234567");
        assert_eq!(Thumbprint::parse(&t.to_string()).unwrap(), t);
    }

    #[test]
    fn parse_is_lenient() {
        let expected = Thumbprint::parse(HEX).unwrap();
        let lower = HEX.to_lowercase();
        let colons: Vec<String> = HEX
            .as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect();
        for input in [
            lower.clone(),
            format!("  {lower}\n"),
            colons.join(":"),
            colons.join(":").to_lowercase(),
            colons.join(" "),
        ] {
            assert_eq!(Thumbprint::parse(&input).unwrap(), expected, "{input:?}");
        }
    }

    #[test]
    fn parse_rejects_bad_input_with_clear_messages() {
        assert_eq!(Thumbprint::parse("   "), Err(ThumbprintParseError::Empty));
        let short = Thumbprint::parse(&HEX[..40]).unwrap_err();
        assert_eq!(short, ThumbprintParseError::WrongLength { digits: 40 });
        assert!(short.to_string().contains("SHA-1"), "{short}");
        let long = Thumbprint::parse(&format!("{HEX}00")).unwrap_err();
        assert_eq!(long, ThumbprintParseError::WrongLength { digits: 66 });
        assert!(long.to_string().contains("expected 64"));
        let bad = Thumbprint::parse(&format!("{}G{}", &HEX[..10], &HEX[11..])).unwrap_err();
        assert_eq!(
            bad,
            ThumbprintParseError::InvalidCharacter {
                character: 'G',
                position: 11
            }
        );
        assert!(bad.to_string().contains("'G'"));
    }

    #[test]
    fn of_der_is_sha256() {
        // SHA-256 of the empty string.
        assert_eq!(
            Thumbprint::of_der(b"").to_string(),
            "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
        );
    }

    #[test]
    fn serde_uses_the_string_form() {
        let t = Thumbprint::parse(HEX).unwrap();
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, format!("\"{HEX}\""));
        let back: Thumbprint = serde_json::from_str(&json.to_lowercase()).unwrap();
        assert_eq!(back, t);
        assert!(serde_json::from_str::<Thumbprint>("\"abc\"").is_err());
    }
}
