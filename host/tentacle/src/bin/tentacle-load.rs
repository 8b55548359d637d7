//! Load and latency measurements of tentacle communication (loopback):
//!
//! * `rtt [--calls N]`: capabilities calls on a warm listening connection to the real tentacle
//!   service: median and p99.
//! * `upload [--mib M]`: file upload through the protocol (digest checked, written to the files
//!   area) against a raw rustls stream measured in the same run.
//! * `packages [--mib M] [--tentacles N]`: pushing a package as the server does for `--acquire
//!   server` (digest query, upload from disk into the package cache) to 1 listening tentacle, then
//!   to N others at once, beside a raw rustls stream; then the second deployment to all (0 bytes).
//! * `extract [--files N]`: deploy-package extracting an N-file .tar.gz in the sandbox against
//!   `tar -xzf` of the same package.
//! * `polling --count N`: starts a server process (`polling-server`), opens N polling connections
//!   to it, and has it health-check all of them at once: time and server RSS.
//!
//! Numbers only; nothing here asserts a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use octo_comms::endpoint::{self, DialTarget};
use octo_comms::identity::{Identity, Thumbprint};
use octo_comms::rpc::body::{self, RpcBody};
use octo_comms::rpc::{H2Options, RpcService};
use octo_comms::tls::{PeerInfo, TlsClient, TlsServer};
use octo_comms::trust::TrustStore;
use octo_protocol::{Capabilities, Empty, RelativePath, Sha256Digest, Stored, paths};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

fn raise_fd_limit() -> u64 {
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            return limit.rlim_cur;
        }
    }
    0
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("rtt") => rtt(arg(&args, "--calls", 20_000) as usize).await,
        Some("upload") => upload(arg(&args, "--mib", 256)).await,
        Some("packages") => {
            packages(
                arg(&args, "--mib", 256),
                arg(&args, "--tentacles", 10) as usize,
            )
            .await
        }
        Some("extract") => extract(arg(&args, "--files", 10_000) as usize).await,
        Some("polling") => polling(arg(&args, "--count", 1000) as usize).await,
        Some("polling-server") => polling_server().await,
        Some("proxied") => {
            let proxy = args
                .iter()
                .position(|a| a == "--proxy")
                .and_then(|i| args.get(i + 1))
                .ok_or_else(|| anyhow::anyhow!("proxied needs --proxy http://HOST:PORT"))?;
            proxied(
                octo_comms::proxy::ProxyConfig::parse(proxy)?,
                arg(&args, "--calls", 5_000) as usize,
                arg(&args, "--mib", 128),
            )
            .await
        }
        _ => {
            eprintln!(
                "usage: tentacle-load rtt [--calls N] | upload [--mib M] | packages [--mib M] [--tentacles N] | extract [--files N] | polling [--count N] | proxied --proxy URL [--calls N] [--mib M]"
            );
            std::process::exit(2)
        }
    }
}

/// A listening tentacle (the real service) in a temporary home and a warm client to it.
async fn listening_pair() -> anyhow::Result<(octo_comms::rpc::RpcClient, tempfile::TempDir)> {
    listening_pair_via(None).await
}

/// [`listening_pair`], dialled through `proxy` (a CONNECT tunnel) when given.
async fn listening_pair_via(
    proxy: Option<octo_comms::proxy::ProxyConfig>,
) -> anyhow::Result<(octo_comms::rpc::RpcClient, tempfile::TempDir)> {
    let home = tempfile::tempdir()?;
    let tentacle_home = tentacle::home::Home::at(home.path());
    let (service, _steps) = tentacle::agent::service(&tentacle_home)?;
    let octo = Identity::generate("octo")?;
    let tentacle = Identity::generate("tentacle")?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(endpoint::serve_listening(
        listener,
        TlsServer::new(&tentacle, TrustStore::from_thumbprints([octo.thumbprint()]))?,
        service,
        H2Options::default(),
        CancellationToken::new(),
    ));
    let tls = TlsClient::new(&octo, TrustStore::from_thumbprints([tentacle.thumbprint()]))?;
    let connected = endpoint::connect_listening(
        &DialTarget::new("127.0.0.1", port).with_proxy(proxy),
        &tls,
        Some(tentacle.thumbprint()),
        &H2Options::default(),
    )
    .await?;
    Ok((connected.client, home))
}

