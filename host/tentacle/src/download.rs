//! Acquisition `target`: the tentacle downloads a step's package itself, from the feed the server
//! resolved it on, through the tentacle's own web request proxy (`[webProxy]` in `tentacle.toml`),
//! with the feed's credentials handed over for that run only (never stored, never logged), and
//! verifies every file's digest before it enters the package cache. Each download is recorded in
//! `logs/package-downloads.jsonl`, which `tentacle outbound` shows.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use octo_protocol::{DirectDownload, PackageFileRef, Sha256Digest, StepPackage};
use octo_runtime::WebProxy;
use serde::{Deserialize, Serialize};

use crate::packages::{PackageCache, PackageMeta};

/// One download the tentacle made, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DownloadRecord {
    /// When (RFC 3339).
    pub time: String,
    /// The feed's name on the server.
    pub feed: String,
    /// `scheme://host:port` of the file's URL.
    pub destination: String,
    /// `ID VERSION FILE`.
    pub package: String,
    /// Direct, or the proxy (password masked).
    pub via: String,
    /// Whether it succeeded.
    pub ok: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// The log of downloads under a home's `logs/`.
#[derive(Debug, Clone)]
pub struct DownloadLog {
    path: PathBuf,
}

impl DownloadLog {
    /// `<logs>/package-downloads.jsonl`.
    pub fn in_dir(logs: &Path) -> Self {
        Self {
            path: logs.join("package-downloads.jsonl"),
        }
    }

    fn append(&self, record: &DownloadRecord) {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = self.path.parent() {
            let _ = octo_fsutil::create_private_dir(dir);
        }
        let mut line = serde_json::to_vec(record).expect("a record encodes");
        line.push(b'\n');
        let written = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)
            .and_then(|mut f| f.write_all(&line));
        if let Err(error) = written {
            tracing::warn!(%error, "cannot record a package download");
        }
    }

    /// The last `n` records, oldest first.
    pub fn last(&self, n: usize) -> Vec<DownloadRecord> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let records: Vec<DownloadRecord> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        records[records.len().saturating_sub(n)..].to_vec()
    }
}

/// Downloads the files of `package` that `cache` lacks, as `direct` says, through `web_proxy`,
/// and returns `package` with every file listed by its sha256: the files `direct` names only by a
/// SHA-512 the feed publishes are verified against it, taken from the cache when one recorded
/// with that SHA-512 is there. Runs on a blocking thread of the runtime (the feed client's futures
/// are not `Send` for every lifetime, which `tokio::spawn` needs).
#[allow(clippy::too_many_arguments)]
pub async fn download_missing(
    cache: PackageCache,
    package: StepPackage,
    direct: DirectDownload,
    web_proxy: Option<Arc<WebProxy>>,
    log: DownloadLog,
    note: Arc<dyn Fn(String) + Send + Sync>,
) -> Result<StepPackage, String> {
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        handle.block_on(download(&cache, &package, &direct, web_proxy, &log, note))
    })
    .await
    .map_err(|e| format!("the package download stopped: {e}"))?
}

