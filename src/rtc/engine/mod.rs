//! The per-room signalling engine: a sans-IO state machine that speaks the media-event protocol
//! with every peer of one room and drives that room's [`Sfu`].
//!
//! # How this works
//! Inputs are method calls that take `now`: [`Engine::handle_media_event`] (a peer's serialized
//! event), [`Engine::accept_peer`] / [`Engine::deny_peer`] (the room's answer to a
//! [`EngineOutput::JoinRequest`]), [`Engine::remove_peer`] (the peer left its channel),
//! [`Engine::detach_peer`] / [`Engine::resume_peer`] (its signalling connection was lost / is
//! back), [`Engine::handle_datagram`] and [`Engine::handle_timeout`] (forwarded to the SFU; the
//! timeout also ends the reconnect grace of held peers). After every
//! input the owner drains [`Engine::poll_output`] until it returns [`EngineOutput::Timeout`] —
//! the same drain rule as str0m and the SFU. The engine never reads a clock, never owns a socket.
//!
//! # Negotiation
//! The browser is always the offerer; the engine starts a round by sending `offerData` with the
//! number of audio/video tracks the peer will receive. Per peer it keeps two lists of outbound
//! tracks: the *desired* list (append-only: new tracks are appended, removed ones are only marked
//! inactive, because the client never removes a transceiver) and the list its last answer
//! *negotiated*. A round starts whenever the two differ, or the client asks with
//! `renegotiateTracks`, and no round is outstanding. While a round is outstanding (an `offerData`
//! sent, its `sdpOffer` not yet received) nothing else is sent to that peer; changes queue and are
//! reconciled right after the answer, so there is never more than one follow-up round.
//!
//! `renegotiateTracks` while a round is outstanding is absorbed: the client sent it before it
//! handled our `offerData`, so its offer will carry the new track (this avoids the demo's second
//! round at join). Should a track still be missing from the offer (the client added it while
//! building the offer), the offer's `trackIdToTrackMetadata` lists it without a mid and one
//! follow-up round is started for it.
//!
//! # Event order
//! - `peerAccepted` (to the joiner) < `peerJoined` (broadcast) < the joiner's first `offerData`.
//! - On an offer: `tracksRemoved` / `tracksAdded` (broadcast, publisher's full map) are queued
//!   before the publisher's own `sdpAnswer` and before any subscriber's `offerData`, so
//!   `peerJoined(X) < tracksAdded(X) < any sdpAnswer mapping X's tracks` always holds.
//! - `sdpAnswer` is followed by the server's candidates (`candidate` events), then by a follow-up
//!   `offerData` if one is due. [`EngineOutput::IceUfrags`] precedes each `sdpAnswer` so the UDP
//!   mux knows the new ufrags before the browser can send STUN with them.
//!
//! # Reconnect
//! Media does not depend on signalling. A member whose channel is lost without `leave` while
//! its media is connected is *held* for [`EngineLimits::reconnect_grace`]: its tracks keep
//! flowing, events for it are still produced (the owner drops them) and nobody gets `peerLeft`.
//! It is removed as any member when the grace runs out, when its media fails (SFU peer
//! timeout, a few seconds) or on `leave`. When its client comes back with a valid resume token,
//! [`Engine::resume_peer`] replays the state: `peerAccepted` with the room as it is now, then
//! the outstanding `offerData` or a new round if its outbound tracks changed.
//!
//! # Bad input
//! Invalid JSON, unknown types, ill-shaped data, events from non-peers (except `join`), `join`
//! twice, candidates the SFU rejects: logged and dropped, as the Elixir engine does. An
//! `sdpOffer` the SFU cannot answer (garbage SDP, no usable codec, wrong `type`) gets an `error`
//! event: that peer cannot go on, the client reports it and leaves. Nothing affects other peers.

mod backend;
mod limits;
mod member;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use serde_json::Value;

pub use backend::SfuBackend;
pub use limits::EngineLimits;

use limits::{Limit, json_size};
use member::{Member, Producer, outbound};

use crate::rtc::ids::{PeerId, RoomId, TrackId};
use crate::rtc::media_event::{
    JoinData, MediaEventError, MediaEventIn, MediaEventOut, OfferDataData, PeerAcceptedData,
    PeerJoinedData, PeerLeftData, PeerUpdatedData, SdpAnswerData, SdpOfferData,
    ServerCandidateData, TrackUpdatedData, TracksAddedData, TracksRemovedData,
};
use crate::rtc::metrics::LabeledCounters;
use crate::rtc::net::Datagram;
use crate::rtc::sfu::{
    Answer, ConsumerSpec, Mid, Offer, ProducedTrack, Sfu, SfuError, SfuEvent, SfuOutput, Transmit,
};

