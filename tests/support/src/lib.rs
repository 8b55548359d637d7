//! Real peers for tests, each started on a free loopback port and stopped on drop.
//!
//! - [`Squid`] and [`Tinyproxy`]: Debian's proxies run from a generated configuration in a temporary
//!   directory (no system service is touched), with their access logs readable by the test.
//! - [`HttpServer`] / [`HttpServer::tls`]: a tiny HTTP/1.1 server answering 200 to everything, plain or
//!   with a fresh self-signed certificate for `localhost`.
//! - [`pong_listener`] / [`counting_listener`]: a TCP listener that answers each connection (`pong`, or
//!   as told) and counts them.
//! - [`postgres::PgCluster`]: a private PostgreSQL cluster (initdb + pg_ctl) on a free loopback port.
//!
//! `scripts/setup.sh` installs postgresql, squid, tinyproxy and apache2-utils; a test that finds one missing skips
//! with a note rather than failing (so a developer without them can still run the rest).
#![deny(missing_docs)]

pub mod feeds;
pub mod postgres;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub mod archive;

/// A free TCP port on 127.0.0.1 (bound and released; good enough for a test's own child process).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether `program` is on PATH (or an absolute path that exists).
pub fn have(program: &str) -> bool {
    if Path::new(program).is_absolute() {
        return Path::new(program).exists();
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

fn wait_for_port(port: u16, child: &mut Child, what: &str, log: &Path) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited ({status}) before listening: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on {port} within 20 s");
}

/// A temporary directory the proxy's unprivileged user can write to (squid and tinyproxy drop root).
fn shared_dir(prefix: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("{prefix}-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

fn touch_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, b"").unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).unwrap();
}

