//! Offer/answer: mapping the browser's m-lines to producers and consumers (see the module docs
//! of [`super`]). [`Sfu::handle_offer`] runs four named steps: read the offer
//! ([`checked_summary`]), plan its m-lines ([`MlinePlan`]), let str0m accept it
//! ([`Sfu::accept`]), then apply the plan to the forwarding state ([`Sfu::apply`]).
use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use rand::Rng;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::Mid;

use super::consumer::Consumer;
use super::sdp::{self, OfferSummary};
use super::track::{KeyframeLimiter, SilenceDiscarder};
use super::twcc_guard::TwccGuard;
use super::{Answer, ConsumerSpec, Offer, ProducedTrack, Producer, Sfu, SfuError, SfuResult};
use crate::rtc::ids::{MediaKind, PeerId, TrackId};

impl Sfu {
    /// Applies a browser offer (every re-offer is an ICE restart) and returns the answer.
    /// On error the peer's previous session (if any) is kept unchanged where str0m allows it.
    pub fn handle_offer(
        &mut self,
        peer: PeerId,
        offer: Offer<'_>,
        now: Instant,
    ) -> SfuResult<Answer> {
        let Offer {
            sdp: offer_sdp,
            producers: inbound,
            consumers,
        } = offer;
        self.last_now = self.last_now.max(now);
        if !self.peers.contains_key(&peer) {
            return Err(SfuError::UnknownPeer(peer));
        }
        let summary = checked_summary(offer_sdp)?;
        let plan = MlinePlan::new(&summary, inbound, consumers);
        for (kind, surplus) in &plan.surplus {
            log::warn!(
                "room={} peer={peer} {surplus} {kind} tracks have no recvonly m-line",
                self.config.room
            );
        }
        let offer_text = if plan.inactive.is_empty() {
            offer_sdp.to_string()
        } else {
            sdp::set_inactive(offer_sdp, &summary, &plan.inactive)
        };
        let offer = SdpOffer::from_sdp_string(&offer_text)
            .map_err(|e| SfuError::InvalidSdp(e.to_string()))?;
        let answer = self.accept(peer, offer, now)?;
        if let Some(p) = self.peers.get_mut(&peer) {
            for line in offer_sdp.lines().filter(|l| l.starts_with("a=candidate:")) {
                p.connect_watch.offered.add(line);
            }
        }
        if let Some(p) = self.peers.get_mut(&peer) {
            p.twcc_guard.learn_ids(&offer_text);
        }
        let sdp = sdp::rewrite_msids(&answer.to_sdp_string(), &plan.msids());
        self.apply(peer, &plan, now);
        log::debug!(
            "room={} peer={peer} answered ({} produced, {} consumed, {} inactive m-lines)",
            self.config.room,
            plan.producers.len(),
            plan.consumed.len(),
            plan.inactive.len()
        );
        Ok(Answer {
            sdp,
            mid_to_track_id: plan.mid_to_track_id(),
            producers: plan.producers,
        })
    }

    /// Lets str0m accept the offer, creating the peer's `Rtc` on its first offer (or its first
    /// after a failure). A panic inside str0m costs only this peer's session.
    fn accept(
        &mut self,
        peer_id: PeerId,
        offer: SdpOffer,
        now: Instant,
    ) -> Result<SdpAnswer, SfuError> {
        let fresh_rtc = self.peers.get(&peer_id).is_some_and(|p| p.rtc.is_none());
        if fresh_rtc {
            let rtc = self.new_rtc(now);
            if let Some(p) = self.peers.get_mut(&peer_id) {
                // A fresh session starts the connection and liveness clocks from scratch.
                p.rtc = Some(rtc);
                p.failed = false;
                p.connected = false;
                p.first_offer = None;
                p.last_rx = now;
                p.next_timeout = None;
                p.twcc_guard = TwccGuard::default();
                p.connect_watch = super::ConnectWatch::default();
            }
        }
        let peer = self
            .peers
            .get_mut(&peer_id)
            .ok_or(SfuError::UnknownPeer(peer_id))?;
        let rtc = peer.rtc.as_mut().ok_or(SfuError::UnknownPeer(peer_id))?;
        let accepted = catch_unwind(AssertUnwindSafe(|| rtc.sdp_api().accept_offer(offer)));
        match accepted {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                if fresh_rtc {
                    peer.rtc = None;
                }
                Err(SfuError::InvalidSdp(e.to_string()))
            }
            Err(_) => {
                log::error!(
                    "room={} peer={peer_id} str0m panicked on an offer; session dropped",
                    self.config.room
                );
                peer.rtc = None;
                Err(SfuError::InvalidSdp("offer could not be applied".into()))
            }
        }
    }

    /// Applies an accepted plan: the peer's consumers (kept where the same track stays on the
    /// same m-line), its producers, and the routes between them.
    fn apply(&mut self, peer_id: PeerId, plan: &MlinePlan<'_>, now: Instant) {
        let Some(peer) = self.peers.get_mut(&peer_id) else {
            return;
        };
        let Some(rtc) = peer.rtc.as_mut() else { return };
        peer.ufrag = Some(rtc.direct_api().local_ice_credentials().ufrag);
        peer.first_offer.get_or_insert(now);
        let mut consumers = HashMap::with_capacity(plan.consumed.len());
        for &(mid, spec) in &plan.consumed {
            let sending = rtc.media(mid).is_some_and(|m| m.direction().is_sending());
            let mut consumer = peer
                .consumers
                .remove(&mid)
                .filter(|c| c.publisher == spec.publisher && c.track_id == spec.track_id)
                .unwrap_or_else(|| {
                    // < 2^15 so the subscriber's SRTP rollover counter starts at 0.
                    let seq_start = self.rng.random_range(1000..30000);
                    Consumer::new(spec.publisher, spec.track_id.clone(), seq_start)
                });
            consumer.forwarding = spec.active && sending;
            consumers.insert(mid, consumer);
        }
        peer.consumers = consumers;
        self.mark_dirty(peer_id, true);

        let produced = &plan.producers;
        self.producers.retain(|(p, mid), t| {
            *p != peer_id
                || produced
                    .iter()
                    .any(|n| n.mid == *mid && n.track_id == t.track_id)
        });
        for n in produced {
            self.producers
                .entry((peer_id, n.mid))
                .or_insert_with(|| Producer {
                    track_id: n.track_id.clone(),
                    kind: n.kind,
                    silence: SilenceDiscarder::default(),
                    keyframe: KeyframeLimiter::default(),
                    subscribers: Vec::new(),
                });
        }
        self.rebuild_routes();
    }
}

