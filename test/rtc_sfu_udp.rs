//! Two rooms share one real UDP socket through `rtc::udp::UdpMux`: each room is a tokio task
//! running the real media driver (`rtc::driver`) around its own `Sfu`; str0m "browsers" on their own loopback sockets publish and subscribe.
//! Media reaches the right subscribers only, in real time.
use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind as StrKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use tokio::sync::{mpsc, oneshot};
use videoroom::rtc::driver::{MediaDriver, MediaShell};
use videoroom::rtc::ids::{MediaKind, PeerId, TrackId};
use videoroom::rtc::sfu::{ConsumerSpec, Offer, Sfu, SfuConfig, SfuEvent};
use videoroom::rtc::udp::{UdpMux, candidate_addrs};

enum Command {
    AddPeer(PeerId),
    Stats(oneshot::Sender<videoroom::rtc::sfu::SfuStats>),
    Offer(OfferCommand),
    /// Keeps the room's loop busy for this long (a machine too loaded to run it).
    Busy(Duration),
}

/// An offer to answer, with what the test decided for its m-lines.
struct OfferCommand {
    peer: PeerId,
    sdp: String,
    inbound: BTreeMap<Mid, TrackId>,
    outbound: Vec<ConsumerSpec>,
    reply: oneshot::Sender<String>,
}

/// A minimal room actor on the real media driver: signalling calls in, SFU events out.
async fn room_task(
    mut media: MediaShell<Sfu>,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::UnboundedSender<SfuEvent>,
) {
    loop {
        while let Some(e) = media.poll_event() {
            let _ = events.send(e);
        }
        tokio::select! {
            command = commands.recv() => match command {
                None => return,
                Some(Command::AddPeer(p)) => {
                    media.driver().signal(|sfu| sfu.add_peer(p, Instant::now()));
                }
                Some(Command::Busy(d)) => {
                    // Off the runtime's worker, so the UDP mux keeps queueing for the room.
                    tokio::task::block_in_place(|| std::thread::sleep(d));
                }
                Some(Command::Stats(reply)) => {
                    let _ = reply.send(media.driver().core().stats());
                }
                Some(Command::Offer(o)) => {
                    let answer = media
                        .driver()
                        .signal(|sfu| {
                            let offer = Offer { sdp: &o.sdp, producers: &o.inbound, consumers: &o.outbound };
                            sfu.handle_offer(o.peer, offer, Instant::now())
                        })
                        .expect("no panic")
                        .expect("answer");
                    // The driver publishes the new ufrags while draining: before the answer leaves.
                    while let Some(e) = media.poll_event() {
                        let _ = events.send(e);
                    }
                    let _ = o.reply.send(answer.sdp);
                }
            },
            () = media.wait() => {}
        }
    }
}

struct Browser {
    rtc: Rtc,
    socket: StdUdpSocket,
    peer: PeerId,
    tag: u8,
    tracks: Vec<(Mid, MediaKind, String)>,
    /// Tags of the publishers whose packets arrived.
    origins: Vec<u8>,
    received: usize,
    seq: u64,
    next_send: Instant,
}

impl Browser {
    fn new(tag: u8, publish: bool) -> Browser {
        let socket = StdUdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let mut rtc = RtcConfig::new().set_rtp_mode(true).build(Instant::now());
        rtc.add_local_candidate(Candidate::host(socket.local_addr().unwrap(), "udp").unwrap());
        let peer = PeerId::new_v4();
        let tracks = if publish {
            vec![
                (
                    Mid::from("-"),
                    MediaKind::Audio,
                    format!("{peer}:{}", uuid::Uuid::new_v4()),
                ),
                (
                    Mid::from("-"),
                    MediaKind::Video,
                    format!("{peer}:{}", uuid::Uuid::new_v4()),
                ),
            ]
        } else {
            Vec::new()
        };
        Browser {
            rtc,
            socket,
            peer,
            tag,
            tracks,
            origins: Vec::new(),
            received: 0,
            seq: 1,
            next_send: Instant::now(),
        }
    }

