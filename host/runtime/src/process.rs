//! The `process` import: run a native command for a plugin that declared the capability, stream its
//! output into the step's log, and act on the service messages it prints.
//!
//! Each command runs confined (see [`crate::confine`]): in its own PID namespace, so nothing it starts
//! outlives it, with its HTTP(S) through the step's egress proxy ([`crate::egress`]), and in
//! [`ScriptNetwork::Confined`] mode in a network namespace whose only way out is that proxy.

use crate::bindings::octo::plugin::process::{self, Command};
use crate::confine::{self, ChildPlan, ScriptNetwork};
use crate::egress::{self, Egress};
use crate::forwards;
use crate::lines::{BoundedLines, Line};
use crate::state::{StepContext, StepState};
use crate::vocabulary::{Artifact, LogLevel};
use octo_service_messages::{OutputLevel, ServiceMessage, parse_line};
use rustix::fd::OwnedFd;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// After the command exits, output still held open by its background children is read for this long
/// (only where namespaces are unavailable: otherwise they die with the command).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// Where a confined command finds the egress proxy: loopback of its own network namespace.
const CONFINED_PROXY: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 3128);

/// How long killing a command's namespace may take before the step goes on regardless.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Host environment variables a command inherits; everything else of the host's environment stays out.
const INHERITED_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SHELL",
];

enum Stream {
    Stdout,
    Stderr,
}

impl process::Host for StepState {
    async fn run(&mut self, command: Command) -> Result<i32, process::Error> {
        let ctx = &mut self.ctx;
        if !ctx.process_granted {
            ctx.log.write(
                LogLevel::Warn,
                &format!(
                    "plugin {} tried to run {:?} but does not declare the process capability",
                    ctx.plugin_id, command.program
                ),
            );
            return Err(process::Error::NotGranted);
        }
        let egress = Egress::new(&self.gate);
        run_command(&mut self.ctx, egress, command).await
    }
}

