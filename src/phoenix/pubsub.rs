//! PubSub: topic fan-out behind a trait, with a node-local implementation.
//!
//! Sockets subscribe their channels' topics (and their socket id topic) with their
//! [`Mailbox`]. A broadcast is wrapped once in a [`Published`], which caches its encoding per
//! serializer, so a message sent to a thousand V2 sockets is serialized once. Deliveries never
//! wait: a subscriber whose inbox is full is overloaded and gets closed by its own shell.
//! `broadcast_from` skips exactly one subscription (the sending channel instance).
//! A distributed adapter can implement [`PubSub`] without touching channels.

use super::mailbox::{Mailbox, SocketEvent};
use super::message::{Broadcast, Frame, Payload};
use super::serializer::{EncodeError, Serializer, encode_broadcast};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Identifies one subscription (one channel instance's topic, or one socket's id topic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(pub u64);

impl SubscriptionId {
    /// A process-wide unique id.
    pub fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        SubscriptionId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// A broadcast plus its lazily computed encoding for each serializer.
#[derive(Debug)]
pub struct Published {
    /// The message.
    pub broadcast: Broadcast,
    encoded: [OnceLock<Result<Frame, EncodeError>>; 2],
}

impl Published {
    /// Wraps a broadcast.
    pub fn new(broadcast: Broadcast) -> Arc<Self> {
        Arc::new(Published {
            broadcast,
            encoded: [OnceLock::new(), OnceLock::new()],
        })
    }

    /// The frame for `serializer`, encoded at most once.
    pub fn frame(&self, serializer: Serializer) -> Result<Frame, EncodeError> {
        self.encoded[serializer.index()]
            .get_or_init(|| encode_broadcast(serializer, &self.broadcast))
            .clone()
    }
}

/// Topic publish/subscribe. Implementations must never block the caller.
pub trait PubSub: Send + Sync + 'static {
    /// Subscribes `mailbox` to `topic` under the caller-chosen `id`.
    fn subscribe(&self, topic: &str, id: SubscriptionId, mailbox: Mailbox);
    /// Removes subscription `id` from `topic`.
    fn unsubscribe(&self, topic: &str, id: SubscriptionId);
    /// Delivers `msg` to every subscriber of its topic except `from`.
    fn publish(&self, from: Option<SubscriptionId>, msg: Arc<Published>);

    /// Delivers `event`/`payload` to every subscriber of `topic`.
    fn broadcast(&self, topic: &str, event: &str, payload: Payload) {
        let b = Broadcast {
            topic: topic.into(),
            event: event.into(),
            payload,
        };
        self.publish(None, Published::new(b));
    }

    /// Like [`PubSub::broadcast`] but skipping the subscription `from`.
    fn broadcast_from(&self, from: SubscriptionId, topic: &str, event: &str, payload: Payload) {
        let b = Broadcast {
            topic: topic.into(),
            event: event.into(),
            payload,
        };
        self.publish(Some(from), Published::new(b));
    }
}

/// Node-local PubSub: a topic → subscribers table.
#[derive(Debug, Default)]
pub struct LocalPubSub {
    // A std mutex: held only to copy the subscriber list, never across an await.
    topics: Mutex<HashMap<String, Vec<(SubscriptionId, Mailbox)>>>,
}

impl LocalPubSub {
    /// An empty PubSub.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Number of subscriptions to `topic` (for tests and metrics).
    pub fn subscriber_count(&self, topic: &str) -> usize {
        self.lock().get(topic).map_or(0, Vec::len)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<(SubscriptionId, Mailbox)>>> {
        // A poisoned lock only means another thread panicked while holding it; the map is
        // still consistent because every critical section is a single insert/remove/clone.
        self.topics.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl PubSub for LocalPubSub {
    fn subscribe(&self, topic: &str, id: SubscriptionId, mailbox: Mailbox) {
        self.lock()
            .entry(topic.to_owned())
            .or_default()
            .push((id, mailbox));
    }

    fn unsubscribe(&self, topic: &str, id: SubscriptionId) {
        let mut topics = self.lock();
        if let Some(subs) = topics.get_mut(topic) {
            subs.retain(|(s, _)| *s != id);
            if subs.is_empty() {
                topics.remove(topic);
            }
        }
    }

    fn publish(&self, from: Option<SubscriptionId>, msg: Arc<Published>) {
        let subs = self
            .lock()
            .get(&msg.broadcast.topic)
            .cloned()
            .unwrap_or_default();
        for (id, mailbox) in subs {
            if Some(id) == from {
                continue;
            }
            let ev = SocketEvent::Deliver {
                sub: id,
                msg: msg.clone(),
            };
            if let Err(e) = mailbox.try_send(ev) {
                log::debug!(
                    "pubsub: dropped {} on {} for {id:?}: {e}",
                    msg.broadcast.event,
                    msg.broadcast.topic
                );
            }
        }
    }
}
