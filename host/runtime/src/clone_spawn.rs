//! Starting a command as PID 1 of its own namespaces with one `clone(2)` (see crate::confine for
//! why the namespaces): `CLONE_VM | CLONE_VFORK`, as `posix_spawn` does, so neither the host's
//! memory nor its page tables are copied, and the namespace flags on the same call, so no
//! intermediate process is needed to become PID 1. The host thread that calls [`spawn`] waits until
//! the command has exec'd (or failed to); the host gets a pidfd of it from the kernel
//! (`CLONE_PIDFD`). This replaced a fork, an `unshare`, a second fork and an intermediate process
//! that waited: about 1 ms of every command's start (issue 10).
//!
//! The child shares the host's memory until it execs: it runs only system calls on data prepared
//! here before the clone (no allocation, no locks, no thread-locals), on a stack of its own, with
//! every signal blocked until its handlers are reset.

use crate::confine::ChildPlan;
use rustix::fd::{AsRawFd, OwnedFd};
use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

/// The child's stack (it runs the namespace set-up and exec, nothing deep), plus a guard page.
const STACK_SIZE: usize = 256 * 1024;

/// What the child execs, prepared before the clone.
pub(crate) struct Exec {
    /// Where the program is looked for, in order (the search of `execvp`, done here).
    candidates: Vec<CString>,
    argv: Vec<CString>,
    envp: Vec<CString>,
    cwd: CString,
}

fn c_string(bytes: &[u8]) -> std::io::Result<CString> {
    CString::new(bytes)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "a NUL byte"))
}

impl Exec {
    /// `program` with `args`, in the environment `env` (exactly: nothing else is inherited), in
    /// `cwd`. A program without a `/` is looked for in the `PATH` of `env` (else the host's).
    pub(crate) fn new(
        program: &str,
        args: &[String],
        env: &[(OsString, OsString)],
        cwd: &Path,
    ) -> std::io::Result<Exec> {
        let candidates = if program.contains('/') {
            vec![c_string(program.as_bytes())?]
        } else {
            let path = env
                .iter()
                .rev()
                .find(|(k, _)| k == "PATH")
                .map(|(_, v)| v.clone())
                .or_else(|| std::env::var_os("PATH"))
                .unwrap_or_else(|| OsString::from("/usr/bin:/bin"));
            std::env::split_paths(&path)
                .map(|dir| {
                    let dir = if dir.as_os_str().is_empty() {
                        Path::new(".").to_path_buf()
                    } else {
                        dir
                    };
                    c_string(dir.join(program).as_os_str().as_bytes())
                })
                .collect::<std::io::Result<_>>()?
        };
        let argv = std::iter::once(program.as_bytes())
            .chain(args.iter().map(|a| a.as_bytes()))
            .map(c_string)
            .collect::<std::io::Result<_>>()?;
        let mut envp = Vec::with_capacity(env.len());
        for (k, v) in env {
            let mut entry = k.as_bytes().to_vec();
            entry.push(b'=');
            entry.extend_from_slice(v.as_bytes());
            envp.push(c_string(&entry)?);
        }
        Ok(Exec {
            candidates,
            argv,
            envp,
            cwd: c_string(cwd.as_os_str().as_bytes())?,
        })
    }
}

/// A command started by [`spawn`].
pub(crate) struct Started {
    /// Its pid as the host sees it (also its process group).
    pub(crate) pid: i32,
    /// A pidfd of it.
    pub(crate) pidfd: OwnedFd,
    /// Its standard input's write end, when it was given one.
    pub(crate) stdin: Option<OwnedFd>,
    pub(crate) stdout: OwnedFd,
    pub(crate) stderr: OwnedFd,
}

/// Which step of the child failed, for the error message.
const FAILED_SETUP: i32 = 1;
const FAILED_EXEC: i32 = 2;

/// Everything the child reads, by pointer: it lives on the host thread's stack, which stays put
/// while the child runs (`CLONE_VFORK`).
struct ChildArgs<'a> {
    plan: &'a ChildPlan,
    candidates: &'a [*const libc::c_char],
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    /// The child's ends of its standard streams (stdin: the pipe or /dev/null).
    stdio: [i32; 3],
    /// Descriptors the child closes at once: the host's ends of the pipes, and the write end of
    /// `alive`.
    close: [i32; 4],
    /// Read end of a pipe whose write end only the host holds: hung up once the host is gone.
    alive: i32,
    /// Signals with a handler of the host's (or SIGPIPE ignored), reset to the default.
    handled: &'a [libc::c_int],
    /// The signal mask to restore before exec.
    mask: libc::sigset_t,
    /// Set by the child when it fails: which step, and the errno.
    failed_at: AtomicI32,
    errno: AtomicI32,
}

