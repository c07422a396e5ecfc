//! The SFU: a sans-IO selective forwarding unit for one room, built on str0m in RTP mode.
//!
//! How this works:
//! - Each peer gets one `str0m::Rtc` (ICE-lite, BUNDLE, rtcp-mux, RTP mode) when its first offer
//!   arrives. The browser always offers; every re-offer carries new ICE credentials (the
//!   client calls `restartIce()`), which str0m treats as a remote ICE restart: new local
//!   credentials, same DTLS/SRTP, and media keeps flowing on the old path meanwhile.
//! - Codecs: Opus, VP8 and H264 profile 42e01f (packetization-mode 1), in that order of
//!   preference; str0m locks their payload types to each peer's own offer.
//! - Consumer m-line mapping: the k-th audio entry of `consumers` goes to the k-th recvonly audio
//!   m-line of the offer (same for video). Disabled entries and surplus m-lines are turned
//!   `a=inactive` in the offer before str0m answers it (so the answer says inactive). str0m
//!   invents the msid of media created from a remote offer and has no setter for it, so the
//!   answer's msid lines are rewritten to `<publisher stream id> <track id>` afterwards.
//! - Forwarding: every RTP packet from a publisher's track is written (payload shared, not
//!   copied) to each subscriber whose answer maps that track to a sendonly m-line and whose
//!   DTLS is up, with the subscriber's own SSRC (chosen by str0m), payload type (looked up in
//!   the subscriber's negotiated codecs) and a per-subscriber sequence number offset.
//! - Feedback: str0m answers NACKs from its RTX cache (video is written nackable), sends NACKs,
//!   receiver reports and TWCC feedback to publishers. Keyframes are requested (PLI) from a
//!   publisher when a subscriber starts receiving a track and when a subscriber sends PLI/FIR,
//!   at most once per `keyframe_request_interval` per track (later requests are merged).
//! - Silence: Opus packets whose ssrc-audio-level extension (id negotiated in the SDP; str0m
//!   parses it) says at least `silence_threshold` dBov are dropped, one in `silence_max_drops+1`
//!   passes, and the dropped count is subtracted from later sequence numbers (no gaps).
//! - Address changes: str0m's ICE-lite agent moves its sending path only when the old candidate
//!   pair is pruned, 15 s after the last check on it, while a NAT rebinding (or Wi-Fi to
//!   cellular) gives the browser's checks (consent and keepalive requests every few seconds) a
//!   new source address at once. So the SFU follows the browser itself: once str0m has answered
//!   a check from a new address (a valid request: str0m checked its MESSAGE-INTEGRITY, so only
//!   the peer can make one), datagrams to the peer go there instead, as soon as the address
//!   str0m still uses has been silent for [`PATH_SILENCE`]. While the old path is alive nothing
//!   changes; STUN responses always go where str0m sends them. When the path moves, keyframes
//!   are asked for the peer's own video and for every video it receives: both directions lost
//!   frames while the old path was dying.
//! - Transport-wide numbers: each peer's RTP passes the `twcc_guard` before str0m, which keeps
//!   away numbers str0m 0.25 would extend below zero (its TWCC feedback then grows without
//!   bound); a peer whose packets keep being dropped fails (see that module).
//! - Failure: a connected peer from which nothing arrived for `peer_timeout` (browsers send
//!   RTP, RTCP and STUN consent checks every few hundred ms to 2.5 s), or one that did not
//!   connect within `connect_timeout` of its first offer, or whose DTLS closed, is reported once
//!   with [`SfuEvent::PeerFailed`] and no longer served.
//! - Diagnosis: a peer not connected [`diagnosis::DIAGNOSE_AFTER`] its first offer is logged
//!   once with what its client offered, which checks arrived and the likely cause, and
//!   reported with [`SfuEvent::MediaNotConnected`] (see [`diagnosis`]).
//! - ICE-TCP: with [`SfuConfig::tcp_addrs`] each session also has passive TCP host
//!   candidates; a datagram's [`crate::rtc::net::Datagram::protocol`] says which kind of
//!   candidate it arrived on, and each transmit carries str0m's protocol back to the shell.
//!
//! Driving it (the room actor): `add_peer` at join; on every offer `handle_offer`, then publish
//! `ice_ufrags()` to the UDP mux (`rtc::driver` does this) BEFORE sending the answer, then send
//! `local_candidates()`; feed `handle_datagram` / `handle_timeout`; after each input (or batch
//! of inputs) drain `poll_output` until it returns [`SfuOutput::Timeout`] and sleep until that
//! instant. On [`SfuEvent::PeerFailed`] remove the peer (`remove_peer`) and tell the others.
mod consumer;
pub mod diagnosis;
mod forward;
mod negotiate;
mod sdp;
mod track;
mod twcc_guard;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use str0m::config::DtlsCert;
pub use str0m::media::Mid;
use str0m::net::{Protocol, Receive, TcpType};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

