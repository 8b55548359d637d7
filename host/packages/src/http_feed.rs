//! Plain HTTP(S) feeds, the parsing half: the URL template and the `.sha256` sidecar.
//!
//! The feed URL is a template with `{id}` and `{version}` (both required), e.g.
//! `https://files.example/{id}/{id}-{version}.tar.gz`. The id is checked ([`crate::PackageId`]) and the
//! version is the exact text asked for (checked as a [`crate::Version`]), so neither can add path
//! segments. A plain HTTP feed has no version list: only an exact version can be asked for. If
//! `URL.sha256` exists (`sha256sum` format: the hex digest first), the download must match it; if it
//! answers 404 the download is taken as it comes (its sha256 is recorded).

/// Checks that a template has `{id}` and `{version}`.
pub fn check_template(template: &str) -> Result<(), String> {
    for needed in ["{id}", "{version}"] {
        if !template.contains(needed) {
            return Err(format!(
                "the URL template {template:?} has no {needed}; an http feed's URL is a template such as https://host/{{id}}/{{id}}-{{version}}.zip"
            ));
        }
    }
    Ok(())
}

/// The template with `{id}` and `{version}` replaced (percent-encoded, although checked ids and
/// versions never need it).
pub fn expand(template: &str, id: &str, version: &str) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    const KEEP: &percent_encoding::AsciiSet = &NON_ALPHANUMERIC
        .remove(b'.')
        .remove(b'-')
        .remove(b'_')
        .remove(b'+');
    template
        .replace("{id}", &utf8_percent_encode(id, KEEP).to_string())
        .replace("{version}", &utf8_percent_encode(version, KEEP).to_string())
}

/// The URL of the sidecar of `url`.
pub fn sidecar_url(url: &str) -> String {
    match url.split_once('?') {
        Some((path, query)) => format!("{path}.sha256?{query}"),
        None => format!("{url}.sha256"),
    }
}

/// The digest in a sidecar: the first word, 64 hex digits (any case), returned lowercase.
pub fn parse_sidecar(bytes: &[u8]) -> Result<String, String> {
    let text =
        std::str::from_utf8(bytes).map_err(|_| "the .sha256 file is not text".to_string())?;
    let first = text.split_whitespace().next().unwrap_or("");
    let lower = first.to_ascii_lowercase();
    if octo_feed::is_sha256_hex(&lower) {
        Ok(lower)
    } else {
        Err(format!(
            "the .sha256 file does not start with a sha256 digest (found {:?})",
            first.chars().take(80).collect::<String>()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_and_sidecars() {
        assert!(check_template("https://h/{id}/{version}.zip").is_ok());
        assert!(check_template("https://h/{id}.zip").is_err());
        assert_eq!(
            expand("https://h/{id}/{id}-{version}.tgz", "app", "1.0.0+b"),
            "https://h/app/app-1.0.0+b.tgz"
        );
        assert_eq!(expand("https://h/{id}", "a b", "1"), "https://h/a%20b");
        assert_eq!(sidecar_url("https://h/a.zip"), "https://h/a.zip.sha256");
        assert_eq!(
            sidecar_url("https://h/a.zip?x=1"),
            "https://h/a.zip.sha256?x=1"
        );
        let d = "AB".repeat(32);
        assert_eq!(
            parse_sidecar(format!("{d}  a.zip\n").as_bytes()).unwrap(),
            d.to_lowercase()
        );
        assert!(parse_sidecar(b"nothing").is_err());
        assert!(parse_sidecar(b"").is_err());
    }
}