/// Step-protocol round trip and upload throughput to a listening tentacle, directly and through an
/// HTTP proxy (CONNECT tunnel), in the same run.
async fn proxied(
    proxy: octo_comms::proxy::ProxyConfig,
    calls: usize,
    mib: u64,
) -> anyhow::Result<()> {
    let size = mib * 1024 * 1024;
    let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    let digest = Sha256Digest::of(&data);
    let mut results = Vec::new();
    for via in [None, Some(proxy.clone())] {
        let (client, _home) = listening_pair_via(via).await?;
        for _ in 0..200 {
            let _: Capabilities = client.call_json(paths::CAPABILITIES, &Empty {}).await?;
        }
        let mut samples = Vec::with_capacity(calls);
        for _ in 0..calls {
            let started = Instant::now();
            let _: Capabilities = client.call_json(paths::CAPABILITIES, &Empty {}).await?;
            samples.push(started.elapsed());
        }
        samples.sort();
        let median = samples[samples.len() / 2];
        let p99 = samples[(samples.len() * 99 / 100).min(samples.len() - 1)];
        let path = RelativePath::parse("bench/upload.bin")?;
        let started = Instant::now();
        let stored: Stored = client
            .upload(
                &paths::file_upload(&path, &digest),
                std::io::Cursor::new(data.clone()),
            )
            .await?;
        let took = started.elapsed();
        assert_eq!(stored.size, size);
        results.push((median, p99, size as f64 / 1048576.0 / took.as_secs_f64()));
    }
    let (d, p) = (results[0], results[1]);
    println!(
        "direct:  rtt median {:.1} µs, p99 {:.1} µs; upload {mib} MiB {:.0} MiB/s",
        d.0.as_secs_f64() * 1e6,
        d.1.as_secs_f64() * 1e6,
        d.2
    );
    println!(
        "via {}: rtt median {:.1} µs, p99 {:.1} µs; upload {mib} MiB {:.0} MiB/s",
        proxy.authority(),
        p.0.as_secs_f64() * 1e6,
        p.1.as_secs_f64() * 1e6,
        p.2
    );
    println!(
        "ratios (proxy / direct): rtt median {:.2}x, upload throughput {:.2}x",
        p.0.as_secs_f64() / d.0.as_secs_f64(),
        p.2 / d.2
    );
    Ok(())
}

async fn rtt(calls: usize) -> anyhow::Result<()> {
    let (client, _home) = listening_pair().await?;
    for _ in 0..1000 {
        let _: Capabilities = client.call_json(paths::CAPABILITIES, &Empty {}).await?;
    }
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        let _: Capabilities = client.call_json(paths::CAPABILITIES, &Empty {}).await?;
        samples.push(started.elapsed());
    }
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "rpc round trip (capabilities, warm listening connection, {calls} calls): median {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs",
        pct(0.5).as_secs_f64() * 1e6,
        pct(0.99).as_secs_f64() * 1e6,
        pct(0.999).as_secs_f64() * 1e6
    );
    Ok(())
}

