//! What crosses the boundary between the sans-IO media cores and the network shell: a
//! [`Datagram`] received, a [`Transmit`] to send, and the one cache of learnt source addresses
//! ([`AddrCache`]) both the UDP mux and the SFU demultiplex with.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
pub use str0m::net::Protocol;

/// One received datagram.
#[derive(Debug, Clone)]
pub struct Datagram {
    /// Remote address (IPv4-mapped IPv6 addresses are turned back into IPv4).
    pub source: SocketAddr,
    /// The local socket address (may be unspecified, e.g. `0.0.0.0:50000`; the SFU maps it to
    /// one of its candidates).
    pub destination: SocketAddr,
    /// When the datagram was read from the socket.
    pub received: Instant,
    /// How it came: [`Protocol::Udp`], or [`Protocol::Tcp`] for one RFC 4571 frame of an
    /// ICE-TCP connection (`source` is then the connection's remote address).
    pub protocol: Protocol,
    /// The datagram.
    pub contents: Bytes,
}

/// A datagram to send through the shared UDP socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Local address the datagram should leave from (one of the advertised candidates).
    pub source: SocketAddr,
    /// Remote address.
    pub destination: SocketAddr,
    /// [`Protocol::Udp`] for the shared socket, [`Protocol::Tcp`] for the ICE-TCP connection
    /// whose remote address is `destination`.
    pub protocol: Protocol,
    /// The datagram.
    pub contents: Vec<u8>,
}

/// How long a learnt source address is remembered without hearing from it: long enough to ride
/// out a quiet stretch (ICE consent checks arrive every few seconds), short enough that a NAT
/// binding reused by someone else soon stops routing to the old owner.
pub const ADDR_IDLE_EXPIRY: Duration = Duration::from_secs(30);

/// Learnt source address → owner (a mux route, an SFU peer), the fast path of demultiplexing.
///
/// One policy for every user: an entry is refreshed each time its address is heard and forgotten
/// after [`ADDR_IDLE_EXPIRY`] of silence ([`AddrCache::expire`]) or when its owner goes
/// ([`AddrCache::forget`]). Only a STUN check with a known ufrag (or a peer's own ICE agent)
/// may [`AddrCache::learn`] an address; everything else only looks it up.
#[derive(Debug)]
pub struct AddrCache<V> {
    entries: HashMap<SocketAddr, (V, Instant)>,
    /// No sweep before this instant: [`AddrCache::expire`] may be called on every tick.
    next_sweep: Option<Instant>,
}

impl<V> Default for AddrCache<V> {
    fn default() -> Self {
        AddrCache {
            entries: HashMap::new(),
            next_sweep: None,
        }
    }
}

impl<V: Copy + Eq> AddrCache<V> {
    /// Records that `addr` belongs to `owner`, heard at `now`.
    pub fn learn(&mut self, addr: SocketAddr, owner: V, now: Instant) {
        self.entries.insert(addr, (owner, now));
    }

    /// When `addr` was last heard (without refreshing it).
    pub fn heard(&self, addr: SocketAddr) -> Option<Instant> {
        self.entries.get(&addr).map(|(_, heard)| *heard)
    }

    /// The owner of `addr`, refreshing its last-heard time.
    pub fn lookup(&mut self, addr: SocketAddr, now: Instant) -> Option<V> {
        let (owner, heard) = self.entries.get_mut(&addr)?;
        *heard = now;
        Some(*owner)
    }

    /// Forgets every address of `owner`.
    pub fn forget(&mut self, owner: V) {
        self.entries.retain(|_, (o, _)| *o != owner);
    }

    /// Forgets addresses silent for [`ADDR_IDLE_EXPIRY`] or longer at `now`. Sweeps at most
    /// every third of the expiry, so an entry lives between 1 and 4/3 of it after last heard.
    pub fn expire(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|t| now < t) {
            return;
        }
        self.next_sweep = Some(now + ADDR_IDLE_EXPIRY / 3);
        self.entries
            .retain(|_, (_, heard)| now.saturating_duration_since(*heard) < ADDR_IDLE_EXPIRY);
    }

    /// How many addresses are remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no address is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A STUN message's header and attributes (RFC 5389 §6, §15), read without copying; only what
/// the demultiplexers look at.
#[derive(Debug, Clone, Copy)]
pub struct Stun<'a> {
    /// Message type (class and method), e.g. [`Stun::BINDING_REQUEST`].
    pub kind: u16,
    /// The 96-bit transaction id.
    pub transaction: &'a [u8],
    attributes: &'a [u8],
}

impl<'a> Stun<'a> {
    /// A Binding request.
    pub const BINDING_REQUEST: u16 = 0x0001;
    /// A Binding success response.
    pub const BINDING_SUCCESS: u16 = 0x0101;
    /// `USERNAME` (`"<receiver's ufrag>:<sender's ufrag>"` in ICE).
    pub const USERNAME: u16 = 0x0006;

    /// The datagram as a STUN message: first two bits zero, the magic cookie, whole
    /// attributes; `None` for anything else (DTLS, SRTP, garbage).
    pub fn parse(d: &'a [u8]) -> Option<Self> {
        if d.len() < 20 || d[0] & 0xC0 != 0 || d[4..8] != [0x21, 0x12, 0xA4, 0x42] {
            return None;
        }
        Some(Stun {
            kind: u16::from_be_bytes([d[0], d[1]]),
            transaction: &d[8..20],
            attributes: &d[20..],
        })
    }

    /// The value of the first attribute of type `kind`, if the message has one.
    pub fn attribute(&self, kind: u16) -> Option<&'a [u8]> {
        let mut rest = self.attributes;
        while rest.len() >= 4 {
            let typ = u16::from_be_bytes([rest[0], rest[1]]);
            let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
            let value = rest.get(4..4 + len)?;
            if typ == kind {
                return Some(value);
            }
            rest = rest.get(4 + len.div_ceil(4) * 4..)?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    #[test]
    fn an_address_heard_within_the_expiry_keeps_routing_and_a_silent_one_is_forgotten() {
        // Heard at t0 and (address 1 only) at t0 + 20 s; swept at t0 + 30 s and t0 + 60 s.
        let t0 = Instant::now();
        let mut cache = AddrCache::default();
        cache.learn(addr(1), 7u32, t0);
        cache.learn(addr(2), 8u32, t0);
        assert_eq!(cache.lookup(addr(1), t0 + Duration::from_secs(20)), Some(7));
        cache.expire(t0 + ADDR_IDLE_EXPIRY);
        assert_eq!(cache.lookup(addr(2), t0 + ADDR_IDLE_EXPIRY), None);
        assert_eq!(cache.lookup(addr(1), t0 + ADDR_IDLE_EXPIRY), Some(7));
        cache.expire(t0 + ADDR_IDLE_EXPIRY * 2);
        assert!(cache.is_empty());
    }

    #[test]
    fn forgetting_an_owner_drops_all_of_its_addresses_and_no_other() {
        let t0 = Instant::now();
        let mut cache = AddrCache::default();
        cache.learn(addr(1), 7u32, t0);
        cache.learn(addr(2), 7u32, t0);
        cache.learn(addr(3), 8u32, t0);
        cache.forget(7);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.lookup(addr(3), t0), Some(8));
    }
}
