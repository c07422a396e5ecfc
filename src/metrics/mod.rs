//! Operations: the one home of the exported metrics, and the health endpoints.
//!
//! - [`Metrics`] owns the Prometheus registry. It makes each layer's handles
//!   ([`SocketMetrics`] for `phoenix`, [`MediaMetrics`] for `rtc`, [`RoomMetrics`] for `room`)
//!   and names every metric here, in [`Metrics::new`], so the list of what is exported is in
//!   one place. The layers only get handles (atomics): `phoenix` and `rtc` never import this
//!   module, and the families several layers count into (limit hits, queue overflows, errors)
//!   are one family handed to each.
//! - [`Health`] answers the probes: `/healthz` (liveness) fails when a watched loop (the UDP
//!   mux, each room's media loop) has not beaten for [`Health::stall_after`]; `/readyz`
//!   (readiness) answers 503 from the moment a drain starts until the process exits.
//! - [`routes`] serves `GET /metrics`, `/healthz` and `/readyz`.
//!
//! Label values are fixed strings (media kind, reason, limit, queue, transport) or close codes:
//! never a room or peer id, so the number of series is bounded whatever clients do.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, Response, StatusCode, header};

use crate::cluster::ClusterMetrics;
use crate::phoenix::metrics::SocketMetrics;
use crate::room::metrics::RoomMetrics;
use crate::rtc::metrics::{Heartbeats, LabeledCounters, MediaMetrics, TurnMetrics};