/// One output of [`Engine::poll_output`].
#[derive(Debug)]
pub enum EngineOutput {
    /// A peer sent `join`: the owner must call [`Engine::accept_peer`] or [`Engine::deny_peer`]
    /// (the way the Elixir room answered `{:new_peer, …}`). Until then the peer is not a member.
    JoinRequest {
        /// The peer that asked.
        peer: PeerId,
        /// Its `join` metadata.
        metadata: Value,
    },
    /// Deliver this serialized media event to one peer.
    Send {
        /// Recipient.
        to: PeerId,
        /// The media event's JSON (the `data` of a `mediaEvent` push).
        event: String,
    },
    /// Deliver this serialized media event to each of these peers (every member at that moment).
    Broadcast {
        /// Recipients.
        to: Vec<PeerId>,
        /// The media event's JSON.
        event: String,
    },
    /// The set of local ICE ufrags changed: publish it to the UDP mux before sending on.
    IceUfrags(Vec<String>),
    /// This member is gone (left, removed, or failed); the engine has already told the others.
    PeerRemoved(PeerId),
    /// This member's media is not connected a few seconds after its offer: tell its client
    /// the likely cause (outside the media-event protocol, which has no such event).
    MediaNotConnected {
        /// The member.
        to: PeerId,
        /// The likely cause (already logged with the details).
        cause: crate::rtc::sfu::diagnosis::ConnectCause,
    },
    /// Send this datagram through the shared UDP socket.
    Transmit(Transmit),
    /// Nothing more to do until this instant (or the next input).
    Timeout(Instant),
}

/// The signalling engine of one room (see the module docs).
pub struct Engine<S: SfuBackend = Sfu> {
    /// Room id, only for logs.
    room: RoomId,
    sfu: S,
    limits: EngineLimits,
    /// Members in join order (the order of `peersInRoom` and of outbound tracks).
    order: Vec<PeerId>,
    members: BTreeMap<PeerId, Member>,
    /// Peers that sent `join` and wait for the owner's decision.
    pending: BTreeMap<PeerId, JoinData>,
    /// Members whose signalling connection is gone while their media lives, each until its
    /// reconnect grace runs out ([`Engine::detach_peer`]).
    held: BTreeMap<PeerId, Instant>,
    outputs: VecDeque<EngineOutput>,
    last_ufrags: Vec<String>,
    /// Counts every limit hit, by limit (logged only once per peer and limit).
    limit_hits: LabeledCounters,
}

impl<S: SfuBackend> Engine<S> {
    /// An engine with no peers and the default [`EngineLimits`]; `room` only appears in logs.
    pub fn new(room: impl Into<RoomId>, sfu: S) -> Self {
        Self::with_limits(room, sfu, EngineLimits::default())
    }

    /// An engine with no peers and the given limits.
    pub fn with_limits(room: impl Into<RoomId>, sfu: S, limits: EngineLimits) -> Self {
        Engine {
            room: room.into(),
            sfu,
            limits,
            order: Vec::new(),
            members: BTreeMap::new(),
            pending: BTreeMap::new(),
            held: BTreeMap::new(),
            outputs: VecDeque::new(),
            last_ufrags: Vec::new(),
            limit_hits: LabeledCounters::default(),
        }
    }

    /// The same engine counting its limit hits in `limit_hits` (label `limit`).
    pub fn with_limit_counters(self, limit_hits: LabeledCounters) -> Self {
        Engine { limit_hits, ..self }
    }

    /// The number of accepted peers.
    pub fn member_count(&self) -> usize {
        self.order.len()
    }

    /// Whether `peer` is an accepted member.
    pub fn is_member(&self, peer: PeerId) -> bool {
        self.members.contains_key(&peer)
    }

    /// The SFU (for inspection).
    pub fn sfu(&self) -> &S {
        &self.sfu
    }