async fn upload(mib: u64) -> anyhow::Result<()> {
    let size = mib * 1024 * 1024;
    let data: Arc<Vec<u8>> = Arc::new((0..size).map(|i| (i * 31 % 251) as u8).collect());
    let digest = Sha256Digest::of(&data);

    // Baseline: the same TLS (mutual, pinned) over TCP, the receiver only reads.
    let octo = Identity::generate("octo")?;
    let tentacle = Identity::generate("tentacle")?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let server = TlsServer::new(&tentacle, TrustStore::from_thumbprints([octo.thumbprint()]))?;
    let receiver = tokio::spawn(async move {
        let (tcp, remote) = listener.accept().await?;
        let mut connection = server.accept(tcp, Some(remote)).await?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            let n = connection.stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        anyhow::Ok(total)
    });
    let tls = TlsClient::new(&octo, TrustStore::from_thumbprints([tentacle.thumbprint()]))?;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.set_nodelay(true)?;
    let started = Instant::now();
    // The server speaks first only in h2, so skip the client's first-bytes wait.
    let tls = tls.with_handshake_timeout(Duration::from_millis(300));
    let mut connection = tls
        .connect("tentacle", tcp, Some(tentacle.thumbprint()), None)
        .await?;
    let handshake = started.elapsed();
    let started = Instant::now();
    for chunk in data.chunks(256 * 1024) {
        connection.stream.write_all(chunk).await?;
    }
    connection.stream.shutdown().await?;
    let received = receiver.await??;
    let raw = started.elapsed();
    assert_eq!(received, size);

    // The protocol: HTTP/2 upload, digest check, written to the files area.
    let (client, _home) = listening_pair().await?;
    let path = RelativePath::parse("bench/upload.bin")?;
    let copy = std::io::Cursor::new(data.as_ref().clone());
    let started = Instant::now();
    let stored: Stored = client
        .upload(&paths::file_upload(&path, &digest), copy)
        .await?;
    let proto = started.elapsed();
    assert_eq!(stored.size, size);

    // The same HTTP/2 upload to a receiver that checks the digest but keeps nothing: the
    // transport and digest cost without the disk.
    let (sink, _sink_home) = sink_pair().await?;
    let copy = std::io::Cursor::new(data.as_ref().clone());
    let started = Instant::now();
    let stored: Stored = sink
        .upload(&paths::file_upload(&path, &digest), copy)
        .await?;
    let memory = started.elapsed();
    assert_eq!(stored.sha256, digest);
    let mbps = |d: Duration| size as f64 / (1024.0 * 1024.0) / d.as_secs_f64();
    println!(
        "upload {mib} MiB: raw rustls stream {:.0} MiB/s (handshake {:.1} ms excluded); \
         h2 upload + sha256 check, not stored {:.0} MiB/s (ratio {:.2}); \
         protocol upload to the files area (h2 + sha256 + write + fsync) {:.0} MiB/s (ratio {:.2})",
        mbps(raw),
        handshake.as_secs_f64() * 1e3,
        mbps(memory),
        raw.as_secs_f64() / memory.as_secs_f64(),
        mbps(proto),
        raw.as_secs_f64() / proto.as_secs_f64()
    );
    Ok(())
}

/// Receives uploads, checks their digest, keeps nothing.
struct HashSink;

impl RpcService for HashSink {
    async fn call(&self, _peer: PeerInfo, request: Request<Incoming>) -> Response<RpcBody> {
        let query = request.uri().query().unwrap_or("").to_owned();
        let Ok((path, digest)) = paths::parse_file_upload(&query) else {
            return body::text_response(StatusCode::BAD_REQUEST, "bad query");
        };
        match tentacle::files::receive_pipelined(request.into_body(), u64::MAX, |_| Ok(())).await {
            Ok((size, actual)) if actual == digest => body::json_response(
                StatusCode::OK,
                &Stored {
                    name: path.to_string(),
                    size,
                    sha256: actual,
                },
            ),
            Ok(_) => body::text_response(StatusCode::UNPROCESSABLE_ENTITY, "digest mismatch"),
            Err(e) => body::text_response(StatusCode::BAD_REQUEST, e.message),
        }
    }
}

