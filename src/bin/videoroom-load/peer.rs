//! One load peer: a Phoenix channel for signalling, a str0m `Rtc` on its own UDP socket for
//! media (real ICE, DTLS and SRTP), publishing synthetic media when it is a publisher and
//! accounting for every packet it receives. It answers the server as the tutorial's client does:
//! `join` → `peerAccepted` (→ `renegotiateTracks` if it publishes) → `offerData` → `sdpOffer`
//! → `sdpAnswer` → `candidate`s, renegotiating (with an ICE restart) on every later
//! `offerData`.
//!
//! All peers run as tasks of one single-threaded runtime and share the run's [`Stats`] through
//! an `Rc<RefCell<…>>` that is never borrowed across an await.
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::stream::SplitStream;
use serde_json::{Map, Value, json};
use str0m::change::SdpPendingOffer;
use str0m::config::DtlsCert;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::rtp::{ExtensionValues, RtpWrite, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use ws_stream::tungstenite::{Error as WsError, Message as WsMessage};

use crate::batch::RecvBatch;
use crate::dtls;
use crate::feedback::Feedback;
use crate::ice_tcp::TcpLinks;
use crate::janus::{self, JanusSession};
use crate::media::{self, Kind, MediaShape, RxStream};
use crate::phoenix::{self, Channel, Incoming, Ws};
use crate::srtp::{self, KeySink, RtcpSealer, RtpOpener};
use crate::stats::{PeerTally, Stats};
use crate::turn::{self, TurnRelay};

/// What every peer of a run shares.
pub struct RunContext {
    /// The server's HTTP address (WebSocket at `/socket/websocket`).
    pub server: SocketAddr,
    /// Source address of every socket.
    pub local_ip: IpAddr,
    pub shape: MediaShape,
    /// Send stamps count microseconds from here.
    pub epoch: Instant,
    /// One DTLS certificate for every peer (key generation is the slow part of a start).
    pub dtls_cert: Option<DtlsCert>,
    pub stats: Rc<RefCell<Stats>>,
    /// Set when the run is over: every peer task returns.
    pub stop: Rc<Cell<bool>>,
    /// The server is Janus (VideoRoom plugin over its WebSocket API), not videoroom.
    pub janus: bool,
    /// Media through the server's TURN relay (see [`crate::turn`]).
    pub turn: bool,
    /// ICE over TCP only (`--ice-tcp`).
    pub ice_tcp: bool,
    /// Received RTP is opened beside str0m (`--receive-path direct`, see [`crate::srtp`]).
    pub direct_receive: bool,
    /// Every peer's receive buffers (peers run one at a time on this thread).
    pub recv: RefCell<RecvBatch>,
    /// Every peer's buffer for a decrypted payload on the direct receive path.
    pub plain: RefCell<Vec<u8>>,
    /// str0m's crypto with browser-like DTLS retransmissions ([`crate::dtls`]).
    pub crypto: std::sync::Arc<str0m::config::CryptoProvider>,
}

/// The signalling a peer speaks.
enum Signal {
    /// Ours: a joined Phoenix channel with media events.
    Videoroom(Channel),
    /// Janus's VideoRoom plugin (see [`crate::janus`]).
    Janus(JanusSession),
}

/// Phoenix's own heartbeat period (phoenix.js).
const HEARTBEAT: Duration = Duration::from_secs(30);
/// Longest sleep of a peer: how soon it notices the end of the run.
const MAX_SLEEP: Duration = Duration::from_millis(200);
/// Wakes by datagrams in a row after which the signalling is looked at even though more
/// datagrams wait (the loop polls the socket first; see [`Peer::run`]).
const SIGNALLING_EVERY: u32 = 8;
/// str0m's statistics period: NACK and PLI counts are read from them.
const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// One published track.
struct SendTrack {
    kind: Kind,
    track_id: String,
    mid: Option<Mid>,
    seq: u64,
    rtp_time: u32,
}

/// One load peer (see the module docs).
struct Peer {
    ctx: Rc<RunContext>,
    /// Index of this peer in the run (the publisher number in send stamps).
    index: u32,
    publish: bool,
    started: Instant,
    tally: Rc<PeerTally>,
    signal: Signal,
    rtc: Rtc,
    socket: UdpSocket,
    /// ICE-TCP connections (with `--ice-tcp`; unused otherwise).
    tcp: TcpLinks,
    /// The local candidate's address (the UDP socket's, or the active TCP candidate's).
    local: SocketAddr,
    /// `--turn`: the TURN allocation every datagram goes through.
    relay: Option<TurnRelay>,
    peer_id: Option<String>,
    send: Vec<SendTrack>,
    offered: bool,
    pending: Option<SdpPendingOffer>,
    /// An `offerData` that arrived while an offer was in flight: answered after its answer.
    queued_offer: Option<(u64, u64)>,
    recv_audio: u64,
    recv_video: u64,
    connected: bool,
    rtc_deadline: Instant,
    next_frame: Instant,
    frame_no: u64,
    next_keyframe: Instant,
    keyframe_wanted: bool,
    next_audio: Instant,
    next_heartbeat: Instant,
    streams: HashMap<Ssrc, RxStream>,
    first_video: bool,
    /// Last cumulative (NACK, PLI+FIR) counts of str0m's statistics, per direction and mid.
    ingress_seen: HashMap<Mid, (u64, u64)>,
    egress_seen: HashMap<Mid, (u64, u64)>,
    /// Where the DTLS session leaves the SRTP keys (see [`crate::srtp`]).
    keys: KeySink,
    /// What the remote SDP said received media looks like (for the direct path).
    remote_media: RemoteMedia,
    /// The direct receive path, once DTLS exported keys it can use.
    direct: Option<DirectReceive>,
}

/// What the direct receive path needs from the SDP: the payload types of VP8 and Opus with
/// their clock rates, those of their retransmissions (RFC 4588), which retransmission SSRC
/// repairs which stream, and the transport-wide-cc extension's id. Anything else goes to str0m.
#[derive(Default, Clone)]
struct RemoteMedia {
    payload_types: Vec<(u8, u32)>,
    rtx_payload_types: Vec<u8>,
    /// (retransmission SSRC, the SSRC it repairs), from `a=ssrc-group:FID`.
    rtx_ssrcs: Vec<(u32, u32)>,
    twcc_id: Option<u8>,
}

impl RemoteMedia {
    /// Learns from one SDP (BUNDLE keeps ids and payload types the same across its sections).
    fn learn(&mut self, sdp: &str) {
        for line in sdp.lines() {
            if let Some(rest) = line.strip_prefix("a=rtpmap:") {
                let mut parts = rest.split_whitespace();
                let (Some(pt), Some(codec)) = (parts.next(), parts.next()) else {
                    continue;
                };
                let Ok(pt) = pt.parse::<u8>() else {
                    continue;
                };
                let clock = match codec.to_ascii_lowercase() {
                    c if c.starts_with("vp8/") => 90_000,
                    c if c.starts_with("opus/") => 48_000,
                    c if c.starts_with("rtx/") => {
                        if !self.rtx_payload_types.contains(&pt) {
                            self.rtx_payload_types.push(pt);
                        }
                        continue;
                    }
                    _ => continue,
                };
                if !self.payload_types.iter().any(|(p, _)| *p == pt) {
                    self.payload_types.push((pt, clock));
                }
            } else if let Some(rest) = line.strip_prefix("a=ssrc-group:FID ") {
                let mut ssrcs = rest.split_whitespace().map(|s| s.parse::<u32>());
                if let (Some(Ok(main)), Some(Ok(rtx))) = (ssrcs.next(), ssrcs.next())
                    && !self.rtx_ssrcs.contains(&(rtx, main))
                {
                    self.rtx_ssrcs.push((rtx, main));
                }
            } else if let Some(rest) = line.strip_prefix("a=extmap:")
                && rest.contains("transport-wide-cc")
            {
                let id = rest.split(|c: char| !c.is_ascii_digit()).next();
                self.twcc_id = id.and_then(|id| id.parse().ok());
            }
        }
    }
}

/// What a packet the direct receive path reads is.
enum Received {
    /// Media of a payload type with this clock rate (Hz).
    Media { clock: u32 },
    /// A retransmission (RFC 4588) repairing the stream of SSRC `of`.
    Repair { of: u32 },
}

/// The direct receive path of one peer (see [`crate::srtp`]).
struct DirectReceive {
    opener: RtpOpener,
    sealer: RtcpSealer,
    feedback: Feedback,
    /// Plain and sealed RTCP being sent.
    rtcp: Vec<u8>,
    sealed: Vec<u8>,
    /// Where the media comes from: where the feedback goes.
    remote: Option<SocketAddr>,
}

/// Runs one peer until the run stops or the peer fails (recorded in its tally).
pub async fn run(
    ctx: Rc<RunContext>,
    room: String,
    index: u32,
    publish: bool,
    tally: Rc<PeerTally>,
) {
    let started = Instant::now();
    let result = match start(ctx.clone(), &room, index, publish, tally.clone(), started).await {
        Ok((mut peer, inbox)) => match peer.start_janus(&room).await {
            Ok(()) => {
                let reader = match (inbox, &mut peer.signal) {
                    (Some(inbox), _) => Some((inbox.into_stream(), phoenix::incoming_of as _)),
                    (None, Signal::Janus(session)) => session
                        .take_stream()
                        .map(|stream| (stream, janus::incoming_of as _)),
                    (None, Signal::Videoroom(_)) => None,
                };
                match reader {
                    Some((stream, read)) => {
                        let mut incoming = SignalReader::spawn(stream, read);
                        peer.run(&mut incoming).await
                    }
                    None => Err("no signalling socket to read".into()),
                }
            }
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    if let Err(e) = result
        && !ctx.stop.get()
    {
        ctx.stats.borrow_mut().failed += 1;
        *tally.error.borrow_mut() = Some(e);
    }
}

async fn start(
    ctx: Rc<RunContext>,
    room: &str,
    index: u32,
    publish: bool,
    tally: Rc<PeerTally>,
    started: Instant,
) -> Result<(Peer, Option<phoenix::Inbox>), String> {
    let mut reply = Value::Null;
    let (signal, inbox) = if ctx.janus {
        let session = JanusSession::open(ctx.server, ctx.local_ip).await?;
        (Signal::Janus(session), None)
    } else {
        let (mut channel, inbox, joined) = phoenix::join(ctx.server, ctx.local_ip, room).await?;
        reply = joined;
        channel
            .media_event(json!({"type": "join", "data": {
                "receiveMedia": true,
                "metadata": {"displayName": tally.name},
            }}))
            .await?;
        (Signal::Videoroom(channel), Some(inbox))
    };
    let socket = UdpSocket::bind(SocketAddr::new(ctx.local_ip, 0))
        .await
        .map_err(|e| format!("udp bind: {e}"))?;
    let local = socket
        .local_addr()
        .map_err(|e| format!("udp address: {e}"))?;
    let now = Instant::now();
    let mut config = RtcConfig::new()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .set_stats_interval(Some(STATS_INTERVAL))
        .set_crypto_provider(ctx.crypto.clone());
    if let Some(cert) = &ctx.dtls_cert {
        config = config.set_dtls_cert(cert.clone());
    }
    // The DTLS session made by `build` leaves its keys in `keys` (see [`crate::dtls`]).
    let keys = KeySink::default();
    if ctx.direct_receive {
        dtls::KEY_SINK.with(|sink| *sink.borrow_mut() = Some(keys.clone()));
    }
    let mut rtc = config.build(now);
    dtls::KEY_SINK.with(|sink| sink.borrow_mut().take());
    let relay = if ctx.turn {
        let (server, credentials) =
            turn::udp_server_of(&reply).ok_or("the join reply names no TURN/UDP server")?;
        let relay = TurnRelay::allocate(&socket, server, credentials).await?;
        let candidate = Candidate::relayed(relay.relayed, local, "udp")
            .map_err(|e| format!("relay candidate: {e}"))?;
        rtc.add_local_candidate(candidate);
        Some(relay)
    } else {
        None
    };
    let local = if ctx.ice_tcp {
        // An active candidate's port is a placeholder (RFC 6544: 9); the connection's own
        // port is chosen when it connects.
        let local = SocketAddr::new(ctx.local_ip, 9);
        let c = Candidate::builder()
            .tcp()
            .host(local)
            .tcptype(TcpType::Active)
            .build()
            .map_err(|e| format!("candidate: {e}"))?;
        rtc.add_local_candidate(c);
        local
    } else {
        if relay.is_none() {
            let host = Candidate::host(local, "udp").map_err(|e| format!("candidate: {e}"))?;
            rtc.add_local_candidate(host);
        }
        local
    };
    let tcp = TcpLinks::new(ctx.local_ip);
    let peer = Peer {
        ctx,
        index,
        publish,
        started,
        tally,
        signal,
        rtc,
        socket,
        tcp,
        local,
        relay,
        peer_id: None,
        send: Vec::new(),
        offered: false,
        pending: None,
        queued_offer: None,
        recv_audio: 0,
        recv_video: 0,
        connected: false,
        rtc_deadline: now,
        next_frame: now,
        frame_no: 0,
        next_keyframe: now,
        keyframe_wanted: true,
        next_audio: now,
        next_heartbeat: now + HEARTBEAT,
        streams: HashMap::new(),
        first_video: false,
        ingress_seen: HashMap::new(),
        egress_seen: HashMap::new(),
        keys,
        remote_media: RemoteMedia::default(),
        direct: None,
    };
    Ok((peer, inbox))
}

impl Peer {
    /// The peer's loop: one wait for a frame, a datagram or the next deadline, then the work due.
    /// Janus: publishes (one offer, Janus answers) or subscribes (Janus offers, we answer) at
    /// once, before the loop runs; nothing to do for videoroom, whose loop negotiates.
    async fn start_janus(&mut self, room: &str) -> Result<(), String> {
        let Signal::Janus(session) = &mut self.signal else {
            return Ok(());
        };
        let room = janus::room_number(room);
        if self.publish {
            session.ensure_room(room).await?;
            let stream_id = format!("janus-{}", self.index);
            self.send = self.new_tracks(&stream_id);
            self.peer_id = Some(stream_id);
            let offer = self.make_offer(0, 0).ok_or("nothing to offer")?;
            let Signal::Janus(session) = &mut self.signal else {
                unreachable!("matched above");
            };
            let answer = session.publish(room, &self.tally.name, offer).await?;
            self.accept_answer(&answer)?;
        } else {
            let offer = session.subscribe(room).await?;
            self.remote_media.learn(&offer);
            let offer = str0m::change::SdpOffer::from_sdp_string(&offer)
                .map_err(|e| format!("unreadable janus offer: {e}"))?;
            let answer = self
                .rtc
                .sdp_api()
                .accept_offer(offer)
                .map_err(|e| format!("janus offer refused: {e}"))?;
            self.tally.audio_tracks.set(1);
            self.tally.video_tracks.set(1);
            let Signal::Janus(session) = &mut self.signal else {
                unreachable!("matched above");
            };
            session.start(answer.to_sdp_string()).await?;
        }
        let Signal::Janus(session) = &mut self.signal else {
            unreachable!("matched above");
        };
        session.candidates_done().await?;
        self.ctx.stats.borrow_mut().joined += 1;
        Ok(())
    }

    /// The loop polls the UDP socket first (`biased`): a wake by a datagram, by far the most
    /// common, then costs no poll of the WebSocket, the TCP inbox or a timer. So that a socket
    /// that never empties cannot starve the signalling, every [`SIGNALLING_EVERY`]th wake in a
    /// row by datagrams looks at the signalling too.
    async fn run(&mut self, incoming: &mut SignalReader) -> Result<(), String> {
        let mut datagram_wakes = 0u32;
        // One timer for the loop, moved only to an earlier deadline or once it fired: a timer
        // set anew at every wake costs a timer-wheel insertion and removal per datagram, and
        // waking before the deadline is harmless (the loop just goes round).
        let timer = tokio::time::sleep_until(Instant::now().into());
        let mut timer = std::pin::pin!(timer);
        while !self.ctx.stop.get() {
            let now = Instant::now();
            let mut wake = self
                .rtc_deadline
                .min(self.next_heartbeat)
                .min(now + MAX_SLEEP);
            if self.publish && self.connected {
                wake = wake.min(self.next_media());
            }
            if let Some(direct) = &self.direct {
                wake = wake.min(direct.feedback.deadline());
            }
            if timer.is_elapsed() || wake < timer.deadline().into_std() {
                timer.as_mut().reset(wake.into());
            }
            if datagram_wakes >= SIGNALLING_EVERY {
                datagram_wakes = 0;
                if let Ok(next) = incoming.frames.try_recv() {
                    self.on_incoming(next).await?;
                }
            }
            tokio::select! {
                biased;
                ready = self.socket.readable() => {
                    ready.map_err(|e| format!("udp: {e}"))?;
                    datagram_wakes += 1;
                    self.read_socket()?;
                }
                () = &mut timer => datagram_wakes = 0,
                Some((source, frame)) = self.tcp.inbox.recv(), if self.ctx.ice_tcp => {
                    self.read_frame(source, &frame)?
                }
                next = incoming.frames.recv() => {
                    datagram_wakes = 0;
                    let next = next.unwrap_or_else(|| Incoming::Closed("signalling reader ended".into()));
                    self.on_incoming(next).await?;
                }
            }
            let now = Instant::now();
            if now >= self.rtc_deadline {
                self.rtc
                    .handle_input(Input::Timeout(now))
                    .map_err(|e| format!("rtc timeout: {e}"))?;
            }
            if self.publish && self.connected {
                self.send_media(now);
            }
            self.send_feedback(now);
            self.drain(now)?;
            if now >= self.next_heartbeat {
                self.next_heartbeat = now + HEARTBEAT;
                match &mut self.signal {
                    Signal::Videoroom(channel) => channel.heartbeat().await?,
                    Signal::Janus(session) => session.keepalive().await?,
                }
            }
        }
        Ok(())
    }

    /// What the signalling said: a media event is acted on, a closed socket ends the peer.
    async fn on_incoming(&mut self, incoming: Incoming) -> Result<(), String> {
        match incoming {
            Incoming::MediaEvent(event) => self.on_media_event(event).await,
            Incoming::Other => Ok(()),
            Incoming::Closed(why) => Err(why),
        }
    }

    /// Reads the datagrams the socket holds now, one batch (see [`RecvBatch`]); the socket's
    /// readiness brings the loop back for any more.
    fn read_socket(&mut self) -> Result<(), String> {
        let ctx = self.ctx.clone();
        let mut batch = ctx.recv.borrow_mut();
        let n = batch
            .read(&self.socket)
            .map_err(|e| format!("udp receive: {e}"))?;
        // One clock read for the batch: the kernel handed its datagrams over together.
        let now = Instant::now();
        {
            let mut stats = self.ctx.stats.borrow_mut();
            stats.counters.udp_received += n as u64;
            for i in 0..n {
                let len = batch.datagram(i).map_or(0, |(_, d)| d.len());
                stats.counters.udp_received_bytes += len as u64;
            }
        }
        for i in 0..n {
            let Some((source, datagram)) = batch.datagram(i) else {
                continue;
            };
            let unwrapped;
            let (source, destination, datagram) = match &self.relay {
                None => (source, self.local, datagram),
                Some(relay) => match relay.unwrap(datagram) {
                    Some((peer, payload)) => {
                        unwrapped = payload;
                        (peer, relay.relayed, unwrapped.as_slice())
                    }
                    None => continue,
                },
            };
            if self.receive_direct(source, datagram, now) {
                continue;
            }
            // Anything str0m cannot parse is not ours to judge; it is counted and skipped.
            if let Ok(receive) = Receive::new(Protocol::Udp, source, destination, datagram) {
                self.rtc
                    .handle_input(Input::Receive(now, receive))
                    .map_err(|e| format!("rtc input: {e}"))?;
                self.drain(now)?;
            }
        }
        Ok(())
    }

    /// Feeds one ICE-TCP frame from `source` (then every frame already waiting).
    fn read_frame(&mut self, source: SocketAddr, frame: &[u8]) -> Result<(), String> {
        let mut next = Some((source, bytes::Bytes::copy_from_slice(frame)));
        while let Some((source, frame)) = next {
            let now = Instant::now();
            {
                let mut stats = self.ctx.stats.borrow_mut();
                stats.counters.udp_received += 1;
                stats.counters.udp_received_bytes += frame.len() as u64;
            }
            if self.receive_direct(source, &frame, now) {
                next = self.tcp.inbox.try_recv().ok();
                continue;
            }
            if let Ok(receive) = Receive::new(Protocol::Tcp, source, self.local, &frame) {
                self.rtc
                    .handle_input(Input::Receive(now, receive))
                    .map_err(|e| format!("rtc input: {e}"))?;
                self.drain(now)?;
            }
            next = self.tcp.inbox.try_recv().ok();
        }
        Ok(())
    }

    /// Polls the `Rtc` until it waits: datagrams out, events accounted.
    fn drain(&mut self, now: Instant) -> Result<(), String> {
        loop {
            match self.rtc.poll_output().map_err(|e| format!("rtc: {e}"))? {
                Output::Timeout(t) => {
                    self.rtc_deadline = t;
                    return Ok(());
                }
                Output::Transmit(t) => {
                    // UDP semantics: a datagram the socket (or a full TCP queue) cannot take
                    // now is lost.
                    // Through the relay, the first datagram to an address binds its channel
                    // first: the answer's candidates reach str0m before their `candidate`
                    // events, and a check sent without a channel would be lost until ICE
                    // retransmits it (~250 ms later). The server handles the ChannelBind
                    // before the ChannelData that follows it on the same path.
                    let udp = t.proto == Protocol::Udp;
                    let relayed = self.relay.as_mut().filter(|_| udp).map(|r| {
                        let bind = r.bind(t.destination);
                        (bind, r.wrap(t.destination, &t.contents), r.server)
                    });
                    let sent = match relayed {
                        _ if t.proto == Protocol::Tcp => self.tcp.send(t.destination, &t.contents),
                        None => self.socket.try_send_to(&t.contents, t.destination).is_ok(),
                        Some((bind, Some(wrapped), server)) => {
                            if let Some(bind) = bind {
                                let _ = self.socket.try_send_to(&bind, server);
                            }
                            self.socket.try_send_to(&wrapped, server).is_ok()
                        }
                        // No channel number left: lost, like a check ICE retries.
                        Some((_, None, _)) => continue,
                    };
                    if sent {
                        let mut stats = self.ctx.stats.borrow_mut();
                        stats.counters.udp_sent += 1;
                        stats.counters.udp_sent_bytes += t.contents.len() as u64;
                    }
                }
                Output::Event(e) => self.on_rtc_event(e, now),
            }
        }
    }

    fn on_rtc_event(&mut self, event: Event, now: Instant) {
        match event {
            Event::Connected => {
                self.connected = true;
                self.next_frame = now;
                self.next_audio = now;
                self.ctx.stats.borrow_mut().connected += 1;
            }
            Event::RtpPacket(p) => {
                // A retransmission str0m read (RTX) is no longer asked for on the direct path.
                if let Some(direct) = &mut self.direct {
                    direct.feedback.on_repaired(*p.header.ssrc, *p.seq_no);
                }
                self.account_rtp(p.header.ssrc, *p.seq_no, &p.payload, p.timestamp, now);
            }
            Event::KeyframeRequest(_) => self.keyframe_wanted = true,
            Event::MediaIngressStats(s) => {
                let (nacks, plis) = delta(&mut self.ingress_seen, s.mid, s.nacks, s.plis + s.firs);
                let mut stats = self.ctx.stats.borrow_mut();
                stats.counters.nacks_sent += nacks;
                stats.counters.plis_sent += plis;
            }
            Event::MediaEgressStats(s) => {
                let (nacks, plis) = delta(&mut self.egress_seen, s.mid, s.nacks, s.plis + s.firs);
                let mut stats = self.ctx.stats.borrow_mut();
                stats.counters.nacks_received += nacks;
                stats.counters.plis_received += plis;
            }
            _ => {}
        }
    }

    /// Takes `datagram` on the direct receive path if it is media that path opens: true if it
    /// did (see [`crate::srtp`]). Everything else, and anything that does not authenticate,
    /// is left to str0m.
    fn receive_direct(&mut self, source: SocketAddr, datagram: &[u8], now: Instant) -> bool {
        if self.direct.is_none() {
            if !self.connected {
                return false;
            }
            self.arm_direct(now);
        }
        let Some(direct) = &mut self.direct else {
            return false;
        };
        let media = &self.remote_media;
        let Some(head) = srtp::read_head(datagram, media.twcc_id) else {
            return false;
        };
        let pt = head.payload_type;
        let received = if let Some(&(_, clock)) = media.payload_types.iter().find(|(p, _)| *p == pt)
        {
            Received::Media { clock }
        } else if media.rtx_payload_types.contains(&pt) {
            // A retransmission: read here only if the SDP named the SSRC it repairs.
            match media.rtx_ssrcs.iter().find(|(rtx, _)| *rtx == head.ssrc) {
                Some(&(_, main)) => Received::Repair { of: main },
                None => return false,
            }
        } else {
            return false;
        };
        let ctx = self.ctx.clone();
        let mut plain = ctx.plain.borrow_mut();
        let Some(opened) = direct.opener.open(datagram, head, &mut plain) else {
            return false;
        };
        direct.remote = Some(source);
        let (ssrc, index, payload) = match received {
            Received::Media { clock } => {
                direct.feedback.on_packet(
                    head.ssrc,
                    clock,
                    opened.index,
                    head.timestamp,
                    head.transport_seq,
                    now,
                );
                (head.ssrc, opened.index, &plain[..opened.payload_len])
            }
            Received::Repair { of } => {
                direct.feedback.on_transport(head.transport_seq, now);
                // RFC 4588 §4: the original sequence number leads the payload; an RTX packet
                // without one is padding (a bandwidth probe), read and done with.
                if opened.payload_len < 2 {
                    return true;
                }
                let original = u16::from_be_bytes([plain[0], plain[1]]);
                let index = direct.opener.extend(of, original);
                direct.feedback.on_repaired(of, index);
                (of, index, &plain[2..opened.payload_len])
            }
        };
        ctx.stats.borrow_mut().counters.rtp_received_direct += 1;
        self.account_rtp(Ssrc::from(ssrc), index, payload, now, now);
        true
    }

    /// Sets the direct receive path up once DTLS has left keys it can use (once: keys of a
    /// profile it does not open leave every packet to str0m).
    fn arm_direct(&mut self, now: Instant) {
        let Some(keys) = self.keys.lock().ok().and_then(|mut k| k.take()) else {
            return;
        };
        let crypto = &self.ctx.crypto;
        if let (Some(opener), Some(sealer)) = (
            RtpOpener::new(crypto, &keys),
            RtcpSealer::new(crypto, &keys),
        ) {
            self.direct = Some(DirectReceive {
                opener,
                sealer,
                // A sender SSRC apart from str0m's (random) ones: its SRTCP index space and
                // the server's replay window for it are the feedback's alone.
                feedback: Feedback::new(0x4c00_0000 | self.index, now),
                rtcp: Vec::with_capacity(1500),
                sealed: vec![0; 1500],
                remote: None,
            });
        }
    }

    /// Sends the direct receive path's feedback that is due.
    fn send_feedback(&mut self, now: Instant) {
        let Some(direct) = &mut self.direct else {
            return;
        };
        while direct.feedback.deadline() <= now && direct.feedback.poll(now, &mut direct.rtcp) {
            let Some(len) = direct.sealer.seal(&direct.rtcp, &mut direct.sealed) else {
                continue;
            };
            let Some(destination) = direct.remote else {
                continue;
            };
            let sealed = &direct.sealed[..len];
            let sent = match (&mut self.relay, self.ctx.ice_tcp) {
                (_, true) => self.tcp.send(destination, sealed),
                (None, false) => self.socket.try_send_to(sealed, destination).is_ok(),
                (Some(relay), false) => match relay.wrap(destination, sealed) {
                    Some(wrapped) => self.socket.try_send_to(&wrapped, relay.server).is_ok(),
                    None => false,
                },
            };
            if sent {
                let mut stats = self.ctx.stats.borrow_mut();
                stats.counters.udp_sent += 1;
                stats.counters.udp_sent_bytes += len as u64;
            }
        }
        let nacks = std::mem::take(&mut direct.feedback.nacks_sent);
        if nacks > 0 {
            self.ctx.stats.borrow_mut().counters.nacks_sent += nacks;
        }
    }

    /// Accounts one received RTP packet of `ssrc` (sequence number `seq`, extended) that
    /// arrived at `received`: loss, jitter, latency and the first video.
    fn account_rtp(
        &mut self,
        ssrc: Ssrc,
        seq: u64,
        payload: &[u8],
        received: Instant,
        now: Instant,
    ) {
        let Some((kind, _publisher, sent_us)) = media::read_stamp(payload) else {
            return;
        };
        let received_us = media::micros_since(self.ctx.epoch, received);
        let update = self
            .streams
            .entry(ssrc)
            .or_default()
            .on_packet(seq, received_us as i64 - sent_us as i64);
        let mut stats = self.ctx.stats.borrow_mut();
        let c = &mut stats.counters;
        c.rtp_expected += update.expected;
        if let Some(d) = update.jitter_us {
            c.jitter_sum_us += d;
            c.jitter_samples += 1;
        }
        let tally = match kind {
            Kind::Video => {
                c.rtp_received_video += 1;
                &self.tally.video_received
            }
            Kind::Audio => {
                c.rtp_received_audio += 1;
                &self.tally.audio_received
            }
        };
        tally.set(tally.get() + 1);
        stats.latency.record(received_us.saturating_sub(sent_us));
        if kind == Kind::Video && !self.first_video {
            self.first_video = true;
            let took = now.saturating_duration_since(self.started);
            stats.first_video.record(took.as_micros() as u64);
        }
    }

    /// When the next audio packet or video frame is due.
    fn next_media(&self) -> Instant {
        let shape = &self.ctx.shape;
        let mut next = self.next_heartbeat;
        if shape.audio_pps > 0 {
            next = next.min(self.next_audio);
        }
        if !shape.no_video {
            next = next.min(self.next_frame);
        }
        next
    }

    /// Writes the audio packets and video frames that are due (catching up at most one of each).
    fn send_media(&mut self, now: Instant) {
        let shape = self.ctx.shape.clone();
        let sent_us = media::micros_since(self.ctx.epoch, now);
        if shape.audio_pps > 0 && now >= self.next_audio {
            let interval = Duration::from_secs(1) / shape.audio_pps;
            self.next_audio = (self.next_audio + interval).max(now);
            let payload = media::audio_payload(shape.audio_bytes, self.index, sent_us);
            let step = 48_000 / shape.audio_pps;
            if self.write(Kind::Audio, payload, true, step, now) {
                self.ctx.stats.borrow_mut().counters.rtp_sent_audio += 1;
            }
        }
        if !shape.no_video && now >= self.next_frame {
            let interval = Duration::from_secs(1) / shape.fps;
            self.next_frame = (self.next_frame + interval).max(now);
            let keyframe = self.keyframe_wanted || now >= self.next_keyframe;
            if keyframe {
                self.keyframe_wanted = false;
                self.next_keyframe = now + shape.keyframe_interval;
            }
            let packets = if keyframe {
                shape.packets_per_keyframe
            } else {
                shape.packets_per_frame
            };
            let step = 90_000 / shape.fps;
            let mut written = 0;
            for n in 0..packets {
                let payload =
                    media::video_payload(shape.video_bytes, n == 0, keyframe, self.index, sent_us);
                let last = n + 1 == packets;
                if self.write(Kind::Video, payload, last, if last { step } else { 0 }, now) {
                    written += 1;
                }
            }
            self.frame_no += 1;
            self.ctx.stats.borrow_mut().counters.rtp_sent_video += written;
        }
    }

    /// Writes one RTP packet on the track of `kind`, advancing its RTP clock by `step` after it.
    fn write(
        &mut self,
        kind: Kind,
        payload: Vec<u8>,
        marker: bool,
        step: u32,
        now: Instant,
    ) -> bool {
        let codec = if kind == Kind::Audio {
            Codec::Opus
        } else {
            Codec::Vp8
        };
        let Some(pt) = payload_type(&self.rtc, codec) else {
            return false;
        };
        let Some(track) = self.send.iter_mut().find(|t| t.kind == kind) else {
            return false;
        };
        let Some(mid) = track.mid else {
            return false;
        };
        let ext = ExtensionValues {
            audio_level: (kind == Kind::Audio).then_some(-30),
            voice_activity: (kind == Kind::Audio).then_some(true),
            ..Default::default()
        };
        let mut api = self.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, None) else {
            return false;
        };
        tx.write_rtp(
            RtpWrite::new(pt, track.seq.into(), track.rtp_time, now, payload)
                .marker(marker)
                .ext_vals(ext)
                .nackable(kind == Kind::Video),
        );
        track.seq += 1;
        track.rtp_time = track.rtp_time.wrapping_add(step);
        true
    }

    async fn on_media_event(&mut self, event: Value) -> Result<(), String> {
        let data = &event["data"];
        match event["type"].as_str().unwrap_or_default() {
            "peerAccepted" => {
                let id = data["id"].as_str().unwrap_or_default().to_owned();
                self.ctx.stats.borrow_mut().joined += 1;
                if self.publish {
                    self.send = self.new_tracks(&id);
                    self.push(json!({"type": "renegotiateTracks", "data": {}}))
                        .await?;
                }
                self.peer_id = Some(id);
            }
            "peerDenied" => return Err(format!("peer denied: {data}")),
            "offerData" => {
                let audio = data["audio"].as_u64().unwrap_or(0);
                let video = data["video"].as_u64().unwrap_or(0);
                self.tally.audio_tracks.set(audio);
                self.tally.video_tracks.set(video);
                if self.pending.is_some() {
                    self.queued_offer = Some((audio, video));
                } else {
                    self.offer(audio, video).await?;
                }
            }
            "sdpAnswer" => {
                self.accept_answer(data["sdp"].as_str().unwrap_or_default())?;
                if let Some((audio, video)) = self.queued_offer.take() {
                    self.offer(audio, video).await?;
                }
            }
            "candidate" => {
                let text = data["candidate"].as_str().unwrap_or_default();
                if let Ok(c) = Candidate::from_sdp_string(text) {
                    // A TURN/UDP relay reaches only the server's UDP candidates (a relay-only
                    // browser pairs nothing else either); a bind toward a TCP one is refused.
                    if self.relay.is_some() && c.proto() != Protocol::Udp {
                        return Ok(());
                    }
                    if let Some(bind) = self.relay.as_mut().and_then(|r| r.bind(c.addr())) {
                        let server = self.relay.as_ref().map(|r| r.server);
                        if let Some(server) = server {
                            let _ = self.socket.try_send_to(&bind, server);
                        }
                    }
                    self.rtc.add_remote_candidate(c);
                }
            }
            "error" => return Err(format!("server error: {data}")),
            _ => {}
        }
        Ok(())
    }

    /// The tracks a publisher sends, their ids in the tutorial's `<peer id>:<uuid>` form.
    fn new_tracks(&self, peer_id: &str) -> Vec<SendTrack> {
        let shape = &self.ctx.shape;
        [Kind::Audio, Kind::Video]
            .into_iter()
            .filter(|&k| k == Kind::Audio || !shape.no_video)
            .filter(|&k| k == Kind::Video || shape.audio_pps > 0)
            .map(|kind| SendTrack {
                kind,
                track_id: format!("{peer_id}:{}", uuid::Uuid::new_v4()),
                mid: None,
                seq: 1,
                rtp_time: rand::random(),
            })
            .collect()
    }

    /// Pushes a media event (videoroom only).
    async fn push(&mut self, event: Value) -> Result<(), String> {
        match &mut self.signal {
            Signal::Videoroom(channel) => channel.media_event(event).await,
            Signal::Janus(_) => Err("media events are videoroom signalling".into()),
        }
    }

    /// Applies the answer to the pending offer.
    fn accept_answer(&mut self, sdp: &str) -> Result<(), String> {
        self.remote_media.learn(sdp);
        let answer = str0m::change::SdpAnswer::from_sdp_string(sdp)
            .map_err(|e| format!("unreadable answer: {e}"))?;
        let pending = self.pending.take().ok_or("an answer without an offer")?;
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| format!("answer refused: {e}"))
    }

    /// An offer SDP for `audio` + `video` receiving tracks, as the tutorial's client makes it:
    /// its own tracks sendonly the first time, an ICE restart after that, recvonly transceivers
    /// added up to the counts. Kept pending until its answer; `None` if nothing changed.
    fn make_offer(&mut self, audio: u64, video: u64) -> Option<String> {
        let stream_id = self.peer_id.clone().unwrap_or_default();
        let mut api = self.rtc.sdp_api();
        if self.offered {
            api.ice_restart(true);
        } else {
            for t in &mut self.send {
                let kind = match t.kind {
                    Kind::Audio => MediaKind::Audio,
                    Kind::Video => MediaKind::Video,
                };
                let mid = api.add_media(
                    kind,
                    Direction::SendOnly,
                    Some(stream_id.clone()),
                    Some(t.track_id.clone()),
                    None,
                );
                t.mid = Some(mid);
            }
        }
        while self.recv_audio < audio {
            api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
            self.recv_audio += 1;
        }
        while self.recv_video < video {
            api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
            self.recv_video += 1;
        }
        self.offered = true;
        let (offer, pending) = api.apply()?;
        self.pending = Some(pending);
        Some(offer.to_sdp_string())
    }

    /// Answers `offerData` with an `sdpOffer` (see [`Self::make_offer`]).
    async fn offer(&mut self, audio: u64, video: u64) -> Result<(), String> {
        let Some(sdp) = self.make_offer(audio, video) else {
            return Ok(());
        };
        let mut metadata = Map::new();
        let mut mids = Map::new();
        for t in &self.send {
            let kind = if t.kind == Kind::Audio {
                "audio"
            } else {
                "video"
            };
            metadata.insert(t.track_id.clone(), json!({"type": kind}));
            if let Some(mid) = t.mid {
                mids.insert(mid.to_string(), json!(t.track_id));
            }
        }
        self.push(json!({"type": "sdpOffer", "data": {
            "sdpOffer": {"type": "offer", "sdp": sdp},
            "trackIdToTrackMetadata": metadata,
            "midToTrackId": mids,
        }}))
        .await
    }
}

/// Frames the reader may hold for a peer that has not taken them yet: the signalling sends a
/// peer a few media events per negotiation; when full, the reader waits (and the socket's
/// buffers, then the server's queue for it, fill up, as with any slow client).
const SIGNAL_QUEUE: usize = 64;

/// How a signalling's frame reads ([`phoenix::incoming_of`], [`janus::incoming_of`]).
type ReadFrame = fn(Option<Result<WsMessage, WsError>>) -> Incoming;

/// The signalling's incoming frames, read by a task of its own: the peer's loop then polls a
/// channel, not the WebSocket, whose every poll costs a read-buffer setup in tungstenite. Only
/// what the peer acts on crosses the channel (no [`Incoming::Other`]: a join into a room of N
/// sends every member a `peerJoined`); [`Incoming::Closed`] is the last.
struct SignalReader {
    frames: tokio::sync::mpsc::Receiver<Incoming>,
    task: tokio::task::JoinHandle<()>,
}

impl SignalReader {
    /// Starts the reader of `socket`, whose frames `read` interprets.
    fn spawn(mut socket: SplitStream<Ws>, read: ReadFrame) -> SignalReader {
        let (tx, rx) = tokio::sync::mpsc::channel(SIGNAL_QUEUE);
        let task = tokio::task::spawn_local(async move {
            loop {
                let incoming = read(futures_util::StreamExt::next(&mut socket).await);
                let closed = matches!(incoming, Incoming::Closed(_));
                let wanted = !matches!(incoming, Incoming::Other);
                if (wanted && tx.send(incoming).await.is_err()) || closed {
                    return;
                }
            }
        });
        SignalReader { frames: rx, task }
    }
}

impl Drop for SignalReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The payload type our side negotiated for `codec`.
fn payload_type(rtc: &Rtc, codec: Codec) -> Option<Pt> {
    rtc.codec_config()
        .iter()
        .find(|p| p.spec().codec == codec)
        .map(|p| p.pt())
}

/// The growth of two cumulative counters of `mid` since they were last seen.
fn delta(seen: &mut HashMap<Mid, (u64, u64)>, mid: Mid, a: u64, b: u64) -> (u64, u64) {
    let last = seen.insert(mid, (a, b)).unwrap_or((0, 0));
    (a.saturating_sub(last.0), b.saturating_sub(last.1))
}
