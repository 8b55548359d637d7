//! Every outbound request of the plugin lifecycle, in one place: the steps feed (index and blobs) and the
//! community library feed.
//!
//! Each destination is a [`Destination`]; a client for it is only handed out after [`Destination::check`]
//! has passed, so no code path reaches the network around the outbound table: `check` asks
//! [`octo_outbound::verdict`] for the destination's row and records the attempt in the audit file.
//!
//! Tuning knobs for tests and slow links (environment; not settings, since they are not policy):
//! `OCTO_FEED_ATTEMPTS` (default 3), `OCTO_FEED_TIMEOUT` (idle timeout, default 30s),
//! `OCTO_FEED_CONNECT_TIMEOUT` (default 10s), `OCTO_FEED_BACKOFF` (first backoff ceiling, default 250ms).

use crate::home::Home;
use crate::outbound::audit::AuditLog;
use anyhow::{Context, bail};
use octo_feed::{ClientConfig, Entry, FeedClient, FeedPublicKey, FetchedIndex};
use octo_outbound::audit::AuditRecord;
use octo_settings::{Settings, keys};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A vendor destination this module talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// The steps feed: signed index and plugin components (`feed`, gated by `stepTemplateUpdates`).
    StepsFeed,
    /// The community library: `GET {libraryFeed}/api/step-templates` (gated by `communityStepTemplates`).
    CommunityLibrary,
}

impl Destination {
    /// The settings key of the switch that gates it.
    pub fn setting(self) -> &'static str {
        match self {
            Destination::StepsFeed => keys::STEP_TEMPLATE_UPDATES,
            Destination::CommunityLibrary => keys::COMMUNITY_STEP_TEMPLATES,
        }
    }

    /// Whether the switch is on.
    pub fn enabled(self, settings: &Settings) -> bool {
        match self {
            Destination::StepsFeed => settings.step_template_updates,
            Destination::CommunityLibrary => settings.community_step_templates,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Destination::StepsFeed => "the steps feed",
            Destination::CommunityLibrary => "the community step template library",
        }
    }

    /// Its row in the outbound table.
    pub fn row(self) -> octo_outbound::DestinationId {
        match self {
            Destination::StepsFeed => octo_outbound::DestinationId::StepsFeed,
            Destination::CommunityLibrary => octo_outbound::DestinationId::LibraryFeed,
        }
    }

    /// Refuses (with what to do instead) when the outbound table's verdict for its row says no. The
    /// single gate for this module's requests; every attempt, allowed or not, is recorded in the audit
    /// file (`octo outbound` shows it).
    pub fn check(self, home: &Home, settings: &Settings) -> anyhow::Result<()> {
        let row = self.row();
        let decision = octo_outbound::verdict(row.row(), settings);
        let url = octo_outbound::endpoint_url(row.row(), settings).unwrap_or_default();
        let origin = octo_manifest::Destination::from_url(url)
            .map(|d| d.to_string())
            .unwrap_or_else(|_| url.to_string());
        AuditLog::in_home(home).record(&AuditRecord::new(
            row,
            &format!("octo:{}", row.as_str()),
            &origin,
            decision.allowed,
            &decision.reason,
            std::time::SystemTime::now(),
        ));
        if decision.allowed {
            return Ok(());
        }
        let offline = match self {
            Destination::StepsFeed => {
                "; on an air-gapped server install plugins with `octo plugins import BUNDLE_DIR`"
            }
            Destination::CommunityLibrary => "",
        };
        bail!(
            "{} is disabled ({}=false), so no request was made; enable it with `octo configure --{}=true`{offline}",
            self.describe(),
            self.setting(),
            self.setting(),
        )
    }
}

fn env_duration(name: &str, default: Duration) -> anyhow::Result<Duration> {
    match std::env::var(name) {
        Ok(text) => crate::cli::parse_duration(&text)
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))
            .map(|d| d.max(Duration::from_millis(1))),
        Err(_) => Ok(default),
    }
}

