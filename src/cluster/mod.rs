//! Several nodes as one service, on Redis (enabled by `--redis-url` / `REDIS_URL`; without it
//! none of this runs and the server is one node with nothing else to start).
//!
//! # What Redis holds (every key under `videoroom:`)
//! - `node:<id>`: the node's [`NodeInfo`] (URL, rooms, peers) as JSON, with a lease of
//!   `--cluster-lease` (3 s); `nodes` is the set of ids (dead ones are pruned when read).
//! - `room:<room id>`: the id of the node that runs the room, with the same lease. Each node
//!   renews its nodes key and the keys of every room it runs every third of the lease, with one
//!   Lua script that also re-creates missing keys (after Redis lost its data). A dead node's
//!   keys run out after one lease; then any node can claim its rooms.
//! - `epoch`: a random value set once (`SET NX`) by the first node to see it missing. A changed
//!   epoch means Redis lost its data (restarted without persistence): every node then holds new
//!   claims for half a lease, long enough for every node's next renewal to re-register its
//!   rooms, so a live room is not started a second time elsewhere.
//! - the PubSub channel `videoroom:pubsub` ([`pubsub`]): Phoenix broadcasts between nodes.
//!
//! # Placement ([`Cluster::place`], rule in [`placement::decide`])
//! A channel join asks where its room lives. Owned by this node: attach here. Owned by a live
//! node: relay there ([`crate::room::relay`]). Owned by nobody: `SET NX` the room for the
//! least-loaded live node (fewest peers, then rooms). Owned by a node that is not live: wait
//! for its lease. A node that refuses connections is dead: its keys are deleted at once
//! ([`Cluster::refused`]) rather than waiting out the lease.
//!
//! # Faults
//! Redis unreachable at start: [`Cluster::connect`] fails and the server does not start.
//! Redis lost later: rooms keep running and relay links keep carrying signalling (they do not
//! go through Redis); joins that need the registry are refused (`failed to start room`; the
//! client retries) until it is back; the connection is re-made with backoff and the next
//! renewal re-registers every room. Every state change is logged once, not per attempt.

pub mod placement;
pub mod pubsub;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde_json::json;

pub use placement::{Decision, NodeInfo, decide};

use crate::room::{Place, PlaceError, PlaceFuture, Placement, RoomRegistry};

/// Key prefix of everything the cluster keeps in Redis.
const PREFIX: &str = "videoroom:";

/// Renews `KEYS` (room keys) for `ARGV[1]` (this node) with a lease of `ARGV[2]` ms when they
/// are ours or missing; returns the keys another node owns now.
const RENEW_ROOMS: &str = r"
local lost = {}
for _, key in ipairs(KEYS) do
  local owner = redis.call('GET', key)
  if owner == false or owner == ARGV[1] then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
  else
    table.insert(lost, key)
  end
end
return lost
";

/// Deletes `KEYS[1]` if it still holds `ARGV[1]`.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// The cluster settings ([`crate::config::Config::cluster_config`]).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `redis://host:port/db`.
    pub redis_url: String,
    /// This node's id.
    pub node_id: String,
    /// The base URL of this node's signalling, as other nodes reach it.
    pub node_url: String,
    /// How long registrations live without renewal.
    pub lease: Duration,
}

/// Why the cluster could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The URL does not parse.
    #[error("bad REDIS_URL: {0}")]
    BadUrl(String),
    /// Redis did not answer.
    #[error("Redis at {url} is unreachable: {why}")]
    Unreachable {
        /// The URL tried (without credentials).
        url: String,
        /// What failed.
        why: String,
    },
}

/// The cluster's gauges, registered by [`crate::metrics::Metrics`].
#[derive(Debug, Clone, Default)]
pub struct ClusterMetrics {
    /// Live nodes seen at the last renewal (this one included).
    pub nodes: Gauge,
    /// 1 while Redis answers, 0 while it does not.
    pub redis_up: Gauge,
    /// Always 1, labelled with this node's id and URL.
    pub node_info: Family<Vec<(String, String)>, Gauge>,
    /// Broadcasts to other nodes dropped (publish queue full, or Redis down).
    pub pubsub_dropped: Gauge,
}

/// What the renewals last saw.
#[derive(Debug, Default)]
struct View {
    nodes: Vec<NodeInfo>,
    redis_up: bool,
    epoch: Option<String>,
    /// New claims wait until then (Redis lost its data; see the module docs).
    hold_claims_until: Option<Instant>,
    /// Nodes that refused connections, left out of placement until they renew again.
    refused: Vec<String>,
}

struct Inner {
    config: ClusterConfig,
    client: redis::Client,
    redis: ConnectionManager,
    view: Mutex<View>,
    draining: AtomicBool,
    metrics: ClusterMetrics,
}

