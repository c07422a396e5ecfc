//! The headless peer: the tutorial's `MembraneWebRTC` client (its negotiation, track and peer
//! bookkeeping) on webrtc-rs, driven over the Phoenix socket exactly as the demo page drives it.
//!
//! One actor task owns the client state (local tracks, the RTCPeerConnection, negotiation); the
//! test holds a [`HeadlessPeer`] handle that sends it commands and reads [`Observations`], a
//! shared record of everything the peer saw. The record sits behind a std mutex that is only
//! held for short, non-async updates.

use super::media::{
    AUDIO_LEVEL_URI, GeneratedPacket, Kind, LocalTrackRecord, OpusGenerator, RemoteTrackRecord,
    SentPacket, Vp8Generator,
};
use super::phoenix::{self, Incoming, PhoenixSocket};
use super::sdp;
use bytes::Bytes;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceCandidateInit, RTCIceServer, RTCIceTransportPolicy,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSessionDescription, Registry,
    SettingEngineBuilder, register_default_interceptors,
};
use webrtc::rtp_transceiver::{
    RTCRtpTransceiverDirection, RTCRtpTransceiverInit, RtpSender, RtpTransceiver,
};

/// The `iceServers` of a channel join reply (`{"iceServers": [{"urls", "username",
/// "credential"}]}`); none when the reply has none.
pub fn ice_servers_of(reply: &Value) -> Vec<RTCIceServer> {
    let Some(servers) = reply.get("iceServers").and_then(Value::as_array) else {
        return Vec::new();
    };
    servers
        .iter()
        .map(|s| RTCIceServer {
            urls: s["urls"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|u| u.as_str().map(str::to_owned))
                .collect(),
            username: s["username"].as_str().unwrap_or_default().to_owned(),
            credential: s["credential"].as_str().unwrap_or_default().to_owned(),
        })
        .collect()
}

/// phoenix.js's default `reconnectAfterMs` schedule, in ms (5000 after the last).
pub const RECONNECT_AFTER: [u64; 9] = [10, 50, 100, 150, 200, 250, 500, 1000, 2000];

/// How a peer behaves.
#[derive(Debug, Clone)]
pub struct PeerOptions {
    /// `metadata.displayName` of the join event.
    pub display_name: String,
    /// Publish a microphone track on `peerAccepted`.
    pub audio: bool,
    /// Publish a camera track on `peerAccepted`.
    pub video: bool,
    /// Audio starts as digital silence (level 127).
    pub silent: bool,
    /// A VP8 keyframe every this many frames.
    pub keyframe_interval: u64,
    /// Phoenix heartbeat period (phoenix.js: 30 s).
    pub heartbeat: Duration,
    /// Local address the peer connection binds (host candidates).
    pub ip: IpAddr,
    /// Where the peer stops negotiating (fault tests: a client frozen, then killed, there).
    pub hold: Hold,
    /// When the socket is lost: reconnect with backoff for this long, resume with the token
    /// (or join as a new peer if the server refuses it); `None`: stay gone (the tutorial's
    /// client).
    pub reconnect: Option<Duration>,
    /// `(server, relay)`: the server's media address is replaced by the relay's in its
    /// candidates and answers, so the peer's media goes through a relay the test controls.
    pub media_via: Option<(std::net::SocketAddr, std::net::SocketAddr)>,
    /// Gathers relay candidates only, from the TURN servers of the channel join reply
    /// (`iceTransportPolicy: "relay"`): every packet goes through the server's TURN relay.
    pub relay_only: bool,
    /// No UDP socket at all: ICE over TCP (active candidates) only, like a browser on a
    /// network that drops UDP.
    pub tcp_only: bool,
}

/// A point in the negotiation where a peer stops, to be killed or cut off there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Negotiates normally.
    Never,
    /// Records `offerData` but never sends the `sdpOffer` it asks for.
    BeforeOffer,
    /// Sends its `sdpOffer` but never applies the `sdpAnswer`.
    BeforeAnswer,
}

impl PeerOptions {
    /// A browser-like peer named `display_name` publishing audio and video.
    pub fn new(display_name: &str) -> Self {
        Self {
            display_name: display_name.to_owned(),
            audio: true,
            video: true,
            silent: false,
            keyframe_interval: 24,
            heartbeat: Duration::from_secs(30),
            ip: IpAddr::from([127, 0, 0, 1]),
            hold: Hold::Never,
            reconnect: None,
            media_via: None,
            relay_only: false,
            tcp_only: false,
        }
    }

    /// Uses ICE-TCP only (see [`PeerOptions::tcp_only`]).
    pub fn tcp_only(mut self) -> Self {
        self.tcp_only = true;
        self
    }

    /// Sends media to `relay` instead of the server's media address `server`.
    pub fn media_via(mut self, server: std::net::SocketAddr, relay: std::net::SocketAddr) -> Self {
        self.media_via = Some((server, relay));
        self
    }

    /// Uses only relay candidates of the TURN servers the join reply names.
    pub fn relay_only(mut self) -> Self {
        self.relay_only = true;
        self
    }

    /// Reconnects for up to `within` when the socket is lost (see [`PeerOptions::reconnect`]).
    pub fn reconnecting(mut self, within: Duration) -> Self {
        self.reconnect = Some(within);
        self
    }

    /// Stops negotiating at `hold`.
    pub fn holding(mut self, hold: Hold) -> Self {
        self.hold = hold;
        self
    }

    /// Publishes only the given kinds.
    pub fn publishing(mut self, audio: bool, video: bool) -> Self {
        self.audio = audio;
        self.video = video;
        self
    }

    /// A peer publishing only its microphone.
    pub fn audio_only(display_name: &str) -> Self {
        Self::new(display_name).publishing(true, false)
    }

    /// A peer publishing nothing (a viewer).
    pub fn receive_only(display_name: &str) -> Self {
        Self::new(display_name).publishing(false, false)
    }
}

/// A media event as received.
#[derive(Debug, Clone)]
pub struct ReceivedEvent {
    /// Arrival.
    pub at: Instant,
    /// `type`.
    pub kind: String,
    /// `data` (Null when absent).
    pub data: Value,
}

/// A remote peer as the client knows it.
#[derive(Debug, Clone, Default)]
pub struct RemotePeer {
    /// Peer metadata.
    pub metadata: Value,
    /// Its tracks.
    pub track_id_to_metadata: BTreeMap<String, Value>,
}

/// An applied (or refused) `sdpAnswer`.
#[derive(Debug, Clone)]
pub struct AnswerRecord {
    /// Arrival.
    pub at: Instant,
    /// The SDP.
    pub sdp: String,
    /// The answer's midToTrackId.
    pub mid_to_track_id: BTreeMap<String, String>,
    /// setRemoteDescription error, if any.
    pub error: Option<String>,
}

/// An `sdpOffer` the client sent.
#[derive(Debug, Clone)]
pub struct OfferRecord {
    /// When it was sent.
    pub at: Instant,
    /// The SDP.
    pub sdp: String,
    /// midToTrackId sent with it.
    pub mid_to_track_id: BTreeMap<String, String>,
    /// `offerData` counts that triggered it.
    pub audio: u64,
    /// `offerData` video count.
    pub video: u64,
}

