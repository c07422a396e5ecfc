//! `PeerChannel`: the Phoenix channel for `room:<id>` topics (the demo's `VideoRoomWeb.PeerChannel`).
//!
//! - join: find or start the room, assign a UUID v4 peer id, attach to the room, reply ok `{}`;
//!   refused: error `{"reason": "room is busy"}`, `{"reason": "too many rooms"}`, or (the room
//!   cannot be reached or started) `{"reason": "failed to start room"}`; one log line each.
//! - join with `{"resumeToken": "<token from peerAccepted>"}`: take that peer back instead
//!   (same peer id, the room replays `peerAccepted` and what is pending), reply ok `{}`; a bad
//!   token is refused with the [`super::ResumeRefusal::reason`] text. The token is never logged.
//! - `mediaEvent {"data": "<string>"}` from the client → the room (no reply, like the demo),
//!   within the peer's share of the room's inbox ([`super::RoomsConfig::peer_queue`]).
//! - media events from the room → `mediaEvent {"data": "<string>"}` pushes; a peer whose media
//!   does not connect gets one `mediaDiagnosis {"cause", "message"}` push.
//! - `chat {"text"}` → checked here (size, per-peer rate; refusals answered at once with
//!   `error {"reason"}`), then through the room to every member as `chat` pushes ([`super::chat`]).
//! - the channel's end tells the room through the lease: `phx_leave` or the channel stopping
//!   itself says [`Departure::Left`] (the peer is removed); a lost socket, a duplicate join or a
//!   crash drops the lease ([`Departure::Lost`]: the peer is held while its media lives).

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::chat::{self, ChatRate};
use super::placement::RELAYED_PARAM;
use super::registry::{RoomHandle, RoomRegistry};
use super::relay::RelayLink;
use super::{Credit, Departure, PeerMessage, PeerSink, ResumeRefusal, RoomCommand, RoomError};
use super::{Place, Placement, RelayEnd};
use crate::phoenix::transport::{ConnectError, ConnectInfo, SocketHandler};
use crate::phoenix::{
    Channel, ChannelContext, ChannelSender, Flow, HandleIn, JoinReply, Payload, StopReason,
    TerminateReason,
};
use crate::rtc::ids::PeerId;

/// The topic prefix this channel serves.
pub const TOPIC_PREFIX: &str = "room:";
/// The socket assign holding the `Host` header the client connected with.
const HOST_ASSIGN: &str = "host";
/// The channel event that tells a client why its media does not connect
/// (`{"cause", "message"}`); the Membrane clients only listen to `mediaEvent`, so they never
/// see it.
pub const MEDIA_DIAGNOSIS_EVENT: &str = "mediaDiagnosis";
/// The join param that carries a resume token.
pub const RESUME_TOKEN_PARAM: &str = "resumeToken";

/// The `/socket` handler of the rooms: accepts everyone (like the demo) and keeps the client's
/// IP address in the socket's assigns (`client_ip`), so each peer's join logs it once.
#[derive(Debug, Default)]
pub struct RoomSocket;

impl SocketHandler for RoomSocket {
    fn connect(&self, _params: &Value, info: &ConnectInfo) -> Result<Value, ConnectError> {
        let mut assigns = serde_json::Map::new();
        if let Some(addr) = info.peer_addr {
            let ip = addr.ip().to_canonical().to_string();
            assigns.insert("client_ip".into(), ip.into());
        }
        // The host the client reached us by: the TURN URLs of the join reply name it.
        if let Some(host) = &info.host {
            assigns.insert(HOST_ASSIGN.into(), host.clone().into());
        }
        Ok(Value::Object(assigns))
    }
}

impl PeerSink for ChannelSender<PeerMessage> {
    fn deliver(&self, msg: PeerMessage) -> bool {
        self.try_send(msg).is_ok()
    }
}

struct Joined {
    room: RoomHandle,
    peer: PeerId,
    /// Says how the channel ended; dropped unsent, it says the connection was lost.
    lease: Option<oneshot::Sender<Departure>>,
    /// This peer's media events waiting in the room's inbox.
    waiting: Arc<AtomicUsize>,
    /// This peer's chat rate.
    chat_rate: ChatRate,
}

