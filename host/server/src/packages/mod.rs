//! `octo packages`: versions, downloads into the server's package cache, list, prune — and
//! [`acquire`], what a deployment calls to have a package in the cache.
//!
//! Every operation on a feed passes [`gate::check`] (recorded in the audit file under the
//! `package-feeds` row with the proxy used) and goes through the web request proxy (the feed client's
//! connector, from the settings), wrapped so that an air-gapped server opens no connection outside the
//! internal networks. The protocols are octo-packages'; the cache is [`cache`].

pub mod cache;
pub mod gate;

use crate::error::{Error, Result};
use crate::home::Home;
use crate::outbound::audit::AuditLog;
use crate::package_feeds::{self, StoredFeed};
use crate::sink::{Event, Sink};
use cache::{CacheEntry, PackageCache};
use octo_feed::FeedClient;
use octo_packages::{Cause, FeedKind, PackageClient, PackageError, VersionReq};
use serde::Serialize;
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// A feed, past the gate, with a client through the web request proxy.
pub struct OpenedFeed {
    /// The stored feed.
    pub feed: StoredFeed,
    /// Its client.
    pub client: PackageClient,
    /// Its origin and proxy, as recorded.
    pub pass: gate::FeedPass,
}

/// Asks the gate for one operation on `feed` (`what` is recorded) and builds its client; makes no
/// request.
pub fn open_feed(home: &Home, feed: &StoredFeed, what: &str, _sink: &Sink) -> Result<OpenedFeed> {
    let settings = home.load_settings()?;
    let audit = AuditLog::in_home(home);
    let pass = gate::check(&audit, &settings, &feed.spec, what)?;
    let mut config = crate::feeds::client_config(&settings)?;
    config.connector = gate::air_gap_connector(config.connector, &settings, audit, &feed.spec.name);
    let http = FeedClient::new(config)?;
    let client = PackageClient::new(feed.spec.clone(), http).map_err(to_error)?;
    Ok(OpenedFeed {
        feed: feed.clone(),
        client,
        pass,
    })
}

/// A package error as the server's error (its one line kept).
pub fn to_error(e: PackageError) -> Error {
    let line = e.to_string();
    match e.cause {
        Cause::InvalidId(_)
        | Cause::InvalidVersion(_)
        | Cause::InvalidFeed(_)
        | Cause::Unsupported(_) => Error::Invalid(line),
        Cause::NotFound { .. } | Cause::NoMatchingVersion { .. } => Error::NotFound(line),
        _ => Error::Failed(line),
    }
}

/// Splits `ID[@REQ]`.
pub fn split_spec(spec: &str) -> (&str, Option<&str>) {
    match spec.split_once('@') {
        Some((id, req)) => (id, Some(req)),
        None => (spec, None),
    }
}

/// `octo packages versions FEED ID`.
#[derive(Debug, Clone, Serialize)]
pub struct VersionList {
    /// The feed.
    pub feed: String,
    /// The package.
    pub id: String,
    /// Lowest first.
    pub versions: Vec<String>,
}

impl fmt::Display for VersionList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.versions.is_empty() {
            return writeln!(f, "feed {}, package {}: no versions", self.feed, self.id);
        }
        for v in &self.versions {
            writeln!(f, "{v}")?;
        }
        Ok(())
    }
}

/// `octo packages versions FEED ID`.
pub fn versions(home: &Home, feed: &str, id: &str, sink: &Sink) -> Result<VersionList> {
    let stored = package_feeds::get(home, feed)?;
    let opened = open_feed(home, &stored, &format!("versions {id}"), sink)?;
    let versions = crate::feeds::block_on(opened.client.versions(id))?.map_err(to_error)?;
    Ok(VersionList {
        feed: feed.to_string(),
        id: id.to_string(),
        versions,
    })
}

/// Options of a download.
#[derive(Debug, Clone, Default)]
pub struct DownloadOptions {
    /// The largest package accepted (all files together); default: the feed's limit.
    pub max_size: Option<u64>,
}

/// A package in the cache.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Acquired {
    /// The cache entry: what was resolved, every file's sha256 and size.
    pub entry: CacheEntry,
    /// The files in the cache, in the order of `entry.download.files`.
    pub paths: Vec<PathBuf>,
    /// Whether it was in the cache already (nothing downloaded).
    pub cached: bool,
}

