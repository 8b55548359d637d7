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
use octo_store::{NewPart, NewTask, Store, TaskId, TaskKind, TaskState};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Ready;
use super::pool::Pool;
use super::remote::{Job, Part, run_part, task_state};
use crate::admin::{self, AdminEvent, AdminRequest, RemoteRun};
use crate::error::{Context, Error, Result};
use crate::home::Home;
use crate::sink::Sink;
use crate::targets::{self, Target};

struct Daemon {
    home: Home,
    trust: TrustStore,
    pool: Arc<Pool>,
    runs: AtomicU64,
    store: Arc<dyn Store>,
    /// Cancellation of the tasks running here, by id.
    running: Mutex<HashMap<TaskId, CancellationToken>>,
}

/// How often the daemon checks whether another node changed the shared targets or settings.
const SHARED_CHECK: Duration = Duration::from_secs(1);

fn tls_error(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::other(e)
}

/// Runs the daemon until SIGINT/SIGTERM.
pub async fn run(
    home: &Home,
    listen_address: &str,
    port: u16,
    on_ready: impl FnOnce(&Ready),
    sink: &Sink,
) -> Result<()> {
    // The store first: a server that cannot keep its tasks does not start.
    let store = crate::tasks::open_store(home).await?;
    let identity = super::identity(home)?;
    let targets = crate::shared::load::<targets::Targets>(&*store, home)
        .await?
        .0;
    let settings_revision = crate::shared::settings::sync(&*store, home).await?;
    let trust = TrustStore::from_thumbprints(targets.thumbprints());
    let options = H2Options::default();
    let pool = Arc::new(
        Pool::new(
            TlsClient::new(&identity, trust.clone()).map_err(tls_error)?,
            options.clone(),
        )
        .with_home(home),
    );
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
    let daemon = Arc::new(Daemon {
        home: home.clone(),
        trust,
        pool,
        runs: AtomicU64::new(0),
        store: store.clone(),
        running: Mutex::new(HashMap::new()),
    });
    tokio::spawn(daemon.clone().follow_shared(settings_revision));
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
    );

    on_ready(&Ready {
        thumbprint: identity.thumbprint(),
        polling_address,
        admin_socket: socket.clone(),
    });

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    shutdown.cancel();
    std::fs::remove_file(&socket).ok();
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
        let number = self.runs.fetch_add(1, Ordering::Relaxed);
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let prefix = format!("run-{millis}-{number}");
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
                script_network: match self.home.load_settings()?.effective_script_network() {
                    octo_settings::ScriptNetwork::Audited => octo_protocol::ScriptNetwork::Audited,
                    octo_settings::ScriptNetwork::Confined => {
                        octo_protocol::ScriptNetwork::Confined
                    }
                },
                package: run.package.map(|p| p.step),
            },
        });
        let parts: Vec<(Target, Ticket)> = selected
            .into_iter()
            .enumerate()
            .map(|(i, target)| {
                let ticket = Ticket::parse(&format!("{prefix}-{i}")).expect("a valid ticket");
                (target, ticket)
            })
            .collect();
        let id = self
            .store
            .create_task(&NewTask {
                kind: TaskKind::RunStep,
                name: run.origin.clone(),
                parts: parts
                    .iter()
                    .map(|(target, ticket)| NewPart {
                        target: target.name.clone(),
                        ticket: ticket.to_string(),
                    })
                    .collect(),
            })
            .await
            .context("cannot record the task")?;
        let _ = tx.send(AdminEvent::Task { id });
        let cancel = self.register(id);
        let parts = parts
            .into_iter()
            .map(|(target, ticket)| Part {
                task: id,
                target,
                ticket,
                job: Some(job.clone()),
            })
            .collect();
        if run.detach {
            // Runs on its own; the CLI that asked may go.
            let (events, _) = mpsc::unbounded_channel();
            tokio::spawn(self.clone().run_task(id, parts, events, cancel));
            return Ok(true);
        }
        // The CLI going away (Ctrl-C) cancels the task.
        let watcher = tokio::spawn({
            let cancel = cancel.clone();
            async move {
                abandoned.cancelled().await;
                cancel.cancel();
            }
        });
        let state = self.clone().run_task(id, parts, tx.clone(), cancel).await;
        watcher.abort();
        Ok(state == TaskState::Succeeded)
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
        if let Err(error) = self.store.finish_task(id, state, message.as_deref()).await {
            tracing::warn!(task = id, %error, "cannot store the end of the task");
        }
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
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
        let tasks = match self.store.unfinished_tasks().await {
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
fn spawn_job_scheduler(home: Home, sink: Sink) {
    let spawned = std::thread::Builder::new()
        .name("octo-jobs".into())
        .spawn(move || {
            let mut starting = true;
            loop {
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