    /// Handles one serialized media event sent by `from`.
    pub fn handle_media_event(&mut self, from: PeerId, json: &str, now: Instant) {
        let event = match MediaEventIn::parse(json) {
            Ok(event) => event,
            Err(error) => {
                let what = match &error {
                    MediaEventError::InvalidJson(_) => "invalid JSON",
                    MediaEventError::UnknownType(_) => "unknown type",
                    MediaEventError::InvalidData { .. } => "ill-shaped data",
                };
                log::warn!(
                    "room={} peer={from} dropping media event ({what}): {error}",
                    self.room
                );
                return;
            }
        };
        if let MediaEventIn::Join(data) = event {
            self.handle_join(from, data);
            return;
        }
        if !self.members.contains_key(&from) {
            // A refused joiner's client still says `leave` when it goes: expected, not a warning.
            let level = if matches!(event, MediaEventIn::Leave) {
                log::Level::Debug
            } else {
                log::Level::Warn
            };
            log::log!(
                level,
                "room={} peer={from} dropping {} from a peer that has not joined",
                self.room,
                event.kind()
            );
            return;
        }
        log::debug!(
            "room={} peer={from} media event {}",
            self.room,
            event.kind()
        );
        match event {
            MediaEventIn::Join(_) => unreachable!("handled above"),
            MediaEventIn::RenegotiateTracks(_) => self.handle_renegotiate(from),
            MediaEventIn::SdpOffer(offer) => self.handle_offer(from, offer, now),
            MediaEventIn::Candidate(c) => self.handle_candidate(from, &c.candidate),
            MediaEventIn::UpdatePeerMetadata(d) => self.handle_peer_metadata(from, d.metadata),
            MediaEventIn::UpdateTrackMetadata(d) => self.handle_track_metadata(from, d),
            MediaEventIn::Leave => {
                log::info!("room={} peer={from} leaves", self.room);
                self.drop_member(from);
            }
        }
    }

    /// A trickled ICE candidate: held to the limits, then given to the SFU.
    fn handle_candidate(&mut self, from: PeerId, candidate: &str) {
        if let Some(limit) = self.candidate_over_limit(from, candidate) {
            self.refuse(from, limit, "candidate");
        } else if let Err(e) = self.sfu.handle_remote_candidate(from, candidate) {
            // Firefox ends trickle with an empty candidate, and browsers hide host addresses
            // behind mDNS `.local` names: both are expected and unusable (ICE works through
            // peer-reflexive candidates), so only other failures warn.
            let expected = candidate.trim().is_empty()
                || candidate.contains("end-of-candidates")
                || candidate.contains(".local ");
            let level = if expected {
                log::Level::Debug
            } else {
                log::Level::Warn
            };
            log::log!(
                level,
                "room={} peer={from} dropping candidate {candidate:?}: {e}",
                self.room
            );
        }
    }

    /// New peer metadata: held to the limit, stored, and told to everyone.
    fn handle_peer_metadata(&mut self, from: PeerId, metadata: Value) {
        if json_size(&metadata) > self.limits.max_peer_metadata_bytes {
            self.refuse(from, Limit::PeerMetadata, "updatePeerMetadata");
            return;
        }
        if let Some(m) = self.members.get_mut(&from) {
            m.metadata = metadata.clone();
        }
        self.broadcast(MediaEventOut::PeerUpdated(PeerUpdatedData {
            peer_id: from.to_string(),
            metadata,
        }));
    }

    /// Admits a peer whose [`EngineOutput::JoinRequest`] the owner accepted (no resume token).
    pub fn accept_peer(&mut self, peer: PeerId, now: Instant) {
        self.admit(peer, None, now);
    }

    /// Admits a peer like [`Engine::accept_peer`], telling it `resume_token` in `peerAccepted`
    /// (the owner draws the token and keeps the table of them).
    pub fn accept_peer_resumable(&mut self, peer: PeerId, resume_token: String, now: Instant) {
        self.admit(peer, Some(resume_token), now);
    }

