//! A virtual-time world of in-process str0m "browsers" and SFUs that pass datagrams in memory:
//! no sockets, no sleeps, every run the same. Shared by `test/rtc_sfu.rs` and the RTP fuzz
//! target (`#[path]`-included, so each user compiles it into its own crate).
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::{Codec, FormatParams};
use str0m::media::{Direction, Frequency, MediaKind as StrKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpWrite, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use videoroom::rtc::ids::{MediaKind, PeerId, TrackId};
use videoroom::rtc::sfu::{ConsumerSpec, Sfu, SfuConfig, SfuEvent, SfuOutput};

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
    pub rtc: Rtc,
    pub send: Vec<SendTrack>,
    /// The SFU this browser talks to.
    pub sfu: usize,
    pub recv_audio: usize,
    pub recv_video: usize,
    pub received: HashMap<Mid, Vec<Got>>,
    pub keyframe_requests: Vec<Instant>,
    pub silent: bool,
    pub vanished: bool,
    pub offered: bool,
}

pub struct World {
    pub now: Instant,
    pub sfus: Vec<(SocketAddr, Sfu)>,
    pub browsers: Vec<Browser>,
    pub queue: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
    pub events: Vec<(Instant, usize, SfuEvent)>,
    /// Datagrams seen by each SFU address (source, destination, contents), when recording.
    pub record: bool,
    /// Hand the SFU every queued datagram before draining it (as a busy room actor may).
    pub batch: bool,
    pub seen: Vec<(usize, SocketAddr, SocketAddr, Vec<u8>)>,
}

pub const STEP: Duration = Duration::from_millis(2);

impl World {
    pub fn new(rooms: usize) -> World {
        let now = Instant::now();
        let sfus = (0..rooms)
            .map(|i| {
                let addr: SocketAddr = format!("10.0.0.{}:50000", i + 1).parse().unwrap();
                let config = SfuConfig {
                    room: format!("room{i}").into(),
                    local_addrs: vec![addr],
                    ..SfuConfig::default()
                };
                (addr, Sfu::new(config, now))
            })
            .collect();
        World {
            now,
            sfus,
            browsers: Vec::new(),
            queue: VecDeque::new(),
            events: Vec::new(),
            record: false,
            batch: false,
            seen: Vec::new(),
        }
    }

    pub fn add_browser(&mut self, sfu: usize, flavor: Flavor, publish: bool) -> usize {
        let index = self.browsers.len() as u8;
        let addr: SocketAddr = format!("10.1.{sfu}.{}:40000", index + 1).parse().unwrap();
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
        self.sfus[sfu].1.add_peer(peer, self.now);
        let mut b = Browser {
            index,
            peer,
            addr,
            rtc,
            send: Vec::new(),
            sfu,
            recv_audio: 0,
            recv_video: 0,
            received: HashMap::new(),
            keyframe_requests: Vec::new(),
            silent: false,
            vanished: false,
            offered: false,
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
        self.browsers.len() - 1
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

    /// One offer/answer round started by browser `i` (an ICE restart after the first), like the
    /// tutorial's client: own tracks sendonly, then recvonly transceivers up to the counts.
    pub fn negotiate(&mut self, i: usize, outbound: &[ConsumerSpec]) {
        let now = self.now;
        let b = &mut self.browsers[i];
        let mut api = b.rtc.sdp_api();
        if b.offered {
            api.ice_restart(true);
        } else {
            for t in &mut b.send {
                let kind = if t.kind == MediaKind::Audio {
                    StrKind::Audio
                } else {
                    StrKind::Video
                };
                t.mid = api.add_media(
                    kind,
                    Direction::SendOnly,
                    Some(b.peer.to_string()),
                    Some(t.track_id.clone()),
                    None,
                );
            }
        }
        let want_audio = outbound
            .iter()
            .filter(|t| t.kind == MediaKind::Audio)
            .count();
        let want_video = outbound
            .iter()
            .filter(|t| t.kind == MediaKind::Video)
            .count();
        while b.recv_audio < want_audio {
            api.add_media(StrKind::Audio, Direction::RecvOnly, None, None, None);
            b.recv_audio += 1;
        }
        while b.recv_video < want_video {
            api.add_media(StrKind::Video, Direction::RecvOnly, None, None, None);
            b.recv_video += 1;
        }
        let (offer, pending): (SdpOffer, SdpPendingOffer) = api.apply().expect("changes to offer");
        b.offered = true;
        let inbound: BTreeMap<Mid, TrackId> = b
            .send
            .iter()
            .map(|t| (t.mid, t.track_id.as_str().into()))
            .collect();
        let answer = self.sfus[b.sfu]
            .1
            .handle_offer(b.peer, &offer.to_sdp_string(), &inbound, outbound, now)
            .expect("answer");
        let sdp_answer = SdpAnswer::from_sdp_string(&answer.sdp).expect("parseable answer");
        b.rtc
            .sdp_api()
            .accept_answer(pending, sdp_answer)
            .expect("answer accepted");
        let sfu = b.sfu;
        self.drain_sfu(sfu);
        self.drain_browser(i);
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

    pub fn drain_sfu(&mut self, s: usize) {
        loop {
            match self.sfus[s].1.poll_output() {
                SfuOutput::Timeout(_) => break,
                SfuOutput::Transmit(t) => {
                    self.queue.push_back((t.source, t.destination, t.contents))
                }
                SfuOutput::Event(e) => self.events.push((self.now, s, e)),
            }
        }
    }

    pub fn send_media(&mut self, i: usize) {
        let now = self.now;
        let b = &mut self.browsers[i];
        if b.vanished || !b.rtc.is_connected() {
            return;
        }
        let silent = b.silent;
        let index = b.index;
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
                let mut payload = vec![0u8; 120];
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
                match self.sfus.iter().position(|(a, _)| *a == dst) {
                    Some(s) => self.sfus[s].1.handle_datagram(self.now, src, dst, &data),
                    None => rest.push_back((src, dst, data)),
                }
            }
            self.queue = rest;
            for s in 0..self.sfus.len() {
                self.drain_sfu(s);
            }
        }
        while let Some((src, dst, data)) = self.queue.pop_front() {
            let now = self.now;
            if let Some(s) = self.sfus.iter().position(|(a, _)| *a == dst) {
                if self.browsers.iter().any(|b| b.addr == src && b.vanished) {
                    continue;
                }
                if self.record {
                    self.seen.push((s, src, dst, data.clone()));
                }
                self.sfus[s].1.handle_datagram(now, src, dst, &data);
                self.drain_sfu(s);
            } else if let Some(i) = self.browsers.iter().position(|b| b.addr == dst) {
                if self.browsers[i].vanished {
                    continue;
                }
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
        for s in 0..self.sfus.len() {
            self.sfus[s].1.handle_timeout(now);
            self.drain_sfu(s);
        }
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
    let expected = to - from;
    let n = got
        .iter()
        .filter(|g| g.origin.1 >= from && g.origin.1 < to)
        .count() as u64;
    assert!(
        n * 100 >= expected * 95,
        "{what}: received {n} of {expected} packets"
    );
    assert_gapless(got, what);
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

pub fn connected(world: &World, i: usize) -> bool {
    world
        .events
        .iter()
        .any(|(_, _, e)| *e == SfuEvent::PeerConnected(world.browsers[i].peer))
}