/// Everything a peer observed; read it with [`HeadlessPeer::observe`].
#[derive(Debug, Default)]
pub struct Observations {
    /// Own peer id from `peerAccepted`.
    pub peer_id: Option<String>,
    /// `peerDenied` data.
    pub denied: Option<Value>,
    /// Every media event received, in order.
    pub events: Vec<ReceivedEvent>,
    /// Client-side errors: failed lookups (server ordering bugs), SDP failures, `error` events.
    pub errors: Vec<String>,
    /// Remote peers by id.
    pub peers: BTreeMap<String, RemotePeer>,
    /// midToTrackId of the last answer.
    pub mid_to_track_id: BTreeMap<String, String>,
    /// Offers sent.
    pub offers: Vec<OfferRecord>,
    /// Answers received.
    pub answers: Vec<AnswerRecord>,
    /// `offerData` that arrived while an offer was still unanswered.
    pub overlapping_offer_data: u64,
    /// Latest peer connection state.
    pub connection_state: Option<String>,
    /// When the last answer was applied with the connection up (or the connection came up after it).
    pub negotiated_at: Option<Instant>,
    /// Local tracks by track id.
    pub local: BTreeMap<String, LocalTrackRecord>,
    /// Remote tracks by track id (or `mid:<mid>` when the lookup failed).
    pub remote: BTreeMap<String, RemoteTrackRecord>,
    /// onTrackReady calls: (track id, peer id).
    pub ready: Vec<(String, String)>,
    /// onTrackRemoved calls (from `tracksRemoved` and `peerLeft`).
    pub removed: Vec<String>,
    /// Whether the socket closed under the peer.
    pub socket_closed: bool,
    /// The peer reached its [`Hold`] point and stopped negotiating.
    pub held: bool,
    /// `phx_close` / `phx_error` pushes of the channel, in order.
    pub channel_ends: Vec<String>,
    /// The resume token of the latest `peerAccepted`.
    pub resume_token: Option<String>,
    /// Every reconnection, in order.
    pub reconnects: Vec<Reconnect>,
}

/// One reconnection after a lost socket.
#[derive(Debug, Clone)]
pub struct Reconnect {
    /// When the socket was found closed.
    pub lost: Instant,
    /// When the channel was joined again.
    pub joined: Instant,
    /// When the replayed `peerAccepted` arrived (resumed, or accepted as a new peer).
    pub accepted: Option<Instant>,
    /// The join errors met on the way (e.g. `{"reason":"resume token expired"}`).
    pub refusals: Vec<Value>,
    /// The same peer was resumed (else it joined again as a new peer).
    pub resumed: bool,
}

impl Observations {
    /// Events of type `kind`.
    pub fn events_of<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a ReceivedEvent> {
        self.events.iter().filter(move |e| e.kind == kind)
    }

    /// The last answer's m-lines.
    pub fn last_answer_sections(&self) -> Vec<sdp::MediaSection> {
        self.answers
            .last()
            .map(|a| sdp::media_sections(&a.sdp))
            .unwrap_or_default()
    }

    /// Track ids of remote peer `peer_id`.
    pub fn tracks_of(&self, peer_id: &str) -> Vec<String> {
        self.peers
            .get(peer_id)
            .map(|p| p.track_id_to_metadata.keys().cloned().collect())
            .unwrap_or_default()
    }
}

type Shared = Arc<Mutex<Observations>>;

fn lock(obs: &Shared) -> MutexGuard<'_, Observations> {
    // A panicking test thread must not hide the record from the others.
    obs.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

enum Command {
    AddTrack {
        kind: Kind,
        metadata: Value,
        reply: oneshot::Sender<Result<String, String>>,
    },
    RemoveTrack {
        track_id: String,
        reply: oneshot::Sender<Result<(), String>>,
    },
    SetSilent {
        silent: bool,
    },
    UpdatePeerMetadata {
        metadata: Value,
    },
    Leave {
        reply: oneshot::Sender<()>,
    },
    Vanish {
        reply: oneshot::Sender<()>,
    },
    DropSocket {
        reply: oneshot::Sender<()>,
    },
    CloseSocket {
        reply: oneshot::Sender<()>,
    },
    Push {
        event: Value,
    },
}

/// Handle to a running headless peer.
pub struct HeadlessPeer {
    /// Display name, for messages.
    pub name: String,
    commands: mpsc::Sender<Command>,
    obs: Shared,
    actor: JoinHandle<()>,
}

impl Drop for HeadlessPeer {
    fn drop(&mut self) {
        self.actor.abort();
    }
}

impl HeadlessPeer {
    /// Connects to `socket_url` (`ws://host:port/socket/websocket?vsn=2.0.0`), joins the channel
    /// `room:<room>` and sends the `join` media event, like the demo page. Returns once the
    /// channel join was answered; `peerAccepted` arrives later (see [`Self::wait_for`]).
    pub async fn join(socket_url: &str, room: &str, options: PeerOptions) -> Result<Self, String> {
        let (socket, incoming) = phoenix::connect(socket_url, options.heartbeat).await?;
        let topic = format!("room:{room}");
        let reply = socket
            .join(&topic, json!({}))
            .await
            .map_err(|e| format!("channel join refused: {e}"))?;
        let ice_servers = ice_servers_of(&reply);
        let obs: Shared = Arc::default();
        let (commands_tx, commands_rx) = mpsc::channel(64);
        let (pc_tx, pc_rx) = mpsc::channel(1024);
        let name = options.display_name.clone();
        let client = Client {
            socket,
            url: socket_url.to_owned(),
            topic,
            obs: obs.clone(),
            options,
            peer_id: None,
            stream_id: uuid::Uuid::new_v4().to_string(),
            local: Vec::new(),
            pc: None,
            pc_tx,
            recv_transceivers: Vec::new(),
            awaiting_answer: false,
            answered: false,
            silent: Arc::new(AtomicBool::new(false)),
            transport_up: Arc::new(AtomicBool::new(false)),
            gone: false,
            channel_errored: false,
            ice_servers,
        };
        client
            .silent
            .store(client.options.silent, Ordering::Relaxed);
        client.send_join().await;
        let actor = tokio::spawn(client.run(incoming, commands_rx, pc_rx));
        Ok(Self {
            name,
            commands: commands_tx,
            obs,
            actor,
        })
    }

    /// Runs `f` on the current observations.
    pub fn observe<T>(&self, f: impl FnOnce(&Observations) -> T) -> T {
        f(&lock(&self.obs))
    }

