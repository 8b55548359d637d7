//! The NuGet v3 client against a third-party server: npm's `nuget-server` 1.11, in a network namespace
//! of its own (it listens on 0.0.0.0), reached through a loopback forwarder (octo-test-support).

use octo_feed::{ClientConfig, FeedClient};
use octo_packages::{Cause, FeedKind, FeedSpec, PackageClient};
use octo_test_support::feeds::NugetServer;
use std::io::Write;

fn nupkg(id: &str, version: &str) -> (Vec<u8>, String) {
    let nuspec = format!(
        r#"<?xml version="1.0" encoding="utf-8"?><package xmlns="http://schemas.microsoft.com/packaging/2013/05/nuspec.xsd"><metadata><id>{id}</id><version>{version}</version><authors>octo</authors><description>test</description></metadata></package>"#
    );
    // A stored zip (no compression) with the nuspec and one content file.
    let entries = [
        (format!("{id}.nuspec"), nuspec.clone().into_bytes()),
        (
            "content/app.txt".to_string(),
            format!("{id} {version}").into_bytes(),
        ),
    ];
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in &entries {
        let crc = crc32(data);
        let offset = out.len() as u32;
        let mut header = vec![0x50, 0x4b, 0x03, 0x04, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        header.extend_from_slice(&crc.to_le_bytes());
        header.extend_from_slice(&(data.len() as u32).to_le_bytes());
        header.extend_from_slice(&(data.len() as u32).to_le_bytes());
        header.extend_from_slice(&(name.len() as u16).to_le_bytes());
        header.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        let mut c = vec![0x50, 0x4b, 0x01, 0x02, 20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        c.extend_from_slice(&crc.to_le_bytes());
        c.extend_from_slice(&(data.len() as u32).to_le_bytes());
        c.extend_from_slice(&(data.len() as u32).to_le_bytes());
        c.extend_from_slice(&(name.len() as u16).to_le_bytes());
        c.extend_from_slice(&[0; 12]);
        c.extend_from_slice(&offset.to_le_bytes());
        c.extend_from_slice(name.as_bytes());
        central.extend_from_slice(&c);
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    let mut end = vec![0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0];
    end.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    end.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    end.extend_from_slice(&(central.len() as u32).to_le_bytes());
    end.extend_from_slice(&cd_offset.to_le_bytes());
    end.extend_from_slice(&0u16.to_le_bytes());
    out.write_all(&end).unwrap();
    (out, nuspec)
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[tokio::test]
async fn npm_nuget_server_versions_resolution_and_download() {
    let mut packages = Vec::new();
    for version in ["1.0.0", "1.2.0", "2.0.0-beta.1"] {
        let (bytes, nuspec) = nupkg("Acme.Web", version);
        packages.push(("Acme.Web", version, bytes, nuspec));
    }
    let server = NugetServer::start(&packages);
    let client = PackageClient::new(
        FeedSpec {
            name: "nuget-server".into(),
            kind: FeedKind::Nuget,
            url: server.index_url(),
            credentials: None,
        },
        FeedClient::new(ClientConfig::default()).unwrap(),
    )
    .unwrap();
    let report = client.test().await.unwrap();
    assert!(
        report
            .details
            .iter()
            .any(|d| d == "PackageBaseAddress/3.0.0"),
        "{report:?}"
    );
    assert_eq!(
        client.versions("acme.web").await.unwrap(),
        ["1.0.0", "1.2.0", "2.0.0-beta.1"]
    );
    let d = client.resolve("ACME.WEB", None).await.unwrap();
    assert_eq!(d.version, "1.2.0");
    let dir = tempfile::tempdir().unwrap();
    let done = client
        .download_file(&d, &d.files[0], dir.path(), None, &|_, _| {})
        .await
        .unwrap();
    assert_eq!(std::fs::read(&done.path).unwrap(), packages[1].2);
    let e = client
        .resolve("Acme.Web", Some("[3.0,)"))
        .await
        .unwrap_err();
    assert!(matches!(e.cause, Cause::NoMatchingVersion { .. }), "{e}");
}
