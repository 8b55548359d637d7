//! Every outbound request of the plugin lifecycle, in one place: the steps feed (index and blobs) and the
//! community library feed.
//!
//! A client for a destination is only built from the [`Allowed`] that the one outbound gate
//! ([`crate::outbound::gate::check`]) hands out for its row, so no code path reaches the network around
//! the outbound table; the gate records every attempt in the audit file.
//!
//! Tuning knobs for tests and slow links (environment; not settings, since they are not policy):
//! `OCTO_FEED_ATTEMPTS` (default 3), `OCTO_FEED_TIMEOUT` (idle timeout, default 30s),
//! `OCTO_FEED_CONNECT_TIMEOUT` (default 10s), `OCTO_FEED_BACKOFF` (first backoff ceiling, default 250ms).

use crate::error::{Context, Result};
use crate::home::Home;
use crate::outbound::audit::AuditLog;
use crate::outbound::gate::{self, Allowed};
use crate::sink::{Event, Sink};
use octo_feed::{ClientConfig, Entry, FeedClient, FeedPublicKey, FetchedIndex, Source};
use octo_outbound::DestinationId;
use octo_settings::{Settings, keys};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn env_duration(name: &str, default: Duration) -> Result<Duration> {
    match std::env::var(name) {
        Ok(text) => crate::duration::parse(&text)
            .map_err(|e| err!(Invalid, "{name}: {e}"))
            .map(|d| d.max(Duration::from_millis(1))),
        Err(_) => Ok(default),
    }
}

/// The HTTP client for vendor feeds (see [`client_config`]).
fn client(settings: &Settings) -> Result<FeedClient> {
    Ok(FeedClient::new(client_config(settings)?)?)
}

/// The HTTP client configuration of the host's feeds (steps feed, library, package feeds): the trusted
/// certificate from the settings, the web request proxy's connector, and the tuning knobs from the
/// environment.
pub(crate) fn client_config(settings: &Settings) -> Result<ClientConfig> {
    let defaults = ClientConfig::default();
    let attempts = match std::env::var("OCTO_FEED_ATTEMPTS") {
        Ok(text) => text
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=20).contains(n))
            .ok_or_else(|| err!(Invalid, "OCTO_FEED_ATTEMPTS={text:?}: expected 1 to 20"))?,
        Err(_) => defaults.attempts,
    };
    let mut config = ClientConfig {
        attempts,
        idle_timeout: env_duration("OCTO_FEED_TIMEOUT", defaults.idle_timeout)?,
        connect_timeout: env_duration("OCTO_FEED_CONNECT_TIMEOUT", defaults.connect_timeout)?,
        backoff_base: env_duration("OCTO_FEED_BACKOFF", defaults.backoff_base)?,
        // `[limits] maxFeedIndexBytes` in octo.toml (default 32 MiB).
        max_document_size: octo_runtime::Limits::default()
            .with_settings(settings.limits.iter().map(|(k, v)| (k.as_str(), *v)))
            .map_err(|e| err!(Invalid, "{e} (octo.toml)"))?
            .max_feed_index_bytes,
        ..defaults
    };
    if let Some(pem) = &settings.feed_trusted_certificate {
        config = config
            .trust_pem_file(pem)
            .with_context(|| format!("the feed certificate ({})", keys::FEED_CERTIFICATE))?;
    }
    if let Some(connector) = crate::proxy::feed_connector(settings)? {
        config.connector = connector;
    }
    Ok(config)
}

/// A feed URL from the settings without its trailing `/`, or the one-line error that says how to set it.
fn configured_url(value: Option<&str>, what: &str, key: &str) -> Result<String> {
    let url = value.unwrap_or_default().trim().trim_end_matches('/');
    if url.is_empty() {
        bail!(
            Invalid,
            "no {what} is configured; set one with `octo configure --{key}=URL`"
        );
    }
    Ok(url.to_string())
}

/// The pinned feed key from the settings (needed online and for offline bundles).
pub fn pinned_key(settings: &Settings) -> Result<FeedPublicKey> {
    let Some(text) = settings.feed_public_key.as_deref() else {
        bail!(
            Invalid,
            "no feed public key is pinned, so the feed's signature cannot be checked; pin the key the feed publisher gave you with `octo configure --{}=KEY`",
            keys::FEED_PUBLIC_KEY
        );
    };
    FeedPublicKey::from_base64(text).with_context(|| format!("setting {}", keys::FEED_PUBLIC_KEY))
}

/// The steps feed, after the gate and the configuration were checked.
pub struct StepsFeed {
    client: FeedClient,
    url: String,
    key: FeedPublicKey,
    sink: Sink,
}

