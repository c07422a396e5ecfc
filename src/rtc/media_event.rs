//! Media events of the membrane_rtc_engine "flat" dialect (engine commit c9e03b3, the dialect the
//! tutorial's `MembraneWebRTC` client speaks).
//!
//! Every event travels as a JSON string inside a Phoenix `mediaEvent` push `{"data": "<string>"}`.
//! The string is `{"type": "<type>", "data": <object>}`; `data` is absent only for `leave`.
//! There is no `custom` wrapping in this dialect.
//!
//! Client → server ([`MediaEventIn`]): `join`, `renegotiateTracks`, `sdpOffer`, `candidate`,
//! `updatePeerMetadata`, `updateTrackMetadata`, `leave`.
//! Server → client ([`MediaEventOut`]): `peerAccepted`, `peerDenied`, `peerJoined`, `peerLeft`,
//! `peerUpdated`, `tracksAdded`, `tracksRemoved`, `trackUpdated`, `offerData`, `sdpAnswer`,
//! `candidate`, `error`.
//!
//! Both enums serialize and deserialize, so tests and test clients can speak the same types.
//! Field order in the serialized JSON follows the protocol tables (struct declaration order);
//! maps (`trackIdToMetadata`, `midToTrackId`) are sorted by key so output is deterministic.
//!
//! Parsing goes through [`MediaEventIn::parse`], which distinguishes invalid JSON, an unknown
//! `type` and a known type with ill-shaped `data` ([`MediaEventError`]), so the engine can answer
//! each with the right log line / `error` event.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why a client's media event could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaEventError {
    /// The string is not JSON at all, or not a JSON object with a string `type`.
    #[error("invalid media event JSON: {0}")]
    InvalidJson(String),
    /// `type` names no client→server event of this dialect.
    #[error("unknown media event type {0:?}")]
    UnknownType(String),
    /// `type` is known but `data` does not have the required shape.
    #[error("invalid data for media event {kind:?}: {reason}")]
    InvalidData {
        /// The event's `type`.
        kind: String,
        /// What serde said about `data`.
        reason: String,
    },
}

/// `join` data: `{"receiveMedia": bool, "metadata": <any>}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinData {
    /// Whether the peer wants to receive the other peers' tracks.
    pub receive_media: bool,
    /// Opaque peer metadata (the demo sends `{"displayName": …}`), relayed to the others.
    /// `JSON.stringify` drops an `undefined` metadata, so absence is read as `null`.
    #[serde(default)]
    pub metadata: Value,
}

/// An RTCSessionDescriptionInit as the browser serializes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDescription {
    /// `"offer"` (checked by the engine, not here).
    #[serde(rename = "type")]
    pub kind: String,
    /// The SDP text.
    pub sdp: String,
}

/// `sdpOffer` data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SdpOfferData {
    /// The browser's offer.
    pub sdp_offer: SessionDescription,
    /// Metadata of ALL local tracks the client ever added (it never forgets removed ones).
    pub track_id_to_track_metadata: BTreeMap<String, Value>,
    /// The client's sending transceivers: mid → track id. Absent mids are not published.
    pub mid_to_track_id: BTreeMap<String, String>,
}

/// `candidate` data from the client: `{"candidate": "candidate:…", "sdpMLineIndex": n}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientCandidateData {
    /// The candidate line without `a=`.
    pub candidate: String,
    /// m-line index (ignored by the server: everything is BUNDLEd); may be null in theory.
    pub sdp_m_line_index: Option<u32>,
}

/// `updatePeerMetadata` data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdatePeerMetadataData {
    /// The peer's new metadata.
    pub metadata: Value,
}

/// `updateTrackMetadata` data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateTrackMetadataData {
    /// The sender's own track id.
    pub track_id: String,
    /// The track's new metadata.
    pub track_metadata: Value,
}