/// A squid instance of our own.
pub struct Squid {
    child: Child,
    dir: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Squid {
    /// Starts squid allowing loopback clients; with `credentials`, only those (basic auth through
    /// `basic_ncsa_auth` and an htpasswd file). `None` when squid is not installed.
    pub fn start(credentials: Option<(&str, &str)>) -> Option<Squid> {
        if !have("squid") {
            eprintln!("skipping: squid is not installed (scripts/setup.sh installs it)");
            return None;
        }
        let dir = shared_dir("octo-squid");
        let port = free_port();
        for log in ["access.log", "cache.log"] {
            touch_shared(&dir.join(log));
        }
        let mut access = String::from("acl loopback_src src 127.0.0.1/32 ::1\n");
        match credentials {
            Some((user, password)) => {
                let htpasswd = dir.join("htpasswd");
                let out = Command::new("htpasswd")
                    .args(["-b", "-c", "-B"])
                    .arg(&htpasswd)
                    .args([user, password])
                    .output();
                assert!(
                    out.is_ok_and(|o| o.status.success()),
                    "htpasswd failed (apache2-utils installed?)"
                );
                let helper = [
                    "/usr/lib/squid/basic_ncsa_auth",
                    "/usr/lib64/squid/basic_ncsa_auth",
                ]
                .into_iter()
                .find(|p| Path::new(p).exists())
                .expect("basic_ncsa_auth not found");
                access.push_str(&format!(
                    "auth_param basic program {helper} {}\nauth_param basic realm octo-test\nacl authed proxy_auth REQUIRED\nhttp_access allow loopback_src authed\n",
                    htpasswd.display()
                ));
            }
            None => access.push_str("http_access allow loopback_src\n"),
        }
        let conf = format!(
            "http_port 127.0.0.1:{port}\npid_filename {d}/squid.pid\naccess_log stdio:{d}/access.log\ncache_log {d}/cache.log\n\
             cache deny all\ncoredump_dir {d}\n{access}http_access deny all\nshutdown_lifetime 0 seconds\n",
            d = dir.display()
        );
        std::fs::write(dir.join("squid.conf"), conf).unwrap();
        let mut child = Command::new("squid")
            .arg("-N")
            // Its own service name, which prefixes its shared-memory segments: squids of tests that
            // run at once, or one a killed run left behind, would otherwise collide on them.
            .args(["-n", &service_name(port)])
            .arg("-f")
            .arg(dir.join("squid.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("squid starts");
        wait_for_port(port, &mut child, "squid", &dir.join("cache.log"));
        Some(Squid { child, dir, port })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The access log so far (squid writes a line when a transaction ends; this waits briefly for one
    /// containing `needle`).
    pub fn access_log_containing(&self, needle: &str) -> String {
        read_log_until(&self.dir.join("access.log"), needle)
    }
}

impl Drop for Squid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
        // Killed, it leaves its shared-memory segments behind.
        let prefix = format!("{}-", service_name(self.port));
        if let Ok(entries) = std::fs::read_dir("/dev/shm") {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }
}

/// The squid service name of the instance on `port` (squid takes letters and digits only).
fn service_name(port: u16) -> String {
    format!("octosquid{port}")
}

/// A tinyproxy instance of our own.
pub struct Tinyproxy {
    child: Child,
    dir: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Tinyproxy {
    /// Starts tinyproxy for loopback clients, every CONNECT port allowed. `None` when not installed.
    pub fn start() -> Option<Tinyproxy> {
        if !have("tinyproxy") {
            eprintln!("skipping: tinyproxy is not installed (scripts/setup.sh installs it)");
            return None;
        }
        let dir = shared_dir("octo-tinyproxy");
        let port = free_port();
        touch_shared(&dir.join("tinyproxy.log"));
        let conf = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 30\nLogFile \"{d}/tinyproxy.log\"\nLogLevel Info\nPidFile \"{d}/tinyproxy.pid\"\nMaxClients 20\nAllow 127.0.0.1\n",
            d = dir.display()
        );
        std::fs::write(dir.join("tinyproxy.conf"), conf).unwrap();
        let mut child = Command::new("tinyproxy")
            .args(["-d", "-c"])
            .arg(dir.join("tinyproxy.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tinyproxy starts");
        wait_for_port(port, &mut child, "tinyproxy", &dir.join("tinyproxy.log"));
        Some(Tinyproxy { child, dir, port })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The log, once it contains `needle` (or after a short wait).
    pub fn log_containing(&self, needle: &str) -> String {
        read_log_until(&self.dir.join("tinyproxy.log"), needle)
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read_log_until(path: &Path, needle: &str) -> String {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) || start.elapsed() > Duration::from_secs(5) {
            return text;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Accepts connections to `socket` on a thread of its own, counting them, and hands each to
/// `answer` there (which answers it, or starts a thread that does); returns the port and the count of
/// connections so far.
pub fn counting_listener(
    socket: TcpListener,
    answer: impl Fn(TcpStream) + Send + 'static,
) -> (u16, Arc<AtomicUsize>) {
    let port = socket.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in socket.incoming().flatten() {
            counter.fetch_add(1, Ordering::SeqCst);
            answer(stream);
        }
    });
    (port, hits)
}

/// A TCP listener at `addr` (port 0: any) that says `pong` to each connection: its port and the count
/// of connections so far. An error when `addr` cannot be bound (e.g. `[::1]` without IPv6).
pub fn pong_listener(addr: &str) -> std::io::Result<(u16, Arc<AtomicUsize>)> {
    let socket = TcpListener::bind(addr)?;
    Ok(counting_listener(socket, |mut stream| {
        let _ = stream.write_all(b"pong\n");
    }))
}

/// A loopback HTTP/1.1 server answering `200 ok` to every request, counting them.
pub struct HttpServer {
    /// `http://127.0.0.1:PORT` (or `https://localhost:PORT` for [`HttpServer::tls`]).
    pub base_url: String,
    /// For TLS servers: the self-signed certificate to trust, PEM.
    pub certificate_pem: Option<String>,
    hits: Arc<AtomicUsize>,
}

impl HttpServer {
    /// A plain HTTP server.
    pub fn plain() -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (port, hits) = counting_listener(listener, |stream| {
            std::thread::spawn(move || answer(stream));
        });
        let base_url = format!("http://127.0.0.1:{port}");
        HttpServer {
            base_url,
            certificate_pem: None,
            hits,
        }
    }

    /// An HTTPS server for `localhost` with a fresh self-signed certificate ([`HttpServer::certificate_pem`]).
    pub fn tls() -> HttpServer {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
        let (cert_pem, key_pem) = self_signed_localhost();
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .map(Result::unwrap)
                .collect();
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (port, hits) = counting_listener(listener, move |stream| {
            let config = config.clone();
            std::thread::spawn(move || {
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                answer(rustls::StreamOwned::new(conn, stream));
            });
        });
        let base_url = format!("https://localhost:{port}");
        HttpServer {
            base_url,
            certificate_pem: Some(cert_pem),
            hits,
        }
    }

    /// How many connections it accepted.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn answer(mut stream: impl Read + Write) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
    let _ = stream.flush();
}

/// A self-signed certificate for `localhost` and 127.0.0.1: (certificate PEM, private key PEM).
pub fn self_signed_localhost() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}
