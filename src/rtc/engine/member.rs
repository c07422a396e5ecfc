//! Per-member state of the engine: published tracks and the desired/negotiated outbound lists.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::limits::Limit;
use crate::rtc::ids::{MediaKind, PeerId, TrackId};
use crate::rtc::media_event::{OfferDataData, PeerInfo};
use crate::rtc::sfu::ConsumerSpec;

/// A track a member publishes (a producer), as the engine knows it.
#[derive(Debug, Clone)]
pub(super) struct Producer {
    /// The client's track id (`"<peerId>:<uuid>"`).
    pub(super) track_id: TrackId,
    /// From the m-line of the offer that published it.
    pub(super) kind: MediaKind,
    /// From the offer's `trackIdToTrackMetadata` or `updateTrackMetadata`.
    pub(super) metadata: Value,
}

/// One member of the room.
#[derive(Debug)]
pub(super) struct Member {
    /// From `join`, replaced by `updatePeerMetadata`.
    pub(super) metadata: Value,
    /// `join`'s `receiveMedia`: false → no outbound tracks at all.
    pub(super) receive_media: bool,
    /// Published tracks in mid order (from the latest accepted offer).
    pub(super) published: Vec<Producer>,
    /// Track ids this member once published and then dropped.
    pub(super) unpublished: BTreeSet<TrackId>,
    /// Track ids the last offer declared without sending them (see the module docs).
    pub(super) last_unsent: BTreeSet<TrackId>,
    /// Desired outbound tracks (append-only; removed ones are marked inactive).
    pub(super) outbound: Vec<ConsumerSpec>,
    /// The outbound tracks the last answer negotiated.
    pub(super) negotiated: Vec<ConsumerSpec>,
    /// `Some(counts)` while an `offerData` with these counts awaits its `sdpOffer`.
    pub(super) outstanding: Option<OfferDataData>,
    /// The counts of the last `offerData` (an unsolicited offer is answered against these).
    pub(super) last_counts: OfferDataData,
    /// Candidates trickled since the last offer.
    pub(super) candidates: usize,
    /// How many candidates the last offer allows: the per-m-line limit times its m-lines.
    pub(super) candidate_budget: usize,
    /// The limits this member hit (each is logged once).
    pub(super) limits_hit: BTreeSet<Limit>,
}

impl Member {
    /// The member as others see it (`peersInRoom`, `peerJoined`).
    pub(super) fn info(&self, id: PeerId) -> PeerInfo {
        PeerInfo {
            id: id.to_string(),
            metadata: self.metadata.clone(),
            track_id_to_metadata: self.track_map(),
        }
    }

    /// Published track id → metadata (`trackIdToMetadata`).
    pub(super) fn track_map(&self) -> BTreeMap<String, Value> {
        self.published
            .iter()
            .map(|t| (t.track_id.to_string(), t.metadata.clone()))
            .collect()
    }

    /// The `offerData` counts: every outbound track, active or disabled, per kind.
    pub(super) fn counts(&self) -> OfferDataData {
        let audio = self
            .outbound
            .iter()
            .filter(|t| t.kind == MediaKind::Audio)
            .count();
        OfferDataData {
            audio: audio as u32,
            video: (self.outbound.len() - audio) as u32,
        }
    }

    /// The first `counts` tracks of each kind: what an offer made for `counts` can carry.
    pub(super) fn outbound_fitting(&self, counts: OfferDataData) -> Vec<ConsumerSpec> {
        let (mut audio, mut video) = (0, 0);
        self.outbound
            .iter()
            .filter(|t| {
                let (n, max) = match t.kind {
                    MediaKind::Audio => (&mut audio, counts.audio),
                    MediaKind::Video => (&mut video, counts.video),
                };
                *n += 1;
                *n <= max
            })
            .cloned()
            .collect()
    }
}

/// The outbound copy of a published track, as subscribers receive it.
pub(super) fn outbound(publisher: PeerId, track: &Producer) -> ConsumerSpec {
    ConsumerSpec {
        track_id: track.track_id.clone(),
        publisher,
        kind: track.kind,
        // One msid stream per publisher: the demo attaches audio and video to one element.
        stream_id: publisher.to_string(),
        active: true,
    }
}
