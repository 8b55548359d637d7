//! Package feed peers: [`Routed`], a loopback HTTP/1.1 server whose answers a test decides per request
//! (NuGet v3 and plain HTTP feeds, a token server, faults: statuses, redirects, cut bodies, wrong
//! digests), and [`Registry`], Debian's `docker-registry` (the CNCF distribution registry 2.8) with
//! htpasswd Basic auth, with [`oras_push`] to push artifacts with the PyPI `oras` library.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A request as the handler sees it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, ...
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, names lowercase.
    pub headers: HashMap<String, String>,
}

impl Request {
    /// A header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// An answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// Announce the whole body's length but close after this many bytes.
    pub cut_at: Option<usize>,
}

impl Reply {
    /// 200 with `body`.
    pub fn ok(body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status: 200,
            headers: Vec::new(),
            body: body.into(),
            cut_at: None,
        }
    }

    /// `status` with an empty body.
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            ..Reply::ok(Vec::new())
        }
    }

    /// A redirect to `location`.
    pub fn redirect(location: &str) -> Reply {
        Reply::status(302).with_header("location", location)
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

/// A loopback server answering with a handler; every request is kept for the test to inspect.
pub struct Routed {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Routed {
    /// Starts it.
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Routed {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base_url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let handler = handler.clone();
                let seen = seen.clone();
                std::thread::spawn(move || serve(stream, &*handler, &seen));
            }
        });
        Routed { base_url, requests }
    }

    /// The requests so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// How many requests had a path starting with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.path.starts_with(prefix))
            .count()
    }
}

fn serve(stream: TcpStream, handler: &Handler, seen: &Mutex<Vec<Request>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut stream = stream;
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            return;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let request = Request {
        method,
        path,
        headers,
    };
    seen.lock().unwrap().push(request.clone());
    let reply = handler(&request);
    let mut head = format!(
        "HTTP/1.1 {} X\r\ncontent-length: {}\r\nconnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let body = match reply.cut_at {
        Some(n) => &reply.body[..n.min(reply.body.len())],
        None => &reply.body[..],
    };
    let _ = stream.write_all(body);
    let _ = stream.flush();
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// A docker-registry of our own, with htpasswd Basic auth (`user`/`password`) unless `auth` is `None`,
/// or token auth ([`Registry::start_with_token`]).
pub struct Registry {
    child: Child,
    dir: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

fn need(program: &str, package: &str) {
    assert!(
        crate::have(program),
        "{program} is not installed: install the Debian package {package} (scripts/setup.sh does)"
    );
}

impl Registry {
    /// Starts docker-registry on a free loopback port; with `basic`, htpasswd Basic auth for that user.
    /// Panics naming the Debian package when docker-registry or htpasswd is missing.
    pub fn start(basic: Option<(&str, &str)>) -> Registry {
        let auth = match basic {
            Some((user, password)) => {
                need("htpasswd", "apache2-utils");
                Some((user.to_string(), password.to_string()))
            }
            None => None,
        };
        Self::start_with(move |dir| match &auth {
            Some((user, password)) => {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, password])
                    .output()
                    .expect("htpasswd runs");
                assert!(out.status.success(), "htpasswd failed");
                std::fs::write(dir.join("htpasswd"), out.stdout).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: octo-test\n    path: {}\n",
                    dir.join("htpasswd").display()
                )
            }
            None => String::new(),
        })
    }

    /// Starts docker-registry with token auth: tokens from `realm` for `service`, signed by the key of
    /// the certificate `root_cert_pem`.
    pub fn start_with_token(realm: &str, service: &str, root_cert_pem: &str) -> Registry {
        let (realm, service, pem) = (
            realm.to_string(),
            service.to_string(),
            root_cert_pem.to_string(),
        );
        Self::start_with(move |dir| {
            std::fs::write(dir.join("root.pem"), &pem).unwrap();
            format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: octo-test\n    rootcertbundle: {}\n",
                dir.join("root.pem").display()
            )
        })
    }

    fn start_with(auth: impl FnOnce(&Path) -> String) -> Registry {
        need("docker-registry", "docker-registry");
        let dir = std::env::temp_dir().join(format!(
            "octo-registry-{}-{}",
            std::process::id(),
            crate::free_port()
        ));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let port = crate::free_port();
        let auth = auth(&dir);
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
            dir.join("data").display()
        );
        std::fs::write(dir.join("config.yml"), config).unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("docker-registry starts");
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "docker-registry exited ({status}): {}",
                    std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "docker-registry did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry { child, dir, port }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT` (what oras takes).
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The pusher: oras-py (`pip install oras`), pushing files as one artifact with their titles.
const ORAS_PUSH: &str = r#"
import sys, oras.client
host, target, user, password, backend = sys.argv[1:6]
files = sys.argv[6:]
client = oras.client.OrasClient(hostname=host, insecure=True, auth_backend=backend)
if user:
    client.login(username=user, password=password, hostname=host)
