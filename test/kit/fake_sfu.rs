//! `FakeSfu`, a RECORDING FAKE of the SFU behind the public `SfuBackend` trait.
//!
//! It exists only so the engine's coalescing and ordering rules (which outbound tracks are
//! handed to the SFU, when rounds start, what a failed peer causes) can be checked without
//! WebRTC: it answers every offer with a placeholder SDP and remembers what the engine asked
//! for. The same sequences run against the real `Sfu` with the same harness
//! (`engine_room.rs`), so nothing is known only from the fake.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use videoroom::rtc::engine::SfuBackend;
use videoroom::rtc::ids::{MediaKind, PeerId, TrackId};
use videoroom::rtc::net::Datagram;
use videoroom::rtc::sfu::{
    Answer, ConsumerSpec, Mid, Offer, ProducedTrack, SfuError, SfuEvent, SfuOutput, SfuResult,
};

/// The host candidate the real `Sfu` announces for 127.0.0.1:50000, which the fake announces too.
pub const LOCAL_CANDIDATE: &str =
    "candidate:fffeff7e32c583ef85edbb1a 1 udp 2130706175 127.0.0.1 50000 typ host";

/// The mids the engine maps to track ids in an offer.
type Inbound = BTreeMap<Mid, TrackId>;

/// A recording fake of the SFU (see the module docs).
#[derive(Default)]
pub struct FakeSfu {
    /// Peers added and not removed, in order.
    pub peers: Vec<PeerId>,
    /// Every `remove_peer` call, in order.
    pub removed: Vec<PeerId>,
    /// Every answered offer: (peer, the outbound tracks the engine handed over with it).
    pub offers: Vec<(PeerId, Vec<ConsumerSpec>)>,
    /// Events `poll_output` reports next (queued by [`FakeSfu::fail_peer`]).
    events: RefCell<VecDeque<SfuEvent>>,
    /// Peers reported failed: their media is no longer connected.
    failed: RefCell<Vec<PeerId>>,
    /// The local ICE ufrag of each answered peer: every answer gets a fresh one (as after an ICE
    /// restart) and a removed peer's goes away, as with the real SFU.
    ufrags: BTreeMap<PeerId, u32>,
    /// Answers so far (numbers the ufrags).
    answers: u32,
}

impl FakeSfu {
    /// Reports `peer` as failed (ICE gone) at the next `poll_output`.
    pub fn fail_peer(&self, peer: PeerId) {
        self.failed.borrow_mut().push(peer);
        self.events
            .borrow_mut()
            .push_back(SfuEvent::PeerFailed(peer));
    }

    /// The answer to `offer_sdp`: the inbound mids whose m-line is audio or video are produced;
    /// each outbound track takes the next free m-line of its kind, like the real SFU.
    fn answer(offer_sdp: &str, inbound: &Inbound, outbound: &[ConsumerSpec]) -> Answer {
        let m_lines = m_lines(offer_sdp);
        let producers: Vec<ProducedTrack> = m_lines
            .iter()
            .filter_map(|(mid, kind)| {
                let track_id = inbound.get(mid)?.clone();
                Some(ProducedTrack {
                    mid: *mid,
                    track_id,
                    kind: *kind,
                })
            })
            .collect();
        let mut mid_to_track_id: Inbound = producers
            .iter()
            .map(|p| (p.mid, p.track_id.clone()))
            .collect();
        for consumer in outbound {
            let free = m_lines.iter().find(|(mid, kind)| {
                *kind == consumer.kind
                    && !inbound.contains_key(mid)
                    && !mid_to_track_id.contains_key(mid)
            });
            if let Some((mid, _)) = free {
                mid_to_track_id.insert(*mid, consumer.track_id.clone());
            }
        }
        Answer {
            sdp: "v=0\r\n".into(),
            mid_to_track_id,
            producers,
        }
    }
}

/// The audio and video m-lines of an SDP, by their `a=mid`, in order.
fn m_lines(sdp: &str) -> Vec<(Mid, MediaKind)> {
    let mut kind = None;
    let mut found = Vec::new();
    for line in sdp.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            kind = match m.split(' ').next() {
                Some("audio") => Some(MediaKind::Audio),
                Some("video") => Some(MediaKind::Video),
                _ => None,
            };
        } else if let (Some(mid), Some(kind)) = (line.strip_prefix("a=mid:"), kind) {
            found.push((Mid::from(mid.trim()), kind));
        }
    }
    found
}

impl SfuBackend for FakeSfu {
    fn add_peer(&mut self, peer: PeerId, _: Instant) {
        self.peers.push(peer);
    }
    fn remove_peer(&mut self, peer: PeerId) {
        self.peers.retain(|p| *p != peer);
        self.removed.push(peer);
        self.ufrags.remove(&peer);
    }
    fn handle_offer(&mut self, peer: PeerId, offer: Offer<'_>, _: Instant) -> SfuResult<Answer> {
        let Offer {
            sdp,
            producers: inbound,
            consumers: outbound,
        } = offer;
        if !sdp.starts_with("v=0") {
            return Err(SfuError::InvalidSdp("not SDP".into()));
        }
        self.offers.push((peer, outbound.to_vec()));
        self.answers += 1;
        self.ufrags.insert(peer, self.answers);
        Ok(Self::answer(sdp, inbound, outbound))
    }
    fn handle_remote_candidate(&mut self, _: PeerId, candidate: &str) -> Result<(), SfuError> {
        match candidate.starts_with("candidate:") {
            true => Ok(()),
            false => Err(SfuError::BadCandidate(candidate.into())),
        }
    }
    fn local_candidates(&self) -> Vec<String> {
        vec![LOCAL_CANDIDATE.into()]
    }
    fn handle_datagram(&mut self, _: &Datagram) {}
    fn handle_timeout(&mut self, _: Instant) {}
    fn poll_output(&mut self) -> SfuOutput {
        match self.events.get_mut().pop_front() {
            Some(event) => SfuOutput::Event(event),
            None => SfuOutput::Timeout(Instant::now() + Duration::from_secs(1)),
        }
    }
    fn ice_ufrags(&self) -> Vec<String> {
        self.ufrags.values().map(|n| format!("u{n}")).collect()
    }
    /// The fake's media connects with the first answer and dies with [`FakeSfu::fail_peer`].
    fn media_connected(&self, peer: PeerId) -> bool {
        self.ufrags.contains_key(&peer) && !self.failed.borrow().contains(&peer)
    }
}