async fn run_command(
    ctx: &mut StepContext,
    egress: Arc<Egress>,
    command: Command,
) -> Result<i32, process::Error> {
    let cwd =
        resolve_cwd(&ctx.work_dir, command.cwd.as_deref()).map_err(process::Error::SpawnFailed)?;
    let network = ctx.script_network;
    let namespaces = match confine::available(network) {
        Ok(()) => true,
        Err(e) if network == ScriptNetwork::Confined => {
            return Err(process::Error::SpawnFailed(format!(
                "refusing to run {:?} unconfined: {e}; confined script mode needs user, PID and \
                 network namespaces (or choose scriptNetwork=audited)",
                command.program
            )));
        }
        Err(e) => {
            ctx.log.write(
                LogLevel::Warn,
                &format!(
                    "{:?} runs without its own PID namespace ({e}): processes it leaves in the \
                     background may outlive the step",
                    command.program
                ),
            );
            false
        }
    };
    // The egress proxy listens on the host's loopback (audited) or, created by the child, on the
    // loopback of the command's own network namespace (confined).
    let host_listener = match network {
        ScriptNetwork::Audited => Some(
            tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .await
                .map_err(|e| {
                    process::Error::SpawnFailed(format!("cannot start the egress proxy: {e}"))
                })?,
        ),
        ScriptNetwork::Confined => None,
    };
    let proxy_url = match &host_listener {
        Some(l) => format!(
            "http://{}",
            l.local_addr()
                .map_err(|e| process::Error::SpawnFailed(e.to_string()))?
        ),
        None => format!("http://{CONFINED_PROXY}"),
    };
    // Confined: the proxy, then one socket per granted TCP destination (see crate::forwards).
    let forwards = match network {
        ScriptNetwork::Audited => forwards::Plan::default(),
        ScriptNetwork::Confined => plan_forwards(ctx),
    };
    let listen: Vec<SocketAddr> = match network {
        ScriptNetwork::Audited => Vec::new(),
        ScriptNetwork::Confined => std::iter::once(SocketAddr::V4(CONFINED_PROXY))
            .chain(forwards.forwards.iter().map(|f| f.listen))
            .collect(),
    };
    // Granted names: a private /etc/hosts maps them onto their forwards (kept until the command
    // started: the mount holds the file then).
    let hosts = if namespaces && !forwards.names.is_empty() {
        Some(write_hosts_file(&forwards.names).map_err(process::Error::SpawnFailed)?)
    } else {
        None
    };
    let mut cmd = tokio::process::Command::new(&command.program);
    cmd.args(&command.args)
        .env_clear()
        .envs(
            INHERITED_ENV
                .iter()
                .filter_map(|k| std::env::var_os(k).map(|v| (*k, v))),
        )
        .envs(ctx.process_env.iter().map(|(k, v)| (k, v)))
        .envs(command.env.iter().map(|(k, v)| (k, v)))
        .envs(
            ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"]
                .iter()
                .map(|k| (*k, proxy_url.as_str())),
        )
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .current_dir(&cwd)
        .stdin(if command.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let channel = if namespaces {
        let hosts_path = hosts.as_ref().map(|f| f.path());
        let (plan, channel) = ChildPlan::new(network, listen.clone(), hosts_path).map_err(|e| {
            process::Error::SpawnFailed(format!("cannot prepare the command's namespaces: {e}"))
        })?;
        // SAFETY: `run_in_child` makes only async-signal-safe calls (see crate::confine).
        unsafe {
            cmd.pre_exec(move || plan.run_in_child());
        }
        Some(channel)
    } else {
        None
    };
    let spawned = cmd.spawn();
    drop(cmd); // closes the child's end of the channel
    drop(hosts); // mounted by now (spawn returns once the command's PID 1 was forked)
    if spawned.is_err() && namespaces {
        // A remembered probe may have gone stale: the next command probes again.
        crate::probe_cache::forget(network.as_str());
    }
    let mut child = spawned.map_err(|e| {
        process::Error::SpawnFailed(format!("cannot start {:?}: {e}", command.program))
    })?;
    // Kills the command's namespace (or, without one, its process group) if this future ends before
    // the command (deadline, cancellation, drop).
    let mut group = GroupGuard {
        pgid: child.id().map(|id| id as i32),
        pidfd: None,
    };
    let mut listeners = Vec::new();
    let mut _watcher = None;
    if let Some(channel) = channel {
        let confined = network == ScriptNetwork::Confined;
        let handover = channel.receive(confined, listen.len()).map_err(|e| {
            process::Error::SpawnFailed(format!("cannot confine {:?}: {e}", command.program))
        })?;
        group.pidfd = Some(handover.pidfd);
        listeners = handover.listeners;
        if let Some(notify) = handover.notify {
            let recorder = egress.clone();
            _watcher = Some(crate::connect_watch::watch(
                notify,
                listen.clone(),
                move |addr| recorder.record_direct_attempt(format!("tcp://{addr}")),
            ));
        }
    }
    let listener = match host_listener {
        Some(l) => l,
        None => tokio_listener(listeners.remove(0)).map_err(|e| {
            process::Error::SpawnFailed(format!("cannot serve the egress proxy: {e}"))
        })?,
    };
    let mut forward_listeners = listeners.into_iter();
    let _forwards: Vec<_> = forwards
        .forwards
        .into_iter()
        .zip(forward_listeners.by_ref())
        .filter_map(|(forward, fd)| {
            let listener = tokio_listener(fd).ok()?;
            Some(egress::serve_forward(egress.clone(), listener, forward))
        })
        .collect();
    let _egress = egress::serve(egress, listener);

    if let (Some(bytes), Some(mut stdin)) = (command.stdin, child.stdin.take()) {
        tokio::spawn(async move {
            let _ = stdin.write_all(&bytes).await;
        });
    }
    let (tx, mut rx) = mpsc::channel::<(Stream, Line)>(256);
    let cap = ctx.limits.read_line_bytes();
    spawn_line_reader(child.stdout.take(), Stream::Stdout, cap, tx.clone());
    spawn_line_reader(child.stderr.take(), Stream::Stderr, cap, tx);

    let mut level = OutputLevel::Default;
    let cancel = ctx.cancel.clone();
    let deadline = tokio::time::Instant::from_std(ctx.deadline);
    let status = loop {
        tokio::select! {
            line = rx.recv() => match line {
                Some((stream, line)) => handle_line(ctx, &mut level, stream, &line),
                None => break child.wait().await,
            },
            status = child.wait() => break status,
            _ = tokio::time::sleep_until(deadline) => return Err(process::Error::Cancelled),
            _ = cancel.cancelled() => return Err(process::Error::Cancelled),
        }
    };
    let status = status.map_err(|e| {
        process::Error::SpawnFailed(format!("waiting for {:?}: {e}", command.program))
    })?;
    // Exited by itself: its namespace is empty by now (without one, daemons it started stay).
    group.disarm();
    let drain_until = tokio::time::Instant::now() + DRAIN_AFTER_EXIT;
    while let Ok(Some((stream, line))) = tokio::time::timeout_at(drain_until, rx.recv()).await {
        handle_line(ctx, &mut level, stream, &line);
    }
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// The step's granted TCP destinations a confined command can reach (at most
/// [`confine::MAX_LISTENERS`] - 1, besides the egress proxy); the others are named in a warning.
fn plan_forwards(ctx: &mut StepContext) -> forwards::Plan {
    let plan = forwards::plan(
        &ctx.tcp_forwards,
        SocketAddr::V4(CONFINED_PROXY),
        confine::MAX_LISTENERS - 1,
    );
    for (destination, why) in &plan.skipped {
        ctx.log.write(
            LogLevel::Warn,
            &format!("granted {destination} is not forwarded to the confined script: {why}"),
        );
    }
    plan
}

/// The confined command's `/etc/hosts`: `names` on their forwards, then the host's own entries (only
/// `localhost` when the host's file cannot be read). It is mounted over the host's file, so a host
/// without one is refused, in one line saying what to do.
fn write_hosts_file(names: &[(String, Ipv4Addr)]) -> Result<tempfile::NamedTempFile, String> {
    use std::io::Write;
    let original = match std::fs::read_to_string(HOSTS) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let names: Vec<&str> = names.iter().map(|(n, _)| n.as_str()).collect();
            return Err(format!(
                "this host has no {HOSTS}, over which a confined script gets the granted names \
                 ({}); create one (`touch {HOSTS}` is enough) or grant addresses \
                 (tcp://ADDRESS:PORT) instead",
                names.join(", ")
            ));
        }
        Err(_) => None,
    };
    let written = (|| {
        let mut file = tempfile::Builder::new()
            .prefix("octo-hosts-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .tempfile()?;
        file.write_all(forwards::hosts_file(original.as_deref(), names).as_bytes())?;
        file.flush()?;
        Ok::<_, std::io::Error>(file)
    })();
    written.map_err(|e| format!("cannot write the confined command's hosts file: {e}"))
}

/// The host's hosts file, which a confined command with granted names sees a private copy of.
const HOSTS: &str = "/etc/hosts";

/// Reads lines of at most `cap` bytes (the rest of a longer line, terminated or not, is dropped).
fn spawn_line_reader<R>(
    reader: Option<R>,
    stream: Stream,
    cap: usize,
    tx: mpsc::Sender<(Stream, Line)>,
) where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    let Some(reader) = reader else { return };
    tokio::spawn(async move {
        let mut lines = BoundedLines::new(reader, cap);
        while let Ok(Some(line)) = lines.next_line().await {
            let tagged = match stream {
                Stream::Stdout => (Stream::Stdout, line),
                Stream::Stderr => (Stream::Stderr, line),
            };
            if tx.send(tagged).await.is_err() {
                break;
            }
        }
    });
}