/// This node's membership of the cluster (cheap to clone).
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.inner.config.node_id)
            .finish_non_exhaustive()
    }
}

/// A room id's registry key.
fn room_key(room: &str) -> String {
    format!("{PREFIX}room:{room}")
}

/// A node id's registry key.
fn node_key(node: &str) -> String {
    format!("{PREFIX}node:{node}")
}

/// `url` without a password, for logs and errors.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

impl Cluster {
    /// Connects to Redis (answering a `PING` within two seconds) or fails: a node configured
    /// for a cluster never starts alone by mistake.
    pub async fn connect(
        config: ClusterConfig,
        metrics: ClusterMetrics,
    ) -> Result<Cluster, ClusterError> {
        let url = redacted(&config.redis_url);
        let client = redis::Client::open(config.redis_url.as_str())
            .map_err(|e| ClusterError::BadUrl(e.to_string()))?;
        let unreachable = |why: String| ClusterError::Unreachable {
            url: url.clone(),
            why,
        };
        // Short timeouts: a join waits on these, and Redis on the same network answers in
        // well under a millisecond; the manager reconnects by itself with backoff.
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let connect = ConnectionManager::new_with_config(client.clone(), manager_config);
        let mut redis = tokio::time::timeout(Duration::from_secs(2), connect)
            .await
            .map_err(|_| unreachable("timed out".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        let _: String = redis::cmd("PING")
            .query_async(&mut redis)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        metrics
            .node_info
            .get_or_create(&vec![
                ("node".to_owned(), config.node_id.clone()),
                ("url".to_owned(), config.node_url.clone()),
            ])
            .set(1);
        metrics.redis_up.set(1);
        log::info!(
            "cluster: node {} ({}) joined through Redis at {url}",
            config.node_id,
            config.node_url
        );
        Ok(Cluster {
            inner: Arc::new(Inner {
                config,
                client,
                redis,
                view: Mutex::new(View {
                    redis_up: true,
                    ..View::default()
                }),
                draining: AtomicBool::new(false),
                metrics,
            }),
        })
    }

    fn view(&self) -> MutexGuard<'_, View> {
        // Only plain field updates run under it; a poisoned lock still holds a usable view.
        self.inner.view.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.inner.config.node_id
    }

    /// The Redis client (for the PubSub adapter's own connections).
    pub fn client(&self) -> &redis::Client {
        &self.inner.client
    }

    /// A connection for commands (multiplexed, reconnecting).
    pub fn connection(&self) -> ConnectionManager {
        self.inner.redis.clone()
    }

    /// The cluster's gauges.
    pub fn metrics(&self) -> &ClusterMetrics {
        &self.inner.metrics
    }

    /// Renews this node's registrations every third of the lease until a drain starts.
    pub fn start(&self, rooms: RoomRegistry) {
        let cluster = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(cluster.inner.config.lease / 3);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if cluster.inner.draining.load(Ordering::Acquire) {
                    return;
                }
                let result = cluster.renew(&rooms).await;
                cluster.after_renewal(result);
            }
        });
    }

    /// This node as it registers itself now.
    fn me(&self, rooms: &RoomRegistry) -> NodeInfo {
        NodeInfo {
            id: self.inner.config.node_id.clone(),
            url: self.inner.config.node_url.clone(),
            rooms: rooms.room_count() as u64,
            peers: u64::try_from(rooms.metrics().peers.get()).unwrap_or(0),
        }
    }

    /// One renewal: this node's key, its rooms' keys, the epoch, and the live nodes.
    async fn renew(&self, rooms: &RoomRegistry) -> redis::RedisResult<Renewal> {
        let mut redis = self.connection();
        let me = self.me(rooms);
        let lease_ms = self.inner.config.lease.as_millis() as u64;
        let room_ids = rooms.room_ids();
        let epoch_key = format!("{PREFIX}epoch");
        let fresh_epoch = format!("{:016x}", rand::random::<u64>());
        let (_, _, _, epoch, ids): ((), (), Option<String>, String, Vec<String>) = redis::pipe()
            .cmd("SET")
            .arg(node_key(&me.id))
            .arg(serde_json::to_string(&me).unwrap_or_default())
            .arg("PX")
            .arg(lease_ms)
            .cmd("SADD")
            .arg(format!("{PREFIX}nodes"))
            .arg(&me.id)
            .cmd("SET")
            .arg(&epoch_key)
            .arg(&fresh_epoch)
            .arg("NX")
            .cmd("GET")
            .arg(&epoch_key)
            .cmd("SMEMBERS")
            .arg(format!("{PREFIX}nodes"))
            .query_async(&mut redis)
            .await?;
        let lost: Vec<String> = if room_ids.is_empty() {
            Vec::new()
        } else {
            let keys: Vec<String> = room_ids.iter().map(|r| room_key(r)).collect();
            redis::Script::new(RENEW_ROOMS)
                .key(keys)
                .arg(&me.id)
                .arg(lease_ms)
                .invoke_async(&mut redis)
                .await?
        };
        let nodes = self.live_nodes(&mut redis, ids).await?;
        Ok(Renewal {
            rooms: room_ids.len(),
            lost,
            epoch,
            nodes,
        })
    }

    /// The nodes among `ids` whose key is alive; the dead ones leave the set.
    async fn live_nodes(
        &self,
        redis: &mut ConnectionManager,
        ids: Vec<String>,
    ) -> redis::RedisResult<Vec<NodeInfo>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| node_key(id)).collect();
        let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(redis).await?;
        let mut live = Vec::new();
        let mut dead = Vec::new();
        for (id, value) in ids.into_iter().zip(values) {
            match value.and_then(|v| serde_json::from_str::<NodeInfo>(&v).ok()) {
                Some(node) => live.push(node),
                None => dead.push(id),
            }
        }
        if !dead.is_empty() {
            let _: () = redis::cmd("SREM")
                .arg(format!("{PREFIX}nodes"))
                .arg(dead)
                .query_async(redis)
                .await?;
        }
        live.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(live)
    }

    /// Records a renewal's outcome; logs changes (Redis lost or back, rooms taken) once.
    fn after_renewal(&self, result: redis::RedisResult<Renewal>) {
        let metrics = &self.inner.metrics;
        let mut view = self.view();
        match result {
            Ok(renewal) => {
                if !view.redis_up {
                    log::info!(
                        "cluster: Redis is back; {} rooms of this node registered again",
                        renewal.rooms
                    );
                }
                if view.epoch.as_ref().is_some_and(|e| *e != renewal.epoch) {
                    log::warn!(
                        "cluster: Redis lost its data (new epoch); new rooms wait {:?} for every node to register its rooms again",
                        self.inner.config.lease / 2
                    );
                    view.hold_claims_until = Some(Instant::now() + self.inner.config.lease / 2);
                }
                for key in &renewal.lost {
                    log::warn!(
                        "cluster: {} is registered to another node now; this node's copy keeps its peers",
                        key.trim_start_matches(PREFIX)
                    );
                }
                view.epoch = Some(renewal.epoch);
                view.refused
                    .retain(|id| !renewal.nodes.iter().any(|n| n.id == *id));
                metrics.nodes.set(renewal.nodes.len() as i64);
                view.nodes = renewal.nodes;
                view.redis_up = true;
                metrics.redis_up.set(1);
            }
            Err(e) => {
                if view.redis_up {
                    log::warn!(
                        "cluster: Redis unreachable ({e}); rooms keep running, new joins wait for it"
                    );
                }
                view.redis_up = false;
                metrics.redis_up.set(0);
            }
        }
    }

    /// Where `room` lives (see the module docs); `relayed` joins are only placed here.
    pub async fn place(&self, room: &str, relayed: bool) -> Result<Place, PlaceError> {
        let lease = self.inner.config.lease;
        let deadline = Instant::now() + lease * 2 + Duration::from_secs(1);
        let mut redis = self.connection();
        let key = room_key(room);
        let epoch_key = format!("{PREFIX}epoch");
        loop {
            let unavailable = |e: redis::RedisError| PlaceError::Unavailable(e.to_string());
            let (owner, epoch): (Option<String>, Option<String>) = redis::cmd("MGET")
                .arg(&key)
                .arg(&epoch_key)
                .query_async(&mut redis)
                .await
                .map_err(unavailable)?;
            let (me, nodes, hold) = {
                let view = self.view();
                if !view.redis_up {
                    return Err(PlaceError::Unavailable("Redis is reconnecting".into()));
                }
                let me = view
                    .nodes
                    .iter()
                    .find(|n| n.id == self.inner.config.node_id)
                    .cloned()
                    .unwrap_or_else(|| NodeInfo {
                        id: self.inner.config.node_id.clone(),
                        url: self.inner.config.node_url.clone(),
                        rooms: 0,
                        peers: 0,
                    });
                let nodes: Vec<NodeInfo> = view
                    .nodes
                    .iter()
                    .filter(|n| !view.refused.contains(&n.id))
                    .cloned()
                    .collect();
                let hold = view.hold_claims_until.is_some_and(|t| Instant::now() < t)
                    || epoch != view.epoch;
                (me, nodes, hold)
            };
            if self.inner.draining.load(Ordering::Acquire) && owner.is_none() {
                return Err(PlaceError::Unavailable("this node is draining".into()));
            }
            let decision = match decide(&me, owner.as_deref(), &nodes, relayed) {
                Decision::Claim(_) if hold => Decision::Wait,
                d => d,
            };
            match decision {
                Decision::Here => return Ok(Place::Here),
                Decision::Relay(node) => return Ok(place_of(node)),
                Decision::Misrouted => return Err(PlaceError::Misrouted),
                Decision::Claim(node) => {
                    let claimed: Option<String> = redis::cmd("SET")
                        .arg(&key)
                        .arg(&node.id)
                        .arg("NX")
                        .arg("PX")
                        .arg(lease.as_millis() as u64)
                        .query_async(&mut redis)
                        .await
                        .map_err(unavailable)?;
                    if claimed.is_some() {
                        log::info!("room={room} placed on node {}", node.id);
                        return Ok(if node.id == me.id {
                            Place::Here
                        } else {
                            place_of(node)
                        });
                    }
                }
                Decision::Wait => {
                    if Instant::now() > deadline {
                        return Err(PlaceError::TimedOut);
                    }
                    tokio::time::sleep((lease / 6).max(Duration::from_millis(50))).await;
                }
            }
        }
    }

    /// Node `node` refused a connection: its key and room `room`'s (if still its) go now.
    pub fn refused(&self, room: &str, node: &str) {
        {
            let mut view = self.view();
            if !view.refused.iter().any(|n| n == node) {
                view.refused.push(node.to_owned());
            }
        }
        let mut redis = self.connection();
        let (room, node) = (room.to_owned(), node.to_owned());
        tokio::spawn(async move {
            log::warn!("cluster: node {node} refuses connections; taking over its room {room}");
            let released: redis::RedisResult<i64> = redis::Script::new(RELEASE)
                .key(room_key(&room))
                .arg(&node)
                .invoke_async(&mut redis)
                .await;
            let dropped: redis::RedisResult<()> = redis::cmd("DEL")
                .arg(node_key(&node))
                .query_async(&mut redis)
                .await;
            if let Err(e) = released.map(drop).and(dropped) {
                log::warn!("cluster: could not drop node {node}'s registrations: {e}");
            }
        });
    }

    /// Drain: this node stops renewing, leaves the node set and releases its rooms, so that
    /// their peers (told to reconnect by the drain) are placed on the other nodes at once.
    pub async fn leave(&self, rooms: &RoomRegistry) {
        self.inner.draining.store(true, Ordering::Release);
        let mut redis = self.connection();
        let me = self.inner.config.node_id.clone();
        let mut released = 0;
        for room in rooms.room_ids() {
            let done: redis::RedisResult<i64> = redis::Script::new(RELEASE)
                .key(room_key(&room))
                .arg(&me)
                .invoke_async(&mut redis)
                .await;
            released += done.unwrap_or(0);
        }
        let left: redis::RedisResult<()> = redis::pipe()
            .cmd("DEL")
            .arg(node_key(&me))
            .ignore()
            .cmd("SREM")
            .arg(format!("{PREFIX}nodes"))
            .arg(&me)
            .ignore()
            .query_async(&mut redis)
            .await;
        match left {
            Ok(()) => log::info!("cluster: node {me} left the cluster, releasing {released} rooms"),
            Err(e) => {
                log::warn!("cluster: node {me} could not deregister ({e}); its leases run out")
            }
        }
    }

    /// `/cluster`: this node, the live nodes and Redis's state, as JSON.
    pub fn status(&self, rooms: &RoomRegistry) -> serde_json::Value {
        let view = self.view();
        json!({
            "node": self.me(rooms),
            "nodes": view.nodes,
            "redis": if view.redis_up { "up" } else { "down" },
            "draining": self.inner.draining.load(Ordering::Acquire),
        })
    }
}

/// A live node as a place to relay to.
fn place_of(node: NodeInfo) -> Place {
    Place::Node {
        id: node.id.into(),
        url: node.url.into(),
    }
}

/// What one renewal saw.
struct Renewal {
    rooms: usize,
    lost: Vec<String>,
    epoch: String,
    nodes: Vec<NodeInfo>,
}

impl Placement for Cluster {
    fn place(&self, room: &str, relayed: bool) -> PlaceFuture {
        let (cluster, room) = (self.clone(), room.to_owned());
        Box::pin(async move { Cluster::place(&cluster, &room, relayed).await })
    }

    fn node_id(&self) -> &str {
        Cluster::node_id(self)
    }

    fn refused(&self, room: &str, node: &str) {
        Cluster::refused(self, room, node);
    }
}
