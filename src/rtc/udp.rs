//! The UDP I/O shell: one socket for every peer of every media driver.
//!
//! How this works: [`UdpMux::spawn`] takes the bound socket and starts one receive task. Each
//! consumer (one media driver per room) opens a route ([`UdpMuxHandle::open_route`]) and gets a
//! [`UdpRoute`]: a bounded inbox of [`Datagram`]s and a way to send. The receive task routes
//! every datagram:
//!
//! 1. a STUN message carrying a `USERNAME` goes to the route that owns the local ufrag (the part
//!    before the `:`); routes publish their current ufrags with [`UdpRoute::set_ufrags`] after
//!    every negotiation (each re-offer is an ICE restart with new ufrags). The source address is
//!    then remembered for that route;
//! 2. everything else (DTLS, SRTP, SRTCP, STUN without `USERNAME`) goes to the route that last
//!    received a STUN request from that source address;
//! 3. anything else is dropped.
//!
//! ICE-TCP connections ([`crate::rtc::tcp`]) feed their frames through the same routing
//! ([`MuxIngress`]) as [`Protocol::Tcp`] datagrams, and a route's TCP transmits go to the
//! connection whose remote address is their destination. (A TCP and a UDP source with the same
//! IP and port share a learnt-address entry; the SFU still checks which session accepts a
//! datagram, so the worst case is a datagram dropped.)
//!
//! The routing table is shared behind a `std::sync::Mutex` held only for map operations and a
//! non-blocking `try_send`, never across an `.await`; so [`UdpRoute::set_ufrags`] is a plain
//! synchronous call and the new ufrags are routable before the caller sends its answer.
//!
//! Queue policy: a route's inbox holds [`ROUTE_INBOX_CAPACITY`] datagrams; when it is full the
//! datagram is dropped (UDP semantics: the peers' NACK/PLI machinery recovers) and a counter is
//! logged. Learnt addresses follow [`AddrCache`]'s one policy: silent for [`ADDR_IDLE_EXPIRY`],
//! they are forgotten.
//! The receive buffer is one `BytesMut` that datagrams are split off, so receiving allocates
//! only once per ~64 KiB of traffic, not per packet.
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::BytesMut;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::rtc::metrics::{HEARTBEAT_INTERVAL, MediaMetrics, Watch};
use crate::rtc::net::{ADDR_IDLE_EXPIRY, AddrCache, Protocol, Stun};
pub use crate::rtc::net::{Datagram, Transmit};
use crate::rtc::tcp::{OutboxRefusal, TcpOutbox};

/// How many datagrams a route's inbox holds before new ones are dropped.
pub const ROUTE_INBOX_CAPACITY: usize = 2048;
/// Receive and send buffer asked of the kernel for the one media socket. Every peer's media
/// arrives on it, so the default (~208 KiB, ~170 video packets) overflows whenever the receive
/// task is not scheduled for a few milliseconds: 50 rooms of 4 lost 1–3% of their packets in
/// the kernel with it. The kernel caps the request at `net.core.rmem_max`/`wmem_max`.
pub const MEDIA_SOCKET_BUFFER: usize = 8 * 1024 * 1024;

/// Asks for [`MEDIA_SOCKET_BUFFER`] both ways and says what the kernel granted (a warning with
/// the sysctl that raises the cap when it granted less).
fn enlarge_buffers(socket: &UdpSocket) {
    let sock = socket2::SockRef::from(socket);
    let _ = sock.set_recv_buffer_size(MEDIA_SOCKET_BUFFER);
    let _ = sock.set_send_buffer_size(MEDIA_SOCKET_BUFFER);
    // Linux reports twice what it reserves for the payload (it counts its bookkeeping too).
    let granted = sock.recv_buffer_size().unwrap_or(0);
    if granted < MEDIA_SOCKET_BUFFER {
        log::warn!(
            "media socket: receive buffer {} KiB, asked for {} KiB (the kernel's cap: raise it with \
             `sysctl -w net.core.rmem_max={MEDIA_SOCKET_BUFFER} net.core.wmem_max={MEDIA_SOCKET_BUFFER}`)",
            granted / 1024,
            MEDIA_SOCKET_BUFFER / 1024
        );
    } else {
        log::info!("media socket: receive buffer {} KiB", granted / 1024);
    }
}

