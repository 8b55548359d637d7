//! A private PostgreSQL cluster for tests: `initdb` in a temporary directory, started with `pg_ctl`
//! on a free loopback port (no Unix socket outside that directory, no system service touched), one
//! password-protected superuser, stopped and removed when the test binary exits.
//!
//! `initdb` refuses to run as root, so as root the cluster belongs to the `postgres` user (the
//! directory is chowned to it and the tools run through `runuser`). Debian's `postgresql` package
//! (installed by `scripts/setup.sh`) provides the tools under `/usr/lib/postgresql/<major>/bin`;
//! `OCTO_PG_BIN` points elsewhere.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The superuser of a test cluster.
pub const USER: &str = "octo";
/// Its password (a test cluster listens on loopback only and lives as long as its test binary).
pub const PASSWORD: &str = "s3cret-Pg-pass";

/// A running test cluster.
pub struct PgCluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    options: String,
    databases: AtomicUsize,
}

/// The directory holding `initdb`, `pg_ctl` and `psql`, if PostgreSQL is installed.
pub fn bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("OCTO_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((major, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc_geteuid() == 0 }
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// `program args` as the cluster's owner (the `postgres` user when we are root).
fn as_owner(bin: &Path, program: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(program));
        c
    } else {
        Command::new(bin.join(program))
    }
}

fn run(mut command: Command, what: &str) {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl PgCluster {
    /// One cluster shared by every test of this test binary (created on first use), or `None` with a
    /// note when PostgreSQL is not installed.
    pub fn shared() -> Option<&'static PgCluster> {
        static CLUSTER: OnceLock<Option<PgCluster>> = OnceLock::new();
        CLUSTER.get_or_init(PgCluster::start).as_ref()
    }

    /// Creates and starts a cluster; it is stopped and removed when this process exits.
    pub fn start() -> Option<PgCluster> {
        let Some(bin) = bin_dir() else {
            eprintln!("PostgreSQL is not installed (scripts/setup.sh installs it)");
            return None;
        };
        let port = crate::free_port();
        let dir = std::env::temp_dir().join(format!("octo-pg-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pwfile = dir.join("pw");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        if is_root() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.args(["-R", "postgres:postgres"]).arg(&dir);
                    c
                },
                "chown",
            );
        }
        let data = dir.join("data");
        let mut initdb = as_owner(&bin, "initdb");
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                USER,
                "--auth=scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
            ])
            .arg(format!("--pwfile={}", pwfile.display()));
        run(initdb, "initdb");
        let mut start = as_owner(&bin, "pg_ctl");
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=200",
            dir.display()
        );
        start
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("log"))
            .arg("-o")
            .arg(&options);
        start.args(["-w", "-t", "60", "start"]);
        run(start, "pg_ctl start");
        // Stops the cluster and removes its directory once this process is gone (a static is never
        // dropped, and a test binary may be killed).
        let pg_ctl = bin.join("pg_ctl");
        let script = format!(
            "while [ -d /proc/{pid} ]; do sleep 0.5; done; {owner} {pg_ctl} -D {data} -m immediate stop >/dev/null 2>&1; rm -rf {dir}",
            pid = std::process::id(),
            owner = if is_root() {
                "runuser -u postgres --"
            } else {
                ""
            },
            pg_ctl = pg_ctl.display(),
            data = data.display(),
            dir = dir.display(),
        );
        Command::new("setsid")
            .args(["-f", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("cannot start the cluster's watchdog");
        Some(PgCluster {
            dir,
            bin,
            port,
            options,
            databases: AtomicUsize::new(0),
        })
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of the `postgres` database (password included).
    pub fn admin_url(&self) -> String {
        self.url_of("postgres")
    }

    fn url_of(&self, database: &str) -> String {
        format!(
            "postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// A new, empty database of its own for one test: its URL (password included).
    pub fn new_database(&self) -> String {
        let n = self.databases.fetch_add(1, Ordering::SeqCst);
        let name = format!("t{n}");
        self.psql(&format!("CREATE DATABASE {name}"));
        self.url_of(&name)
    }

    /// Runs one SQL command in the `postgres` database.
    pub fn psql(&self, sql: &str) {
        let mut c = Command::new(self.bin.join("psql"));
        c.env("PGPASSWORD", PASSWORD)
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                USER,
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-q",
            ])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-c")
            .arg(sql);
        run(c, "psql");
    }

    /// Stops the cluster now (`-m fast`), e.g. to test an unreachable database; [`Self::restart`]
    /// starts it again.
    pub fn stop(&self) {
        let mut c = as_owner(&self.bin, "pg_ctl");
        c.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "fast", "-w", "stop"]);
        run(c, "pg_ctl stop");
    }

    /// Starts a stopped cluster again on the same port.
    pub fn restart(&self) {
        let mut c = as_owner(&self.bin, "pg_ctl");
        c.arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("log"))
            .arg("-o")
            .arg(&self.options)
            .args(["-w", "-t", "60", "start"]);
        run(c, "pg_ctl start");
    }
}
