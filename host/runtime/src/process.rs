//! The `process` import: run a native command for a plugin that declared the capability, stream its
//! output into the step's log, and act on the service messages it prints.
//!
//! Each command runs confined (see [`crate::confine`]): in its own PID namespace, so nothing it starts
//! outlives it, with its HTTP(S) through the step's egress proxy ([`crate::egress`]), and in
//! [`ScriptNetwork::Confined`] mode in a network namespace whose only way out is that proxy.

use crate::bindings::octo::plugin::process::{self, Command};
use crate::clone_spawn;
use crate::confine::{self, ChildPlan, ScriptNetwork};
use crate::egress::{self, Egress};
use crate::forwards;
use crate::lines::{BoundedLines, Line};
use crate::state::{StepContext, StepState};
use crate::vocabulary::{Artifact, LogLevel};
use octo_service_messages::{OutputLevel, ServiceMessage, parse_line};
use rustix::fd::{AsFd, OwnedFd};
use std::ffi::{OsStr, OsString};
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
    // The command's whole environment: nothing else of the host's is inherited.
    let mut env: std::collections::BTreeMap<OsString, OsString> = INHERITED_ENV
        .iter()
        .filter_map(|k| std::env::var_os(k).map(|v| (OsString::from(k), v)))
        .collect();
    env.extend(
        ctx.process_env
            .iter()
            .chain(&command.env)
            .map(|(k, v)| (OsString::from(k), OsString::from(v))),
    );
    for k in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
        env.insert(k.into(), proxy_url.clone().into());
    }
    env.remove(OsStr::new("NO_PROXY"));
    env.remove(OsStr::new("no_proxy"));
    let env: Vec<(OsString, OsString)> = env.into_iter().collect();

    let mut listeners = Vec::new();
    let mut _watcher = None;
    let (mut child, mut group) = if namespaces {
        let hosts_path = hosts.as_ref().map(|f| f.path());
        let (mut plan, channel) =
            ChildPlan::new(network, listen.clone(), hosts_path).map_err(|e| {
                process::Error::SpawnFailed(format!("cannot prepare the command's namespaces: {e}"))
            })?;
        let exec =
            clone_spawn::Exec::new(&command.program, &command.args, &env, &cwd).map_err(|e| {
                process::Error::SpawnFailed(format!("cannot start {:?}: {e}", command.program))
            })?;
        let started = clone_spawn::spawn(&plan, &exec, command.stdin.is_some());
        plan.close_channel();
        drop(hosts); // mounted by now (spawn returns once the command exec'd)
        let started = started.map_err(|e| {
            // A remembered probe may have gone stale: the next command probes again.
            crate::probe_cache::forget(network.as_str());
            process::Error::SpawnFailed(format!("cannot start {:?}: {e}", command.program))
        })?;
        // Kills the command's namespace if this future ends before the command (deadline,
        // cancellation, drop).
        let group = GroupGuard {
            pgid: Some(started.pid),
            pidfd: Some(
                rustix::io::fcntl_dupfd_cloexec(&started.pidfd, 3)
                    .map_err(|e| process::Error::SpawnFailed(e.to_string()))?,
            ),
        };
        let child = NamespacedChild::new(started)
            .map_err(|e| process::Error::SpawnFailed(e.to_string()))?;
        if let Some(channel) = channel {
            let handover = channel.receive(listen.len()).map_err(|e| {
                process::Error::SpawnFailed(format!("cannot confine {:?}: {e}", command.program))
            })?;
            listeners = handover.listeners;
            let recorder = egress.clone();
            _watcher = Some(crate::connect_watch::watch(
                handover.notify,
                listen.clone(),
                move |addr| recorder.record_direct_attempt(format!("tcp://{addr}")),
            ));
        }
        (Child::Namespaced(child), group)
    } else {
        let mut cmd = tokio::process::Command::new(&command.program);
        cmd.args(&command.args)
            .env_clear()
            .envs(env)
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
        let child = cmd.spawn().map_err(|e| {
            process::Error::SpawnFailed(format!("cannot start {:?}: {e}", command.program))
        })?;
        // Kills the command's process group if this future ends before the command.
        let group = GroupGuard {
            pgid: child.id().map(|id| id as i32),
            pidfd: None,
        };
        (Child::Plain(child), group)
    };
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

    if let (Some(bytes), Some(mut stdin)) = (command.stdin, child.take_stdin()) {
        tokio::spawn(async move {
            let _ = stdin.write_all(&bytes).await;
        });
    }
    let (tx, mut rx) = mpsc::channel::<(Stream, Line)>(256);
    let cap = ctx.limits.read_line_bytes();
    spawn_line_reader(child.take_stdout(), Stream::Stdout, cap, tx.clone());
    spawn_line_reader(child.take_stderr(), Stream::Stderr, cap, tx);

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
    let code = status.map_err(|e| {
        process::Error::SpawnFailed(format!("waiting for {:?}: {e}", command.program))
    })?;
    // Exited by itself: its namespace is empty by now (without one, daemons it started stay).
    group.disarm();
    let drain_until = tokio::time::Instant::now() + DRAIN_AFTER_EXIT;
    while let Ok(Some((stream, line))) = tokio::time::timeout_at(drain_until, rx.recv()).await {
        handle_line(ctx, &mut level, stream, &line);
    }
    Ok(code)
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

