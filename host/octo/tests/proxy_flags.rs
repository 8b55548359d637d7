//! `octo proxy` follows the rules of `tentacle proxy`/`polling-proxy` (one module, octo-web-proxy):
//! credentials never inside `--proxyHost`, a port is required, IPv6 hosts are shown in brackets, one
//! host check, SOCKS refused. A refused command changes nothing. No peers needed.

mod common;

use common::*;

#[test]
fn octo_proxy_follows_the_shared_rules() {
    let home = Home::new();
    let said = home
        .octo(&[
            "proxy",
            "--proxyEnable=true",
            "--proxyHost",
            "http://u:s3cret-pw@proxy:3128",
        ])
        .failure(
            "give the user name and password with --proxyUsername/--proxyPassword, not in the host",
        );
    assert!(!said.contains("s3cret-pw"), "{said}");
    home.octo(&["proxy", "--proxyEnable=true", "--proxyHost", "http://proxy"])
        .failure("--proxyEnable=true needs --proxyPort");
    home.octo(&["proxy", "--proxyEnable=true", "--proxyHost", "proxy"])
        .failure("--proxyEnable=true needs --proxyPort");
    home.octo(&[
        "proxy",
        "--proxyEnable=true",
        "--proxyHost",
        "proxy/x",
        "--proxyPort",
        "3128",
    ])
    .failure("--proxyHost: ");
    home.octo(&[
        "proxy",
        "--proxyEnable=true",
        "--proxyHost",
        "socks5://proxy:1080",
    ])
    .failure("only HTTP proxies are supported (SOCKS is not)");
    let shown = home.octo(&["proxy"]);
    assert!(
        shown.success().contains("disabled (direct connections)"),
        "a refused command stores nothing: {shown:?}"
    );

    for host in ["::1", "[::1]", "http://[::1]:3128"] {
        let out = home.octo(&[
            "proxy",
            "--proxyEnable=true",
            "--proxyHost",
            host,
            "--proxyPort",
            "3128",
        ]);
        assert!(
            out.success().contains("http://[::1]:3128"),
            "{host}: {out:?}"
        );
    }
    let out = home.octo(&[
        "proxy",
        "--proxyHost",
        "http://proxy.corp:8080",
        "--proxyUsername",
        "u",
        "--proxyPassword",
        "pw",
    ]);
    assert!(
        out.success().contains("http://u:********@proxy.corp:8080"),
        "{out:?}"
    );
}