impl fmt::Display for Acquired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.entry.download;
        writeln!(
            f,
            "{} {} ({} file(s), {} bytes)",
            d.display_name(),
            if self.cached {
                "was in the cache already"
            } else {
                "downloaded"
            },
            d.files.len(),
            self.entry.size()
        )?;
        for (file, path) in d.files.iter().zip(&self.paths) {
            writeln!(
                f,
                "  {}  sha256 {}  {}",
                file.name,
                file.sha256.as_deref().unwrap_or("-"),
                path.display()
            )?;
        }
        Ok(())
    }
}

fn cached(cache: &PackageCache, entry: CacheEntry) -> Acquired {
    let paths = entry
        .download
        .files
        .iter()
        .map(|f| cache.blob(f.sha256.as_deref().unwrap_or_default()))
        .collect();
    Acquired {
        entry,
        paths,
        cached: true,
    }
}

/// `octo packages download FEED ID[@REQ]`: see [`acquire`].
pub fn download(
    home: &Home,
    feed: &str,
    spec: &str,
    options: &DownloadOptions,
    sink: &Sink,
) -> Result<Acquired> {
    let (id, req) = split_spec(spec);
    acquire(home, feed, id, req, options, sink)
}

/// Has package `id` at the version `req` asks for in the cache, downloading it (once, also when
/// several processes ask at the same time: a lock per package) if it is not there. An exact NuGet or
/// HTTP version already in the cache makes no request at all.
pub fn acquire(
    home: &Home,
    feed: &str,
    id: &str,
    req: Option<&str>,
    options: &DownloadOptions,
    sink: &Sink,
) -> Result<Acquired> {
    let stored = package_feeds::get(home, feed)?;
    let cache = PackageCache::open(home.packages())?;
    let label = match req {
        Some(r) => format!("{id}@{r}"),
        None => id.to_string(),
    };
    // An exact version that is cached needs no request.
    if stored.spec.kind != FeedKind::Oci
        && let Ok(VersionReq::Exact(v)) = VersionReq::parse(req)
    {
        let version = match stored.spec.kind {
            FeedKind::Nuget => v.normalized(),
            _ => req.unwrap_or_default().trim().to_string(),
        };
        if let Some(entry) = cache.get(&PackageCache::key(feed, id, &version)) {
            return Ok(cached(&cache, entry));
        }
    }
    let opened = open_feed(home, &stored, &format!("download {label}"), sink)?;
    let max_size = options.max_size.unwrap_or(stored.max_package_size());
    crate::feeds::block_on(async {
        let mut download = opened.client.resolve(id, req).await.map_err(to_error)?;
        let key = PackageCache::key(feed, &download.package_id, &download.version);
        let _lock = cache.lock(&key)?;
        if let Some(entry) = cache.get(&key)
            && (download.manifest_digest.is_none()
                || entry.download.manifest_digest == download.manifest_digest)
        {
            return Ok(cached(&cache, entry));
        }
        let name = download.display_name();
        if let Some(total) = download.total_size()
            && total > max_size
        {
            return Err(Error::Failed(format!(
                "feed {feed}, package {}@{}: it is {total} bytes, more than the limit of {max_size} bytes; nothing was downloaded",
                download.package_id, download.version
            )));
        }
        let mut paths = Vec::new();
        let mut so_far = 0u64;
        for i in 0..download.files.len() {
            let file = download.files[i].clone();
            let progress_label = format!("{name} {}", file.name);
            let progress = |done: u64, total: u64| {
                sink.emit(Event::Download {
                    label: &progress_label,
                    done,
                    total,
                })
            };
            let result = opened
                .client
                .download_file(
                    &download,
                    &file,
                    &cache.tmp_dir(),
                    Some(max_size - so_far),
                    &progress,
                )
                .await;
            sink.emit(Event::DownloadEnded {
                label: &progress_label,
            });
            let done = result.map_err(to_error)?;
            so_far += done.size;
            paths.push(cache.install_blob(&done.path, &done.sha256)?);
            download.files[i].sha256 = Some(done.sha256);
            download.files[i].size = Some(done.size);
        }
        let entry = cache.put(&key, download, SystemTime::now())?;
        Ok(Acquired {
            entry,
            paths,
            cached: false,
        })
    })?
}

