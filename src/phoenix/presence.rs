//! Presence: who is on a topic, with `presence_state` / `presence_diff` as Phoenix sends them.
//!
//! State is `topic → key → metas`; every meta carries a unique `phx_ref` (base64 of 8 random
//! bytes). A channel tracks itself with [`super::ChannelContext::track_presence`]; the socket
//! then pushes `presence_state` (the full list) to that client, and every change is broadcast
//! on the topic as `presence_diff {"joins":…, "leaves":…}` to all subscribers, the tracker
//! included. When the channel instance ends, its metas leave automatically.
//! Node-local, like [`super::LocalPubSub`].

use super::message::Payload;
use super::pubsub::{PubSub, SubscriptionId};
use base64::Engine as _;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Event carrying the full presence list, pushed to a client after it joins.
pub const PRESENCE_STATE: &str = "presence_state";
/// Event carrying presence changes, broadcast on the topic.
pub const PRESENCE_DIFF: &str = "presence_diff";

#[derive(Debug, Clone)]
struct Entry {
    owner: SubscriptionId,
    meta: Value,
}

type Topics = HashMap<String, BTreeMap<String, Vec<Entry>>>;

/// The presence tracker of one node.
pub struct Presence {
    pubsub: Arc<dyn PubSub>,
    // A std mutex: critical sections only touch the map; broadcasts happen after unlocking.
    topics: Mutex<Topics>,
}

impl std::fmt::Debug for Presence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presence").finish_non_exhaustive()
    }
}

fn new_phx_ref() -> String {
    let bytes: [u8; 8] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn metas_map(key: &str, metas: Vec<Value>) -> Value {
    let mut m = Map::new();
    m.insert(key.to_owned(), json!({ "metas": metas }));
    Value::Object(m)
}

impl Presence {
    /// A tracker broadcasting its diffs on `pubsub`.
    pub fn new(pubsub: Arc<dyn PubSub>) -> Arc<Self> {
        Arc::new(Presence {
            pubsub,
            topics: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Topics> {
        // Every critical section leaves the map consistent, so a poisoned lock is still usable.
        self.topics.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tracks `key` on `topic` with `meta` (an object) for `owner`; returns the new `phx_ref`.
    pub fn track(&self, owner: SubscriptionId, topic: &str, key: &str, meta: Value) -> String {
        let phx_ref = new_phx_ref();
        let mut meta = match meta {
            Value::Object(m) => m,
            other => {
                let mut m = Map::new();
                m.insert("value".into(), other);
                m
            }
        };
        meta.insert("phx_ref".into(), Value::String(phx_ref.clone()));
        let meta = Value::Object(meta);
        self.lock()
            .entry(topic.to_owned())
            .or_default()
            .entry(key.to_owned())
            .or_default()
            .push(Entry {
                owner,
                meta: meta.clone(),
            });
        let diff = json!({ "joins": metas_map(key, vec![meta]), "leaves": {} });
        self.pubsub
            .broadcast(topic, PRESENCE_DIFF, Payload::Json(diff));
        phx_ref
    }

    /// Removes every meta `owner` tracked on `topic` and broadcasts the leaves.
    pub fn untrack_owner(&self, owner: SubscriptionId, topic: &str) {
        let mut leaves = Map::new();
        {
            let mut topics = self.lock();
            let Some(keys) = topics.get_mut(topic) else {
                return;
            };
            keys.retain(|key, entries| {
                let (gone, kept): (Vec<Entry>, Vec<Entry>) =
                    entries.drain(..).partition(|e| e.owner == owner);
                if !gone.is_empty() {
                    let metas: Vec<Value> = gone.into_iter().map(|e| e.meta).collect();
                    leaves.insert(key.clone(), json!({ "metas": metas }));
                }
                *entries = kept;
                !entries.is_empty()
            });
            if keys.is_empty() {
                topics.remove(topic);
            }
        }
        if !leaves.is_empty() {
            let diff = json!({ "joins": {}, "leaves": Value::Object(leaves) });
            self.pubsub
                .broadcast(topic, PRESENCE_DIFF, Payload::Json(diff));
        }
    }

    /// The full list for `topic`: `{key: {"metas": [...]}}`.
    pub fn list(&self, topic: &str) -> Value {
        let topics = self.lock();
        let mut out = Map::new();
        if let Some(keys) = topics.get(topic) {
            for (key, entries) in keys {
                let metas: Vec<Value> = entries.iter().map(|e| e.meta.clone()).collect();
                out.insert(key.clone(), json!({ "metas": metas }));
            }
        }
        Value::Object(out)
    }
}
