//! The SFU: a sans-IO selective forwarding unit for one room, built on str0m in RTP mode.
//!
//! (Skeleton: the API is stable, the implementation follows.)
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::rtc::ids::{MediaKind, PeerId};

/// Settings of one [`Sfu`].
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// Host candidates to advertise (every local interface address plus EXTERNAL_IP, one UDP port).
    pub local_addrs: Vec<SocketAddr>,
    /// A connected peer from which no datagram arrived for this long is reported as failed.
    pub peer_timeout: Duration,
    /// A peer that has not connected this long after its first offer is reported as failed.
    pub connect_timeout: Duration,
    /// Minimum spacing of keyframe requests sent to one publisher track.
    pub keyframe_request_interval: Duration,
    /// Opus packets whose audio level (dBov, 0..=127) is at least this are dropped; `None` disables.
    pub silence_threshold: Option<u8>,
    /// After this many consecutive dropped silent packets one is let through.
    pub silence_max_drops: u32,
}

impl Default for SfuConfig {
    fn default() -> Self {
        SfuConfig {
            local_addrs: Vec::new(),
            peer_timeout: Duration::from_secs(4),
            connect_timeout: Duration::from_secs(15),
            keyframe_request_interval: Duration::from_millis(500),
            silence_threshold: Some(127),
            silence_max_drops: 1000,
        }
    }
}

/// A track a subscriber receives (or received: `active == false` marks it disabled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundTrack {
    /// The publisher's track id (`"<peerId>:<uuid>"`).
    pub track_id: String,
    /// The peer that publishes the track.
    pub publisher: PeerId,
    /// Audio or video.
    pub kind: MediaKind,
    /// The msid stream id shared by all tracks of one publisher.
    pub stream_id: String,
    /// `false` once the track was removed: its m-line is answered `a=inactive`.
    pub active: bool,
}

/// The result of [`Sfu::handle_offer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The SDP answer text.
    pub sdp: String,
    /// Every mid of the answer (inbound, outbound and inactive) → track id.
    pub mid_to_track_id: BTreeMap<String, String>,
}

/// Why an SFU operation failed. Each error concerns one peer only.
#[derive(Debug, thiserror::Error)]
pub enum SfuError {
    /// The peer was never added or was removed.
    #[error("unknown peer {0}")]
    UnknownPeer(PeerId),
    /// The offer could not be parsed or was rejected by the WebRTC stack.
    #[error("invalid SDP offer: {0}")]
    InvalidSdp(String),
    /// A media line offers none of Opus, VP8 or H264 (42e01f).
    #[error("no usable codec in the offer: {0}")]
    NoUsableCodec(String),
    /// A remote ICE candidate could not be parsed.
    #[error("invalid ICE candidate: {0}")]
    BadCandidate(String),
}

/// Something the room must know about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SfuEvent {
    /// The peer's ICE and DTLS came up for the first time.
    PeerConnected(PeerId),
    /// The peer vanished (no traffic within the configured timeout, or ICE failed): remove it.
    PeerFailed(PeerId),
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

/// One output of [`Sfu::poll_output`].
#[derive(Debug)]
pub enum SfuOutput {
    /// Send this datagram.
    Transmit(Transmit),
    /// Tell the room.
    Event(SfuEvent),
    /// Nothing more to do: call [`Sfu::handle_timeout`] at this instant (or on new input).
    Timeout(Instant),
}

/// The forwarding core of one room. See the module docs.
pub struct Sfu {
    config: SfuConfig,
    last_now: Instant,
}

impl Sfu {
    /// A new SFU with no peers.
    pub fn new(config: SfuConfig, now: Instant) -> Self {
        Sfu {
            config,
            last_now: now,
        }
    }

    /// Adds a peer (no WebRTC session until its first offer).
    pub fn add_peer(&mut self, peer: PeerId, now: Instant) {
        let _ = (peer, now, &self.config);
    }

    /// Removes a peer and stops forwarding to and from it.
    pub fn remove_peer(&mut self, peer: PeerId) {
        let _ = peer;
    }

    /// Applies a browser offer (every re-offer is an ICE restart) and returns the answer.
    pub fn handle_offer(
        &mut self,
        peer: PeerId,
        offer_sdp: &str,
        inbound: &BTreeMap<String, String>,
        outbound: &[OutboundTrack],
        now: Instant,
    ) -> Result<Answer, SfuError> {
        let _ = (offer_sdp, inbound, outbound, now);
        Err(SfuError::UnknownPeer(peer))
    }

    /// Adds a trickled remote candidate (`candidate:…`, with or without `a=`).
    pub fn handle_remote_candidate(
        &mut self,
        peer: PeerId,
        candidate: &str,
    ) -> Result<(), SfuError> {
        let _ = candidate;
        Err(SfuError::UnknownPeer(peer))
    }

    /// The local host candidates (`candidate:…`, no `a=` prefix) to send to every peer.
    pub fn local_candidates(&self) -> Vec<String> {
        Vec::new()
    }

    /// Whether a datagram belongs to one of this room's peers.
    pub fn accepts(&self, source: SocketAddr, destination: SocketAddr, datagram: &[u8]) -> bool {
        let _ = (source, destination, datagram);
        false
    }

    /// Feeds a received datagram.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        datagram: &[u8],
    ) {
        let _ = (source, destination, datagram);
        self.last_now = now;
    }

    /// Advances time.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = now;
    }

    /// The next output; drain until it returns [`SfuOutput::Timeout`] after every input.
    pub fn poll_output(&mut self) -> SfuOutput {
        SfuOutput::Timeout(self.last_now + Duration::from_secs(1))
    }

    /// The current local ICE ufrags of all peers (they change with every ICE restart), so the
    /// UDP mux can route STUN requests to this room.
    pub fn ice_ufrags(&self) -> Vec<String> {
        Vec::new()
    }
}