/// The HTTP client configuration for vendor feeds: the trusted certificate from the settings, and the
/// tuning knobs from the environment.
fn client(settings: &Settings) -> anyhow::Result<FeedClient> {
    let defaults = ClientConfig::default();
    let attempts = match std::env::var("OCTO_FEED_ATTEMPTS") {
        Ok(text) => text
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=20).contains(n))
            .with_context(|| format!("OCTO_FEED_ATTEMPTS={text:?}: expected 1 to 20"))?,
        Err(_) => defaults.attempts,
    };
    let mut config = ClientConfig {
        attempts,
        idle_timeout: env_duration("OCTO_FEED_TIMEOUT", defaults.idle_timeout)?,
        connect_timeout: env_duration("OCTO_FEED_CONNECT_TIMEOUT", defaults.connect_timeout)?,
        backoff_base: env_duration("OCTO_FEED_BACKOFF", defaults.backoff_base)?,
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
    Ok(FeedClient::new(config)?)
}

/// The pinned feed key from the settings (needed online and for offline bundles).
pub fn pinned_key(settings: &Settings) -> anyhow::Result<FeedPublicKey> {
    let Some(text) = settings.feed_public_key.as_deref() else {
        bail!(
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
}

impl StepsFeed {
    /// Checks the `stepTemplateUpdates` gate, the feed URL and the pinned key; makes no request.
    pub fn open(home: &Home, settings: &Settings) -> anyhow::Result<Self> {
        Destination::StepsFeed.check(home, settings)?;
        let url = settings.feed_url.trim().trim_end_matches('/').to_string();
        if url.is_empty() {
            bail!(
                "no steps feed is configured; set one with `octo configure --{}=URL`",
                keys::FEED
            );
        }
        let key = pinned_key(settings)?;
        Ok(StepsFeed {
            client: client(settings)?,
            url,
            key,
        })
    }

    /// The feed's base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `GET {feed}/index.json` and `index.json.sig`, verified against the pinned key.
    pub async fn fetch_index(&self) -> anyhow::Result<FetchedIndex> {
        self.client
            .fetch_index(&self.url, &self.key)
            .await
            .with_context(|| format!("cannot read the steps feed {}", self.url))
    }

    /// `GET` one blob into a verified temporary file in `dir`, with a progress bar on a terminal.
    pub async fn download(
        &self,
        fetched: &FetchedIndex,
        entry: &Entry,
        dir: &Path,
    ) -> anyhow::Result<PathBuf> {
        let url = fetched.blob_url(entry);
        let bar = progress_bar(
            &format!("{} {}", entry.manifest.id, entry.version),
            entry.size,
        );
        let progress = |done: u64, total: u64| {
            if let Some(bar) = &bar {
                bar.set_length(total);
                bar.set_position(done);
            }
        };
        let result = self
            .client
            .download_verified_with_progress(&url, &entry.sha256, entry.size, dir, &progress)
            .await;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        Ok(result?)
    }
}

/// A download progress bar, only when stderr is a terminal.
fn progress_bar(label: &str, total: u64) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg} [{bar:24}] {bytes}/{total_bytes}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(label.to_string());
    Some(bar)
}

/// The community library feed, after the gate was checked.
pub struct LibraryFeed {
    client: FeedClient,
    url: String,
}

impl LibraryFeed {
    /// Checks the `communityStepTemplates` gate and the URL; makes no request.
    pub fn open(home: &Home, settings: &Settings) -> anyhow::Result<Self> {
        Destination::CommunityLibrary.check(home, settings)?;
        let url = settings
            .library_feed_url
            .trim()
            .trim_end_matches('/')
            .to_string();
        if url.is_empty() {
            bail!(
                "no library feed is configured; set one with `octo configure --{}=URL`",
                keys::LIBRARY_FEED
            );
        }
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
    pub async fn fetch_templates(&self) -> anyhow::Result<Vec<u8>> {
        let url = self.templates_url();
        self.client
            .get_bytes(&url)
            .await
            .with_context(|| format!("cannot read the community library {url}"))
    }
}

/// A small runtime for one command's requests.
pub fn block_on<F: std::future::Future>(future: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    Ok(runtime.block_on(future))
}