async fn sink_pair() -> anyhow::Result<(octo_comms::rpc::RpcClient, ())> {
    let octo = Identity::generate("octo")?;
    let tentacle = Identity::generate("tentacle")?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(endpoint::serve_listening(
        listener,
        TlsServer::new(&tentacle, TrustStore::from_thumbprints([octo.thumbprint()]))?,
        Arc::new(HashSink),
        H2Options::default(),
        CancellationToken::new(),
    ));
    let tls = TlsClient::new(&octo, TrustStore::from_thumbprints([tentacle.thumbprint()]))?;
    let connected = endpoint::connect_listening(
        &DialTarget::new("127.0.0.1", port),
        &tls,
        Some(tentacle.thumbprint()),
        &H2Options::default(),
    )
    .await?;
    Ok((connected.client, ()))
}

/// The polling side's service: capabilities only.
struct Tiny;

impl RpcService for Tiny {
    async fn call(&self, _peer: PeerInfo, _request: Request<Incoming>) -> Response<RpcBody> {
        body::json_response(
            StatusCode::OK,
            &tentacle::service::TentacleService::capabilities(),
        )
    }
}

async fn polling(count: usize) -> anyhow::Result<()> {
    let limit = raise_fd_limit();
    let exe = std::env::current_exe()?;
    let tentacle = Identity::generate("load-tentacle")?;
    let mut server = tokio::process::Command::new(exe)
        .arg("polling-server")
        .env("LOAD_TRUST", tentacle.thumbprint().to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = server.stdin.take().unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let first = lines.next_line().await?.unwrap_or_default();
    let mut parts = first.split_whitespace();
    let port: u16 = parts.next().unwrap_or("0").parse()?;
    let server_tp = Thumbprint::parse(parts.next().unwrap_or(""))?;
    let tls = TlsClient::new(&tentacle, TrustStore::from_thumbprints([server_tp]))?;
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let service = Arc::new(Tiny);
    let semaphore = Arc::new(tokio::sync::Semaphore::new(64));
    let mut dials = Vec::with_capacity(count);
    for _ in 0..count {
        let tls = tls.clone();
        let service = service.clone();
        let shutdown = shutdown.clone();
        let semaphore = semaphore.clone();
        dials.push(tokio::spawn(async move {
            let permit = semaphore.acquire_owned().await.unwrap();
            let target = DialTarget::new("127.0.0.1", port);
            let established = endpoint::dial_tls(&target, &tls, Some(server_tp)).await;
            drop(permit);
            match established {
                Ok(established) => {
                    tokio::spawn(async move {
                        let _ = endpoint::serve_established(
                            established,
                            service,
                            &H2Options::default(),
                            &shutdown,
                        )
                        .await;
                    });
                    true
                }
                Err(e) => {
                    eprintln!("dial failed: {e}");
                    false
                }
            }
        }));
    }
    let mut connected = 0;
    for d in dials {
        if d.await? {
            connected += 1;
        }
    }
    let connect_time = started.elapsed();
    stdin
        .write_all(format!("check {connected}\n").as_bytes())
        .await?;
    stdin.flush().await?;
    let answer = lines.next_line().await?.unwrap_or_default();
    println!(
        "polling N={count}: {connected} connected in {:.2} s (fd limit {limit}); server: {answer}; load-tool RSS {:.0} MiB",
        connect_time.as_secs_f64(),
        rss_mib()
    );
    shutdown.cancel();
    let _ = server.kill().await;
    Ok(())
}

/// The server process of `polling`: accepts polling connections; on `check N` (stdin), waits
/// for N of them and calls capabilities on all at once.
async fn polling_server() -> anyhow::Result<()> {
    raise_fd_limit();
    let trust_tp = Thumbprint::parse(&std::env::var("LOAD_TRUST")?)?;
    let identity = Identity::generate("load-server")?;
    let trust = TrustStore::from_thumbprints([trust_tp]);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let (tx, mut rx) = tokio::sync::mpsc::channel(16 * 1024);
    tokio::spawn(endpoint::accept_polling(
        listener,
        TlsServer::new(&identity, trust)?,
        H2Options::default(),
        tx,
        CancellationToken::new(),
    ));
    println!("{port} {}", identity.thumbprint());
    let clients = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let sink = clients.clone();
    tokio::spawn(async move {
        while let Some(c) = rx.recv().await {
            sink.lock().await.push(c.client);
        }
    });
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = stdin.next_line().await? {
        let Some(n) = line.strip_prefix("check ") else {
            continue;
        };
        let n: usize = n.trim().parse()?;
        while clients.lock().await.len() < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let all = clients.lock().await.clone();
        let started = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for client in all {
            set.spawn(async move {
                client
                    .call_json::<_, Capabilities>(paths::CAPABILITIES, &Empty {})
                    .await
                    .is_ok()
            });
        }
        let mut ok = 0;
        while let Some(r) = set.join_next().await {
            if r.unwrap_or(false) {
                ok += 1;
            }
        }
        println!(
            "{ok}/{n} health-checked in {:.3} s, server RSS {:.0} MiB",
            started.elapsed().as_secs_f64(),
            rss_mib()
        );
    }
    Ok(())
}

/// What the receiving end of [`raw_rustls`] does with the bytes.
#[derive(Clone, Copy, PartialEq)]
enum RawReceiver {
    /// Reads them only.
    Discards,
    /// Writes them into a new file, synced once at the end.
    Writes,
    /// Hashes them (sha256) and writes them into a new file, synced at the end: the work a tentacle
    /// must do with a pushed package, on one task, without HTTP/2 or the protocol.
    HashesAndWrites,
}

/// The raw baseline: `data` over one mutual-TLS (pinned) rustls stream to a receiver that does
/// `what` with it (see [`RawReceiver`]; a file goes into `dir`); the handshake is excluded.
async fn raw_rustls(
    data: &Arc<Vec<u8>>,
    what: RawReceiver,
    dir: &std::path::Path,
) -> anyhow::Result<Duration> {
    let octo = Identity::generate("octo")?;
    let tentacle = Identity::generate("tentacle")?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let server = TlsServer::new(&tentacle, TrustStore::from_thumbprints([octo.thumbprint()]))?;
    let into = dir.join("raw.bin");
    let receiver = tokio::spawn(async move {
        let (tcp, remote) = listener.accept().await?;
        let mut connection = server.accept(tcp, Some(remote)).await?;
        let mut file = (what != RawReceiver::Discards)
            .then(|| std::fs::File::create(&into))
            .transpose()?;
        let mut hasher =
            (what == RawReceiver::HashesAndWrites).then(<sha2::Sha256 as sha2::Digest>::new);
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            let n = connection.stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            if let Some(hasher) = hasher.as_mut() {
                sha2::Digest::update(hasher, &buf[..n]);
            }
            if let Some(file) = file.as_mut() {
                // Blocking writes on this task: the cheapest a receiver can do.
                std::io::Write::write_all(file, &buf[..n])?;
            }
            total += n as u64;
        }
        if let Some(file) = file {
            file.sync_all()?;
            std::fs::remove_file(&into)?;
        }
        if let Some(hasher) = hasher {
            std::hint::black_box(sha2::Digest::finalize(hasher));
        }
        anyhow::Ok(total)
    });
    let tls = TlsClient::new(&octo, TrustStore::from_thumbprints([tentacle.thumbprint()]))?
        .with_handshake_timeout(Duration::from_millis(300));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.set_nodelay(true)?;
    let mut connection = tls
        .connect("tentacle", tcp, Some(tentacle.thumbprint()), None)
        .await?;
    let started = Instant::now();
    for chunk in data.chunks(256 * 1024) {
        connection.stream.write_all(chunk).await?;
    }
    connection.stream.shutdown().await?;
    let received = receiver.await??;
    anyhow::ensure!(
        received == data.len() as u64,
        "the receiver got {received} bytes"
    );
    Ok(started.elapsed())
}