/// Most datagrams one `sendmmsg` call carries: a forwarded packet's fan-out goes out in calls
/// of this many instead of one `sendto` each. That saves syscall entries; on loopback it
/// measured no gain (BENCHMARKS.md), where the kernel's cost is the delivery to each receiver.
pub const SEND_BATCH: usize = 32;
/// The largest datagram we receive whole (WebRTC keeps packets below the path MTU).
const MAX_DATAGRAM: usize = 2048;
/// Block size of the receive buffer that datagrams are split off.
const RECV_BLOCK: usize = 64 * 1024;

/// Identifies an open route inside the mux.
type RouteKey = u64;

/// The shared routing table.
type Table = Arc<Mutex<Routes>>;

fn lock(table: &Table) -> MutexGuard<'_, Routes> {
    // Only HashMap operations run under the lock; the maps stay consistent on a panic.
    table.lock().unwrap_or_else(|p| p.into_inner())
}

/// The running mux: cloneable handle used to open routes.
#[derive(Clone)]
pub struct UdpMuxHandle {
    socket: Arc<UdpSocket>,
    table: Table,
    next_key: Arc<AtomicU64>,
    metrics: MediaMetrics,
}

/// The UDP demultiplexer (see the module docs).
pub struct UdpMux;

impl UdpMux {
    /// Starts the receive task on the current tokio runtime; it ends when every handle and every
    /// [`UdpRoute`] is dropped.
    pub fn spawn(socket: UdpSocket) -> UdpMuxHandle {
        Self::spawn_watched(socket, MediaMetrics::default(), None)
    }

    /// [`UdpMux::spawn`], counting drops in `metrics` and beating `watch` every time round its
    /// loop (at least every [`HEARTBEAT_INTERVAL`]).
    pub fn spawn_watched(
        socket: UdpSocket,
        metrics: MediaMetrics,
        watch: Option<Watch>,
    ) -> UdpMuxHandle {
        enlarge_buffers(&socket);
        let socket = Arc::new(socket);
        let table: Table = Arc::default();
        tokio::spawn(run(
            socket.clone(),
            Arc::downgrade(&table),
            metrics.clone(),
            watch,
        ));
        UdpMuxHandle {
            socket,
            table,
            next_key: Arc::new(AtomicU64::new(1)),
            metrics,
        }
    }
}

impl UdpMuxHandle {
    /// The socket's local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The way in for ICE-TCP connections (see the module docs).
    pub fn ingress(&self) -> MuxIngress {
        MuxIngress {
            table: Arc::downgrade(&self.table),
            metrics: self.metrics.clone(),
        }
    }

    /// Opens a route; `label` only appears in logs.
    pub fn open_route(&self, label: &str) -> UdpRoute {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let (tx, inbox) = mpsc::channel(ROUTE_INBOX_CAPACITY);
        log::debug!("udp mux: route {label} opened");
        lock(&self.table).routes.insert(
            key,
            RouteEntry {
                label: label.to_owned(),
                inbox: tx,
                ufrags: Vec::new(),
                dropped: 0,
            },
        );
        UdpRoute {
            key,
            inbox,
            socket: self.socket.clone(),
            v6: self.socket.local_addr().is_ok_and(|a| a.is_ipv6()),
            batch: Vec::with_capacity(SEND_BATCH),
            table: self.table.clone(),
        }
    }
}

/// One consumer's view of the shared socket. Dropping it closes the route.
pub struct UdpRoute {
    key: RouteKey,
    inbox: mpsc::Receiver<Datagram>,
    socket: Arc<UdpSocket>,
    /// Whether the socket is IPv6 (IPv4 destinations then go as IPv4-mapped addresses).
    v6: bool,
    /// UDP transmits waiting for [`UdpRoute::flush`]; never more than [`SEND_BATCH`].
    batch: Vec<Transmit>,
    table: Table,
}

