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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::actor::{Room, RoomCommand};
use super::admission::{Admission, MaxPeers};
use super::{PeerSink, RoomError};
use crate::rtc::driver::MediaPlane;
use crate::rtc::ids::PeerId;

/// Settings shared by every room.
#[derive(Clone)]
pub struct RoomsConfig {
    /// How long an empty room waits for a new peer before it stops.
    pub empty_grace: Duration,
    /// Capacity of a room's command inbox (see [`super::actor`] for the full-queue policy).
    pub inbox_capacity: usize,
    /// Who may join.
    pub admission: Arc<dyn Admission>,
}

impl Default for RoomsConfig {
    fn default() -> Self {
        RoomsConfig {
            empty_grace: Duration::from_secs(2),
            inbox_capacity: 1024,
            admission: Arc::new(MaxPeers::default()),
        }
    }
}

impl std::fmt::Debug for RoomsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomsConfig")
            .field("empty_grace", &self.empty_grace)
            .field("inbox_capacity", &self.inbox_capacity)
            .finish_non_exhaustive()
    }
}

/// A way to send commands to one running room.
#[derive(Clone, Debug)]
pub struct RoomHandle {
    /// The room id.
    pub(crate) room: Arc<str>,
    pub(crate) tx: mpsc::Sender<RoomCommand>,
}

impl RoomHandle {
    /// The room id.
    pub fn room_id(&self) -> &str {
        &self.room
    }

    /// Queues a command without waiting; fails when the inbox is full or the room stopped.
    pub(crate) fn try_send(&self, cmd: RoomCommand) -> Result<(), RoomError> {
        self.tx.try_send(cmd).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => RoomError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => RoomError::Stopped,
        })
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

    /// Attaches `peer` (reached through `sink`) to room `room_id`, starting the room if needed.
    /// `lease` is the peer's presence: when its sender is dropped the room removes the peer
    /// (exactly once, whatever ended the channel). Must run inside a tokio runtime.
    pub fn attach(
        &self,
        room_id: &str,
        peer: PeerId,
        sink: Box<dyn PeerSink>,
        lease: oneshot::Receiver<()>,
    ) -> Result<RoomHandle, RoomError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| RoomError::NoRuntime)?;
        let mut rooms = self.lock();
        let mut command = RoomCommand::Attach { peer, sink, lease };
        if let Some(entry) = rooms.get(room_id) {
            match entry.handle.tx.try_send(command) {
                Ok(()) => return Ok(entry.handle.clone()),
                Err(mpsc::error::TrySendError::Full(_)) => return Err(RoomError::Overloaded),
                // The room stopped (it crashed and has not removed itself yet): replace it.
                Err(mpsc::error::TrySendError::Closed(c)) => {
                    rooms.remove(room_id);
                    command = c;
                }
            }
        }
        let instance = self.inner.next_instance.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.inner.config.inbox_capacity.max(1));
        let handle = RoomHandle {
            room: Arc::from(room_id),
            tx,
        };
        handle.try_send(command)?;
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
        inbox: &mpsc::Receiver<RoomCommand>,
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

    /// Forgets room `room_id` if it is still this `instance` (after a crash).
    pub(crate) fn forget(&self, room_id: &str, instance: u64) {
        let mut rooms = self.lock();
        if rooms.get(room_id).is_some_and(|e| e.instance == instance) {
            rooms.remove(room_id);
        }
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
    use crate::room::PeerMessage;

    fn peer_sink() -> (Box<dyn PeerSink>, mpsc::Receiver<PeerMessage>) {
        let (tx, rx) = mpsc::channel(16);
        (Box::new(tx), rx)
    }

    // A current-thread runtime does not run the spawned room until the test yields, so the
    // room's inbox state is deterministic here.
    #[tokio::test(flavor = "current_thread")]
    async fn a_full_room_inbox_refuses_the_join_instead_of_waiting() {
        let config = RoomsConfig {
            inbox_capacity: 1,
            ..RoomsConfig::default()
        };
        let registry = RoomRegistry::new(config, MediaPlane::default());
        let (sink, _rx1) = peer_sink();
        let (_lease1, lease_rx) = oneshot::channel();
        registry
            .attach("r", PeerId::new_v4(), sink, lease_rx)
            .expect("first join starts the room");
        let (sink, _rx2) = peer_sink();
        let (_lease2, lease_rx) = oneshot::channel();
        let second = registry.attach("r", PeerId::new_v4(), sink, lease_rx);
        assert_eq!(second.unwrap_err(), RoomError::Overloaded);
        assert_eq!(registry.room_count(), 1);
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
