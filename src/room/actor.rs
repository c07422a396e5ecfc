//! The room actor: one tokio task per room that owns the room's [`RoomMedia`] (the media driver
//! around its [`Engine`] and SFU, with its own UDP route and timer), fed by a bounded inbox of
//! [`RoomCommand`]s and the peers' leases.
//!
//! How this works: every input is one driver call followed by a full drain of
//! [`RoomMedia::poll_event`] (the sans-IO drain rule; the driver sends transmits and publishes
//! ufrags itself). The room handles what concerns members: media events go to the peers'
//! channels, join requests to the admission hook.
//!
//! Queue policies (the inbox's is in [`super`]: each sender is bounded by its own share, so a
//! burst refuses only the joiners beyond it and never evicts an admitted peer):
//! - Peer departures do not use the inbox: each peer's channel holds a `oneshot` lease that
//!   says [`Departure::Left`] or is dropped ([`Departure::Lost`]), so a departure is never lost
//!   and happens exactly once per attachment. A lost peer with live media is held by the engine
//!   for its reconnect grace; a resumed peer gets a new attachment, and the end of an older
//!   one (its old channel closing late) is ignored.
//! - Media events to a peer go through its channel's bounded mailbox without waiting; if that is
//!   full the Phoenix layer closes the socket (the peer stopped reading), which ends the lease.
//!   An undeliverable event is logged once per peer, not once per event.
//! - Datagrams arrive through the UDP mux's bounded per-route queue (dropped when full).
//!
//! Failure isolation: every engine call runs under `catch_unwind` (in the driver). A panic marks the room
//! crashed: its peers get an `error` media event and their channels close, the room leaves the
//! registry (the next join starts a fresh one) and its task ends. Other rooms never notice.
//! A panic in the actor's own code is caught around the whole task as a last resort.

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::mpsc;

use super::admission::Admission;
use super::chat::{ChatRefusal, display_name_of};
use super::metrics::RoomMetrics;
use super::registry::{AttachSlot, RoomRegistry, RoomsConfig};
use super::resume::ResumeRefusal;
use super::{Departure, Lease, PeerMessage, PeerSink};
use crate::phoenix::ReplyRef;
use crate::rtc::driver::RoomMedia;
use crate::rtc::engine::{Engine, EngineOutput};
use crate::rtc::ids::PeerId;
use crate::rtc::media_event::MediaEventOut;
use crate::rtc::metrics::GaugeShare;

/// A message to a room.
pub(crate) enum RoomCommand {
    /// A channel joined the room's topic as `peer`.
    Attach {
        /// The peer id the channel assigned.
        peer: PeerId,
        /// Where the room sends the peer's media events.
        sink: Box<dyn PeerSink>,
        /// Resolves when the channel is gone: the peer is then removed or held.
        lease: Lease,
        /// The room's attach slot this channel holds until it ends.
        slot: AttachSlot,
    },
    /// A channel presented `peer`'s resume token (already spent): it replaces the peer's
    /// channel, if any, and hears what it missed.
    Resume {
        /// The resumed peer.
        peer: PeerId,
        /// Where the room sends the peer's media events from now on.
        sink: Box<dyn PeerSink>,
        /// The new channel's lease.
        lease: Lease,
        /// The new channel's attach slot.
        slot: AttachSlot,
        /// The peer's next resume token (told in the replayed `peerAccepted`).
        token: String,
    },
    /// The serialized media event a peer pushed.
    MediaEvent {
        /// The sender.
        peer: PeerId,
        /// The `data` string of its `mediaEvent` push.
        data: String,
        /// The sender's share of the inbox this event uses until handled.
        credit: Credit,
    },
    /// A checked chat message from a peer (see [`super::chat`]).
    Chat {
        /// The sender.
        peer: PeerId,
        /// The message text (non-blank, within the size limit).
        text: String,
        /// The sender's push, answered once the room has handled it.
        reply: ReplyRef,
        /// The sender's share of the inbox this message uses until handled.
        credit: Credit,
    },
}

/// One unit of a peer's share of its room's inbox: taken when its channel queues a media event,
/// given back (dropped) once the room has handled it.
pub(crate) struct Credit(Arc<AtomicUsize>);

