//! Seeing a confined script's direct connection attempts: a seccomp filter (installed by the child
//! before exec, inherited by everything it starts) hands each `connect(2)` to the host as a user
//! notification. The host lets connections to the egress proxy (and anything that is not TCP over
//! IP) go on, and answers every other TCP connection with `ECONNREFUSED`, recording it as a denied
//! attempt. The network namespace is what enforces the confinement (a connection let through still
//! finds no route out); this is what makes a tool that ignores the proxy variables show up in the
//! audit instead of failing silently.

use rustix::fd::{AsFd, AsRawFd, OwnedFd};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
const SECCOMP_FILTER_FLAG_NEW_LISTENER: libc::c_ulong = 1 << 3;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_USER_NOTIF: u32 = 0x7fc0_0000;
const SECCOMP_USER_NOTIF_FLAG_CONTINUE: u32 = 1;
const SECCOMP_IOCTL_NOTIF_RECV: libc::c_ulong = 0xC050_2100;
const SECCOMP_IOCTL_NOTIF_SEND: libc::c_ulong = 0xC018_2101;
const SECCOMP_IOCTL_NOTIF_ID_VALID: libc::c_ulong = 0x4008_2102;

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_RET_K: u16 = 0x06;

/// The filter: on this architecture, `connect` → notify the host; everything else → allow.
const FILTER: [libc::sock_filter; 7] = [
    stmt(BPF_LD_W_ABS, 4), // seccomp_data.arch
    jump(AUDIT_ARCH, 1, 0),
    stmt(BPF_RET_K, SECCOMP_RET_ALLOW),
    stmt(BPF_LD_W_ABS, 0), // seccomp_data.nr
    jump(libc::SYS_connect as u32, 0, 1),
    stmt(BPF_RET_K, SECCOMP_RET_USER_NOTIF),
    stmt(BPF_RET_K, SECCOMP_RET_ALLOW),
];

const fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

const fn jump(k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: BPF_JMP_JEQ_K,
        jt,
        jf,
        k,
    }
}

#[repr(C)]
#[derive(Default)]
struct SeccompData {
    nr: i32,
    arch: u32,
    instruction_pointer: u64,
    args: [u64; 6],
}

#[repr(C)]
#[derive(Default)]
struct SeccompNotif {
    id: u64,
    pid: u32,
    flags: u32,
    data: SeccompData,
}

#[repr(C)]
struct SeccompNotifResp {
    id: u64,
    val: i64,
    error: i32,
    flags: u32,
}

/// Installs the filter in the calling process and returns the notification fd. Async-signal-safe:
/// called between fork and exec.
pub(crate) fn install() -> std::io::Result<OwnedFd> {
    let program = libc::sock_fprog {
        len: FILTER.len() as u16,
        filter: FILTER.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `program` points at a valid filter that outlives the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &program as *const libc::sock_fprog,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { rustix::fd::FromRawFd::from_raw_fd(fd as i32) })
}

/// Answers the notifications of one command on a thread of its own; stops when dropped.
pub(crate) struct Watcher {
    stop: Arc<AtomicBool>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Watches `notify`; `allowed` says which destinations go on unrecorded (the egress proxy),
/// `denied` records the others.
pub(crate) fn watch(
    notify: OwnedFd,
    allowed: Vec<SocketAddr>,
    denied: impl Fn(SocketAddr) + Send + 'static,
) -> Watcher {
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let spawned = std::thread::Builder::new()
        .name("octo-connect-watch".into())
        .spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                let mut fds = [rustix::event::PollFd::new(
                    &notify,
                    rustix::event::PollFlags::IN,
                )];
                let timeout = rustix::event::Timespec {
                    tv_sec: 0,
                    tv_nsec: 200_000_000,
                };
                match rustix::event::poll(&mut fds, Some(&timeout)) {
                    Ok(0) | Err(rustix::io::Errno::INTR) => continue,
                    Err(_) => break,
                    Ok(_) => {}
                }
                let events = fds[0].revents();
                if events.contains(rustix::event::PollFlags::IN) {
                    answer_one(&notify, &allowed, &denied);
                } else if events
                    .intersects(rustix::event::PollFlags::HUP | rustix::event::PollFlags::ERR)
                {
                    break; // every process under the filter is gone
                }
            }
        });
    if spawned.is_err() {
        stop.store(true, Ordering::SeqCst);
    }
    Watcher { stop }
}