    fn outbound(&self) -> Vec<ConsumerSpec> {
        self.tracks
            .iter()
            .map(|(_, kind, id)| ConsumerSpec {
                track_id: id.as_str().into(),
                publisher: self.peer,
                kind: *kind,
                stream_id: self.peer.to_string(),
                active: true,
            })
            .collect()
    }

    fn offer(&mut self, receive: usize) -> (String, BTreeMap<Mid, TrackId>, SdpPendingOffer) {
        let mut api = self.rtc.sdp_api();
        for (mid, kind, id) in &mut self.tracks {
            let k = if *kind == MediaKind::Audio {
                StrKind::Audio
            } else {
                StrKind::Video
            };
            *mid = api.add_media(
                k,
                Direction::SendOnly,
                Some(self.peer.to_string()),
                Some(id.clone()),
                None,
            );
        }
        for _ in 0..receive {
            api.add_media(StrKind::Audio, Direction::RecvOnly, None, None, None);
            api.add_media(StrKind::Video, Direction::RecvOnly, None, None, None);
        }
        let (offer, pending) = api.apply().unwrap();
        let inbound = self
            .tracks
            .iter()
            .map(|(m, _, id)| (*m, id.as_str().into()))
            .collect();
        (offer.to_sdp_string(), inbound, pending)
    }

    /// Receives, times out, sends media and flushes output; never blocks. Output is drained
    /// after every input (str0m's rule; in RTP mode it holds one received packet at a time).
    fn drive(&mut self) {
        let mut buf = [0u8; 2048];
        let to = self.socket.local_addr().unwrap();
        while let Ok((n, from)) = self.socket.recv_from(&mut buf) {
            if let Ok(r) = Receive::new(Protocol::Udp, from, to, &buf[..n]) {
                self.rtc
                    .handle_input(Input::Receive(Instant::now(), r))
                    .unwrap();
                self.flush();
            }
        }
        let now = Instant::now();
        self.rtc.handle_input(Input::Timeout(now)).unwrap();
        self.flush();
        if self.rtc.is_connected() && now >= self.next_send && !self.tracks.is_empty() {
            self.next_send = now + Duration::from_millis(20);
            for (mid, kind, _) in &self.tracks {
                let codec = if *kind == MediaKind::Audio {
                    Codec::Opus
                } else {
                    Codec::Vp8
                };
                let pt = self
                    .rtc
                    .codec_config()
                    .iter()
                    .find(|p| p.spec().codec == codec)
                    .unwrap()
                    .pt();
                let mut payload = vec![0u8; 100];
                payload[0] = self.tag;
                let mut api = self.rtc.direct_api();
                if let Some(tx) = api.stream_tx_by_mid(*mid, None) {
                    tx.write_rtp(
                        RtpWrite::new(pt, self.seq.into(), self.seq as u32 * 960, now, payload)
                            .marker(true),
                    );
                }
            }
            self.seq += 1;
            self.rtc.handle_input(Input::Timeout(now)).unwrap();
            self.flush();
        }
    }

    fn flush(&mut self) {
        loop {
            match self.rtc.poll_output().unwrap() {
                Output::Timeout(_) => break,
                Output::Transmit(t) => {
                    let _ = self.socket.send_to(&t.contents, t.destination);
                }
                Output::Event(Event::RtpPacket(p)) => {
                    self.received += 1;
                    if !self.origins.contains(&p.payload[0]) {
                        self.origins.push(p.payload[0]);
                    }
                }
                Output::Event(_) => {}
            }
        }
    }
}