    /// Waits until `condition` holds, polling every 20 ms; `Err` with `what` after `timeout`.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        condition: impl Fn(&Observations) -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if condition(&lock(&self.obs)) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let o = lock(&self.obs);
                let events: Vec<&str> = o.events.iter().map(|e| e.kind.as_str()).collect();
                return Err(format!(
                    "{}: timed out after {timeout:?} waiting for {what}; events {events:?}; errors {:?}; state {:?}",
                    self.name, o.errors, o.connection_state
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Own peer id, once accepted.
    pub fn peer_id(&self) -> Option<String> {
        lock(&self.obs).peer_id.clone()
    }

    /// `addTrack` of a new local track (sends `renegotiateTracks`); returns its track id.
    pub async fn add_track(&self, kind: Kind, metadata: Value) -> Result<String, String> {
        self.ask(|reply| Command::AddTrack {
            kind,
            metadata,
            reply,
        })
        .await?
    }

    /// `removeTrack` (sends `renegotiateTracks`).
    pub async fn remove_track(&self, track_id: &str) -> Result<(), String> {
        let track_id = track_id.to_owned();
        self.ask(|reply| Command::RemoveTrack { track_id, reply })
            .await?
    }

    /// Switches every audio track between voice and digital silence.
    pub async fn set_silent(&self, silent: bool) -> Result<(), String> {
        self.command(Command::SetSilent { silent }).await
    }

    /// `updatePeerMetadata`.
    pub async fn update_peer_metadata(&self, metadata: Value) -> Result<(), String> {
        self.command(Command::UpdatePeerMetadata { metadata }).await
    }

    /// Clean leave: `leave` media event, local tracks stopped, peer connection dropped, channel
    /// left, socket closed.
    pub async fn leave(&self) -> Result<(), String> {
        self.ask(|reply| Command::Leave { reply }).await
    }

    /// Vanishes from the media plane: the peer connection stops (no more STUN, no consent
    /// answers) but the socket stays open and says nothing, so only ICE consent can tell.
    pub async fn vanish(&self) -> Result<(), String> {
        self.ask(|reply| Command::Vanish { reply }).await
    }

    /// Drops the TCP connection of the socket without a close frame (the tab was killed).
    pub async fn drop_socket(&self) -> Result<(), String> {
        self.ask(|reply| Command::DropSocket { reply }).await
    }

    /// Closes the WebSocket with a close frame, without a `leave` event or `phx_leave` (a tab
    /// navigating away in the middle of a negotiation).
    pub async fn close_socket(&self) -> Result<(), String> {
        self.ask(|reply| Command::CloseSocket { reply }).await
    }

    /// Pushes `event` (a whole media event, e.g. `{"type": "…", "data": …}`) as it is.
    pub async fn push_media_event(&self, event: Value) -> Result<(), String> {
        self.command(Command::Push { event }).await
    }

    /// Whether the peer has reached its [`Hold`] point (never, for [`Hold::Never`]).
    pub fn held(&self) -> bool {
        lock(&self.obs).held
    }

    /// Sends the command made by `make` and waits for the actor's answer on its reply channel.
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, String> {
        let (reply, rx) = oneshot::channel();
        self.command(make(reply)).await?;
        rx.await.map_err(|_| format!("{}: peer stopped", self.name))
    }

    async fn command(&self, command: Command) -> Result<(), String> {
        self.commands
            .send(command)
            .await
            .map_err(|_| format!("{}: peer stopped", self.name))
    }
}

/// What the peer connection's event handler reports to the actor.
enum PcEvent {
    Candidate(RTCIceCandidateInit),
    State(RTCPeerConnectionState),
    Track(Arc<dyn TrackRemote>),
}

/// Forwards peer connection events to the actor. The handler runs on the connection's driver,
/// so it must never wait for the actor (which may be waiting for the driver): events go
/// through a bounded queue with `try_send`; overflow is recorded as an error.
struct Handler {
    tx: mpsc::Sender<PcEvent>,
    obs: Shared,
}

impl Handler {
    fn forward(&self, event: PcEvent) {
        if self.tx.try_send(event).is_err() {
            lock(&self.obs)
                .errors
                .push("peer connection event queue full or closed".into());
        }
    }
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        match event.candidate.to_json() {
            Ok(init) => self.forward(PcEvent::Candidate(init)),
            Err(e) => lock(&self.obs).errors.push(format!("local candidate: {e}")),
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.forward(PcEvent::State(state));
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        self.forward(PcEvent::Track(track));
    }
}

/// Hands inbound keyframe requests (PLI, FIR) to the application, where the sending tasks
/// answer them with a keyframe as an encoder would. webrtc-rs stops inbound RTCP at the end of
/// the interceptor chain unless a packet is marked for the application; everything else is left
/// to the other interceptors and not marked.
struct KeyframeRequests {
    read: std::collections::VecDeque<rtc::interceptor::TaggedPacket>,
    write: std::collections::VecDeque<rtc::interceptor::TaggedPacket>,
}

impl rtc::sansio::Protocol<rtc::interceptor::TaggedPacket, rtc::interceptor::TaggedPacket, ()>
    for KeyframeRequests
{
    type Rout = rtc::interceptor::TaggedPacket;
    type Wout = rtc::interceptor::TaggedPacket;
    type Eout = ();
    type Error = webrtc::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: rtc::interceptor::TaggedPacket) -> Result<(), Self::Error> {
        if let rtc::interceptor::Packet::Rtcp(packets) = &msg.message.packet {
            let requests: Vec<Box<dyn rtc::rtcp::Packet>> = packets
                .iter()
                .filter(|p| is_keyframe_request(p.as_ref()))
                .cloned()
                .collect();
            if requests.is_empty() {
                return Ok(());
            }
            msg.message.packet = rtc::interceptor::Packet::Rtcp(requests);
            msg.message
                .add(rtc::interceptor::Attribute::DeliverToApplication);
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: rtc::interceptor::TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }
}

impl rtc::interceptor::Interceptor for KeyframeRequests {
    fn bind_local_stream(&mut self, _info: &rtc::interceptor::StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &rtc::interceptor::StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &rtc::interceptor::StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &rtc::interceptor::StreamInfo) {}
}

fn is_keyframe_request(packet: &dyn rtc::rtcp::Packet) -> bool {
    let any = packet.as_any();
    any.is::<rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication>()
        || any.is::<rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest>()
}

/// Negotiated sending parameters of one local track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SendParams {
    payload_type: u8,
    audio_level_id: Option<u8>,
}

struct LocalTrack {
    track_id: String,
    kind: Kind,
    metadata: Value,
    track: Arc<TrackLocalStaticRTP>,
    sender: Option<Arc<dyn RtpSender>>,
    removed: bool,
    params: watch::Sender<Option<SendParams>>,
    task: JoinHandle<()>,
}

impl LocalTrack {
    /// Adds this track to `pc` and keeps its sender.
    async fn attach(&mut self, pc: &dyn PeerConnection) -> Result<(), String> {
        let sender = pc
            .add_track(self.track.clone())
            .await
            .map_err(|e| format!("addTrack: {e}"))?;
        self.sender = Some(sender);
        Ok(())
    }
}

struct Client {
    socket: PhoenixSocket,
    /// The socket URL, to reconnect to.
    url: String,
    topic: String,
    obs: Shared,
    options: PeerOptions,
    peer_id: Option<String>,
    /// msid stream id shared by all local tracks (one getUserMedia stream).
    stream_id: String,
    local: Vec<LocalTrack>,
    pc: Option<Arc<dyn PeerConnection>>,
    pc_tx: mpsc::Sender<PcEvent>,
    /// recvonly transceivers added for `offerData`, with their kind.
    recv_transceivers: Vec<(Kind, Arc<dyn RtpTransceiver>)>,
    awaiting_answer: bool,
    /// An answer has been applied since the last offer.
    answered: bool,
    silent: Arc<AtomicBool>,
    /// DTLS/SRTP is up: like a browser's RTP sender, media only leaves once the transport is.
    transport_up: Arc<AtomicBool>,
    /// Left or vanished: ignore further server events.
    gone: bool,
    /// The server errored the channel (`phx_error`): rejoin it, as phoenix.js does.
    channel_errored: bool,
    /// The `iceServers` of the channel join reply.
    ice_servers: Vec<RTCIceServer>,
}

impl Client {
    async fn run(
        mut self,
        mut incoming: mpsc::Receiver<Incoming>,
        mut commands: mpsc::Receiver<Command>,
        mut pc_events: mpsc::Receiver<PcEvent>,
    ) {
        loop {
            tokio::select! {
                message = incoming.recv() => match message {
                    Some(message) => {
                        self.on_socket_message(message).await;
                        // phoenix.js rejoins an errored channel on its socket; the peer rejoins
                        // on a fresh one, which the server cannot tell apart (a new channel
                        // join carrying the resume token).
                        if std::mem::take(&mut self.channel_errored)
                            && let Some(back) = self.reconnect().await
                        {
                            incoming = back;
                        }
                    }
                    None => {
                        lock(&self.obs).socket_closed = true;
                        if let Some(back) = self.reconnect().await {
                            incoming = back;
                            continue;
                        }
                        // Keep serving commands so leave()/vanish() still answer.
                        while let Some(command) = commands.recv().await {
                            self.on_command(command).await;
                        }
                        return;
                    }
                },
                command = commands.recv() => match command {
                    Some(command) => self.on_command(command).await,
                    None => break,
                },
                Some(event) = pc_events.recv() => self.on_pc_event(event).await,
            }
        }
        self.shutdown_media().await;
    }

