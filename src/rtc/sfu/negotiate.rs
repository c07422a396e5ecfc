//! Offer/answer: mapping the browser's m-lines to inbound and outbound tracks (see the module
//! docs of [`super`]).
use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use rand::Rng;
use str0m::change::SdpOffer;
use str0m::media::Mid;

use super::sdp::{self, OfferSummary};
use super::track::{KeyframeLimiter, SeqRewrite, SilenceDiscarder};
use super::{Answer, OutSlot, OutboundTrack, PubTrack, Sfu, SfuError};
use crate::rtc::ids::{MediaKind, PeerId};

impl Sfu {
    /// Applies a browser offer (every re-offer is an ICE restart) and returns the answer.
    ///
    /// `inbound`: the peer's own sendonly m-lines, mid → track id (the offer's `midToTrackId`).
    /// `outbound`: the ordered tracks this peer receives (active and disabled); the k-th audio
    /// entry goes to the k-th recvonly audio m-line, same for video; disabled → `a=inactive`.
    /// On error the peer's previous session (if any) is kept unchanged where str0m allows it.
    pub fn handle_offer(
        &mut self,
        peer_id: PeerId,
        offer_sdp: &str,
        inbound: &BTreeMap<String, String>,
        outbound: &[OutboundTrack],
        now: Instant,
    ) -> Result<Answer, SfuError> {
        self.last_now = self.last_now.max(now);
        if !self.peers.contains_key(&peer_id) {
            return Err(SfuError::UnknownPeer(peer_id));
        }
        let room = self.config.room.clone();
        let summary = OfferSummary::parse(offer_sdp).map_err(SfuError::InvalidSdp)?;
        if let Some(bad) = summary
            .sections
            .iter()
            .find(|s| s.kind.is_some() && !s.rejected && !s.usable_codec)
        {
            return Err(SfuError::NoUsableCodec(format!(
                "m-line {} offers neither Opus, VP8 nor H264 42e01f",
                bad.mid.as_deref().unwrap_or("?")
            )));
        }

        // Map outbound tracks onto the offer's recvonly m-lines.
        let mut mid_to_track_id: BTreeMap<String, String> = BTreeMap::new();
        let mut inactive: Vec<&str> = Vec::new();
        let mut assigned: Vec<(&str, &OutboundTrack)> = Vec::new();
        for kind in [MediaKind::Audio, MediaKind::Video] {
            let mut tracks = outbound.iter().filter(|t| t.kind == kind);
            for section in summary.recvonly(kind) {
                let Some(mid) = section.mid.as_deref() else {
                    continue;
                };
                match tracks.next() {
                    Some(t) => {
                        mid_to_track_id.insert(mid.to_string(), t.track_id.clone());
                        assigned.push((mid, t));
                        if !t.active {
                            inactive.push(mid);
                        }
                    }
                    None => inactive.push(mid),
                }
            }
            let surplus = tracks.count();
            if surplus > 0 {
                log::warn!(
                    "room {room} peer {peer_id}: {surplus} {kind} tracks have no recvonly m-line"
                );
            }
        }
        let inbound_kinds: HashMap<&str, MediaKind> = summary
            .sections
            .iter()
            .filter(|s| !s.rejected && matches!(s.dir, sdp::Dir::SendOnly | sdp::Dir::SendRecv))
            .filter_map(|s| Some((s.mid.as_deref()?, s.kind?)))
            .collect();
        for (mid, track_id) in inbound {
            mid_to_track_id.insert(mid.clone(), track_id.clone());
        }

        let offer_text = if inactive.is_empty() {
            offer_sdp.to_string()
        } else {
            sdp::set_inactive(offer_sdp, &summary, &inactive)
        };
        let offer = SdpOffer::from_sdp_string(&offer_text)
            .map_err(|e| SfuError::InvalidSdp(e.to_string()))?;

        let fresh_rtc = self.peers.get(&peer_id).is_some_and(|p| p.rtc.is_none());
        if fresh_rtc {
            let rtc = self.new_rtc(now);
            if let Some(p) = self.peers.get_mut(&peer_id) {
                // A fresh session (first offer, or an offer after the peer failed) starts the
                // connection and liveness clocks from scratch.
                p.rtc = Some(rtc);
                p.failed = false;
                p.connected = false;
                p.first_offer = None;
                p.last_rx = now;
                p.next_timeout = None;
            }
        }
        let peer = self
            .peers
            .get_mut(&peer_id)
            .ok_or(SfuError::UnknownPeer(peer_id))?;
        let rtc = peer.rtc.as_mut().ok_or(SfuError::UnknownPeer(peer_id))?;
        // str0m must never take the room down: a panic on a hostile offer only costs this peer.
        let accepted = catch_unwind(AssertUnwindSafe(|| rtc.sdp_api().accept_offer(offer)));
        let answer = match accepted {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                if fresh_rtc {
                    peer.rtc = None;
                }
                return Err(SfuError::InvalidSdp(e.to_string()));
            }
            Err(_) => {
                log::error!(
                    "room {room} peer {peer_id}: str0m panicked on an offer; session dropped"
                );
                peer.rtc = None;
                return Err(SfuError::InvalidSdp("offer could not be applied".into()));
            }
        };

