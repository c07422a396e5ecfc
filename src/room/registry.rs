//! The room registry: room id → running room, find-or-start, and removal of idle rooms.
//!
//! How this works: the map sits behind a `std::sync::Mutex` that is only held for map look-ups,
//! `tokio::spawn` and a non-blocking `try_send` — never across an `.await`. Both "attach a peer"
//! ([`RoomRegistry::attach`]) and "an idle room retires" (`retire_if_idle`) run entirely under
//! that lock, which gives the two guarantees:
//! - two simultaneous first joins of one room id never start two rooms (the second finds the
//!   first's entry);
//! - a join never reaches a room that is stopping: a room only retires if its inbox is empty
//!   while holding the lock, and a join's `Attach` is queued while holding it, so either the
//!   room sees the `Attach` and stays, or the join finds no entry and starts a fresh room.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::actor::{Room, RoomCommand};
use super::admission::{Admission, MaxPeers};
use super::metrics::RoomMetrics;
use super::resume::{ResumeRefusal, ResumeTokens, TOKEN_BYTES};
use super::{Lease, PeerSink, Placement, RoomError};
use crate::rtc::driver::MediaPlane;
use crate::rtc::engine::EngineLimits;
use crate::rtc::ids::PeerId;

/// Settings shared by every room.
#[derive(Clone)]
pub struct RoomsConfig {
    /// How long an empty room waits for a new peer before it stops.
    pub empty_grace: Duration,
    /// The most members a room may have (at least 1); the next `join` media event gets
    /// `peerDenied {"reason": "room is full"}`. A room also accepts at most twice as many
    /// channels (members plus joiners not yet admitted or denied); further channel joins get
    /// `{"reason": "room is busy"}` (see [`super`] for the queue policy).
    pub max_peers: usize,
    /// The most rooms running at once; a join that would start another gets
    /// `{"reason": "too many rooms"}`.
    pub max_rooms: usize,
    /// Media events one peer may have waiting in its room's inbox; the peer that exceeds its own
    /// share is disconnected (`error` media event `room overloaded`), nobody else.
    pub peer_queue: usize,
    /// Who may join (asked after the `max_peers` check).
    pub admission: Arc<dyn Admission>,
    /// The rooms' counters and gauges.
    pub metrics: RoomMetrics,
    /// Test-only fault injection (`VIDEOROOM_FAULT_INJECTION=1`, never set in production): a
    /// `faultInjection` media event panics or stalls its room (see `actor.rs`).
    pub fault_injection: bool,
    /// How long a peer whose socket was lost can be resumed (the engine holds it that long,
    /// [`EngineLimits::reconnect_grace`]); spent resume tokens are remembered as long.
    pub reconnect_grace: Duration,
    /// Clustered: which node runs each room (`None`: this node runs every room).
    pub placement: Option<Arc<dyn Placement>>,
}

impl RoomsConfig {
    /// The most channels attached to one room at once: members plus as many waiting joiners.
    pub fn max_attached(&self) -> usize {
        self.max_peers.max(1).saturating_mul(2)
    }
}

impl Default for RoomsConfig {
    fn default() -> Self {
        RoomsConfig {
            empty_grace: Duration::from_secs(2),
            // The SFU forwards every member's tracks to every other member, so a room of N
            // peers sends N×(N−1) streams: at 100 peers that is 9,900 video streams, about
            // 10 Gbit/s at 1 Mbit/s each, already more than one server's uplink, and the
            // client's tile grid is unusable long before. 100 keeps one room from eating the
            // server while no real meeting of this app comes near it.
            max_peers: 100,
            // With the default room size that is already far more media than one machine
            // forwards; it bounds the tasks and memory a stranger can start by joining
            // made-up room names.
            max_rooms: 1000,
            // A join, an SDP offer and a few dozen ICE candidates are well under it, so only a
            // peer flooding its room reaches it.
            peer_queue: 256,
            admission: Arc::new(MaxPeers::default()),
            metrics: RoomMetrics::default(),
            fault_injection: false,
            reconnect_grace: EngineLimits::default().reconnect_grace,
            placement: None,
        }
    }
}

impl std::fmt::Debug for RoomsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomsConfig")
            .field("empty_grace", &self.empty_grace)
            .field("max_peers", &self.max_peers)
            .field("max_rooms", &self.max_rooms)
            .field("peer_queue", &self.peer_queue)
            .field("reconnect_grace", &self.reconnect_grace)
            .field("clustered", &self.placement.is_some())
            .finish_non_exhaustive()
    }
}

