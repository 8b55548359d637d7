//! Test fixture: plugin `telemetry` 0.2.0, a newer telemetry plugin than the embedded 0.1.0 whose JSON
//! has one more field, `"fixture":"telemetry-extra"`. `octo telemetry preview` must show it once this
//! plugin is installed from the signed feed: the preview comes from the plugin, not from the host.

#[allow(missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "octo:plugin/telemetry",
        generate_all,
    });
}

include!("../../../vendor-common/http.rs");

octo_manifest!(
    r#"{"id":"telemetry","version":"0.2.0","kind":"telemetry","apiVersion":"0.1.0","description":"Test fixture: telemetry with an extra field","outbound":["{{endpoint}}"]}"#
);

use bindings::Report;

struct Telemetry;

impl bindings::Guest for Telemetry {
    fn send(endpoint: String, report: Report) -> Result<(), String> {
        let body = payload(&report);
        vendor_http::post(
            &endpoint,
            &[("content-type", "application/json")],
            body.as_bytes(),
        )?
        .success()?;
        Ok(())
    }
}

fn payload(report: &Report) -> String {
    let mut metrics = serde_json::Map::new();
    for m in &report.metrics {
        metrics.insert(m.name.clone(), serde_json::Value::from(m.value));
    }
    serde_json::json!({
        "fixture": "telemetry-extra",
        "installationId": report.installation_id,
        "metrics": metrics,
        "version": report.version,
    })
    .to_string()
}

bindings::export!(Telemetry with_types_in bindings);
