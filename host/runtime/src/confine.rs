//! Confinement of the commands a step starts: each `process` call runs in its own PID namespace (and,
//! in [`ScriptNetwork::Confined`] mode, its own network namespace), so that nothing it starts outlives
//! the step and, when confined, its only way out is the step's egress proxy.
//!
//! How: the command is started with one `clone(2)` that creates the namespaces — a user namespace
//! too when the host is not root, mapping the host's uid and gid onto themselves — so it is PID 1 of
//! its PID namespace (crate::clone_spawn). When PID 1 exits, or is killed, the kernel kills
//! everything else in the namespace: background jobs, `nohup`, `setsid` and double forks included.
//! In confined mode the child also brings up the loopback interface of the new network namespace
//! and creates there the listening sockets the host serves (the egress proxy, granted TCP
//! forwards), handing them to the host over a socket pair (`SCM_RIGHTS`) before it execs.
//!
//! Only async-signal-safe calls happen in the child: everything it needs (flags, uid/gid maps,
//! addresses) is prepared in the parent by [`ChildPlan::new`].

use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};
use rustix::thread::UnshareFlags;
use std::ffi::CString;
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

/// Set (to anything non-empty) to make the namespace probe fail, as on a host without namespaces: how
/// tests show that confined mode refuses instead of running a script unconfined.
pub const SIMULATE_UNAVAILABLE_ENV: &str = "OCTO_TEST_NAMESPACES_UNAVAILABLE";

/// Most sockets the child creates in its network namespace for the host (egress proxy + TCP forwards).
pub(crate) const MAX_LISTENERS: usize = 8;

/// How far a step's scripts reach the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScriptNetwork {
    /// The host's network, as before, with HTTP(S) through the step's audited egress proxy
    /// (`HTTP_PROXY`/`HTTPS_PROXY`); tools that ignore those variables reach the network directly.
    #[default]
    Audited,
    /// A network namespace of their own whose only way out is the egress proxy (and TCP destinations
    /// an administrator granted, forwarded by the host after the same check). Refused where namespaces
    /// are unavailable.
    Confined,
}

impl ScriptNetwork {
    /// `audited` or `confined`, as settings and the protocol spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            ScriptNetwork::Audited => "audited",
            ScriptNetwork::Confined => "confined",
        }
    }

    /// Parses [`ScriptNetwork::as_str`].
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "audited" => Some(ScriptNetwork::Audited),
            "confined" => Some(ScriptNetwork::Confined),
            _ => None,
        }
    }
}

impl std::fmt::Display for ScriptNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// uid_map / gid_map contents for a user namespace (the host's ids mapped onto themselves).
struct IdMaps {
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
}

impl IdMaps {
    /// `None` for root, who needs no user namespace (and whose scripts keep their real privileges).
    fn for_current_user() -> Option<IdMaps> {
        let uid = rustix::process::geteuid();
        if uid.is_root() {
            return None;
        }
        let gid = rustix::process::getegid();
        Some(IdMaps {
            uid_map: format!("{0} {0} 1\n", uid.as_raw()).into_bytes(),
            gid_map: format!("{0} {0} 1\n", gid.as_raw()).into_bytes(),
        })
    }

    fn flags() -> UnshareFlags {
        if rustix::process::geteuid().is_root() {
            UnshareFlags::empty()
        } else {
            UnshareFlags::NEWUSER
        }
    }
}

/// Whether the namespaces of `network` mode can be created here; probed once per mode (a fork that
/// unshares and exits) and, once it succeeded, remembered across runs (see crate::probe_cache),
/// except for the test hook, which is read every time.
pub(crate) fn available(network: ScriptNetwork) -> Result<(), String> {
    if std::env::var_os(SIMULATE_UNAVAILABLE_ENV).is_some_and(|v| !v.is_empty()) {
        return Err(format!(
            "namespaces are unavailable ({SIMULATE_UNAVAILABLE_ENV} is set)"
        ));
    }
    static AUDITED: OnceLock<Result<(), String>> = OnceLock::new();
    static CONFINED: OnceLock<Result<(), String>> = OnceLock::new();
    let cell = match network {
        ScriptNetwork::Audited => &AUDITED,
        ScriptNetwork::Confined => &CONFINED,
    };
    cell.get_or_init(|| crate::probe_cache::remembered(network.as_str(), || probe(network)))
        .clone()
}

