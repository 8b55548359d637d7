//! Vendor plugin for the `dynamic-extensions` world: `GET {endpoint}?version=V`; returns the body byte
//! for byte and the `x-octo-signature` header. It does not interpret either: the host verifies the
//! ed25519 signature against its pinned feed key before it uses the document.

#[allow(missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "octo:plugin/dynamic-extensions",
        generate_all,
    });
}

include!("../../vendor-common/http.rs");

octo_manifest!(
    r#"{"id":"dynamic-extensions","version":"0.1.0","kind":"dynamic-extensions","apiVersion":"0.1.0","description":"Fetches the signed dynamic extensions document","outbound":["{{endpoint}}"]}"#
);

use bindings::SignedDocument;

struct DynamicExtensions;

impl bindings::Guest for DynamicExtensions {
    fn fetch(endpoint: String, version: String) -> Result<SignedDocument, String> {
        let url = vendor_http::with_query(&endpoint, &[("version", &version)]);
        let response = vendor_http::get(&url, &[])?.success()?;
        let signature = response
            .header("x-octo-signature")
            .ok_or("the dynamic extensions endpoint sent no x-octo-signature header")?;
        Ok(SignedDocument {
            body: response.body,
            signature: signature.trim().to_string(),
        })
    }
}

bindings::export!(DynamicExtensions with_types_in bindings);