/// An event sent by a browser to the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "camelCase")]
pub enum MediaEventIn {
    /// Ask to become a peer of the room.
    Join(JoinData),
    /// The client's local track set changed (data is `{}`): please start a negotiation.
    RenegotiateTracks(Empty),
    /// The browser's SDP offer, answering our `offerData`.
    SdpOffer(SdpOfferData),
    /// One trickled ICE candidate of the browser.
    Candidate(ClientCandidateData),
    /// New peer metadata.
    UpdatePeerMetadata(UpdatePeerMetadataData),
    /// New metadata for one of the sender's tracks.
    UpdateTrackMetadata(UpdateTrackMetadataData),
    /// The peer leaves (`{"type":"leave"}`, no data).
    Leave,
}

/// An empty JSON object `{}` (unknown keys are tolerated on input).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

impl MediaEventIn {
    /// Every `type` this dialect knows from a client.
    pub const TYPES: [&'static str; 7] = [
        "join",
        "renegotiateTracks",
        "sdpOffer",
        "candidate",
        "updatePeerMetadata",
        "updateTrackMetadata",
        "leave",
    ];

    /// Parses one serialized client event, classifying what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, MediaEventError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| MediaEventError::InvalidJson(e.to_string()))?;
        let Some(object) = value.as_object() else {
            return Err(MediaEventError::InvalidJson("not a JSON object".into()));
        };
        let Some(kind) = object.get("type").and_then(Value::as_str) else {
            return Err(MediaEventError::InvalidJson("no string \"type\"".into()));
        };
        if !Self::TYPES.contains(&kind) {
            return Err(MediaEventError::UnknownType(kind.to_owned()));
        }
        let kind = kind.to_owned();
        // `leave` carries no data; tolerate a stray `"data"` rather than reject a goodbye.
        if kind == "leave" {
            return Ok(MediaEventIn::Leave);
        }
        serde_json::from_value(value).map_err(|e| MediaEventError::InvalidData {
            kind,
            reason: e.to_string(),
        })
    }

    /// The exact wire JSON of this event.
    pub fn to_json(&self) -> String {
        // Serializing plain data structures with string keys cannot fail.
        serde_json::to_string(self).expect("media events always serialize")
    }

    /// The event's `type` string, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            MediaEventIn::Join(_) => "join",
            MediaEventIn::RenegotiateTracks(_) => "renegotiateTracks",
            MediaEventIn::SdpOffer(_) => "sdpOffer",
            MediaEventIn::Candidate(_) => "candidate",
            MediaEventIn::UpdatePeerMetadata(_) => "updatePeerMetadata",
            MediaEventIn::UpdateTrackMetadata(_) => "updateTrackMetadata",
            MediaEventIn::Leave => "leave",
        }
    }
}

/// One peer as the client sees it: `{"id", "metadata", "trackIdToMetadata"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerInfo {
    /// The peer id (UUID v4 string).
    pub id: String,
    /// The peer's metadata from `join` / `updatePeerMetadata`.
    pub metadata: Value,
    /// The peer's published tracks (from its latest `sdpOffer`): track id → metadata.
    pub track_id_to_metadata: BTreeMap<String, Value>,
}

/// `peerAccepted` data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerAcceptedData {
    /// The joining peer's own id.
    pub id: String,
    /// All OTHER peers of the room.
    pub peers_in_room: Vec<PeerInfo>,
    /// The single-use token that resumes this peer after a lost socket (join param
    /// `resumeToken` of the `room:<id>` channel); absent where the room issues none. Clients
    /// that do not know it ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_token: Option<String>,
}

/// `peerJoined` data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerJoinedData {
    /// The new peer (its track map is still empty).
    pub peer: PeerInfo,
}

/// `peerLeft` data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerLeftData {
    /// The peer that left.
    pub peer_id: String,
}

/// `peerUpdated` data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerUpdatedData {
    /// The peer whose metadata changed.
    pub peer_id: String,
    /// Its new metadata.
    pub metadata: Value,
}

/// `tracksAdded` data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TracksAddedData {
    /// The publisher.
    pub peer_id: String,
    /// The publisher's FULL current track map (the client diffs it).
    pub track_id_to_metadata: BTreeMap<String, Value>,
}

/// `tracksRemoved` data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TracksRemovedData {
    /// The publisher.
    pub peer_id: String,
    /// The tracks it stopped publishing.
    pub track_ids: Vec<String>,
}