use self::consumer::Consumer;
use self::diagnosis::{CandidateTally, CheckTally, ConnectCause, DIAGNOSE_AFTER};
use self::track::{KeyframeLimiter, SilenceDiscarder};
use self::twcc_guard::TwccGuard;
use crate::rtc::ids::{MediaKind, PeerId, PeerMap, RoomId, TrackId};
use crate::rtc::metrics::{GaugeShare, MediaMetrics};
use crate::rtc::net::{AddrCache, Datagram, Stun};

/// How long the address str0m sends a peer's media to must have been silent before the SFU
/// sends to the address of the peer's latest valid check instead (see the module
/// docs): a browser sends media, RTCP or checks many times a second, so a second of silence
/// means the old path is gone, not that it hesitates.
pub const PATH_SILENCE: Duration = Duration::from_secs(1);

/// How often, at most, every peer is checked for failure (no traffic, never connected): a
/// failure is reported up to this much after its timeout, and no packet pays for a pass over
/// every peer.
const FAILURE_SWEEP: Duration = Duration::from_millis(250);

/// Settings of one [`Sfu`].
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// The room id, only used to tag log lines.
    pub room: RoomId,
    /// Host candidates to advertise (every local interface address plus EXTERNAL_IP, one UDP port).
    pub local_addrs: Vec<SocketAddr>,
    /// Passive ICE-TCP host candidates to advertise (RFC 6544; same addresses, the TCP media
    /// port); empty: no ICE-TCP. Their type preference (90 against UDP's 126, RFC 8445
    /// §5.1.2.1 as libwebrtc applies it) makes browsers nominate UDP whenever it works.
    pub tcp_addrs: Vec<SocketAddr>,
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
    /// Seeds the SFU's only randomness (the first sequence number of each consumer), so a test
    /// replays the same numbers; the default draws one from the OS at configuration time.
    pub seed: u64,
    /// The DTLS certificate every peer of this SFU presents, made outside the sans-IO core (the
    /// media plane generates one at start for every room; tests make theirs). `None`: each
    /// peer's str0m session generates its own, one key generation per peer.
    pub dtls_cert: Option<DtlsCert>,
    /// The counters and gauges this SFU updates (shared by every room of a server).
    pub metrics: MediaMetrics,
}

impl Default for SfuConfig {
    fn default() -> Self {
        SfuConfig {
            room: RoomId::default(),
            local_addrs: Vec::new(),
            tcp_addrs: Vec::new(),
            peer_timeout: Duration::from_secs(4),
            connect_timeout: Duration::from_secs(15),
            keyframe_request_interval: Duration::from_millis(500),
            silence_threshold: Some(127),
            silence_max_drops: 1000,
            seed: rand::random(),
            dtls_cert: None,
            metrics: MediaMetrics::default(),
        }
    }
}

/// What the engine wants one subscriber to receive: one consumer of a producer (see the
/// vocabulary in [`crate::rtc`]); `active == false` marks one that was removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSpec {
    /// The producer's track id (`"<peerId>:<uuid>"`).
    pub track_id: TrackId,
    /// The peer that publishes the track.
    pub publisher: PeerId,
    /// Audio or video.
    pub kind: MediaKind,
    /// The msid stream id shared by all tracks of one publisher.
    pub stream_id: String,
    /// `false` once the track was removed: its m-line is answered `a=inactive`.
    pub active: bool,
}

/// What the SFU's fallible calls return.
pub type SfuResult<T> = Result<T, SfuError>;

/// One browser offer as the SFU takes it: the SDP and what the engine decided for its m-lines.
#[derive(Debug, Clone, Copy)]
pub struct Offer<'a> {
    /// The browser's SDP text.
    pub sdp: &'a str,
    /// The peer's own sendonly m-lines, mid → track id (the offer's `midToTrackId`); the
    /// answer's [`Answer::producers`] says which of them the offer really publishes.
    pub producers: &'a BTreeMap<Mid, TrackId>,
    /// The ordered consumers this peer receives (active and disabled); the k-th audio entry goes
    /// to the k-th recvonly audio m-line, same for video; disabled → `a=inactive`.
    pub consumers: &'a [ConsumerSpec],
}