impl UdpRoute {
    /// The next datagram for this route (`None` once the mux stopped). Cancel-safe.
    pub async fn recv(&mut self) -> Option<Datagram> {
        self.inbox.recv().await
    }

    /// The next datagram already waiting for this route, without waiting.
    pub fn try_recv(&mut self) -> Option<Datagram> {
        self.inbox.try_recv().ok()
    }

    /// Replaces the set of local ICE ufrags whose STUN requests are routed here; effective
    /// before this call returns.
    pub fn set_ufrags(&self, ufrags: &[String]) {
        lock(&self.table).set_ufrags(self.key, ufrags);
    }

    /// Queues a transmit: a UDP one joins the batch [`Self::flush`] sends (flushed here when it
    /// holds [`SEND_BATCH`]; returns how many of those the socket did not take), a TCP one is
    /// queued on its connection at once (an error when that connection cannot take it).
    pub fn queue(&mut self, transmit: Transmit) -> io::Result<usize> {
        if transmit.protocol != Protocol::Udp {
            return self.send_tcp(&transmit).map(|()| 0);
        }
        self.batch.push(transmit);
        if self.batch.len() >= SEND_BATCH {
            return Ok(self.flush());
        }
        Ok(0)
    }

    /// Sends the queued UDP transmits, up to [`SEND_BATCH`] per `sendmmsg` call, and returns how
    /// many were dropped: all that remain when the socket cannot take more now (UDP semantics:
    /// the peers' NACK and PLI recover), and any one the kernel refuses (logged at debug).
    pub fn flush(&mut self) -> usize {
        let mut dropped = 0;
        let mut start = 0;
        while start < self.batch.len() {
            let end = self.batch.len().min(start + SEND_BATCH);
            match send_many(&self.socket, self.v6, &self.batch[start..end]) {
                Ok(sent) if sent > 0 => start += sent,
                Ok(_) => {
                    dropped += self.batch.len() - start;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    dropped += self.batch.len() - start;
                    break;
                }
                Err(e) => {
                    // sendmmsg reports an error only for the first datagram of the call.
                    log::debug!(
                        "udp: datagram to {} dropped: {e}",
                        self.batch[start].destination
                    );
                    dropped += 1;
                    start += 1;
                }
            }
        }
        self.batch.clear();
        dropped
    }

    /// Queues a TCP transmit on the ICE-TCP connection from its destination (see
    /// [`crate::rtc::tcp`] for the outbox policy).
    fn send_tcp(&self, transmit: &Transmit) -> io::Result<()> {
        let outbox = lock(&self.table).tcp.get(&transmit.destination).cloned();
        let Some(outbox) = outbox else {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "no ICE-TCP connection from that address",
            ));
        };
        match outbox.try_push(&transmit.contents) {
            Ok(()) => Ok(()),
            Err(OutboxRefusal::Full) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "ICE-TCP outbox full",
            )),
            Err(OutboxRefusal::TooLarge) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "datagram too large for a frame",
            )),
            Err(OutboxRefusal::Closed) => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "ICE-TCP connection closed",
            )),
        }
    }
}

/// Sends `batch` (at most [`SEND_BATCH`]) with one `sendmmsg` if the socket can take it now;
/// returns how many went. Nothing is allocated: the headers live on the stack for the call.
#[cfg(target_os = "linux")]
fn send_many(socket: &UdpSocket, v6: bool, batch: &[Transmit]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let n = batch.len().min(SEND_BATCH);
    // SAFETY: all-zero is a valid value of these plain C structs.
    let mut names: [libc::sockaddr_storage; SEND_BATCH] = unsafe { std::mem::zeroed() };
    let mut iovecs: [libc::iovec; SEND_BATCH] = unsafe { std::mem::zeroed() };
    let mut headers: [libc::mmsghdr; SEND_BATCH] = unsafe { std::mem::zeroed() };
    for (i, transmit) in batch[..n].iter().enumerate() {
        let name_len = write_sockaddr(&mut names[i], transmit.destination, v6);
        iovecs[i] = libc::iovec {
            iov_base: transmit.contents.as_ptr() as *mut libc::c_void,
            iov_len: transmit.contents.len(),
        };
        let header = &mut headers[i].msg_hdr;
        header.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
        header.msg_namelen = name_len;
        header.msg_iov = &mut iovecs[i];
        header.msg_iovlen = 1;
    }
    let fd = socket.as_raw_fd();
    socket.try_io(tokio::io::Interest::WRITABLE, || {
        // SAFETY: `headers[..n]` point into `names`, `iovecs` and `batch`, all alive and
        // unmoved for the duration of the call; the kernel only reads them (and writes msg_len).
        let sent = unsafe { libc::sendmmsg(fd, headers.as_mut_ptr(), n as libc::c_uint, 0) };
        if sent < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(sent as usize)
        }
    })
}