impl Joined {
    /// `chat {"text"}`: refused at once when the text or this peer's rate is off, else sent
    /// through the room, which answers the push when every member has it.
    fn chat(
        &mut self,
        registry: &RoomRegistry,
        payload: &Payload,
        ctx: &mut ChannelContext,
    ) -> HandleIn {
        let text = payload
            .as_json()
            .and_then(|p| p.get("text"))
            .and_then(Value::as_str);
        let text = match chat::check_text(text) {
            Ok(text) => text,
            Err(refusal) => return HandleIn::error(json!({ "reason": refusal.reason() })),
        };
        if !self.chat_rate.allow(std::time::Instant::now()) {
            return HandleIn::error(json!({ "reason": chat::ChatRefusal::TooMany.reason() }));
        }
        let Some(reply) = ctx.reply_ref() else {
            return HandleIn::NoReply;
        };
        let peer = self.peer;
        let sent = self.send_in_share(registry, |credit| RoomCommand::Chat {
            peer,
            text: text.to_owned(),
            reply,
            credit,
        });
        match sent {
            Ok(()) => HandleIn::NoReply,
            Err(e) => {
                log::warn!(
                    "room={} peer={peer} chat message refused: {e}",
                    self.room.room_id()
                );
                HandleIn::error(json!({ "reason": "room unavailable" }))
            }
        }
    }

    /// `mediaEvent {"data"}`: passed to the room; a full share of the inbox or a stopped room
    /// ends the channel with an `error` media event.
    fn media_event(
        &mut self,
        registry: &RoomRegistry,
        payload: &Payload,
        ctx: &mut ChannelContext,
    ) -> HandleIn {
        let (room_id, peer) = (self.room.room_id(), self.peer);
        let Some(data) = payload
            .as_json()
            .and_then(|p| p.get("data"))
            .and_then(Value::as_str)
        else {
            log::warn!("room={room_id} peer={peer} mediaEvent without a string \"data\" dropped");
            return HandleIn::NoReply;
        };
        let sent = self.send_in_share(registry, |credit| RoomCommand::MediaEvent {
            peer,
            data: data.to_owned(),
            credit,
        });
        let Err(e) = sent else {
            return HandleIn::NoReply;
        };
        log::warn!("room={room_id} peer={peer} disconnected: {e}");
        let reason = match e {
            RoomError::Overloaded => {
                registry
                    .metrics()
                    .queue_overflows
                    .get_or_create(&[("queue", "room_inbox")])
                    .inc();
                "room overloaded"
            }
            RoomError::Busy
            | RoomError::TooManyRooms
            | RoomError::Stopped
            | RoomError::NoRuntime
            | RoomError::Resume(_) => "room closed",
        };
        disconnect(ctx, reason)
    }

    /// Queues the command `command` builds within this peer's share of the room's inbox;
    /// `Overloaded` when the share is used up.
    fn send_in_share(
        &self,
        registry: &RoomRegistry,
        command: impl FnOnce(Credit) -> RoomCommand,
    ) -> Result<(), RoomError> {
        let credit =
            Credit::take(&self.waiting, registry.peer_queue()).ok_or(RoomError::Overloaded)?;
        self.room.send(command(credit))
    }
}

/// The `room:*` channel (one instance per joined topic per socket).
pub struct PeerChannel {
    registry: RoomRegistry,
    joined: Option<Joined>,
    /// Clustered: a join waiting for placement or for the room's node.
    placing: Option<Placing>,
    /// Clustered: the link to the node that runs the room.
    relay: Option<RelayLink>,
    /// Clustered: the room this channel is relayed to, once joined there.
    relayed_room: Option<String>,
    /// An unknown event was logged already: a flood writes one line, not one per frame.
    unknown_logged: bool,
}

impl PeerChannel {
    /// A channel that finds its rooms in `registry`.
    pub fn new(registry: RoomRegistry) -> Self {
        PeerChannel {
            registry,
            joined: None,
            placing: None,
            relay: None,
            relayed_room: None,
            unknown_logged: false,
        }
    }
}

impl PeerChannel {
    /// `{}`, or with TURN on `{"iceServers": [...]}`: the embedded TURN server's URLs with
    /// credentials for `peer` (the tutorial's client ignores the reply). Clustered, the node
    /// that runs the room answers (its TURN server relays into its own SFU) and a relaying
    /// node passes its reply on unchanged.
    fn join_reply(&self, peer: PeerId, ctx: &ChannelContext) -> Value {
        let Some(servers) = self.registry.ice_servers() else {
            return json!({});
        };
        let host = ctx.assigns().get(HOST_ASSIGN).and_then(Value::as_str);
        let unix_now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        json!({ "iceServers": servers.for_peer(&peer.to_string(), host, unix_now) })
    }