impl Credit {
    /// Takes one of `share` units from `waiting` (the peer's count of queued events), or `None`
    /// when the peer already has `share` events waiting.
    pub(crate) fn take(waiting: &Arc<AtomicUsize>, share: usize) -> Option<Credit> {
        waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < share).then_some(n + 1)
            })
            .ok()
            .map(|_| Credit(waiting.clone()))
    }
}

impl Drop for Credit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for RoomCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RoomCommand::Attach { peer, .. } => write!(f, "Attach({peer})"),
            RoomCommand::Resume { peer, .. } => write!(f, "Resume({peer})"),
            RoomCommand::MediaEvent { peer, .. } => write!(f, "MediaEvent({peer})"),
            RoomCommand::Chat { peer, .. } => write!(f, "Chat({peer})"),
        }
    }
}

/// The room task's state.
pub(crate) struct Room {
    id: String,
    instance: u64,
    registry: RoomRegistry,
    inbox: mpsc::UnboundedReceiver<RoomCommand>,
    media: RoomMedia,
    admission: Arc<dyn Admission>,
    max_peers: usize,
    empty_grace: Duration,
    /// The channels attached to this room (a held peer has none).
    peers: HashMap<PeerId, Attached>,
    /// Numbers attachments, so the late end of a replaced channel is told apart.
    next_attachment: u64,
    /// Display names of admitted peers (from their `join` metadata), for chat messages.
    names: HashMap<PeerId, String>,
    /// Attached peers an event could not be delivered to (logged once each).
    undeliverable: HashSet<PeerId>,
    /// Since when the room has had no peers.
    empty_since: Option<tokio::time::Instant>,
    crashed: bool,
    metrics: RoomMetrics,
    /// When each attached peer's channel joined (for the join latency histogram).
    attached_at: HashMap<PeerId, Instant>,
    /// This room's unit of the rooms gauge.
    _room_gauge: GaugeShare,
    /// This room's members in the peers gauge.
    peers_gauge: GaugeShare,
    /// `faultInjection` media events are obeyed (tests only; see [`Self::inject_fault`]).
    fault_injection: bool,
}

impl Room {
    /// A room handed everything it needs when spawned: its settings and its media.
    pub(crate) fn new(
        id: &str,
        instance: u64,
        registry: RoomRegistry,
        inbox: mpsc::UnboundedReceiver<RoomCommand>,
        config: &RoomsConfig,
        media: RoomMedia,
    ) -> Self {
        Room {
            id: id.to_owned(),
            instance,
            registry,
            inbox,
            media,
            admission: config.admission.clone(),
            max_peers: config.max_peers.max(1),
            empty_grace: config.empty_grace,
            peers: HashMap::new(),
            next_attachment: 0,
            names: HashMap::new(),
            undeliverable: HashSet::new(),
            empty_since: Some(tokio::time::Instant::now()),
            crashed: false,
            metrics: config.metrics.clone(),
            attached_at: HashMap::new(),
            _room_gauge: {
                let mut share = GaugeShare::new(config.metrics.rooms.clone());
                share.set(1);
                share
            },
            peers_gauge: GaugeShare::new(config.metrics.peers.clone()),
            fault_injection: config.fault_injection,
        }
    }

    /// The task body with a last line of defence: engine calls are already guarded, but should
    /// the actor's own code panic, the room still leaves the registry (its peers learn it on
    /// their next push, which fails with "room closed") and no other room is affected.
    pub(crate) async fn run_supervised(self) {
        use futures_util::FutureExt;
        let (id, instance, registry) = (self.id.clone(), self.instance, self.registry.clone());
        let metrics = self.metrics.clone();
        if AssertUnwindSafe(self.run()).catch_unwind().await.is_err() {
            metrics.error("room_crashed");
            log::error!("room={id} task panicked; room removed");
            registry.forget(&id, instance);
        }
    }

