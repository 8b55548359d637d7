//! Feed credentials: a user name and a password whose `Debug` never shows the password.

use base64::Engine;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A user name and password for a feed (Basic auth; for OCI registries also what the token server gets).
/// `Debug` shows `********` for the password; it is only ever written to a header for the feed's origin.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password (or token).
    pub password: String,
}

impl Credentials {
    /// `Basic base64(user:password)`, the value of an `Authorization` header.
    pub fn basic_header_value(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"********")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_password() {
        let c = Credentials {
            username: "ann".into(),
            password: "hunter2".into(),
        };
        let shown = format!("{c:?}");
        assert!(
            shown.contains("ann") && !shown.contains("hunter2"),
            "{shown}"
        );
        assert_eq!(c.basic_header_value(), "Basic YW5uOmh1bnRlcjI=");
    }
}