/// Elsewhere than Linux: one `sendto` per datagram.
#[cfg(not(target_os = "linux"))]
fn send_many(socket: &UdpSocket, v6: bool, batch: &[Transmit]) -> io::Result<usize> {
    let Some(first) = batch.first() else {
        return Ok(0);
    };
    socket.try_send_to(&first.contents, socket_destination(first.destination, v6))?;
    Ok(1)
}

/// An IPv6 socket reaches IPv4 peers through IPv4-mapped addresses.
fn socket_destination(to: SocketAddr, v6: bool) -> SocketAddr {
    match to {
        SocketAddr::V4(v4) if v6 => {
            SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
        }
        _ => to,
    }
}

/// Writes `to` (as [`socket_destination`] maps it) into `name`; returns its length.
#[cfg(target_os = "linux")]
fn write_sockaddr(name: &mut libc::sockaddr_storage, to: SocketAddr, v6: bool) -> libc::socklen_t {
    let storage: *mut libc::sockaddr_storage = name;
    match socket_destination(to, v6) {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is large and aligned enough for any socket address.
            unsafe { storage.cast::<libc::sockaddr_in>().write(sin) };
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above.
            unsafe { storage.cast::<libc::sockaddr_in6>().write(sin6) };
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

impl Drop for UdpRoute {
    fn drop(&mut self) {
        lock(&self.table).remove_route(self.key);
    }
}

struct RouteEntry {
    label: String,
    inbox: mpsc::Sender<Datagram>,
    ufrags: Vec<String>,
    dropped: u64,
}

#[derive(Default)]
struct Routes {
    routes: HashMap<RouteKey, RouteEntry>,
    by_ufrag: HashMap<String, RouteKey>,
    /// Learnt source address → route.
    by_addr: AddrCache<RouteKey>,
    /// Open ICE-TCP connections by remote address, for sending.
    tcp: HashMap<SocketAddr, TcpOutbox>,
}

impl Routes {
    fn set_ufrags(&mut self, key: RouteKey, ufrags: &[String]) {
        let Some(route) = self.routes.get_mut(&key) else {
            return;
        };
        for old in route.ufrags.drain(..) {
            if self.by_ufrag.get(&old) == Some(&key) {
                self.by_ufrag.remove(&old);
            }
        }
        for u in ufrags {
            self.by_ufrag.insert(u.clone(), key);
        }
        route.ufrags = ufrags.to_vec();
    }

    fn remove_route(&mut self, key: RouteKey) {
        if let Some(route) = self.routes.remove(&key) {
            log::debug!("udp mux: route {} closed", route.label);
            for u in route.ufrags {
                if self.by_ufrag.get(&u) == Some(&key) {
                    self.by_ufrag.remove(&u);
                }
            }
        }
        self.by_addr.forget(key);
    }

    /// Finds the route for a datagram (see the module docs for the rules).
    fn route(&mut self, source: SocketAddr, contents: &[u8], now: Instant) -> Option<RouteKey> {
        if let Some(ufrag) = stun_local_ufrag(contents)
            && let Some(&key) = self.by_ufrag.get(ufrag)
        {
            self.by_addr.learn(source, key, now);
            return Some(key);
        }
        self.by_addr.lookup(source, now)
    }

    fn deliver(&mut self, key: RouteKey, datagram: Datagram, metrics: &MediaMetrics) {
        let Some(route) = self.routes.get_mut(&key) else {
            return;
        };
        match route.inbox.try_send(datagram) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics.drop_inbox_full.inc();
                metrics.overflow_route_inbox.inc();
                route.dropped += 1;
                if route.dropped.is_power_of_two() {
                    log::warn!(
                        "udp mux: route {} inbox full, {} datagrams dropped",
                        route.label,
                        route.dropped
                    );
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => self.remove_route(key),
        }
    }

    fn expire_addrs(&mut self, now: Instant) {
        self.by_addr.expire(now);
    }
}

async fn run(
    socket: Arc<UdpSocket>,
    table: std::sync::Weak<Mutex<Routes>>,
    metrics: MediaMetrics,
    watch: Option<Watch>,
) {
    let local = match socket.local_addr() {
        Ok(a) => a,
        Err(e) => {
            log::error!("udp mux: no local address: {e}");
            return;
        }
    };
    let mut buf = BytesMut::with_capacity(RECV_BLOCK);
    let mut expiry = tokio::time::interval(ADDR_IDLE_EXPIRY / 3);
    expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heartbeat = tokio::time::interval(HEARTBEAT_INTERVAL);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if let Some(w) = &watch {
            w.beat();
        }
        if buf.capacity() < MAX_DATAGRAM {
            buf.reserve(RECV_BLOCK);
        }
        tokio::select! {
            // Wakes an idle mux so its heartbeat shows it alive.
            _ = heartbeat.tick() => {}
            _ = expiry.tick() => {
                // Every handle and route is gone: nobody can use the mux any more.
                let Some(table) = table.upgrade() else { break };
                lock(&table).expire_addrs(Instant::now());
            }
            received = socket.recv_buf_from(&mut buf) => {
                let (len, source) = match received {
                    Ok(r) => r,
                    Err(e) => {
                        // ICMP errors (e.g. port unreachable) surface here on some systems;
                        // they concern one peer, never the socket.
                        log::debug!("udp mux: receive error: {e}");
                        buf.clear();
                        continue;
                    }
                };
                let contents = buf.split_to(len).freeze();
                let now = Instant::now();
                let source = canonical(source);
                let Some(table) = table.upgrade() else { break };
                let mut routes = lock(&table);
                match routes.route(source, &contents, now) {
                    Some(key) => routes.deliver(
                        key,
                        Datagram {
                            source,
                            destination: local,
                            received: now,
                            protocol: Protocol::Udp,
                            contents,
                        },
                        &metrics,
                    ),
                    None => {
                        metrics.drop_unroutable.inc();
                    }
                }
            }
        }
    }
    log::debug!("udp mux: stopped");
}

/// What became of a datagram handed to [`MuxIngress::deliver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Queued for a route (or dropped because its inbox was full: counted and logged there).
    Routed,
    /// No route owns it: dropped and counted.
    Unroutable,
    /// Every handle and route of the mux is gone.
    Stopped,
}