    /// The task body: runs until the room has been empty for the grace period, or crashes.
    async fn run(mut self) {
        let mut leases: FuturesUnordered<_> = FuturesUnordered::new();
        let grace = self.empty_grace;
        loop {
            // The driver may want a timer before any input, and after every input.
            self.drain();
            let members = self.media.driver().core().member_count();
            self.peers_gauge.set(members);
            if self.crashed {
                self.metrics.error("room_crashed");
                self.close_all("room crashed");
                self.registry.forget(&self.id, self.instance);
                return;
            }
            // Held peers are members without a channel: the room is not empty while they are.
            let empty = self.peers.is_empty() && members == 0;
            match (empty, self.empty_since) {
                (true, None) => self.empty_since = Some(tokio::time::Instant::now()),
                (false, Some(_)) => self.empty_since = None,
                _ => {}
            }
            let retire_at = self.empty_since.map(|t| t + grace);
            tokio::select! {
                command = self.inbox.recv() => match command {
                    Some(RoomCommand::Attach { peer, sink, lease, slot }) => {
                        log::info!("room={} peer={peer} attached", self.id);
                        let attachment = self.attach(peer, sink);
                        self.attached_at.insert(peer, Instant::now());
                        leases.push(lease_end(peer, attachment, lease, slot));
                    }
                    Some(RoomCommand::Resume { peer, sink, lease, slot, token }) => {
                        if self.media.driver().core().is_member(peer) {
                            let attachment = self.attach(peer, sink);
                            leases.push(lease_end(peer, attachment, lease, slot));
                            self.engine_call(|e| e.resume_peer(peer, token));
                            self.metrics.reconnect("resumed");
                        } else {
                            // Removed between the token check and now (grace over, media
                            // failed): the client starts afresh.
                            log::info!("room={} peer={peer} resume came too late", self.id);
                            self.registry.revoke_token(peer);
                            let reason = ResumeRefusal::Expired.reason();
                            sink.deliver(PeerMessage::Closed {
                                error_event: MediaEventOut::error(reason).to_json(),
                            });
                        }
                    }
                    Some(RoomCommand::MediaEvent { peer, data, credit }) => {
                        if self.fault_injection && data.contains("faultInjection") {
                            self.inject_fault(peer, &data).await;
                        } else if self.peers.contains_key(&peer) {
                            self.engine_call(|e| e.handle_media_event(peer, &data, Instant::now()));
                            drop(credit);
                        } else {
                            log::warn!("room={} peer={peer} media event from a detached peer dropped", self.id);
                        }
                    }
                    Some(RoomCommand::Chat { peer, text, reply, credit }) => {
                        self.chat(peer, text, reply);
                        drop(credit);
                    }
                    // Unreachable while the registry holds a sender; stop if it ever happens.
                    None => break,
                },
                Some((peer, attachment, departure)) = leases.next(), if !leases.is_empty() => {
                    self.channel_ended(peer, attachment, departure);
                }
                () = self.media.wait() => {}
                _ = sleep_until(retire_at) => {
                    if self.peers.is_empty()
                        && self.media.driver().core().member_count() == 0
                        && self.registry.retire_if_idle(&self.id, self.instance, &self.inbox)
                    {
                        log::info!("room={} stopped: empty for {grace:?}", self.id);
                        return;
                    }
                }
            }
        }
    }

    /// Makes `sink` the channel of `peer`; a channel it replaces (the server had not noticed
    /// that the client's old connection died) is closed. Returns the attachment's number.
    fn attach(&mut self, peer: PeerId, sink: Box<dyn PeerSink>) -> u64 {
        self.next_attachment += 1;
        let attachment = self.next_attachment;
        self.undeliverable.remove(&peer);
        if let Some(old) = self.peers.insert(peer, Attached { sink, attachment }) {
            log::info!(
                "room={} peer={peer} resumed on a new channel, closing the old one",
                self.id
            );
            old.sink.deliver(PeerMessage::Closed {
                error_event: MediaEventOut::error("resumed on another connection").to_json(),
            });
        }
        attachment
    }