fn handle_line(ctx: &mut StepContext, level: &mut OutputLevel, stream: Stream, line: &Line) {
    let truncated = line.is_truncated();
    let line = line.text.as_str();
    if truncated && matches!(stream, Stream::Stdout) && line.starts_with("##octopus[") {
        ctx.log.write(
            LogLevel::Warn,
            &format!(
                "a service message of more than {} bytes was ignored (limits.maxOutputValueBytes)",
                ctx.limits.read_line_bytes()
            ),
        );
        return;
    }
    if let Stream::Stderr = stream {
        ctx.log.write(LogLevel::Error, line);
        return;
    }
    match parse_line(line) {
        None => {
            let log_level = match level {
                OutputLevel::Default | OutputLevel::Wait => LogLevel::Info,
                OutputLevel::Verbose => LogLevel::Verbose,
                OutputLevel::Highlight => LogLevel::Highlight,
                OutputLevel::Warning => LogLevel::Warn,
                OutputLevel::Error => LogLevel::Error,
            };
            ctx.log.write(log_level, line);
        }
        Some(ServiceMessage::OutputLevel(new_level)) => *level = new_level,
        Some(ServiceMessage::SetVariable {
            name,
            value,
            sensitive,
        }) => ctx.set_output(name, value, sensitive),
        Some(ServiceMessage::ResultMessage { message }) => ctx.result_message = Some(message),
        Some(ServiceMessage::CreateArtifact { path, name }) => {
            let path = ctx.work_dir.join(path); // an absolute path replaces the base
            if !path.is_file() {
                ctx.log.write(
                    LogLevel::Warn,
                    &format!("artifact {name}: {} does not exist", path.display()),
                );
            } else {
                ctx.log.write(
                    LogLevel::Info,
                    &format!("Artifact {name} collected from {}", path.display()),
                );
            }
            ctx.artifacts.push(Artifact { name, path });
        }
        Some(ServiceMessage::Other { name }) => {
            ctx.log.write(
                LogLevel::Verbose,
                &format!("(service message {name} ignored)"),
            );
        }
    }
}