/// The result of [`Sfu::handle_offer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The SDP answer text.
    pub sdp: String,
    /// Every mid of the answer (produced, consumed and inactive) → track id.
    pub mid_to_track_id: BTreeMap<Mid, TrackId>,
    /// The producers this offer publishes, in m-line order: the [`Offer::producers`] entries whose mid is a
    /// sendonly/sendrecv audio or video m-line of the offer (the engine announces exactly these).
    pub producers: Vec<ProducedTrack>,
}

/// One producer of an [`Answer`]: a publisher's sendonly m-line and the track id it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducedTrack {
    /// The m-line.
    pub mid: Mid,
    /// The track id the publisher gave it.
    pub track_id: TrackId,
    /// The m-line's media type.
    pub kind: MediaKind,
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
    /// The peer's media is not up [`DIAGNOSE_AFTER`] its first offer (logged with the
    /// details once): tell its client the likely cause. It may still connect later.
    MediaNotConnected(PeerId, ConnectCause),
}

pub use crate::rtc::net::Transmit;

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

/// Counters of one [`Sfu`] since it started (for logs, tests and benchmarks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SfuStats {
    /// RTP packets received from publishers.
    pub rtp_in: u64,
    /// RTP packets written to subscribers.
    pub rtp_out: u64,
    /// Opus packets dropped by the silence discarder.
    pub silence_dropped: u64,
    /// Keyframe requests (PLI) sent to publishers.
    pub keyframe_requests: u64,
    /// RTP packets kept from str0m because their transport-wide number was too far ahead.
    pub twcc_guard_dropped: u64,
}

/// The forwarding core of one room. See the module docs.
pub struct Sfu {
    stats: SfuStats,
    config: SfuConfig,
    /// One certificate for every peer: generating one per `Rtc` would cost a key generation each.
    dtls_cert: Option<DtlsCert>,
    peers: PeerMap<Peer>,
    /// Producers by (publisher, its mid).
    producers: HashMap<(PeerId, Mid), Producer>,
    /// The only randomness of the SFU, seeded by [`SfuConfig::seed`].
    rng: StdRng,
    /// Peers whose `Rtc` must be drained (str0m's rule: drain after every mutation).
    dirty: VecDeque<PeerId>,
    events: VecDeque<SfuEvent>,
    /// Datagrams drained from the peers, waiting for `poll_output`.
    transmits: VecDeque<Transmit>,
    /// Last peer seen from a source address: the fast path of datagram demultiplexing.
    by_addr: AddrCache<PeerId>,
    /// When each peer's `Rtc` wants its next `Input::Timeout`, earliest first: timeouts visit
    /// only the peers that are due, and the next deadline is a peek, so the cost of a packet
    /// does not grow with the number of peers in the room. Entries are not removed when a
    /// deadline moves: a popped entry that no longer matches its peer's
    /// [`Peer::scheduled`] is skipped.
    timers: BinaryHeap<Reverse<(Instant, PeerId)>>,
    /// The next pass over every peer for failures (no traffic, never connected).
    next_sweep: Instant,
    last_now: Instant,
    /// This room's share of the published-tracks gauge.
    tracks_gauge: GaugeShare,
    /// This room's share of the subscriptions gauge.
    subscriptions_gauge: GaugeShare,
}

struct Peer {
    /// Created by the first offer; dropped when the peer failed.
    rtc: Option<Rtc>,
    ufrag: Option<String>,
    /// What this peer receives, by the mid of the m-line that carries it.
    consumers: HashMap<Mid, Consumer>,
    connected: bool,
    failed: bool,
    first_offer: Option<Instant>,
    last_rx: Instant,
    /// When str0m wants its next `Input::Timeout`.
    next_timeout: Option<Instant>,
    /// The time of its live entry in `Sfu::timers`, if it has one.
    scheduled: Option<Instant>,
    /// Queued in `Sfu::dirty`.
    dirty: bool,
    /// RTP was written to it: str0m only schedules written packets on the next input.
    needs_tick: bool,
    /// An RTP packet from it was forwarded (time to first media is observed once).
    sent_media: bool,
    /// Its latest STUN check not yet answered: transaction id, source.
    checking: Option<([u8; 12], PathAddr)>,
    /// Where its latest check that str0m answered came from: its current path.
    path: Option<PathAddr>,
    /// Keeps RTP that str0m would misread away from its session (see `twcc_guard`).
    twcc_guard: TwccGuard,
    /// What its current session was offered and received, for [`diagnosis`].
    connect_watch: ConnectWatch,
}