client.push(target=target, files=files, disable_path_validation=True)
"#;

/// Pushes `files` (in `dir`, by plain name) to `HOST/REPO:TAG` with oras-py: one layer per file, each
/// with its `org.opencontainers.image.title`. Panics naming the PyPI package when it is missing.
pub fn oras_push(
    host: &str,
    reference: &str,
    auth: Option<(&str, &str)>,
    dir: &Path,
    files: &[&str],
) {
    let backend = if auth.is_some() { "basic" } else { "token" };
    oras_push_with(host, reference, auth, backend, dir, files)
}

/// [`oras_push`] to a registry with token auth: oras asks the registry's realm for tokens.
pub fn oras_push_token(
    host: &str,
    reference: &str,
    auth: (&str, &str),
    dir: &Path,
    files: &[&str],
) {
    oras_push_with(host, reference, Some(auth), "token", dir, files)
}

fn oras_push_with(
    host: &str,
    reference: &str,
    auth: Option<(&str, &str)>,
    backend: &str,
    dir: &Path,
    files: &[&str],
) {
    let check = Command::new("python3")
        .args(["-c", "import oras.client"])
        .output()
        .expect("python3 runs");
    assert!(
        check.status.success(),
        "the PyPI package oras is not installed: `pip install oras` (scripts/setup.sh does)"
    );
    let (user, password) = auth.unwrap_or(("", ""));
    let out = Command::new("python3")
        .current_dir(dir)
        .args([
            "-c",
            ORAS_PUSH,
            host,
            &format!("{host}/{reference}"),
            user,
            password,
            backend,
        ])
        .args(files)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "oras push {reference} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Pushes a Docker v2 image (`application/vnd.docker.distribution.manifest.v2+json`) whose layers are
/// `files` (in `dir`, gzip tars or any bytes; no title annotations) to `HOST/REPO:TAG`, with Python's
/// `requests` (an oras dependency) over the registry API.
pub fn push_docker_image(
    host: &str,
    repo: &str,
    tag: &str,
    auth: Option<(&str, &str)>,
    dir: &Path,
    files: &[&str],
) {
    const PUSH: &str = r#"
import sys, json, hashlib, requests
host, repo, tag, user, pw = sys.argv[1:6]
files = sys.argv[6:]
auth = (user, pw) if user else None
base = f"http://{host}/v2/{repo}"
def put_blob(data):
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    r = requests.post(f"{base}/blobs/uploads/", auth=auth); r.raise_for_status()
    loc = r.headers["Location"]
    if loc.startswith("/"): loc = f"http://{host}{loc}"
    sep = "&" if "?" in loc else "?"
    r = requests.put(f"{loc}{sep}digest={d}", data=data, auth=auth, headers={"Content-Type": "application/octet-stream"}); r.raise_for_status()
    return d
config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
layers = []
for f in files:
    data = open(f, "rb").read()
    layers.append({"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(data), "digest": put_blob(data)})
m = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
     "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config), "digest": put_blob(config)},
     "layers": layers}
r = requests.put(f"{base}/manifests/{tag}", data=json.dumps(m), auth=auth, headers={"Content-Type": m["mediaType"]}); r.raise_for_status()
"#;
    let (user, password) = auth.unwrap_or(("", ""));
    let out = Command::new("python3")
        .current_dir(dir)
        .args(["-c", PUSH, host, repo, tag, user, password])
        .args(files)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "pushing the image {repo}:{tag} failed (PyPI requests/oras installed?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Reads all of `r` (for tests that stream).
pub fn read_all(mut r: impl Read) -> Vec<u8> {
    let mut v = Vec::new();
    r.read_to_end(&mut v).unwrap();
    v
}

/// Where scripts/setup.sh installs npm's `nuget-server` (1.11, with `typed-message` overridden to 1.17.0).
pub const NUGET_SERVER: &str = "/opt/octo-nuget-server/node_modules/.bin/nuget-server";

/// npm's `nuget-server`, a third-party NuGet v3 server. It listens on 0.0.0.0, so it runs in a network
/// namespace of its own (`unshare -n`, loopback up): nothing outside can reach it. The test reaches it
/// through a forwarder: a listener on the host's 127.0.0.1 whose connections are opened from a thread
/// that joined the server's namespace (`setns`). Packages are laid out in its storage directory before
/// it starts (`<Id>/<version>/<Id>.<version>.nupkg` and `<Id>.nuspec`, as its own publish writes them).
pub struct NugetServer {
    child: Child,
    dir: PathBuf,
    /// `http://127.0.0.1:PORT` on the host (the forwarder).
    pub base_url: String,
}

impl NugetServer {
    /// Starts it with `packages` (id, version, nupkg bytes, nuspec text). Panics naming the npm package
    /// when it is not installed.
    pub fn start(packages: &[(&str, &str, Vec<u8>, String)]) -> NugetServer {
        assert!(
            Path::new(NUGET_SERVER).exists(),
            "nuget-server is not installed: the npm package nuget-server 1.11 in /opt/octo-nuget-server (scripts/setup.sh installs it)"
        );
        need("unshare", "util-linux");
        need("ip", "iproute2");
        let dir = std::env::temp_dir().join(format!(
            "octo-nuget-{}-{}",
            std::process::id(),
            crate::free_port()
        ));
        for (id, version, nupkg, nuspec) in packages {
            let d = dir.join("packages").join(id).join(version);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(format!("{id}.{version}.nupkg")), nupkg).unwrap();
            std::fs::write(d.join(format!("{id}.nuspec")), nuspec).unwrap();
        }
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let base_url = format!("http://127.0.0.1:{port}");
        const INNER_PORT: u16 = 5000;
        let log = std::fs::File::create(dir.join("server.log")).unwrap();
        let script = format!(
            "ip link set lo up && exec {NUGET_SERVER} -p {INNER_PORT} -b {base_url} -d {} --auth-mode none -l warn",
            dir.join("packages").display()
        );
        let child = Command::new("unshare")
            .args(["-n", "sh", "-c", &script])
            .current_dir(&dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("unshare runs");
        let pid = child.id();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // This thread joins the server's network namespace; connections it opens are inside. Wait
            // until `unshare` has made it (until then the child is still in ours).
            let theirs = format!("/proc/{pid}/ns/net");
            let ours = std::fs::read_link("/proc/self/ns/net").ok();
            let start = Instant::now();
            while std::fs::read_link(&theirs).ok() == ours
                && start.elapsed() < Duration::from_secs(60)
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            let ns = std::fs::File::open(&theirs).unwrap();
            use std::os::fd::AsRawFd;
            let joined = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } == 0;
            let start = Instant::now();
            let mut up = false;
            while joined && start.elapsed() < Duration::from_secs(120) {
                if TcpStream::connect(("127.0.0.1", INNER_PORT)).is_ok() {
                    up = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = ready_tx.send(up);
            for outside in listener.incoming().flatten() {
                let Ok(inside) = TcpStream::connect(("127.0.0.1", INNER_PORT)) else {
                    continue;
                };
                let (mut a, mut b) = (outside.try_clone().unwrap(), inside.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut a, &mut b);
                    let _ = b.shutdown(std::net::Shutdown::Write);
                });
                let (mut c, mut d) = (inside, outside);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c, &mut d);
                    let _ = d.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        let server = NugetServer {
            child,
            dir,
            base_url,
        };
        let up = ready_rx
            .recv_timeout(Duration::from_secs(200))
            .unwrap_or(false);
        assert!(
            up,
            "nuget-server did not listen in its namespace: {}",
            std::fs::read_to_string(server.dir.join("server.log")).unwrap_or_default()
        );
        server
    }

    /// The service index URL.
    pub fn index_url(&self) -> String {
        format!("{}/v3/index.json", self.base_url)
    }
}

impl Drop for NugetServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