/// sha256 of `data` alone, on one core: MiB/s.
fn sha256_alone(data: &[u8]) -> f64 {
    let started = Instant::now();
    std::hint::black_box(<sha2::Sha256 as sha2::Digest>::digest(data));
    data.len() as f64 / (1024.0 * 1024.0) / started.elapsed().as_secs_f64()
}

/// Pushing a package as the server does for `--acquire server`: ask each tentacle whether it has
/// the digest, upload the file (from disk) where not, into its package cache (digest checked, fsync,
/// rename). To 1 and to `count` listening tentacles at once, beside a raw rustls stream; then the
/// second deployment of the same version, which sends nothing.
async fn packages(mib: u64, count: usize) -> anyhow::Result<()> {
    let size = mib * 1024 * 1024;
    let data: Arc<Vec<u8>> = Arc::new((0..size).map(|i| (i * 31 % 251) as u8).collect());
    let scratch = tempfile::tempdir()?;
    let file_path = scratch.path().join("bench-1.0.0.tar.gz");
    std::fs::write(&file_path, data.as_ref())?;
    let package = octo_protocol::StepPackage {
        feed: "bench".into(),
        id: "bench".into(),
        version: "1.0.0".into(),
        files: vec![octo_protocol::PackageFileRef {
            name: "bench-1.0.0.tar.gz".into(),
            sha256: Sha256Digest::of(&data),
            size,
        }],
        direct: None,
    };
    let raw = raw_rustls(&data, RawReceiver::Discards, scratch.path()).await?;
    let raw_file = raw_rustls(&data, RawReceiver::Writes, scratch.path()).await?;
    let raw_hashed = raw_rustls(&data, RawReceiver::HashesAndWrites, scratch.path()).await?;
    let hash_only = sha256_alone(&data);

    let mut pairs = Vec::new();
    // One for the single push, `count` fresh ones for the push to many at once.
    for _ in 0..count.max(1) + 1 {
        pairs.push(listening_pair().await?);
    }
    let clients: Vec<_> = pairs.iter().map(|(c, _)| c.clone()).collect();
    // Returns the bytes sent.
    let push = |clients: Vec<octo_comms::rpc::RpcClient>| {
        let package = package.clone();
        let file_path = file_path.clone();
        async move {
            let tasks = clients.into_iter().map(|client| {
                let package = package.clone();
                let file_path = file_path.clone();
                tokio::spawn(async move {
                    let file = &package.files[0];
                    let presence: octo_protocol::PackagePresence = client
                        .call_json(
                            paths::PACKAGE_HAS,
                            &octo_protocol::PackageQuery {
                                sha256: file.sha256,
                            },
                        )
                        .await?;
                    if presence.present {
                        return anyhow::Ok(0u64);
                    }
                    let reader = std::fs::File::open(&file_path)?;
                    let stored: Stored = client
                        .upload_file(&paths::package_put(file, &package), reader)
                        .await?;
                    anyhow::Ok(stored.size)
                })
            });
            let mut sent = 0u64;
            for task in tasks.collect::<Vec<_>>() {
                sent += task.await??;
            }
            anyhow::Ok(sent)
        }
    };
    let mbps = |bytes: u64, d: Duration| bytes as f64 / (1024.0 * 1024.0) / d.as_secs_f64();
    let started = Instant::now();
    let sent_one = push(clients[..1].to_vec()).await?;
    let one = started.elapsed();
    let started = Instant::now();
    let sent_rest = push(clients[1..].to_vec()).await?;
    let rest = started.elapsed();
    let started = Instant::now();
    let sent_again = push(clients.clone()).await?;
    let again = started.elapsed();
    println!(
        "packages {mib} MiB: raw rustls stream {:.0} MiB/s, into a file synced at the end {:.0} MiB/s, \
         hashed (sha256) and into a synced file {:.0} MiB/s (sha256 alone on one core: {:.0} MiB/s); \
         push to 1 tentacle {:.0} MiB/s ({:.2}x raw, {:.2}x raw into a synced file, {:.2}x raw hashed into a synced file); \
         push to {} other tentacles at once {:.0} MiB/s aggregate; second deployment to all {}: {} bytes sent ({:.1} ms)",
        mbps(size, raw),
        mbps(size, raw_file),
        mbps(size, raw_hashed),
        hash_only,
        mbps(sent_one, one),
        raw.as_secs_f64() / one.as_secs_f64(),
        raw_file.as_secs_f64() / one.as_secs_f64(),
        raw_hashed.as_secs_f64() / one.as_secs_f64(),
        clients.len() - 1,
        mbps(sent_rest, rest),
        clients.len(),
        sent_again,
        again.as_secs_f64() * 1e3
    );
    Ok(())
}