    /// The `join` media event, as the demo page sends it.
    async fn send_join(&self) {
        let metadata = json!({"displayName": self.options.display_name});
        self.send_event(
            "join",
            Some(json!({"receiveMedia": true, "metadata": metadata})),
        )
        .await;
    }

    /// The socket is gone: with [`PeerOptions::reconnect`], connects again with phoenix.js's
    /// backoff ([`RECONNECT_AFTER`]) and rejoins the channel with the resume token; if the server
    /// refuses it (it restarted, or the grace ran out) the peer starts afresh as a new peer on
    /// that socket. Returns the new socket's pushes, or `None` if it gave up or may not try.
    async fn reconnect(&mut self) -> Option<mpsc::Receiver<Incoming>> {
        let within = self.options.reconnect.filter(|_| !self.gone)?;
        let lost = Instant::now();
        let mut refusals = Vec::new();
        let mut tries = 0;
        while lost.elapsed() < within {
            let wait = RECONNECT_AFTER.get(tries).copied().unwrap_or(5000);
            tries += 1;
            tokio::time::sleep(Duration::from_millis(wait)).await;
            let Ok((socket, incoming)) = phoenix::connect(&self.url, self.options.heartbeat).await
            else {
                continue;
            };
            let token = lock(&self.obs).resume_token.clone();
            let mut resumed = false;
            if let Some(token) = token {
                match socket
                    .join(&self.topic, json!({"resumeToken": token}))
                    .await
                {
                    Ok(_) => resumed = true,
                    Err(refusal) if refusal["reason"] == "socket closed" => continue,
                    Err(refusal) => refusals.push(refusal),
                }
            }
            if !resumed {
                if let Err(refusal) = socket.join(&self.topic, json!({})).await {
                    refusals.push(refusal);
                    continue;
                }
                self.start_over().await;
            }
            self.socket = socket;
            lock(&self.obs).reconnects.push(Reconnect {
                lost,
                joined: Instant::now(),
                accepted: None,
                refusals: std::mem::take(&mut refusals),
                resumed,
            });
            if !resumed {
                self.send_join().await;
            }
            log::info!(
                "{}: socket back after {:?} ({})",
                self.options.display_name,
                lost.elapsed(),
                if resumed { "resumed" } else { "as a new peer" }
            );
            return Some(incoming);
        }
        self.error(format!(
            "gave up reconnecting after {within:?}: {refusals:?}"
        ));
        None
    }

    /// Forgets the old session (the server no longer knows the peer): media stopped, no peer
    /// connection, no local tracks (they are added again on `peerAccepted`), no remote peers.
    async fn start_over(&mut self) {
        self.shutdown_media().await;
        self.local.clear();
        self.recv_transceivers.clear();
        self.peer_id = None;
        self.awaiting_answer = false;
        self.answered = false;
        self.transport_up.store(false, Ordering::Relaxed);
        let mut o = lock(&self.obs);
        o.peer_id = None;
        o.resume_token = None;
        let gone: Vec<String> = std::mem::take(&mut o.peers)
            .into_values()
            .flat_map(|p| p.track_id_to_metadata.into_keys())
            .collect();
        o.removed.extend(gone);
        for track in o.local.values_mut() {
            track.active = false;
        }
    }

    async fn send_event(&self, kind: &str, data: Option<Value>) {
        let event = match data {
            Some(data) => json!({"type": kind, "data": data}),
            None => json!({"type": kind}),
        };
        self.push_media_event(&event).await;
    }

    /// Pushes `event` as the tutorial client does: a `mediaEvent` whose `data` is its JSON text.
    async fn push_media_event(&self, event: &Value) {
        self.socket
            .push(
                &self.topic,
                "mediaEvent",
                json!({"data": event.to_string()}),
            )
            .await;
    }

    fn error(&self, message: String) {
        log::warn!("{}: {message}", self.options.display_name);
        lock(&self.obs).errors.push(message);
    }

    async fn on_socket_message(&mut self, message: Incoming) {
        match message.event.as_str() {
            "mediaEvent" => {}
            "socket_closed" => {
                lock(&self.obs).socket_closed = true;
                return;
            }
            "phx_error" | "phx_close" => {
                lock(&self.obs).channel_ends.push(message.event.clone());
                if message.event == "phx_error" && self.options.reconnect.is_some() && !self.gone {
                    self.channel_errored = true;
                    return;
                }
                if !self.gone {
                    self.error(format!("channel {}: {}", message.event, message.payload));
                }
                return;
            }
            _ => return,
        }
        let Some(text) = message.payload["data"].as_str() else {
            self.error(format!(
                "mediaEvent without string data: {}",
                message.payload
            ));
            return;
        };
        let event: Value = match serde_json::from_str(text) {
            Ok(event) => event,
            Err(e) => {
                self.error(format!("mediaEvent data is not JSON ({e}): {text}"));
                return;
            }
        };
        let kind = event["type"].as_str().unwrap_or_default().to_owned();
        let data = event.get("data").cloned().unwrap_or(Value::Null);
        lock(&self.obs).events.push(ReceivedEvent {
            at: Instant::now(),
            kind: kind.clone(),
            data: data.clone(),
        });
        if self.gone {
            return;
        }
        if let Err(e) = self.on_media_event(&kind, data).await {
            self.error(format!("{kind}: {e}"));
        }
    }