/// The server's metrics: the registry and the handles given to each layer.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Handles for the Channels server (sockets, channels, closes).
    pub sockets: SocketMetrics,
    /// Handles for the media plane (packets, bytes, drops, tracks, failures).
    pub media: MediaMetrics,
    /// Handles for the rooms (rooms, peers, join latency).
    pub rooms: RoomMetrics,
    /// Handles for the cluster (nodes, Redis, this node's id); zero without `--redis-url`.
    pub cluster: ClusterMetrics,
    /// Handles for the embedded TURN server (allocations, relayed bytes, refusals).
    pub turn: TurnMetrics,
    resident_memory: Gauge,
    stalled_loops: Gauge,
    watched_loops: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric, registered under its exported name.
    pub fn new() -> Self {
        // Long on purpose: this is the one list of every exported name and help text, a table
        // read top to bottom (like the README's), not logic worth splitting.
        let limit_hits = LabeledCounters::default();
        let queue_overflows = LabeledCounters::default();
        let errors = LabeledCounters::default();
        let sockets =
            SocketMetrics::new(limit_hits.clone(), queue_overflows.clone(), errors.clone());
        let media = MediaMetrics::new(queue_overflows.clone(), limit_hits.clone());
        let rooms = RoomMetrics::new(limit_hits.clone(), queue_overflows.clone(), errors.clone());
        let mut registry = Registry::with_prefix("videoroom");
        let r = &mut registry;
        r.register(
            "sockets",
            "Open Phoenix sockets by transport",
            sockets.sockets.clone(),
        );
        r.register(
            "channels",
            "Joined channels on every socket",
            sockets.channels.clone(),
        );
        let cluster = ClusterMetrics::default();
        r.register(
            "cluster_nodes",
            "Live nodes of the cluster at the last renewal (0 without Redis)",
            cluster.nodes.clone(),
        );
        r.register(
            "cluster_redis_up",
            "1 while the cluster's Redis answers (0 without Redis)",
            cluster.redis_up.clone(),
        );
        r.register(
            "cluster_node_info",
            "This node's id and signalling URL in the cluster (value 1)",
            cluster.node_info.clone(),
        );
        r.register(
            "cluster_pubsub_dropped",
            "Broadcasts not sent to the other nodes (queue full or Redis down)",
            cluster.pubsub_dropped.clone(),
        );
        r.register(
            "relayed_peers",
            "Channels on this node whose room lives on another node of the cluster",
            rooms.relayed.clone(),
        );
        r.register("rooms", "Running rooms", rooms.rooms.clone());
        r.register(
            "peers",
            "Peers admitted to a room (members)",
            rooms.peers.clone(),
        );
        r.register(
            "published_tracks",
            "Tracks published by peers (producers)",
            media.published_tracks.clone(),
        );
        r.register(
            "subscriptions",
            "Published tracks forwarded to a subscriber",
            media.subscriptions.clone(),
        );
        r.register(
            "rtp_packets_received",
            "RTP packets received from publishers, by media kind",
            media.packets_in_family.clone(),
        );
        r.register(
            "rtp_packets_sent",
            "RTP packets forwarded to subscribers, by media kind",
            media.packets_out_family.clone(),
        );
        r.register(
            "rtp_payload_bytes_received",
            "RTP payload bytes received from publishers, by media kind",
            media.bytes_in_family.clone(),
        );
        r.register(
            "rtp_payload_bytes_sent",
            "RTP payload bytes forwarded to subscribers, by media kind",
            media.bytes_out_family.clone(),
        );
        r.register(
            "drops",
            "Datagrams or packets dropped, by reason",
            media.drops.clone(),
        );
        r.register(
            "queue_overflows",
            "Bounded queues that overflowed, by queue",
            queue_overflows,
        );
        r.register("limit_hits", "Limits hit, by limit", limit_hits);
        r.register(
            "socket_closes",
            "Sockets closed by the server, by WebSocket close code",
            sockets.closes.clone(),
        );
        r.register("errors", "Errors, by kind", errors);
        r.register(
            "media_failures",
            "Peers whose media (ICE/DTLS) failed or never connected, by reason",
            media.media_failures.clone(),
        );
        r.register(
            "ice_tcp_connections",
            "ICE-TCP media connections open",
            media.ice_tcp_connections.clone(),
        );
        r.register(
            "media_connect_diagnoses",
            "Peers whose media was not connected a few seconds after their offer, by likely cause",
            media.connect_diagnoses.clone(),
        );
        r.register(
            "reconnects",
            "Peers held after losing their socket while their media lived, resumed, or refused a resume, by outcome",
            rooms.reconnects.clone(),
        );
        r.register(
            "join_duration_seconds",
            "From a channel join to the peer's admission",
            rooms.join_seconds.clone(),
        );
        r.register(
            "negotiation_duration_seconds",
            "From a peer's first SDP offer to its ICE and DTLS being connected",
            media.negotiation_seconds.clone(),
        );
        r.register(
            "first_media_duration_seconds",
            "From a peer's first SDP offer to its first RTP packet",
            media.first_media_seconds.clone(),
        );
        let turn = TurnMetrics::default();
        r.register(
            "turn_allocations",
            "TURN allocations open",
            turn.allocations.clone(),
        );
        r.register(
            "turn_relayed_bytes",
            "Bytes relayed by the TURN server, by direction (to_sfu, to_client)",
            turn.relayed_bytes.clone(),
        );
        r.register(
            "turn_relayed_packets",
            "Datagrams relayed by the TURN server, by direction (to_sfu, to_client)",
            turn.relayed_packets.clone(),
        );
        r.register(
            "turn_refusals",
            "TURN requests refused and datagrams dropped, by reason",
            turn.refusals.clone(),
        );
        let stalled_loops = Gauge::default();
        r.register(
            "stalled_loops",
            "Watched loops (UDP mux, room media loops) without progress for the stall time",
            stalled_loops.clone(),
        );
        let watched_loops = Gauge::default();
        r.register(
            "watched_loops",
            "Watched loops (UDP mux, room media loops)",
            watched_loops.clone(),
        );
        let resident_memory = Gauge::default();
        r.register(
            "resident_memory_bytes",
            "Resident set size of the process (Linux /proc/self/statm)",
            resident_memory.clone(),
        );
        Metrics {
            registry,
            sockets,
            media,
            rooms,
            cluster,
            turn,
            resident_memory,
            stalled_loops,
            watched_loops,
        }
    }

    /// The Prometheus text format (0.0.4) of every metric; the gauges computed on demand
    /// (memory, loops) are read now.
    pub fn encode(&self, health: &Health) -> String {
        if let Some(rss) = resident_memory_bytes() {
            self.resident_memory
                .set(i64::try_from(rss).unwrap_or(i64::MAX));
        }
        let loops = &health.heartbeats;
        self.watched_loops
            .set(i64::try_from(loops.len()).unwrap_or(i64::MAX));
        let stalled = loops.stalled(health.stall_after).len();
        self.stalled_loops
            .set(i64::try_from(stalled).unwrap_or(i64::MAX));
        let mut text = String::new();
        if prometheus_text::encode(&mut text, &self.registry).is_err() {
            log::error!("metrics: encoding failed");
        }
        text
    }
}

/// The process's resident set size, from `/proc/self/statm` (pages × 4 KiB assumed).
fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// What the probes look at: the watched loops and whether a drain started.
#[derive(Debug, Clone)]
pub struct Health {
    /// The UDP mux and every room's media loop.
    pub heartbeats: Heartbeats,
    /// A loop without a beat for this long makes `/healthz` fail.
    pub stall_after: Duration,
    draining: Arc<AtomicBool>,
}

impl Health {
    /// Probes over `heartbeats`, failing liveness after `stall_after` without progress.
    pub fn new(heartbeats: Heartbeats, stall_after: Duration) -> Self {
        Health {
            heartbeats,
            stall_after,
            draining: Arc::default(),
        }
    }