    /// Joins room `room_id` on this node (attach, or resume with the payload's token).
    fn join_here(&mut self, room_id: &str, payload: &Value, ctx: &mut ChannelContext) -> JoinReply {
        let (lease, lease_rx) = oneshot::channel();
        let sink: Box<dyn PeerSink> = Box::new(ctx.sender::<PeerMessage>());
        let resume = payload.get(RESUME_TOKEN_PARAM).filter(|t| !t.is_null());
        let (attached, what) = match resume {
            Some(token) => {
                let token = token
                    .as_str()
                    .ok_or(RoomError::Resume(ResumeRefusal::Invalid));
                let resumed = token.and_then(|t| self.registry.resume(room_id, t, sink, lease_rx));
                (resumed, "resumed")
            }
            None => {
                let peer = PeerId::new_v4();
                let attached = self.registry.attach(room_id, peer, sink, lease_rx);
                (attached.map(|room| (room, peer)), "joined")
            }
        };
        match attached {
            Ok((room, peer)) => {
                let ip = ctx
                    .assigns()
                    .get("client_ip")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown");
                log::info!("room={room_id} peer={peer} {what} the channel from {ip}");
                let reply = self.join_reply(peer, ctx);
                self.joined = Some(Joined {
                    room,
                    peer,
                    lease: Some(lease),
                    waiting: Arc::new(AtomicUsize::new(0)),
                    chat_rate: ChatRate::new(std::time::Instant::now()),
                });
                Ok(reply)
            }
            Err(e) => {
                log::warn!("room={room_id} channel join refused: {e}");
                if let RoomError::Resume(why) = e {
                    self.registry.metrics().reconnect(why.label());
                }
                let reason = match e {
                    RoomError::Busy => "room is busy",
                    RoomError::TooManyRooms => "too many rooms",
                    RoomError::Resume(why) => why.reason(),
                    RoomError::Overloaded | RoomError::Stopped | RoomError::NoRuntime => {
                        "failed to start room"
                    }
                };
                Err(json!({ "reason": reason }))
            }
        }
    }

    /// Clustered: defers the join until placement says where room `room_id` lives.
    fn place(
        &mut self,
        placement: Arc<dyn Placement>,
        room_id: &str,
        payload: Value,
        ctx: &mut ChannelContext,
    ) -> JoinReply {
        ctx.defer_join();
        let relayed = payload.get(RELAYED_PARAM).is_some_and(|v| !v.is_null());
        self.placing = Some(Placing {
            room_id: room_id.to_owned(),
            payload,
            relayed,
            tries: 0,
        });
        spawn_placement(placement, room_id, relayed, ctx.sender());
        Ok(json!({}))
    }

    /// Clustered: placement answered, the relayed join was answered, or the link ended.
    fn handle_cluster(&mut self, msg: PeerMessage, ctx: &mut ChannelContext) -> Flow {
        match msg {
            PeerMessage::Placed(Ok(Place::Here)) => {
                if let Some(placing) = self.placing.take() {
                    let reply = self.join_here(&placing.room_id, &placing.payload, ctx);
                    ctx.finish_join(reply);
                }
            }
            PeerMessage::Placed(Ok(Place::Node { id, url })) => self.open_relay(&id, &url, ctx),
            PeerMessage::Placed(Err(e)) => {
                let room_id = self.placing.take().map(|p| p.room_id).unwrap_or_default();
                log::warn!("room={room_id} channel join refused: {e}");
                ctx.finish_join(Err(json!({ "reason": "failed to start room" })));
            }
            PeerMessage::RelayJoined(reply) => return self.relay_joined(reply, ctx),
            PeerMessage::RelayReply {
                reply,
                status,
                response,
            } => ctx.reply(&reply, &status, response),
            PeerMessage::RelayPush { event, payload } => ctx.push(&event, payload),
            PeerMessage::RelayEnded(end) => return self.relay_ended(end, ctx),
            _ => {}
        }
        Flow::Continue
    }

    /// Opens the relay link to node `id` at `url` for the deferred join.
    fn open_relay(&mut self, id: &str, url: &str, ctx: &mut ChannelContext) {
        let Some(placing) = &self.placing else {
            return;
        };
        let mut params = match &placing.payload {
            Value::Object(map) => map.clone(),
            _ => serde_json::Map::new(),
        };
        let node = self.registry.placement().map(|p| p.node_id().to_owned());
        params.insert(RELAYED_PARAM.into(), json!(node));
        let topic = format!("{TOPIC_PREFIX}{}", placing.room_id);
        let queue = self.registry.peer_queue();
        let link = RelayLink::open(id, url, &topic, Value::Object(params), ctx.sender(), queue);
        self.relay = Some(link);
    }

