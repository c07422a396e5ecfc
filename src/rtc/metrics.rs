//! The media plane's counters, gauges and heartbeats: handles only, registered (named and
//! exported) by the app's metrics registry, which this module knows nothing about.
//!
//! Every handle is an `Arc` around atomics (prometheus-client), so a clone is the same metric.
//! The per-packet counters are resolved once per label value here ([`KindCounters`]): the
//! forwarding path does one relaxed atomic add per counter, no lock, no allocation, no label
//! lookup. Label values are a fixed set of `&'static str` (media kind, drop reason, limit name):
//! never a room or peer id.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use crate::rtc::ids::MediaKind;

/// A label set of one `name="value"` pair, both fixed strings.
pub type Label = [(&'static str, &'static str); 1];

/// Counters with one label (e.g. `reason`).
pub type LabeledCounters = Family<Label, Counter>;

/// One counter per media kind, resolved once.
#[derive(Debug, Clone)]
pub struct KindCounters {
    /// `kind="audio"`.
    pub audio: Counter,
    /// `kind="video"`.
    pub video: Counter,
}

impl KindCounters {
    /// The audio and video members of `family`.
    pub fn of(family: &Family<Label, Counter>) -> Self {
        KindCounters {
            audio: family.get_or_create_owned(&[("kind", "audio")]),
            video: family.get_or_create_owned(&[("kind", "video")]),
        }
    }

    /// The counter of `kind`.
    pub fn get(&self, kind: MediaKind) -> &Counter {
        match kind {
            MediaKind::Audio => &self.audio,
            MediaKind::Video => &self.video,
        }
    }
}

/// Histogram buckets for durations from 10 ms to ~40 s (seconds).
pub fn duration_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.01, 2.0, 13)
}

/// Every metric the media plane updates (see the module docs). `Default` makes unregistered
/// handles: counting works, nothing is exported (unit tests, tools).
#[derive(Debug, Clone)]
pub struct MediaMetrics {
    /// RTP packets received from publishers, by kind (family of [`Self::packets_in`]).
    pub packets_in_family: Family<Label, Counter>,
    /// RTP packets written to subscribers, by kind.
    pub packets_out_family: Family<Label, Counter>,
    /// RTP payload bytes received from publishers, by kind.
    pub bytes_in_family: Family<Label, Counter>,
    /// RTP payload bytes written to subscribers, by kind.
    pub bytes_out_family: Family<Label, Counter>,
    /// [`Self::packets_in_family`] resolved per kind.
    pub packets_in: KindCounters,
    /// [`Self::packets_out_family`] resolved per kind.
    pub packets_out: KindCounters,
    /// [`Self::bytes_in_family`] resolved per kind.
    pub bytes_in: KindCounters,
    /// [`Self::bytes_out_family`] resolved per kind.
    pub bytes_out: KindCounters,
    /// Datagrams and packets dropped, by reason (`silence`, `route_inbox_full`, `unroutable`,
    /// `send_failed`).
    pub drops: LabeledCounters,
    /// `drops{reason="silence"}`.
    pub drop_silence: Counter,
    /// `drops{reason="route_inbox_full"}` (also a queue overflow).
    pub drop_inbox_full: Counter,
    /// `drops{reason="unroutable"}`: a datagram that belongs to no route.
    pub drop_unroutable: Counter,
    /// `drops{reason="send_failed"}`: the socket could not take a transmit.
    pub drop_send_failed: Counter,
    /// Bounded queues that overflowed, by queue (shared with the other layers).
    pub queue_overflows: LabeledCounters,
    /// `queue_overflows{queue="udp_route_inbox"}`.
    pub overflow_route_inbox: Counter,
    /// Limit hits, by limit (shared with the other layers).
    pub limit_hits: LabeledCounters,
    /// Peers whose media failed or never connected, by reason (`did_not_connect`,
    /// `no_traffic`, `dtls_closed`, `twcc_out_of_reach`, `webrtc_error`).
    pub media_failures: LabeledCounters,
    /// Peers whose media was not up [`crate::rtc::sfu::diagnosis::DIAGNOSE_AFTER`] their
    /// first offer, by likely cause (`blocked`, `loopback_server`, `external_ip_missing`,
    /// `checks_unanswered`).
    pub connect_diagnoses: LabeledCounters,
    /// ICE-TCP connections open.
    pub ice_tcp_connections: Gauge,
    /// Published tracks (producers) in every room.
    pub published_tracks: Gauge,
    /// Subscriptions (a producer forwarded to a subscriber) in every room.
    pub subscriptions: Gauge,
    /// From a peer's first SDP offer to its ICE and DTLS being up, seconds.
    pub negotiation_seconds: Histogram,
    /// From a peer's first SDP offer to its first RTP packet, seconds.
    pub first_media_seconds: Histogram,
}