    async fn on_media_event(&mut self, kind: &str, data: Value) -> Result<(), String> {
        match kind {
            "peerAccepted" if self.peer_id.is_some() => return self.on_resumed(&data).await,
            "peerAccepted" => {
                let id = data["id"].as_str().ok_or("no id")?.to_owned();
                {
                    let mut o = lock(&self.obs);
                    o.peer_id = Some(id.clone());
                    o.resume_token = data["resumeToken"].as_str().map(str::to_owned);
                    if let Some(r) = o.reconnects.last_mut() {
                        r.accepted.get_or_insert(Instant::now());
                    }
                    for peer in data["peersInRoom"].as_array().ok_or("no peersInRoom")? {
                        let (pid, remote) = parse_peer(peer)?;
                        o.peers.insert(pid, remote);
                    }
                }
                self.peer_id = Some(id);
                // The demo's onJoinSuccess adds every local track.
                if self.options.audio {
                    self.add_track(Kind::Audio, json!({})).await?;
                }
                if self.options.video {
                    self.add_track(Kind::Video, json!({})).await?;
                }
            }
            "peerDenied" => lock(&self.obs).denied = Some(data),
            "peerJoined" => {
                let (pid, remote) = parse_peer(&data["peer"])?;
                if Some(&pid) != self.peer_id.as_ref() {
                    lock(&self.obs).peers.insert(pid, remote);
                }
            }
            "peerLeft" => {
                let pid = data["peerId"].as_str().ok_or("no peerId")?;
                let mut o = lock(&self.obs);
                match o.peers.remove(pid) {
                    Some(peer) => o.removed.extend(peer.track_id_to_metadata.into_keys()),
                    None => return Err(format!("peerLeft for unknown peer {pid}")),
                }
            }
            "peerUpdated" => {
                let pid = data["peerId"].as_str().ok_or("no peerId")?;
                let mut o = lock(&self.obs);
                let peer = o.peers.get_mut(pid).ok_or("peerUpdated for unknown peer")?;
                peer.metadata = data["metadata"].clone();
            }
            "tracksAdded" => {
                let pid = data["peerId"].as_str().ok_or("no peerId")?;
                if Some(pid) == self.peer_id.as_deref() {
                    return Ok(());
                }
                let tracks = data["trackIdToMetadata"]
                    .as_object()
                    .ok_or("no trackIdToMetadata")?;
                let mut o = lock(&self.obs);
                let peer = o
                    .peers
                    .get_mut(pid)
                    .ok_or_else(|| format!("tracksAdded before peerJoined for {pid}"))?;
                for (track_id, metadata) in tracks {
                    peer.track_id_to_metadata
                        .insert(track_id.clone(), metadata.clone());
                }
            }
            "tracksRemoved" => {
                let pid = data["peerId"].as_str().ok_or("no peerId")?;
                if Some(pid) == self.peer_id.as_deref() {
                    return Ok(());
                }
                let ids = data["trackIds"].as_array().ok_or("no trackIds")?;
                let mut o = lock(&self.obs);
                let peer = o
                    .peers
                    .get_mut(pid)
                    .ok_or_else(|| format!("tracksRemoved for unknown peer {pid}"))?;
                let mut removed = Vec::new();
                for id in ids.iter().filter_map(Value::as_str) {
                    if peer.track_id_to_metadata.remove(id).is_some() {
                        removed.push(id.to_owned());
                    }
                }
                o.removed.extend(removed);
            }
            "trackUpdated" => {
                let pid = data["peerId"].as_str().ok_or("no peerId")?;
                let tid = data["trackId"].as_str().ok_or("no trackId")?;
                let mut o = lock(&self.obs);
                if let Some(meta) = o
                    .peers
                    .get_mut(pid)
                    .and_then(|p| p.track_id_to_metadata.get_mut(tid))
                {
                    *meta = data["metadata"].clone();
                }
            }
            // Frozen at the hold point, and for good: nothing negotiates any more.
            "offerData" | "sdpAnswer" if self.holds_at(kind) => {}
            "offerData" => {
                let audio = data["audio"].as_u64().ok_or("no audio count")?;
                let video = data["video"].as_u64().ok_or("no video count")?;
                self.on_offer_data(audio, video).await?;
            }
            "sdpAnswer" => self.on_answer(data).await?,
            "candidate" => {
                let candidate = data["candidate"].as_str().ok_or("no candidate")?;
                let candidate = self.via_relay(candidate);
                let pc = self.pc.clone().ok_or("candidate before any offer")?;
                let init = RTCIceCandidateInit {
                    candidate: candidate.clone(),
                    sdp_mline_index: data["sdpMLineIndex"].as_u64().map(|i| i as u16),
                    ..Default::default()
                };
                pc.add_ice_candidate(init)
                    .await
                    .map_err(|e| format!("addIceCandidate({candidate}): {e}"))?;
            }
            "error" => {
                // The client reports onConnectionError and leaves.
                self.error(format!("server error event: {data}"));
                self.leave().await;
            }
            other => return Err(format!("unknown media event type {other}")),
        }
        Ok(())
    }

    /// The replayed `peerAccepted` of a resume: the room as it is now replaces what the peer
    /// knew (peers gone meanwhile are forgotten with their tracks), the next token is kept, and
    /// an offer whose answer was lost in the cut is asked for again. Local tracks stay.
    async fn on_resumed(&mut self, data: &Value) -> Result<(), String> {
        let id = data["id"].as_str().ok_or("no id")?;
        if Some(id) != self.peer_id.as_deref() {
            return Err(format!("resumed as {id}, not {:?}", self.peer_id));
        }
        let mut now_in_room = BTreeMap::new();
        for peer in data["peersInRoom"].as_array().ok_or("no peersInRoom")? {
            let (pid, remote) = parse_peer(peer)?;
            now_in_room.insert(pid, remote);
        }
        {
            let mut o = lock(&self.obs);
            o.resume_token = data["resumeToken"].as_str().map(str::to_owned);
            if let Some(r) = o.reconnects.last_mut() {
                r.accepted.get_or_insert(Instant::now());
            }
            let old = std::mem::replace(&mut o.peers, now_in_room);
            let gone: Vec<String> = old
                .into_iter()
                .filter(|(pid, _)| !o.peers.contains_key(pid))
                .flat_map(|(_, p)| p.track_id_to_metadata.into_keys())
                .collect();
            o.removed.extend(gone);
        }
        if self.awaiting_answer {
            self.send_event("renegotiateTracks", Some(json!({}))).await;
        }
        Ok(())
    }

    /// `text` (a candidate, an SDP) with the server's media address replaced by the relay's,
    /// with [`PeerOptions::media_via`].
    fn via_relay(&self, text: &str) -> String {
        match self.options.media_via {
            Some((server, relay)) => text.replace(
                &format!("{} {} typ", server.ip(), server.port()),
                &format!("{} {} typ", relay.ip(), relay.port()),
            ),
            None => text.to_owned(),
        }
    }

    /// Whether the `kind` event finds the peer at (or past) its hold point; marks it held.
    fn holds_at(&self, kind: &str) -> bool {
        let mut o = lock(&self.obs);
        o.held |= match self.options.hold {
            Hold::Never => false,
            Hold::BeforeOffer => kind == "offerData",
            Hold::BeforeAnswer => kind == "sdpAnswer",
        };
        o.held
    }

