//! Masking sensitive values in everything the host writes.

/// What a masked value is replaced with.
pub const MASK: &str = "********";

/// A set of secret values to hide in log lines, messages and outputs.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    /// Longest first, so a secret that contains another is masked whole.
    secrets: Vec<String>,
}

impl Masker {
    /// An empty masker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a value to hide. Empty values are ignored; a multi-line value is also hidden line by line,
    /// because output is logged a line at a time.
    pub fn add(&mut self, secret: &str) {
        let mut push = |s: &str| {
            if !s.is_empty() && !self.secrets.iter().any(|x| x == s) {
                self.secrets.push(s.to_string());
            }
        };
        push(secret);
        if secret.contains('\n') {
            for line in secret.lines() {
                push(line.trim_end_matches('\r'));
            }
        }
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// `text` with every secret replaced by [`MASK`].
    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MASK);
            }
        }
        out
    }

    /// Whether there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_longest_first_and_every_occurrence() {
        let mut m = Masker::new();
        m.add("abc");
        m.add("abcdef");
        m.add("");
        assert_eq!(
            m.mask("x abcdef y abc z abc"),
            "x ******** y ******** z ********"
        );
        assert_eq!(m.mask("nothing here"), "nothing here");
    }

    #[test]
    fn multi_line_secrets_are_masked_per_line() {
        let mut m = Masker::new();
        m.add("line-one\r\nline-two");
        assert_eq!(m.mask("got line-two"), "got ********");
    }
}