    /// The admission itself: member state, `peerAccepted`, `peerJoined`, the first round.
    fn admit(&mut self, peer: PeerId, resume_token: Option<String>, now: Instant) {
        let Some(join) = self.pending.remove(&peer) else {
            log::debug!(
                "room={} peer={peer} accept for a peer that no longer waits",
                self.room
            );
            return;
        };
        let mut member = Member {
            metadata: join.metadata,
            receive_media: join.receive_media,
            published: Vec::new(),
            unpublished: BTreeSet::new(),
            last_unsent: BTreeSet::new(),
            outbound: Vec::new(),
            negotiated: Vec::new(),
            outstanding: None,
            last_counts: OfferDataData { audio: 0, video: 0 },
            candidates: 0,
            candidate_budget: self.limits.max_candidates_per_offer,
            limits_hit: BTreeSet::new(),
        };
        let peers_in_room = self
            .order
            .iter()
            .map(|id| self.members[id].info(*id))
            .collect();
        if member.receive_media {
            for id in &self.order {
                let publisher = &self.members[id];
                member
                    .outbound
                    .extend(publisher.published.iter().map(|t| outbound(*id, t)));
            }
        }
        let info = member.info(peer);
        self.sfu.add_peer(peer, now);
        self.order.push(peer);
        self.members.insert(peer, member);
        log::info!(
            "room={} peer={peer} accepted ({} members)",
            self.room,
            self.order.len()
        );
        self.send(
            peer,
            MediaEventOut::PeerAccepted(PeerAcceptedData {
                id: peer.to_string(),
                peers_in_room,
                resume_token,
            }),
        );
        self.broadcast(MediaEventOut::PeerJoined(PeerJoinedData { peer: info }));
        // A joiner that will receive tracks negotiates right away: the original engine sends it
        // offerData on admission without waiting for a renegotiateTracks.
        self.reconcile(peer);
    }

    /// Refuses a peer whose [`EngineOutput::JoinRequest`] the owner denied; `data` becomes the
    /// whole `data` of `peerDenied` (e.g. `{"reason": "…"}`).
    pub fn deny_peer(&mut self, peer: PeerId, data: Value) {
        if self.pending.remove(&peer).is_none() {
            return;
        }
        log::info!("room={} peer={peer} denied: {data}", self.room);
        self.send(peer, MediaEventOut::PeerDenied(data));
    }

    /// The peer's connection to the room is gone (socket closed, channel left). Idempotent: a
    /// member is removed and announced once; unknown peers are ignored.
    pub fn remove_peer(&mut self, peer: PeerId) {
        self.pending.remove(&peer);
        if self.members.contains_key(&peer) {
            log::info!("room={} peer={peer} removed", self.room);
            self.drop_member(peer);
        }
    }

    /// The peer's signalling connection is gone without `leave` (socket lost). A member whose
    /// media is connected is held for [`EngineLimits::reconnect_grace`]: it stays in the room,
    /// its tracks keep flowing and nobody hears of it; it is removed when the grace runs out,
    /// when its media fails (SFU peer timeout) or when [`Engine::remove_peer`] is called. Any
    /// other peer is removed at once. Returns whether the peer is held.
    pub fn detach_peer(&mut self, peer: PeerId, now: Instant) -> bool {
        let grace = self.limits.reconnect_grace;
        if !self.members.contains_key(&peer) || grace.is_zero() || !self.sfu.media_connected(peer) {
            self.remove_peer(peer);
            return false;
        }
        log::info!(
            "room={} peer={peer} signalling lost, media alive: held for {grace:?}",
            self.room
        );
        self.held.insert(peer, now + grace);
        true
    }

    /// Whether `peer` is held after losing its signalling connection.
    pub fn is_held(&self, peer: PeerId) -> bool {
        self.held.contains_key(&peer)
    }

    /// A member's client is back on a new signalling connection (the owner checked its resume
    /// token): it gets `peerAccepted` again (the others and their tracks now, and
    /// `resume_token`, the next token), then the `offerData` it may have missed, or a new round
    /// if its outbound tracks changed meanwhile. Nobody else hears anything. Returns `false`
    /// (nothing sent) if `peer` is not a member any more.
    pub fn resume_peer(&mut self, peer: PeerId, resume_token: String) -> bool {
        if !self.members.contains_key(&peer) {
            return false;
        }
        self.held.remove(&peer);
        log::info!("room={} peer={peer} resumed", self.room);
        let peers_in_room = self
            .order
            .iter()
            .filter(|id| **id != peer)
            .map(|id| self.members[id].info(*id))
            .collect();
        self.send(
            peer,
            MediaEventOut::PeerAccepted(PeerAcceptedData {
                id: peer.to_string(),
                peers_in_room,
                resume_token: Some(resume_token),
            }),
        );
        match self.members.get(&peer).and_then(|m| m.outstanding) {
            // Its answer to that offerData is what the round waits for: ask again.
            Some(counts) => self.send(peer, MediaEventOut::OfferData(counts)),
            None => self.reconcile(peer),
        }
        true
    }

    /// Removes the held peers whose reconnect grace is over at `now`.
    fn expire_held(&mut self, now: Instant) {
        let expired: Vec<PeerId> = self
            .held
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in expired {
            log::info!(
                "room={} peer={peer} did not come back within the reconnect grace, removing it",
                self.room
            );
            self.drop_member(peer);
        }
    }

