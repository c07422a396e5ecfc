//! The one virtual-time world of the media tests: in-process str0m "browsers" and rooms that
//! pass datagrams in memory, no sockets, no sleeps, every run the same. Every room runs behind
//! the product's own [`MediaDriver`], around one of two cores:
//! - a bare [`Sfu`] ([`World::new`]), which the test negotiates directly with
//!   [`World::negotiate`] (SFU-level tests: forwarding, keyframes, failure detection);
//! - the room's [`Engine`] and SFU ([`World::with_engines`]), which browsers join and negotiate
//!   with through media events, as the tutorial's client does (`join`, `renegotiateTracks`,
//!   `offerData` → `sdpOffer` → `sdpAnswer`, `tracksAdded`, `leave`): negotiation plus media,
//!   end to end below the Phoenix layer.
//!
//! Shared by `test/rtc_sfu.rs`, `test/rtc_room_media.rs` and the RTP fuzz target
//! (`#[path]`-included, so each user compiles it into its own crate).
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::{Codec, FormatParams};
use str0m::media::{Direction, Frequency, MediaKind as StrKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpWrite, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use videoroom::rtc::driver::{DriverOutput, MediaDriver, generate_dtls_cert};
use videoroom::rtc::engine::{Engine, EngineLimits, EngineOutput};
use videoroom::rtc::ids::{MediaKind, PeerId, TrackId};
use videoroom::rtc::media_event::MediaEventOut;
use videoroom::rtc::net::{Datagram, Transmit};
use videoroom::rtc::sfu::{ConsumerSpec, Offer, Sfu, SfuConfig, SfuEvent};

/// Payload types a browser uses: Chrome-like (111/96) or Firefox-like (109/120).
#[derive(Clone, Copy)]
pub enum Flavor {
    Chrome,
    Firefox,
}

pub struct SendTrack {
    pub mid: Mid,
    pub kind: MediaKind,
    pub track_id: String,
    /// Publisher sequence number, also written into the payload so receivers can tell which
    /// packet they got.
    pub seq: u64,
    pub ts: u32,
    pub next: Instant,
}

/// One received packet, as the receiving browser saw it.
#[derive(Clone, Copy, Debug)]
pub struct Got {
    pub ssrc: Ssrc,
    pub pt: Pt,
    pub seq: u64,
    /// (publisher browser index, publisher seq) from the payload.
    pub origin: (u8, u64),
}

pub struct Browser {
    pub index: u8,
    pub peer: PeerId,
    pub addr: SocketAddr,
    /// The address the rooms see it at, when a NAT in between rebound it ([`World::rebind`]);
    /// datagrams to its old address are then lost.
    pub seen_as: Option<SocketAddr>,
    pub rtc: Rtc,
    pub send: Vec<SendTrack>,
    /// The room this browser talks to.
    pub room: usize,
    pub recv_audio: usize,
    pub recv_video: usize,
    pub received: HashMap<Mid, Vec<Got>>,
    pub keyframe_requests: Vec<Instant>,
    pub silent: bool,
    pub vanished: bool,
    pub offered: bool,
    /// Its offer waiting for the engine's `sdpAnswer` (engine rooms).
    pub pending: Option<SdpPendingOffer>,
    /// Every media event the engine sent it, in order (engine rooms).
    pub media_events: Vec<MediaEventOut>,
}

impl Browser {
    /// An offer like the tutorial's client makes it: its own tracks sendonly (the first time;
    /// an ICE restart after that), then recvonly transceivers until there are `audio` and
    /// `video` of them (never fewer than before).
    pub fn offer(&mut self, audio: usize, video: usize) -> (SdpOffer, SdpPendingOffer) {
        let mut api = self.rtc.sdp_api();
        if self.offered {
            api.ice_restart(true);
        } else {
            for t in &mut self.send {
                let kind = if t.kind == MediaKind::Audio {
                    StrKind::Audio
                } else {
                    StrKind::Video
                };
                t.mid = api.add_media(
                    kind,
                    Direction::SendOnly,
                    Some(self.peer.to_string()),
                    Some(t.track_id.clone()),
                    None,
                );
            }
        }
        while self.recv_audio < audio {
            api.add_media(StrKind::Audio, Direction::RecvOnly, None, None, None);
            self.recv_audio += 1;
        }
        while self.recv_video < video {
            api.add_media(StrKind::Video, Direction::RecvOnly, None, None, None);
            self.recv_video += 1;
        }
        self.offered = true;
        api.apply().expect("changes to offer")
    }

    /// Its published tracks by mid, as an `sdpOffer`'s `midToTrackId` says.
    pub fn inbound(&self) -> BTreeMap<Mid, TrackId> {
        self.send
            .iter()
            .map(|t| (t.mid, t.track_id.as_str().into()))
            .collect()
    }

    /// Applies the room's answer to its pending offer.
    pub fn accept_answer(&mut self, pending: SdpPendingOffer, sdp: &str) {
        let answer = SdpAnswer::from_sdp_string(sdp).expect("parseable answer");
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .expect("answer accepted");
    }
}

/// A room's media core, behind the product's media driver. Rooms are few and live in a `Vec`
/// for the whole test, so the size difference of the variants costs nothing worth a `Box`.
#[allow(clippy::large_enum_variant)]
pub enum RoomCore {
    /// A bare SFU, negotiated by the test.
    Sfu(MediaDriver<Sfu>),
    /// The room's engine and SFU, negotiated by the browsers with media events.
    Engine(MediaDriver<Engine<Sfu>>),
}

/// One output of a room's driver, whichever core it drives.
enum RoomOutput {
    Idle,
    Ufrags(Vec<String>),
    Transmit(Transmit),
    Sfu(SfuEvent),
    Engine(EngineOutput),
}

/// A driver output with its core's event wrapped by `event`.
fn lift<E>(output: DriverOutput<E>, event: impl FnOnce(E) -> RoomOutput) -> RoomOutput {
    match output {
        DriverOutput::Timeout(_) => RoomOutput::Idle,
        DriverOutput::Ufrags(u) => RoomOutput::Ufrags(u),
        DriverOutput::Transmit(t) => RoomOutput::Transmit(t),
        DriverOutput::Event(e) => event(e),
    }
}

impl RoomCore {
    fn deadline(&self) -> Option<Instant> {
        match self {
            RoomCore::Sfu(d) => d.deadline(),
            RoomCore::Engine(d) => d.deadline(),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self {
            RoomCore::Sfu(d) => d.handle_timeout(now),
            RoomCore::Engine(d) => d.handle_timeout(now),
        }
    }

    fn handle_datagram(&mut self, datagram: &Datagram) {
        match self {
            RoomCore::Sfu(d) => d.handle_datagram(datagram),
            RoomCore::Engine(d) => d.handle_datagram(datagram),
        }
    }

    fn poll_output(&mut self) -> RoomOutput {
        match self {
            RoomCore::Sfu(d) => lift(d.poll_output(), RoomOutput::Sfu),
            RoomCore::Engine(d) => lift(d.poll_output(), RoomOutput::Engine),
        }
    }
}

/// One room: its address (the one candidate it advertises) and its core.
pub struct Room {
    pub addr: SocketAddr,
    pub core: RoomCore,
    /// The ICE ufrags its driver last published (what the UDP mux would route to it).
    pub ufrags: Vec<String>,
}

pub struct World {
    pub now: Instant,
    pub rooms: Vec<Room>,
    pub browsers: Vec<Browser>,
    pub queue: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
    /// SFU events of bare-SFU rooms: (when, room, event).
    pub events: Vec<(Instant, usize, SfuEvent)>,
    /// Media events from engine rooms, not yet handed to their browser: (recipient, JSON).
    pub signals: VecDeque<(PeerId, String)>,
    /// Peers the engines reported gone, in order.
    pub removed: Vec<PeerId>,
    /// Datagrams seen by each room address (source, destination, contents), when recording.
    pub record: bool,
    /// Hand the room every queued datagram before draining it (as a busy room actor may).
    pub batch: bool,
    pub seen: Vec<(usize, SocketAddr, SocketAddr, Vec<u8>)>,
    /// The next video-sized datagram (over 500 bytes) a room sends to this browser address is
    /// lost (then this is `None` again): one packet lost on a subscriber's downlink.
    pub lose_one_video_to: Option<SocketAddr>,
    /// Payload bytes of each video packet the browsers send (at least 9: index and sequence).
    pub video_payload: usize,
    /// Wall-clock time spent inside the rooms' drivers (datagrams, timeouts, draining): what
    /// the SFU benchmark reports; the browsers' own work is not counted.
    pub room_time: Duration,
}

pub const STEP: Duration = Duration::from_millis(2);

impl World {
    /// `rooms` bare-SFU rooms.
    pub fn new(rooms: usize) -> World {
        World::build(rooms, |config, now| {
            RoomCore::Sfu(MediaDriver::new("world", Sfu::new(config, now)))
        })
    }

    /// `rooms` rooms of engine + SFU, joined and negotiated through media events.
    pub fn with_engines(rooms: usize) -> World {
        World::with_engine_limits(rooms, EngineLimits::default())
    }

    /// [`World::with_engines`] whose engines hold their peers to `limits`.
    pub fn with_engine_limits(rooms: usize, limits: EngineLimits) -> World {
        World::build(rooms, |config, now| {
            let room = config.room.clone();
            let engine = Engine::with_limits(room, Sfu::new(config, now), limits.clone());
            RoomCore::Engine(MediaDriver::new("world", engine))
        })
    }

    fn build(rooms: usize, core: impl Fn(SfuConfig, Instant) -> RoomCore) -> World {
        let now = Instant::now();
        // One key generation for the whole world, outside the cores, as the media plane does.
        let dtls_cert = generate_dtls_cert();
        let rooms = (0..rooms)
            .map(|i| {
                let addr: SocketAddr = format!("10.0.0.{}:50000", i + 1).parse().unwrap();
                let config = SfuConfig {
                    room: format!("room{i}").into(),
                    local_addrs: vec![addr],
                    seed: i as u64,
                    dtls_cert: dtls_cert.clone(),
                    ..SfuConfig::default()
                };
                Room {
                    addr,
                    core: core(config, now),
                    ufrags: Vec::new(),
                }
            })
            .collect();
        World {
            now,
            rooms,
            browsers: Vec::new(),
            queue: VecDeque::new(),
            events: Vec::new(),
            signals: VecDeque::new(),
            removed: Vec::new(),
            record: false,
            batch: false,
            lose_one_video_to: None,
            seen: Vec::new(),
            video_payload: 120,
            room_time: Duration::ZERO,
        }
    }

    /// The SFU of room `r`, read-only.
    pub fn sfu(&self, r: usize) -> &Sfu {
        match &self.rooms[r].core {
            RoomCore::Sfu(d) => d.core(),
            RoomCore::Engine(d) => d.core().sfu(),
        }
    }

    /// The engine of room `r` (an engine room).
    pub fn engine(&self, r: usize) -> &Engine<Sfu> {
        match &self.rooms[r].core {
            RoomCore::Engine(d) => d.core(),
            RoomCore::Sfu(_) => panic!("room {r} is a bare SFU"),
        }
    }

    /// A new browser in room `room`, publishing audio and video when `publish`. In a bare-SFU
    /// room it is added to the SFU at once; in an engine room it sends `join` and, once
    /// accepted, negotiates by itself.
    pub fn add_browser(&mut self, room: usize, flavor: Flavor, publish: bool) -> usize {
        let n = self.browsers.len();
        // The payload names a publisher by one byte (publishers are few); addresses take any
        // number of browsers: 250 per host address, then the next port.
        let index = n as u8;
        let addr: SocketAddr = format!("10.1.{room}.{}:{}", n % 250 + 1, 40000 + n / 250)
            .parse()
            .unwrap();
        let mut config = RtcConfig::new().set_rtp_mode(true);
        if let Flavor::Firefox = flavor {
            config = config.clear_codecs();
            let cc = config.codec_config();
            let opus = FormatParams {
                min_p_time: Some(10),
                use_inband_fec: Some(true),
                ..Default::default()
            };
            cc.add_config(
                109.into(),
                None,
                Codec::Opus,
                Frequency::FORTY_EIGHT_KHZ,
                Some(2),
                opus,
            );
            cc.add_config(
                120.into(),
                Some(124.into()),
                Codec::Vp8,
                Frequency::NINETY_KHZ,
                None,
                FormatParams::default(),
            );
        }
        let mut rtc = config.build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        let peer = PeerId::new_v4();
        let mut b = Browser {
            index,
            peer,
            addr,
            seen_as: None,
            rtc,
            send: Vec::new(),
            room,
            recv_audio: 0,
            recv_video: 0,
            received: HashMap::new(),
            keyframe_requests: Vec::new(),
            silent: false,
            vanished: false,
            offered: false,
            pending: None,
            media_events: Vec::new(),
        };
        if publish {
            for kind in [MediaKind::Audio, MediaKind::Video] {
                b.send.push(SendTrack {
                    mid: Mid::from("-"),
                    kind,
                    track_id: format!("{peer}:{}", PeerId::new_v4()),
                    seq: 1,
                    ts: 1000,
                    next: self.now,
                });
            }
        }
        self.browsers.push(b);
        let i = self.browsers.len() - 1;
        let now = self.now;
        match &mut self.rooms[room].core {
            RoomCore::Sfu(d) => {
                d.signal(|sfu| sfu.add_peer(peer, now));
            }
            RoomCore::Engine(_) => {
                let join = json!({"type": "join", "data": {
                    "receiveMedia": true,
                    "metadata": {"displayName": format!("browser {index}")},
                }});
                self.send_media_event(i, &join);
            }
        }
        self.drain_room(room);
        i
    }

    /// The tracks browser `i` publishes, as the engine would list them for subscribers.
    pub fn tracks_of(&self, i: usize, active: bool) -> Vec<ConsumerSpec> {
        let b = &self.browsers[i];
        b.send
            .iter()
            .map(|t| ConsumerSpec {
                track_id: t.track_id.clone().into(),
                publisher: b.peer,
                kind: t.kind,
                stream_id: b.peer.to_string(),
                active,
            })
            .collect()
    }

    /// One offer/answer round started by browser `i` in a bare-SFU room (an ICE restart after
    /// the first), receiving `outbound`.
    pub fn negotiate(&mut self, i: usize, outbound: &[ConsumerSpec]) {
        let now = self.now;
        let count = |kind| outbound.iter().filter(|t| t.kind == kind).count();
        let (audio, video) = (count(MediaKind::Audio), count(MediaKind::Video));
        let b = &mut self.browsers[i];
        let (offer, pending) = b.offer(audio, video);
        let inbound = b.inbound();
        let (peer, room) = (b.peer, b.room);
        let RoomCore::Sfu(driver) = &mut self.rooms[room].core else {
            panic!("negotiate is for bare-SFU rooms; engine rooms negotiate by media events");
        };
        let answer = driver
            .signal(|sfu| {
                let sdp = offer.to_sdp_string();
                let offer = Offer {
                    sdp: &sdp,
                    producers: &inbound,
                    consumers: outbound,
                };
                sfu.handle_offer(peer, offer, now)
            })
            .expect("SFU alive")
            .expect("answer");
        self.browsers[i].accept_answer(pending, &answer.sdp);
        self.drain_room(room);
        self.drain_browser(i);
    }

    /// Browser `i` sends a media event to its (engine) room.
    pub fn send_media_event(&mut self, i: usize, event: &Value) {
        let now = self.now;
        let (peer, room) = (self.browsers[i].peer, self.browsers[i].room);
        let json = event.to_string();
        let RoomCore::Engine(driver) = &mut self.rooms[room].core else {
            panic!("media events are for engine rooms");
        };
        driver.signal(|engine| engine.handle_media_event(peer, &json, now));
        self.drain_room(room);
    }

    /// Browser `i`'s NAT maps it to `public` from now on (a rebinding, or Wi-Fi to cellular):
    /// its datagrams reach the rooms from there, and only datagrams sent there reach it.
    pub fn rebind(&mut self, i: usize, public: SocketAddr) {
        self.browsers[i].seen_as = Some(public);
    }

    /// Where a datagram from `src` to a room comes from, as the room sees it (through the
    /// sending browser's NAT, if any).
    fn through_nat(&self, src: SocketAddr) -> SocketAddr {
        self.browsers
            .iter()
            .find(|b| b.addr == src)
            .and_then(|b| b.seen_as)
            .unwrap_or(src)
    }

    /// Browser `i`'s signalling connection is lost (its engine room's `detach_peer`); its
    /// media goes on. Returns whether the engine holds it.
    pub fn detach(&mut self, i: usize) -> bool {
        let now = self.now;
        let (peer, room) = (self.browsers[i].peer, self.browsers[i].room);
        let RoomCore::Engine(driver) = &mut self.rooms[room].core else {
            panic!("detach is for engine rooms");
        };
        let held = driver.signal(|engine| engine.detach_peer(peer, now));
        self.drain_room(room);
        held == Some(true)
    }

    /// Browser `i` says `leave` and goes silent, as a closed tab does.
    pub fn leave(&mut self, i: usize) {
        self.send_media_event(i, &json!({"type": "leave"}));
        self.browsers[i].vanished = true;
    }

    /// Hands queued media events to their browsers, which answer as the tutorial's client does,
    /// until none is left.
    pub fn deliver_signals(&mut self) {
        while let Some((to, event)) = self.signals.pop_front() {
            let Some(i) = self.browsers.iter().position(|b| b.peer == to) else {
                continue;
            };
            if self.browsers[i].vanished {
                continue;
            }
            let event = MediaEventOut::parse(&event).expect("the engine sends valid events");
            self.browsers[i].media_events.push(event.clone());
            self.on_media_event(i, event);
        }
    }

    fn on_media_event(&mut self, i: usize, event: MediaEventOut) {
        match event {
            // The tutorial's onJoinSuccess adds the local tracks, each addTrack asking for a
            // round (the engine folds them into one).
            MediaEventOut::PeerAccepted(_) => {
                for _ in 0..self.browsers[i].send.len() {
                    self.send_media_event(i, &json!({"type": "renegotiateTracks", "data": {}}));
                }
            }
            MediaEventOut::OfferData(counts) => {
                let b = &mut self.browsers[i];
                let (offer, pending) = b.offer(counts.audio as usize, counts.video as usize);
                b.pending = Some(pending);
                let track_metadata: serde_json::Map<String, Value> = b
                    .send
                    .iter()
                    .map(|t| (t.track_id.clone(), json!({"type": t.kind.to_string()})))
                    .collect();
                let mid_to_track_id: serde_json::Map<String, Value> = b
                    .send
                    .iter()
                    .map(|t| (t.mid.to_string(), json!(t.track_id)))
                    .collect();
                let sdp_offer = json!({"type": "sdpOffer", "data": {
                    "sdpOffer": {"type": "offer", "sdp": offer.to_sdp_string()},
                    "trackIdToTrackMetadata": track_metadata,
                    "midToTrackId": mid_to_track_id,
                }});
                self.send_media_event(i, &sdp_offer);
            }
            MediaEventOut::SdpAnswer(answer) => {
                let b = &mut self.browsers[i];
                let pending = b.pending.take().expect("an sdpAnswer answers our offer");
                b.accept_answer(pending, &answer.sdp);
                self.drain_browser(i);
            }
            MediaEventOut::Candidate(c) => {
                let candidate = Candidate::from_sdp_string(&c.candidate).expect("candidate");
                self.browsers[i].rtc.add_remote_candidate(candidate);
                self.drain_browser(i);
            }
            _ => {}
        }
    }

    pub fn drain_browser(&mut self, i: usize) {
        let now = self.now;
        let b = &mut self.browsers[i];
        loop {
            match b.rtc.poll_output().expect("browser output") {
                Output::Timeout(_) => break,
                Output::Transmit(t) => {
                    if !b.vanished {
                        self.queue
                            .push_back((t.source, t.destination, t.contents.into()));
                    }
                }
                Output::Event(Event::RtpPacket(p)) => {
                    let mid = b
                        .rtc
                        .direct_api()
                        .stream_rx(&p.header.ssrc)
                        .map(|s| s.mid())
                        .unwrap_or(Mid::from("?"));
                    let mut seq = [0u8; 8];
                    seq.copy_from_slice(&p.payload[1..9]);
                    let got = Got {
                        ssrc: p.header.ssrc,
                        pt: p.header.payload_type,
                        seq: *p.seq_no,
                        origin: (p.payload[0], u64::from_be_bytes(seq)),
                    };
                    b.received.entry(mid).or_default().push(got);
                }
                Output::Event(Event::KeyframeRequest(_)) => b.keyframe_requests.push(now),
                Output::Event(_) => {}
            }
        }
    }

    /// Drains room `r`'s driver: transmits to the network, events to the test or to the
    /// browsers, join requests accepted (the room actor's admission, which always admits here).
    pub fn drain_room(&mut self, r: usize) {
        let now = self.now;
        let ((), spent) = room_work(|| self.drain_room_outputs(r, now));
        self.room_time += spent;
    }

    fn drain_room_outputs(&mut self, r: usize, now: Instant) {
        loop {
            let room = &mut self.rooms[r];
            match room.core.poll_output() {
                RoomOutput::Idle => break,
                RoomOutput::Ufrags(u) => room.ufrags = u,
                RoomOutput::Transmit(t) => {
                    self.queue.push_back((t.source, t.destination, t.contents))
                }
                RoomOutput::Sfu(e) => self.events.push((now, r, e)),
                RoomOutput::Engine(EngineOutput::JoinRequest { peer, .. }) => {
                    if let RoomCore::Engine(d) = &mut room.core {
                        d.signal(|engine| engine.accept_peer(peer, now));
                    }
                }
                RoomOutput::Engine(EngineOutput::Send { to, event }) => {
                    self.signals.push_back((to, event))
                }
                RoomOutput::Engine(EngineOutput::Broadcast { to, event }) => self
                    .signals
                    .extend(to.into_iter().map(|peer| (peer, event.clone()))),
                RoomOutput::Engine(EngineOutput::PeerRemoved(peer)) => self.removed.push(peer),
                RoomOutput::Engine(other) => panic!("unexpected engine output {other:?}"),
            }
        }
    }

    fn room_datagram(
        &mut self,
        r: usize,
        source: SocketAddr,
        destination: SocketAddr,
        data: Vec<u8>,
    ) {
        let datagram = Datagram {
            source,
            destination,
            received: self.now,
            protocol: Protocol::Udp,
            contents: Bytes::from(data),
        };
        let ((), spent) = room_work(|| self.rooms[r].core.handle_datagram(&datagram));
        self.room_time += spent;
    }

    pub fn send_media(&mut self, i: usize) {
        let now = self.now;
        let b = &mut self.browsers[i];
        if b.vanished || !b.rtc.is_connected() {
            return;
        }
        let silent = b.silent;
        let index = b.index;
        let video_payload = self.video_payload.max(9);
        for t in &mut b.send {
            if t.next > now {
                continue;
            }
            let (interval, ts_step, packets) = match t.kind {
                MediaKind::Audio => (Duration::from_millis(20), 960, 1),
                MediaKind::Video => (Duration::from_millis(33), 3000, 2),
            };
            t.next += interval;
            let Some(params) = b.rtc.codec_config().iter().find(|p| {
                p.spec().codec
                    == if t.kind == MediaKind::Audio {
                        Codec::Opus
                    } else {
                        Codec::Vp8
                    }
            }) else {
                continue;
            };
            let pt = params.pt();
            for n in 0..packets {
                let size = match t.kind {
                    MediaKind::Audio => 120,
                    MediaKind::Video => video_payload,
                };
                let mut payload = vec![0u8; size];
                payload[0] = index;
                payload[1..9].copy_from_slice(&t.seq.to_be_bytes());
                let ext = ExtensionValues {
                    audio_level: (t.kind == MediaKind::Audio).then_some(if silent {
                        -127
                    } else {
                        -30
                    }),
                    voice_activity: (t.kind == MediaKind::Audio).then_some(!silent),
                    ..Default::default()
                };
                let mut api = b.rtc.direct_api();
                let Some(tx) = api.stream_tx_by_mid(t.mid, None) else {
                    continue;
                };
                tx.write_rtp(
                    RtpWrite::new(pt, t.seq.into(), t.ts, now, payload)
                        .marker(n + 1 == packets)
                        .ext_vals(ext)
                        .nackable(t.kind == MediaKind::Video),
                );
                t.seq += 1;
            }
            t.ts = t.ts.wrapping_add(ts_step);
        }
    }

    pub fn deliver(&mut self) {
        if self.batch {
            let mut rest = VecDeque::new();
            while let Some((src, dst, data)) = self.queue.pop_front() {
                match self.rooms.iter().position(|r| r.addr == dst) {
                    Some(r) => self.room_datagram(r, self.through_nat(src), dst, data),
                    None => rest.push_back((src, dst, data)),
                }
            }
            self.queue = rest;
            for r in 0..self.rooms.len() {
                self.drain_room(r);
            }
        }
        while let Some((src, dst, data)) = self.queue.pop_front() {
            let now = self.now;
            if let Some(r) = self.rooms.iter().position(|r| r.addr == dst) {
                if self.browsers.iter().any(|b| b.addr == src && b.vanished) {
                    continue;
                }
                let src = self.through_nat(src);
                if self.record {
                    self.seen.push((r, src, dst, data.clone()));
                }
                self.room_datagram(r, src, dst, data);
                self.drain_room(r);
            } else if let Some(i) = self
                .browsers
                .iter()
                .position(|b| b.seen_as.unwrap_or(b.addr) == dst)
            {
                if self.browsers[i].vanished {
                    continue;
                }
                if self.lose_one_video_to == Some(dst) && data.len() > 500 {
                    self.lose_one_video_to = None;
                    continue;
                }
                // Behind its NAT the browser sees the datagram addressed to itself.
                let dst = self.browsers[i].addr;
                let recv = Receive::new(Protocol::Udp, src, dst, &data).expect("datagram");
                self.browsers[i]
                    .rtc
                    .handle_input(Input::Receive(now, recv))
                    .expect("browser input");
                self.drain_browser(i);
            }
        }
    }

    pub fn step(&mut self) {
        self.now += STEP;
        let now = self.now;
        for i in 0..self.browsers.len() {
            self.send_media(i);
            self.browsers[i]
                .rtc
                .handle_input(Input::Timeout(now))
                .expect("browser timeout");
            self.drain_browser(i);
        }
        for r in 0..self.rooms.len() {
            let core = &mut self.rooms[r].core;
            // The driver's deadline, as the room's shell sleeps until it (None: not yet asked).
            // Asking the deadline is the room's work too (the shell asks after every input).
            let (deadline, spent) = room_work(|| core.deadline());
            self.room_time += spent;
            if deadline.is_none_or(|t| t <= now) {
                let ((), spent) = room_work(|| core.handle_timeout(now));
                self.room_time += spent;
            }
            self.drain_room(r);
        }
        self.deliver_signals();
        self.deliver();
    }

    pub fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step();
        }
    }

    pub fn sent_seq(&self, i: usize, kind: MediaKind) -> u64 {
        self.browsers[i]
            .send
            .iter()
            .find(|t| t.kind == kind)
            .map(|t| t.seq)
            .unwrap()
    }

    /// Packets browser `sub` received from publisher `publ`'s `kind` track.
    pub fn got_from(&self, sub: usize, publ: usize, kind: MediaKind) -> Vec<Got> {
        let b = &self.browsers[sub];
        let pt_codec = |pt: Pt| {
            b.rtc
                .codec_config()
                .iter()
                .find(|p| p.pt() == pt)
                .map(|p| p.spec().codec)
        };
        let want = if kind == MediaKind::Audio {
            Codec::Opus
        } else {
            Codec::Vp8
        };
        b.received
            .values()
            .flatten()
            .filter(|g| g.origin.0 == self.browsers[publ].index && pt_codec(g.pt) == Some(want))
            .copied()
            .collect()
    }
}