fn negotiate(
    rt: &tokio::runtime::Runtime,
    room: &mpsc::Sender<Command>,
    b: &mut Browser,
    receive: &[&Browser],
) {
    let (sdp, inbound, pending) = b.offer(receive.len());
    let outbound: Vec<ConsumerSpec> = receive.iter().flat_map(|p| p.outbound()).collect();
    let (reply, answer) = oneshot::channel();
    let offer = OfferCommand {
        peer: b.peer,
        sdp,
        inbound,
        outbound,
        reply,
    };
    let answer = rt.block_on(async {
        room.send(Command::Offer(offer)).await.unwrap();
        answer.await.unwrap()
    });
    b.rtc
        .sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
        .unwrap();
}

/// Drives the browsers for up to `seconds`, counting `PeerConnected` events into `connected`
/// (a `PeerFailed` fails the test); stops early, returning true, once `done` says so.
fn drive(
    browsers: &mut [Browser],
    events: &mut mpsc::UnboundedReceiver<SfuEvent>,
    connected: &mut usize,
    seconds: u64,
    done: impl Fn(&[Browser], usize) -> bool,
) -> bool {
    let until = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < until {
        for b in browsers.iter_mut() {
            b.drive();
        }
        while let Ok(e) = events.try_recv() {
            assert!(!matches!(e, SfuEvent::PeerFailed(_)), "{e:?}");
            *connected += matches!(e, SfuEvent::PeerConnected(_)) as usize;
        }
        if done(browsers, *connected) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

/// A runtime with `n` rooms (each a task running the real media driver around its own `Sfu`)
/// behind one UDP mux on a wildcard socket, and the channel of their SFU events. The mux is
/// kept alive by the runtime's tasks.
fn start_rooms(
    n: usize,
) -> (
    tokio::runtime::Runtime,
    Vec<mpsc::Sender<Command>>,
    mpsc::UnboundedReceiver<SfuEvent>,
) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // A wildcard socket: the SFU maps the unspecified destination to its loopback candidate.
    let socket = rt
        .block_on(tokio::net::UdpSocket::bind("0.0.0.0:0"))
        .unwrap();
    let bound = socket.local_addr().unwrap();
    let local: Vec<SocketAddr> = candidate_addrs(bound, None)
        .into_iter()
        .filter(|a| a.ip().is_loopback())
        .collect();
    assert_eq!(local.len(), 1, "{local:?}");
    let mux = rt.block_on(async { UdpMux::spawn(socket) });

    let (event_tx, event_rx) = mpsc::unbounded_channel();
    let mut rooms = Vec::new();
    for r in 0..n {
        let udp = mux.open_route(&format!("room{r}"));
        let config = SfuConfig {
            room: format!("room{r}").into(),
            local_addrs: local.clone(),
            ..SfuConfig::default()
        };
        let (tx, rx) = mpsc::channel(8);
        let driver = MediaDriver::new(format!("room{r}"), Sfu::new(config, Instant::now()));
        rt.spawn(room_task(
            MediaShell::new(driver, Some(udp)),
            rx,
            event_tx.clone(),
        ));
        rooms.push(tx);
    }
    (rt, rooms, event_rx)
}

#[test]
fn two_rooms_share_one_udp_socket_and_never_see_each_others_media() {
    let _ = env_logger::builder().is_test(true).try_init();
    let (rt, rooms, mut event_rx) = start_rooms(2);

    // Room 0: publisher 1 and subscriber 2; room 1: publisher 3 and subscriber 4.
    let mut browsers = vec![
        Browser::new(1, true),
        Browser::new(2, false),
        Browser::new(3, true),
        Browser::new(4, false),
    ];
    for (i, b) in browsers.iter().enumerate() {
        rt.block_on(rooms[i / 2].send(Command::AddPeer(b.peer)))
            .unwrap();
    }
    for room in 0..2 {
        let (publisher, rest) = browsers[room * 2..].split_at_mut(1);
        negotiate(&rt, &rooms[room], &mut publisher[0], &[]);
        negotiate(&rt, &rooms[room], &mut rest[0], &[&publisher[0]]);
    }
    // Real sockets and threads: drive until every browser is connected and each subscriber is
    // receiving (a generous bound for a loaded machine), then measure a window of steady flow.
    let mut connected = 0;
    let flowing = drive(&mut browsers, &mut event_rx, &mut connected, 30, |b, c| {
        c == 4 && b[1].received >= 50 && b[3].received >= 50
    });
    assert!(
        flowing,
        "within 30 s: {connected} of 4 browsers connected, subscribers got {} and {} packets",
        browsers[1].received, browsers[3].received
    );
    let marks: Vec<(u64, usize)> = browsers.iter().map(|b| (b.seq, b.received)).collect();
    drive(&mut browsers, &mut event_rx, &mut connected, 2, |_, _| {
        false
    });
    assert_eq!(
        connected, 4,
        "every browser connected through the shared socket"
    );
    for room in &rooms {
        let (tx, rx) = oneshot::channel();
        rt.block_on(room.send(Command::Stats(tx))).unwrap();
        let stats = rt.block_on(rx).unwrap();
        // One subscriber per room: at most every packet in goes out once (packets that came
        // before the subscriber was connected are not forwarded).
        assert!(
            stats.rtp_out > 0 && stats.rtp_out <= stats.rtp_in,
            "{stats:?}"
        );
    }
    // On loopback nearly every packet of the steady window arrives (loss and sequence numbers
    // are checked exactly, in virtual time, in rtc_sfu.rs).
    for (publ, sub) in [(0, 1), (2, 3)] {
        let sent = 2 * (browsers[publ].seq - marks[publ].0) as usize;
        let got = browsers[sub].received - marks[sub].1;
        assert!(
            sent > 0 && got * 100 >= sent * 90,
            "subscriber {sub} got {got} of {sent} packets in the steady window"
        );
    }
    assert_eq!(browsers[1].origins, vec![1]);
    assert_eq!(browsers[3].origins, vec![3]);
    drop(rooms);
    rt.shutdown_timeout(Duration::from_secs(1));
}

#[test]
fn a_room_whose_loop_falls_behind_does_not_drop_peers_whose_datagrams_are_waiting_for_it() {
    let _ = env_logger::builder().is_test(true).try_init();
    let (rt, rooms, mut event_rx) = start_rooms(1);
    let mut browsers = vec![Browser::new(1, true), Browser::new(2, false)];
    for b in &browsers {
        rt.block_on(rooms[0].send(Command::AddPeer(b.peer)))
            .unwrap();
    }
    let (publisher, rest) = browsers.split_at_mut(1);
    negotiate(&rt, &rooms[0], &mut publisher[0], &[]);
    negotiate(&rt, &rooms[0], &mut rest[0], &[&publisher[0]]);
    let mut connected = 0;
    let flowing = drive(&mut browsers, &mut event_rx, &mut connected, 30, |b, c| {
        c == 2 && b[1].received >= 50
    });
    assert!(
        flowing,
        "within 30 s: {connected} of 2 connected, {} packets",
        browsers[1].received
    );
    // The room's loop is kept busy for longer than the SFU's silence limit while both browsers
    // keep sending (about 110 datagrams a second: the room's inbox holds them all). When it
    // comes back it must see that they did send: `drive` fails on any PeerFailed.
    let busy = SfuConfig::default().peer_timeout + Duration::from_secs(2);
    rt.block_on(rooms[0].send(Command::Busy(busy))).unwrap();
    let before = browsers[1].received;
    drive(
        &mut browsers,
        &mut event_rx,
        &mut connected,
        busy.as_secs() + 3,
        |_, _| false,
    );
    assert!(
        browsers[1].received > before + 50,
        "media flows again after the busy spell: {} then {}",
        before,
        browsers[1].received
    );
    drop(rooms);
    rt.shutdown_timeout(Duration::from_secs(1));
}
