//! `tentacle proxy` and `tentacle polling-proxy` follow the rules of `octo proxy` (one module,
//! octo-web-proxy): credentials never inside `--proxyHost`, a port is required, IPv6 hosts are shown
//! in brackets, one host check, SOCKS refused. A refused command changes nothing. No peers needed.

mod common;

use std::path::Path;
use std::process::Command;

/// Runs `tentacle --home HOME ARGS...`; returns (success, stdout + stderr).
fn tentacle(home: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(common::tentacle_bin())
        .arg("--home")
        .arg(home)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn refused(home: &Path, args: &[&str], says: &str) -> String {
    let (ok, text) = tentacle(home, args);
    assert!(!ok, "tentacle {args:?} should be refused: {text}");
    assert!(text.contains(says), "tentacle {args:?}: {text}");
    text
}

#[test]
fn both_proxies_follow_the_same_rules() {
    for command in ["proxy", "polling-proxy"] {
        let home = tempfile::tempdir().unwrap();
        let home = home.path();

        let said = refused(
            home,
            &[
                command,
                "--proxyEnable=true",
                "--proxyHost",
                "http://u:s3cret-pw@proxy:3128",
            ],
            "give the user name and password with --proxyUsername/--proxyPassword, not in the host",
        );
        assert!(!said.contains("s3cret-pw"), "{said}");
        refused(
            home,
            &[command, "--proxyEnable=true", "--proxyHost", "http://proxy"],
            "--proxyEnable=true needs --proxyPort",
        );
        refused(
            home,
            &[command, "--proxyEnable=true", "--proxyHost", "proxy"],
            "--proxyEnable=true needs --proxyPort",
        );
        refused(
            home,
            &[
                command,
                "--proxyEnable=true",
                "--proxyHost",
                "proxy/x",
                "--proxyPort",
                "3128",
            ],
            "--proxyHost: ",
        );
        refused(
            home,
            &[
                command,
                "--proxyEnable=true",
                "--proxyHost",
                "socks5://proxy:1080",
            ],
            "only HTTP proxies are supported (SOCKS is not)",
        );
        let shown = common::tentacle_cmd(home, &["show-configuration"]);
        assert!(
            !shown.contains("Proxy]"),
            "a refused command stores nothing: {shown}"
        );

        for host in ["::1", "[::1]", "http://[::1]:3128"] {
            let (ok, said) = tentacle(
                home,
                &[
                    command,
                    "--proxyEnable=true",
                    "--proxyHost",
                    host,
                    "--proxyPort",
                    "3128",
                ],
            );
            assert!(ok, "{host}: {said}");
            assert!(said.contains("http://[::1]:3128"), "{host}: {said}");
        }
        let (ok, said) = tentacle(
            home,
            &[
                command,
                "--proxyHost",
                "http://proxy.corp:8080",
                "--proxyUsername",
                "u",
                "--proxyPassword",
                "pw",
            ],
        );
        assert!(ok, "{said}");
        assert!(said.contains("http://u:********@proxy.corp:8080"), "{said}");
    }
}