fn answer_one(notify: &OwnedFd, allowed: &[SocketAddr], denied: &impl Fn(SocketAddr)) {
    let mut notif = SeccompNotif::default();
    // SAFETY: the kernel fills a zeroed `seccomp_notif`.
    let r = unsafe {
        libc::ioctl(
            notify.as_raw_fd(),
            SECCOMP_IOCTL_NOTIF_RECV as _,
            &mut notif as *mut SeccompNotif,
        )
    };
    if r < 0 {
        return; // the caller died meanwhile (ENOENT) or was interrupted
    }
    let verdict = match destination(notify, &notif) {
        Some(addr) if is_stream(&notif) && !allowed.contains(&addr) => {
            denied(addr);
            Err(libc::ECONNREFUSED)
        }
        _ => Ok(()),
    };
    let response = SeccompNotifResp {
        id: notif.id,
        val: 0,
        error: verdict.err().map(|e| -e).unwrap_or(0),
        flags: if verdict.is_ok() {
            SECCOMP_USER_NOTIF_FLAG_CONTINUE
        } else {
            0
        },
    };
    // SAFETY: `response` is a valid `seccomp_notif_resp`.
    unsafe {
        libc::ioctl(
            notify.as_raw_fd(),
            SECCOMP_IOCTL_NOTIF_SEND as _,
            &response as *const SeccompNotifResp,
        )
    };
}

/// The address a `connect` goes to, read from the caller's memory; `None` for anything but IPv4/IPv6.
fn destination(notify: &OwnedFd, notif: &SeccompNotif) -> Option<SocketAddr> {
    let mut buf = [0u8; 28];
    let len = (notif.data.args[2] as usize).min(buf.len());
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: notif.data.args[1] as *mut libc::c_void,
        iov_len: len,
    };
    // SAFETY: reads at most `len` bytes into `buf`.
    let read = unsafe { libc::process_vm_readv(notif.pid as i32, &local, 1, &remote, 1, 0) };
    if read < 2 {
        return None;
    }
    let mut id = notif.id;
    // SAFETY: the id is still valid only if the caller is still waiting (it was not replaced by a
    // different process reusing the pid, whose memory we would have read).
    let valid = unsafe {
        libc::ioctl(
            notify.as_raw_fd(),
            SECCOMP_IOCTL_NOTIF_ID_VALID as _,
            &mut id as *mut u64,
        )
    };
    if valid < 0 {
        return None;
    }
    let read = read as usize;
    let family = u16::from_ne_bytes([buf[0], buf[1]]) as i32;
    let port = u16::from_be_bytes([buf[2], buf[3]]);
    match family {
        libc::AF_INET if read >= 8 => {
            let ip = Ipv4Addr::new(buf[4], buf[5], buf[6], buf[7]);
            Some(SocketAddr::new(IpAddr::V4(ip), port))
        }
        libc::AF_INET6 if read >= 24 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&buf[8..24]);
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port))
        }
        _ => None,
    }
}

/// Whether the socket being connected is TCP (UDP "connections", e.g. a resolver's, are left to fail
/// in the empty namespace unrecorded).
fn is_stream(notif: &SeccompNotif) -> bool {
    let Some(pid) = rustix::process::Pid::from_raw(notif.pid as i32) else {
        return true;
    };
    let Ok(pidfd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) else {
        return true;
    };
    let Ok(socket) = rustix::process::pidfd_getfd(
        pidfd.as_fd(),
        notif.data.args[0] as i32,
        rustix::process::PidfdGetfdFlags::empty(),
    ) else {
        return true;
    };
    !matches!(
        rustix::net::sockopt::socket_type(&socket),
        Ok(t) if t != rustix::net::SocketType::STREAM
    )
}
