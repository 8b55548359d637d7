//! `octo feeds` and `octo packages` end to end: the binary against a real docker-registry (htpasswd
//! Basic auth, an artifact pushed with oras) through a real squid (checked in its access log), and
//! against loopback fixtures for the plain-HTTP feed's faults and concurrent downloads. Passwords never
//! appear in any output; every failure is one line naming the feed, the package and the cause.

mod common;

use common::*;
use octo_test_support::Squid;
use octo_test_support::feeds::{Registry, Reply, Request, Routed, oras_push};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

fn sha(bytes: &[u8]) -> String {
    octo_fsutil::sha256_hex(bytes)
}

fn add_with_password_on_stdin(home: &Home, args: &[&str], password: &str) -> Run {
    let mut child = home
        .command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn an_oci_feed_through_squid_with_credentials_from_stdin() {
    let registry = Registry::start(Some(("ann", "s3cret")));
    let squid =
        Squid::start(None).expect("squid is not installed: install the Debian package squid");
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("app.zip"), b"zip bytes").unwrap();
    oras_push(
        &registry.host(),
        "team/app:1.0.0",
        Some(("ann", "s3cret")),
        work.path(),
        &["app.zip"],
    );

    let home = Home::new();
    home.write_settings("airGapped = false\n");
    let added = add_with_password_on_stdin(
        &home,
        &[
            "feeds",
            "add",
            "reg",
            "--type",
            "oci",
            "--url",
            &registry.url(),
            "--username",
            "ann",
            "--password-stdin",
        ],
        "s3cret",
    );
    assert!(added.success().contains("password: set"), "{added:?}");
    // Feeds are kept in the store (`octo.db`), private like the file was.
    assert!(!home.path().join("feeds.json").exists());
    let mode = std::fs::metadata(home.path().join("octo.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let list = home.octo(&["feeds", "list"]);
    assert!(
        list.success().contains("reg") && list.stdout.contains("set"),
        "{list:?}"
    );
    let json = home.octo(&["feeds", "list", "--json"]).json();
    assert_eq!(json[0]["password"], "set");
    assert_eq!(json[0]["username"], "ann");

    home.octo(&[
        "proxy",
        "--proxyEnable=true",
        "--proxyHost",
        "127.0.0.1",
        "--proxyPort",
        &squid.port.to_string(),
    ])
    .success();
    let tested = home.octo(&["feeds", "test", "reg"]);
    assert!(
        tested.success().contains("auth scheme: basic"),
        "{tested:?}"
    );

    let first = home.octo(&["packages", "download", "reg", "team/app@1.0.0", "--json"]);
    let acquired = first.json();
    assert_eq!(acquired["cached"], false);
    let file = &acquired["entry"]["download"]["files"][0];
    assert_eq!(file["name"], "app.zip");
    assert_eq!(file["sha256"], sha(b"zip bytes"));
    let path = acquired["paths"][0].as_str().unwrap();
    assert_eq!(std::fs::read(path).unwrap(), b"zip bytes");
    assert!(path.ends_with(&format!("packages/blobs/sha256/{}", sha(b"zip bytes"))));

    // Through squid (CONNECT, TLS would stay end to end), and recorded with the proxy.
    let needle = format!("CONNECT 127.0.0.1:{}", registry.port);
    assert!(squid.access_log_containing(&needle).contains(&needle));
    let records = home.audit_records();
    let package_records: Vec<_> = records
        .iter()
        .filter(|r| r["kind"] == "package-feeds")
        .collect();
    assert!(
        package_records.iter().any(|r| r["allowed"] == true
            && r["destination"] == registry.url()
            && r["proxy"] == squid.url()
            && r["reason"]
                .as_str()
                .unwrap()
                .contains("download team/app@1.0.0")),
        "{package_records:#?}"
    );

    let again = home.octo(&["packages", "download", "reg", "team/app@1.0.0"]);
    assert!(
        again.success().contains("was in the cache already"),
        "{again:?}"
    );
    assert!(
        home.octo(&["packages", "list"])
            .success()
            .contains("team/app")
    );
    assert!(
        home.octo(&["packages", "versions", "reg", "team/app"])
            .success()
            .contains("1.0.0")
    );

    // Air-gapped: the feed must be inside the internal networks.
    home.octo(&["configure", "--airGapped=true"]).success();
    let denied = home.octo(&["packages", "download", "reg", "team/app@1.0.0"]);
    denied.failure(
        "feed reg: no request was made: air-gapped, and 127.0.0.1 is not in the internal networks",
    );
    assert!(
        home.audit_records()
            .iter()
            .any(|r| r["kind"] == "package-feeds" && r["allowed"] == false)
    );
    home.octo(&["configure", "--internalNetworks=127.0.0.1"])
        .success();
    home.octo(&["packages", "download", "reg", "team/app@1.0.0"])
        .success();

    let pruned = home.octo(&["packages", "prune", "--all"]);
    assert!(
        pruned.success().contains("removed 1 package(s), 1 file(s)"),
        "{pruned:?}"
    );
    assert!(home.octo(&["packages", "list"]).success().contains("empty"));

    // The password was never shown, logged or recorded.
    let audit = home.audit();
    for text in [
        &added.stdout,
        &added.stderr,
        &list.stdout,
        &tested.stdout,
        &first.stdout,
        &audit,
    ] {
        assert!(!text.contains("s3cret"));
    }
}

#[test]
fn concurrent_downloads_fetch_once_and_faults_are_one_line() {
    let zip = b"the app, version 1.0".to_vec();
    let big = vec![1u8; 1000];
    let (z, b) = (zip.clone(), big.clone());
    let server = Routed::start(move |r: &Request| match r.path.as_str() {
        "/files/app-1.0.zip" => {
            // Slow enough for the two downloads to overlap.
            std::thread::sleep(Duration::from_millis(400));
            Reply::ok(z.clone())
        }
        "/files/big-1.0.zip" => Reply::ok(b.clone()),
        _ => Reply::status(404),
    });
    let home = Home::new();
    home.write_settings("airGapped = false\n");
    let template = format!("{}/files/{{id}}-{{version}}.zip", server.base_url);
    home.octo(&[
        "feeds", "add", "files", "--type", "http", "--url", &template,
    ])
    .success();

    let spawn = || {
        home.command(&["packages", "download", "files", "app@1.0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b2) = (spawn(), spawn());
    for child in [a, b2] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let fetched = server
        .requests()
        .iter()
        .filter(|r| r.path == "/files/app-1.0.zip")
        .count();
    assert_eq!(fetched, 1, "two concurrent acquisitions, one download");
    // An exact version in the cache needs no request at all.
    let before = server.requests().len();
    assert!(
        home.octo(&["packages", "download", "files", "app@1.0"])
            .success()
            .contains("in the cache")
    );
    assert_eq!(server.requests().len(), before);

    home.octo(&[
        "packages",
        "download",
        "files",
        "big@1.0",
        "--max-size",
        "100",
    ])
    .failure("feed files, package big@1.0: ");
    let line = home
        .octo(&[
            "packages",
            "download",
            "files",
            "big@1.0",
            "--max-size",
            "100",
        ])
        .stderr;
    assert!(line.contains("is larger than 100 bytes"), "{line}");
    assert_eq!(
        std::fs::read_dir(home.path().join("packages/tmp"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(home.path().join("packages/blobs/sha256"))
            .unwrap()
            .count(),
        1
    );

    home.octo(&["packages", "download", "files", "none@1.0"])
        .failure("feed files, package none@1.0: not found");
    home.octo(&["packages", "download", "files", "../x@1.0"])
        .failure("feed files, package ../x@1.0: invalid package id");
    home.octo(&["packages", "download", "files", "app"])
        .failure("an http feed has no version list");
    home.octo(&["packages", "download", "nosuch", "app@1.0"])
        .failure("no feed named \"nosuch\"");

    let port = octo_test_support::free_port();
    home.octo(&[
        "feeds",
        "add",
        "dead",
        "--type",
        "nuget",
        "--url",
        &format!("http://127.0.0.1:{port}/v3/index.json"),
    ])
    .success();
    home.octo(&["packages", "download", "dead", "App@1.0"])
        .failure("feed dead, package App@1.0: cannot connect to");
    home.octo(&["feeds", "test", "dead"])
        .failure("feed dead: cannot connect to");
    home.octo(&[
        "feeds",
        "add",
        "bad",
        "--type",
        "http",
        "--url",
        "http://127.0.0.1/{id}.zip",
    ])
    .failure("has no {version}");
    home.octo(&[
        "feeds",
        "add",
        "dead",
        "--type",
        "oci",
        "--url",
        "http://127.0.0.1:1",
    ])
    .failure("exists already");
    // `--password` without a value reads it from stdin when that is not a terminal.
    let url = format!("{}/v3/index.json", server.base_url);
    let added = add_with_password_on_stdin(
        &home,
        &[
            "feeds",
            "add",
            "private",
            "--type",
            "nuget",
            "--url",
            &url,
            "--username",
            "ci",
            "--password",
        ],
        "hunter2",
    );
    assert!(
        added.success().contains("username: ci password: set"),
        "{added:?}"
    );
    assert!(
        !home
            .octo(&["feeds", "list", "--json"])
            .stdout
            .contains("hunter2")
    );
    // Kept (in the store) for the feed's own requests.
    let mut stored = std::fs::read(home.path().join("octo.db")).unwrap();
    stored.extend(std::fs::read(home.path().join("octo.db-wal")).unwrap_or_default());
    assert!(String::from_utf8_lossy(&stored).contains("hunter2"));
    home.octo(&[
        "feeds",
        "add",
        "nopw",
        "--type",
        "nuget",
        "--url",
        &url,
        "--username",
        "ci",
    ])
    .failure("--username needs --password");
    home.octo(&["feeds", "remove", "dead"]).success();
    home.octo(&["feeds", "remove", "dead"])
        .failure("no feed named \"dead\"");
}

#[test]
fn a_plain_http_feed_through_tinyproxy_with_a_sidecar() {
    let proxy = octo_test_support::Tinyproxy::start()
        .expect("tinyproxy is not installed: install the Debian package tinyproxy");
    let tarball = b"a tarball".to_vec();
    let t = tarball.clone();
    let server = Routed::start(move |r: &Request| match r.path.as_str() {
        "/app-2.0.tar.gz" => Reply::ok(t.clone()),
        "/app-2.0.tar.gz.sha256" => Reply::ok(format!("{}  app-2.0.tar.gz\n", sha(&t))),
        _ => Reply::status(404),
    });
    let home = Home::new();
    home.write_settings("airGapped = false\n");
    let template = format!("{}/{{id}}-{{version}}.tar.gz", server.base_url);
    home.octo(&[
        "feeds", "add", "files", "--type", "http", "--url", &template,
    ])
    .success();
    home.octo(&[
        "proxy",
        "--proxyEnable=true",
        "--proxyHost",
        "127.0.0.1",
        "--proxyPort",
        &proxy.port.to_string(),
    ])
    .success();
    let got = home
        .octo(&["packages", "download", "files", "app@2.0", "--json"])
        .json();
    assert_eq!(
        got["entry"]["download"]["files"][0]["sha256"],
        sha(&tarball)
    );
    assert_eq!(
        got["entry"]["download"]["files"][0]["name"],
        "app-2.0.tar.gz"
    );
    let port = server.base_url.rsplit(':').next().unwrap().to_string();
    let needle = format!("CONNECT 127.0.0.1:{port}");
    assert!(proxy.log_containing(&needle).contains(&needle));
    assert!(
        home.audit_records()
            .iter()
            .any(|r| r["kind"] == "package-feeds" && r["proxy"] == proxy.url())
    );
}