/// A started command: PID 1 of its namespaces, or (where namespaces are unavailable) a plain child.
enum Child {
    Plain(tokio::process::Child),
    Namespaced(NamespacedChild),
}

type Reader = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
type Writer = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;

impl Child {
    fn take_stdin(&mut self) -> Option<Writer> {
        match self {
            Child::Plain(c) => c.stdin.take().map(|w| Box::new(w) as Writer),
            Child::Namespaced(c) => c.stdin.take().map(|w| Box::new(w) as Writer),
        }
    }

    fn take_stdout(&mut self) -> Option<Reader> {
        match self {
            Child::Plain(c) => c.stdout.take().map(|r| Box::new(r) as Reader),
            Child::Namespaced(c) => c.stdout.take().map(|r| Box::new(r) as Reader),
        }
    }

    fn take_stderr(&mut self) -> Option<Reader> {
        match self {
            Child::Plain(c) => c.stderr.take().map(|r| Box::new(r) as Reader),
            Child::Namespaced(c) => c.stderr.take().map(|r| Box::new(r) as Reader),
        }
    }

    /// Waits for the command to exit: its exit code, or 128 + the signal that ended it.
    async fn wait(&mut self) -> std::io::Result<i32> {
        match self {
            Child::Plain(c) => {
                use std::os::unix::process::ExitStatusExt;
                let status = c.wait().await?;
                Ok(exit_code(status.code(), status.signal()))
            }
            Child::Namespaced(c) => c.wait().await,
        }
    }
}

/// A command started by [`clone_spawn::spawn`], waited for through its pidfd.
struct NamespacedChild {
    pidfd: tokio::io::unix::AsyncFd<OwnedFd>,
    stdin: Option<tokio::net::unix::pipe::Sender>,
    stdout: Option<tokio::net::unix::pipe::Receiver>,
    stderr: Option<tokio::net::unix::pipe::Receiver>,
    reaped: bool,
}

impl NamespacedChild {
    fn new(started: clone_spawn::Started) -> std::io::Result<Self> {
        use tokio::net::unix::pipe;
        Ok(NamespacedChild {
            // SAFETY: the pidfd is owned by the AsyncFd and lives exactly as long as the registration.
            pidfd: unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(
                    started.pidfd,
                    tokio::io::Interest::READABLE,
                )
            }
            .map_err(|e| e.into_parts().1)?,
            stdin: started.stdin.map(pipe::Sender::from_owned_fd).transpose()?,
            stdout: Some(pipe::Receiver::from_owned_fd(started.stdout)?),
            stderr: Some(pipe::Receiver::from_owned_fd(started.stderr)?),
            reaped: false,
        })
    }

    fn try_reap(&mut self) -> std::io::Result<Option<i32>> {
        let code = reap_now(self.pidfd.get_ref())?;
        self.reaped |= code.is_some();
        Ok(code)
    }

    async fn wait(&mut self) -> std::io::Result<i32> {
        loop {
            let mut ready = self.pidfd.readable().await?;
            match reap_now(ready.get_inner()) {
                Ok(Some(code)) => {
                    drop(ready);
                    self.reaped = true;
                    return Ok(code);
                }
                Ok(None) => ready.clear_ready(),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Reaps the process of `pidfd` if it has exited: its exit code, or 128 + the signal that ended it.
fn reap_now(pidfd: &OwnedFd) -> std::io::Result<Option<i32>> {
    use rustix::process::{WaitId, WaitIdOptions};
    let status = rustix::process::waitid(
        WaitId::PidFd(pidfd.as_fd()),
        WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
    )?;
    Ok(status.map(|status| exit_code(status.exit_status(), status.terminating_signal())))
}

/// A command's exit code as a step reports it: its own, or 128 + the signal that ended it (as shells
/// do).
fn exit_code(code: Option<i32>, signal: Option<i32>) -> i32 {
    code.unwrap_or_else(|| 128 + signal.unwrap_or(0))
}

impl Drop for NamespacedChild {
    fn drop(&mut self) {
        // Killed by the step's GroupGuard by now, or about to be: reaped here, or by a thread that
        // waits for it, so no zombie stays behind.
        if self.reaped || matches!(self.try_reap(), Ok(Some(_))) {
            return;
        }
        let pidfd = match rustix::io::fcntl_dupfd_cloexec(self.pidfd.get_ref(), 3) {
            Ok(fd) => fd,
            Err(_) => return,
        };
        let _ = std::thread::Builder::new()
            .name("octo-reap".into())
            .spawn(move || {
                let _ = rustix::process::waitid(
                    rustix::process::WaitId::PidFd(pidfd.as_fd()),
                    rustix::process::WaitIdOptions::EXITED,
                );
            });
    }
}

/// Kills what a command started when dropped before the command ended.
struct GroupGuard {
    /// The process group (PID 1 of the command's namespace, or the command itself without them).
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