/// The working directory: the step's work directory or a directory below it, never outside.
fn resolve_cwd(work_dir: &Path, cwd: Option<&str>) -> Result<PathBuf, String> {
    let Some(rel) = cwd.filter(|c| !c.is_empty() && *c != ".") else {
        return Ok(work_dir.to_path_buf());
    };
    let rel_path = Path::new(rel);
    if rel_path
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!(
            "working directory {rel:?} must be relative to the step's work directory, without '..'"
        ));
    }
    let dir = work_dir.join(rel_path);
    if !dir.is_dir() {
        return Err(format!(
            "working directory {rel:?} does not exist in the step's work directory"
        ));
    }
    Ok(dir)
}

fn tokio_listener(fd: OwnedFd) -> std::io::Result<tokio::net::TcpListener> {
    let listener = std::net::TcpListener::from(fd);
    listener.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(listener)
}

/// Kills what a command started when dropped before the command ended.
struct GroupGuard {
    /// The process group (the intermediate and PID 1, or the command itself without namespaces).
    pgid: Option<i32>,
    /// PID 1 of the command's namespace.
    pidfd: Option<OwnedFd>,
}

impl GroupGuard {
    fn disarm(&mut self) {
        self.pgid = None;
        self.pidfd = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pidfd) = &self.pidfd {
            // Returns once PID 1 is gone, and with it every process of the namespace.
            confine::kill_and_wait(pidfd, KILL_WAIT);
        }
        if let Some(pgid) = self.pgid {
            // SAFETY: plain syscall; the group was created for this command (process_group(0)).
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cwd_stays_inside_the_work_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        assert_eq!(resolve_cwd(dir.path(), None).unwrap(), dir.path());
        assert_eq!(
            resolve_cwd(dir.path(), Some("sub")).unwrap(),
            dir.path().join("sub")
        );
        assert!(resolve_cwd(dir.path(), Some("../x")).is_err());
        assert!(resolve_cwd(dir.path(), Some("/etc")).is_err());
        assert!(resolve_cwd(dir.path(), Some("missing")).is_err());
    }
}