        // msids of the m-lines we send on (see the module docs for why we rewrite them).
        let msids: BTreeMap<String, (String, String)> = assigned
            .iter()
            .map(|(mid, t)| {
                let track = t.track_id.rsplit(':').next().unwrap_or(&t.track_id);
                (
                    mid.to_string(),
                    (sdp::msid_token(&t.stream_id), sdp::msid_token(track)),
                )
            })
            .collect();
        let sdp = sdp::rewrite_msids(&answer.to_sdp_string(), &msids);

        peer.ufrag = Some(rtc.direct_api().local_ice_credentials().ufrag);
        peer.first_offer.get_or_insert(now);
        let mut outbound_slots = HashMap::with_capacity(assigned.len());
        for (mid_str, t) in &assigned {
            let mid = Mid::from(*mid_str);
            let sending = rtc.media(mid).is_some_and(|m| m.direction().is_sending());
            let previous = peer
                .outbound
                .remove(&mid)
                .filter(|s| s.track_id == t.track_id);
            let slot = match previous {
                Some(mut s) => {
                    s.forwarding = t.active && sending;
                    s
                }
                None => OutSlot {
                    track_id: t.track_id.clone(),
                    source: None,
                    forwarding: t.active && sending,
                    seq: SeqRewrite::default(),
                    seq_start: rand::rng().random_range(1000..30000),
                    pt_cache: None,
                },
            };
            outbound_slots.insert(mid, slot);
        }
        peer.outbound = outbound_slots;
        peer.inbound = inbound
            .iter()
            .filter(|(mid, _)| inbound_kinds.contains_key(mid.as_str()))
            .map(|(mid, t)| (Mid::from(mid.as_str()), t.clone()))
            .collect();
        let new_inbound: Vec<(Mid, String, MediaKind)> = peer
            .inbound
            .iter()
            .filter_map(|(mid, t)| {
                Some((
                    *mid,
                    t.clone(),
                    *inbound_kinds.get(mid.to_string().as_str())?,
                ))
            })
            .collect();
        self.mark_dirty(peer_id, true);

        self.tracks.retain(|(p, mid), t| {
            *p != peer_id
                || new_inbound
                    .iter()
                    .any(|(m, id, _)| m == mid && *id == t.track_id)
        });
        for (mid, track_id, kind) in new_inbound {
            self.tracks
                .entry((peer_id, mid))
                .or_insert_with(|| PubTrack {
                    track_id,
                    kind,
                    silence: SilenceDiscarder::default(),
                    keyframe: KeyframeLimiter::default(),
                    subscribers: Vec::new(),
                });
        }
        self.rebuild_routes();
        log::debug!(
            "room {room} peer {peer_id}: answered ({} inbound, {} outbound, {} inactive m-lines)",
            inbound.len(),
            assigned.len(),
            inactive.len()
        );
        Ok(Answer {
            sdp,
            mid_to_track_id,
        })
    }
}