/// Starts `exec` as PID 1 of the namespaces of `plan` (which must have been made for a clone: see
/// [`ChildPlan::new`]), with piped stdout and stderr, and stdin piped when `stdin` is set (else
/// /dev/null). Returns once the command exec'd.
pub(crate) fn spawn(plan: &ChildPlan, exec: &Exec, stdin: bool) -> std::io::Result<Started> {
    use rustix::pipe::{PipeFlags, pipe_with};
    let (out_r, out_w) = pipe_with(PipeFlags::CLOEXEC)?;
    let (err_r, err_w) = pipe_with(PipeFlags::CLOEXEC)?;
    let (in_r, in_w) = if stdin {
        let (r, w) = pipe_with(PipeFlags::CLOEXEC)?;
        (r, Some(w))
    } else {
        let null = rustix::fs::open(
            c"/dev/null",
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?;
        (null, None)
    };
    let (alive_r, alive_w) = pipe_with(PipeFlags::CLOEXEC)?;
    // The child moves its ends onto 0, 1 and 2: none of them may already be one of those (a host
    // started with a standard stream closed), or one would overwrite another.
    let (in_r, out_w, err_w) = (above_stdio(in_r)?, above_stdio(out_w)?, above_stdio(err_w)?);
    // The handlers the host installed (the child resets them; a copy of the table is what it has).
    let mut handled = [0 as libc::c_int; 65];
    let mut handled_count = 0;
    for signal in 1..=libc::SIGRTMAX().min(64) {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // SAFETY: a query only (no new action).
        let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
        if unsafe { libc::sigaction(signal, std::ptr::null(), &mut current) } != 0 {
            continue;
        }
        // Ignored signals stay ignored across exec, as usual, except SIGPIPE, which Rust ignores
        // for itself.
        if current.sa_sigaction != libc::SIG_DFL
            && (current.sa_sigaction != libc::SIG_IGN || signal == libc::SIGPIPE)
        {
            handled[handled_count] = signal;
            handled_count += 1;
        }
    }

    let candidates: Vec<*const libc::c_char> = exec.candidates.iter().map(|c| c.as_ptr()).collect();
    let argv = null_terminated(&exec.argv);
    let envp = null_terminated(&exec.envp);

    let stack = Stack::new()?;
    // Every signal blocked across the clone: a handler of the host must never run in the child.
    // SAFETY: sigset_t is plain data; the calls only fill and apply it.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    let args = ChildArgs {
        plan,
        candidates: &candidates,
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        cwd: exec.cwd.as_ptr(),
        stdio: [in_r.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()],
        close: [
            out_r.as_raw_fd(),
            err_r.as_raw_fd(),
            in_w.as_ref().map_or(-1, |w| w.as_raw_fd()),
            alive_w.as_raw_fd(),
        ],
        alive: alive_r.as_raw_fd(),
        handled: &handled[..handled_count],
        mask: old,
        failed_at: AtomicI32::new(0),
        errno: AtomicI32::new(0),
    };
    let flags =
        plan.clone_flags() | libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD;
    let mut pidfd: libc::c_int = -1;
    // SAFETY: `child_main` only makes system calls on `args`, which outlives the child's use of
    // it (CLONE_VFORK: this thread resumes once the child exec'd or exited); the stack is ours.
    let pid = unsafe {
        libc::clone(
            child_main,
            stack.top(),
            flags,
            &args as *const ChildArgs as *mut libc::c_void,
            &mut pidfd as *mut libc::c_int,
        )
    };
    let clone_error = std::io::Error::last_os_error();
    // SAFETY: restoring this thread's own mask.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    drop((in_r, out_w, err_w, alive_r));
    if pid < 0 {
        return Err(clone_error);
    }
    // SAFETY: the kernel returned this descriptor for the child just created.
    let pidfd: OwnedFd = unsafe { rustix::fd::FromRawFd::from_raw_fd(pidfd) };
    let failed_at = args.failed_at.load(Ordering::SeqCst);
    if failed_at != 0 {
        // The child has exited (it never exec'd): reap it.
        let _ = rustix::process::waitid(
            rustix::process::WaitId::PidFd(rustix::fd::AsFd::as_fd(&pidfd)),
            rustix::process::WaitIdOptions::EXITED,
        );
        let errno = std::io::Error::from_raw_os_error(args.errno.load(Ordering::SeqCst));
        return Err(match failed_at {
            FAILED_EXEC => errno,
            _ => std::io::Error::new(
                errno.kind(),
                format!(
                    "cannot enter the command's {} namespaces: {errno}",
                    plan.describe()
                ),
            ),
        });
    }
    // Held until now so the child never saw the host gone.
    drop(alive_w);
    Ok(Started {
        pid,
        pidfd,
        stdin: in_w,
        stdout: out_r,
        stderr: err_r,
    })
}

