//! `tentacle agent`: the identity, the trust store (kept in step with `tentacle.toml`), the
//! service, and the listening and polling connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use octo_comms::backoff::Backoff;
use octo_comms::endpoint::{self, DialTarget};
use octo_comms::identity::{Identity, Thumbprint};
use octo_comms::rpc::H2Options;
use octo_comms::tls::{TlsClient, TlsServer};
use octo_comms::trust::TrustStore;
use octo_runtime::{Runtime, RuntimeConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::files::FileArea;
use crate::home::Home;
use crate::packages::PackageCache;
use crate::plugins::PluginCache;
use crate::service::TentacleService;
use crate::settings::{self, Settings};
use crate::steps::Steps;

/// The subject name of a tentacle's certificate.
pub const CERTIFICATE_NAME: &str = "Octo Tentacle";

/// Loads the identity in `home`, creating it on first use.
pub fn identity(home: &Home) -> anyhow::Result<Identity> {
    Ok(Identity::load_or_create(&home.certs(), CERTIFICATE_NAME)?)
}

/// The service over the parts in `home`.
pub fn service(home: &Home) -> anyhow::Result<(Arc<TentacleService>, Arc<Steps>)> {
    let settings_path = home.settings();
    let loaded = settings::load(&settings_path)?;
    let limits = octo_runtime::Limits::default()
        .with_settings(loaded.limits.iter().map(|(k, v)| (k.as_str(), *v)))
        .with_context(|| format!("{}", settings_path.display()))?;
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(home.compiled_cache()),
        max_instances: 16,
        limits,
        ..RuntimeConfig::default()
    })
    .map_err(|e| anyhow::anyhow!("cannot start the plugin runtime: {e}"))?;
    let plugins = PluginCache::new(home.plugins());
    let packages = PackageCache::new(home.packages(), loaded.package_cache_budget());
    let steps = Arc::new(
        Steps::open(home.work(), Arc::new(runtime), plugins.clone())?
            .with_packages(packages.clone(), home.applications())
            .with_download_log(crate::download::DownloadLog::in_dir(&home.logs())),
    );
    let service = Arc::new(
        TentacleService::new(steps.clone(), plugins, FileArea::new(home.files()))
            .with_packages(packages),
    );
    Ok((service, steps))
}

/// A running agent.
pub struct RunningAgent {
    /// Where it listens, when listening.
    pub listening: Option<SocketAddr>,
    /// This tentacle's thumbprint.
    pub thumbprint: Thumbprint,
    /// Cancel to stop everything.
    pub shutdown: CancellationToken,
}

/// Starts the agent as configured in `home`.
pub async fn start(home: &Home) -> anyhow::Result<RunningAgent> {
    let identity = identity(home)?;
    let settings_path = home.settings();
    let settings = settings::load(&settings_path)?;
    if !settings.listen && settings.servers.is_empty() {
        anyhow::bail!(
            "this tentacle neither listens nor polls a server; run `tentacle configure --port N` or `tentacle poll-server`"
        );
    }
    let trust = TrustStore::from_thumbprints(settings.all_trusted());
    let (service, steps) = service(home)?;
    let web_proxy = settings
        .web_proxy
        .resolve()
        .context("the web request proxy (`tentacle proxy`)")?;
    steps.set_web_proxy(web_proxy.map(Arc::new));
    let shutdown = CancellationToken::new();
    let options = H2Options::default();

    let mut listening = None;
    if settings.listen {
        let address = format!("{}:{}", settings.listen_address, settings.port);
        let listener = TcpListener::bind(&address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
        listening = Some(listener.local_addr()?);
        let tls = TlsServer::new(&identity, trust.clone())?;
        tokio::spawn(endpoint::serve_listening(
            listener,
            tls,
            service.clone(),
            options.clone(),
            shutdown.clone(),
        ));
    }
    for server in &settings.servers {
        let (host, port) = settings::parse_server_address(&server.address)?;
        let proxy = settings
            .polling_proxy
            .proxy_for(&host)
            .context("the polling proxy (`tentacle polling-proxy`)")?;
        if let Some(proxy) = &proxy {
            tracing::info!(server = %server.address, proxy = %proxy.authority(), "polling through a proxy");
        }
        let tls = TlsClient::new(&identity, trust.clone())?;
        for _ in 0..settings.polling_connection_count.max(1) {
            tokio::spawn(endpoint::run_polling(
                DialTarget::new(host.clone(), port).with_proxy(proxy.clone()),
                tls.clone(),
                Some(server.thumbprint),
                service.clone(),
                options.clone(),
                Backoff::new(Duration::from_millis(200), Duration::from_secs(30)),
                shutdown.clone(),
            ));
        }
    }
    tokio::spawn(follow_trust(
        settings_path,
        settings,
        trust,
        shutdown.clone(),
    ));
    Ok(RunningAgent {
        listening,
        thumbprint: identity.thumbprint(),
        shutdown,
    })
}

/// Re-reads `tentacle.toml` when it changes, so that `tentacle configure --remove-trust` closes
/// the live connections of that server at once.
async fn follow_trust(
    path: std::path::PathBuf,
    mut current: Settings,
    trust: TrustStore,
    shutdown: CancellationToken,
) {
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut seen: Option<SystemTime> = modified(&path);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shutdown.cancelled() => return,
        }
        let now = modified(&path);
        if now == seen {
            continue;
        }
        seen = now;
        match settings::load(&path) {
            Ok(settings) => {
                if settings.all_trusted() != current.all_trusted() {
                    tracing::info!("the trusted thumbprints changed; applying them");
                    trust.replace_all(settings.all_trusted());
                }
                if settings.servers != current.servers || settings.listen != current.listen {
                    tracing::warn!(
                        "the listening or polling configuration changed; restart the agent to apply it"
                    );
                }
                current = settings;
            }
            Err(error) => tracing::warn!(%error, "cannot re-read the settings"),
        }
    }
}