    async fn add_track(&mut self, kind: Kind, metadata: Value) -> Result<String, String> {
        let peer_id = self
            .peer_id
            .clone()
            .ok_or("Cannot add tracks before being accepted by the server")?;
        let track_id = format!("{peer_id}:{}", uuid::Uuid::new_v4());
        let ssrc: u32 = rand::random();
        let tag: u32 = rand::random();
        let track = track_with_ssrc(
            self.stream_id.clone(),
            uuid::Uuid::new_v4().to_string(),
            format!("{} {}", self.options.display_name, kind.as_str()),
            kind,
            ssrc,
        );
        let (params_tx, params_rx) = watch::channel(None);
        lock(&self.obs).local.insert(
            track_id.clone(),
            LocalTrackRecord {
                track_id: track_id.clone(),
                kind,
                ssrc,
                tag,
                sent: Vec::new(),
                refused: 0,
                active: true,
                keyframe_requests: 0,
            },
        );
        let task = tokio::spawn(send_media(
            kind,
            track.clone(),
            ssrc,
            tag,
            params_rx,
            self.silent.clone(),
            self.transport_up.clone(),
            self.options.keyframe_interval,
            self.obs.clone(),
            track_id.clone(),
        ));
        let mut local = LocalTrack {
            track_id: track_id.clone(),
            kind,
            metadata,
            track,
            sender: None,
            removed: false,
            params: params_tx,
            task,
        };
        if let Some(pc) = &self.pc {
            local.attach(pc.as_ref()).await?;
            force_sendonly(pc.as_ref()).await?;
        }
        self.local.push(local);
        self.send_event("renegotiateTracks", Some(json!({}))).await;
        Ok(track_id)
    }

    async fn remove_track(&mut self, track_id: &str) -> Result<(), String> {
        let pc = self.pc.clone();
        let local = self
            .local
            .iter_mut()
            .find(|t| t.track_id == track_id && !t.removed)
            .ok_or("no such local track")?;
        local.removed = true;
        local.task.abort();
        if let Some(record) = lock(&self.obs).local.get_mut(track_id) {
            record.active = false;
        }
        let _ = local.params.send(None);
        if let (Some(pc), Some(sender)) = (pc, local.sender.take()) {
            pc.remove_track(&sender)
                .await
                .map_err(|e| format!("removeTrack: {e}"))?;
        }
        self.send_event("renegotiateTracks", Some(json!({}))).await;
        Ok(())
    }

    async fn build_pc(&self) -> Result<Arc<dyn PeerConnection>, String> {
        let mut media_engine = media_engine()?;
        let registry = register_default_interceptors(Registry::new(), &mut media_engine)
            .map_err(|e| e.to_string())?
            // Last in the chain, so the other interceptors have seen all inbound RTCP first.
            .with(
                rtc::interceptor::Slot::from(14_000),
                KeyframeRequests {
                    read: Default::default(),
                    write: Default::default(),
                },
            );
        let settings = SettingEngineBuilder::new()
            .with_include_loopback_candidate(true)
            .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
            .build();
        let configuration = if self.options.relay_only {
            RTCConfigurationBuilder::new()
                .with_ice_servers(self.ice_servers.clone())
                .with_ice_transport_policy(RTCIceTransportPolicy::Relay)
                .build()
        } else {
            RTCConfigurationBuilder::new().build()
        };
        let pc = PeerConnectionBuilder::new()
            .with_configuration(configuration)
            .with_media_engine(media_engine)
            .with_setting_engine(settings)
            .with_interceptor_registry(registry)
            .with_handler(Arc::new(Handler {
                tx: self.pc_tx.clone(),
                obs: self.obs.clone(),
            }))
            .with_udp_addrs(if self.options.tcp_only {
                vec![]
            } else {
                vec![std::net::SocketAddr::new(self.options.ip, 0)]
            })
            .with_tcp_addrs(if self.options.tcp_only {
                vec![std::net::SocketAddr::new(self.options.ip, 0)]
            } else {
                vec![]
            })
            .build()
            .await
            .map_err(|e| format!("RTCPeerConnection: {e}"))?;
        Ok(Arc::new(pc))
    }

    async fn on_offer_data(&mut self, audio: u64, video: u64) -> Result<(), String> {
        if self.awaiting_answer {
            lock(&self.obs).overlapping_offer_data += 1;
        }
        let pc = match self.pc.clone() {
            None => {
                let pc = self.build_pc().await?;
                for local in self.local.iter_mut().filter(|t| !t.removed) {
                    local.attach(pc.as_ref()).await?;
                }
                force_sendonly(pc.as_ref()).await?;
                self.pc = Some(pc.clone());
                pc
            }
            Some(pc) => {
                pc.restart_ice()
                    .await
                    .map_err(|e| format!("restartIce: {e}"))?;
                pc
            }
        };
        // addTransceiversIfNeeded: never removes, adds recvonly until the count matches.
        for (kind, wanted) in [(Kind::Audio, audio), (Kind::Video, video)] {
            let mut have = 0u64;
            for (k, t) in &self.recv_transceivers {
                if *k == kind
                    && t.direction().await.ok() == Some(RTCRtpTransceiverDirection::Recvonly)
                {
                    have += 1;
                }
            }
            for _ in have..wanted {
                let transceiver = pc
                    .add_transceiver_from_kind(
                        rtp_kind(kind),
                        Some(RTCRtpTransceiverInit {
                            direction: RTCRtpTransceiverDirection::Recvonly,
                            streams: vec![],
                            send_encodings: vec![],
                        }),
                    )
                    .await
                    .map_err(|e| format!("addTransceiver: {e}"))?;
                self.recv_transceivers.push((kind, transceiver));
            }
        }
        let offer = pc
            .create_offer(None)
            .await
            .map_err(|e| format!("createOffer: {e}"))?;
        pc.set_local_description(offer.clone())
            .await
            .map_err(|e| format!("setLocalDescription: {e}"))?;
        let mid_to_track_id = self.mid_to_track_id(pc.as_ref()).await;
        let track_id_to_metadata: serde_json::Map<String, Value> = self
            .local
            .iter()
            .map(|t| (t.track_id.clone(), t.metadata.clone()))
            .collect();
        self.awaiting_answer = true;
        self.answered = false;
        lock(&self.obs).offers.push(OfferRecord {
            at: Instant::now(),
            sdp: offer.sdp.clone(),
            mid_to_track_id: mid_to_track_id.clone(),
            audio,
            video,
        });
        self.send_event(
            "sdpOffer",
            Some(json!({
                "sdpOffer": {"type": "offer", "sdp": offer.sdp},
                "trackIdToTrackMetadata": track_id_to_metadata,
                "midToTrackId": mid_to_track_id,
            })),
        )
        .await;
        Ok(())
    }

    /// mids of the transceivers whose sender carries one of our (not removed) local tracks.
    async fn mid_to_track_id(&self, pc: &dyn PeerConnection) -> BTreeMap<String, String> {
        let mut map = BTreeMap::new();
        for transceiver in pc.get_transceivers().await {
            let Ok(Some(sender)) = transceiver.sender().await else {
                continue;
            };
            let Ok(Some(mid)) = transceiver.mid().await else {
                continue;
            };
            if let Some(local) = self
                .local
                .iter()
                .find(|t| !t.removed && t.sender.as_ref().is_some_and(|s| s.id() == sender.id()))
            {
                map.insert(mid, local.track_id.clone());
            }
        }
        map
    }