impl MediaMetrics {
    /// Handles whose labelled families `queue_overflows` and `limit_hits` are shared with
    /// other layers.
    pub fn new(queue_overflows: LabeledCounters, limit_hits: LabeledCounters) -> Self {
        let kind_family = Family::<Label, Counter>::default;
        let (packets_in_family, packets_out_family) = (kind_family(), kind_family());
        let (bytes_in_family, bytes_out_family) = (kind_family(), kind_family());
        let drops = LabeledCounters::default();
        let reason = |r: &'static str| drops.get_or_create_owned(&[("reason", r)]);
        MediaMetrics {
            packets_in: KindCounters::of(&packets_in_family),
            packets_out: KindCounters::of(&packets_out_family),
            bytes_in: KindCounters::of(&bytes_in_family),
            bytes_out: KindCounters::of(&bytes_out_family),
            packets_in_family,
            packets_out_family,
            bytes_in_family,
            bytes_out_family,
            drop_silence: reason("silence"),
            drop_inbox_full: reason("route_inbox_full"),
            drop_unroutable: reason("unroutable"),
            drop_send_failed: reason("send_failed"),
            drops,
            overflow_route_inbox: queue_overflows
                .get_or_create_owned(&[("queue", "udp_route_inbox")]),
            queue_overflows,
            limit_hits,
            media_failures: LabeledCounters::default(),
            connect_diagnoses: LabeledCounters::default(),
            ice_tcp_connections: Gauge::default(),
            published_tracks: Gauge::default(),
            subscriptions: Gauge::default(),
            negotiation_seconds: Histogram::new(duration_buckets()),
            first_media_seconds: Histogram::new(duration_buckets()),
        }
    }
}

impl Default for MediaMetrics {
    fn default() -> Self {
        Self::new(LabeledCounters::default(), LabeledCounters::default())
    }
}

/// The embedded TURN server's metrics (`turn_*`).
#[derive(Debug, Clone)]
pub struct TurnMetrics {
    /// Allocations open.
    pub allocations: Gauge,
    /// Bytes relayed, by direction (`to_sfu`, `to_client`): the relayed payload, TURN framing
    /// excluded.
    pub relayed_bytes: LabeledCounters,
    /// `relayed_bytes{direction="to_sfu"}`.
    pub bytes_to_sfu: Counter,
    /// `relayed_bytes{direction="to_client"}`.
    pub bytes_to_client: Counter,
    /// Datagrams relayed, by direction.
    pub relayed_packets: LabeledCounters,
    /// `relayed_packets{direction="to_sfu"}`.
    pub packets_to_sfu: Counter,
    /// `relayed_packets{direction="to_client"}`.
    pub packets_to_client: Counter,
    /// Requests refused and datagrams dropped, by reason (see
    /// [`crate::rtc::turn::server::Refusal::reason`]).
    pub refusals: LabeledCounters,
}

impl Default for TurnMetrics {
    fn default() -> Self {
        let (relayed_bytes, relayed_packets) =
            (LabeledCounters::default(), LabeledCounters::default());
        let direction =
            |f: &LabeledCounters, d: &'static str| f.get_or_create_owned(&[("direction", d)]);
        TurnMetrics {
            allocations: Gauge::default(),
            bytes_to_sfu: direction(&relayed_bytes, "to_sfu"),
            bytes_to_client: direction(&relayed_bytes, "to_client"),
            packets_to_sfu: direction(&relayed_packets, "to_sfu"),
            packets_to_client: direction(&relayed_packets, "to_client"),
            relayed_bytes,
            relayed_packets,
            refusals: LabeledCounters::default(),
        }
    }
}

/// A share of a gauge held by one owner (a room's SFU, a room): [`GaugeShare::set`] moves the
/// gauge by the difference to what this share reported before, and dropping the share takes
/// its whole contribution back, so the gauge returns to zero whatever way its owners end.
#[derive(Debug)]
pub struct GaugeShare {
    gauge: Gauge,
    reported: i64,
}