fn probe(network: ScriptNetwork) -> Result<(), String> {
    let plan = ChildPlan::without_channel(network);
    // SAFETY: the child only makes async-signal-safe system calls, then `_exit`s.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!(
            "cannot fork to probe namespaces: {}",
            std::io::Error::last_os_error()
        ));
    }
    if pid == 0 {
        // SAFETY: a single-threaded child (after fork); the file table is not shared with anyone.
        let entered = unsafe { rustix::thread::unshare_unsafe(plan.flags) }
            .map_err(std::io::Error::from)
            .and_then(|()| unsafe { plan.set_up_namespaces() });
        let entered = match entered {
            Ok(()) if plan.network => crate::connect_watch::install().map(drop),
            other => other,
        };
        let code = match entered {
            Ok(()) => 0,
            Err(e) => e.raw_os_error().unwrap_or(255),
        };
        // SAFETY: leaving the forked child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    let pid = rustix::process::Pid::from_raw(pid).expect("fork returned a positive pid");
    let status = loop {
        match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty()) {
            Ok(Some((_, status))) => break status,
            Ok(None) => continue,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(format!("cannot wait for the namespace probe: {e}")),
        }
    };
    match status.exit_status() {
        Some(0) => Ok(()),
        Some(errno) => Err(format!(
            "cannot create {} namespaces: {}",
            plan.describe(),
            std::io::Error::from_raw_os_error(errno)
        )),
        None => Err("the namespace probe was killed".into()),
    }
}

/// Everything the child does in its namespaces before exec, prepared before the clone.
pub(crate) struct ChildPlan {
    flags: UnshareFlags,
    id_maps: Option<IdMaps>,
    /// Sockets to create inside the new network namespace (confined mode).
    listen: Vec<SocketAddr>,
    /// Addresses outside 127.0.0.0/8 and `::1` among them, put on loopback (`lo:N`, /32; IPv6 /128)
    /// so they can be bound and reached inside the namespace.
    aliases: Vec<AliasRequest>,
    network: bool,
    /// A file bind-mounted over `/etc/hosts` in a mount namespace of the command's own (confined mode,
    /// when granted names are forwarded).
    hosts: Option<CString>,
    /// The child's end of the socket pair to the host (listening sockets, confined mode).
    channel: Option<OwnedFd>,
}

/// The host's end of the socket pair, read once the command started.
pub(crate) struct HostChannel(OwnedFd);

/// What the child handed over.
pub(crate) struct Handover {
    /// Listening sockets inside the command's network namespace, in the order asked for.
    pub(crate) listeners: Vec<OwnedFd>,
    /// The seccomp notification fd for the command's `connect` calls (confined mode).
    pub(crate) notify: OwnedFd,
}

impl ChildPlan {
    fn without_channel(network: ScriptNetwork) -> ChildPlan {
        let confined = network == ScriptNetwork::Confined;
        let mut flags = UnshareFlags::NEWPID | IdMaps::flags();
        if confined {
            flags |= UnshareFlags::NEWNET;
        }
        ChildPlan {
            flags,
            id_maps: IdMaps::for_current_user(),
            listen: Vec::new(),
            aliases: Vec::new(),
            network: confined,
            hosts: None,
            channel: None,
        }
    }

