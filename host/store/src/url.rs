//! A PostgreSQL URL whose password is never shown.

use crate::error::{Error, Result};
use octo_fsutil::mask_url_password as mask;
use std::fmt;

/// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?…]`. `Display` and `Debug` mask the password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Parses and checks a URL (the password is not part of any error).
    pub fn parse(url: &str) -> Result<Self> {
        let url = url.trim();
        let masked = mask(url);
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(Error::InvalidUrl(masked));
        }
        url.parse::<tokio_postgres::Config>()
            .map_err(|_| Error::InvalidUrl(masked))?;
        Ok(DatabaseUrl(url.to_string()))
    }

    /// The URL with its password, for connecting only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The connection settings.
    pub(crate) fn config(&self) -> Result<tokio_postgres::Config> {
        self.0.parse().map_err(|_| Error::InvalidUrl(mask(&self.0)))
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mask(&self.0))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", mask(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked() {
        let url = DatabaseUrl::parse("postgres://octo:p%40ss@db.internal:5433/octo").unwrap();
        assert_eq!(
            url.to_string(),
            "postgres://octo:********@db.internal:5433/octo"
        );
        assert!(!format!("{url:?}").contains("p%40ss"));
        assert_eq!(
            mask("postgresql://u@h/d?sslmode=disable&password=x&a=b"),
            "postgresql://u@h/d?sslmode=disable&password=********&a=b"
        );
        assert_eq!(mask("postgres://h/d"), "postgres://h/d");
    }

    #[test]
    fn other_schemes_are_refused_without_the_password() {
        let e = DatabaseUrl::parse("mysql://u:secret@h/d")
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid database URL"), "{e}");
        assert!(!e.contains("secret"), "{e}");
    }
}