    /// The room's node answered the relayed join: so does this channel.
    fn relay_joined(&mut self, reply: JoinReply, ctx: &mut ChannelContext) -> Flow {
        let Some(placing) = self.placing.take() else {
            return Flow::Continue;
        };
        let node = self
            .relay
            .as_ref()
            .map(|l| l.node.clone())
            .unwrap_or_default();
        let room_id = placing.room_id;
        match &reply {
            Ok(_) => {
                log::info!("room={room_id} joined the channel, relayed to node {node}");
                self.registry.metrics().relayed.inc();
                self.relayed_room = Some(room_id);
            }
            Err(why) => {
                log::warn!("room={room_id} channel join refused by node {node}: {why}");
                self.relay = None;
            }
        }
        ctx.finish_join(reply);
        Flow::Continue
    }

    /// The relay link ended: before the join, placement tries again (a refused node is
    /// dropped from the registry); after it, the client's channel ends the way the link did.
    fn relay_ended(&mut self, end: RelayEnd, ctx: &mut ChannelContext) -> Flow {
        let Some(link) = self.relay.take() else {
            return Flow::Continue;
        };
        let placement = self.registry.placement().cloned();
        if let (Some(placing), Some(placement)) = (&mut self.placing, placement) {
            placing.tries += 1;
            log::warn!(
                "room={} relay to node {} failed ({end:?}), placing again",
                placing.room_id,
                link.node
            );
            if placing.tries > MAX_PLACEMENT_TRIES {
                self.placing = None;
                ctx.finish_join(Err(json!({ "reason": "failed to start room" })));
                return Flow::Continue;
            }
            if end == RelayEnd::Refused {
                placement.refused(&placing.room_id, &link.node);
            }
            let room_id = placing.room_id.clone();
            let relayed = placing.relayed;
            let sender = ctx.sender();
            tokio::spawn(async move {
                tokio::time::sleep(PLACEMENT_RETRY).await;
                let placed = placement.place(&room_id, relayed).await;
                let _ = sender.try_send(PeerMessage::Placed(placed));
            });
            return Flow::Continue;
        }
        let room_id = self.relayed_room.as_deref().unwrap_or_default();
        match end {
            RelayEnd::Closed => {
                log::info!(
                    "room={room_id} node {} closed the relayed channel",
                    link.node
                );
                Flow::Stop(StopReason::Shutdown("room closed".into()))
            }
            RelayEnd::Refused | RelayEnd::Lost(_) => {
                log::warn!("room={room_id} relay to node {} lost: {end:?}", link.node);
                if let (RelayEnd::Refused, Some(p)) = (&end, self.registry.placement()) {
                    p.refused(room_id, &link.node);
                }
                // phx_error: phoenix.js rejoins, and placement finds the room's node anew.
                Flow::Stop(StopReason::Error("the room's node was lost".into()))
            }
        }
    }

    /// A client push on a relayed channel: over the link, in order.
    fn relay_in(&mut self, event: &str, payload: Payload, ctx: &mut ChannelContext) -> HandleIn {
        let Some(link) = &self.relay else {
            return HandleIn::NoReply;
        };
        let (event, reply) = match event {
            "mediaEvent" => ("mediaEvent", None),
            "chat" => ("chat", ctx.reply_ref()),
            _ => return HandleIn::NoReply,
        };
        let Payload::Json(payload) = payload else {
            return HandleIn::NoReply;
        };
        if link.push(event, payload, reply) {
            return HandleIn::NoReply;
        }
        let room_id = self.relayed_room.as_deref().unwrap_or_default();
        log::warn!("room={room_id} relayed peer disconnected: its relay queue is full");
        self.registry
            .metrics()
            .queue_overflows
            .get_or_create(&[("queue", "relay")])
            .inc();
        let reason = "room overloaded";
        disconnect(ctx, reason)
    }
}

/// Ends the channel for `reason`, which the client first hears as an `error` media event.
fn disconnect(ctx: &mut ChannelContext, reason: &str) -> HandleIn {
    ctx.push(
        "mediaEvent",
        json!({ "data": crate::rtc::media_event::MediaEventOut::error(reason).to_json() }),
    );
    HandleIn::Stop {
        reason: StopReason::Shutdown(reason.into()),
        reply: None,
    }
}

/// Clustered: how often a join tries to place its room before it is refused (each try waits
/// for the room's lease in the registry; see [`crate::cluster`]).
const MAX_PLACEMENT_TRIES: u32 = 8;