/// Reads the offer's m-lines and refuses what cannot be answered: text that is not SDP, a mid
/// str0m would rewrite (its `Mid` keeps 1–16 letters and digits), an m-line with no usable codec.
fn checked_summary(offer_sdp: &str) -> Result<OfferSummary, SfuError> {
    let summary = OfferSummary::parse(offer_sdp).map_err(SfuError::InvalidSdp)?;
    if let Some(mid) = summary
        .sections
        .iter()
        .filter_map(|s| s.mid.as_deref())
        .find(|m| m.is_empty() || &*Mid::from(*m) != *m)
    {
        return Err(SfuError::InvalidSdp(format!(
            "mid {mid:?} is not 1-16 letters or digits"
        )));
    }
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
    Ok(summary)
}

/// What each m-line of an offer will carry.
struct MlinePlan<'a> {
    /// Recvonly m-lines and the consumer each carries, in offer order per kind.
    consumed: Vec<(Mid, &'a ConsumerSpec)>,
    /// Recvonly m-lines answered `a=inactive` (disabled consumers and surplus m-lines).
    inactive: Vec<String>,
    /// The publisher's own sendonly/sendrecv m-lines named in `inbound`, in offer order.
    producers: Vec<ProducedTrack>,
    /// Consumers of a kind that found no recvonly m-line (the client offered too few).
    surplus: Vec<(MediaKind, usize)>,
}

impl<'a> MlinePlan<'a> {
    fn new(
        summary: &OfferSummary,
        inbound: &BTreeMap<Mid, TrackId>,
        consumers: &'a [ConsumerSpec],
    ) -> Self {
        let mut plan = MlinePlan {
            consumed: Vec::new(),
            inactive: Vec::new(),
            producers: Vec::new(),
            surplus: Vec::new(),
        };
        for kind in [MediaKind::Audio, MediaKind::Video] {
            let mut specs = consumers.iter().filter(|t| t.kind == kind);
            for mid in summary.recvonly(kind).filter_map(|s| s.mid.as_deref()) {
                match specs.next() {
                    Some(t) => {
                        plan.consumed.push((Mid::from(mid), t));
                        if !t.active {
                            plan.inactive.push(mid.to_string());
                        }
                    }
                    None => plan.inactive.push(mid.to_string()),
                }
            }
            let surplus = specs.count();
            if surplus > 0 {
                plan.surplus.push((kind, surplus));
            }
        }
        for s in summary
            .sections
            .iter()
            .filter(|s| !s.rejected && matches!(s.dir, sdp::Dir::SendOnly | sdp::Dir::SendRecv))
        {
            let (Some(mid), Some(kind)) = (s.mid.as_deref(), s.kind) else {
                continue;
            };
            let mid = Mid::from(mid);
            if let Some(track_id) = inbound.get(&mid) {
                plan.producers.push(ProducedTrack {
                    mid,
                    track_id: track_id.clone(),
                    kind,
                });
            }
        }
        plan
    }

    /// Every mapped mid → track id, for the answer's `midToTrackId`.
    fn mid_to_track_id(&self) -> BTreeMap<Mid, TrackId> {
        let consumed = self.consumed.iter().map(|(m, t)| (*m, t.track_id.clone()));
        let produced = self.producers.iter().map(|p| (p.mid, p.track_id.clone()));
        consumed.chain(produced).collect()
    }

    /// The msids of the m-lines we send on (see the module docs for why we rewrite them).
    fn msids(&self) -> BTreeMap<String, (String, String)> {
        self.consumed
            .iter()
            .map(|(mid, t)| {
                let id = t.track_id.as_str();
                let track = id.rsplit(':').next().unwrap_or(id);
                (
                    mid.to_string(),
                    (sdp::msid_token(&t.stream_id), sdp::msid_token(track)),
                )
            })
            .collect()
    }
}