    /// Feeds a datagram to the SFU.
    pub fn handle_datagram(&mut self, datagram: &Datagram) {
        self.sfu.handle_datagram(datagram);
    }

    /// Advances time: the SFU's timers, and the reconnect grace of held peers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.sfu.handle_timeout(now);
        self.expire_held(now);
    }

    /// The next output; drain until [`EngineOutput::Timeout`] after every input.
    pub fn poll_output(&mut self) -> EngineOutput {
        loop {
            if let Some(out) = self.outputs.pop_front() {
                return out;
            }
            match self.sfu.poll_output() {
                SfuOutput::Transmit(t) => return EngineOutput::Transmit(t),
                SfuOutput::Timeout(t) => {
                    let grace_over = self.held.values().min().copied();
                    return EngineOutput::Timeout(grace_over.map_or(t, |g| g.min(t)));
                }
                SfuOutput::Event(SfuEvent::PeerFailed(peer)) => {
                    if self.members.contains_key(&peer) {
                        log::warn!(
                            "room={} peer={peer} connection failed, removing it",
                            self.room
                        );
                        // Tell the peer too, in case only its media path died: its client
                        // reports the error and leaves instead of showing frozen tiles.
                        self.send(peer, MediaEventOut::error("media connection failed"));
                        self.drop_member(peer);
                    }
                }
                SfuOutput::Event(SfuEvent::PeerConnected(peer)) => {
                    log::info!("room={} peer={peer} media connected", self.room);
                }
                SfuOutput::Event(SfuEvent::MediaNotConnected(to, cause)) => {
                    if self.members.contains_key(&to) {
                        return EngineOutput::MediaNotConnected { to, cause };
                    }
                }
                // `SfuEvent` is `#[non_exhaustive]`: future events are logged until handled.
                #[allow(unreachable_patterns)]
                SfuOutput::Event(other) => {
                    log::debug!("room={} sfu event {other:?}", self.room);
                }
            }
        }
    }

    fn handle_join(&mut self, peer: PeerId, data: JoinData) {
        if self.members.contains_key(&peer) || self.pending.contains_key(&peer) {
            log::warn!(
                "room={} peer={peer} dropping join: already joined",
                self.room
            );
            return;
        }
        let size = json_size(&data.metadata);
        if size > self.limits.max_peer_metadata_bytes {
            self.limit_hits
                .get_or_create(&[("limit", Limit::PeerMetadata.label())])
                .inc();
            log::info!(
                "room={} peer={peer} join denied: metadata of {size} bytes (limit {})",
                self.room,
                self.limits.max_peer_metadata_bytes
            );
            let reason = serde_json::json!({ "reason": Limit::PeerMetadata.client_message() });
            self.send(peer, MediaEventOut::PeerDenied(reason));
            return;
        }
        log::info!("room={} peer={peer} asks to join", self.room);
        let metadata = data.metadata.clone();
        self.pending.insert(peer, data);
        self.outputs
            .push_back(EngineOutput::JoinRequest { peer, metadata });
    }

    fn handle_renegotiate(&mut self, peer: PeerId) {
        let Some(member) = self.members.get(&peer) else {
            return;
        };
        if member.outstanding.is_some() {
            // The client asked before it handled our outstanding offerData: that offer will
            // carry its change (see the module docs).
            log::debug!(
                "room={} peer={peer} renegotiateTracks absorbed by the outstanding round",
                self.room
            );
            return;
        }
        self.start_round(peer);
    }

    fn handle_track_metadata(
        &mut self,
        peer: PeerId,
        d: crate::rtc::media_event::UpdateTrackMetadataData,
    ) {
        let Some(member) = self.members.get_mut(&peer) else {
            return;
        };
        if json_size(&d.track_metadata) > self.limits.max_track_metadata_bytes {
            self.refuse(peer, Limit::TrackMetadata, "updateTrackMetadata");
            return;
        }
        let Some(track) = member
            .published
            .iter_mut()
            .find(|t| t.track_id.as_str() == d.track_id)
        else {
            log::warn!(
                "room={} peer={peer} dropping updateTrackMetadata for unknown track {:?}",
                self.room,
                d.track_id
            );
            return;
        };
        track.metadata = d.track_metadata.clone();
        self.broadcast(MediaEventOut::TrackUpdated(TrackUpdatedData {
            peer_id: peer.to_string(),
            track_id: d.track_id,
            metadata: d.track_metadata,
        }));
    }

    /// An `sdpOffer`: m-line plan and answer by the SFU, then the steps below in event order
    /// (see the module docs): producers diff, announce, answer, update subscribers, next round.
    fn handle_offer(&mut self, peer: PeerId, offer: SdpOfferData, now: Instant) {
        if offer.sdp_offer.kind != "offer" {
            log::info!(
                "room={} peer={peer} sdpOffer of type {:?}",
                self.room,
                offer.sdp_offer.kind
            );
            self.fail_offer(peer, "sdpOffer must have type \"offer\"");
            return;
        }
        if let Some(limit) = self.offer_over_limit(&offer) {
            self.note_limit(peer, limit, "sdpOffer");
            self.fail_offer(peer, limit.client_message());
            return;
        }
        let Some(member) = self.members.get_mut(&peer) else {
            return;
        };
        member.candidates = 0;
        let m_lines = m_line_count(&offer.sdp_offer.sdp);
        member.candidate_budget = self
            .limits
            .max_candidates_per_offer
            .saturating_mul(m_lines.max(1));
        let counts = member.outstanding.unwrap_or(member.last_counts);
        if member.outstanding.is_none() {
            log::info!(
                "room={} peer={peer} unsolicited sdpOffer, answering it anyway",
                self.room
            );
        }
        let consumers = member.outbound_fitting(counts);
        let producers = self.offered_producers(peer, &offer);
        let sfu_offer = Offer {
            sdp: &offer.sdp_offer.sdp,
            producers: &producers,
            consumers: &consumers,
        };
        let answer = match self.sfu.handle_offer(peer, sfu_offer, now) {
            Ok(answer) => answer,
            Err(e) => {
                log::info!("room={} peer={peer} cannot answer offer: {e}", self.room);
                self.fail_offer(peer, offer_error_text(&e));
                return;
            }
        };
        let Some(change) = self.apply_producers(peer, &answer.producers, &offer) else {
            return;
        };
        self.announce(peer, &change);
        self.send_answer(peer, answer, consumers);
        self.update_subscribers(peer, &change);
        if change.needs_follow_up {
            log::debug!(
                "room={} peer={peer} offer lacked declared tracks, one more round",
                self.room
            );
            self.start_round(peer);
        } else {
            self.reconcile(peer);
        }
        let others: Vec<PeerId> = self.order.iter().copied().filter(|p| *p != peer).collect();
        for other in others {
            self.reconcile(other);
        }
    }

    /// The offer's `midToTrackId` entries the sender may publish: track ids in its own
    /// namespace, each once, on mids str0m keeps as they are, and no more than the limit. Any
    /// other entry is left out (its m-line publishes nothing) and the sender gets one `error`.
    fn offered_producers(&mut self, peer: PeerId, offer: &SdpOfferData) -> BTreeMap<Mid, TrackId> {
        let mut producers = BTreeMap::new();
        let mut seen = BTreeSet::new();
        let mut refused = None;
        for (mid, track_id) in &offer.mid_to_track_id {
            let id = TrackId::from(track_id.as_str());
            let owned = id.is_owned_by(peer) && seen.insert(id.clone());
            let metadata_fits = offer
                .track_id_to_track_metadata
                .get(track_id)
                .is_none_or(|m| json_size(m) <= self.limits.max_track_metadata_bytes);
            let mid_kept = !mid.is_empty() && &*Mid::from(mid.as_str()) == mid;
            if !owned || !mid_kept {
                refused = Some(Limit::TrackOwnership);
            } else if !metadata_fits {
                refused = Some(Limit::TrackMetadata);
            } else if producers.len() >= self.limits.max_tracks_per_peer {
                refused = Some(Limit::TracksPerPeer);
            } else {
                producers.insert(Mid::from(mid.as_str()), id);
            }
        }
        if let Some(limit) = refused {
            self.refuse(peer, limit, "sdpOffer track");
        }
        producers
    }

    /// Replaces the member's producers by the ones the answer confirmed; returns what changed.
    fn apply_producers(
        &mut self,
        peer: PeerId,
        produced: &[ProducedTrack],
        offer: &SdpOfferData,
    ) -> Option<ProducerChange> {
        let member = self.members.get_mut(&peer)?;
        let published: Vec<Producer> = produced
            .iter()
            .map(|p| Producer {
                track_id: p.track_id.clone(),
                kind: p.kind,
                metadata: offer
                    .track_id_to_track_metadata
                    .get(p.track_id.as_str())
                    .cloned()
                    .unwrap_or_else(|| Value::Object(Default::default())),
            })
            .collect();
        let old: BTreeSet<TrackId> = member
            .published
            .iter()
            .map(|t| t.track_id.clone())
            .collect();
        let new: BTreeSet<TrackId> = published.iter().map(|t| t.track_id.clone()).collect();
        let removed: Vec<TrackId> = old.difference(&new).cloned().collect();
        let added: Vec<ConsumerSpec> = published
            .iter()
            .filter(|t| !old.contains(&t.track_id))
            .map(|t| outbound(peer, t))
            .collect();
        member.unpublished.extend(removed.iter().cloned());
        member.published = published;
        // Declared but not sent, own, and not dropped earlier: added while the offer was built.
        let unsent: BTreeSet<TrackId> = offer
            .track_id_to_track_metadata
            .keys()
            .map(|t| TrackId::from(t.as_str()))
            .filter(|t| t.is_owned_by(peer) && !new.contains(t) && !member.unpublished.contains(t))
            .take(self.limits.max_tracks_per_peer)
            .collect();
        let needs_follow_up = !unsent.is_empty() && unsent != member.last_unsent;
        member.last_unsent = unsent;
        Some(ProducerChange {
            removed,
            added,
            track_map: member.track_map(),
            needs_follow_up,
        })
    }

    /// `tracksRemoved` / `tracksAdded` to everyone, before any answer maps the new tracks.
    fn announce(&mut self, peer: PeerId, change: &ProducerChange) {
        if !change.removed.is_empty() {
            self.broadcast(MediaEventOut::TracksRemoved(TracksRemovedData {
                peer_id: peer.to_string(),
                track_ids: change.removed.iter().map(TrackId::to_string).collect(),
            }));
        }
        if !change.added.is_empty() {
            self.broadcast(MediaEventOut::TracksAdded(TracksAddedData {
                peer_id: peer.to_string(),
                track_id_to_metadata: change.track_map.clone(),
            }));
        }
    }

    /// The answer, preceded by the ufrags the mux must route and followed by our candidates;
    /// the round is over.
    fn send_answer(&mut self, peer: PeerId, answer: Answer, consumers: Vec<ConsumerSpec>) {
        self.publish_ufrags();
        self.send(
            peer,
            MediaEventOut::SdpAnswer(SdpAnswerData {
                kind: "answer".into(),
                sdp: answer.sdp,
                mid_to_track_id: answer
                    .mid_to_track_id
                    .iter()
                    .map(|(mid, t)| (mid.to_string(), t.to_string()))
                    .collect(),
            }),
        );
        for candidate in self.sfu.local_candidates() {
            self.send(
                peer,
                MediaEventOut::Candidate(ServerCandidateData::new(candidate)),
            );
        }
        if let Some(member) = self.members.get_mut(&peer) {
            member.negotiated = consumers;
            member.outstanding = None;
        }
    }

    /// Every other receiving member: the publisher's new tracks appended, removed ones disabled.
    fn update_subscribers(&mut self, peer: PeerId, change: &ProducerChange) {
        for (id, sub) in self.members.iter_mut() {
            if *id == peer || !sub.receive_media {
                continue;
            }
            for t in sub.outbound.iter_mut() {
                if t.publisher == peer && change.removed.contains(&t.track_id) {
                    t.active = false;
                }
            }
            sub.outbound.extend(change.added.iter().cloned());
        }
    }

    /// [`EngineOutput::IceUfrags`] if the SFU's ufrags changed since it was last published.
    fn publish_ufrags(&mut self) {
        let ufrags = self.sfu.ice_ufrags();
        if ufrags != self.last_ufrags {
            self.last_ufrags = ufrags.clone();
            self.outputs.push_back(EngineOutput::IceUfrags(ufrags));
        }
    }

    /// The first offer limit `offer` breaks (size, m-lines), counted before anything parses it.
    fn offer_over_limit(&self, offer: &SdpOfferData) -> Option<Limit> {
        let sdp = &offer.sdp_offer.sdp;
        if sdp.len() > self.limits.max_offer_bytes {
            return Some(Limit::OfferSize);
        }
        (m_line_count(sdp) > self.limits.max_offer_m_lines).then_some(Limit::OfferMLines)
    }

    /// The candidate limit this candidate breaks, if any; otherwise it is counted.
    fn candidate_over_limit(&mut self, peer: PeerId, candidate: &str) -> Option<Limit> {
        if candidate.len() > self.limits.max_candidate_bytes {
            return Some(Limit::CandidateSize);
        }
        let member = self.members.get_mut(&peer)?;
        if member.candidates >= member.candidate_budget {
            return Some(Limit::Candidates);
        }
        member.candidates += 1;
        None
    }

    /// A peer hit a limit: it gets `error` with our text (the input is dropped).
    fn refuse(&mut self, peer: PeerId, limit: Limit, what: &str) {
        self.note_limit(peer, limit, what);
        self.send(peer, MediaEventOut::error(limit.client_message()));
    }

    /// Logs a limit hit once per peer and limit.
    fn note_limit(&mut self, peer: PeerId, limit: Limit, what: &str) {
        self.limit_hits
            .get_or_create(&[("limit", limit.label())])
            .inc();
        let Some(member) = self.members.get_mut(&peer) else {
            return;
        };
        if member.limits_hit.insert(limit) {
            log::info!(
                "room={} peer={peer} refused {what}: {limit:?} limit (further ones not logged)",
                self.room
            );
        }
    }

    /// An offer that cannot be answered: the peer gets `error` (its client leaves) and the
    /// round is over, so nothing else waits on it.
    fn fail_offer(&mut self, peer: PeerId, message: &str) {
        if let Some(m) = self.members.get_mut(&peer) {
            m.outstanding = None;
        }
        self.send(peer, MediaEventOut::error(message));
    }

    /// Starts a round if the desired outbound tracks differ from the negotiated ones.
    fn reconcile(&mut self, peer: PeerId) {
        let Some(member) = self.members.get(&peer) else {
            return;
        };
        if member.outstanding.is_none() && member.outbound != member.negotiated {
            self.start_round(peer);
        }
    }

    fn start_round(&mut self, peer: PeerId) {
        let Some(member) = self.members.get_mut(&peer) else {
            return;
        };
        let counts = member.counts();
        member.outstanding = Some(counts);
        member.last_counts = counts;
        self.send(peer, MediaEventOut::OfferData(counts));
    }

    fn drop_member(&mut self, peer: PeerId) {
        let Some(_member) = self.members.remove(&peer) else {
            return;
        };
        self.held.remove(&peer);
        self.order.retain(|p| *p != peer);
        self.sfu.remove_peer(peer);
        // No tracksRemoved for a leaving peer (the original engine sends none): the client
        // forgets its tracks on peerLeft.
        self.broadcast(MediaEventOut::PeerLeft(PeerLeftData {
            peer_id: peer.to_string(),
        }));
        self.outputs.push_back(EngineOutput::PeerRemoved(peer));
        self.publish_ufrags();
        let others = self.order.clone();
        for other in &others {
            if let Some(sub) = self.members.get_mut(other) {
                for t in sub.outbound.iter_mut().filter(|t| t.publisher == peer) {
                    t.active = false;
                }
            }
        }
        for other in others {
            self.reconcile(other);
        }
    }

    fn send(&mut self, to: PeerId, event: MediaEventOut) {
        log::debug!("room={} peer={to} -> {}", self.room, event.kind());
        self.outputs.push_back(EngineOutput::Send {
            to,
            event: event.to_json(),
        });
    }

    fn broadcast(&mut self, event: MediaEventOut) {
        if self.order.is_empty() {
            return;
        }
        log::debug!("room={} broadcast {}", self.room, event.kind());
        self.outputs.push_back(EngineOutput::Broadcast {
            to: self.order.clone(),
            event: event.to_json(),
        });
    }
}

/// What an accepted offer changed in its publisher's producers.
struct ProducerChange {
    removed: Vec<TrackId>,
    /// The new producers, as consumers for the subscribers.
    added: Vec<ConsumerSpec>,
    /// The publisher's full `trackIdToMetadata` after the change.
    track_map: BTreeMap<String, Value>,
    /// The offer declared own tracks it did not send: one more round will carry them.
    needs_follow_up: bool,
}

/// The client-facing text for an offer the SFU refused (the details go to the log).
/// How many m-lines (media sections) an SDP has.
fn m_line_count(sdp: &str) -> usize {
    sdp.lines().filter(|l| l.starts_with("m=")).count()
}

fn offer_error_text(e: &SfuError) -> &'static str {
    match e {
        SfuError::InvalidSdp(_) => "invalid SDP offer",
        SfuError::NoUsableCodec(_) => "no supported codec in the SDP offer (Opus, VP8, H264)",
        SfuError::UnknownPeer(_) | SfuError::BadCandidate(_) => "the SDP offer cannot be answered",
    }
}
