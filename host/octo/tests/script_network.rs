//! `octo configure --scriptNetwork` and the air gap, seen from a script run by `octo run-step`:
//! air-gapped scripts are confined (neither curl nor /dev/tcp reaches a loopback listener, and the
//! attempts land in the audit file as denied); `--scriptNetwork=confined` confines them without the
//! air gap too, while HTTP the policy allows still goes out through the step's egress proxy.

mod common;

use common::*;
use octo_test_support::{counting_listener, pong_listener};
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A loopback HTTP listener answering 200; counts connections.
fn listener() -> (u16, Arc<AtomicUsize>) {
    counting_listener(
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        |mut stream| {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\nhello\n",
            );
        },
    )
}

fn script(port: u16) -> String {
    format!(
        "ScriptBody=curl -sS -m 10 http://127.0.0.1:{port}/x; echo \"curl=$?\"\n\
         if exec 3<>/dev/tcp/127.0.0.1/{port}; then echo tcp=open; else echo tcp=refused; fi"
    )
}

#[test]
fn air_gapped_scripts_are_confined_and_audited() {
    let home = Home::new();
    home.octo(&["configure", "--airGapped=true"]).success();
    let shown = home.octo(&["show-configuration"]);
    assert!(
        shown
            .success()
            .contains("audited (confined while air-gapped)"),
        "{shown:#?}"
    );
    let (port, hits) = listener();
    let run = home.octo(&["run-step", "run-script", "--param", &script(port)]);
    let out = run.success();
    assert_eq!(hits.load(Ordering::SeqCst), 0, "{run:#?}");
    assert!(out.contains("tcp=refused"), "{run:#?}");
    assert!(!out.contains("hello"), "{run:#?}");
    let audit = home.audit();
    for destination in [
        format!("http://127.0.0.1:{port}"),
        format!("tcp://127.0.0.1:{port}"),
    ] {
        assert!(
            audit.lines().any(|l| l.contains(&destination)
                && l.contains("\"allowed\":false")
                && l.contains("run-script")),
            "{destination} not audited as denied:\n{audit}"
        );
    }
}

#[test]
fn confined_without_the_air_gap_lets_allowed_http_through_the_proxy_only() {
    let home = Home::new();
    home.octo(&["configure", "--scriptNetwork=confined"])
        .success();
    let (port, hits) = listener();
    let run = home.octo(&["run-step", "run-script", "--param", &script(port)]);
    let out = run.success();
    // curl through the egress proxy (allowed for a built-in step while not air-gapped) ...
    assert!(out.contains("hello") && out.contains("curl=0"), "{run:#?}");
    assert_eq!(hits.load(Ordering::SeqCst), 1, "{run:#?}");
    // ... and nothing else: /dev/tcp ignores the proxy, so it reaches nothing.
    assert!(out.contains("tcp=refused"), "{run:#?}");
    let audit = home.audit();
    assert!(
        audit
            .lines()
            .any(|l| l.contains(&format!("http://127.0.0.1:{port}"))
                && l.contains("\"allowed\":true")),
        "{audit}"
    );

    let bad = home.octo(&["configure", "--scriptNetwork=open"]);
    bad.failure("--scriptNetwork: expected audited or confined");
}