/// Routing for datagrams that did not come through the UDP socket (ICE-TCP frames): the same
/// rules and counters as the socket's own.
#[derive(Clone)]
pub struct MuxIngress {
    table: std::sync::Weak<Mutex<Routes>>,
    metrics: MediaMetrics,
}

impl MuxIngress {
    /// Routes one datagram (see the module docs).
    pub fn deliver(&self, datagram: Datagram) -> Delivery {
        let Some(table) = self.table.upgrade() else {
            return Delivery::Stopped;
        };
        let mut routes = lock(&table);
        match routes.route(datagram.source, &datagram.contents, datagram.received) {
            Some(key) => {
                routes.deliver(key, datagram, &self.metrics);
                Delivery::Routed
            }
            None => {
                self.metrics.drop_unroutable.inc();
                Delivery::Unroutable
            }
        }
    }

    /// The counters the routing updates.
    pub fn metrics(&self) -> &MediaMetrics {
        &self.metrics
    }

    /// Whether `contents` is a STUN message whose `USERNAME` names a ufrag some route owns.
    pub fn is_check_for_known_session(&self, contents: &[u8]) -> bool {
        let Some(table) = self.table.upgrade() else {
            return false;
        };
        stun_local_ufrag(contents).is_some_and(|u| lock(&table).by_ufrag.contains_key(u))
    }