/// One row of `octo packages list`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageRow {
    /// Feed.
    pub feed: String,
    /// Package id.
    pub id: String,
    /// Version.
    pub version: String,
    /// Total size in bytes.
    pub size: u64,
    /// The files' sha256, in order.
    pub sha256: Vec<String>,
    /// When it was fetched.
    pub fetched: String,
}

/// `octo packages list`.
#[derive(Debug, Clone, Serialize)]
pub struct PackageList(pub Vec<PackageRow>);

impl fmt::Display for PackageList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return writeln!(f, "the package cache is empty");
        }
        let mut rows = vec![[
            "FEED".to_string(),
            "PACKAGE".into(),
            "VERSION".into(),
            "BYTES".into(),
            "FETCHED".into(),
            "SHA256".into(),
        ]];
        for r in &self.0 {
            rows.push([
                r.feed.clone(),
                r.id.clone(),
                r.version.clone(),
                r.size.to_string(),
                r.fetched.clone(),
                r.sha256.join(","),
            ]);
        }
        crate::table::write_table(f, &rows)
    }
}

/// `octo packages list`: what the cache holds.
pub fn list(home: &Home) -> Result<PackageList> {
    let cache = PackageCache::open(home.packages())?;
    Ok(PackageList(
        cache
            .entries()?
            .into_iter()
            .map(|(_, e)| PackageRow {
                feed: e.download.feed.clone(),
                id: e.download.package_id.clone(),
                version: e.download.version.clone(),
                size: e.size(),
                sha256: e
                    .download
                    .files
                    .iter()
                    .filter_map(|f| f.sha256.clone())
                    .collect(),
                fetched: e.fetched.clone(),
            })
            .collect(),
    ))
}

/// What `octo packages prune` removes.
#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    /// Every package.
    pub all: bool,
    /// Packages fetched longer ago than this.
    pub older_than: Option<Duration>,
}

/// What `octo packages prune` removed.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PruneReport {
    /// Packages removed.
    pub packages: u64,
    /// Files removed (blobs no package refers to, leftover temporary files).
    pub files: u64,
    /// Bytes freed.
    pub bytes: u64,
}

impl fmt::Display for PruneReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "removed {} package(s), {} file(s), {} bytes",
            self.packages, self.files, self.bytes
        )
    }
}

/// `octo packages prune`: removes the packages `options` select (none by default), then every file no
/// package refers to and temporary files left by interrupted downloads.
pub fn prune(home: &Home, options: &PruneOptions) -> Result<PruneReport> {
    let cache = PackageCache::open(home.packages())?;
    let now = SystemTime::now();
    let mut packages = 0;
    for (key, entry) in cache.entries()? {
        let old = options.older_than.is_some_and(|limit| {
            parse_rfc3339(&entry.fetched)
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > limit)
        });
        if options.all || old {
            let _lock = cache.lock(&key)?;
            cache.remove_entry(&key)?;
            packages += 1;
        }
    }
    let (files, bytes) = cache.remove_unreferenced()?;
    Ok(PruneReport {
        packages,
        files,
        bytes,
    })
}

/// `YYYY-MM-DDTHH:MM:SSZ` → time.
fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (mo + if mo > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let secs = days * 86400 + h * 3600 + mi * 60 + sec;
    u64::try_from(secs)
        .ok()
        .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
}

/// Parses a size: bytes, or a number with `KiB`, `MiB`, `GiB` (also `K`, `M`, `G`, `KB`, `MB`, `GB`,
/// all powers of 1024).
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("invalid size {text:?}: expected e.g. 512MiB or 1073741824"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(format!("invalid size {text:?}: use B, KiB, MiB or GiB")),
    };
    n.checked_mul(1 << shift)
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("invalid size {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_specs_and_times() {
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("10"), Ok(10));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("0").is_err() && parse_size("x").is_err() && parse_size("1TB").is_err());
        assert_eq!(split_spec("App@1.0"), ("App", Some("1.0")));
        assert_eq!(split_spec("App"), ("App", None));
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_600_000);
        assert_eq!(parse_rfc3339(&octo_fsutil::rfc3339(t)), Some(t));
    }
}