/// Issue 11, deliverable 2: a confined script's only ways out are the egress proxy and the raw TCP
/// destinations an administrator granted (`tcp://ADDRESS:PORT`), which the host forwards after the
/// policy's check; an ungranted port reaches nothing. Both attempts are in the audit.
#[test]
fn confined_scripts_reach_granted_tcp_destinations_only() {
    let home = Home::new();
    home.octo(&["configure", "--scriptNetwork=confined"])
        .success();
    let (granted, granted_hits) = pong_listener("127.0.0.1:0").unwrap();
    let (other, other_hits) = pong_listener("127.0.0.1:0").unwrap();
    home.octo(&[
        "plugins",
        "grant",
        "run-script",
        &format!("tcp://127.0.0.1:{granted}"),
    ])
    .success();
    let body = format!(
        "ScriptBody=for p in {granted} {other}; do\n\
           if exec 3<>/dev/tcp/127.0.0.1/$p; then read -r r <&3; echo \"$p=$r\"; exec 3<&-;\n\
           else echo \"$p=refused\"; fi\n\
         done"
    );
    let run = home.octo(&["run-step", "run-script", "--param", &body]);
    let out = run.success();
    assert!(out.contains(&format!("{granted}=pong")), "{run:#?}");
    assert!(out.contains(&format!("{other}=refused")), "{run:#?}");
    assert_eq!(granted_hits.load(Ordering::SeqCst), 1, "{run:#?}");
    assert_eq!(other_hits.load(Ordering::SeqCst), 0, "{run:#?}");
    let audit = home.audit();
    let line = |port: u16, allowed: bool| {
        audit.lines().any(|l| {
            l.contains(&format!("\"tcp://127.0.0.1:{port}\""))
                && l.contains(&format!("\"allowed\":{allowed}"))
        })
    };
    assert!(line(granted, true), "{audit}");
    assert!(line(other, false), "{audit}");

    // `octo outbound` shows script traffic as its own row, not as the step plugin's.
    let report = home.octo(&["outbound", "--json"]).json();
    let row = |id: &str| {
        report["destinations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == id)
            .unwrap()
            .clone()
    };
    let scripts = row("step-scripts")["lastAttempts"].clone();
    for (port, allowed) in [(granted, true), (other, false)] {
        assert!(
            scripts
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["destination"] == format!("tcp://127.0.0.1:{port}")
                    && a["allowed"] == allowed),
            "{scripts}"
        );
    }
    assert_eq!(row("step-plugins")["lastAttempts"], serde_json::json!([]));
    let shown = home.octo(&["outbound"]);
    let shown = shown.success();
    assert!(
        shown.contains("Step scripts' requests [step-scripts]: ALLOWED"),
        "{shown}"
    );
}

/// Bash that connects to `host`:`port` by `/dev/tcp` and prints `LABEL=pong` or `LABEL=refused`.
fn dev_tcp(label: &str, host: &str, port: u16) -> String {
    format!(
        "if exec 3<>/dev/tcp/{host}/{port}; then read -r r <&3; echo \"{label}=$r\"; exec 3<&-;\n\
         else echo \"{label}=refused\"; fi\n"
    )
}

/// Issue 11, deliverable 2: a granted `tcp://NAME:PORT` reaches a confined script by its name. The
/// host resolves the name (after the policy allowed it) and forwards a loopback address of the
/// namespace, which the script's private `/etc/hosts` gives the name; the same name at a port not
/// granted reaches nothing. An IPv6 literal (`tcp://[::1]:PORT`) is forwarded as an IPv4 one is.
/// Every attempt is in the audit.
#[test]
fn confined_scripts_reach_granted_names() {
    let home = Home::new();
    home.octo(&["configure", "--scriptNetwork=confined"])
        .success();
    let (granted, granted_hits) = pong_listener("127.0.0.1:0").unwrap();
    let (other, other_hits) = pong_listener("127.0.0.1:0").unwrap();
    home.octo(&[
        "plugins",
        "grant",
        "run-script",
        &format!("tcp://localhost:{granted}"),
    ])
    .success();
    let v6 = pong_listener("[::1]:0").ok();
    if let Some((port, _)) = &v6 {
        home.octo(&[
            "plugins",
            "grant",
            "run-script",
            &format!("tcp://[::1]:{port}"),
        ])
        .success();
    }
    let mut body = String::from("ScriptBody=getent hosts localhost\n");
    body.push_str(&dev_tcp("granted", "localhost", granted));
    body.push_str(&dev_tcp("other", "localhost", other));
    if let Some((port, _)) = &v6 {
        body.push_str(&dev_tcp("v6", "::1", *port));
    }
    // The host's /etc/hosts is untouched.
    let before = std::fs::read_to_string("/etc/hosts").unwrap();
    let run = home.octo(&["run-step", "run-script", "--param", &body]);
    let out = run.success();
    assert_eq!(std::fs::read_to_string("/etc/hosts").unwrap(), before);
    assert!(out.contains("granted=pong"), "{run:#?}");
    assert!(out.contains("other=refused"), "{run:#?}");
    assert_eq!(granted_hits.load(Ordering::SeqCst), 1, "{run:#?}");
    assert_eq!(other_hits.load(Ordering::SeqCst), 0, "{run:#?}");
    if let Some((_, hits)) = &v6 {
        assert!(out.contains("v6=pong"), "{run:#?}");
        assert_eq!(hits.load(Ordering::SeqCst), 1, "{run:#?}");
    }
    let audit = home.audit();
    let line = |destination: &str, allowed: bool| {
        audit.lines().any(|l| {
            l.contains(&format!("\"{destination}\""))
                && l.contains(&format!("\"allowed\":{allowed}"))
        })
    };
    assert!(line(&format!("tcp://localhost:{granted}"), true), "{audit}");
    // The script resolved the name itself (to the forward's address), then connected there.
    assert!(
        audit
            .lines()
            .any(|l| l.contains(&format!(":{other}\"")) && l.contains("\"allowed\":false")),
        "{audit}"
    );
    if let Some((port, _)) = &v6 {
        assert!(line(&format!("tcp://[::1]:{port}"), true), "{audit}");
    }
}

