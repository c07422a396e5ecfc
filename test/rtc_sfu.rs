//! The SFU with several in-process str0m "browsers" (str0m as the offerer, like the tutorial's
//! client), passing datagrams in memory in virtual time: forwarding, ICE restarts, keyframe
//! requests, the silence discarder, failure detection and room isolation.
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::{Codec, FormatParams};
use str0m::media::{Direction, Frequency, KeyframeRequestKind, MediaKind as StrKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpWrite, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use videoroom::rtc::ids::{MediaKind, PeerId, TrackId};
use videoroom::rtc::sfu::{ConsumerSpec, Sfu, SfuConfig, SfuEvent, SfuOutput};

/// Payload types a browser uses: Chrome-like (111/96) or Firefox-like (109/120).
#[derive(Clone, Copy)]
enum Flavor {
    Chrome,
    Firefox,
}

struct SendTrack {
    mid: Mid,
    kind: MediaKind,
    track_id: String,
    /// Publisher sequence number, also written into the payload so receivers can tell which
    /// packet they got.
    seq: u64,
    ts: u32,
    next: Instant,
}

/// One received packet, as the receiving browser saw it.
#[derive(Clone, Copy, Debug)]
struct Got {
    ssrc: Ssrc,
    pt: Pt,
    seq: u64,
    /// (publisher browser index, publisher seq) from the payload.
    origin: (u8, u64),
}

struct Browser {
    index: u8,
    peer: PeerId,
    addr: SocketAddr,
    rtc: Rtc,
    send: Vec<SendTrack>,
    /// The SFU this browser talks to.
    sfu: usize,
    recv_audio: usize,
    recv_video: usize,
    received: HashMap<Mid, Vec<Got>>,
    keyframe_requests: Vec<Instant>,
    silent: bool,
    vanished: bool,
    offered: bool,
}

struct World {
    now: Instant,
    sfus: Vec<(SocketAddr, Sfu)>,
    browsers: Vec<Browser>,
    queue: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
    events: Vec<(Instant, usize, SfuEvent)>,
    /// Datagrams seen by each SFU address (source, destination, contents), when recording.
    record: bool,
    /// Hand the SFU every queued datagram before draining it (as a busy room actor may).
    batch: bool,
    seen: Vec<(usize, SocketAddr, SocketAddr, Vec<u8>)>,
}

const STEP: Duration = Duration::from_millis(2);

impl World {
    fn new(rooms: usize) -> World {
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

    fn add_browser(&mut self, sfu: usize, flavor: Flavor, publish: bool) -> usize {
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
                    track_id: format!("{peer}:{}", uuid::Uuid::new_v4()),
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
    fn tracks_of(&self, i: usize, active: bool) -> Vec<ConsumerSpec> {
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
    fn negotiate(&mut self, i: usize, outbound: &[ConsumerSpec]) {
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

    fn drain_browser(&mut self, i: usize) {
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

    fn drain_sfu(&mut self, s: usize) {
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

    fn send_media(&mut self, i: usize) {
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

    fn deliver(&mut self) {
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

    fn step(&mut self) {
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

    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step();
        }
    }

    fn sent_seq(&self, i: usize, kind: MediaKind) -> u64 {
        self.browsers[i]
            .send
            .iter()
            .find(|t| t.kind == kind)
            .map(|t| t.seq)
            .unwrap()
    }

    /// Packets browser `sub` received from publisher `publ`'s `kind` track.
    fn got_from(&self, sub: usize, publ: usize, kind: MediaKind) -> Vec<Got> {
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
fn assert_received(got: &[Got], from: u64, to: u64, what: &str) {
    let expected = to - from;
    let n = got
        .iter()
        .filter(|g| g.origin.1 >= from && g.origin.1 < to)
        .count() as u64;
    assert!(
        n * 100 >= expected * 95,
        "{what}: received {n} of {expected} packets"
    );
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

fn connected(world: &World, i: usize) -> bool {
    world
        .events
        .iter()
        .any(|(_, _, e)| *e == SfuEvent::PeerConnected(world.browsers[i].peer))
}

/// Three browsers, each publishing, fully negotiated (the second round is an ICE restart).
fn three_peer_room() -> World {
    let mut w = World::new(1);
    let a = w.add_browser(0, Flavor::Firefox, true);
    let b = w.add_browser(0, Flavor::Chrome, true);
    let c = w.add_browser(0, Flavor::Chrome, true);
    for i in [a, b, c] {
        w.negotiate(i, &[]);
    }
    w.run(Duration::from_millis(500));
    for i in [a, b, c] {
        assert!(connected(&w, i), "browser {i} connected");
    }
    for i in [a, b, c] {
        let others: Vec<ConsumerSpec> = [a, b, c]
            .iter()
            .filter(|&&j| j != i)
            .flat_map(|&j| w.tracks_of(j, true))
            .collect();
        w.negotiate(i, &others);
    }
    w
}

#[test]
fn every_subscriber_receives_every_publisher_with_its_own_ssrc_pt_and_continuous_seq() {
    let mut w = three_peer_room();
    w.run(Duration::from_millis(500));
    let start: Vec<(u64, u64)> = (0..3)
        .map(|i| {
            (
                w.sent_seq(i, MediaKind::Audio),
                w.sent_seq(i, MediaKind::Video),
            )
        })
        .collect();
    w.run(Duration::from_secs(3));
    for sub in 0..3 {
        for publ in (0..3).filter(|p| *p != sub) {
            for (k, kind) in [MediaKind::Audio, MediaKind::Video].into_iter().enumerate() {
                let got = w.got_from(sub, publ, kind);
                let from = if k == 0 { start[publ].0 } else { start[publ].1 };
                let what = format!("{kind} {publ} -> {sub}");
                assert_received(&got, from, w.sent_seq(publ, kind), &what);
                // The SSRC is the subscriber's own, never the publisher's.
                let pub_ssrc = {
                    let p = &mut w.browsers[publ];
                    let mid = p.send.iter().find(|t| t.kind == kind).unwrap().mid;
                    p.rtc
                        .direct_api()
                        .stream_tx_by_mid(mid, None)
                        .unwrap()
                        .ssrc()
                };
                assert!(
                    got.iter().all(|g| g.ssrc != pub_ssrc),
                    "{what}: publisher SSRC leaked"
                );
                assert_eq!(
                    got.iter()
                        .map(|g| g.ssrc)
                        .collect::<std::collections::HashSet<_>>()
                        .len(),
                    1
                );
            }
        }
    }
    // Payload types follow the subscriber's offer: Firefox-like browser 0 gets 109/120,
    // Chrome-like browsers get 111/96 from the Firefox-like publisher.
    assert!(
        w.got_from(0, 1, MediaKind::Audio)
            .iter()
            .all(|g| *g.pt == 109)
    );
    assert!(
        w.got_from(0, 1, MediaKind::Video)
            .iter()
            .all(|g| *g.pt == 120)
    );
    assert!(
        w.got_from(1, 0, MediaKind::Audio)
            .iter()
            .all(|g| *g.pt == 111)
    );
    assert!(
        w.got_from(2, 0, MediaKind::Video)
            .iter()
            .all(|g| *g.pt == 96)
    );
}

#[test]
fn datagrams_handed_over_in_a_batch_before_draining_are_all_forwarded() {
    let mut w = three_peer_room();
    w.batch = true;
    w.run(Duration::from_millis(500));
    let from = w.sent_seq(0, MediaKind::Audio);
    w.run(Duration::from_secs(2));
    assert_received(
        &w.got_from(1, 0, MediaKind::Audio),
        from,
        w.sent_seq(0, MediaKind::Audio),
        "audio 0 -> 1",
    );
    let from = w.sent_seq(2, MediaKind::Video);
    w.run(Duration::from_secs(1));
    assert_received(
        &w.got_from(0, 2, MediaKind::Video),
        from,
        w.sent_seq(2, MediaKind::Video),
        "video 2 -> 0",
    );
}

#[test]
fn ice_restarts_on_every_re_offer_keep_media_flowing() {
    let mut w = World::new(1);
    let a = w.add_browser(0, Flavor::Chrome, true);
    let b = w.add_browser(0, Flavor::Firefox, true);
    w.negotiate(a, &[]);
    w.negotiate(b, &w.tracks_of(a, true));
    w.run(Duration::from_secs(1));
    let from = w.sent_seq(a, MediaKind::Video);
    let from_audio = w.sent_seq(a, MediaKind::Audio);
    for _ in 0..4 {
        let tracks = w.tracks_of(a, true);
        w.negotiate(b, &tracks);
        w.run(Duration::from_millis(700));
        w.negotiate(a, &w.tracks_of(b, true));
        w.run(Duration::from_millis(300));
    }
    assert_received(
        &w.got_from(b, a, MediaKind::Video),
        from,
        w.sent_seq(a, MediaKind::Video),
        "video a -> b",
    );
    assert_received(
        &w.got_from(b, a, MediaKind::Audio),
        from_audio,
        w.sent_seq(a, MediaKind::Audio),
        "audio a -> b",
    );
    assert!(
        !w.events
            .iter()
            .any(|(_, _, e)| matches!(e, SfuEvent::PeerFailed(_)))
    );
}

#[test]
fn a_new_subscriber_and_its_plis_make_the_publisher_send_keyframes_at_a_limited_rate() {
    let mut w = World::new(1);
    let a = w.add_browser(0, Flavor::Chrome, true);
    let b = w.add_browser(0, Flavor::Chrome, false);
    w.negotiate(a, &[]);
    w.run(Duration::from_secs(1));
    assert!(
        w.browsers[a].keyframe_requests.is_empty(),
        "no subscriber yet, no keyframe request"
    );
    w.negotiate(b, &w.tracks_of(a, true));
    w.run(Duration::from_secs(1));
    assert!(
        !w.browsers[a].keyframe_requests.is_empty(),
        "starting a subscriber asks for a keyframe"
    );
    w.run(Duration::from_secs(1));
    let before = w.browsers[a].keyframe_requests.len();
    let t0 = w.now;
    // The subscriber asks for a keyframe 10 times within 200 ms.
    let video_ssrc = w.got_from(b, a, MediaKind::Video)[0].ssrc;
    for _ in 0..10 {
        w.browsers[b]
            .rtc
            .direct_api()
            .stream_rx(&video_ssrc)
            .unwrap()
            .request_keyframe(KeyframeRequestKind::Pli);
        w.run(Duration::from_millis(20));
    }
    w.run(Duration::from_millis(800));
    let reqs: Vec<Duration> = w.browsers[a].keyframe_requests[before..]
        .iter()
        .map(|t| *t - t0)
        .collect();
    eprintln!("keyframe requests before {before}, during PLIs {reqs:?}");
    assert!(
        !reqs.is_empty(),
        "the subscriber's PLI reached the publisher"
    );
    assert!(
        reqs.len() <= 2,
        "rate limited to one per 500 ms (plus one merged), got {reqs:?}"
    );
    if reqs.len() == 2 {
        assert!(reqs[1] - reqs[0] >= Duration::from_millis(500), "{reqs:?}");
    }
}

#[test]
fn silence_is_dropped_and_subscribers_see_gapless_sequence_numbers() {
    let mut w = World::new(1);
    let a = w.add_browser(0, Flavor::Chrome, true);
    let b = w.add_browser(0, Flavor::Chrome, false);
    w.negotiate(a, &[]);
    w.negotiate(b, &w.tracks_of(a, true));
    w.run(Duration::from_secs(1));
    let loud_from = w.sent_seq(a, MediaKind::Audio);
    w.run(Duration::from_millis(400));
    let silent_from = w.sent_seq(a, MediaKind::Audio);
    w.browsers[a].silent = true;
    // 1100 silent packets: 1000 are dropped, then one passes, then drops again.
    w.run(Duration::from_millis(22_000));
    w.browsers[a].silent = false;
    let silent_to = w.sent_seq(a, MediaKind::Audio);
    w.run(Duration::from_millis(400));
    let got = w.got_from(b, a, MediaKind::Audio);
    let silent_received = got
        .iter()
        .filter(|g| g.origin.1 >= silent_from && g.origin.1 < silent_to)
        .count();
    assert!(
        silent_to - silent_from >= 1001,
        "sent {} silent packets",
        silent_to - silent_from
    );
    assert_eq!(silent_received, 1, "one silent packet in 1001 passes");
    let loud = got.iter().filter(|g| {
        g.origin.1 >= loud_from && (g.origin.1 < silent_from || g.origin.1 >= silent_to)
    });
    assert!(loud.count() >= 38, "loud audio flows");
    let since: Vec<Got> = got
        .iter()
        .filter(|g| g.origin.1 >= loud_from)
        .copied()
        .collect();
    for w2 in since.windows(2) {
        assert_eq!(
            w2[1].seq,
            w2[0].seq + 1,
            "gap across dropped silence: {:?} -> {:?}",
            w2[0],
            w2[1]
        );
    }
}

#[test]
fn a_vanished_peer_is_reported_failed_within_five_seconds() {
    let mut w = World::new(1);
    let a = w.add_browser(0, Flavor::Chrome, true);
    let b = w.add_browser(0, Flavor::Firefox, true);
    w.negotiate(a, &[]);
    w.negotiate(b, &w.tracks_of(a, true));
    w.negotiate(a, &w.tracks_of(b, true));
    w.run(Duration::from_secs(2));
    assert!(connected(&w, a) && connected(&w, b));
    let vanished_at = w.now;
    w.browsers[b].vanished = true;
    w.run(Duration::from_secs(6));
    let failed: Vec<(Instant, PeerId)> = w
        .events
        .iter()
        .filter_map(|(t, _, e)| {
            if let SfuEvent::PeerFailed(p) = e {
                Some((*t, *p))
            } else {
                None
            }
        })
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].1, w.browsers[b].peer);
    let after = failed[0].0 - vanished_at;
    eprintln!("failure detected after {after:?}");
    assert!(after <= Duration::from_secs(5), "detected after {after:?}");
    // The remaining publisher keeps being served (and does not fail).
    let seq = w.sent_seq(a, MediaKind::Audio);
    w.run(Duration::from_secs(1));
    assert!(w.sent_seq(a, MediaKind::Audio) > seq + 40);
}

#[test]
fn two_sfus_never_see_each_others_media() {
    let mut w = World::new(2);
    let a1 = w.add_browser(0, Flavor::Chrome, true);
    let b1 = w.add_browser(0, Flavor::Chrome, false);
    let a2 = w.add_browser(1, Flavor::Firefox, true);
    let b2 = w.add_browser(1, Flavor::Chrome, false);
    w.negotiate(a1, &[]);
    w.negotiate(a2, &[]);
    w.negotiate(b1, &w.tracks_of(a1, true));
    w.negotiate(b2, &w.tracks_of(a2, true));
    w.record = true;
    w.run(Duration::from_secs(2));
    // Each room's traffic, shown to the other room (as on a shared socket), is not accepted.
    for (s, src, dst, data) in &w.seen {
        let other = 1 - *s;
        assert!(
            !w.sfus[other].1.accepts(*src, *dst, data),
            "room {other} accepted a datagram of room {s}"
        );
    }
    assert!(w.seen.len() > 100);
    let origins = |i: usize| -> Vec<u8> {
        let mut v: Vec<u8> = w.browsers[i]
            .received
            .values()
            .flatten()
            .map(|g| g.origin.0)
            .collect();
        v.dedup();
        v.sort();
        v.dedup();
        v
    };
    assert_eq!(origins(b1), vec![w.browsers[a1].index]);
    assert_eq!(origins(b2), vec![w.browsers[a2].index]);
}
