//! The plugin manifest: a small JSON document in the component's `octo:manifest` custom section.
//!
//! Plugins do not use this module directly: the [`step!`](crate::step) and
//! [`manifest!`](macro@crate::manifest) macros fill a [`Manifest`] from their arguments (id and version
//! default to the crate's `CARGO_PKG_NAME` and `CARGO_PKG_VERSION`), check it at compile time and
//! encode it with [`Manifest::json_len`] and [`Manifest::to_json`] into a `#[used]` static placed in
//! the `octo:manifest` link section. `wasm-ld` keeps that section in the core module and
//! `wasm-component-ld` embeds the core module unchanged, so the finished component carries exactly
//! one `octo:manifest` section, inside its main core module.
//!
//! Everything here is `const`, so a mistake (an unknown kind or capability, an empty outbound entry)
//! is a compile error, not a plugin the host refuses at run time.

/// The name of the custom section that holds the manifest.
pub const SECTION_NAME: &str = "octo:manifest";

/// The plugin API version this SDK implements: the version of the `octo:plugin` WIT package.
pub const API_VERSION: &str = "0.1.0";

/// The plugin kinds, one per world of the `octo:plugin` package.
pub const KINDS: &[&str] = &[
    "step",
    "update-check",
    "telemetry",
    "experiences",
    "dynamic-extensions",
];

/// The capabilities a plugin may ask for.
pub const CAPABILITIES: &[&str] = &["process"];

/// A plugin manifest, as declared in source. Encoded to JSON at compile time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Manifest {
    /// Plugin id, e.g. `http-health-check`. Defaults to the crate name.
    pub id: &'static str,
    /// Plugin version (semver). Defaults to the crate version.
    pub version: &'static str,
    /// Which world the component implements: one of [`KINDS`].
    pub kind: &'static str,
    /// The plugin API version the component was built against. Defaults to [`API_VERSION`].
    pub api_version: &'static str,
    /// One line saying what the plugin does.
    pub description: &'static str,
    /// Destinations the plugin may reach through `wasi:http`: `https://host:port`, `http://host`,
    /// wildcards such as `https://*.example.com`, or `{{parameter}}` templates resolved from a step's
    /// arguments (`{{url}}`, `https://{{host}}:443`).
    pub outbound: &'static [&'static str],
    /// Capabilities the plugin needs, a subset of [`CAPABILITIES`].
    pub capabilities: &'static [&'static str],
}

impl Manifest {
    /// A manifest with the given id, version and kind, the current API version, and nothing else.
    pub const fn new(id: &'static str, version: &'static str, kind: &'static str) -> Self {
        Self {
            id,
            version,
            kind,
            api_version: API_VERSION,
            description: "",
            outbound: &[],
            capabilities: &[],
        }
    }

    /// Check the manifest; panics (a compile error when evaluated in a `const`) with a message
    /// naming the problem.
    pub const fn validate(&self) {
        if self.id.is_empty() {
            panic!("octo manifest: `id` must not be empty");
        }
        if self.version.is_empty() {
            panic!("octo manifest: `version` must not be empty");
        }
        if self.api_version.is_empty() {
            panic!("octo manifest: `api_version` must not be empty");
        }
        if !contains(KINDS, self.kind) {
            panic!(
                "octo manifest: `kind` must be one of step, update-check, telemetry, experiences, dynamic-extensions"
            );
        }
        let mut i = 0;
        while i < self.capabilities.len() {
            if !contains(CAPABILITIES, self.capabilities[i]) {
                panic!("octo manifest: unknown capability; the only capability is \"process\"");
            }
            i += 1;
        }
        let mut i = 0;
        while i < self.outbound.len() {
            let entry = self.outbound[i].as_bytes();
            if entry.is_empty() {
                panic!("octo manifest: an `outbound` entry is empty");
            }
            let mut j = 0;
            while j < entry.len() {
                if entry[j] <= b' ' {
                    panic!("octo manifest: an `outbound` entry contains whitespace");
                }
                j += 1;
            }
            i += 1;
        }
    }

    /// The length in bytes of [`Manifest::to_json`]'s output.
    pub const fn json_len(&self) -> usize {
        let mut w = Writer::<0>::measuring();
        w = self.write(w);
        w.len
    }

    /// The manifest as compact JSON (camelCase keys), e.g.
    /// `{"id":"x","version":"0.1.0","kind":"step","apiVersion":"0.1.0","description":"…","outbound":[],"capabilities":[]}`.
    ///
    /// `N` must be [`Manifest::json_len`].
    pub const fn to_json<const N: usize>(&self) -> [u8; N] {
        let mut w = Writer::<N>::new();
        w = self.write(w);
        if w.len != N {
            panic!("octo manifest: buffer length does not match json_len()");
        }
        w.buf
    }

