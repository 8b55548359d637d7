//! Proxies end to end with real processes and real proxies (squid, tinyproxy): the server dialling a
//! listening tentacle through a named proxy, and the server's web request proxy used by `octo run-step`
//! (a plugin's HTTP request and a script's `curl`). Each is checked in the proxy's own access log.
//! Skipped (with a note) where squid or tinyproxy is not installed.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Tentacle, tentacle_cmd};
use octo_comms::identity::Thumbprint;
use octo_test_support::{HttpServer, Squid, Tinyproxy};

fn octo_bin() -> PathBuf {
    let path = Path::new(common::tentacle_bin()).with_file_name("octo");
    assert!(
        path.is_file(),
        "{} is missing: build it first",
        path.display()
    );
    path
}

fn octo(home: &Path, args: &[&str]) -> Output {
    Command::new(octo_bin())
        .arg("--home")
        .arg(home)
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn octo_ok(home: &Path, args: &[&str]) -> String {
    let out = octo(home, args);
    assert!(
        out.status.success(),
        "octo {args:?} failed:\n{}",
        text(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

struct Daemon {
    child: Child,
    polling: String,
}

impl Daemon {
    fn start(home: &Path) -> Self {
        let mut child = Command::new(octo_bin())
            .arg("--home")
            .arg(home)
            .args([
                "run",
                "--listen-address",
                "127.0.0.1",
                "--comms-listen-port",
                "0",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut polling = None;
        for line in &mut lines {
            let line = line.unwrap();
            if let Some(a) = line.strip_prefix("polling-listener ") {
                polling = Some(a.to_string());
            } else if line == "ready" {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Self {
            child,
            polling: polling.expect("the daemon did not start"),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_healthy(home: &Path, name: &str) -> String {
    let started = Instant::now();
    loop {
        let out = octo(home, &["targets", "health", name]);
        if out.status.success() {
            return String::from_utf8(out.stdout).unwrap();
        }
        assert!(
            started.elapsed() < common::LIVENESS,
            "{name} never became healthy: {}",
            text(&out)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A listening tentacle reached through a named proxy: health and a remote step, seen in the proxy's
/// log; a wrong password is reported as a 407 naming the proxy; `set-proxy --none` goes direct again.
async fn listening_target_through(
    proxy_port: u16,
    credentials: Option<(&str, &str)>,
    log: impl Fn(&str) -> String,
) {
    let octo_home = tempfile::tempdir().unwrap();
    let home = octo_home.path();
    let server = Thumbprint::parse(octo_ok(home, &["show-thumbprint"]).trim()).unwrap();
    // No vendor traffic from the daemon's jobs in these tests.
    octo_ok(home, &["configure", "--airGapped=true"]);
    let daemon = Daemon::start(home);
    let (tentacle, _thome) = Tentacle::listening(server).await;

    let port = proxy_port.to_string();
    let mut add = vec![
        "proxies",
        "add",
        "dmz",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
    ];
    if let Some((user, password)) = credentials {
        add.extend(["--username", user, "--password", password]);
    }
    let added = octo_ok(home, &add);
    assert!(!added.contains("s3cret-pw"), "{added}");
    let list = octo_ok(home, &["proxies", "list"]);
    assert!(
        list.contains("dmz") && !list.contains("s3cret-pw"),
        "{list}"
    );
    let shown = octo_ok(home, &["show-configuration"]);
    assert!(
        shown.contains("dmz=") && !shown.contains("s3cret-pw"),
        "{shown}"
    );
    let json = octo_ok(home, &["show-configuration", "--json"]);
    assert!(!json.contains("s3cret-pw"), "{json}");

    let tentacle_authority = tentacle.address().to_string();
    octo_ok(
        home,
        &[
            "targets",
            "add-listening",
            "web1",
            "--url",
            &format!("https://{tentacle_authority}"),
            "--thumbprint",
            &tentacle.thumbprint.to_string(),
            "--proxy",
            "dmz",
        ],
    );
    let listed = octo_ok(home, &["targets", "list"]);
    assert!(listed.contains("via dmz"), "{listed}");
    let health = wait_healthy(home, "web1");
    assert!(health.contains("healthy"), "{health}");

    let out = octo(
        home,
        &[
            "run-step",
            "run-script",
            "--param",
            "ScriptBody=echo through-the-proxy",
            "--target",
            "web1",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("through-the-proxy"), "{}", text(&out));

    if credentials.is_some() {
        // The same proxy with a wrong password: the CLI says which proxy and why.
        octo_ok(
            home,
            &[
                "proxies",
                "add",
                "wrong",
                "--host",
                "127.0.0.1",
                "--port",
                &port,
                "--username",
                "octo",
                "--password",
                "not-the-password",
            ],
        );
        octo_ok(home, &["targets", "set-proxy", "web1", "wrong"]);
        let out = octo(home, &["targets", "health", "web1"]);
        assert!(!out.status.success());
        let said = text(&out);
        assert!(
            said.contains("407") && said.contains(&format!("127.0.0.1:{port}")),
            "{said}"
        );
        assert!(!said.contains("not-the-password"), "{said}");
    }
    octo_ok(home, &["targets", "set-proxy", "web1", "--none"]);
    let health = wait_healthy(home, "web1");
    assert!(health.contains("healthy"), "{health}");
    assert!(
        octo_ok(home, &["targets", "list"])
            .contains(&format!("listening https://{tentacle_authority} "))
    );
    // Squid writes a tunnel's line when it closes: stop the server first.
    drop(daemon);
    let logged = log(&format!("CONNECT {tentacle_authority}"));
    assert!(
        logged.contains(&format!("CONNECT {tentacle_authority}")),
        "{logged}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listening_target_through_squid_with_basic_auth() {
    let Some(squid) = Squid::start(Some(("octo", "s3cret-pw"))) else {
        return;
    };
    listening_target_through(squid.port, Some(("octo", "s3cret-pw")), |n| {
        squid.access_log_containing(n)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listening_target_through_tinyproxy() {
    let Some(proxy) = Tinyproxy::start() else {
        return;
    };
    listening_target_through(proxy.port, None, |n| proxy.log_containing(n)).await;
}

/// `octo proxy`: a plugin's HTTP request and a script's curl go through the web request proxy.
#[test]
fn run_step_uses_the_web_request_proxy() {
    let Some(squid) = Squid::start(Some(("octo", "s3cret-pw"))) else {
        return;
    };
    let octo_home = tempfile::tempdir().unwrap();
    let home = octo_home.path();
    let port = squid.port.to_string();

    let out = octo(
        home,
        &[
            "proxy",
            "--proxyEnable=true",
            "--proxyType",
            "socks5",
            "--proxyHost",
            "p",
            "--proxyPort",
            "1080",
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("only HTTP proxies are supported (SOCKS is not)"),
        "{}",
        text(&out)
    );
    let out = octo(
        home,
        &[
            "proxy",
            "--proxy-enable=true",
            "--proxy-host",
            "socks5://p:1080",
        ],
    );
    assert!(
        text(&out).contains("only HTTP proxies are supported (SOCKS is not)"),
        "{}",
        text(&out)
    );

    let set = octo_ok(
        home,
        &[
            "proxy",
            "--proxyEnable=true",
            "--proxyHost",
            "127.0.0.1",
            "--proxyPort",
            &port,
            "--proxyUsername",
            "octo",
            "--proxyPassword",
            "s3cret-pw",
        ],
    );
    assert!(
        set.contains(&format!("http://octo:********@127.0.0.1:{port}")),
        "{set}"
    );
    let shown = octo_ok(home, &["show-configuration"]);
    assert!(
        shown.contains("********") && !shown.contains("s3cret-pw"),
        "{shown}"
    );
    let file = std::fs::read_to_string(home.join("octo.toml")).unwrap();
    assert!(file.contains("[webProxy]"), "{file}");

    // A plugin's request (the built-in http-health-check) through the proxy.
    let site = HttpServer::plain();
    let out = octo(
        home,
        &[
            "run-step",
            "http-health-check",
            "--param",
            &format!("url={}/plugin", site.base_url),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let logged = squid.access_log_containing("/plugin");
    assert!(
        logged.contains(&format!("{}/plugin", site.base_url)),
        "{logged}"
    );

    // A script's own curl gets HTTP_PROXY/HTTPS_PROXY; the password is masked in the step's log.
    let out = octo(
        home,
        &[
            "run-step",
            "run-script",
            "--param",
            &format!(
                "ScriptBody=curl -sS -o /dev/null -w 'curl %{{http_code}}\\n' {}/script\necho \"proxy=$HTTP_PROXY\"",
                site.base_url
            ),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("curl 200"), "{said}");
    assert!(!said.contains("s3cret-pw"), "{said}");
    let logged = squid.access_log_containing("/script");
    assert!(
        logged.contains(&format!("{}/script", site.base_url)),
        "{logged}"
    );

    // Disabled: direct again (the proxy sees nothing more).
    assert!(octo_ok(home, &["proxy", "--proxyEnable=false"]).contains("disabled"));
    let out = octo(
        home,
        &[
            "run-step",
            "http-health-check",
            "--param",
            &format!("url={}/direct", site.base_url),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(!squid.access_log_containing("/direct").contains("/direct"));

    // The system proxy: HTTPS_PROXY / HTTP_PROXY from the environment.
    octo_ok(home, &["proxy", "--useSystemProxy=true"]);
    let out = Command::new(octo_bin())
        .arg("--home")
        .arg(home)
        .args([
            "run-step",
            "http-health-check",
            "--param",
            &format!("url={}/system", site.base_url),
        ])
        .env(
            "HTTP_PROXY",
            format!("http://octo:s3cret-pw@127.0.0.1:{port}"),
        )
        .env_remove("http_proxy")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let logged = squid.access_log_containing("/system");
    assert!(logged.contains("/system"), "{logged}");
}

/// A polling tentacle that reaches the server only through its polling proxy, and whose steps' web
/// requests (a script's curl) go through its web request proxy; passwords masked in its configuration.
async fn polling_tentacle_through(
    proxy_port: u16,
    credentials: Option<(&str, &str)>,
    log: impl Fn(&str) -> String,
) {
    let octo_home = tempfile::tempdir().unwrap();
    let home = octo_home.path();
    let server = Thumbprint::parse(octo_ok(home, &["show-thumbprint"]).trim()).unwrap();
    // No vendor traffic from the daemon's jobs in these tests (every vendor switch off, and no
    // endpoint is set anyway), but not air-gapped: while air-gapped a step's script reaches nothing
    // (issue 11), and airGapped is a switch of its own (issue 13 item 7).
    octo_ok(
        home,
        &[
            "configure",
            "--airGapped=false",
            "--upgradeCheck=false",
            "--sendTelemetry=false",
            "--dynamicExtensionsEnabled=false",
            "--experiencesEnabled=false",
            "--stepTemplateUpdates=false",
            "--communityStepTemplates=false",
        ],
    );
    let daemon = Daemon::start(home);

    let phome = tempfile::tempdir().unwrap();
    let port = proxy_port.to_string();
    tentacle_cmd(phome.path(), &["configure", "--noListen"]);
    tentacle_cmd(
        phome.path(),
        &[
            "poll-server",
            "--server-comms-address",
            &format!("https://{}", daemon.polling),
            "--server-thumbprint",
            &server.to_string(),
        ],
    );
    let refused = Command::new(common::tentacle_bin())
        .arg("--home")
        .arg(phome.path())
        .args([
            "polling-proxy",
            "--proxyEnable=true",
            "--proxyHost",
            "socks5://127.0.0.1:1080",
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("only HTTP proxies are supported (SOCKS is not)"),
        "{}",
        text(&refused)
    );
    for command in ["polling-proxy", "proxy"] {
        let mut args = vec![
            command,
            "--proxyEnable=true",
            "--proxyHost",
            "127.0.0.1",
            "--proxy-port",
            &port,
        ];
        if let Some((user, password)) = credentials {
            args.extend(["--proxyUsername", user, "--proxyPassword", password]);
        }
        let said = tentacle_cmd(phome.path(), &args);
        assert!(!said.contains("s3cret-pw"), "{said}");
    }
    let shown = tentacle_cmd(phome.path(), &["show-configuration"]);
    assert!(
        shown.contains("[pollingProxy]") && shown.contains("[webProxy]"),
        "{shown}"
    );
    assert!(!shown.contains("s3cret-pw"), "{shown}");
    if credentials.is_some() {
        assert!(shown.contains("password = \"********\""), "{shown}");
    }

    let polling = Tentacle::start(phome.path()).await;
    octo_ok(
        home,
        &[
            "targets",
            "add-polling",
            "poll1",
            "--thumbprint",
            &polling.thumbprint.to_string(),
        ],
    );
    let health = wait_healthy(home, "poll1");
    assert!(health.contains("healthy"), "{health}");

    let site = HttpServer::plain();
    let out = octo(
        home,
        &[
            "run-step",
            "run-script",
            "--target",
            "poll1",
            "--param",
            &format!(
                "ScriptBody=curl -sS -o /dev/null -w 'curl %{{http_code}}\\n' {}/from-tentacle",
                site.base_url
            ),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("curl 200"), "{}", text(&out));
    let logged = log("/from-tentacle");
    assert!(
        logged.contains(&format!("{}/from-tentacle", site.base_url)),
        "{logged}"
    );

    // The polling tunnel is logged (by squid) when it closes.
    let authority = daemon.polling.clone();
    let mut polling = polling;
    polling.kill().await;
    drop(daemon);
    let logged = log(&format!("CONNECT {authority}"));
    assert!(logged.contains(&format!("CONNECT {authority}")), "{logged}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polling_tentacle_through_squid_with_basic_auth() {
    let Some(squid) = Squid::start(Some(("octo", "s3cret-pw"))) else {
        return;
    };
    polling_tentacle_through(squid.port, Some(("octo", "s3cret-pw")), |n| {
        squid.access_log_containing(n)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polling_tentacle_through_tinyproxy() {
    let Some(proxy) = Tinyproxy::start() else {
        return;
    };
    polling_tentacle_through(proxy.port, None, |n| proxy.log_containing(n)).await;
}