    /// A plan for `network` mode whose child creates listening sockets at `listen` (confined mode only;
    /// at most [`MAX_LISTENERS`]) and, given `hosts`, sees that file as its `/etc/hosts` (confined
    /// mode only), with the host's end of the channel they come back on (confined mode).
    pub(crate) fn new(
        network: ScriptNetwork,
        listen: Vec<SocketAddr>,
        hosts: Option<&std::path::Path>,
    ) -> std::io::Result<(ChildPlan, Option<HostChannel>)> {
        assert!(listen.len() <= MAX_LISTENERS);
        let mut plan = ChildPlan::without_channel(network);
        if !plan.network {
            return Ok((plan, None));
        }
        let (host, child) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )?;
        let mut v4 = 0;
        for addr in &listen {
            match addr.ip() {
                IpAddr::V4(ip) if !ip.is_loopback() && !plan_has(&plan.aliases, addr.ip()) => {
                    v4 += 1;
                    plan.aliases.push(alias_request(v4, ip));
                }
                IpAddr::V6(ip) if !ip.is_loopback() && !plan_has(&plan.aliases, addr.ip()) => {
                    plan.aliases.push(alias_request_v6(ip));
                }
                _ => {}
            }
        }
        plan.listen = listen;
        if let Some(path) = hosts {
            use std::os::unix::ffi::OsStrExt;
            plan.hosts =
                Some(CString::new(path.as_os_str().as_bytes()).map_err(|_| {
                    std::io::Error::other("the hosts file's path holds a NUL byte")
                })?);
            plan.flags |= UnshareFlags::NEWNS;
        }
        plan.channel = Some(child);
        Ok((plan, Some(HostChannel(host))))
    }

    /// Closes the child's end of the channel (once the child has started).
    pub(crate) fn close_channel(&mut self) {
        self.channel = None;
    }

    /// The namespace flags for `clone(2)`.
    pub(crate) fn clone_flags(&self) -> libc::c_int {
        self.flags.bits() as libc::c_int
    }

    /// Which namespaces, for messages.
    pub(crate) fn describe(&self) -> &'static str {
        match (self.id_maps.is_some(), self.network) {
            (false, false) => "PID",
            (false, true) => "PID and network",
            (true, false) => "user and PID",
            (true, true) => "user, PID and network",
        }
    }

    /// In the namespaces just created: writes the id maps, brings up loopback (and its aliases),
    /// mounts the hosts file and, in confined mode, creates the listening sockets and the `connect`
    /// watch and hands them to the host. Async-signal-safe.
    ///
    /// # Safety
    /// Only in a child between its creation and exec.
    pub(crate) unsafe fn set_up_namespaces(&self) -> std::io::Result<()> {
        if let Some(maps) = &self.id_maps {
            write_file(c"/proc/self/setgroups", b"deny")?;
            write_file(c"/proc/self/uid_map", &maps.uid_map)?;
            write_file(c"/proc/self/gid_map", &maps.gid_map)?;
        }
        if self.network {
            loopback_up()?;
            for alias in &self.aliases {
                add_alias(alias)?;
            }
        }
        if let Some(hosts) = &self.hosts {
            // Nothing mounted here propagates back to the host, then the file over /etc/hosts.
            // SAFETY: plain system calls with NUL-terminated paths prepared before the clone.
            unsafe {
                if libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) < 0
                    || libc::mount(
                        hosts.as_ptr(),
                        c"/etc/hosts".as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND,
                        std::ptr::null(),
                    ) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
        }
        if let (true, Some(channel)) = (self.network, self.channel.as_ref()) {
            self.hand_over_listeners(channel.as_fd())?;
        }
        Ok(())
    }

    /// Creates the listening sockets and installs the `connect` watch, and sends them to the host.
    fn hand_over_listeners(&self, channel: BorrowedFd<'_>) -> std::io::Result<()> {
        let mut owned: [Option<OwnedFd>; MAX_LISTENERS] = [const { None }; MAX_LISTENERS];
        for (slot, addr) in owned.iter_mut().zip(&self.listen) {
            *slot = Some(listener(addr)?);
        }
        // Every connect(2) from here on (this process and all it starts) goes past the host.
        let notify = crate::connect_watch::install()?;
        let mut borrowed: [BorrowedFd<'_>; MAX_LISTENERS + 1] = [channel; MAX_LISTENERS + 1];
        for (b, o) in borrowed.iter_mut().zip(owned.iter().flatten()) {
            *b = o.as_fd();
        }
        borrowed[self.listen.len()] = notify.as_fd();
        let fds = &borrowed[..self.listen.len() + 1];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_LISTENERS + 1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(fds)) {
            return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
        }
        rustix::net::sendmsg(
            channel,
            &[IoSlice::new(b"L")],
            &mut control,
            SendFlags::empty(),
        )?;
        // The listeners and the watch's descriptor are closed here: the host holds them now, and
        // the command must not.
        Ok(())
    }
}

impl HostChannel {
    /// Reads what the child sent (confined mode); call once spawn returned (then it has all been
    /// sent).
    pub(crate) fn receive(self, listeners: usize) -> std::io::Result<Handover> {
        let mut received = Vec::new();
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_LISTENERS + 1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut byte = [0u8; 1];
        rustix::net::recvmsg(
            &self.0,
            &mut [IoSliceMut::new(&mut byte)],
            &mut control,
            RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC,
        )?;
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = message {
                received.extend(fds);
            }
        }
        if received.len() != listeners + 1 {
            return Err(std::io::Error::other(format!(
                "the confined command handed over {} sockets instead of {}",
                received.len(),
                listeners + 1
            )));
        }
        // Sent last, after the listeners.
        let notify = received.pop().expect("the count was checked");
        Ok(Handover {
            listeners: received,
            notify,
        })
    }
}

fn write_file(path: &std::ffi::CStr, bytes: &[u8]) -> std::io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(path, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())?;
    rustix::io::write(&fd, bytes)?;
    Ok(())
}

