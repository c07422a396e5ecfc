//! The two packet types that cross the boundary between the sans-IO media cores and the network
//! shell: a [`Datagram`] received, a [`Transmit`] to send.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

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
    /// The datagram.
    pub contents: Vec<u8>,
}