/// The inputs of a peer's connect [`diagnosis`] since its session started.
#[derive(Debug, Default)]
struct ConnectWatch {
    offered: CandidateTally,
    checks: CheckTally,
    diagnosed: bool,
}

/// Where a datagram str0m sends to `destination` for `peer` goes (see the module docs): a
/// success response to its pending check makes that check's source the peer's path;
/// any other datagram goes to the path instead of `destination` once `destination` has been
/// silent for [`PATH_SILENCE`]. The flag says the path just moved from one address to another.
/// Logs why `peer` (not connected `waited` after its first offer) has no media yet, in one
/// line, and returns the likely cause.
fn diagnose_peer(config: &SfuConfig, id: PeerId, peer: &Peer, waited: Duration) -> ConnectCause {
    let watch = &peer.connect_watch;
    let server: Vec<SocketAddr> = config
        .local_addrs
        .iter()
        .chain(&config.tcp_addrs)
        .copied()
        .collect();
    let cause = diagnosis::diagnose(&watch.offered, watch.checks, &server);
    let tcp = match config.tcp_addrs.first() {
        Some(a) => format!("udp+tcp port {}", a.port()),
        None => "udp only".into(),
    };
    log::warn!(
        "room={} peer={id} media not connected {:.0} s after its offer: client offered {}; checks received: udp {} tcp {}; server candidates {} ({tcp}); likely cause: {} ({})",
        config.room,
        waited.as_secs_f64(),
        watch.offered.summary(),
        watch.checks.udp,
        watch.checks.tcp,
        server.len(),
        cause.label(),
        cause.operator_text(),
    );
    cause
}

/// A path's transport and remote address: a datagram is never moved from UDP to an ICE-TCP
/// connection or back, since the two carry different candidate pairs.
type PathAddr = (Protocol, SocketAddr);

fn follow_path(
    peer: &mut Peer,
    heard: &AddrCache<PeerId>,
    room: &RoomId,
    id: PeerId,
    now: Instant,
    destination: PathAddr,
    contents: &[u8],
) -> (PathAddr, bool) {
    if let Some(stun) = Stun::parse(contents) {
        let mut moved = false;
        if stun.kind == Stun::BINDING_SUCCESS
            && let Some((transaction, from)) = peer.checking
            && from == destination
            && stun.transaction == transaction
        {
            peer.checking = None;
            let old = peer.path.replace(from);
            if old != Some(from) {
                log::debug!("room={room} peer={id} checked path {:?} {}", from.0, from.1);
                moved = old.is_some();
            }
        }
        return (destination, moved);
    }
    match peer.path {
        Some(path)
            if path != destination
                && path.0 == destination.0
                && heard
                    .heard(destination.1)
                    .is_none_or(|t| now.saturating_duration_since(t) >= PATH_SILENCE) =>
        {
            (path, false)
        }
        _ => (destination, false),
    }
}

/// One published track (a publisher's sendonly m-line) and its forwarding state.
struct Producer {
    track_id: TrackId,
    kind: MediaKind,
    silence: SilenceDiscarder,
    keyframe: KeyframeLimiter,
    /// Its consumers as (subscriber, its mid) pairs, rebuilt on every negotiation.
    subscribers: Vec<(PeerId, Mid)>,
}

impl Sfu {
    /// A new SFU with no peers.
    pub fn new(config: SfuConfig, now: Instant) -> Self {
        let dtls_cert = config.dtls_cert.clone();
        let rng = StdRng::seed_from_u64(config.seed);
        let tracks_gauge = GaugeShare::new(config.metrics.published_tracks.clone());
        let subscriptions_gauge = GaugeShare::new(config.metrics.subscriptions.clone());
        Sfu {
            tracks_gauge,
            subscriptions_gauge,
            stats: SfuStats::default(),
            config,
            dtls_cert,
            peers: PeerMap::default(),
            producers: HashMap::new(),
            rng,
            dirty: VecDeque::new(),
            events: VecDeque::new(),
            transmits: VecDeque::new(),
            by_addr: AddrCache::default(),
            timers: BinaryHeap::new(),
            next_sweep: now,
            last_now: now,
        }
    }

