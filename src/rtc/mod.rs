//! The media plane and media-event signalling: WebRTC peers, SDP negotiation, RTP forwarding.
//!
//! This module knows nothing about Phoenix or rooms.
//! - [`media_event`]: the typed client↔server events of the membrane_rtc_engine "flat" dialect
//!   and their exact JSON.
//! - [`engine`]: the sans-IO per-room signalling engine (peers, tracks, metadata, negotiation
//!   coalescing, event order) that drives one [`sfu::Sfu`].
//! - [`sfu::Sfu`]: the sans-IO forwarding core (one per room, one `str0m::Rtc` per peer).
//! - [`driver`]: the media driver of one room: a sans-IO [`driver::MediaDriver`] (datagrams,
//!   signalling and time in; transmits, events, deadlines and ICE ufrags out) and the thin
//!   tokio [`driver::MediaShell`] around it that owns the room's route in the UDP mux.
//! - [`udp`]: the network shell that shares one UDP socket between every media driver.
//! - [`tcp`]: ICE-TCP (RFC 6544/4571): TCP connections whose frames go through the UDP mux's
//!   routing as TCP datagrams.
//! - [`net`]: the packet types ([`net::Datagram`], [`net::Transmit`]) between the two, and
//!   [`net::AddrCache`], the one learnt-address cache (one expiry policy) the mux and the SFU
//!   both demultiplex with.
//! - [`turn`]: the embedded TURN server (UDP, TCP, TLS) relaying only into the SFU's media
//!   socket, and the credentials handed out with the channel join.
//! - [`ids`]: the identifiers both sides use.
//! - [`metrics`]: counters, gauges and loop heartbeats the media plane updates (handles only;
//!   the app registers and exports them).
//!
//! # Vocabulary
//! - **producer**: one published track, i.e. one sendonly m-line of its publisher, named by a
//!   [`ids::TrackId`] in the publisher's namespace (`"<peerId>:<id>"`).
//! - **consumer**: one producer's copy towards one subscriber, i.e. one recvonly m-line of the
//!   subscriber ([`sfu::ConsumerSpec`] is what the engine asks for; the SFU's own `Consumer`
//!   keeps the forwarding state: payload type, sequence numbers).
//! - m-lines are str0m's [`sfu::Mid`]; rooms are [`ids::RoomId`], peers [`ids::PeerId`].
//!
//! # Negotiation (the browser always offers)
//! The server starts every (re)negotiation with `offerData {audio, video}` (how many tracks it will
//! send to that peer); the browser adds recvonly transceivers up to those counts, restarts ICE and
//! sends `sdpOffer`; the server answers with `sdpAnswer` (mids → track ids for every m-line) and
//! then its ICE candidates. A publisher's new tracks are announced with `tracksAdded` to everyone
//! before any answer maps them, and `peerJoined` always precedes `tracksAdded` of that peer.

pub mod driver;
pub mod engine;
pub mod ids;
pub mod media_event;
pub mod metrics;
pub mod net;
pub mod rtp_header;
pub mod sfu;
pub mod tcp;
pub mod turn;
pub mod udp;