    async fn on_answer(&mut self, data: Value) -> Result<(), String> {
        let sdp = self.via_relay(data["sdp"].as_str().ok_or("no sdp")?);
        if data["type"] != "answer" {
            return Err(format!("sdpAnswer type is {}", data["type"]));
        }
        let mid_to_track_id: BTreeMap<String, String> = data["midToTrackId"]
            .as_object()
            .ok_or("no midToTrackId")?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
        let pc = self.pc.clone().ok_or("sdpAnswer without an offer")?;
        lock(&self.obs).mid_to_track_id = mid_to_track_id.clone();
        let result = match RTCSessionDescription::answer(sdp.clone()) {
            Ok(answer) => pc
                .set_remote_description(answer)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        self.awaiting_answer = false;
        let connected = {
            let mut o = lock(&self.obs);
            o.answers.push(AnswerRecord {
                at: Instant::now(),
                sdp: sdp.clone(),
                mid_to_track_id,
                error: result.as_ref().err().cloned(),
            });
            o.connection_state.as_deref() == Some("connected")
        };
        result.map_err(|e| format!("setRemoteDescription: {e}"))?;
        self.answered = true;
        if connected {
            lock(&self.obs).negotiated_at = Some(Instant::now());
        }
        // The negotiated payload type and extension ids, for the media tasks.
        for local in self.local.iter().filter(|t| !t.removed) {
            let Some(sender) = &local.sender else {
                continue;
            };
            let params = sender
                .get_parameters()
                .await
                .map_err(|e| format!("getParameters: {e}"))?;
            let Some(codec) = params.rtp_parameters.codecs.first() else {
                continue;
            };
            let audio_level_id = params
                .rtp_parameters
                .header_extensions
                .iter()
                .find(|h| h.uri == AUDIO_LEVEL_URI)
                .map(|h| h.id as u8);
            let _ = local.params.send(Some(SendParams {
                payload_type: codec.payload_type,
                audio_level_id,
            }));
        }
        Ok(())
    }

    async fn on_pc_event(&mut self, event: PcEvent) {
        match event {
            PcEvent::Candidate(init) => {
                if self.gone {
                    return;
                }
                self.send_event(
                    "candidate",
                    Some(json!({
                        "candidate": init.candidate,
                        "sdpMLineIndex": init.sdp_mline_index.unwrap_or(0),
                    })),
                )
                .await;
            }
            PcEvent::State(state) => {
                let name = state.to_string();
                self.transport_up.store(
                    state == RTCPeerConnectionState::Connected,
                    Ordering::Relaxed,
                );
                let mut o = lock(&self.obs);
                if state == RTCPeerConnectionState::Connected && self.answered {
                    o.negotiated_at = Some(Instant::now());
                }
                o.connection_state = Some(name);
            }
            PcEvent::Track(track) => {
                if let Some(pc) = self.pc.clone() {
                    tokio::spawn(receive_media(
                        track,
                        pc,
                        self.obs.clone(),
                        self.options.display_name.clone(),
                    ));
                }
            }
        }
    }

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::AddTrack {
                kind,
                metadata,
                reply,
            } => {
                let _ = reply.send(self.add_track(kind, metadata).await);
            }
            Command::RemoveTrack { track_id, reply } => {
                let _ = reply.send(self.remove_track(&track_id).await);
            }
            Command::SetSilent { silent } => self.silent.store(silent, Ordering::Relaxed),
            Command::UpdatePeerMetadata { metadata } => {
                self.send_event("updatePeerMetadata", Some(json!({"metadata": metadata})))
                    .await;
            }
            Command::Leave { reply } => {
                self.leave().await;
                self.socket.leave(&self.topic).await;
                self.socket.close().await;
                let _ = reply.send(());
            }
            Command::Vanish { reply } => {
                self.gone = true;
                self.shutdown_media().await;
                let _ = reply.send(());
            }
            Command::DropSocket { reply } => {
                self.gone = true;
                self.socket.abort().await;
                self.shutdown_media().await;
                let _ = reply.send(());
            }
            Command::CloseSocket { reply } => {
                self.gone = true;
                self.socket.close().await;
                self.shutdown_media().await;
                let _ = reply.send(());
            }
            Command::Push { event } => self.push_media_event(&event).await,
        }
    }

    /// `leave()`: the event, then local tracks stop and the connection goes.
    async fn leave(&mut self) {
        if self.gone {
            return;
        }
        self.send_event("leave", None).await;
        self.gone = true;
        self.shutdown_media().await;
    }

    async fn shutdown_media(&mut self) {
        for local in &self.local {
            local.task.abort();
        }
        if let Some(pc) = self.pc.take() {
            let _ = pc.close().await;
        }
    }
}

fn parse_peer(peer: &Value) -> Result<(String, RemotePeer), String> {
    let id = peer["id"].as_str().ok_or("peer without id")?.to_owned();
    let tracks = peer["trackIdToMetadata"]
        .as_object()
        .ok_or("peer without trackIdToMetadata")?
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok((
        id,
        RemotePeer {
            metadata: peer["metadata"].clone(),
            track_id_to_metadata: tracks,
        },
    ))
}

/// The client forces every transceiver that would send and receive to send only.
async fn force_sendonly(pc: &dyn PeerConnection) -> Result<(), String> {
    for transceiver in pc.get_transceivers().await {
        if transceiver.direction().await.ok() == Some(RTCRtpTransceiverDirection::Sendrecv) {
            transceiver
                .set_direction(RTCRtpTransceiverDirection::Sendonly)
                .await
                .map_err(|e| format!("set direction: {e}"))?;
        }
    }
    Ok(())
}

/// webrtc-rs's name for `kind`.
pub fn rtp_kind(kind: Kind) -> RtpCodecKind {
    match kind {
        Kind::Audio => RtpCodecKind::Audio,
        Kind::Video => RtpCodecKind::Video,
    }
}

/// Chrome's payload types and parameters for the two codecs the demo uses.
pub fn codec_of(kind: Kind) -> RTCRtpCodecParameters {
    match kind {
        Kind::Audio => RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: MIME_TYPE_OPUS.to_owned(),
                clock_rate: 48000,
                channels: 2,
                sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
                rtcp_feedback: vec![],
            },
            payload_type: 111,
        },
        Kind::Video => RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: MIME_TYPE_VP8.to_owned(),
                clock_rate: 90000,
                channels: 0,
                sdp_fmtp_line: String::new(),
                rtcp_feedback: vec![],
            },
            payload_type: 96,
        },
    }
}

/// A media engine with Chrome's two codecs ([`codec_of`]) and the audio level extension.
pub fn media_engine() -> Result<MediaEngine, String> {
    let mut engine = MediaEngine::default();
    for kind in [Kind::Audio, Kind::Video] {
        engine
            .register_codec(codec_of(kind), rtp_kind(kind))
            .map_err(|e| e.to_string())?;
    }
    engine
        .register_header_extension(
            RTCRtpHeaderExtensionCapability {
                uri: AUDIO_LEVEL_URI.to_owned(),
            },
            RtpCodecKind::Audio,
            None,
        )
        .map_err(|e| e.to_string())?;
    Ok(engine)
}

