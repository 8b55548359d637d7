//! `octo run`: the polling listener, the connection pool, and the admin socket.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;
use octo_comms::endpoint;
use octo_comms::rpc::H2Options;
use octo_comms::tls::{TlsClient, TlsServer};
use octo_comms::trust::TrustStore;
use octo_protocol::{Capabilities, Empty, Sha256Digest, StartStep, Ticket, paths};
use octo_store::{
    Claimed, NewPart, NewTask, NodeControl, NodeStart, Queue, Store, TaskId, TaskKind, TaskState,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::Ready;
use super::pool::Pool;
use super::remote::{Job, Part, run_part, task_state};
use crate::admin::{self, AdminEvent, AdminRequest, RemoteRun};
use crate::error::{Context, Error, Result};
use crate::home::Home;
use crate::sink::Sink;
use crate::targets;

struct Daemon {
    home: Home,
    trust: TrustStore,
    pool: Arc<Pool>,
    runs: AtomicU64,
    store: Arc<dyn Store>,
    /// Cancellation of the tasks running here, by id.
    running: Mutex<HashMap<TaskId, CancellationToken>>,
    /// This node's name (`--node`) and this start's random id.
    node: String,
    instance: String,
    /// Its cap and draining flag, as last read from the store.
    control: Mutex<NodeControl>,
    /// The steps of tasks pinned to this node (sensitive variables, local package files), kept in
    /// memory only, until claimed.
    pending: Mutex<HashMap<TaskId, Arc<Job>>>,
    /// Whom to tell about a task this node runs: the CLI that asked for it here.
    watchers: Mutex<HashMap<TaskId, Watcher>>,
    /// The components of the tasks this node claimed last, by sha256.
    components: Mutex<RecentComponents>,
    /// Held while claiming: one claim at a time on this node.
    claiming: tokio::sync::Mutex<()>,
    /// Claim now (a task was queued here, or one ended).
    wake: Notify,
    /// Whether this node runs the scheduled jobs (one node of the cluster does).
    leader: Arc<std::sync::atomic::AtomicBool>,
    /// How long without a heartbeat before a node counts as gone.
    timeout: Duration,
}

/// The CLI waiting for a task this node runs.
struct Watcher {
    events: mpsc::UnboundedSender<AdminEvent>,
    done: oneshot::Sender<TaskState>,
}

/// What any node needs to run a task it did not receive (stored with the queued task).
#[derive(serde::Serialize, serde::Deserialize)]
struct Spec {
    /// The component's sha256 (in the store's `task_components`).
    plugin: String,
    /// The start request (each part's ticket is stored with the part).
    start: StartStep,
}

/// This server as a node: `octo run --node NAME --nodeTimeout D`.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Its name (default: the host name).
    pub name: String,
    /// How long a node may go without a heartbeat before its tasks are marked.
    pub timeout: Duration,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How often the daemon checks whether another node changed the shared targets or settings.
const SHARED_CHECK: Duration = Duration::from_secs(1);

/// How often kept components are pruned, and how old one must be to go.
const COMPONENT_PRUNING: Duration = Duration::from_secs(3600);

/// How many components a node keeps in memory after reading them from the store.
const RECENT_COMPONENTS: usize = 8;

/// The components a node read from the store last, so that the tasks of one plugin run one after
/// another do not read it again; the oldest goes when a new one comes (authors iterating on a
/// step would otherwise keep every build in memory).
#[derive(Default)]
struct RecentComponents {
    /// Oldest first.
    entries: std::collections::VecDeque<(String, Arc<Vec<u8>>)>,
}

impl RecentComponents {
    /// The component, now the newest.
    fn get(&mut self, sha256: &str) -> Option<Arc<Vec<u8>>> {
        let at = self.entries.iter().position(|(s, _)| s == sha256)?;
        let entry = self.entries.remove(at)?;
        let bytes = entry.1.clone();
        self.entries.push_back(entry);
        Some(bytes)
    }

    fn insert(&mut self, sha256: &str, bytes: Arc<Vec<u8>>) {
        self.entries.retain(|(s, _)| s != sha256);
        if self.entries.len() == RECENT_COMPONENTS {
            self.entries.pop_front();
        }
        self.entries.push_back((sha256.to_string(), bytes));
    }
}

fn tls_error(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::other(e)
}

/// Runs the daemon until SIGINT/SIGTERM.
pub async fn run(
    home: &Home,
    listen_address: &str,
    port: u16,
    node: &NodeOptions,
    on_ready: impl FnOnce(&Ready),
    sink: &Sink,
) -> Result<()> {
    // Work directories of `octo run-step`s that were killed before they could remove theirs.
    crate::runs::work_dirs::remove_abandoned(&home.work()?);
    // The store first: a server that cannot keep its tasks does not start.
    let store = crate::tasks::open_store(home).await?;
    let identity = super::identity(home)?;
    let targets = crate::shared::load::<targets::Targets>(&*store, home)
        .await?
        .0;
    let settings_revision = crate::shared::settings::sync(&*store, home).await?;
    let trust = TrustStore::from_thumbprints(targets.thumbprints());
    let options = H2Options::default();
    let mut pool = Pool::new(
        TlsClient::new(&identity, trust.clone()).map_err(tls_error)?,
        options.clone(),
    )
    .with_home(home);
    // A shared store (PostgreSQL) means other nodes: calls for polling tentacles connected to
    // one of them are relayed through it, and this node performs theirs.
    let relay = match crate::tasks::location(home)? {
        octo_store::Location::Postgres(url) => {
            let call_timeout = options.call_timeout.unwrap_or(Duration::from_secs(60));
            let relay =
                super::relay::Relay::connect(&url, &identity, node.name.clone(), call_timeout)
                    .await?;
            pool = pool.with_relay(relay.clone());
            Some(relay)
        }
        octo_store::Location::Sqlite(_) => None,
    };
    let pool = Arc::new(pool);
    if let Some(relay) = relay {
        tokio::spawn(super::relay::serve(relay, pool.clone()));
    }
    let shutdown = CancellationToken::new();

    let address = format!("{listen_address}:{port}");
    let listener = TcpListener::bind(&address)
        .await
        .with_context(|| format!("cannot listen for polling tentacles on {address}"))?;
    let polling_address = listener.local_addr()?;
    let (tx, mut rx) = mpsc::channel(1024);
    tokio::spawn(endpoint::accept_polling(
        listener,
        TlsServer::new(&identity, trust.clone()).map_err(tls_error)?,
        options,
        tx,
        shutdown.clone(),
    ));
    let accept_pool = pool.clone();
    tokio::spawn(async move {
        while let Some(connected) = rx.recv().await {
            accept_pool.add_polling(connected);
        }
    });

    let socket = home.socket();
    if socket.exists() {
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            bail!(
                Invalid,
                "another Octo server is already running with home {}",
                home.root().display()
            );
        }
        std::fs::remove_file(&socket).ok();
    }
    let admin_listener = UnixListener::bind(&socket)
        .with_context(|| format!("cannot create the admin socket {}", socket.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;
    }
    // This node: refused while another running octo holds the name.
    let instance = crate::nodes::random_id()?;
    let control = store
        .register_node(&NodeStart {
            name: node.name.clone(),
            instance: instance.clone(),
            home_id: crate::nodes::home_id(home)?,
            timeout: node.timeout,
        })
        .await
        .map_err(|e| {
            std::fs::remove_file(&socket).ok();
            Error::from(e)
        })?;
    crate::nodes::remember(home, &node.name)?;
    let daemon = Arc::new(Daemon {
        home: home.clone(),
        trust,
        pool,
        runs: AtomicU64::new(0),
        store: store.clone(),
        running: Mutex::new(HashMap::new()),
        node: node.name.clone(),
        instance,
        control: Mutex::new(control),
        pending: Mutex::new(HashMap::new()),
        watchers: Mutex::new(HashMap::new()),
        components: Mutex::new(RecentComponents::default()),
        claiming: tokio::sync::Mutex::new(()),
        wake: Notify::new(),
        leader: Arc::new(std::sync::atomic::AtomicBool::new(!store.shared())),
        timeout: node.timeout,
    });
    daemon.elect().await;
    let fatal = CancellationToken::new();
    tokio::spawn(daemon.clone().heartbeats(fatal.clone()));
    tokio::spawn(daemon.clone().claims());
    tokio::spawn(daemon.clone().follow_shared(settings_revision));
    tokio::spawn(daemon.clone().prune_components());
    // Tasks an earlier run of the daemon left running: follow each tentacle's journal again from
    // the last stored sequence.
    daemon.clone().resume().await;
    let admin_daemon = daemon.clone();
    tokio::spawn(async move {
        loop {
            match admin_listener.accept().await {
                Ok((stream, _)) => {
                    let daemon = admin_daemon.clone();
                    tokio::spawn(async move {
                        if let Err(error) = daemon.serve_admin(stream).await {
                            tracing::debug!(%error, "admin connection ended");
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "admin socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });

    spawn_job_scheduler(
        home.clone(),
        record_jobs(sink.clone(), store, tokio::runtime::Handle::current()),
        daemon.leader.clone(),
    );

    on_ready(&Ready {
        thumbprint: identity.thumbprint(),
        polling_address,
        admin_socket: socket.clone(),
    });

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let lost = tokio::select! {
        _ = tokio::signal::ctrl_c() => false,
        _ = term.recv() => false,
        _ = fatal.cancelled() => true,
    };
    shutdown.cancel();
    std::fs::remove_file(&socket).ok();
    if lost {
        bail!(
            Failed,
            "another octo took over the node name {} (this one's heartbeat was too old); this node stops",
            node.name
        );
    }
    Ok(())
}

impl Daemon {
    async fn serve_admin(self: Arc<Self>, stream: UnixStream) -> Result<()> {
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        let mut line = Vec::new();
        let n = (&mut reader)
            .take(admin::MAX_REQUEST_LINE as u64)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<AdminEvent>();
        let request = serde_json::from_slice::<AdminRequest>(&line);
        // The CLI sends nothing after its request: end of input means it went away (e.g. Ctrl-C),
        // and a step it started is cancelled on its targets.
        let abandoned = CancellationToken::new();
        let watcher = tokio::spawn({
            let abandoned = abandoned.clone();
            async move {
                let mut rest = [0u8; 64];
                while let Ok(n) = reader.read(&mut rest).await {
                    if n == 0 {
                        break;
                    }
                }
                abandoned.cancel();
            }
        });
        let worker = tokio::spawn({
            let daemon = self.clone();
            async move {
                let ok = match request {
                    Ok(request) => daemon.handle(request, &tx, abandoned).await,
                    Err(e) => {
                        let _ = tx.send(AdminEvent::Error {
                            message: format!("invalid admin request: {e}"),
                        });
                        false
                    }
                };
                let _ = tx.send(AdminEvent::Done { ok });
            }
        });
        while let Some(event) = rx.recv().await {
            let mut bytes = serde_json::to_vec(&event)?;
            bytes.push(b'\n');
            if write.write_all(&bytes).await.is_err() {
                // The CLI went away; the work goes on.
                break;
            }
        }
        let _ = worker.await;
        watcher.abort();
        Ok(())
    }

    async fn handle(
        self: &Arc<Self>,
        request: AdminRequest,
        tx: &mpsc::UnboundedSender<AdminEvent>,
        abandoned: CancellationToken,
    ) -> bool {
        let result = match request {
            AdminRequest::Reload => self.reload().await.map(|m| {
                let _ = tx.send(AdminEvent::Ok { message: m });
                true
            }),
            AdminRequest::Health { targets } => self.health(targets, tx).await,
            AdminRequest::RunStep(run) => self.run_step(run, tx, abandoned).await,
            AdminRequest::CancelTask { id } => self.cancel_task(id).await.map(|m| {
                let _ = tx.send(AdminEvent::Ok { message: m });
                true
            }),
        };
        result.unwrap_or_else(|e| {
            let _ = tx.send(AdminEvent::Error {
                message: e.one_line(),
            });
            false
        })
    }

    async fn targets(&self) -> Result<targets::Targets> {
        let targets = crate::shared::load::<targets::Targets>(&*self.store, &self.home)
            .await?
            .0;
        // Trust follows the shared targets: a removed target's connections close.
        self.trust.replace_all(targets.thumbprints());
        Ok(targets)
    }

    /// Trust follows targets changed by another node (or a CLI that could not tell this daemon), and
    /// this node's `octo.toml` follows the shared settings: each document's revision is checked every
    /// [`SHARED_CHECK`].
    async fn follow_shared(self: Arc<Self>, mut settings_seen: i64) {
        let mut targets_seen = crate::shared::revision::<targets::Targets>(&*self.store)
            .await
            .unwrap_or(0);
        loop {
            tokio::time::sleep(SHARED_CHECK).await;
            match crate::shared::revision::<targets::Targets>(&*self.store).await {
                Ok(revision) if revision != targets_seen => match self.targets().await {
                    Ok(_) => targets_seen = revision,
                    Err(error) => tracing::warn!(%error, "cannot read the changed targets"),
                },
                Ok(_) => {}
                Err(error) => tracing::debug!(%error, "cannot check the targets' revision"),
            }
            match crate::shared::settings::revision(&*self.store).await {
                Ok(revision) if revision != settings_seen => {
                    match crate::shared::settings::sync(&*self.store, &self.home).await {
                        Ok(revision) => settings_seen = revision,
                        Err(error) => tracing::warn!(%error, "cannot follow the shared settings"),
                    }
                }
                Ok(_) => {}
                Err(error) => tracing::debug!(%error, "cannot check the settings' revision"),
            }
        }
    }

    async fn reload(&self) -> Result<String> {
        let targets = self.targets().await?;
        Ok(format!(
            "{} targets; {} polling connections",
            targets.targets.len(),
            self.pool.polling_connections()
        ))
    }

    async fn health(
        &self,
        names: Vec<String>,
        tx: &mpsc::UnboundedSender<AdminEvent>,
    ) -> Result<bool> {
        let all = self.targets().await?;
        let selected = if names.is_empty() {
            all.targets.clone()
        } else {
            all.select(&names, &[])?
        };
        let checks = selected.into_iter().map(|target| {
            let pool = self.pool.clone();
            async move {
                let started = Instant::now();
                let answer = async {
                    let client = pool
                        .client(&target, Duration::from_secs(5))
                        .await
                        .map_err(|e| e.to_string())?;
                    client
                        .call_json::<_, Capabilities>(paths::CAPABILITIES, &Empty {})
                        .await
                        .map_err(|e| e.to_string())
                }
                .await;
                let millis = started.elapsed().as_secs_f64() * 1000.0;
                match answer {
                    Ok(c) => AdminEvent::Health {
                        target: target.name,
                        ok: true,
                        detail: format!("{} {}/{}", c.agent, c.os, c.arch),
                        millis,
                    },
                    Err(e) => AdminEvent::Health {
                        target: target.name,
                        ok: false,
                        detail: e,
                        millis,
                    },
                }
            }
        });
        let mut ok = true;
        for event in join_all(checks).await {
            if let AdminEvent::Health { ok: false, .. } = event {
                ok = false;
            }
            let _ = tx.send(event);
        }
        Ok(ok)
    }

    async fn run_step(
        self: &Arc<Self>,
        run: RemoteRun,
        tx: &mpsc::UnboundedSender<AdminEvent>,
        abandoned: CancellationToken,
    ) -> Result<bool> {
        let selected = self.targets().await?.select(&run.targets, &run.roles)?;
        if selected.is_empty() {
            bail!(NotFound, "no target selected");
        }
        let plugin = base64::engine::general_purpose::STANDARD
            .decode(run.plugin_base64.as_bytes())
            .map_err(|e| err!(Invalid, "the plugin is not valid base64: {e}"))?;
        let digest = Sha256Digest::of(&plugin);
        let settings = self.home.load_settings()?;
        let number = self.runs.fetch_add(1, Ordering::Relaxed);
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        // Unique across nodes: this start's id is part of it.
        let prefix = format!("run-{millis}-{}-{number}", &self.instance[..8]);
        let package_paths = run
            .package
            .as_ref()
            .map(|p| p.paths.clone())
            .unwrap_or_default();
        let job = Arc::new(Job {
            plugin,
            package_paths,
            start: StartStep {
                ticket: Ticket::parse(&prefix).map_err(Error::other)?,
                plugin: digest,
                arguments: run.arguments,
                variables: run.variables,
                grants: run.grants,
                deadline_ms: run.deadline_ms,
                script_network: match settings.effective_script_network() {
                    octo_settings::ScriptNetwork::Audited => octo_protocol::ScriptNetwork::Audited,
                    octo_settings::ScriptNetwork::Confined => {
                        octo_protocol::ScriptNetwork::Confined
                    }
                },
                // While air-gapped the tentacle checks where a granted name resolves, as we do.
                internal_networks: settings.air_gapped().then(|| {
                    settings
                        .internal_networks
                        .entries()
                        .iter()
                        .map(ToString::to_string)
                        .collect()
                }),
                package: run.package.map(|p| p.step),
            },
        });
        let tickets: Vec<(String, Ticket)> = selected
            .into_iter()
            .enumerate()
            .map(|(i, target)| {
                let ticket = Ticket::parse(&format!("{prefix}-{i}")).expect("a valid ticket");
                (target.name, ticket)
            })
            .collect();
        let new_task = NewTask {
            kind: TaskKind::RunStep,
            name: run.origin.clone(),
            parts: tickets
                .iter()
                .map(|(target, ticket)| NewPart {
                    target: target.clone(),
                    ticket: ticket.to_string(),
                })
                .collect(),
        };
        // A task any node may claim carries its spec, the component kept in the store by digest.
        // Sensitive variables never go to the store in clear, and package files live on this node:
        // such a task is pinned to this node and its step stays in this node's memory.
        let pinned = !self.store.shared()
            || job.start.variables.iter().any(|v| v.sensitive)
            || !job.package_paths.is_empty();
        let mut queue = if pinned {
            Queue {
                spec: None,
                component: None,
                pinned_node: Some(self.node.clone()),
                claimed_by: None,
            }
        } else {
            self.store
                .put_component(&digest.to_string(), &job.plugin)
                .await
                .context("cannot keep the component in the store")?;
            Queue {
                spec: Some(serde_json::to_string(&Spec {
                    plugin: digest.to_string(),
                    start: job.start.clone(),
                })?),
                component: Some(digest.to_string()),
                pinned_node: None,
                claimed_by: None,
            }
        };
        let (done_tx, done_rx) = oneshot::channel();
        let here = {
            let _claiming = self.claiming.lock().await;
            // This node takes its own task as it records it when it has room (so the CLI gets
            // log lines straight from it, and no other node is woken for it); else another node
            // (or this one, later) claims it.
            if self.room() > 0 {
                queue.claimed_by = Some(self.node.clone());
            }
            let id = self
                .store
                .enqueue_task(&new_task, &queue)
                .await
                .context("cannot record the task")?;
            let _ = tx.send(AdminEvent::Task { id });
            if pinned {
                lock(&self.pending).insert(id, job.clone());
            }
            if !run.detach {
                lock(&self.watchers).insert(
                    id,
                    Watcher {
                        events: tx.clone(),
                        done: done_tx,
                    },
                );
            }
            let here = queue.claimed_by.is_some();
            if here {
                let claim = Claimed {
                    id,
                    spec: queue.spec.clone(),
                };
                self.clone().start_claimed(claim).await;
            }
            (id, here)
        };
        let (id, here) = here;
        if run.detach {
            return Ok(true);
        }
        if !here {
            lock(&self.watchers).remove(&id);
            return self.relay(id, tx, abandoned).await;
        }
        // The CLI going away (Ctrl-C) cancels the task.
        let cancel = lock(&self.running).get(&id).cloned();
        let watcher = tokio::spawn(async move {
            abandoned.cancelled().await;
            if let Some(cancel) = cancel {
                cancel.cancel();
            }
        });
        let state = done_rx.await.unwrap_or(TaskState::Unknown);
        watcher.abort();
        Ok(state == TaskState::Succeeded)
    }

    /// Claims what this node may run now and starts it. The caller holds `claiming`.
    async fn claim_locked(self: &Arc<Self>) {
        let claimed = match self.store.claim_tasks(&self.node, self.room()).await {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(%error, "cannot claim tasks");
                return;
            }
        };
        for claim in claimed {
            self.clone().start_claimed(claim).await;
        }
    }

    /// How many more tasks this node may run now (none while draining).
    fn room(&self) -> usize {
        let control = *lock(&self.control);
        if control.draining {
            return 0;
        }
        (control.cap as usize).saturating_sub(lock(&self.running).len())
    }

    /// Starts a task this node claimed.
    async fn start_claimed(self: Arc<Self>, claim: Claimed) {
        let id = claim.id;
        let cancel = self.register(id);
        let prepared = async {
            let task = self
                .store
                .task(id)
                .await?
                .ok_or_else(|| err!(NotFound, "no task {id}"))?;
            if task.cancel_requested {
                cancel.cancel();
            }
            let job = match &claim.spec {
                None => lock(&self.pending).remove(&id).ok_or_else(|| {
                    err!(
                        Failed,
                        "the node {} restarted before it started this task (its sensitive variables were only in its memory); run it again",
                        self.node
                    )
                })?,
                Some(spec) => {
                    let spec: Spec = serde_json::from_str(spec)?;
                    Arc::new(Job {
                        plugin: self.component(&spec.plugin).await?.to_vec(),
                        package_paths: Vec::new(),
                        start: spec.start,
                    })
                }
            };
            let targets = self.targets().await?;
            let mut parts = Vec::new();
            for stored in &task.parts {
                let target = targets
                    .targets
                    .iter()
                    .find(|t| t.name == stored.target)
                    .cloned()
                    .ok_or_else(|| {
                        err!(
                            NotFound,
                            "the target {} is not configured on node {}",
                            stored.target,
                            self.node
                        )
                    })?;
                parts.push(Part {
                    task: id,
                    target,
                    ticket: Ticket::parse(&stored.ticket).map_err(Error::other)?,
                    job: Some(job.clone()),
                });
            }
            Ok::<_, Error>(parts)
        }
        .await;
        let events = lock(&self.watchers)
            .get(&id)
            .map(|w| w.events.clone())
            .unwrap_or_else(|| mpsc::unbounded_channel().0);
        match prepared {
            Ok(parts) => {
                tokio::spawn(self.clone().run_task(id, parts, events, cancel));
            }
            Err(error) => {
                let outcome = octo_store::PartOutcome {
                    failure: Some(error.one_line()),
                    ..Default::default()
                };
                if let Ok(Some(task)) = self.store.task(id).await {
                    for part in &task.parts {
                        let _ = self
                            .store
                            .finish_part(id, &part.target, TaskState::Failed, &outcome)
                            .await;
                        let _ = events.send(AdminEvent::Result {
                            target: part.target.clone(),
                            state: octo_protocol::StepState::Failed,
                            message: outcome.failure.clone(),
                            outputs: Vec::new(),
                            artifacts: Vec::new(),
                            outbound: Vec::new(),
                        });
                    }
                }
                let count = 0;
                self.end_task(id, count, vec![TaskState::Failed]).await;
            }
        }
    }

    /// A component of a claimed task, from memory or the store (checked against its digest).
    async fn component(&self, sha256: &str) -> Result<Arc<Vec<u8>>> {
        if let Some(bytes) = lock(&self.components).get(sha256) {
            return Ok(bytes);
        }
        let bytes = self
            .store
            .component(sha256)
            .await?
            .ok_or_else(|| err!(NotFound, "the component {sha256} is not in the store"))?;
        if Sha256Digest::of(&bytes).to_string() != sha256 {
            bail!(
                Failed,
                "the component {sha256} in the store does not match its digest"
            );
        }
        let bytes = Arc::new(bytes);
        lock(&self.components).insert(sha256, bytes.clone());
        Ok(bytes)
    }

    /// Hourly, on the node that runs the scheduled jobs: drops the components the store kept for
    /// tasks that have ended and for plugins no longer shared, once they are an hour old (a task or
    /// plugin about to be recorded stores its component again first, which makes it young).
    async fn prune_components(self: Arc<Self>) {
        loop {
            tokio::time::sleep(COMPONENT_PRUNING).await;
            if !self.leader.load(Ordering::Relaxed) {
                continue;
            }
            match self.prune_components_once().await {
                Ok(0) => {}
                Ok(dropped) => tracing::info!(dropped, "dropped kept components nothing names"),
                Err(error) => {
                    tracing::warn!(%error, "cannot drop the kept components nothing names")
                }
            }
        }
    }

    /// Drops the kept components no unfinished task and no shared plugin names, an hour old.
    async fn prune_components_once(&self) -> Result<usize> {
        let keep = crate::shared::plugins::named_components(&*self.store).await?;
        Ok(self
            .store
            .prune_components(&keep, COMPONENT_PRUNING)
            .await?)
    }

    /// Follows a task another node runs, through the store, for the CLI that asked for it here:
    /// its log lines (per target, by sequence), each target's result, and its end. The CLI going
    /// away asks for its cancellation in the store; the node running it notices.
    async fn relay(
        &self,
        id: TaskId,
        tx: &mpsc::UnboundedSender<AdminEvent>,
        abandoned: CancellationToken,
    ) -> Result<bool> {
        let mut cursors: Vec<(String, u64)> = Vec::new();
        let mut told = std::collections::HashSet::new();
        let mut cancel_asked = false;
        let mut failing_since: Option<Instant> = None;
        loop {
            if abandoned.is_cancelled() && !cancel_asked {
                cancel_asked = self.store.request_cancel(id).await.is_ok();
            }
            let step = async {
                let task = self
                    .store
                    .task(id)
                    .await?
                    .ok_or_else(|| err!(NotFound, "no task {id}"))?;
                if cursors.is_empty() {
                    cursors = task.parts.iter().map(|p| (p.target.clone(), 0)).collect();
                }
                // Every line stored before that snapshot of the task, then its results.
                loop {
                    let lines = self.store.log_since(id, &cursors, 1_000).await?;
                    if lines.is_empty() {
                        break;
                    }
                    for line in lines {
                        if let Some(c) = cursors.iter_mut().find(|(t, _)| *t == line.target) {
                            c.1 = c.1.max(line.sequence);
                        }
                        let _ = tx.send(AdminEvent::Log {
                            target: line.target,
                            sequence: line.sequence,
                            level: serde_json::from_value(serde_json::Value::String(line.level))
                                .unwrap_or(octo_protocol::LogLevel::Info),
                            message: line.message,
                        });
                    }
                }
                Ok::<_, Error>(task)
            }
            .await;
            match step {
                Ok(task) => {
                    failing_since = None;
                    for part in task.parts.iter().filter(|p| p.state.is_terminal()) {
                        if told.insert(part.target.clone()) {
                            let _ = tx.send(AdminEvent::Result {
                                target: part.target.clone(),
                                state: step_state(part.state),
                                message: part.outcome.failure.clone(),
                                outputs: part.outcome.outputs.clone(),
                                artifacts: part.outcome.artifacts.clone(),
                                outbound: part.outcome.outbound.clone(),
                            });
                        }
                    }
                    if task.state.is_terminal() {
                        return Ok(task.state == TaskState::Succeeded);
                    }
                }
                Err(error) => {
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_secs(120) {
                        return Err(error).context(format!("cannot follow task {id}"));
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = abandoned.cancelled(), if !cancel_asked => {}
            }
        }
    }

    /// Which node runs the scheduled jobs: the live node with the smallest name (so a job runs
    /// once per period in the cluster, not once per node). A SQLite store has one node.
    async fn elect(&self) {
        if !self.store.shared() {
            return;
        }
        if let Ok(nodes) = self.store.nodes().await {
            let leader = nodes
                .iter()
                .filter(|n| n.state() != "offline")
                .map(|n| n.name.as_str())
                .min();
            self.leader
                .store(leader == Some(self.node.as_str()), Ordering::Relaxed);
        }
    }

    /// Heartbeats, taking in what an administrator set (cap, draining); marks the tasks of nodes
    /// that stopped heartbeating — only after this node itself has reached the store for a whole
    /// timeout, so that after a database outage every live node has had time to heartbeat first.
    async fn heartbeats(self: Arc<Self>, fatal: CancellationToken) {
        let every = (self.timeout / 3).clamp(Duration::from_millis(100), Duration::from_secs(5));
        let mut healthy_since = Some(Instant::now());
        let mut told = false;
        loop {
            tokio::time::sleep(every).await;
            match self.store.heartbeat(&self.node, &self.instance).await {
                Ok(Some(control)) => {
                    let before = std::mem::replace(&mut *lock(&self.control), control);
                    if before != control {
                        tracing::info!(node = %self.node, cap = control.cap, draining = control.draining, "node settings changed");
                        self.wake.notify_one();
                    }
                    healthy_since.get_or_insert_with(Instant::now);
                    if told {
                        tracing::warn!("the store is reachable again");
                        told = false;
                    }
                }
                Ok(None) => {
                    tracing::error!(node = %self.node, "another octo took over this node's name");
                    fatal.cancel();
                    return;
                }
                Err(error) => {
                    if !told {
                        tracing::warn!(%error, "cannot heartbeat; claiming nothing until the store is back");
                        told = true;
                    }
                    healthy_since = None;
                    continue;
                }
            }
            if healthy_since.is_some_and(|since| since.elapsed() > self.timeout) {
                match self.store.mark_dead_nodes(&self.node).await {
                    Ok(marked) => {
                        for m in marked {
                            tracing::warn!(node = %m.node, task = m.task, state = %m.state, "marked a task of a node that stopped heartbeating");
                        }
                    }
                    Err(error) => tracing::warn!(%error, "cannot mark the tasks of dead nodes"),
                }
            }
            self.elect().await;
        }
    }

    /// Claims queued tasks when woken (a task queued here, one ended, a database notification)
    /// and every second as a fallback; passes on cancellations asked through the store.
    async fn claims(self: Arc<Self>) {
        let mut wake_ups = self.store.wake_ups();
        loop {
            tokio::select! {
                _ = self.wake.notified() => {}
                woken = async {
                    match wake_ups.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    if woken.is_none() {
                        wake_ups = None;
                    }
                }
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            {
                let _claiming = self.claiming.lock().await;
                self.claim_locked().await;
            }
            if let Ok(ids) = self.store.cancel_requests(&self.node).await {
                for id in ids {
                    if let Some(token) = lock(&self.running).get(&id) {
                        token.cancel();
                    }
                }
            }
        }
    }

    /// A cancellation token for task `id`, until it ends.
    fn register(&self, id: TaskId) -> CancellationToken {
        let token = CancellationToken::new();
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, token.clone());
        token
    }

    /// Runs (or resumes) the parts of task `id`, then stores how it ended.
    async fn run_task(
        self: Arc<Self>,
        id: TaskId,
        parts: Vec<Part>,
        events: mpsc::UnboundedSender<AdminEvent>,
        cancel: CancellationToken,
    ) -> TaskState {
        let count = parts.len();
        let runs = parts.into_iter().map(|part| {
            run_part(
                self.pool.clone(),
                self.store.clone(),
                part,
                events.clone(),
                cancel.clone(),
            )
        });
        let states: Vec<TaskState> = join_all(runs).await.into_iter().map(task_state).collect();
        self.end_task(id, count, states).await
    }

    /// Stores a task's end from its parts' states (all of them, also those that ended before a
    /// restart).
    async fn end_task(&self, id: TaskId, count: usize, fresh: Vec<TaskState>) -> TaskState {
        let states = match self.store.task(id).await {
            Ok(Some(task)) => task.parts.iter().map(|p| p.state).collect(),
            _ => fresh,
        };
        let state = overall(&states);
        let bad = states
            .iter()
            .filter(|s| **s != TaskState::Succeeded)
            .count();
        let message = (bad > 0).then(|| format!("{bad} of {count} targets did not succeed"));
        // Retried while the store is away (a database restart): a task is never left running.
        let mut pause = Duration::from_millis(200);
        while let Err(error) = self.store.finish_task(id, state, message.as_deref()).await {
            tracing::warn!(task = id, %error, "cannot store the end of the task; retrying");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
        lock(&self.running).remove(&id);
        if let Some(watcher) = lock(&self.watchers).remove(&id) {
            let _ = watcher.done.send(state);
        }
        // Room for another task.
        self.wake.notify_one();
        state
    }

    /// `octo tasks cancel ID`.
    async fn cancel_task(&self, id: TaskId) -> Result<String> {
        let asked = self
            .store
            .request_cancel(id)
            .await
            .context("cannot record the cancellation")?;
        let token = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned();
        match (asked, token) {
            (_, Some(token)) => {
                token.cancel();
                Ok(format!("Cancelling task {id}."))
            }
            (true, None) => Ok(format!("Task {id} will be cancelled.")),
            (false, None) => match self.store.task(id).await.ok().flatten() {
                Some(task) => bail!(Invalid, "task {id} has already ended ({})", task.state),
                None => bail!(NotFound, "no task {id}"),
            },
        }
    }

    /// Follows again the parts that a previous run of the daemon left running.
    async fn resume(self: Arc<Self>) {
        let tasks = match self.store.node_tasks(&self.node).await {
            Ok(tasks) => tasks,
            Err(error) => {
                tracing::warn!(%error, "cannot read the unfinished tasks");
                return;
            }
        };
        let targets = self.targets().await.ok();
        for task in tasks {
            let cancel = self.register(task.id);
            if task.cancel_requested {
                cancel.cancel();
            }
            let count = task.parts.len();
            let mut parts = Vec::new();
            for stored in task.parts.iter().filter(|p| !p.state.is_terminal()) {
                let target = targets
                    .as_ref()
                    .and_then(|t| t.targets.iter().find(|t| t.name == stored.target).cloned());
                let ticket = Ticket::parse(&stored.ticket);
                match (target, ticket) {
                    (Some(target), Ok(ticket)) => parts.push(Part {
                        task: task.id,
                        target,
                        ticket,
                        job: None,
                    }),
                    _ => {
                        let outcome = octo_store::PartOutcome {
                            failure: Some(format!(
                                "the target {} is no longer configured; its result is unknown",
                                stored.target
                            )),
                            ..Default::default()
                        };
                        let _ = self
                            .store
                            .finish_part(task.id, &stored.target, TaskState::Unknown, &outcome)
                            .await;
                    }
                }
            }
            tracing::info!(task = task.id, parts = parts.len(), "resuming a task");
            let daemon = self.clone();
            tokio::spawn(async move {
                let (events, _) = mpsc::unbounded_channel();
                if parts.is_empty() {
                    daemon.end_task(task.id, count, Vec::new()).await;
                } else {
                    daemon.run_task(task.id, parts, events, cancel).await;
                }
            });
        }
    }
}

/// What the CLI is told of a part's stored state.
fn step_state(state: TaskState) -> octo_protocol::StepState {
    match state {
        TaskState::Succeeded => octo_protocol::StepState::Succeeded,
        TaskState::Failed => octo_protocol::StepState::Failed,
        TaskState::Cancelled => octo_protocol::StepState::Cancelled,
        _ => octo_protocol::StepState::Unknown,
    }
}

/// A task's state from its parts': succeeded when all did; else failed, cancelled or unknown (in
/// that order of precedence).
fn overall(states: &[TaskState]) -> TaskState {
    if states.iter().all(|s| *s == TaskState::Succeeded) {
        TaskState::Succeeded
    } else if states.contains(&TaskState::Failed) {
        TaskState::Failed
    } else if states.contains(&TaskState::Cancelled) {
        TaskState::Cancelled
    } else {
        TaskState::Unknown
    }
}

/// Every job run becomes a task of its own (kind `job`, no targets), besides going to `sink`.
fn record_jobs(sink: Sink, store: Arc<dyn Store>, runtime: tokio::runtime::Handle) -> Sink {
    Sink::new(move |event| {
        if let crate::sink::Event::Job(run) = &event {
            let state = match run.outcome {
                crate::sink::Outcome::Ok => TaskState::Succeeded,
                crate::sink::Outcome::Failed => TaskState::Failed,
                crate::sink::Outcome::Skipped => TaskState::Skipped,
            };
            let store = store.clone();
            let name = run.name.to_string();
            let message = run.message.clone();
            // The scheduler has a thread of its own, outside the runtime.
            let recorded = runtime.block_on(async move {
                let id = store
                    .create_task(&NewTask {
                        kind: TaskKind::Job,
                        name,
                        parts: Vec::new(),
                    })
                    .await?;
                store.finish_task(id, state, Some(&message)).await
            });
            if let Err(error) = recorded {
                tracing::warn!(%error, "cannot record a job run as a task");
            }
        }
        sink.emit(event)
    })
}

/// Runs futures concurrently and collects their outputs in order.
async fn join_all<F: std::future::Future + Send + 'static>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("a target task panicked"));
    }
    out
}

/// Runs the scheduled jobs (steps feed updates, community library sync, ...) for as long as the server
/// runs: the start-up jobs at once, then each when due, every one still subject to its gate. Jobs do
/// their own blocking I/O, so they get a thread of their own rather than a slot on the async runtime.
fn spawn_job_scheduler(home: Home, sink: Sink, leader: Arc<std::sync::atomic::AtomicBool>) {
    let spawned = std::thread::Builder::new()
        .name("octo-jobs".into())
        .spawn(move || {
            let mut starting = true;
            loop {
                if !leader.load(Ordering::Relaxed) {
                    // Another node runs the jobs; take over when it is gone.
                    std::thread::sleep(Duration::from_secs(5));
                    continue;
                }
                let pause = match crate::jobs::run_due(&home, starting, &sink) {
                    Ok(pause) => pause,
                    Err(error) => {
                        tracing::warn!(error = %error.one_line(), "job scheduler step failed");
                        Duration::from_secs(60)
                    }
                };
                starting = false;
                std::thread::sleep(pause);
            }
        });
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot start the job scheduler");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_components_keep_the_newest_few() {
        let mut recent = RecentComponents::default();
        let bytes = |i: usize| Arc::new(vec![i as u8]);
        for i in 0..RECENT_COMPONENTS + 2 {
            recent.insert(&format!("c{i}"), bytes(i));
        }
        assert!(recent.get("c0").is_none() && recent.get("c1").is_none());
        // Read, the oldest one becomes the newest and the next oldest goes in its place.
        assert_eq!(*recent.get("c2").unwrap(), vec![2]);
        recent.insert("new", bytes(99));
        assert!(recent.get("c3").is_none());
        assert!(recent.get("c2").is_some() && recent.get("new").is_some());
        assert_eq!(recent.entries.len(), RECENT_COMPONENTS);
    }
}
