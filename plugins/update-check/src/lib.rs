//! Vendor plugin for the `update-check` world: `GET {endpoint}?version=V&installationId=ID`, answered
//! with `{"latestVersion":"X","url":"..."}`. It sends the running version and the installation id, and
//! nothing else; the host lets it reach only the origin of its configured endpoint.

#[allow(missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "octo:plugin/update-check",
        generate_all,
    });
}

include!("../../vendor-common/http.rs");

octo_manifest!(
    r#"{"id":"update-check","version":"0.1.0","kind":"update-check","apiVersion":"0.1.0","description":"Asks the update endpoint for the latest Octo version","outbound":["{{endpoint}}"]}"#
);

use bindings::{UpdateInfo, UpdateRequest};

struct UpdateCheck;

impl bindings::Guest for UpdateCheck {
    fn check(request: UpdateRequest) -> Result<UpdateInfo, String> {
        let url = vendor_http::with_query(
            &request.endpoint,
            &[
                ("version", &request.current_version),
                ("installationId", &request.installation_id),
            ],
        );
        let response = vendor_http::get(&url, &[("accept", "application/json")])?.success()?;
        parse(&response.body)
    }
}

fn parse(body: &[u8]) -> Result<UpdateInfo, String> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| format!("the update endpoint did not answer JSON: {e}"))?;
    let latest_version = value["latestVersion"]
        .as_str()
        .ok_or("the update endpoint's answer has no latestVersion")?
        .to_string();
    let url = value["url"].as_str().map(String::from);
    Ok(UpdateInfo {
        latest_version,
        url,
    })
}

bindings::export!(UpdateCheck with_types_in bindings);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_answer() {
        assert_eq!(
            vendor_http::with_query(
                "http://h/api/update",
                &[("version", "1.0.0+b"), ("installationId", "a b")]
            ),
            "http://h/api/update?version=1.0.0%2Bb&installationId=a%20b"
        );
        assert_eq!(
            vendor_http::with_query("http://h/u?x=1", &[("version", "1")]),
            "http://h/u?x=1&version=1"
        );
        let info = parse(br#"{"latestVersion":"2.0.0","url":"https://r"}"#).unwrap();
        assert_eq!(info.latest_version, "2.0.0");
        assert_eq!(info.url.as_deref(), Some("https://r"));
        assert!(parse(b"{}").unwrap_err().contains("latestVersion"));
        assert!(parse(b"nope").is_err());
    }
}