impl GaugeShare {
    /// A share of `gauge` contributing nothing yet.
    pub fn new(gauge: Gauge) -> Self {
        GaugeShare { gauge, reported: 0 }
    }

    /// This owner's count is now `n`.
    pub fn set(&mut self, n: usize) {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        if n != self.reported {
            self.gauge.inc_by(n - self.reported);
            self.reported = n;
        }
    }
}

impl Drop for GaugeShare {
    fn drop(&mut self) {
        self.gauge.dec_by(self.reported);
    }
}

/// How often a live loop beats at least (it wakes for it even when idle).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// The instant every heartbeat counts from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// The last time one loop made progress: the loop calls [`Heartbeat::beat`] every time round
/// (one relaxed atomic store), the liveness probe reads [`Heartbeat::age`].
#[derive(Debug, Clone)]
pub struct Heartbeat(Arc<AtomicU64>);

impl Heartbeat {
    fn new() -> Self {
        let h = Heartbeat(Arc::new(AtomicU64::new(0)));
        h.beat();
        h
    }

    /// The loop is making progress now.
    pub fn beat(&self) {
        let ms = u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.store(ms, Ordering::Relaxed);
    }

    /// How long since the last beat.
    pub fn age(&self) -> Duration {
        let now = epoch().elapsed().as_millis();
        let last = u128::from(self.0.load(Ordering::Relaxed));
        Duration::from_millis(u64::try_from(now.saturating_sub(last)).unwrap_or(u64::MAX))
    }
}

/// One registered loop: what it is (for the probe's answer) and its heartbeat.
#[derive(Debug)]
struct Watched {
    key: u64,
    what: String,
    heartbeat: Heartbeat,
}

/// Every live loop of the media plane (the UDP mux and each room's media loop), for the
/// liveness probe. Registration happens when a loop starts (a short lock, never per packet);
/// the returned [`Watch`] deregisters on drop.
#[derive(Debug, Clone, Default)]
pub struct Heartbeats {
    loops: Arc<Mutex<Vec<Watched>>>,
    next_key: Arc<AtomicU64>,
}

impl Heartbeats {
    /// Registers a loop described by `what` (e.g. `udp mux`, `room=abc media loop`).
    pub fn watch(&self, what: impl Into<String>) -> Watch {
        let heartbeat = Heartbeat::new();
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        self.lock().push(Watched {
            key,
            what: what.into(),
            heartbeat: heartbeat.clone(),
        });
        Watch {
            heartbeat,
            key,
            loops: self.clone(),
        }
    }

    /// The loops that have not beaten for `max` or longer, with how long.
    pub fn stalled(&self, max: Duration) -> Vec<(String, Duration)> {
        self.lock()
            .iter()
            .map(|w| (w.what.clone(), w.heartbeat.age()))
            .filter(|(_, age)| *age >= max)
            .collect()
    }

    /// How many loops are registered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no loop is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Watched>> {
        // Only Vec operations run under the lock; the list stays consistent on a panic.
        self.loops.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A registered loop's heartbeat; dropping it deregisters the loop.
#[derive(Debug)]
pub struct Watch {
    heartbeat: Heartbeat,
    key: u64,
    loops: Heartbeats,
}

impl Watch {
    /// The loop is making progress now.
    pub fn beat(&self) {
        self.heartbeat.beat();
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let key = self.key;
        self.loops.lock().retain(|w| w.key != key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gauge_share_moves_the_gauge_by_differences_and_takes_everything_back_when_dropped() {
        let gauge = Gauge::default();
        let mut a = GaugeShare::new(gauge.clone());
        let mut b = GaugeShare::new(gauge.clone());
        a.set(3);
        b.set(2);
        a.set(1);
        assert_eq!(gauge.get(), 3);
        drop(a);
        assert_eq!(gauge.get(), 2);
        drop(b);
        assert_eq!(gauge.get(), 0);
    }

    #[test]
    fn a_loop_that_stops_beating_is_reported_stalled_until_it_is_dropped() {
        let loops = Heartbeats::default();
        let live = loops.watch("live loop");
        let stuck = loops.watch("stuck loop");
        std::thread::sleep(Duration::from_millis(60));
        live.beat();
        let stalled = loops.stalled(Duration::from_millis(50));
        assert_eq!(stalled.len(), 1, "{stalled:?}");
        assert_eq!(stalled[0].0, "stuck loop");
        drop(stuck);
        assert!(loops.stalled(Duration::from_millis(50)).is_empty());
        assert_eq!(loops.len(), 1);
    }
}