    const fn write<const N: usize>(&self, mut w: Writer<N>) -> Writer<N> {
        w = w.raw("{\"id\":");
        w = w.string(self.id);
        w = w.raw(",\"version\":");
        w = w.string(self.version);
        w = w.raw(",\"kind\":");
        w = w.string(self.kind);
        w = w.raw(",\"apiVersion\":");
        w = w.string(self.api_version);
        w = w.raw(",\"description\":");
        w = w.string(self.description);
        w = w.raw(",\"outbound\":");
        w = w.list(self.outbound);
        w = w.raw(",\"capabilities\":");
        w = w.list(self.capabilities);
        w.raw("}")
    }
}

const fn contains(set: &[&str], item: &str) -> bool {
    let mut i = 0;
    while i < set.len() {
        if eq(set[i], item) {
            return true;
        }
        i += 1;
    }
    false
}

const fn eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// A const JSON writer: either measures (`N == 0`, `measure == true`) or fills `buf`.
struct Writer<const N: usize> {
    buf: [u8; N],
    len: usize,
    measure: bool,
}

impl<const N: usize> Writer<N> {
    const fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
            measure: false,
        }
    }

    const fn measuring() -> Self {
        Self {
            buf: [0; N],
            len: 0,
            measure: true,
        }
    }

    const fn byte(mut self, b: u8) -> Self {
        if !self.measure {
            self.buf[self.len] = b;
        }
        self.len += 1;
        self
    }

    const fn raw(mut self, s: &str) -> Self {
        let s = s.as_bytes();
        let mut i = 0;
        while i < s.len() {
            self = self.byte(s[i]);
            i += 1;
        }
        self
    }

    /// A JSON string literal. Non-ASCII UTF-8 is copied as is; quotes, backslashes and control
    /// characters are escaped.
    const fn string(mut self, s: &str) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        self = self.byte(b'"');
        let s = s.as_bytes();
        let mut i = 0;
        while i < s.len() {
            let b = s[i];
            self = match b {
                b'"' => self.byte(b'\\').byte(b'"'),
                b'\\' => self.byte(b'\\').byte(b'\\'),
                b'\n' => self.byte(b'\\').byte(b'n'),
                b'\r' => self.byte(b'\\').byte(b'r'),
                b'\t' => self.byte(b'\\').byte(b't'),
                0..=0x1f | 0x7f => self
                    .raw("\\u00")
                    .byte(HEX[(b >> 4) as usize])
                    .byte(HEX[(b & 0xf) as usize]),
                _ => self.byte(b),
            };
            i += 1;
        }
        self.byte(b'"')
    }

    const fn list(mut self, items: &[&str]) -> Self {
        self = self.byte(b'[');
        let mut i = 0;
        while i < items.len() {
            if i > 0 {
                self = self.byte(b',');
            }
            self = self.string(items[i]);
            i += 1;
        }
        self.byte(b']')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: Manifest = Manifest {
        description: "GET a URL until it returns the expected status",
        outbound: &["{{url}}"],
        ..Manifest::new("http-health-check", "0.1.0", "step")
    };
    const LEN: usize = M.json_len();
    static JSON: [u8; LEN] = M.to_json::<LEN>();

    #[test]
    fn encodes_the_documented_schema() {
        assert_eq!(
            std::str::from_utf8(&JSON).unwrap(),
            r#"{"id":"http-health-check","version":"0.1.0","kind":"step","apiVersion":"0.1.0","description":"GET a URL until it returns the expected status","outbound":["{{url}}"],"capabilities":[]}"#
        );
    }

    #[test]
    fn escapes_strings() {
        const E: Manifest = Manifest {
            description: "say \"hi\"\\ \n\u{1} ünï",
            capabilities: &["process"],
            ..Manifest::new("x", "1.0.0", "telemetry")
        };
        const N: usize = E.json_len();
        let json = E.to_json::<N>();
        assert!(
            std::str::from_utf8(&json)
                .unwrap()
                .contains(r#""description":"say \"hi\"\\ \n\u0001 ünï""#)
        );
        assert!(
            std::str::from_utf8(&json)
                .unwrap()
                .ends_with(r#""capabilities":["process"]}"#)
        );
    }

    #[test]
    #[should_panic(expected = "unknown capability")]
    fn refuses_unknown_capabilities() {
        Manifest {
            capabilities: &["network"],
            ..Manifest::new("x", "1.0.0", "step")
        }
        .validate();
    }

    #[test]
    #[should_panic(expected = "`kind` must be one of")]
    fn refuses_unknown_kinds() {
        Manifest::new("x", "1.0.0", "stepp").validate();
    }
}