    /// Makes the connection from `remote` the one TCP transmits to `remote` go to.
    pub fn attach_tcp(&self, remote: SocketAddr, outbox: TcpOutbox) {
        if let Some(table) = self.table.upgrade() {
            lock(&table).tcp.insert(remote, outbox);
        }
    }

    /// Forgets the connection from `remote` (it closed).
    pub fn detach_tcp(&self, remote: SocketAddr) {
        if let Some(table) = self.table.upgrade() {
            lock(&table).tcp.remove(&remote);
        }
    }
}

/// `::ffff:a.b.c.d` → `a.b.c.d`, so addresses compare equal to the IPv4 candidates.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// The local ufrag of a STUN message's `USERNAME` (`"<local>:<remote>"`), if it has one.
pub(crate) fn stun_local_ufrag(d: &[u8]) -> Option<&str> {
    let user = std::str::from_utf8(Stun::parse(d)?.attribute(Stun::USERNAME)?).ok()?;
    Some(user.split(':').next().unwrap_or(user))
}

/// The addresses of every local interface (IPv4, plus global IPv6) with `port`, loopback first.
///
/// Read from `/proc/net/fib_trie` and `/proc/net/if_inet6` (Linux) so no extra crate is needed;
/// elsewhere, or if that fails, the address of the default route (found by "connecting" a UDP
/// socket, which sends nothing) plus loopback.
pub fn local_interface_addrs(port: u16) -> Vec<SocketAddr> {
    let mut ips: Vec<IpAddr> = Vec::new();
    if let Ok(trie) = std::fs::read_to_string("/proc/net/fib_trie") {
        ips.extend(parse_fib_trie(&trie).into_iter().map(IpAddr::V4));
    }
    if let Ok(inet6) = std::fs::read_to_string("/proc/net/if_inet6") {
        ips.extend(parse_if_inet6(&inet6).into_iter().map(IpAddr::V6));
    }
    if ips.is_empty() {
        ips.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
        if let Some(ip) = default_route_ip() {
            ips.push(ip);
        }
    }
    let mut out: Vec<SocketAddr> = Vec::new();
    for ip in ips {
        let a = SocketAddr::new(ip, port);
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out.sort_by_key(|a| (!a.ip().is_loopback(), a.is_ipv6()));
    out
}

/// The candidate addresses for a socket bound to `bound`: its own address if it is bound to a
/// specific IP, else every local interface of the socket's family; plus `external_ip` if given.
pub fn candidate_addrs(bound: SocketAddr, external_ip: Option<IpAddr>) -> Vec<SocketAddr> {
    let port = bound.port();
    let mut out: Vec<SocketAddr> = if bound.ip().is_unspecified() {
        local_interface_addrs(port)
            .into_iter()
            // A dual-stack `[::]` socket serves both families; `0.0.0.0` only IPv4.
            .filter(|a| bound.is_ipv6() || a.is_ipv4())
            .collect()
    } else {
        vec![bound]
    };
    if let Some(ip) = external_ip {
        let a = SocketAddr::new(ip, port);
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

fn parse_fib_trie(trie: &str) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in trie.lines() {
        let t = line.trim();
        if let Some(ip) = t.strip_prefix("|-- ") {
            last = ip.parse().ok();
        } else if t.starts_with("/32 host LOCAL")
            && let Some(ip) = last.take()
            && !out.contains(&ip)
        {
            out.push(ip);
        }
    }
    out
}

fn parse_if_inet6(text: &str) -> Vec<Ipv6Addr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let (Some(hex), Some(_idx), Some(_plen), Some(scope)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        // Only global scope (0x00): link-local addresses need a zone id browsers don't send.
        if scope != "00" || hex.len() != 32 {
            continue;
        }
        let Ok(bits) = u128::from_str_radix(hex, 16) else {
            continue;
        };
        out.push(Ipv6Addr::from(bits));
    }
    out
}

fn default_route_ip() -> Option<IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    // TEST-NET-1: connect() on UDP only picks a route, nothing is sent.
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fib_trie_yields_only_host_local_addresses() {
        let trie = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n           |-- 127.0.0.0\n              /8 host LOCAL\n           |-- 127.0.0.1\n              /32 host LOCAL\n        |-- 127.255.255.255\n           /32 link BROADCAST\n           |-- 192.0.2.2\n              /32 host LOCAL\nLocal:\n           |-- 192.0.2.2\n              /32 host LOCAL\n";
        assert_eq!(
            parse_fib_trie(trie),
            vec![Ipv4Addr::LOCALHOST, Ipv4Addr::new(192, 0, 2, 2)]
        );
    }

    #[test]
    fn if_inet6_skips_link_local_addresses() {
        let text = "00000000000000000000000000000001 01 80 10 80       lo\nfd000000000000000000000000000002 04 40 00 82     eth0\nfe8000000000000000fc00fffe000001 04 40 20 80     eth0\n";
        assert_eq!(
            parse_if_inet6(text),
            vec!["fd00::2".parse::<Ipv6Addr>().unwrap()]
        );
    }

    #[test]
    fn local_interface_addrs_include_loopback_first_with_the_port() {
        let addrs = local_interface_addrs(4242);
        assert!(addrs.iter().all(|a| a.port() == 4242));
        assert!(
            addrs.first().is_some_and(|a| a.ip().is_loopback()),
            "{addrs:?}"
        );
    }

    /// A STUN binding request whose `USERNAME` is `user`.
    fn stun_request(user: &str) -> Vec<u8> {
        let mut m = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
        m.extend_from_slice(&[7; 12]);
        let padded = user.len().div_ceil(4) * 4;
        m.extend_from_slice(&[0x00, 0x06, 0x00, user.len() as u8]);
        m.extend_from_slice(user.as_bytes());
        m.resize(20 + 4 + padded, 0);
        let len = (m.len() - 20) as u16;
        m[2..4].copy_from_slice(&len.to_be_bytes());
        m
    }

    #[test]
    fn a_peer_at_a_new_address_is_routed_there_after_one_stun_check_and_the_old_one_still_works() {
        let (tx, _rx) = mpsc::channel(1);
        let mut routes = Routes::default();
        let entry = RouteEntry {
            label: "room=r".into(),
            inbox: tx,
            ufrags: Vec::new(),
            dropped: 0,
        };
        routes.routes.insert(1, entry);
        routes.set_ufrags(1, &["abcd".into()]);
        let (old, new): (SocketAddr, SocketAddr) = (
            "192.0.2.1:4000".parse().unwrap(),
            "198.51.100.7:61000".parse().unwrap(),
        );
        let srtp = [0x80u8; 40];
        let t0 = Instant::now();
        assert_eq!(routes.route(old, &stun_request("abcd:efgh"), t0), Some(1));
        assert_eq!(routes.route(old, &srtp, t0), Some(1));
        assert_eq!(routes.route(new, &srtp, t0), None, "unknown before a check");
        assert_eq!(routes.route(new, &stun_request("abcd:efgh"), t0), Some(1));
        assert_eq!(
            routes.route(new, &srtp, t0),
            Some(1),
            "learnt from the check"
        );
        assert_eq!(routes.route(old, &srtp, t0), Some(1), "until it expires");
        assert_eq!(
            routes.route(new, &stun_request("zzzz:efgh"), t0),
            Some(1),
            "by address"
        );
    }

    #[test]
    fn stun_username_yields_the_local_ufrag() {
        let mut m = vec![0x00, 0x01, 0x00, 0x10, 0x21, 0x12, 0xA4, 0x42];
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&[0x00, 0x06, 0x00, 0x09]);
        m.extend_from_slice(b"abcd:efgh\0\0\0");
        assert_eq!(stun_local_ufrag(&m), Some("abcd"));
        assert_eq!(stun_local_ufrag(&m[..20]), None);
        assert_eq!(stun_local_ufrag(&[0x80; 40]), None);
    }

    fn udp_transmit(to: SocketAddr, contents: Vec<u8>) -> Transmit {
        Transmit {
            source: to,
            destination: to,
            protocol: Protocol::Udp,
            contents,
        }
    }

    /// Reads `n` datagrams from `socket` (each within a second).
    async fn read_datagrams(socket: &UdpSocket, n: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        for _ in 0..n {
            let len =
                tokio::time::timeout(std::time::Duration::from_secs(1), socket.recv(&mut buf))
                    .await
                    .expect("datagram in time")
                    .unwrap();
            out.push(buf[..len].to_vec());
        }
        out
    }

    #[tokio::test]
    async fn a_fan_out_larger_than_a_batch_reaches_every_destination_in_order() {
        let mux = UdpMux::spawn(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let mut route = mux.open_route("test");
        // try_io sends only once the reactor has seen the new socket writable.
        mux.socket.writable().await.unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut dropped = 0;
        for i in 0..(SEND_BATCH as u8 * 2 + 7) {
            let to = if i % 2 == 0 { &a } else { &b };
            dropped += route
                .queue(udp_transmit(to.local_addr().unwrap(), vec![i]))
                .unwrap();
        }
        dropped += route.flush();
        assert_eq!(dropped, 0);
        let evens: Vec<Vec<u8>> = (0..71).step_by(2).map(|i| vec![i]).collect();
        let odds: Vec<Vec<u8>> = (1..71).step_by(2).map(|i| vec![i]).collect();
        assert_eq!(read_datagrams(&a, evens.len()).await, evens);
        assert_eq!(read_datagrams(&b, odds.len()).await, odds);
    }

    #[tokio::test]
    async fn a_destination_the_kernel_refuses_is_dropped_alone_and_counted() {
        let mux = UdpMux::spawn(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let mut route = mux.open_route("test");
        // try_io sends only once the reactor has seen the new socket writable.
        mux.socket.writable().await.unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = a.local_addr().unwrap();
        // Port 0 is no destination: sendmmsg fails on that datagram alone.
        let refused: SocketAddr = "127.0.0.1:0".parse().unwrap();
        for (dest, byte) in [(to, 1), (refused, 2), (to, 3), (refused, 4), (to, 5)] {
            route.queue(udp_transmit(dest, vec![byte])).unwrap();
        }
        assert_eq!(route.flush(), 2);
        assert_eq!(read_datagrams(&a, 3).await, vec![vec![1], vec![3], vec![5]]);
    }

    #[tokio::test]
    async fn an_ipv6_socket_reaches_ipv4_peers_through_mapped_addresses() {
        let Ok(socket) = UdpSocket::bind("[::]:0").await else {
            eprintln!("no IPv6 on this machine: nothing to test");
            return;
        };
        let mux = UdpMux::spawn(socket);
        let mut route = mux.open_route("test");
        // try_io sends only once the reactor has seen the new socket writable.
        mux.socket.writable().await.unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        route
            .queue(udp_transmit(a.local_addr().unwrap(), vec![7]))
            .unwrap();
        assert_eq!(route.flush(), 0);
        assert_eq!(read_datagrams(&a, 1).await, vec![vec![7]]);
    }

    #[tokio::test]
    async fn the_media_socket_gets_the_larger_buffer_the_kernel_allows() {
        let cap = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|t| t.trim().parse::<usize>().ok())
            .expect("net.core.rmem_max");
        let mux = UdpMux::spawn(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let granted = socket2::SockRef::from(mux.socket.as_ref())
            .recv_buffer_size()
            .unwrap();
        // Linux grants the request capped at rmem_max, doubled for its bookkeeping (the
        // default without a request is rmem_default doubled).
        assert_eq!(granted, 2 * MEDIA_SOCKET_BUFFER.min(cap));
    }
}