/// A way to send commands to one running room.
#[derive(Clone, Debug)]
pub struct RoomHandle {
    /// The room id.
    pub(crate) room: Arc<str>,
    /// Unbounded as a channel, bounded by its senders: see [`super`]'s queue policy.
    pub(crate) tx: mpsc::UnboundedSender<RoomCommand>,
    /// Channels attached to the room (counted here when queued, given back by the room when the
    /// peer is gone), at most [`RoomsConfig::max_attached`].
    pub(crate) attached: Arc<AtomicUsize>,
}

impl RoomHandle {
    /// The room id.
    pub fn room_id(&self) -> &str {
        &self.room
    }

    /// Queues a command without waiting (its sender has checked its share of the inbox);
    /// fails when the room stopped.
    pub(crate) fn send(&self, cmd: RoomCommand) -> Result<(), RoomError> {
        self.tx.send(cmd).map_err(|_| RoomError::Stopped)
    }

    /// Takes one attach slot of `max`, or `None` when the room has `max` channels.
    fn reserve_attach(&self, max: usize) -> Option<AttachSlot> {
        self.attached
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| AttachSlot(self.attached.clone()))
    }
}

/// One of a room's attach slots: given back when dropped, i.e. when the room has removed the
/// peer (or the attach never reached the room).
pub(crate) struct AttachSlot(Arc<AtomicUsize>);

impl Drop for AttachSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

struct Entry {
    /// Distinguishes successive rooms with the same id.
    instance: u64,
    handle: RoomHandle,
}

struct Inner {
    /// Room id → running room. Locked only for map operations and non-blocking sends.
    rooms: Mutex<HashMap<String, Entry>>,
    /// Every room's resume tokens; locked after `rooms` when both are needed, never across an
    /// `.await`.
    tokens: Mutex<ResumeTokens>,
    config: RoomsConfig,
    media: MediaPlane,
    next_instance: AtomicU64,
}

/// Every running room of the server (cheap to clone).
#[derive(Clone)]
pub struct RoomRegistry {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RoomRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomRegistry")
            .field("rooms", &self.room_ids())
            .finish()
    }
}