async fn download(
    cache: &PackageCache,
    package: &StepPackage,
    direct: &DirectDownload,
    web_proxy: Option<Arc<WebProxy>>,
    log: &DownloadLog,
    note: Arc<dyn Fn(String) + Send + Sync>,
) -> Result<StepPackage, String> {
    {
        let what = format!("package {} {}", package.id, package.version);
        let download: octo_packages::PackageDownload =
            serde_json::from_value(direct.download.clone()).map_err(|e| {
                format!("{what}: the server's download description is not valid: {e}")
            })?;
        let credentials = direct
            .username
            .as_ref()
            .map(|u| octo_packages::Credentials {
                username: u.clone(),
                password: direct.password.clone().unwrap_or_default(),
            });
        let via = match &web_proxy {
            Some(p) => format!("{p:?}"),
            None => "direct".to_owned(),
        };
        let config = octo_feed::ClientConfig {
            // Through the tentacle's web request proxy, else direct.
            connector: octo_web_proxy::feed_connector(web_proxy.as_deref().cloned()),
            ..Default::default()
        };
        let http = octo_feed::FeedClient::new(config).map_err(|e| format!("{what}: {e}"))?;
        let client = octo_packages::PackageClient::for_download(&download, credentials, http)
            .map_err(|e| format!("{what}: {e}"))?;
        let tmp = cache.tmp_dir().map_err(|e| format!("{what}: {e}"))?;
        let fetcher = Fetcher {
            client: &client,
            download: &download,
            package,
            tmp: &tmp,
            via: &via,
            log,
            note: &note,
        };
        for wanted in cache.missing(package) {
            let Some(file) = download.files.iter().find(|f| f.name == wanted.name) else {
                return Err(format!(
                    "{what}: the download names no file {}",
                    wanted.name
                ));
            };
            let mut file = file.clone();
            // Verified against the digest the server resolved, whatever the description says.
            file.sha256 = Some(wanted.sha256.to_hex());
            if wanted.size > 0 {
                file.size = Some(wanted.size);
            }
            let done = fetcher.fetch(&file).await?;
            cache
                .adopt(&done.path, &PackageMeta::from(package), wanted, None)
                .map_err(|e| format!("{what}: cannot cache {}: {e}", file.name))?;
        }
        // The files the description names only by the SHA-512 the feed publishes.
        let mut complete = package.clone();
        for file in download
            .files
            .iter()
            .filter(|f| !package.files.iter().any(|p| p.name == f.name))
        {
            let Some(sha512) = file.sha512.clone().filter(|_| file.sha256.is_none()) else {
                return Err(format!(
                    "{what}: the server named no digest for {}, so it cannot be verified",
                    file.name
                ));
            };
            if let Some(record) = cache.find_sha512(&sha512) {
                complete.files.push(PackageFileRef {
                    name: file.name.clone(),
                    sha256: record.sha256,
                    size: record.size,
                });
                continue;
            }
            let done = fetcher.fetch(file).await?;
            let wanted = PackageFileRef {
                name: file.name.clone(),
                sha256: Sha256Digest::parse(&done.sha256)
                    .map_err(|e| format!("{what}: {}: {e}", file.name))?,
                size: done.size,
            };
            cache
                .adopt(
                    &done.path,
                    &PackageMeta::from(package),
                    &wanted,
                    Some(&sha512),
                )
                .map_err(|e| format!("{what}: cannot cache {}: {e}", file.name))?;
            complete.files.push(wanted);
        }
        Ok(complete)
    }
}

/// One package's downloads: each noted in the run's log and recorded in the download log.
struct Fetcher<'a> {
    client: &'a octo_packages::PackageClient,
    download: &'a octo_packages::PackageDownload,
    package: &'a StepPackage,
    tmp: &'a Path,
    via: &'a str,
    log: &'a DownloadLog,
    note: &'a Arc<dyn Fn(String) + Send + Sync>,
}

impl Fetcher<'_> {
    /// Downloads `file` into the temporary directory, verified against the digest it states.
    async fn fetch(
        &self,
        file: &octo_packages::PackageFile,
    ) -> Result<octo_feed::Downloaded, String> {
        let destination = octo_feed::client::origin_of(&file.url).unwrap_or_default();
        let size = file
            .size
            .map(|s| format!(" ({s} bytes)"))
            .unwrap_or_default();
        (self.note)(format!(
            "Downloading {}{size} from feed {} ({destination}) via {}",
            file.name, self.download.feed, self.via
        ));
        let result = self
            .client
            .download_file(
                self.download,
                file,
                self.tmp,
                Some(file.size.unwrap_or(octo_protocol::MAX_FILE_SIZE)),
                &no_progress,
            )
            .await;
        let record = |ok: bool, error: String| DownloadRecord {
            time: octo_fsutil::rfc3339(std::time::SystemTime::now()),
            feed: self.download.feed.clone(),
            destination: destination.clone(),
            package: format!("{} {} {}", self.package.id, self.package.version, file.name),
            via: self.via.to_owned(),
            ok,
            error,
        };
        match result {
            Ok(done) => {
                self.log.append(&record(true, String::new()));
                Ok(done)
            }
            Err(e) => {
                let message = e.to_string();
                self.log.append(&record(false, message.clone()));
                Err(message)
            }
        }
    }
}

fn no_progress(_: u64, _: u64) {}