/// Extracting a package of `files` small files: deploy-package in the sandbox (the built-in
/// component, the tentacle's runtime, the same mounts) against `tar -xzf` of the same package.
async fn extract(files: usize) -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    let tree = scratch.path().join("tree");
    for i in 0..files {
        let dir = tree.join(format!("d{:03}", i % 100));
        if i < 100 {
            std::fs::create_dir_all(&dir)?;
        }
        std::fs::write(
            dir.join(format!("f{i:05}.txt")),
            format!("file {i}\n").repeat(20),
        )?;
    }
    let package_dir = scratch.path().join("package");
    std::fs::create_dir(&package_dir)?;
    let package = package_dir.join("many-1.0.0.tar.gz");
    let status = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&package)
        .arg("-C")
        .arg(&tree)
        .arg(".")
        .status()?;
    anyhow::ensure!(status.success(), "tar -czf failed");

    let out = scratch.path().join("tar-out");
    std::fs::create_dir(&out)?;
    let started = Instant::now();
    let status = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(&package)
        .arg("-C")
        .arg(&out)
        .status()?;
    let tar = started.elapsed();
    anyhow::ensure!(status.success(), "tar -xzf failed");

    let runtime = octo_runtime::Runtime::new(octo_runtime::RuntimeConfig::default())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let plugin = runtime
        .load_step(octo_builtin_plugins::DEPLOY_PACKAGE.bytes)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let work = scratch.path().join("work");
    std::fs::create_dir(&work)?;
    let invocation = octo_builtin_plugins::deploy_package::invocation(
        &scratch.path().join("Applications"),
        &package_dir,
        "many-1.0.0.tar.gz",
        "many",
        "1.0.0",
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let request = octo_runtime::StepRequest {
        arguments: invocation.arguments,
        mounts: invocation
            .mounts
            .into_iter()
            .map(|m| {
                if m.writable {
                    octo_runtime::Mount::read_write(m.host, m.guest)
                } else {
                    octo_runtime::Mount::read_only(m.host, m.guest)
                }
            })
            .collect(),
        ..octo_runtime::StepRequest::new(&work)
    };
    let started = Instant::now();
    let outcome = plugin.run(&runtime, request).await;
    let sandbox = started.elapsed();
    if let Err(failure) = &outcome.result {
        anyhow::bail!("deploy-package failed: {failure}");
    }
    let extracted = std::fs::read_dir(invocation.applications_dir.join("1.0.0/d000"))?.count();
    anyhow::ensure!(
        extracted == files.div_ceil(100),
        "extracted {extracted} files in d000"
    );
    println!(
        "extract {files} files ({} KiB package): tar -xzf {:.0} ms; deploy-package in the sandbox {:.0} ms (ratio {:.1}x; the component was compiled beforehand)",
        std::fs::metadata(&package)?.len() / 1024,
        tar.as_secs_f64() * 1e3,
        sandbox.as_secs_f64() * 1e3,
        sandbox.as_secs_f64() / tar.as_secs_f64()
    );
    Ok(())
}
