//! The Phoenix PubSub adapter on Redis: broadcasts reach subscribers on every node.
//!
//! Subscriptions stay node-local ([`LocalPubSub`]); a publish is delivered locally at once and
//! also goes to the Redis channel `videoroom:pubsub` as a [`Envelope`] naming its node; every
//! node delivers what other nodes published to its own subscribers. So a `disconnect`
//! broadcast on a socket id closes that socket wherever it is connected.
//!
//! Queue policy: publishes wait for Redis in a queue of [`PUBLISH_QUEUE`] messages; when it is
//! full (Redis slow or down) the remote copy is dropped and counted
//! (`videoroom_cluster_pubsub_dropped`), never the local delivery. Like Phoenix.PubSub across
//! a netsplit, delivery to other nodes is at most once. The subscriber reconnects with backoff
//! (100 ms doubling to 2 s). Messages larger than [`MAX_ENVELOPE_BYTES`] or not in our format
//! are dropped with one log line per burst.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

use super::Cluster;
use crate::phoenix::{Broadcast, LocalPubSub, Mailbox, Payload, PubSub, Published, SubscriptionId};

/// The Redis channel every node publishes to and subscribes.
pub const CHANNEL: &str = "videoroom:pubsub";

/// Publishes waiting for Redis before remote copies are dropped.
pub const PUBLISH_QUEUE: usize = 4096;

/// Largest message read from the channel.
pub const MAX_ENVELOPE_BYTES: usize = 1 << 20;

/// One broadcast on the wire between nodes (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The publishing node (its own copy is skipped).
    pub node: String,
    /// The topic.
    pub topic: String,
    /// The event.
    pub event: String,
    /// A JSON payload, or
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<Value>,
    /// a binary one, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<String>,
}

impl Envelope {
    /// `broadcast` as published by `node`.
    pub fn wrap(node: &str, broadcast: &Broadcast) -> Envelope {
        let (json, binary) = match &broadcast.payload {
            Payload::Json(v) => (Some(v.clone()), None),
            Payload::Binary(b) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(b)),
            ),
        };
        Envelope {
            node: node.to_owned(),
            topic: broadcast.topic.clone(),
            event: broadcast.event.clone(),
            json,
            binary,
        }
    }

    /// Reads an envelope; `None` for anything too large or not ours.
    pub fn parse(bytes: &[u8]) -> Option<Envelope> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return None;
        }
        serde_json::from_slice(bytes).ok()
    }

    /// The broadcast inside.
    pub fn into_broadcast(self) -> Option<Broadcast> {
        let payload = match (self.json, self.binary) {
            (Some(v), None) => Payload::Json(v),
            (None, Some(b)) => Payload::Binary(Bytes::from(
                base64::engine::general_purpose::STANDARD.decode(b).ok()?,
            )),
            _ => return None,
        };
        Some(Broadcast {
            topic: self.topic,
            event: self.event,
            payload,
        })
    }
}

/// PubSub across the cluster's nodes (see the module docs).
#[derive(Debug)]
pub struct RedisPubSub {
    local: Arc<LocalPubSub>,
    node: String,
    outbox: mpsc::Sender<String>,
    dropped: prometheus_client::metrics::gauge::Gauge,
}

impl RedisPubSub {
    /// Starts the publisher and subscriber tasks of `cluster`'s node.
    pub fn start(cluster: &Cluster) -> Arc<RedisPubSub> {
        let local = LocalPubSub::new();
        let (outbox, queued) = mpsc::channel(PUBLISH_QUEUE);
        let node = cluster.node_id().to_owned();
        tokio::spawn(publish_loop(cluster.clone(), queued));
        tokio::spawn(subscribe_loop(cluster.clone(), local.clone()));
        Arc::new(RedisPubSub {
            local,
            node,
            outbox,
            dropped: cluster.metrics().pubsub_dropped.clone(),
        })
    }
}

impl PubSub for RedisPubSub {
    fn subscribe(&self, topic: &str, id: SubscriptionId, mailbox: Mailbox) {
        self.local.subscribe(topic, id, mailbox);
    }

    fn unsubscribe(&self, topic: &str, id: SubscriptionId) {
        self.local.unsubscribe(topic, id);
    }