/// Asserts that `got` holds at least 95% of the publisher's packets `from..to` and that the
/// outgoing sequence numbers are continuous in arrival order.
pub fn assert_received(got: &[Got], from: u64, to: u64, what: &str) {
    assert_mostly_received(got, from, to, what);
    assert_gapless(got, what);
}

/// Asserts that `got` holds at least 95% of the publisher's packets `from..to` (whatever was
/// lost before them).
pub fn assert_mostly_received(got: &[Got], from: u64, to: u64, what: &str) {
    let expected = to - from;
    let n = got
        .iter()
        .filter(|g| g.origin.1 >= from && g.origin.1 < to)
        .count() as u64;
    assert!(
        n * 100 >= expected * 95,
        "{what}: received {n} of {expected} packets"
    );
}

/// Asserts that the outgoing sequence numbers in `got` are continuous in arrival order.
pub fn assert_gapless(got: &[Got], what: &str) {
    for w in got.windows(2) {
        assert_eq!(
            w[1].seq,
            w[0].seq + 1,
            "{what}: sequence gap {:?} -> {:?}",
            w[0],
            w[1]
        );
    }
}

/// Whether browser `i` is connected: its SFU said so (bare-SFU rooms; engine rooms turn that
/// event into nothing a client sees, so there it is the browser's own ICE/DTLS state).
pub fn connected(world: &World, i: usize) -> bool {
    let b = &world.browsers[i];
    match world.rooms[b.room].core {
        RoomCore::Sfu(_) => world
            .events
            .iter()
            .any(|(_, _, e)| *e == SfuEvent::PeerConnected(b.peer)),
        RoomCore::Engine(_) => b.rtc.is_connected(),
    }
}

/// Runs `work` (the room's driver: a datagram, a timeout, its deadline, draining its outputs)
/// and returns its result and how long it took. Never inlined, so that an instruction counter
/// can count the room's work alone: `valgrind --tool=callgrind --toggle-collect='*room_work*'`
/// (see BENCHMARKS.md), repeatable where wall time on a shared machine is not.
#[inline(never)]
pub fn room_work<R>(work: impl FnOnce() -> R) -> (R, Duration) {
    let started = Instant::now();
    let result = work();
    (result, started.elapsed())
}