/// A local `kind` track (stream `stream_id`, track `id`, `label`) sent with one SSRC in
/// [`codec_of`] `kind`.
pub fn track_with_ssrc(
    stream_id: String,
    id: String,
    label: String,
    kind: Kind,
    ssrc: u32,
) -> Arc<TrackLocalStaticRTP> {
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        stream_id,
        id,
        label,
        rtp_kind(kind),
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: codec_of(kind).rtp_codec,
            ..Default::default()
        }],
    )))
}

/// Sends synthetic media on one local track at its real rate once negotiated.
#[allow(clippy::too_many_arguments)]
async fn send_media(
    kind: Kind,
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    tag: u32,
    mut params: watch::Receiver<Option<SendParams>>,
    silent: Arc<AtomicBool>,
    transport_up: Arc<AtomicBool>,
    keyframe_interval: u64,
    obs: Shared,
    track_id: String,
) {
    let mut opus = OpusGenerator::new(tag);
    let mut vp8 = Vp8Generator::new(tag, keyframe_interval);
    let period = match kind {
        Kind::Audio => OpusGenerator::PTIME,
        Kind::Video => Vp8Generator::FRAME_INTERVAL,
    };
    let mut ticker = tokio::time::interval(period);
    // A late tick sends one packet, not a burst: sequence numbers stay continuous either way.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_negotiated = false;
    // `poll` answers None at once while the track is not bound: then wait for the next tick.
    let mut bound = true;
    loop {
        if bound {
            tokio::select! {
                _ = ticker.tick() => {}
                event = track.poll() => {
                    match event {
                        Some(TrackLocalEvent::OnRtcpPacket(packets)) => {
                            if packets.iter().any(|p| is_keyframe_request(p.as_ref())) {
                                vp8.request_keyframe();
                                if let Some(record) = lock(&obs).local.get_mut(&track_id) {
                                    record.keyframe_requests += 1;
                                }
                            }
                        }
                        _ => bound = false,
                    }
                    continue;
                }
            }
        } else {
            ticker.tick().await;
            bound = true;
        }
        let Some(p) = *params.borrow_and_update() else {
            continue;
        };
        if !transport_up.load(Ordering::Relaxed) {
            continue;
        }
        if !was_negotiated {
            // Start with a keyframe, like an encoder that just got a sender.
            vp8.request_keyframe();
            was_negotiated = true;
        }
        let packets: Vec<GeneratedPacket> = match kind {
            Kind::Audio => vec![opus.next_packet(silent.load(Ordering::Relaxed))],
            Kind::Video => vp8.next_frame(),
        };
        for g in packets {
            let mut header = rtc::rtp::header::Header {
                version: 2,
                marker: g.marker,
                payload_type: p.payload_type,
                sequence_number: g.sequence_number,
                timestamp: g.timestamp,
                ssrc,
                ..Default::default()
            };
            if let (Some(id), Some(level)) = (p.audio_level_id, g.audio_level) {
                header.extension = true;
                header.extension_profile = 0xBEDE;
                header.extensions = vec![rtc::rtp::header::Extension {
                    id,
                    payload: Bytes::from(vec![level]),
                }];
            }
            let packet = rtc::rtp::Packet {
                header,
                payload: Bytes::from(g.payload),
            };
            // webrtc-rs unbinds and rebinds a sending track around renegotiations; a browser's
            // packetizer never loses a packet there, so a refused write is retried briefly
            // rather than turned into a sequence gap that would be blamed on the server.
            let mut result = track.write_rtp(packet.clone()).await;
            let retried = result.is_err();
            for _ in 0..20 {
                if result.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                result = track.write_rtp(packet.clone()).await;
            }
            let mut o = lock(&obs);
            let Some(record) = o.local.get_mut(&track_id) else {
                return;
            };
            match result {
                Ok(()) => record.sent.push(SentPacket {
                    index: g.trailer.index,
                    at: Instant::now(),
                    silent: g.silent,
                    retried,
                }),
                Err(_) => record.refused += 1,
            }
        }
    }
}

/// The client's `ontrack`: resolve the track id through midToTrackId and the peer through
/// trackIdToMetadata (recording an error if either fails, as the real client would throw),
/// then record every packet.
async fn receive_media(
    track: Arc<dyn TrackRemote>,
    pc: Arc<dyn PeerConnection>,
    obs: Shared,
    name: String,
) {
    let Some(TrackRemoteEvent::OnOpen(init)) = track.poll().await else {
        lock(&obs)
            .errors
            .push("remote track did not start with OnOpen".into());
        return;
    };
    let mut mid = None;
    for transceiver in pc.get_transceivers().await {
        if let Ok(Some(receiver)) = transceiver.receiver().await
            && receiver.id() == init.receiver_id
        {
            mid = transceiver.mid().await.ok().flatten();
        }
    }
    let kind = match track.kind().await {
        RtpCodecKind::Audio => Some(Kind::Audio),
        RtpCodecKind::Video => Some(Kind::Video),
        _ => None,
    };
    let key = {
        let mut o = lock(&obs);
        let Some(mid) = mid else {
            o.errors.push("ontrack: transceiver has no mid".into());
            return;
        };
        let track_id = o.mid_to_track_id.get(&mid).cloned();
        let peer_id = track_id.as_ref().and_then(|tid| {
            o.peers
                .iter()
                .find(|(_, p)| p.track_id_to_metadata.contains_key(tid))
                .map(|(pid, _)| pid.clone())
        });
        match (&track_id, &peer_id) {
            (None, _) => o
                .errors
                .push(format!("ontrack: mid {mid} is not in midToTrackId")),
            (Some(tid), None) => o
                .errors
                .push(format!("ontrack: no peer has track {tid} (mid {mid})")),
            (Some(tid), Some(pid)) => o.ready.push((tid.clone(), pid.clone())),
        }
        let key = track_id.clone().unwrap_or_else(|| format!("mid:{mid}"));
        let audio_level_id = o.answers.last().and_then(|a| {
            sdp::section(&sdp::media_sections(&a.sdp), &mid).and_then(|s| {
                s.extmap
                    .iter()
                    .find(|(_, uri)| uri == AUDIO_LEVEL_URI)
                    .map(|(id, _)| *id)
            })
        });
        let record = o.remote.entry(key.clone()).or_default();
        record.track_id = track_id.unwrap_or_default();
        record.peer_id = peer_id;
        record.mid = mid;
        record.kind = kind;
        (key, audio_level_id)
    };
    let (key, audio_level_id) = key;
    log::debug!("{name}: receiving {key}");
    while let Some(event) = track.poll().await {
        if let TrackRemoteEvent::OnRtpPacket(packet) = event {
            let level = audio_level_id.and_then(|id| {
                packet
                    .header
                    .extensions
                    .iter()
                    .find(|e| e.id == id)
                    .and_then(|e| e.payload.first().copied())
            });
            let mut o = lock(&obs);
            if let Some(record) = o.remote.get_mut(&key) {
                record.record(
                    Instant::now(),
                    packet.header.ssrc,
                    packet.header.payload_type,
                    packet.header.sequence_number,
                    &packet.payload,
                    level,
                );
            }
        }
    }
}