/// The child: set-up, then exec; on failure, the step and errno are left in `args` for the host.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `spawn` passed a `ChildArgs` that outlives this function.
    let args = unsafe { &*(arg as *const ChildArgs) };
    let fail = |at: i32, e: std::io::Error| -> ! {
        args.failed_at.store(at, Ordering::SeqCst);
        args.errno
            .store(e.raw_os_error().unwrap_or(libc::EIO), Ordering::SeqCst);
        // SAFETY: leaving the child without running any of the host's code.
        unsafe { libc::_exit(127) }
    };
    // SAFETY: a child between clone and exec, running only system calls.
    if let Err(e) = unsafe { set_up(args) } {
        fail(FAILED_SETUP, e);
    }
    let mut errno = libc::ENOENT;
    let mut denied = false;
    for &candidate in args.candidates {
        // SAFETY: NUL-terminated strings and NULL-terminated arrays prepared by `spawn`.
        unsafe { libc::execve(candidate, args.argv, args.envp) };
        errno = std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
        match errno {
            libc::EACCES => denied = true,
            libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG | libc::ELOOP | libc::ESTALE => {}
            _ => break,
        }
    }
    if denied && errno == libc::ENOENT {
        errno = libc::EACCES;
    }
    fail(FAILED_EXEC, std::io::Error::from_raw_os_error(errno))
}

/// Dies with the host, enters the namespaces (crate::confine), takes the standard streams, goes
/// to the work directory, leads its own process group, resets signal handlers and mask.
///
/// # Safety
/// Only in the child of [`spawn`], before exec.
unsafe fn set_up(args: &ChildArgs) -> std::io::Result<()> {
    let check = |r: libc::c_int| {
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    unsafe {
        for fd in args.close {
            if fd >= 0 {
                libc::close(fd);
            }
        }
        // Dies with the host thread that started it (which waits for the command), and with it the
        // whole namespace; a host that died before this line hung up `alive`.
        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0))?;
        let mut poll = libc::pollfd {
            fd: args.alive,
            events: libc::POLLIN,
            revents: 0,
        };
        if libc::poll(&mut poll, 1, 0) != 0 {
            return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
        }
        libc::close(args.alive);
        args.plan.set_up_namespaces()?;
        for (fd, target) in args.stdio.iter().zip(0..) {
            check(libc::dup2(*fd, target))?;
        }
        check(libc::chdir(args.cwd))?;
        check(libc::setpgid(0, 0))?;
        // A handler of the host's would run its code here, once the mask is restored.
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        for &signal in args.handled {
            libc::sigaction(signal, &default, std::ptr::null_mut());
        }
        check(libc::pthread_sigmask(
            libc::SIG_SETMASK,
            &args.mask,
            std::ptr::null_mut(),
        ))?;
    }
    Ok(())
}

/// The child's stack: mapped anonymous memory with a guard page below it.
struct Stack {
    base: *mut libc::c_void,
    len: usize,
}

impl Stack {
    fn new() -> std::io::Result<Stack> {
        let page = rustix::param::page_size();
        let len = STACK_SIZE + page;
        // SAFETY: a fresh anonymous mapping, owned by the returned value.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let stack = Stack { base, len };
        // SAFETY: the lowest page of our own mapping.
        if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(stack)
    }

    /// The top (stacks grow down on every architecture Octo runs on), 16-byte aligned.
    fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the end of our mapping, which is page-aligned.
        unsafe { self.base.cast::<u8>().add(self.len).cast() }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: our own mapping, no longer used (the child exec'd or exited).
        unsafe { libc::munmap(self.base, self.len) };
    }
}

/// The pointers of `strings` and a NULL: what `execve` takes (valid as long as `strings`).
fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// `fd`, or a duplicate of it numbered 3 or above when it is 0, 1 or 2.
fn above_stdio(fd: OwnedFd) -> std::io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    Ok(rustix::io::fcntl_dupfd_cloexec(&fd, 3)?)
}