/// While air-gapped, a granted name inside the internal networks reaches a confined script only
/// where its addresses lie inside the internal networks too: `localhost` alone is not enough for
/// the address it resolves to (denied, with the reason in the audit); with `127.0.0.0/8` it is.
#[test]
fn air_gapped_names_are_forwarded_only_to_internal_addresses() {
    let home = Home::new();
    home.octo(&[
        "configure",
        "--airGapped=true",
        "--internalNetworks=localhost",
    ])
    .success();
    let (port, hits) = pong_listener("127.0.0.1:0").unwrap();
    home.octo(&[
        "plugins",
        "grant",
        "run-script",
        &format!("tcp://localhost:{port}"),
    ])
    .success();
    let body = format!("ScriptBody={}", dev_tcp("named", "localhost", port));
    let run = home.octo(&["run-step", "run-script", "--param", &body]);
    let out = run.success();
    assert!(!out.contains("named=pong"), "{run:#?}");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "{run:#?}");
    let audit = home.audit();
    assert!(
        audit
            .lines()
            .any(|l| l.contains(&format!("\"tcp://localhost:{port}\""))
                && l.contains("\"allowed\":false")
                && l.contains("resolved to 127.0.0.1, which is not inside the internal networks")),
        "{audit}"
    );

    home.octo(&["configure", "--internalNetworks=localhost,127.0.0.0/8"])
        .success();
    let run = home.octo(&["run-step", "run-script", "--param", &body]);
    let out = run.success();
    assert!(out.contains("named=pong"), "{run:#?}");
    assert_eq!(hits.load(Ordering::SeqCst), 1, "{run:#?}");
}

