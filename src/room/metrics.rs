//! The rooms' counters and gauges: handles only, registered by the app's metrics registry.

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use crate::rtc::metrics::{LabeledCounters, duration_buckets};

/// Every metric the rooms update. `Default` makes unregistered handles.
#[derive(Debug, Clone)]
pub struct RoomMetrics {
    /// Running rooms.
    pub rooms: Gauge,
    /// Admitted peers (members) in every room.
    pub peers: Gauge,
    /// Clustered: channels on this node whose room lives on another node (relayed).
    pub relayed: Gauge,
    /// From a channel joining `room:<id>` to its peer being accepted, seconds.
    pub join_seconds: Histogram,
    /// Limit hits, by limit (a family shared with the other layers).
    pub limit_hits: LabeledCounters,
    /// Bounded queues that overflowed, by queue (shared with the other layers).
    pub queue_overflows: LabeledCounters,
    /// Errors, by kind (`room_crashed`, …; shared with the other layers).
    pub errors: LabeledCounters,
    /// Lost sockets and resumes, by outcome: `held` (a peer's socket was lost while its media
    /// lived), `resumed`, or the refusal (`invalid`, `used`, `expired`, `other_room`).
    pub reconnects: LabeledCounters,
}

impl RoomMetrics {
    /// Handles whose labelled families are shared with the other layers.
    pub fn new(
        limit_hits: LabeledCounters,
        queue_overflows: LabeledCounters,
        errors: LabeledCounters,
    ) -> Self {
        RoomMetrics {
            rooms: Gauge::default(),
            peers: Gauge::default(),
            relayed: Gauge::default(),
            join_seconds: Histogram::new(duration_buckets()),
            limit_hits,
            queue_overflows,
            errors,
            reconnects: LabeledCounters::default(),
        }
    }

    /// Counts one reconnect `outcome` (see [`RoomMetrics::reconnects`]).
    pub fn reconnect(&self, outcome: &'static str) {
        self.reconnects.get_or_create(&[("outcome", outcome)]).inc();
    }

    /// Counts one hit of `limit`.
    pub fn limit_hit(&self, limit: &'static str) {
        self.limit_hits.get_or_create(&[("limit", limit)]).inc();
    }

    /// Counts one error of `kind`.
    pub fn error(&self, kind: &'static str) {
        self.errors.get_or_create(&[("kind", kind)]).inc();
    }
}

impl Default for RoomMetrics {
    fn default() -> Self {
        Self::new(
            LabeledCounters::default(),
            LabeledCounters::default(),
            LabeledCounters::default(),
        )
    }
}