/// `ip link set lo up` inside the new network namespace.
fn loopback_up() -> std::io::Result<()> {
    let socket = rustix::net::socket_with(
        AddressFamily::INET,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    // SAFETY: `ifreq` is plain data; zero is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    request.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads an `ifreq`.
    let r = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// An address to put on loopback: an `ifreq` naming `lo:N` and an IPv4 address, or an `in6_ifreq`
/// for an IPv6 one. Plain data (the union's pointer member is never used).
#[derive(Clone, Copy)]
enum AliasRequest {
    V4(libc::ifreq, std::net::Ipv4Addr),
    V6(libc::in6_ifreq, std::net::Ipv6Addr),
}

fn plan_has(aliases: &[AliasRequest], ip: IpAddr) -> bool {
    aliases.iter().any(|a| match a {
        AliasRequest::V4(_, v4) => ip == IpAddr::V4(*v4),
        AliasRequest::V6(_, v6) => ip == IpAddr::V6(*v6),
    })
}

/// The request that puts `ip` on loopback as a /128 (the loopback interface of a new network
/// namespace has index 1; loopback addresses skip duplicate address detection).
fn alias_request_v6(ip: std::net::Ipv6Addr) -> AliasRequest {
    // SAFETY: `in6_ifreq` is plain data; zero is a valid value.
    let mut request: libc::in6_ifreq = unsafe { std::mem::zeroed() };
    request.ifr6_addr.s6_addr = ip.octets();
    request.ifr6_prefixlen = 128;
    request.ifr6_ifindex = 1;
    AliasRequest::V6(request, ip)
}

// SAFETY: plain bytes, read only by the kernel in the forked child.
unsafe impl Send for AliasRequest {}
// SAFETY: as above.
unsafe impl Sync for AliasRequest {}

/// The request that puts `ip` on `lo:index`, prepared before the fork.
fn alias_request(index: usize, ip: std::net::Ipv4Addr) -> AliasRequest {
    // SAFETY: `ifreq` is plain data; zero is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    let name = format!("lo:{index}");
    for (dst, src) in request.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: a sockaddr_in fits in the union's sockaddr (both 16 bytes).
    unsafe {
        std::ptr::copy_nonoverlapping(
            &addr as *const libc::sockaddr_in as *const u8,
            &mut request.ifr_ifru.ifru_addr as *mut libc::sockaddr as *mut u8,
            std::mem::size_of::<libc::sockaddr_in>(),
        );
    }
    AliasRequest::V4(request, ip)
}

/// `ip addr add IP/32 dev lo` the ioctl way: the address of an alias interface, then its netmask.
/// Async-signal-safe.
fn add_alias(alias: &AliasRequest) -> std::io::Result<()> {
    let request = match alias {
        AliasRequest::V4(request, _) => request,
        AliasRequest::V6(request, _) => {
            let socket = rustix::net::socket_with(
                AddressFamily::INET6,
                SocketType::DGRAM,
                SocketFlags::CLOEXEC,
                None,
            )?;
            // SAFETY: SIOCSIFADDR on an IPv6 socket reads an `in6_ifreq`.
            if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFADDR, request) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
            return Ok(());
        }
    };
    let socket = rustix::net::socket_with(
        AddressFamily::INET,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    // SAFETY: SIOCSIFADDR reads an `ifreq`.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFADDR, request) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut mask = *request;
    let all = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: u32::MAX },
        sin_zero: [0; 8],
    };
    // SAFETY: as in `alias_request`.
    unsafe {
        std::ptr::copy_nonoverlapping(
            &all as *const libc::sockaddr_in as *const u8,
            &mut mask.ifr_ifru.ifru_netmask as *mut libc::sockaddr as *mut u8,
            std::mem::size_of::<libc::sockaddr_in>(),
        );
    }
    // SAFETY: SIOCSIFNETMASK reads an `ifreq`.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFNETMASK, &mask) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn listener(addr: &SocketAddr) -> std::io::Result<OwnedFd> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::INET,
        SocketAddr::V6(_) => AddressFamily::INET6,
    };
    let socket = rustix::net::socket_with(family, SocketType::STREAM, SocketFlags::CLOEXEC, None)?;
    rustix::net::sockopt::set_socket_reuseaddr(&socket, true)?;
    rustix::net::bind(&socket, addr)?;
    rustix::net::listen(&socket, 128)?;
    Ok(socket)
}

/// Kills PID 1 of a command's namespace and waits (up to `limit`) until it is gone: the kernel reaps
/// every other process of the namespace before PID 1 counts as exited.
pub(crate) fn kill_and_wait(pidfd: &OwnedFd, limit: std::time::Duration) {
    let _ = rustix::process::pidfd_send_signal(pidfd, rustix::process::Signal::KILL);
    let mut fds = [rustix::event::PollFd::new(
        pidfd,
        rustix::event::PollFlags::IN,
    )];
    let timeout = rustix::event::Timespec {
        tv_sec: limit.as_secs() as i64,
        tv_nsec: limit.subsec_nanos() as i64,
    };
    let _ = rustix::event::poll(&mut fds, Some(&timeout));
}
