//! deploy-package on tentacles, end to end: the `octo` daemon uploads a package only to the
//! tentacles that lack it (by digest), the tentacle caches it and deploys it in the sandbox; bad
//! packages fail with one line and leave no deployment directory. Real processes on loopback.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use common::octo::{self as cli, Daemon, octo};
use common::{Tentacle, tentacle_cmd};
use octo_comms::identity::Thumbprint;
use octo_protocol::{ErrorCode, PackageFileRef, Sha256Digest, StepPackage, Stored, paths};
use octo_test_support::archive::{self, Entry};

/// Stdout and stderr together, for messages that may be on either.
fn text(out: &Output) -> String {
    let (stdout, stderr) = cli::text(out);
    stdout + &stderr
}

/// The daemon on loopback, any port.
fn start_daemon(home: &Path) -> Daemon {
    Daemon::start(home, 0, "30s")
}

/// A listening tentacle in the role `web`.
fn add_listening(home: &Path, name: &str, tentacle: &Tentacle) {
    cli::add_listening_in_roles(home, name, tentacle, tentacle.thumbprint, &["web"]);
}

fn deploy(home: &Path, file: &Path, extra: &[&str]) -> Output {
    let file = file.display().to_string();
    let mut args = vec!["run-step", "deploy-package", "--package-file", &file];
    args.extend_from_slice(extra);
    octo(home, &args)
}