    /// A drain started: `/readyz` answers 503 from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether a drain started.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// `Ok` when every watched loop made progress within [`Self::stall_after`], else the
    /// stalled loops, one per line, with how long they have been silent.
    pub fn liveness(&self) -> Result<(), String> {
        let stalled = self.heartbeats.stalled(self.stall_after);
        if stalled.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        for (what, age) in stalled {
            let _ = writeln!(text, "stalled: {what}, no progress for {age:.1?}");
        }
        Err(text)
    }
}

fn text(status: StatusCode, body: String, content_type: &'static str) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /metrics` (Prometheus text format), `GET /healthz` (200 `ok`, or 503 naming the stalled
/// loops) and `GET /readyz` (200 `ready`, or 503 `draining`); HEAD too.
pub fn routes(metrics: Arc<Metrics>, health: Health) -> BoxedFilter<(warp::reply::Response,)> {
    let get_or_head = || warp::get().or(warp::head()).unify();
    let plain = "text/plain; charset=utf-8";
    let scrape = {
        let health = health.clone();
        warp::path("metrics")
            .and(warp::path::end())
            .and(get_or_head())
            .map(move || {
                let body = metrics.encode(&health);
                text(StatusCode::OK, body, prometheus_text::CONTENT_TYPE)
            })
    };
    let live = {
        let health = health.clone();
        warp::path("healthz")
            .and(warp::path::end())
            .and(get_or_head())
            .map(move || match health.liveness() {
                Ok(()) => text(StatusCode::OK, "ok\n".into(), plain),
                Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, why, plain),
            })
    };
    let ready = warp::path("readyz")
        .and(warp::path::end())
        .and(get_or_head())
        .map(move || {
            if health.is_draining() {
                text(StatusCode::SERVICE_UNAVAILABLE, "draining\n".into(), plain)
            } else {
                text(StatusCode::OK, "ready\n".into(), plain)
            }
        });
    scrape
        .or(live)
        .unify()
        .or(ready)
        .unify()
        .map(|r: Response<Bytes>| warp::Reply::into_response(r))
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_export_names_each_metric_once_with_its_labels_and_no_ids() {
        let metrics = Metrics::new();
        metrics.sockets.websockets.inc();
        metrics.media.packets_in.video.inc();
        metrics
            .media
            .limit_hits
            .get_or_create(&[("limit", "rooms")])
            .inc();
        metrics.sockets.closed(1013);
        let health = Health::new(Heartbeats::default(), Duration::from_secs(5));
        let text = metrics.encode(&health);
        for line in [
            "videoroom_sockets{transport=\"websocket\"} 1",
            "videoroom_sockets{transport=\"longpoll\"} 0",
            "videoroom_rtp_packets_received_total{kind=\"video\"} 1",
            "videoroom_rtp_packets_received_total{kind=\"audio\"} 0",
            "videoroom_limit_hits_total{limit=\"rooms\"} 1",
            "videoroom_socket_closes_total{code=\"1013\"} 1",
            "videoroom_queue_overflows_total{queue=\"socket\"} 1",
            "videoroom_rooms 0",
            "# TYPE videoroom_join_duration_seconds histogram",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn the_grafana_dashboard_queries_only_metrics_the_server_exports() {
        let metrics = Metrics::new();
        // Labelled families without a sample are left out of the text: give each one.
        let one = [("x", "y")];
        metrics.media.limit_hits.get_or_create(&one).inc();
        metrics.media.media_failures.get_or_create(&one).inc();
        metrics.sockets.errors.get_or_create(&one).inc();
        metrics.sockets.closed(1000);
        let health = Health::new(Heartbeats::default(), Duration::from_secs(5));
        let text = metrics.encode(&health);
        let exported: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
            .collect();
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../../docs/grafana-dashboard.json"))
                .expect("the dashboard is JSON");
        let panels = dashboard["panels"].as_array().expect("panels");
        let mut queried = 0;
        for target in panels.iter().flat_map(|p| p["targets"].as_array().unwrap()) {
            let expr = target["expr"].as_str().expect("a PromQL expression");
            for start in expr.match_indices("videoroom_").map(|(i, _)| i) {
                let name: String = expr[start..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let family = ["_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                    .unwrap_or(&name);
                let family = family.strip_suffix("_total").unwrap_or(family);
                assert!(
                    exported
                        .iter()
                        .any(|e| *e == family || e.strip_suffix("_total") == Some(family)),
                    "the dashboard queries {name}, which the server does not export"
                );
                queried += 1;
            }
        }
        assert!(queried >= 20, "only {queried} metric references found");
    }
}