fn expect_row(allowed: &Allowed, row: DestinationId) {
    assert_eq!(allowed.row(), row, "a pass for another destination");
}

impl StepsFeed {
    /// Asks the gate (`stepTemplateUpdates`), then [`StepsFeed::with`]; makes no request.
    pub fn open(home: &Home, settings: &Settings, sink: &Sink) -> Result<Self> {
        let allowed = gate::check(&AuditLog::in_home(home), settings, DestinationId::StepsFeed)?;
        Self::with(&allowed, settings, sink)
    }

    /// Checks the feed URL and the pinned key, once the gate allowed the steps feed; makes no request.
    /// Download progress goes to `sink`.
    pub fn with(allowed: &Allowed, settings: &Settings, sink: &Sink) -> Result<Self> {
        expect_row(allowed, DestinationId::StepsFeed);
        let url = configured_url(settings.feed_url.as_deref(), "steps feed", keys::FEED)?;
        let key = pinned_key(settings)?;
        Ok(StepsFeed {
            client: client(settings)?,
            url,
            key,
            sink: sink.clone(),
        })
    }

    /// The feed's base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Where a component downloaded for `entry` of `fetched` comes from: this signed feed, with the
    /// pinned key its index was verified with.
    pub fn source_of(&self, fetched: &FetchedIndex, entry: &Entry) -> Source {
        Source::SignedFeed {
            url: fetched.blob_url(entry),
            key: Some(self.key.to_base64()),
        }
    }

    /// `GET {feed}/index.json` and `index.json.sig`, verified against the pinned key.
    pub async fn fetch_index(&self) -> Result<FetchedIndex> {
        self.client
            .fetch_index(&self.url, &self.key)
            .await
            .with_context(|| format!("cannot read the steps feed {}", self.url))
    }

    /// `GET` one blob into a verified temporary file in `dir`, reporting progress to the sink.
    pub async fn download(
        &self,
        fetched: &FetchedIndex,
        entry: &Entry,
        dir: &Path,
    ) -> Result<PathBuf> {
        let url = fetched.blob_url(entry);
        let label = format!("{} {}", entry.manifest.id, entry.version);
        let progress = |done: u64, total: u64| {
            self.sink.emit(Event::Download {
                label: &label,
                done,
                total,
            })
        };
        let result = self
            .client
            .download_verified_with_progress(&url, &entry.sha256, entry.size, dir, &progress)
            .await;
        self.sink.emit(Event::DownloadEnded { label: &label });
        Ok(result?)
    }
}

/// The community library feed, after the gate was checked.
pub struct LibraryFeed {
    client: FeedClient,
    url: String,
}

impl LibraryFeed {
    /// Asks the gate (`communityStepTemplates`), then [`LibraryFeed::with`]; makes no request.
    pub fn open(home: &Home, settings: &Settings) -> Result<Self> {
        let allowed = gate::check(
            &AuditLog::in_home(home),
            settings,
            DestinationId::LibraryFeed,
        )?;
        Self::with(&allowed, settings)
    }

    /// Checks the URL, once the gate allowed the library feed; makes no request.
    pub fn with(allowed: &Allowed, settings: &Settings) -> Result<Self> {
        expect_row(allowed, DestinationId::LibraryFeed);
        let url = configured_url(
            settings.library_feed_url.as_deref(),
            "library feed",
            keys::LIBRARY_FEED,
        )?;
        Ok(LibraryFeed {
            client: client(settings)?,
            url,
        })
    }

    /// The URL of the template list.
    pub fn templates_url(&self) -> String {
        format!("{}/api/step-templates", self.url)
    }

    /// `GET {libraryFeed}/api/step-templates`: the raw JSON body.
    pub async fn fetch_templates(&self) -> Result<Vec<u8>> {
        let url = self.templates_url();
        self.client
            .get_bytes(&url)
            .await
            .with_context(|| format!("cannot read the community library {url}"))
    }
}

/// A small runtime for one command's requests.
pub fn block_on<F: std::future::Future>(future: F) -> Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    Ok(runtime.block_on(future))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 11, deliverable 4: the feed index size limit is configurable (`[limits]` in octo.toml),
    /// not only the client's fixed default.
    #[test]
    fn the_feed_index_limit_comes_from_the_settings() {
        let mut settings = Settings::default();
        assert_eq!(
            client_config(&settings).unwrap().max_document_size,
            32 << 20
        );
        settings.limits.insert("maxFeedIndexBytes".into(), 4096);
        assert_eq!(client_config(&settings).unwrap().max_document_size, 4096);
        settings.limits.insert("maxFeedIndexBytes".into(), 0);
        let e = client_config(&settings).unwrap_err().to_string();
        assert!(e.contains("maxFeedIndexBytes"), "{e}");
    }
}
