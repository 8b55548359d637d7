//! Vendor plugin for the `telemetry` world: `POST {endpoint}` with the report as JSON:
//! `{"installationId":"...","metrics":{"name":N,...},"version":"..."}` (keys in this order; `octo
//! telemetry preview` prints the same bytes). Only anonymous counts: the host builds the report.

#[allow(missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "octo:plugin/telemetry",
        generate_all,
    });
}

include!("../../vendor-common/http.rs");

octo_manifest!(
    r#"{"id":"telemetry","version":"0.1.0","kind":"telemetry","apiVersion":"0.1.0","description":"Sends anonymous usage counts","outbound":["{{endpoint}}"]}"#
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

/// The JSON sent: keys sorted, metrics sorted by name (the host's preview builds the same).
fn payload(report: &Report) -> String {
    let mut metrics = serde_json::Map::new();
    let mut sorted: Vec<_> = report.metrics.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for m in sorted {
        metrics.insert(m.name.clone(), serde_json::Value::from(m.value));
    }
    let mut doc = serde_json::Map::new();
    doc.insert(
        "installationId".into(),
        serde_json::Value::from(report.installation_id.clone()),
    );
    doc.insert("metrics".into(), serde_json::Value::Object(metrics));
    doc.insert(
        "version".into(),
        serde_json::Value::from(report.version.clone()),
    );
    serde_json::Value::Object(doc).to_string()
}

bindings::export!(Telemetry with_types_in bindings);

#[cfg(test)]
mod tests {
    use super::*;
    use bindings::Metric;

    #[test]
    fn the_payload_is_sorted_json_of_counts() {
        let report = Report {
            installation_id: "id-1".into(),
            version: "0.1.0".into(),
            metrics: vec![
                Metric {
                    name: "targets".into(),
                    value: 2,
                },
                Metric {
                    name: "installedPlugins".into(),
                    value: 5,
                },
            ],
        };
        // The host's `octo telemetry preview` asserts the same bytes (host/octo/src/vendor.rs).
        assert_eq!(
            payload(&report),
            r#"{"installationId":"id-1","metrics":{"installedPlugins":5,"targets":2},"version":"0.1.0"}"#
        );
    }
}