/// Issue 11, deliverable 2: an unprivileged host confines through user namespaces. Run as `nobody`
/// (a copy of the binary in a world-readable directory), a confined script's `setsid` child dies with
/// the step and its direct connection is refused and audited. Skipped unless run as root with
/// `runuser` at hand.
#[test]
fn an_unprivileged_octo_confines_scripts_with_user_namespaces() {
    use std::os::unix::fs::PermissionsExt;
    let uid = std::process::Command::new("id").arg("-u").output();
    let root = uid.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let runuser = std::process::Command::new("runuser")
        .arg("--help")
        .output()
        .is_ok();
    if !root || !runuser {
        println!("note: not root or no runuser; skipping");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("octo");
    std::fs::copy(env!("CARGO_BIN_EXE_octo"), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    assert!(
        std::process::Command::new("chown")
            .args(["nobody"])
            .arg(&home)
            .status()
            .unwrap()
            .success()
    );
    let as_nobody = |args: &[&str]| {
        std::process::Command::new("runuser")
            .args(["-u", "nobody", "--"])
            .arg(&bin)
            .arg("--home")
            .arg(&home)
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    assert!(
        as_nobody(&["configure", "--scriptNetwork=confined"])
            .status
            .success()
    );
    let (port, hits) = listener();
    // A granted name works there too (a mount namespace inside the user namespace).
    let (named, named_hits) = pong_listener("127.0.0.1:0").unwrap();
    assert!(
        as_nobody(&[
            "plugins",
            "grant",
            "run-script",
            &format!("tcp://localhost:{named}")
        ])
        .status
        .success()
    );
    let out = as_nobody(&[
        "run-step",
        "run-script",
        "--param",
        &format!(
            "ScriptBody=(setsid sleep 313 &); echo \"uid=$(id -u) pid=$$\"\n\
             if exec 3<>/dev/tcp/127.0.0.1/{port}; then echo tcp=open; else echo tcp=refused; fi\n{}",
            dev_tcp("named", "localhost", named)
        ),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("pid=1"), "{stdout}");
    assert!(!stdout.contains("uid=0"), "{stdout}");
    assert!(stdout.contains("tcp=refused"), "{stdout}");
    assert!(stdout.contains("named=pong"), "{stdout}");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    assert_eq!(named_hits.load(Ordering::SeqCst), 1);
    let left = std::process::Command::new("pgrep")
        .args(["-u", "nobody", "-f", "sleep 313"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    assert!(left.trim().is_empty(), "left running: {left}");
    let audit = std::fs::read_to_string(home.join("logs/outbound.jsonl")).unwrap_or_default();
    assert!(
        audit
            .lines()
            .any(|l| l.contains(&format!("tcp://127.0.0.1:{port}"))
                && l.contains("\"allowed\":false")),
        "{audit}"
    );
}

/// Issue 11: a host without `/etc/hosts` cannot give a confined script its granted names (the
/// private file is mounted over the host's): the step fails with one line saying what is missing
/// and what to do. The host's file is hidden only inside a mount namespace of this test (a copy of
/// `/etc` without it, bind-mounted over `/etc`). Skipped unless run as root with `unshare` at hand.
#[test]
fn a_host_without_etc_hosts_refuses_granted_names_in_one_line() {
    let uid = std::process::Command::new("id").arg("-u").output();
    let root = uid.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let unshare = std::process::Command::new("unshare")
        .args(["--mount", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !root || !unshare {
        println!("note: not root or no mount namespaces (unshare --mount); skipping");
        return;
    }
    let home = Home::new();
    home.octo(&["configure", "--scriptNetwork=confined"])
        .success();
    let (port, hits) = pong_listener("127.0.0.1:0").unwrap();
    home.octo(&[
        "plugins",
        "grant",
        "run-script",
        &format!("tcp://localhost:{port}"),
    ])
    .success();
    let etc = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(
            "cp -a /etc \"$1/etc\" && rm -f \"$1/etc/hosts\" && mount --bind \"$1/etc\" /etc \
             && shift && exec \"$@\"",
        )
        .arg("sh")
        .arg(etc.path())
        .arg(env!("CARGO_BIN_EXE_octo"))
        .arg("--home")
        .arg(home.path())
        .args(["run-step", "run-script", "--param"])
        .arg(format!(
            "ScriptBody={}",
            dev_tcp("named", "localhost", port)
        ))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "{stdout}\n{stderr}");
    let all = format!("{stdout}{stderr}");
    let line = all
        .lines()
        .find(|l| l.contains("this host has no /etc/hosts"))
        .unwrap_or_else(|| panic!("no line about /etc/hosts: {all}"));
    for says in [
        "granted names (localhost)",
        "`touch /etc/hosts`",
        "tcp://ADDRESS:PORT",
    ] {
        assert!(line.contains(says), "{says:?} not in {line:?}");
    }
    // The host's own file was never touched.
    assert!(std::path::Path::new("/etc/hosts").exists());
}

/// A network namespace of this test with a veth pair into it; removed (with the pair) when dropped.
struct TestNetns {
    name: String,
}

impl TestNetns {
    /// `10.200.0.1/24` on the host's end, `10.200.0.2/24` on the namespace's; `None` (with a note)
    /// where `ip netns` cannot do that here.
    fn create() -> Option<TestNetns> {
        let id = std::process::id() % 100_000;
        let name = format!("octo-fwd-{id}");
        let (host, inner) = (format!("ofh{id}"), format!("ofn{id}"));
        let netns = TestNetns { name };
        let ns = netns.name.as_str();
        let steps: [&[&str]; 7] = [
            &["netns", "add", ns],
            &[
                "link", "add", &host, "type", "veth", "peer", "name", &inner, "netns", ns,
            ],
            &["addr", "add", "10.200.0.1/24", "dev", &host],
            &["link", "set", &host, "up"],
            &["-n", ns, "addr", "add", "10.200.0.2/24", "dev", &inner],
            &["-n", ns, "link", "set", &inner, "up"],
            &["-n", ns, "link", "set", "lo", "up"],
        ];
        for args in steps {
            let out = std::process::Command::new("ip").args(args).output();
            if !out.as_ref().is_ok_and(|o| o.status.success()) {
                println!("note: `ip {}` failed ({out:?}); skipping", args.join(" "));
                return None;
            }
        }
        Some(netns)
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair, the host's end and its address included.
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Issue 11: a granted address outside loopback (`tcp://10.200.0.1:PORT`) is put on the loopback of
/// the confined script's namespace, where the host listens and forwards each connection from its own
/// network to that address. Here the host's network is a namespace of this test, joined to the
/// machine by a veth pair whose far end carries 10.200.0.1 with two listeners (nothing leaves the
/// machine): the granted port answers the script, the other is refused and audited. Skipped unless
/// root with `ip netns` at hand.
#[test]
fn a_granted_address_outside_loopback_is_forwarded_from_the_hosts_network() {
    let uid = std::process::Command::new("id").arg("-u").output();
    if !uid.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0") {
        println!("note: not root; skipping (ip netns needs root)");
        return;
    }
    let Some(netns) = TestNetns::create() else {
        return;
    };
    let (granted, granted_hits) = pong_listener("10.200.0.1:0").unwrap();
    let (other, other_hits) = pong_listener("10.200.0.1:0").unwrap();
    let home = Home::new();
    home.octo(&["configure", "--scriptNetwork=confined"])
        .success();
    home.octo(&[
        "plugins",
        "grant",
        "run-script",
        &format!("tcp://10.200.0.1:{granted}"),
    ])
    .success();
    let body = format!(
        "ScriptBody={}{}",
        dev_tcp("granted", "10.200.0.1", granted),
        dev_tcp("other", "10.200.0.1", other)
    );
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &netns.name])
        .arg(env!("CARGO_BIN_EXE_octo"))
        .arg("--home")
        .arg(home.path())
        .args(["run-step", "run-script", "--param", &body])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("granted=pong"), "{stdout}\n{stderr}");
    assert!(stdout.contains("other=refused"), "{stdout}\n{stderr}");
    assert_eq!(granted_hits.load(Ordering::SeqCst), 1);
    assert_eq!(other_hits.load(Ordering::SeqCst), 0);
    let audit = home.audit();
    assert!(
        audit
            .lines()
            .any(|l| l.contains(&format!("\"tcp://10.200.0.1:{granted}\""))
                && l.contains("\"allowed\":true")),
        "{audit}"
    );
    assert!(
        audit
            .lines()
            .any(|l| l.contains(&format!("\"tcp://10.200.0.1:{other}\""))
                && l.contains("\"allowed\":false")),
        "{audit}"
    );
}