    /// Adds a peer (no WebRTC session until its first offer). Adding a known peer does nothing.
    pub fn add_peer(&mut self, peer: PeerId, now: Instant) {
        self.peers.entry(peer).or_insert_with(|| Peer {
            rtc: None,
            ufrag: None,
            consumers: HashMap::new(),
            connected: false,
            failed: false,
            first_offer: None,
            last_rx: now,
            next_timeout: None,
            scheduled: None,
            dirty: false,
            needs_tick: false,
            sent_media: false,
            checking: None,
            path: None,
            twcc_guard: TwccGuard::default(),
            connect_watch: ConnectWatch::default(),
        });
    }

    /// Removes a peer and stops forwarding to and from it.
    pub fn remove_peer(&mut self, peer: PeerId) {
        if self.peers.remove(&peer).is_none() {
            return;
        }
        log::debug!("room={} peer={peer} removed from the SFU", self.config.room);
        self.producers.retain(|(p, _), _| *p != peer);
        self.dirty.retain(|p| *p != peer);
        self.by_addr.forget(peer);
        self.rebuild_routes();
    }

    /// Adds a trickled remote candidate (`candidate:…`, with or without `a=`).
    ///
    /// Candidates that cannot be used (e.g. Chrome's mDNS `.local` host names) give
    /// [`SfuError::BadCandidate`]; ICE still works through the peer-reflexive candidates learnt
    /// from the browser's checks, so callers should only log it.
    pub fn handle_remote_candidate(
        &mut self,
        peer: PeerId,
        candidate: &str,
    ) -> Result<(), SfuError> {
        let p = self
            .peers
            .get_mut(&peer)
            .ok_or(SfuError::UnknownPeer(peer))?;
        let line = candidate.trim();
        let line = line.strip_prefix("a=").unwrap_or(line);
        p.connect_watch.offered.add(line);
        let c =
            Candidate::from_sdp_string(line).map_err(|e| SfuError::BadCandidate(e.to_string()))?;
        if let Some(rtc) = p.rtc.as_mut() {
            rtc.add_remote_candidate(c);
            self.mark_dirty(peer, false);
        }
        Ok(())
    }

    /// The local host candidates (`candidate:…`, no `a=` prefix) to send to every peer.
    pub fn local_candidates(&self) -> Vec<String> {
        self.host_candidates().map(|c| c.to_sdp_string()).collect()
    }

