//! Bounds on what one peer may make the engine hold or parse.
//!
//! The defaults follow careful production servers: a few KB of metadata (LiveKit caps
//! participant metadata at a few KB too), at most 16 published tracks, an SDP offer that fits a
//! large room (one PeerConnection carries every subscription, ~1.5–3 KB per m-line), and a few
//! dozen ICE candidates per m-line of an offer (a browser sends one or two per interface, family
//! and protocol, and on a fresh connection Chromium gathers for every m-line: a joiner's first
//! offer in a room of N publishers brings candidates for 2N + 2 m-lines).
//! An offender gets the protocol's own answer (`peerDenied` for a join, `error` otherwise) and
//! the server writes one log line per peer and limit, not one per event.

use std::time::Duration;

/// The per-peer limits of an [`super::Engine`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineLimits {
    /// Serialized size of `join`'s and `updatePeerMetadata`'s metadata (display name included).
    pub max_peer_metadata_bytes: usize,
    /// Serialized size of one track's metadata (`trackIdToTrackMetadata`, `updateTrackMetadata`).
    pub max_track_metadata_bytes: usize,
    /// Tracks one peer may publish at once (entries of an offer's `midToTrackId`).
    pub max_tracks_per_peer: usize,
    /// Size of an `sdpOffer`'s SDP text.
    pub max_offer_bytes: usize,
    /// m-lines of one offer (its own tracks plus one per track it receives).
    pub max_offer_m_lines: usize,
    /// Candidates a peer may trickle per m-line of its latest offer (the count restarts with
    /// each offer; before the first one, one m-line's worth).
    pub max_candidates_per_offer: usize,
    /// Length of one candidate string.
    pub max_candidate_bytes: usize,
    /// How long a member whose signalling connection was lost without `leave` is kept while
    /// its media is alive, for its client to resume ([`super::Engine::detach_peer`]); zero
    /// removes it at once.
    pub reconnect_grace: Duration,
}

impl Default for EngineLimits {
    fn default() -> Self {
        EngineLimits {
            // A display name and a few fields.
            max_peer_metadata_bytes: 4 * 1024,
            max_track_metadata_bytes: 4 * 1024,
            // Camera, microphone, screen and spares.
            max_tracks_per_peer: 16,
            // One PeerConnection carries every subscription at about 1.5–3 KB per m-line, so
            // this fits a room of about 100 peers.
            max_offer_bytes: 256 * 1024,
            max_offer_m_lines: 128,
            max_candidates_per_offer: 32,
            max_candidate_bytes: 512,
            // A Wi-Fi hiccup, a laptop lid closed for a moment, a switch from Wi-Fi to cellular
            // all fit; a tab that is really gone stops sending media and is removed within the
            // SFU's peer timeout anyway.
            reconnect_grace: Duration::from_secs(30),
        }
    }
}

/// The limits a peer can hit, named for logs (one line per peer and limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Limit {
    PeerMetadata,
    TrackMetadata,
    TracksPerPeer,
    OfferSize,
    OfferMLines,
    Candidates,
    CandidateSize,
    TrackOwnership,
}

impl Limit {
    /// The limit's name as a metric label value (`limit_hits_total{limit=…}`).
    pub(super) fn label(self) -> &'static str {
        match self {
            Limit::PeerMetadata => "peer_metadata_bytes",
            Limit::TrackMetadata => "track_metadata_bytes",
            Limit::TracksPerPeer => "tracks_per_peer",
            Limit::OfferSize => "offer_bytes",
            Limit::OfferMLines => "offer_m_lines",
            Limit::Candidates => "candidates_per_offer",
            Limit::CandidateSize => "candidate_bytes",
            Limit::TrackOwnership => "track_ownership",
        }
    }

    /// The text the offender's client gets in its `error` event (chosen by us, stable).
    pub(super) fn client_message(self) -> &'static str {
        match self {
            Limit::PeerMetadata => "peer metadata too large",
            Limit::TrackMetadata => "track metadata too large",
            Limit::TracksPerPeer => "too many tracks",
            Limit::OfferSize => "SDP offer too large",
            Limit::OfferMLines => "SDP offer has too many m-lines",
            Limit::Candidates => "too many ICE candidates",
            Limit::CandidateSize => "ICE candidate too large",
            Limit::TrackOwnership => "track ids must be \"<your peer id>:<id>\" and unique",
        }
    }
}

/// The serialized size of a JSON value (what the others would receive).
pub(super) fn json_size(v: &serde_json::Value) -> usize {
    serde_json::to_string(v)
        .map(|s| s.len())
        .unwrap_or(usize::MAX)
}