    fn publish(&self, from: Option<SubscriptionId>, msg: Arc<Published>) {
        let wire = serde_json::to_string(&Envelope::wrap(&self.node, &msg.broadcast));
        self.local.publish(from, msg);
        if let Ok(wire) = wire
            && self.outbox.try_send(wire).is_err()
        {
            self.dropped.inc();
        }
    }
}

/// Sends queued envelopes to the channel; a failed publish is dropped (and counted).
async fn publish_loop(cluster: Cluster, mut queued: mpsc::Receiver<String>) {
    let mut redis = cluster.connection();
    while let Some(wire) = queued.recv().await {
        let sent: redis::RedisResult<i64> = redis::cmd("PUBLISH")
            .arg(CHANNEL)
            .arg(wire)
            .query_async(&mut redis)
            .await;
        if sent.is_err() {
            cluster.metrics().pubsub_dropped.inc();
        }
    }
}

/// Subscribes the channel and delivers other nodes' broadcasts locally, reconnecting with
/// backoff whenever the subscription connection is lost.
async fn subscribe_loop(cluster: Cluster, local: Arc<LocalPubSub>) {
    let mut backoff = Duration::from_millis(100);
    let mut said_lost = false;
    loop {
        match subscribe(&cluster).await {
            Ok(mut pubsub) => {
                if said_lost {
                    log::info!("cluster: PubSub subscription back");
                }
                said_lost = false;
                backoff = Duration::from_millis(100);
                let mut messages = pubsub.on_message();
                let mut bad_logged = false;
                while let Some(message) = messages.next().await {
                    let bytes: &[u8] = message.get_payload_bytes();
                    match Envelope::parse(bytes).and_then(|e| {
                        (e.node != cluster.node_id())
                            .then_some(e)
                            .map(Envelope::into_broadcast)
                    }) {
                        Some(Some(broadcast)) => local.publish(None, Published::new(broadcast)),
                        Some(None) if !bad_logged => {
                            log::warn!("cluster: dropping a malformed PubSub message");
                            bad_logged = true;
                        }
                        _ => {}
                    }
                }
            }
            Err(e) => {
                if !said_lost {
                    log::warn!("cluster: PubSub subscription lost ({e}); retrying with backoff");
                }
                said_lost = true;
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

async fn subscribe(cluster: &Cluster) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = cluster.client().get_async_pubsub().await?;
    pubsub.subscribe(CHANNEL).await?;
    Ok(pubsub)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_json_broadcast_round_trips_through_its_envelope() {
        let b = Broadcast {
            topic: "users_socket:7".into(),
            event: "disconnect".into(),
            payload: Payload::Json(json!({})),
        };
        let wire = serde_json::to_string(&Envelope::wrap("n1", &b)).unwrap();
        assert_eq!(
            wire,
            r#"{"node":"n1","topic":"users_socket:7","event":"disconnect","json":{}}"#
        );
        let back = Envelope::parse(wire.as_bytes()).unwrap();
        assert_eq!(back.node, "n1");
        assert_eq!(back.into_broadcast().unwrap(), b);
    }

    #[test]
    fn a_binary_broadcast_travels_as_base64() {
        let b = Broadcast {
            topic: "t".into(),
            event: "e".into(),
            payload: Payload::Binary(Bytes::from_static(&[0, 1, 255])),
        };
        let wire = serde_json::to_string(&Envelope::wrap("n", &b)).unwrap();
        assert!(wire.ends_with(r#""binary":"AAH/"}"#), "{wire}");
        assert_eq!(
            Envelope::parse(wire.as_bytes())
                .unwrap()
                .into_broadcast()
                .unwrap(),
            b
        );
    }

    #[test]
    fn envelopes_that_are_not_ours_or_too_large_are_refused() {
        assert_eq!(Envelope::parse(b"not json"), None);
        let both = r#"{"node":"n","topic":"t","event":"e","json":1,"binary":"AA=="}"#;
        assert_eq!(
            Envelope::parse(both.as_bytes()).unwrap().into_broadcast(),
            None
        );
        let huge = vec![b' '; MAX_ENVELOPE_BYTES + 1];
        assert_eq!(Envelope::parse(&huge), None);
    }
}