/// `trackUpdated` data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackUpdatedData {
    /// The publisher.
    pub peer_id: String,
    /// The updated track.
    pub track_id: String,
    /// Its new metadata.
    pub metadata: Value,
}

/// `offerData` data: how many tracks of each kind the server will send to this peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferDataData {
    /// Audio tracks (active and disabled).
    pub audio: u32,
    /// Video tracks (active and disabled).
    pub video: u32,
}

/// `sdpAnswer` data: `{"type": "answer", "sdp", "midToTrackId"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SdpAnswerData {
    /// Always `"answer"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The answer SDP.
    pub sdp: String,
    /// Every mid of the answer (own inbound, outbound, inactive) → track id.
    pub mid_to_track_id: BTreeMap<String, String>,
}

/// `candidate` data from the server:
/// `{"candidate": "candidate:…", "sdpMLineIndex": 0, "sdpMid": null, "usernameFragment": null}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerCandidateData {
    /// The candidate line without `a=`.
    pub candidate: String,
    /// Always 0 (BUNDLE).
    pub sdp_m_line_index: u32,
    /// Always null.
    pub sdp_mid: Option<String>,
    /// Always null.
    pub username_fragment: Option<String>,
}

impl ServerCandidateData {
    /// The shape the server always sends: index 0, null mid and ufrag.
    pub fn new(candidate: impl Into<String>) -> Self {
        ServerCandidateData {
            candidate: candidate.into(),
            sdp_m_line_index: 0,
            sdp_mid: None,
            username_fragment: None,
        }
    }
}

/// `error` data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorData {
    /// Human-readable reason; the client calls onConnectionError with it and leaves.
    pub message: String,
}

/// An event sent by the server to a browser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "camelCase")]
pub enum MediaEventOut {
    /// The join was accepted (to the joining peer).
    PeerAccepted(PeerAcceptedData),
    /// The join was refused (to the joining peer); the whole `data` is the deny payload.
    PeerDenied(Value),
    /// A peer joined (broadcast, including the new peer, which ignores it).
    PeerJoined(PeerJoinedData),
    /// A peer left (broadcast).
    PeerLeft(PeerLeftData),
    /// A peer's metadata changed (broadcast).
    PeerUpdated(PeerUpdatedData),
    /// A publisher's track set grew (broadcast).
    TracksAdded(TracksAddedData),
    /// A publisher stopped publishing some tracks (broadcast).
    TracksRemoved(TracksRemovedData),
    /// A track's metadata changed (broadcast).
    TrackUpdated(TrackUpdatedData),
    /// Start a negotiation: the browser must offer with these recvonly counts.
    OfferData(OfferDataData),
    /// The answer to the peer's offer.
    SdpAnswer(SdpAnswerData),
    /// One of the server's ICE candidates.
    Candidate(ServerCandidateData),
    /// A fatal problem: the client reports it and leaves.
    Error(ErrorData),
}

impl MediaEventOut {
    /// The exact wire JSON of this event.
    pub fn to_json(&self) -> String {
        // Plain data with string keys: serialization cannot fail.
        serde_json::to_string(self).expect("media events always serialize")
    }

    /// Parses a server event (used by tests and test clients).
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// An `error` event with this message.
    pub fn error(message: impl Into<String>) -> Self {
        MediaEventOut::Error(ErrorData {
            message: message.into(),
        })
    }

    /// The event's `type` string, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            MediaEventOut::PeerAccepted(_) => "peerAccepted",
            MediaEventOut::PeerDenied(_) => "peerDenied",
            MediaEventOut::PeerJoined(_) => "peerJoined",
            MediaEventOut::PeerLeft(_) => "peerLeft",
            MediaEventOut::PeerUpdated(_) => "peerUpdated",
            MediaEventOut::TracksAdded(_) => "tracksAdded",
            MediaEventOut::TracksRemoved(_) => "tracksRemoved",
            MediaEventOut::TrackUpdated(_) => "trackUpdated",
            MediaEventOut::OfferData(_) => "offerData",
            MediaEventOut::SdpAnswer(_) => "sdpAnswer",
            MediaEventOut::Candidate(_) => "candidate",
            MediaEventOut::Error(_) => "error",
        }
    }
}