    /// A channel ended: if it is still the peer's, the peer leaves or is held (see [`Departure`]).
    fn channel_ended(&mut self, peer: PeerId, attachment: u64, departure: Departure) {
        if self
            .peers
            .get(&peer)
            .is_none_or(|a| a.attachment != attachment)
        {
            log::debug!("room={} peer={peer} a replaced channel ended", self.id);
            return;
        }
        self.peers.remove(&peer);
        self.attached_at.remove(&peer);
        self.undeliverable.remove(&peer);
        match departure {
            Departure::Left => {
                log::info!("room={} peer={peer} detached: left", self.id);
                self.engine_call(|e| e.remove_peer(peer));
            }
            Departure::Lost => {
                let held = self.engine_call(|e| e.detach_peer(peer, Instant::now()));
                if held == Some(true) {
                    self.metrics.reconnect("held");
                }
                let what = if held == Some(true) {
                    "held for reconnect"
                } else {
                    "removed"
                };
                log::info!(
                    "room={} peer={peer} detached: connection lost, {what}",
                    self.id
                );
            }
        }
        // Names of peers no longer members (this one, or held peers whose grace or media ran
        // out meanwhile): a held peer keeps its name for the chat of its resumed channel.
        let engine = self.media.driver().core();
        self.names.retain(|p, _| engine.is_member(*p));
    }

    /// Test-only faults, obeyed when [`RoomsConfig::fault_injection`] is set (the
    /// `VIDEOROOM_FAULT_INJECTION=1` environment variable, which production never sets): the
    /// media event `{"type":"faultInjection","data":{"fault":"panic"}}` panics inside an engine
    /// call (the path a real engine bug takes), `"stall"` stops this room's loop for good (its
    /// heartbeat stops, so `/healthz` fails).
    async fn inject_fault(&mut self, peer: PeerId, data: &str) {
        let fault = serde_json::from_str::<serde_json::Value>(data)
            .ok()
            .and_then(|v| v.pointer("/data/fault")?.as_str().map(str::to_owned));
        match fault.as_deref() {
            Some("panic") => {
                log::warn!("room={} peer={peer} injected fault: panic", self.id);
                self.engine_call(|_| panic!("injected fault"));
            }
            Some("stall") => {
                log::warn!("room={} peer={peer} injected fault: stall", self.id);
                std::future::pending::<()>().await;
            }
            other => log::warn!("room={} peer={peer} unknown fault {other:?}", self.id),
        }
    }

    /// Runs one signalling call on the engine (a panic marks the room crashed).
    fn engine_call<T>(&mut self, f: impl FnOnce(&mut Engine) -> T) -> Option<T> {
        let out = self.media.driver().signal(f);
        self.crashed |= self.media.driver().crashed().is_some();
        out
    }

    /// Drains the driver's events and fans them out (no `.await`: the driver sends transmits and
    /// publishes ufrags itself).
    fn drain(&mut self) {
        while let Some(output) = self.media.poll_event() {
            match output {
                EngineOutput::JoinRequest { peer, metadata } => self.admit(peer, &metadata),
                EngineOutput::Send { to, event } => self.deliver(to, event),
                EngineOutput::Broadcast { to, event } => {
                    for peer in to {
                        self.deliver(peer, event.clone());
                    }
                }
                EngineOutput::MediaNotConnected { to, cause } => {
                    if let Some(Attached { sink, .. }) = self.peers.get(&to) {
                        sink.deliver(PeerMessage::MediaNotConnected(cause));
                    }
                }
                EngineOutput::PeerRemoved(peer) => {
                    log::debug!("room={} peer={peer} is no longer a member", self.id);
                    self.registry.revoke_token(peer);
                }
                // The driver consumes these; they never reach the room.
                EngineOutput::IceUfrags(_)
                | EngineOutput::Transmit(_)
                | EngineOutput::Timeout(_) => {}
            }
        }
        self.crashed |= self.media.driver().crashed().is_some();
    }

