//! The room actor: one tokio task per room that owns the room's [`Engine`] (and through it the
//! SFU), fed by a bounded inbox of [`RoomCommand`]s, the room's share of the UDP socket, the
//! peers' leases and the engine's timer.
//!
//! How this works: every input is one engine call followed by a full drain of
//! [`Engine::poll_output`] (the sans-IO drain rule). Outputs fan out here: media events go to
//! the peers' channels, transmits to the shared socket, ufrags to the UDP mux, join requests to
//! the admission hook.
//!
//! Queue policies:
//! - The inbox is bounded ([`super::RoomsConfig::inbox_capacity`]). Senders never wait: a join
//!   that finds it full is refused (`{"reason": "failed to start room"}`), and a peer whose
//!   `mediaEvent` finds it full is disconnected (its channel closes, the others get `peerLeft`)
//!   because silently dropping signalling would leave that peer half-negotiated.
//! - Peer departures do not use the inbox: each peer's channel holds a `oneshot` lease whose drop
//!   removes the peer, so a departure is never lost and happens exactly once.
//! - Media events to a peer go through its channel's bounded mailbox without waiting; if that is
//!   full the Phoenix layer closes the socket (the peer stopped reading), which ends the lease.
//! - Datagrams arrive through the UDP mux's bounded per-room queue (dropped when full).
//!
//! Failure isolation: every engine call runs under `catch_unwind`. A panic marks the room
//! crashed: its peers get an `error` media event and their channels close, the room leaves the
//! registry (the next join starts a fresh one) and its task ends. Other rooms never notice.
//! A panic in the actor's own code is caught around the whole task as a last resort.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::time::Instant;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot};

use super::registry::RoomRegistry;
use super::{PeerMessage, PeerSink};
use crate::rtc::engine::{Engine, EngineOutput};
use crate::rtc::ids::PeerId;
use crate::rtc::media_event::MediaEventOut;
use crate::rtc::sfu::Sfu;
use crate::rtc::udp::{Datagram, RoomUdp};

/// A message to a room.
pub enum RoomCommand {
    /// A channel joined the room's topic as `peer`.
    Attach {
        /// The peer id the channel assigned.
        peer: PeerId,
        /// Where the room sends the peer's media events.
        sink: Box<dyn PeerSink>,
        /// Resolves (with an error) when the channel is gone: the peer is then removed.
        lease: oneshot::Receiver<()>,
    },
    /// The serialized media event a peer pushed.
    MediaEvent {
        /// The sender.
        peer: PeerId,
        /// The `data` string of its `mediaEvent` push.
        data: String,
    },
}

impl std::fmt::Debug for RoomCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RoomCommand::Attach { peer, .. } => write!(f, "Attach({peer})"),
            RoomCommand::MediaEvent { peer, .. } => write!(f, "MediaEvent({peer})"),
        }
    }
}

/// The room task's state.
pub(crate) struct Room {
    id: String,
    instance: u64,
    registry: RoomRegistry,
    inbox: mpsc::Receiver<RoomCommand>,
    engine: Engine<Sfu>,
    /// The channels attached to this room.
    peers: HashMap<PeerId, Box<dyn PeerSink>>,
    udp: Option<RoomUdp>,
    /// When the engine wants `handle_timeout`.
    engine_deadline: Option<Instant>,
    /// Since when the room has had no peers.
    empty_since: Option<tokio::time::Instant>,
    crashed: bool,
}

impl Room {
    pub(crate) fn new(
        id: &str,
        instance: u64,
        registry: RoomRegistry,
        inbox: mpsc::Receiver<RoomCommand>,
    ) -> Self {
        let mut config = registry.inner().config.sfu.clone();
        config.room = id.into();
        let sfu = Sfu::new(config, Instant::now());
        Room {
            id: id.to_owned(),
            instance,
            engine: Engine::new(id, sfu),
            registry,
            inbox,
            peers: HashMap::new(),
            udp: None,
            engine_deadline: None,
            empty_since: Some(tokio::time::Instant::now()),
            crashed: false,
        }
    }

    /// The task body with a last line of defence: engine calls are already guarded, but should
    /// the actor's own code panic, the room still leaves the registry (its peers learn it on
    /// their next push, which fails with "room closed") and no other room is affected.
    pub(crate) async fn run_supervised(self) {
        use futures_util::FutureExt;
        let (id, instance, registry) = (self.id.clone(), self.instance, self.registry.clone());
        if AssertUnwindSafe(self.run()).catch_unwind().await.is_err() {
            log::error!("room={id} task panicked; room removed");
            registry.forget(&id, instance);
        }
    }