    /// The host candidates: UDP on [`SfuConfig::local_addrs`], then passive TCP on
    /// [`SfuConfig::tcp_addrs`]; an unusable address is logged and skipped.
    fn host_candidates(&self) -> impl Iterator<Item = Candidate> + '_ {
        let udp = self
            .config
            .local_addrs
            .iter()
            .map(|a| (*a, Candidate::host(*a, "udp")));
        let tcp = self.config.tcp_addrs.iter().map(|a| {
            let c = Candidate::builder()
                .tcp()
                .host(*a)
                .tcptype(TcpType::Passive)
                .build();
            (*a, c)
        });
        udp.chain(tcp).filter_map(|(addr, c)| {
            c.map_err(|e| log::warn!("room={} candidate {addr} unusable: {e}", self.config.room))
                .ok()
        })
    }

    /// Whether a datagram belongs to one of this room's peers.
    pub fn accepts(&self, source: SocketAddr, destination: SocketAddr, datagram: &[u8]) -> bool {
        let destination = self.local_destination(Protocol::Udp, source, destination);
        let Ok(recv) = Receive::new(Protocol::Udp, source, destination, datagram) else {
            return false;
        };
        let input = Input::Receive(self.last_now, recv);
        self.peers
            .values()
            .any(|p| p.rtc.as_ref().is_some_and(|r| r.accepts(&input)))
    }

    /// Feeds a received datagram. Datagrams that belong to no peer are dropped.
    ///
    /// `destination` may be the unspecified address of a wildcard socket; it is mapped to the
    /// advertised candidate of the same family (loopback for loopback sources), because str0m
    /// only answers STUN requests addressed to one of its candidates.
    pub fn handle_datagram(&mut self, datagram: &Datagram) {
        let (now, source) = (datagram.received, datagram.source);
        self.last_now = self.last_now.max(now);
        let protocol = datagram.protocol;
        let destination = self.local_destination(protocol, source, datagram.destination);
        let Ok(recv) = Receive::new(protocol, source, destination, &datagram.contents) else {
            log::trace!(
                "room={} unparseable datagram from {source}",
                self.config.room
            );
            return;
        };
        let input = Input::Receive(now, recv);
        let accepts = |p: &Peer| p.rtc.as_ref().is_some_and(|r| r.accepts(&input));
        let cached = self
            .by_addr
            .lookup(source, now)
            .filter(|id| self.peers.get(id).is_some_and(accepts));
        let Some(id) = cached.or_else(|| {
            self.peers
                .iter()
                .find(|(_, p)| accepts(p))
                .map(|(id, _)| *id)
        }) else {
            return;
        };
        if cached.is_none() {
            self.by_addr.learn(source, id, now);
        }
        let room = &self.config.room;
        let mut hopeless = false;
        if let Some(peer) = self.peers.get_mut(&id) {
            peer.last_rx = now;
            if let Some(stun) = Stun::parse(&datagram.contents)
                && stun.kind == Stun::BINDING_REQUEST
                && let Ok(transaction) = stun.transaction.try_into()
            {
                peer.checking = Some((transaction, (protocol, source)));
                peer.connect_watch.checks.add(protocol);
            }
            if !peer.twcc_guard.admit(&datagram.contents) {
                self.stats.twcc_guard_dropped += 1;
                hopeless = peer.twcc_guard.hopeless();
            } else if let Some(rtc) = peer.rtc.as_mut()
                && let Err(e) = rtc.handle_input(input)
            {
                log::debug!("room={room} peer={id} dropped a datagram: {e}");
            }
        }
        if hopeless {
            self.fail_peer(id, "transport-wide sequence numbers out of reach");
        }
        self.drain_peer(id);
    }

    /// Advances time: str0m timers of the peers that are due, failure detection (a pass over
    /// every peer at most every [`FAILURE_SWEEP`]) and merged keyframe requests.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        let now = self.last_now;
        let mut due = Vec::new();
        while let Some(&Reverse((t, id))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            let Some(p) = self.peers.get_mut(&id) else {
                continue;
            };
            if p.scheduled != Some(t) {
                continue;
            }
            p.scheduled = None;
            let Some(rtc) = p.rtc.as_mut().filter(|_| !p.failed) else {
                continue;
            };
            match p.next_timeout {
                // The deadline moved later since this entry was pushed: wait for it.
                Some(next) if next > now => {
                    p.scheduled = Some(next);
                    self.timers.push(Reverse((next, id)));
                }
                _ => {
                    if let Err(e) = rtc.handle_input(Input::Timeout(now)) {
                        log::debug!(
                            "room={} peer={id} timeout handling failed: {e}",
                            self.config.room
                        );
                    }
                    due.push(id);
                }
            }
        }
        for id in due {
            self.drain_peer(id);
        }
        let failed = if now >= self.next_sweep {
            self.next_sweep = now + FAILURE_SWEEP;
            self.sweep(now)
        } else {
            Vec::new()
        };
        self.by_addr.expire(now);
        for (id, why) in failed {
            self.fail_peer(id, why);
        }
        let interval = self.config.keyframe_request_interval;
        let mut plis = Vec::new();
        for (key, t) in &mut self.producers {
            if t.keyframe.poll(now, interval) {
                plis.push(*key);
            }
        }
        for key in plis {
            self.send_pli(key);
        }
    }

    /// The pass over every peer: the failed ones (no traffic for `peer_timeout`, not connected
    /// `connect_timeout` after the first offer), and a timer for any live session without one.
    fn sweep(&mut self, now: Instant) -> Vec<(PeerId, &'static str)> {
        let mut failed = Vec::new();
        for (id, p) in &mut self.peers {
            if p.failed {
                continue;
            }
            if p.connected && now.saturating_duration_since(p.last_rx) >= self.config.peer_timeout {
                failed.push((*id, "no traffic"));
                continue;
            }
            let waited = p
                .first_offer
                .map(|t| now.saturating_duration_since(t))
                .filter(|_| !p.connected);
            if waited.is_some_and(|w| w >= self.config.connect_timeout) {
                failed.push((*id, "did not connect"));
                continue;
            }
            if waited.is_some_and(|w| w >= DIAGNOSE_AFTER) && !p.connect_watch.diagnosed {
                p.connect_watch.diagnosed = true;
                let cause = diagnose_peer(&self.config, *id, p, waited.unwrap_or_default());
                self.config
                    .metrics
                    .connect_diagnoses
                    .get_or_create(&[("cause", cause.label())])
                    .inc();
                self.events
                    .push_back(SfuEvent::MediaNotConnected(*id, cause));
            }
            if p.rtc.is_some() && p.scheduled.is_none() {
                p.scheduled = Some(now);
                self.timers.push(Reverse((now, *id)));
            }
        }
        failed
    }

    /// The next output; drain until it returns [`SfuOutput::Timeout`] after every input.
    pub fn poll_output(&mut self) -> SfuOutput {
        loop {
            if let Some(t) = self.transmits.pop_front() {
                return SfuOutput::Transmit(t);
            }
            if let Some(e) = self.events.pop_front() {
                return SfuOutput::Event(e);
            }
            let Some(id) = self.dirty.pop_front() else {
                break;
            };
            self.drain_peer(id);
        }
        SfuOutput::Timeout(self.next_deadline())
    }

    /// Drains one peer's `Rtc` completely. This must follow every `handle_input` before the next
    /// one: in RTP mode str0m keeps only ONE received packet for the next `poll_output`, so a
    /// second datagram handled before draining would silently replace the first.
    fn drain_peer(&mut self, id: PeerId) {
        let last_now = self.last_now;
        loop {
            let Some(peer) = self.peers.get_mut(&id) else {
                return;
            };
            peer.dirty = false;
            let Some(rtc) = peer.rtc.as_mut() else { return };
            if peer.needs_tick {
                // Written RTP is only scheduled for sending by the next input.
                peer.needs_tick = false;
                let _ = rtc.handle_input(Input::Timeout(last_now));
            }
            match rtc.poll_output() {
                Ok(Output::Transmit(t)) => {
                    let contents: Vec<u8> = t.contents.into();
                    let ((protocol, destination), moved) = follow_path(
                        peer,
                        &self.by_addr,
                        &self.config.room,
                        id,
                        last_now,
                        (t.proto, t.destination),
                        &contents,
                    );
                    self.transmits.push_back(Transmit {
                        source: t.source,
                        destination,
                        protocol,
                        contents,
                    });
                    if moved {
                        self.on_path_moved(id);
                    }
                }
                Ok(Output::Timeout(t)) => {
                    peer.next_timeout = Some(t);
                    // Only an earlier deadline needs an entry; a later one is found when the
                    // current entry pops.
                    if peer.scheduled.is_none_or(|s| t < s) {
                        peer.scheduled = Some(t);
                        self.timers.push(Reverse((t, id)));
                    }
                    return;
                }
                Ok(Output::Event(e)) => self.on_rtc_event(id, e),
                Err(e) => {
                    log::warn!("room={} peer={id} WebRTC error: {e}", self.config.room);
                    self.fail_peer(id, "WebRTC error");
                    return;
                }
            }
        }
    }

    /// A peer's media path moved to a new address: what it published and what it was sent
    /// while the old one died is lost, and its subscribers' and its own decoders wait for a
    /// keyframe. Asking the publishers now (its own tracks, and the sources of those it
    /// receives) brings the video back at once instead of after the browsers' own periodic
    /// requests (libwebrtc's come every 3 s, and the first may have gone to the dead address).
    fn on_path_moved(&mut self, id: PeerId) {
        let published = self.producers.keys().filter(|(p, _)| *p == id).copied();
        let received = self
            .peers
            .get(&id)
            .into_iter()
            .flat_map(|p| p.consumers.values().filter_map(|c| c.source));
        let keys: Vec<(PeerId, Mid)> = published.chain(received).collect();
        for key in keys {
            self.request_keyframe(key);
        }
    }

    /// The current local ICE ufrags of all peers (they change with every ICE restart), so the
    /// UDP mux can route STUN requests to this room.
    pub fn ice_ufrags(&self) -> Vec<String> {
        self.peers
            .values()
            .filter(|p| p.rtc.is_some())
            .filter_map(|p| p.ufrag.clone())
            .collect()
    }

    /// Whether `peer`'s ICE and DTLS came up and it has not failed since (its media is alive:
    /// a failed peer is reported within `peer_timeout` of its last datagram).
    pub fn media_connected(&self, peer: PeerId) -> bool {
        self.peers
            .get(&peer)
            .is_some_and(|p| p.connected && !p.failed)
    }

    /// Counters since the SFU started.
    pub fn stats(&self) -> SfuStats {
        self.stats
    }

    fn new_rtc(&self, now: Instant) -> Rtc {
        let mut cfg = RtcConfig::new()
            .set_rtp_mode(true)
            .set_ice_lite(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true);
        cfg.codec_config()
            .add_h264(108.into(), Some(109.into()), true, 0x42e01f);
        if let Some(cert) = &self.dtls_cert {
            cfg = cfg.set_dtls_cert(cert.clone());
        }
        let mut rtc = cfg.build(now);
        for c in self.host_candidates() {
            rtc.add_local_candidate(c);
        }
        rtc
    }

    fn mark_dirty(&mut self, id: PeerId, tick: bool) {
        if let Some(p) = self.peers.get_mut(&id) {
            p.needs_tick |= tick;
            if !p.dirty {
                p.dirty = true;
                self.dirty.push_back(id);
            }
        }
    }

    fn fail_peer(&mut self, id: PeerId, why: &str) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        if p.failed {
            return;
        }
        if p.connected {
            log::info!("room={} peer={id} media failed ({why})", self.config.room);
        } else {
            // The line an operator looks for when someone "cannot see anybody".
            let waited = p
                .first_offer
                .map(|t| self.last_now.saturating_duration_since(t));
            log::warn!(
                "room={} peer={id} media never connected ({why}; {waited:?} after its first offer)",
                self.config.room
            );
        }
        let reason = match why {
            "no traffic" => "no_traffic",
            "did not connect" => "did_not_connect",
            "DTLS closed" => "dtls_closed",
            "transport-wide sequence numbers out of reach" => "twcc_out_of_reach",
            _ => "webrtc_error",
        };
        self.config
            .metrics
            .media_failures
            .get_or_create(&[("reason", reason)])
            .inc();
        p.failed = true;
        if let Some(mut rtc) = p.rtc.take() {
            rtc.disconnect();
        }
        p.ufrag = None;
        self.events.push_back(SfuEvent::PeerFailed(id));
    }

    fn on_rtc_event(&mut self, id: PeerId, event: Event) {
        match event {
            Event::RtpPacket(pkt) => {
                if let Some(peer) = self.peers.get_mut(&id) {
                    peer.twcc_guard.accepted(pkt.header.ext_vals.transport_cc);
                }
                self.forward(id, pkt)
            }
            Event::KeyframeRequest(req) => {
                let source = self
                    .peers
                    .get(&id)
                    .and_then(|p| p.consumers.get(&req.mid))
                    .and_then(|s| s.source);
                if let Some(key) = source {
                    self.request_keyframe(key);
                }
            }
            Event::Connected => {
                if let Some(p) = self.peers.get_mut(&id) {
                    if !p.connected
                        && let Some(t) = p.first_offer
                    {
                        let took = self.last_now.saturating_duration_since(t);
                        self.config
                            .metrics
                            .negotiation_seconds
                            .observe(took.as_secs_f64());
                    }
                    p.connected = true;
                    p.last_rx = self.last_now;
                }
                log::info!("room={} peer={id} connected", self.config.room);
                self.events.push_back(SfuEvent::PeerConnected(id));
            }
            Event::IceConnectionStateChange(s) => {
                log::debug!("room={} peer={id} ICE {s:?}", self.config.room);
            }
            Event::Closed => self.fail_peer(id, "DTLS closed"),
            _ => {}
        }
    }

    /// Maps a wildcard or unknown local address to the advertised candidate str0m expects.
    fn local_destination(
        &self,
        protocol: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
    ) -> SocketAddr {
        let locals = match protocol {
            Protocol::Udp => &self.config.local_addrs,
            _ => &self.config.tcp_addrs,
        };
        if locals.contains(&destination) {
            return destination;
        }
        let same_family = |a: &&SocketAddr| a.is_ipv4() == source.is_ipv4();
        locals
            .iter()
            .filter(same_family)
            .find(|a| a.ip().is_loopback() == source.ip().is_loopback())
            .or_else(|| locals.iter().find(same_family))
            .copied()
            .unwrap_or(destination)
    }

    fn next_deadline(&self) -> Instant {
        let mut next = (self.last_now + Duration::from_secs(10)).min(self.next_sweep);
        if let Some(Reverse((t, _))) = self.timers.peek() {
            next = next.min(*t);
        }
        for t in self.producers.values() {
            if let Some(d) = t.keyframe.deadline(self.config.keyframe_request_interval) {
                next = next.min(d);
            }
        }
        next.max(self.last_now)
    }
}