/// Clustered: the pause before placing again after a relay link could not be made.
const PLACEMENT_RETRY: std::time::Duration = std::time::Duration::from_millis(250);

/// Asks `placement` where `room_id` lives; the answer comes back to the channel as
/// [`PeerMessage::Placed`].
fn spawn_placement(
    placement: Arc<dyn Placement>,
    room_id: &str,
    relayed: bool,
    sender: ChannelSender<PeerMessage>,
) {
    let room_id = room_id.to_owned();
    tokio::spawn(async move {
        let placed = placement.place(&room_id, relayed).await;
        let _ = sender.try_send(PeerMessage::Placed(placed));
    });
}

/// Clustered: a join waiting for its room's placement.
struct Placing {
    room_id: String,
    /// The client's join params (resume token and all), relayed as they are.
    payload: Value,
    /// The join came through another node.
    relayed: bool,
    /// Relay links that failed so far.
    tries: u32,
}

impl Channel for PeerChannel {
    type Info = PeerMessage;

    fn join(&mut self, topic: &str, payload: Value, ctx: &mut ChannelContext) -> JoinReply {
        let room_id = topic.strip_prefix(TOPIC_PREFIX).unwrap_or(topic);
        match self.registry.placement().cloned() {
            Some(placement) => self.place(placement, room_id, payload, ctx),
            None => self.join_here(room_id, &payload, ctx),
        }
    }

    fn handle_in(&mut self, event: &str, payload: Payload, ctx: &mut ChannelContext) -> HandleIn {
        if self.relayed_room.is_some() {
            return self.relay_in(event, payload, ctx);
        }
        let Some(joined) = &mut self.joined else {
            return HandleIn::NoReply;
        };
        match event {
            "chat" => joined.chat(&self.registry, &payload, ctx),
            "mediaEvent" => joined.media_event(&self.registry, &payload, ctx),
            _ => {
                if !std::mem::replace(&mut self.unknown_logged, true) {
                    log::warn!(
                        "room={} peer={} ignoring unknown event {} (further ones are not logged)",
                        joined.room.room_id(),
                        joined.peer,
                        crate::phoenix::socket::Clip(event)
                    );
                }
                HandleIn::NoReply
            }
        }
    }

    fn handle_info(&mut self, msg: PeerMessage, ctx: &mut ChannelContext) -> Flow {
        match msg {
            PeerMessage::MediaEvent(data) => {
                ctx.push("mediaEvent", json!({ "data": data }));
                Flow::Continue
            }
            PeerMessage::MediaNotConnected(cause) => {
                ctx.push(
                    MEDIA_DIAGNOSIS_EVENT,
                    json!({ "cause": cause.label(), "message": cause.client_message() }),
                );
                Flow::Continue
            }
            PeerMessage::Chat(message) => {
                ctx.push("chat", (*message).clone());
                Flow::Continue
            }
            PeerMessage::ChatAnswer { reply, refusal } => {
                match refusal {
                    None => ctx.reply(&reply, "ok", json!({})),
                    Some(r) => ctx.reply(&reply, "error", json!({ "reason": r.reason() })),
                }
                Flow::Continue
            }
            PeerMessage::Closed { error_event } => {
                ctx.push("mediaEvent", json!({ "data": error_event }));
                Flow::Stop(StopReason::Shutdown("room closed".into()))
            }
            cluster => self.handle_cluster(cluster, ctx),
        }
    }

    fn terminate(&mut self, reason: &TerminateReason, _ctx: &mut ChannelContext) {
        if let Some(room_id) = self.relayed_room.take() {
            log::info!("room={room_id} relayed channel ended: {reason:?}");
            self.registry.metrics().relayed.dec();
        }
        if let Some(link) = self.relay.take()
            && matches!(reason, TerminateReason::Left | TerminateReason::Stopped(_))
        {
            link.leave();
        }
        if let Some(mut joined) = self.joined.take() {
            log::info!(
                "room={} peer={} channel ended: {reason:?}",
                joined.room.room_id(),
                joined.peer
            );
            // A client that left, or a channel that stopped itself, is gone for good; anything
            // else (socket lost, duplicate join, crash) drops the lease unsent: the room holds
            // the peer while its media lives. A channel dropped without terminate says the same.
            if let Some(lease) = joined.lease.take()
                && matches!(reason, TerminateReason::Left | TerminateReason::Stopped(_))
            {
                let _ = lease.send(Departure::Left);
            }
        }
    }
}