    /// The task body: runs until the room has been empty for the grace period, or crashes.
    async fn run(mut self) {
        if let Some(mux) = self.registry.inner().udp.clone() {
            match mux.register(&self.id).await {
                Ok(udp) => self.udp = Some(udp),
                Err(e) => {
                    log::error!("room={} cannot register with the UDP mux: {e}", self.id);
                    self.close_all("failed to start room");
                    self.registry.forget(&self.id, self.instance);
                    return;
                }
            }
        }
        // The SFU may want a timer before any input.
        self.drain().await;
        let mut leases: FuturesUnordered<_> = FuturesUnordered::new();
        let grace = self.registry.inner().config.empty_grace;
        loop {
            let engine_deadline = self.engine_deadline.map(tokio::time::Instant::from_std);
            let retire_at = self.empty_since.map(|t| t + grace);
            let wake = match (engine_deadline, retire_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                command = self.inbox.recv() => match command {
                    Some(RoomCommand::Attach { peer, sink, lease }) => {
                        log::info!("room={} peer={peer} attached", self.id);
                        self.peers.insert(peer, sink);
                        self.empty_since = None;
                        leases.push(async move {
                            // Resolves when the channel sends or drops its end.
                            let _ = lease.await;
                            peer
                        });
                    }
                    Some(RoomCommand::MediaEvent { peer, data }) => {
                        if self.peers.contains_key(&peer) {
                            self.engine_call(|e| e.handle_media_event(peer, &data, Instant::now()));
                        } else {
                            log::warn!("room={} peer={peer} media event from a detached peer dropped", self.id);
                        }
                    }
                    // Unreachable while the registry holds a sender; stop if it ever happens.
                    None => break,
                },
                Some(peer) = leases.next(), if !leases.is_empty() => {
                    log::info!("room={} peer={peer} detached", self.id);
                    self.peers.remove(&peer);
                    self.engine_call(|e| e.remove_peer(peer));
                    if self.peers.is_empty() {
                        self.empty_since = Some(tokio::time::Instant::now());
                    }
                }
                datagram = recv_datagram(&mut self.udp) => match datagram {
                    Some(d) => {
                        self.engine_call(|e| e.handle_datagram(Instant::now(), d.source, d.destination, &d.contents));
                    }
                    None => {
                        log::warn!("room={} UDP mux stopped; media is off", self.id);
                        self.udp = None;
                    }
                },
                _ = sleep_until(wake) => {
                    let now = tokio::time::Instant::now();
                    if retire_at.is_some_and(|t| t <= now)
                        && self.peers.is_empty()
                        && self.registry.retire_if_idle(&self.id, self.instance, &self.inbox)
                    {
                        log::info!("room={} stopped: empty for {grace:?}", self.id);
                        return;
                    }
                    if engine_deadline.is_some_and(|t| t <= now) {
                        self.engine_deadline = None;
                        self.engine_call(|e| e.handle_timeout(Instant::now()));
                    }
                }
            }
            self.drain().await;
            if self.crashed {
                self.close_all("room crashed");
                self.registry.forget(&self.id, self.instance);
                return;
            }
        }
    }

    /// Runs one engine call, catching a panic (which marks the room crashed).
    fn engine_call<T>(&mut self, f: impl FnOnce(&mut Engine<Sfu>) -> T) -> Option<T> {
        let engine = &mut self.engine;
        Self::catch(&self.id, &mut self.crashed, || f(engine))
    }

    /// Runs `f`, catching a panic (which marks the room crashed).
    fn guarded<T>(&mut self, f: impl FnOnce() -> T) -> Option<T> {
        Self::catch(&self.id, &mut self.crashed, f)
    }

    fn catch<T>(id: &str, crashed: &mut bool, f: impl FnOnce() -> T) -> Option<T> {
        if *crashed {
            return None;
        }
        match std::panic::catch_unwind(AssertUnwindSafe(f)) {
            Ok(v) => Some(v),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                log::error!("room={id} crashed: {what}");
                *crashed = true;
                None
            }
        }
    }

    /// Drains the engine's outputs and fans them out.
    async fn drain(&mut self) {
        while let Some(output) = self.engine_call(Engine::poll_output) {
            match output {
                EngineOutput::Timeout(t) => {
                    self.engine_deadline = Some(t);
                    return;
                }
                EngineOutput::JoinRequest { peer, metadata } => {
                    let members = self.engine.member_count();
                    let admission = self.registry.inner().config.admission.clone();
                    let id = self.id.clone();
                    // The hook is application code: a panic in it crashes this room only.
                    let decision = self.guarded(|| admission.admit(&id, peer, &metadata, members));
                    match decision {
                        Some(Ok(())) => {
                            self.engine_call(|e| e.accept_peer(peer, Instant::now()));
                        }
                        Some(Err(data)) => {
                            self.engine_call(|e| e.deny_peer(peer, data));
                        }
                        None => {}
                    }
                }
                EngineOutput::Send { to, event } => self.deliver(to, event),
                EngineOutput::Broadcast { to, event } => {
                    for peer in to {
                        self.deliver(peer, event.clone());
                    }
                }
                EngineOutput::IceUfrags(ufrags) => {
                    if let Some(udp) = &self.udp {
                        udp.set_ufrags(ufrags).await;
                    }
                }
                EngineOutput::PeerRemoved(peer) => {
                    log::debug!("room={} peer={peer} is no longer a member", self.id);
                }
                EngineOutput::Transmit(t) => {
                    if let Some(Err(e)) = self.udp.as_ref().map(|udp| udp.try_send(&t)) {
                        log::debug!(
                            "room={} datagram to {} dropped: {e}",
                            self.id,
                            t.destination
                        );
                    }
                }
            }
        }
    }

    fn deliver(&self, peer: PeerId, event: String) {
        match self.peers.get(&peer) {
            Some(sink) => {
                if !sink.deliver(PeerMessage::MediaEvent(event)) {
                    log::warn!(
                        "room={} peer={peer} media event not delivered (channel full or gone)",
                        self.id
                    );
                }
            }
            None => log::debug!("room={} peer={peer} not attached, event dropped", self.id),
        }
    }

    /// Tells every attached peer the room is gone (error event, then the channel closes).
    fn close_all(&mut self, reason: &str) {
        let event = MediaEventOut::error(reason).to_json();
        for (peer, sink) in self.peers.drain() {
            log::info!("room={} peer={peer} closing: {reason}", self.id);
            sink.deliver(PeerMessage::Closed {
                error_event: event.clone(),
            });
        }
    }
}

async fn recv_datagram(udp: &mut Option<RoomUdp>) -> Option<Datagram> {
    match udp {
        Some(u) => u.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
