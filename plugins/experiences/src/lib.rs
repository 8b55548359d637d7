//! Vendor plugin for the `experiences` world: `GET {endpoint}?version=V`, answered with
//! `[{"id","title","body","url"}]`. Sends the Octo version only.

#[allow(missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "octo:plugin/experiences",
        generate_all,
    });
}

include!("../../vendor-common/http.rs");

octo_manifest!(
    r#"{"id":"experiences","version":"0.1.0","kind":"experiences","apiVersion":"0.1.0","description":"Fetches in-app messages","outbound":["{{endpoint}}"]}"#
);

use bindings::Message;

struct Experiences;

impl bindings::Guest for Experiences {
    fn fetch(endpoint: String, version: String) -> Result<Vec<Message>, String> {
        let url = vendor_http::with_query(&endpoint, &[("version", &version)]);
        let response = vendor_http::get(&url, &[("accept", "application/json")])?.success()?;
        let value: serde_json::Value = serde_json::from_slice(&response.body)
            .map_err(|e| format!("the experiences endpoint did not answer JSON: {e}"))?;
        let list = value
            .as_array()
            .ok_or("the experiences endpoint did not answer a list")?;
        let text = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
        Ok(list
            .iter()
            .map(|m| Message {
                id: text(m, "id"),
                title: text(m, "title"),
                body: text(m, "body"),
                url: m["url"].as_str().map(String::from),
            })
            .collect())
    }
}

bindings::export!(Experiences with_types_in bindings);
