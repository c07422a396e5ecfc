//! The Channels server's counters and gauges: handles only (prometheus-client atomics, a clone
//! is the same metric). Whoever embeds the server registers and exports them; this module knows
//! nothing of that registry. Label values are fixed strings or close codes, never ids.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

/// A label set of one `name="value"` pair, both fixed strings.
pub type Label = [(&'static str, &'static str); 1];

/// Counters with one label (e.g. `limit`).
pub type LabeledCounters = Family<Label, Counter>;

/// Every metric the Channels server updates. `Default` makes unregistered handles.
#[derive(Debug, Clone)]
pub struct SocketMetrics {
    /// Open sockets by `transport` (`websocket`, `longpoll`).
    pub sockets: Family<Label, Gauge>,
    /// `sockets{transport="websocket"}`.
    pub websockets: Gauge,
    /// `sockets{transport="longpoll"}`.
    pub longpolls: Gauge,
    /// Joined channels on every socket.
    pub channels: Gauge,
    /// Sockets the server closed, by WebSocket close `code` (LongPoll: the code it would send).
    pub closes: Family<[(&'static str, u16); 1], Counter>,
    /// Limit hits, by limit (a family shared with the other layers).
    pub limit_hits: LabeledCounters,
    /// Bounded queues that overflowed, by queue (shared with the other layers).
    pub queue_overflows: LabeledCounters,
    /// Channel callbacks that panicked (`join`, `handle_in`), by `kind`.
    pub errors: LabeledCounters,
}

impl SocketMetrics {
    /// Handles whose `limit_hits`, `queue_overflows` and `errors` families are shared.
    pub fn new(
        limit_hits: LabeledCounters,
        queue_overflows: LabeledCounters,
        errors: LabeledCounters,
    ) -> Self {
        let sockets = Family::<Label, Gauge>::default();
        SocketMetrics {
            websockets: sockets.get_or_create_owned(&[("transport", "websocket")]),
            longpolls: sockets.get_or_create_owned(&[("transport", "longpoll")]),
            sockets,
            channels: Gauge::default(),
            closes: Family::default(),
            limit_hits,
            queue_overflows,
            errors,
        }
    }

    /// Counts one hit of `limit`.
    pub fn limit_hit(&self, limit: &'static str) {
        self.limit_hits.get_or_create(&[("limit", limit)]).inc();
    }

    /// Counts a close with `code`, and what it says about limits and queues.
    pub fn closed(&self, code: u16) {
        self.closes.get_or_create(&[("code", code)]).inc();
        match code {
            super::socket::CLOSE_POLICY_VIOLATION => self.limit_hit("messages_per_sec"),
            super::socket::CLOSE_TOO_BIG => self.limit_hit("frame_bytes"),
            super::socket::CLOSE_TRY_AGAIN_LATER => {
                self.queue_overflows
                    .get_or_create(&[("queue", "socket")])
                    .inc();
            }
            _ => {}
        }
    }
}

impl Default for SocketMetrics {
    fn default() -> Self {
        Self::new(
            LabeledCounters::default(),
            LabeledCounters::default(),
            LabeledCounters::default(),
        )
    }
}

/// Holds one unit of a gauge (an open socket, a joined channel) until dropped.
#[derive(Debug)]
pub struct GaugeGuard(Gauge);

impl GaugeGuard {
    /// Adds one to `gauge` until the guard is dropped.
    pub fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        GaugeGuard(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
