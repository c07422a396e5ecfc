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
            table: self.table.clone(),
        }
    }
}

/// One consumer's view of the shared socket. Dropping it closes the route.
pub struct UdpRoute {
    key: RouteKey,
    inbox: mpsc::Receiver<Datagram>,
    socket: Arc<UdpSocket>,
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

    /// Sends a datagram, waiting for the socket to be writable (a TCP one is queued on its
    /// connection, never waits).
    pub async fn send(&self, transmit: &Transmit) -> io::Result<()> {
        if transmit.protocol != Protocol::Udp {
            return self.send_tcp(transmit);
        }
        let to = self.destination_for_socket(transmit.destination)?;
        self.socket
            .send_to(&transmit.contents, to)
            .await
            .map(|_| ())
    }

    /// Sends a datagram if the socket can take it now; otherwise it is dropped (UDP semantics).
    pub fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        if transmit.protocol != Protocol::Udp {
            return self.send_tcp(transmit);
        }
        let to = self.destination_for_socket(transmit.destination)?;
        self.socket.try_send_to(&transmit.contents, to).map(|_| ())
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

    /// An IPv6 socket reaches IPv4 peers through IPv4-mapped addresses.
    fn destination_for_socket(&self, to: SocketAddr) -> io::Result<SocketAddr> {
        let local = self.socket.local_addr()?;
        Ok(match (local, to) {
            (SocketAddr::V6(_), SocketAddr::V4(v4)) => {
                SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
            }
            _ => to,
        })
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
}