fn dirs(path: PathBuf) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(path)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != ".deployments")
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_uploads_a_package_once_per_tentacle_and_it_is_deployed_there() {
    let octo_home = tempfile::tempdir().unwrap();
    let home = octo_home.path();
    let server = Thumbprint::parse(
        String::from_utf8(octo(home, &["show-thumbprint"]).stdout)
            .unwrap()
            .trim(),
    )
    .unwrap();
    let _daemon = start_daemon(home);
    let (web1, web1_home) = Tentacle::listening(server).await;
    let (web2, web2_home) = Tentacle::listening(server).await;
    add_listening(home, "web1", &web1);
    add_listening(home, "web2", &web2);

    let files = tempfile::tempdir().unwrap();
    let package = files.path().join("shop-1.4.0.tar.gz");
    std::fs::write(
        &package,
        archive::tar_gz(&[
            Entry::file("index.html", "<h1>#{Greeting}</h1>\n"),
            Entry::file("Deploy.sh", "echo \"deployed in $PWD\"\n"),
        ]),
    )
    .unwrap();
    let started = Instant::now();
    let out = deploy(
        home,
        &package,
        &[
            "--role",
            "web",
            "--variable",
            "Greeting=hello",
            "--param",
            "Octopus.Action.SubstituteInFiles.TargetFiles=*.html",
        ],
    );
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert_eq!(
        all.matches("sending package shop 1.4.0").count(),
        2,
        "{all}"
    );
    for h in [&web1_home, &web2_home] {
        let dir = h.path().join("Applications/shop/1.4.0");
        assert_eq!(
            std::fs::read_to_string(dir.join("index.html")).unwrap(),
            "<h1>hello</h1>\n"
        );
        assert!(
            all.contains(&format!("deployed in {}", dir.display())),
            "{all}"
        );
        let list = tentacle_cmd(h.path(), &["packages", "list"]);
        assert!(list.contains("shop 1.4.0 shop-1.4.0.tar.gz"), "{list}");
    }

    // Again: both tentacles have the digest, nothing is sent; fresh directories.
    let out = deploy(home, &package, &["--role", "web"]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(!all.contains("sending package"), "{all}");
    for h in [&web1_home, &web2_home] {
        assert_eq!(
            dirs(h.path().join("Applications/shop")),
            ["1.4.0", "1.4.0_1"]
        );
    }

    // A hostile package: one line naming the package and the entry; nothing deployed.
    let evil = files.path().join("evil-1.0.0.tar");
    std::fs::write(&evil, archive::tar(&[Entry::file("../../x", "x")])).unwrap();
    let out = deploy(home, &evil, &["--target", "web1"]);
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("package evil 1.0.0") && all.contains("\"../../x\""),
        "{all}"
    );
    assert_eq!(
        dirs(web1_home.path().join("Applications/evil")),
        Vec::<String>::new()
    );

    // Pruning to nothing empties the cache.
    let pruned = tentacle_cmd(
        web1_home.path(),
        &["packages", "prune", "--budget-mib", "0"],
    );
    assert!(pruned.contains("2 package files removed"), "{pruned}");
    eprintln!("took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package_upload_with_the_wrong_digest_is_refused_and_not_cached() {
    let server = common::Server::new();
    let (tentacle, home) = Tentacle::listening(server.thumbprint()).await;
    let client = server.connect(&tentacle).await;
    let package = StepPackage {
        feed: String::new(),
        id: "app".into(),
        version: "1.0.0".into(),
        files: vec![PackageFileRef {
            name: "app-1.0.0.zip".into(),
            sha256: Sha256Digest::of(b"the real bytes"),
            size: 14,
        }],
        direct: None,
    };
    let err = client
        .upload::<_, Stored>(
            &paths::package_put(&package.files[0], &package),
            std::io::Cursor::new(b"other bytes!!!".to_vec()),
        )
        .await
        .unwrap_err();
    let (status, body) = common::refusal(&err).expect("a refusal");
    assert_eq!((status, body.error), (422, ErrorCode::DigestMismatch));
    assert!(
        body.message.contains("package app 1.0.0"),
        "{}",
        body.message
    );
    let list = tentacle_cmd(home.path(), &["packages", "list"]);
    assert!(list.contains("No packages are cached"), "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_package_is_downloaded_once_by_the_server_and_deployed_here_and_on_a_tentacle() {
    use octo_test_support::feeds::{Reply, Routed};
    let bytes = archive::tar_gz(&[Entry::file("version.txt", "2.0.0\n")]);
    let digest = Sha256Digest::of(&bytes).to_hex();
    let served = bytes.clone();
    let feed = Routed::start(move |req| match req.path.as_str() {
        "/shop/shop-2.0.0.tar.gz" => Reply::ok(served.clone()),
        "/shop/shop-2.0.0.tar.gz.sha256" => Reply::ok(format!("{digest}  shop-2.0.0.tar.gz\n")),
        _ => Reply::status(404),
    });
    let octo_home = tempfile::tempdir().unwrap();
    let home = octo_home.path();
    let template = format!("{}/{{id}}/{{id}}-{{version}}.tar.gz", feed.base_url);
    let out = octo(
        home,
        &[
            "feeds", "add", "files", "--type", "http", "--url", &template,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));

    // Here: into the server's cache, deployed under the server's home.
    let out = octo(
        home,
        &[
            "run-step",
            "deploy-package",
            "--package",
            "files:shop@2.0.0",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(home.join("Applications/shop/2.0.0/version.txt")).unwrap(),
        "2.0.0\n"
    );
    assert_eq!(
        feed.count("/shop/shop-2.0.0.tar.gz"),
        2,
        "the package and its sidecar"
    );

    // On a tentacle: from the server's cache (no new download), uploaded once.
    let server = Thumbprint::parse(
        String::from_utf8(octo(home, &["show-thumbprint"]).stdout)
            .unwrap()
            .trim(),
    )
    .unwrap();
    let _daemon = start_daemon(home);
    let (web1, web1_home) = Tentacle::listening(server).await;
    add_listening(home, "web1", &web1);
    for sent in [true, false] {
        let out = octo(
            home,
            &[
                "run-step",
                "deploy-package",
                "--package",
                "files:shop@2.0.0",
                "--target",
                "web1",
            ],
        );
        let all = text(&out);
        assert!(out.status.success(), "{all}");
        assert_eq!(all.contains("sending package shop 2.0.0"), sent, "{all}");
    }
    assert_eq!(feed.count("/shop/shop-2.0.0.tar.gz"), 2, "no new download");
    assert_eq!(
        dirs(web1_home.path().join("Applications/shop")),
        ["2.0.0", "2.0.0_1"]
    );
    let list = tentacle_cmd(web1_home.path(), &["packages", "list"]);
    assert!(
        list.starts_with("files shop 2.0.0 shop-2.0.0.tar.gz"),
        "{list}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_target_has_the_tentacle_download_verify_and_record_it() {
    use octo_test_support::feeds::{Reply, Routed};
    use std::io::Write;
    let good = archive::tar_gz(&[Entry::file("version.txt", "3.0.0\n")]);
    let good_digest = Sha256Digest::of(&good).to_hex();
    let other_digest = Sha256Digest::of(b"something else").to_hex();
    let feed = Routed::start(move |req| match req.path.as_str() {
        "/shop/shop-3.0.0.tar.gz" => Reply::ok(good.clone()),
        "/shop/shop-3.0.0.tar.gz.sha256" => Reply::ok(good_digest.clone()),
        // The sidecar promises other bytes than the feed then serves.
        "/shop/shop-3.0.1.tar.gz" => Reply::ok(b"not what was promised".to_vec()),
        "/shop/shop-3.0.1.tar.gz.sha256" => Reply::ok(other_digest.clone()),
        _ => Reply::status(404),
    });
    let octo_home = tempfile::tempdir().unwrap();
    let home = octo_home.path();
    let template = format!("{}/{{id}}/{{id}}-{{version}}.tar.gz", feed.base_url);
    let mut add = Command::new(cli::octo_bin())
        .arg("--home")
        .arg(home)
        .args([
            "feeds", "add", "files", "--type", "http", "--url", &template,
        ])
        .args(["--username", "ann", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin
        .take()
        .unwrap()
        .write_all(b"feed-secret-pw\n")
        .unwrap();
    let out = add.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));

    let server = Thumbprint::parse(
        String::from_utf8(octo(home, &["show-thumbprint"]).stdout)
            .unwrap()
            .trim(),
    )
    .unwrap();
    let _daemon = start_daemon(home);
    let (web1, web1_home) = Tentacle::listening(server).await;
    add_listening(home, "web1", &web1);
    let gets = |path: &str| {
        feed.requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path == path)
            .count()
    };

    let deploy = |spec: &str| {
        octo(
            home,
            &[
                "run-step",
                "deploy-package",
                "--package",
                spec,
                "--target",
                "web1",
                "--acquire",
                "target",
            ],
        )
    };
    let out = deploy("files:shop@3.0.0");
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("Downloading shop-3.0.0.tar.gz"), "{all}");
    assert!(
        !all.contains("sending package") && !all.contains("feed-secret-pw"),
        "{all}"
    );
    assert_eq!(
        gets("/shop/shop-3.0.0.tar.gz"),
        1,
        "only the tentacle downloads it"
    );
    let download = feed
        .requests()
        .into_iter()
        .find(|r| r.path == "/shop/shop-3.0.0.tar.gz")
        .unwrap();
    assert_eq!(
        download.header("authorization"),
        Some("Basic YW5uOmZlZWQtc2VjcmV0LXB3"),
        "the feed's credentials, handed over for the run"
    );
    assert_eq!(
        std::fs::read_to_string(web1_home.path().join("Applications/shop/3.0.0/version.txt"))
            .unwrap(),
        "3.0.0\n"
    );
    let outbound = tentacle_cmd(web1_home.path(), &["outbound"]);
    assert!(
        outbound.contains("shop 3.0.0 shop-3.0.0.tar.gz") && outbound.contains("via direct: ok"),
        "{outbound}"
    );
    // The credentials are nowhere in the tentacle's home.
    let grep = Command::new("grep")
        .args(["-r", "-l", "feed-secret-pw"])
        .arg(web1_home.path())
        .output()
        .unwrap();
    assert!(
        grep.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&grep.stdout)
    );

    // Cached now: the same version again downloads nothing.
    let out = deploy("files:shop@3.0.0");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(gets("/shop/shop-3.0.0.tar.gz"), 1);

    // A download whose digest is not the one resolved: one line, nothing cached or deployed.
    let out = deploy("files:shop@3.0.1");
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("shop") && all.contains("sha256"), "{all}");
    assert!(!web1_home.path().join("Applications/shop/3.0.1").exists());
    let list = tentacle_cmd(web1_home.path(), &["packages", "list"]);
    assert!(!list.contains("3.0.1"), "{list}");
    let outbound = tentacle_cmd(web1_home.path(), &["outbound"]);
    assert!(
        outbound.contains("shop 3.0.1 shop-3.0.1.tar.gz"),
        "{outbound}"
    );
    assert!(outbound.contains("failed"), "{outbound}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tentacle_killed_during_extraction_leaves_no_complete_looking_directory() {
    let octo_home = tempfile::tempdir().unwrap();
    let home = octo_home.path();
    let server = Thumbprint::parse(
        String::from_utf8(octo(home, &["show-thumbprint"]).stdout)
            .unwrap()
            .trim(),
    )
    .unwrap();
    let _daemon = start_daemon(home);
    let (mut web1, web1_home) = Tentacle::listening(server).await;
    add_listening(home, "web1", &web1);
    // Enough entries that extraction takes a while.
    let entries: Vec<Entry> = (0..30_000)
        .map(|i| Entry::file(&format!("d{}/f{i}", i % 50), "x"))
        .collect();
    let files = tempfile::tempdir().unwrap();
    let package = files.path().join("big-1.0.0.tar.gz");
    std::fs::write(&package, archive::tar_gz(&entries)).unwrap();
    let mut cli = Command::new(cli::octo_bin())
        .arg("--home")
        .arg(home)
        .args(["run-step", "deploy-package", "--package-file"])
        .arg(&package)
        .args(["--target", "web1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let apps = web1_home.path().join("Applications/big");
    let started = Instant::now();
    loop {
        let partial = std::fs::read_dir(&apps)
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with(".partial-"))
            })
            .unwrap_or(false);
        if partial {
            break;
        }
        assert!(
            started.elapsed() < common::LIVENESS,
            "extraction never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    web1.kill().await;
    let _ = cli.kill();
    let _ = cli.wait();
    assert_eq!(
        dirs(apps.clone())
            .into_iter()
            .filter(|n| !n.starts_with('.'))
            .collect::<Vec<_>>(),
        Vec::<String>::new(),
        "no directory under a final name"
    );

    // The next deployment clears what the killed one left and takes the version's own name.
    let restarted = Tentacle::start(web1_home.path()).await;
    add_listening(home, "web1-restarted", &restarted);
    let out = deploy(home, &package, &["--target", "web1-restarted"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(dirs(apps), ["1.0.0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_target_goes_through_the_tentacles_web_request_proxy_tinyproxy() {
    let Some(proxy) = octo_test_support::Tinyproxy::start() else {
        return;
    };
    acquire_target_through(proxy.port, None, |n| proxy.log_containing(n)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_target_goes_through_the_tentacles_web_request_proxy_squid_with_basic_auth() {
    let credentials = ("octo", "s3cret-pw");
    let Some(squid) = octo_test_support::Squid::start(Some(credentials)) else {
        return;
    };
    acquire_target_through(squid.port, Some(credentials), |n| {
        squid.access_log_containing(n)
    })
    .await;
}

/// `--acquire target` with the tentacle's web request proxy at `proxy_port` (with `credentials`):
/// the tentacle downloads through it (checked in the proxy's log with `proxy_log`), says so in its
/// outbound report, and deploys.
async fn acquire_target_through(
    proxy_port: u16,
    credentials: Option<(&str, &str)>,
    proxy_log: impl Fn(&str) -> String,
) {
    use octo_test_support::feeds::{Reply, Routed};
    let bytes = archive::tar_gz(&[Entry::file("version.txt", "4.0.0\n")]);
    let digest = Sha256Digest::of(&bytes).to_hex();
    let feed = Routed::start(move |req| match req.path.as_str() {
        "/shop/shop-4.0.0.tar.gz" => Reply::ok(bytes.clone()),
        "/shop/shop-4.0.0.tar.gz.sha256" => Reply::ok(digest.clone()),
        _ => Reply::status(404),
    });
    let octo_home = tempfile::tempdir().unwrap();
    let home = octo_home.path();
    let template = format!("{}/{{id}}/{{id}}-{{version}}.tar.gz", feed.base_url);
    let out = octo(
        home,
        &[
            "feeds", "add", "files", "--type", "http", "--url", &template,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let server = Thumbprint::parse(
        String::from_utf8(octo(home, &["show-thumbprint"]).stdout)
            .unwrap()
            .trim(),
    )
    .unwrap();
    let _daemon = start_daemon(home);

    let thome = tempfile::tempdir().unwrap();
    Tentacle::configure_listening(thome.path(), octo_test_support::free_port(), server);
    let proxy_port = proxy_port.to_string();
    let mut proxy_args = vec![
        "proxy",
        "--proxyEnable=true",
        "--proxyHost",
        "127.0.0.1",
        "--proxyPort",
        &proxy_port,
    ];
    if let Some((user, password)) = credentials {
        proxy_args.extend(["--proxyUsername", user, "--proxyPassword", password]);
    }
    tentacle_cmd(thome.path(), &proxy_args);
    let web1 = Tentacle::start(thome.path()).await;
    add_listening(home, "web1", &web1);

    let out = octo(
        home,
        &[
            "run-step",
            "deploy-package",
            "--package",
            "files:shop@4.0.0",
            "--target",
            "web1",
            "--acquire",
            "target",
        ],
    );
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains(&format!("127.0.0.1:{proxy_port}")),
        "the proxy used: {all}"
    );
    let feed_host = feed.base_url.trim_start_matches("http://").to_owned();
    let log = proxy_log(&feed_host);
    assert!(log.contains(&feed_host), "{log}");
    let outbound = tentacle_cmd(thome.path(), &["outbound"]);
    assert!(
        outbound.contains("shop 4.0.0 shop-4.0.0.tar.gz")
            && outbound.contains(&format!("127.0.0.1:{proxy_port}")),
        "{outbound}"
    );
    assert!(
        thome
            .path()
            .join("Applications/shop/4.0.0/version.txt")
            .is_file()
    );
    if let Some((_, password)) = credentials {
        assert!(!all.contains(password) && !outbound.contains(password));
    }
}
