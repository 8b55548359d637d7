//! The web request proxy carries feed traffic: `octo plugins install` from a real registry-mock through
//! squid (with basic auth) and tinyproxy, seen in the proxy's log; a wrong password or a dead proxy is a
//! one-line error naming the proxy and the cause. Skipped where the proxy is not installed.

mod common;

use common::*;
use octo_test_support::{Squid, Tinyproxy, free_port};

fn feed_and_mock() -> (Feed, Mock) {
    let mut feed = Feed::new();
    feed.publish(&[("hello.wasm", built("hello_step.wasm"))], &[]);
    let mock = Mock::start(Some(&feed));
    (feed, mock)
}

fn proxied_home(mock: &Mock, feed: &Feed, port: u16, credentials: Option<(&str, &str)>) -> Home {
    let home = Home::new();
    home.configure(mock, &feed.public_key, true, false);
    let port = port.to_string();
    let mut args = vec![
        "proxy",
        "--proxyEnable=true",
        "--proxyHost",
        "127.0.0.1",
        "--proxyPort",
        &port,
    ];
    if let Some((user, password)) = credentials {
        args.extend(["--proxyUsername", user, "--proxyPassword", password]);
    }
    home.octo(&args).success();
    home
}

#[test]
fn a_feed_download_through_squid_with_basic_auth() {
    let Some(squid) = Squid::start(Some(("octo", "s3cret-pw"))) else {
        return;
    };
    let (feed, mock) = feed_and_mock();
    let home = proxied_home(&mock, &feed, squid.port, Some(("octo", "s3cret-pw")));
    let out = home.octo(&["plugins", "install", "hello-step"]);
    assert!(out.success().contains("installed hello-step"), "{out:?}");
    let authority = mock.url.trim_start_matches("http://").trim_end_matches('/');
    let logged = squid.access_log_containing(&format!("CONNECT {authority}"));
    assert!(logged.contains(&format!("CONNECT {authority}")), "{logged}");

    // A wrong password: 407, naming the proxy, never the password.
    home.octo(&["proxy", "--proxyPassword", "wrong-pw"])
        .success();
    let said = home.octo(&["plugins", "search"]).failure(&format!(
        "the proxy 127.0.0.1:{} rejected the credentials",
        squid.port
    ));
    assert!(said.contains("407") && !said.contains("wrong-pw"), "{said}");
}

#[test]
fn a_feed_download_through_tinyproxy_and_a_dead_proxy() {
    let Some(proxy) = Tinyproxy::start() else {
        return;
    };
    let (feed, mock) = feed_and_mock();
    let home = proxied_home(&mock, &feed, proxy.port, None);
    let out = home.octo(&["plugins", "install", "hello-step"]);
    assert!(out.success().contains("installed hello-step"), "{out:?}");
    let authority = mock.url.trim_start_matches("http://").trim_end_matches('/');
    let logged = proxy.log_containing(authority);
    assert!(logged.contains(authority), "{logged}");

    let dead = free_port();
    home.octo(&["proxy", "--proxyPort", &dead.to_string()])
        .success();
    home.octo(&["plugins", "search"])
        .failure(&format!("cannot reach the proxy 127.0.0.1:{dead}"));
}