    /// Checks the room's peer limit, then asks the admission hook about `peer`, and tells the
    /// engine.
    fn admit(&mut self, peer: PeerId, metadata: &serde_json::Value) {
        let members = self.media.driver().core().member_count();
        if members >= self.max_peers {
            self.metrics.limit_hit("peers_per_room");
            log::info!("room={} peer={peer} denied: room is full", self.id);
            let data = serde_json::json!({ "reason": "room is full" });
            self.engine_call(|e| e.deny_peer(peer, data));
            return;
        }
        let admission = self.admission.clone();
        let id = self.id.clone();
        // The hook is application code: a panic in it crashes this room only.
        let decision = std::panic::catch_unwind(AssertUnwindSafe(|| {
            admission.admit(&id, peer, metadata, members)
        }));
        match decision {
            Ok(Ok(())) => {
                if let Some(at) = self.attached_at.get(&peer) {
                    self.metrics
                        .join_seconds
                        .observe(at.elapsed().as_secs_f64());
                }
                self.names.insert(peer, display_name_of(metadata));
                let token = self.registry.issue_token(&self.id, peer);
                self.engine_call(|e| e.accept_peer_resumable(peer, token, Instant::now()));
                if !self.media.driver().core().is_member(peer) {
                    // It stopped waiting (its channel ended) before the decision: no token.
                    self.registry.revoke_token(peer);
                }
            }
            Ok(Err(data)) => {
                self.engine_call(|e| e.deny_peer(peer, data));
            }
            Err(_) => {
                log::error!("room={} crashed: admission hook panicked", self.id);
                self.crashed = true;
            }
        }
    }

    /// Queues `event` for `peer`; the first event a peer misses is logged, later ones are not
    /// (a peer that is gone misses every event until its departure is handled).
    fn deliver(&mut self, peer: PeerId, event: String) {
        match self.peers.get(&peer) {
            Some(Attached { sink, .. }) => {
                if !sink.deliver(PeerMessage::MediaEvent(event)) && self.undeliverable.insert(peer)
                {
                    log::warn!(
                        "room={} peer={peer} media events not delivered (channel full or gone)",
                        self.id
                    );
                }
            }
            // A held peer (or one gone): its client hears the state again when it resumes.
            None => log::debug!("room={} peer={peer} not attached, event dropped", self.id),
        }
    }

    /// Fans a chat message out to every member (the sender included), then answers the sender.
    /// Members only: a peer that is not (or no longer) accepted is refused.
    fn chat(&mut self, peer: PeerId, text: String, reply: ReplyRef) {
        let is_member = self.media.driver().core().is_member(peer);
        let refusal = match self.names.get(&peer) {
            Some(name) if is_member => {
                let sent_at = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                let message = Arc::new(serde_json::json!({
                    "peerId": peer.to_string(),
                    "displayName": name,
                    "text": text,
                    "sentAt": sent_at,
                }));
                let engine = self.media.driver().core();
                for (to, Attached { sink, .. }) in &self.peers {
                    // A full channel misses the message: chat is best effort, like a dropped
                    // media event the Phoenix layer deals with by closing the socket.
                    if engine.is_member(*to) && !sink.deliver(PeerMessage::Chat(message.clone())) {
                        log::debug!("room={} peer={to} chat message not delivered", self.id);
                    }
                }
                None
            }
            _ => {
                log::debug!(
                    "room={} peer={peer} chat from a non-member refused",
                    self.id
                );
                Some(ChatRefusal::NotInRoom)
            }
        };
        if let Some(Attached { sink, .. }) = self.peers.get(&peer) {
            sink.deliver(PeerMessage::ChatAnswer { reply, refusal });
        }
    }

    /// Tells every attached peer the room is gone (error event, then the channel closes).
    fn close_all(&mut self, reason: &str) {
        let event = MediaEventOut::error(reason).to_json();
        for (peer, Attached { sink, .. }) in self.peers.drain() {
            log::info!("room={} peer={peer} closing: {reason}", self.id);
            sink.deliver(PeerMessage::Closed {
                error_event: event.clone(),
            });
        }
    }
}

/// One channel of a peer, as the room knows it.
struct Attached {
    sink: Box<dyn PeerSink>,
    /// Which attachment this is ([`Room::attach`]).
    attachment: u64,
}

/// Resolves when a channel's lease ends (its slot is given back then), with how it ended.
async fn lease_end(
    peer: PeerId,
    attachment: u64,
    lease: Lease,
    slot: AttachSlot,
) -> (PeerId, u64, Departure) {
    let departure = lease.await.unwrap_or(Departure::Lost);
    drop(slot);
    (peer, attachment, departure)
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
