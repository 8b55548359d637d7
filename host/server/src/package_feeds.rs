//! `octo feeds`: the package feeds an administrator configures (NuGet v3, OCI registries, plain HTTP).
//!
//! Kept in the store as the shared `feeds` document ([`crate::shared`]: compare-and-swap, so every
//! node of a cluster has the same feeds; a home's old `<home>/feeds.json` is imported once), passwords
//! included — the store holds them as the file did (the SQLite file is 0600; a PostgreSQL database must
//! be as private) — they are never printed (`list` shows `password: set`), never logged (`Credentials`'
//! `Debug` redacts them) and sent only to the feed's own origin (octo-packages).

use crate::error::Result;
use crate::home::Home;
use crate::sink::Sink;
use octo_packages::{Credentials, FeedKind, FeedReport, FeedSpec, check_feed_name};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;

/// The default largest package a feed may deliver (4 GiB).
pub const DEFAULT_MAX_PACKAGE_SIZE: u64 = 4 << 30;

/// One stored feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredFeed {
    /// Name, kind, URL, credentials.
    #[serde(flatten)]
    pub spec: FeedSpec,
    /// The largest package (all its files together) accepted from this feed, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_package_size: Option<u64>,
}

impl StoredFeed {
    /// The size limit in force.
    pub fn max_package_size(&self) -> u64 {
        self.max_package_size.unwrap_or(DEFAULT_MAX_PACKAGE_SIZE)
    }
}

/// The stored feeds (the `feeds` document, the old file's format).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct FeedsFile {
    #[serde(default)]
    feeds: Vec<StoredFeed>,
}

impl crate::shared::Shared for FeedsFile {
    const NAME: &'static str = "feeds";

    fn old_file(home: &Home) -> std::path::PathBuf {
        home.feeds()
    }

    fn parse_old(bytes: &[u8], path: &Path) -> Result<Self> {
        serde_json::from_slice(bytes)
            .map_err(|e| err!(Invalid, "{} is not a valid feeds file: {e}", path.display()))
    }
}

/// What `octo feeds add` takes.
#[derive(Debug, Clone)]
pub struct NewFeed {
    /// Unique name.
    pub name: String,
    /// Protocol.
    pub kind: FeedKind,
    /// URL (a template for http feeds).
    pub url: String,
    /// Credentials (the binary reads the password from the terminal or stdin when asked to).
    pub credentials: Option<Credentials>,
    /// Size limit in bytes (default [`DEFAULT_MAX_PACKAGE_SIZE`]).
    pub max_package_size: Option<u64>,
}

fn load(home: &Home) -> Result<FeedsFile> {
    crate::shared::load_in(home)
}

fn edit<T: Send>(home: &Home, f: impl FnMut(&mut FeedsFile) -> Result<T> + Send) -> Result<T> {
    home.create()?;
    crate::shared::update_in(home, f)
}

/// `octo feeds add`: checks the name and the URL for the kind; refuses a name in use.
pub fn add(home: &Home, feed: NewFeed) -> Result<FeedRow> {
    check_feed_name(&feed.name).map_err(crate::Error::Invalid)?;
    if let Some(c) = &feed.credentials
        && (c.username.is_empty() || c.username.contains(':'))
    {
        bail!(
            Invalid,
            "feed {}: the user name must be non-empty and without ':'",
            feed.name
        );
    }
    if feed.max_package_size == Some(0) {
        bail!(
            Invalid,
            "feed {}: --max-package-size must be more than 0",
            feed.name
        );
    }
    let spec = FeedSpec {
        name: feed.name.clone(),
        kind: feed.kind,
        url: feed.url.trim().to_string(),
        credentials: feed.credentials,
    };
    octo_packages::client::check_url(&spec)
        .map_err(|m| err!(Invalid, "feed {}: {m}", feed.name))?;
    let stored = StoredFeed {
        spec,
        max_package_size: feed.max_package_size,
    };
    let row = FeedRow::of(&stored);
    edit(home, |file| {
        if file.feeds.iter().any(|f| f.spec.name == feed.name) {
            bail!(
                Invalid,
                "a feed named {} exists already; `octo feeds remove {}` first",
                feed.name,
                feed.name
            );
        }
        file.feeds.push(stored.clone());
        Ok(())
    })?;
    Ok(row)
}

/// `octo feeds remove`.
pub fn remove(home: &Home, name: &str) -> Result<()> {
    edit(home, |file| {
        let before = file.feeds.len();
        file.feeds.retain(|f| f.spec.name != name);
        if file.feeds.len() == before {
            bail!(
                NotFound,
                "no feed named {name:?} (`octo feeds list` shows them)"
            );
        }
        Ok(())
    })
}

/// A feed by name, credentials included (for the package service; never printed).
pub fn get(home: &Home, name: &str) -> Result<StoredFeed> {
    load(home)?
        .feeds
        .into_iter()
        .find(|f| f.spec.name == name)
        .ok_or_else(|| {
            err!(
                NotFound,
                "no feed named {name:?} (`octo feeds list` shows them)"
            )
        })
}

/// A feed as `list` shows it: no password, only whether one is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedRow {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: FeedKind,
    /// URL.
    pub url: String,
    /// User name, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// `"set"` when a password is stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<&'static str>,
    /// Size limit in bytes.
    pub max_package_size: u64,
}

impl FeedRow {
    fn of(f: &StoredFeed) -> Self {
        FeedRow {
            name: f.spec.name.clone(),
            kind: f.spec.kind,
            url: f.spec.url.clone(),
            username: f.spec.credentials.as_ref().map(|c| c.username.clone()),
            password: f.spec.credentials.as_ref().map(|_| "set"),
            max_package_size: f.max_package_size(),
        }
    }
}

impl fmt::Display for FeedRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}) {}", self.name, self.kind, self.url)?;
        if let Some(u) = &self.username {
            write!(f, " username: {u}")?;
        }
        if self.password.is_some() {
            write!(f, " password: set")?;
        }
        Ok(())
    }
}

/// `octo feeds list`.
#[derive(Debug, Clone, Serialize)]
pub struct FeedList(pub Vec<FeedRow>);

impl fmt::Display for FeedList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return writeln!(
                f,
                "no package feeds (add one with `octo feeds add NAME --type nuget|oci|http --url URL`)"
            );
        }
        let mut rows = vec![[
            "NAME".to_string(),
            "TYPE".into(),
            "USERNAME".into(),
            "PASSWORD".into(),
            "URL".into(),
        ]];
        for r in &self.0 {
            rows.push([
                r.name.clone(),
                r.kind.to_string(),
                r.username.clone().unwrap_or_else(|| "-".into()),
                r.password.unwrap_or("-").to_string(),
                r.url.clone(),
            ]);
        }
        crate::table::write_table(f, &rows)
    }
}

/// `octo feeds list`.
pub fn list(home: &Home) -> Result<FeedList> {
    Ok(FeedList(
        load(home)?.feeds.iter().map(FeedRow::of).collect(),
    ))
}

/// `octo feeds test NAME`: reaches the feed (through the gate and the web request proxy) and says
/// what it found.
pub fn test(home: &Home, name: &str, sink: &Sink) -> Result<FeedReport> {
    let feed = get(home, name)?;
    let opened = crate::packages::open_feed(home, &feed, "test", sink)?;
    crate::feeds::block_on(opened.client.test())?.map_err(crate::packages::to_error)
}