impl RoomRegistry {
    /// A registry whose rooms use `config` and get their media from `media`.
    pub fn new(config: RoomsConfig, media: MediaPlane) -> Self {
        RoomRegistry {
            inner: Arc::new(Inner {
                rooms: Mutex::new(HashMap::new()),
                tokens: Mutex::new(ResumeTokens::new(config.reconnect_grace)),
                config,
                media,
                next_instance: AtomicU64::new(1),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding this lock can only come from HashMap itself; the map is still
        // consistent then, so poisoning is ignored.
        self.inner.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn tokens(&self) -> MutexGuard<'_, ResumeTokens> {
        // As above: only map operations run under it.
        self.inner.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh resume token for `peer` of `room_id` (its previous one is spent). The random
    /// bytes are drawn here, at the edge of the sans-IO table.
    pub(crate) fn issue_token(&self, room_id: &str, peer: PeerId) -> String {
        let random: [u8; TOKEN_BYTES] = rand::random();
        self.tokens().issue(room_id, peer, random, Instant::now())
    }

    /// `peer` is gone: its resume token no longer works.
    pub(crate) fn revoke_token(&self, peer: PeerId) {
        self.tokens().revoke(peer, Instant::now());
    }

    /// Reattaches the peer that `token` resumes (reached through `sink` now) to room `room_id`,
    /// with a fresh token for it; the room replays what the client missed. Refused (nothing
    /// changes for that peer) when the token is not live for this room, or the room is busy.
    pub fn resume(
        &self,
        room_id: &str,
        token: &str,
        sink: Box<dyn PeerSink>,
        lease: Lease,
    ) -> Result<(RoomHandle, PeerId), RoomError> {
        let rooms = self.lock();
        let now = Instant::now();
        let Some(entry) = rooms.get(room_id) else {
            // A live token's peer is a member of a running room, so this token is dead, or of
            // another room: redeeming says which (and a live one, were there any, dies too).
            let mut tokens = self.tokens();
            return Err(match tokens.redeem(room_id, token, now) {
                Ok(peer) => {
                    tokens.revoke(peer, now);
                    ResumeRefusal::Expired.into()
                }
                Err(why) => why.into(),
            });
        };
        // The slot first: a busy room refuses before the token is spent.
        let Some(slot) = entry
            .handle
            .reserve_attach(self.inner.config.max_attached())
        else {
            self.inner.config.metrics.limit_hit("attached_per_room");
            return Err(RoomError::Busy);
        };
        let (peer, next) = {
            let mut tokens = self.tokens();
            let peer = tokens.redeem(room_id, token, now)?;
            (peer, tokens.issue(room_id, peer, rand::random(), now))
        };
        entry.handle.send(RoomCommand::Resume {
            peer,
            sink,
            lease,
            slot,
            token: next,
        })?;
        Ok((entry.handle.clone(), peer))
    }

    /// Attaches `peer` (reached through `sink`) to room `room_id`, starting the room if needed.
    /// `lease` is the peer's presence: when its sender is dropped the room removes the peer
    /// (exactly once, whatever ended the channel). Must run inside a tokio runtime.
    pub fn attach(
        &self,
        room_id: &str,
        peer: PeerId,
        sink: Box<dyn PeerSink>,
        lease: Lease,
    ) -> Result<RoomHandle, RoomError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| RoomError::NoRuntime)?;
        let max_attached = self.inner.config.max_attached();
        let mut rooms = self.lock();
        if let Some(entry) = rooms.get(room_id) {
            let Some(slot) = entry.handle.reserve_attach(max_attached) else {
                self.inner.config.metrics.limit_hit("attached_per_room");
                return Err(RoomError::Busy);
            };
            let command = RoomCommand::Attach {
                peer,
                sink,
                lease,
                slot,
            };
            match entry.handle.tx.send(command) {
                Ok(()) => return Ok(entry.handle.clone()),
                // The room stopped (it crashed and has not removed itself yet): replace it.
                Err(mpsc::error::SendError(command)) => {
                    rooms.remove(room_id);
                    let RoomCommand::Attach {
                        peer, sink, lease, ..
                    } = command
                    else {
                        return Err(RoomError::Stopped);
                    };
                    return self.start_room(&runtime, &mut rooms, room_id, (peer, sink, lease));
                }
            }
        }
        if rooms.len() >= self.inner.config.max_rooms {
            self.inner.config.metrics.limit_hit("rooms");
            return Err(RoomError::TooManyRooms);
        }
        self.start_room(&runtime, &mut rooms, room_id, (peer, sink, lease))
    }

    /// Starts room `room_id` with `peer` as its first channel (the registry lock is held).
    fn start_room(
        &self,
        runtime: &tokio::runtime::Handle,
        rooms: &mut HashMap<String, Entry>,
        room_id: &str,
        (peer, sink, lease): (PeerId, Box<dyn PeerSink>, Lease),
    ) -> Result<RoomHandle, RoomError> {
        let instance = self.inner.next_instance.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = RoomHandle {
            room: Arc::from(room_id),
            tx,
            attached: Arc::new(AtomicUsize::new(0)),
        };
        let slot = handle
            .reserve_attach(self.inner.config.max_attached())
            .ok_or(RoomError::Busy)?;
        handle.send(RoomCommand::Attach {
            peer,
            sink,
            lease,
            slot,
        })?;
        let media = self.inner.media.room(room_id);
        let room = Room::new(
            room_id,
            instance,
            self.clone(),
            rx,
            &self.inner.config,
            media,
        );
        runtime.spawn(room.run_supervised());
        log::info!("room={room_id} started");
        rooms.insert(
            room_id.to_owned(),
            Entry {
                instance,
                handle: handle.clone(),
            },
        );
        Ok(handle)
    }

    /// Removes room `room_id` if it is still this `instance` and its inbox is empty (see the
    /// module docs); returns whether it was removed and may stop.
    pub(crate) fn retire_if_idle(
        &self,
        room_id: &str,
        instance: u64,
        inbox: &mpsc::UnboundedReceiver<RoomCommand>,
    ) -> bool {
        let mut rooms = self.lock();
        if !inbox.is_empty() {
            return false;
        }
        if rooms.get(room_id).is_some_and(|e| e.instance == instance) {
            rooms.remove(room_id);
        }
        true
    }

    /// Forgets room `room_id` if it is still this `instance` (after a crash); its peers'
    /// resume tokens expire.
    pub(crate) fn forget(&self, room_id: &str, instance: u64) {
        let mut rooms = self.lock();
        if rooms.get(room_id).is_some_and(|e| e.instance == instance) {
            rooms.remove(room_id);
            self.tokens().revoke_room(room_id, Instant::now());
        }
    }

    /// How many media events one peer may have waiting in its room's inbox.
    pub(crate) fn peer_queue(&self) -> usize {
        self.inner.config.peer_queue.max(1)
    }

    /// Clustered: which node runs each room.
    pub(crate) fn placement(&self) -> Option<&Arc<dyn Placement>> {
        self.inner.config.placement.as_ref()
    }

    /// The rooms' counters and gauges.
    pub(crate) fn metrics(&self) -> &RoomMetrics {
        &self.inner.config.metrics
    }

    /// The number of running rooms.
    pub fn room_count(&self) -> usize {
        self.lock().len()
    }

    /// Whether room `room_id` is running.
    pub fn contains(&self, room_id: &str) -> bool {
        self.lock().contains_key(room_id)
    }

    /// The ids of the running rooms (sorted).
    pub fn room_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.lock().keys().cloned().collect();
        ids.sort();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::{Departure, PeerMessage};
    use tokio::sync::oneshot;

    fn peer_sink() -> (Box<dyn PeerSink>, mpsc::Receiver<PeerMessage>) {
        let (tx, rx) = mpsc::channel(16);
        (Box::new(tx), rx)
    }

    /// What keeps one attached test peer attached: its lease and its mailbox.
    type Kept = (oneshot::Sender<Departure>, mpsc::Receiver<PeerMessage>);

    /// Attaches a fresh peer to `room`.
    fn attach_peer(registry: &RoomRegistry, room: &str) -> Result<Kept, RoomError> {
        let (sink, rx) = peer_sink();
        let (lease, lease_rx) = oneshot::channel();
        registry.attach(room, PeerId::new_v4(), sink, lease_rx)?;
        Ok((lease, rx))
    }

    /// Attaches a fresh peer to each of `rooms` in turn; every attach must be accepted.
    fn attach_all(registry: &RoomRegistry, rooms: &[&str]) -> Vec<Kept> {
        let attach = |room: &&str| attach_peer(registry, room).expect("within the limits");
        rooms.iter().map(attach).collect()
    }

    // A current-thread runtime does not run the spawned room until the test yields, so the
    // room's attach count is deterministic here.
    #[tokio::test(flavor = "current_thread")]
    async fn a_room_with_twice_its_peer_limit_in_channels_refuses_the_next_join_as_busy() {
        let config = RoomsConfig {
            max_peers: 1,
            ..RoomsConfig::default()
        };
        let registry = RoomRegistry::new(config, MediaPlane::default());
        let _kept = attach_all(&registry, &["r", "r"]);
        assert_eq!(attach_peer(&registry, "r").unwrap_err(), RoomError::Busy);
        assert_eq!(registry.room_count(), 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_join_that_would_start_a_room_beyond_the_limit_is_refused() {
        let config = RoomsConfig {
            max_rooms: 2,
            ..RoomsConfig::default()
        };
        let registry = RoomRegistry::new(config, MediaPlane::default());
        let _kept = attach_all(&registry, &["a", "b", "a"]);
        assert_eq!(
            attach_peer(&registry, "c").unwrap_err(),
            RoomError::TooManyRooms
        );
        assert_eq!(registry.room_ids(), ["a", "b"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_first_attaches_share_one_room() {
        let registry = RoomRegistry::new(RoomsConfig::default(), MediaPlane::default());
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let registry = registry.clone();
            tasks.push(tokio::spawn(async move {
                let (sink, rx) = peer_sink();
                let (lease, lease_rx) = oneshot::channel();
                let handle = registry.attach("same", PeerId::new_v4(), sink, lease_rx);
                (handle.map(|h| h.room_id().to_owned()), lease, rx)
            }));
        }
        let mut keep = Vec::new();
        for t in tasks {
            let (room, lease, rx) = t.await.unwrap();
            assert_eq!(room.unwrap(), "same");
            keep.push((lease, rx));
        }
        assert_eq!(registry.room_ids(), ["same"]);
    }

    #[test]
    fn attaching_outside_a_runtime_is_an_error_not_a_panic() {
        let registry = RoomRegistry::new(RoomsConfig::default(), MediaPlane::default());
        let (sink, _rx) = peer_sink();
        let (_lease, lease_rx) = oneshot::channel();
        let result = registry.attach("r", PeerId::new_v4(), sink, lease_rx);
        assert_eq!(result.unwrap_err(), RoomError::NoRuntime);
        assert_eq!(registry.room_count(), 0);
    }
}
