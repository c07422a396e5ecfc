//! Per-track forwarding state: keyframe-request throttling, the Opus silence discarder and the
//! per-subscriber sequence-number rewrite.
use std::time::{Duration, Instant};

/// Trailing-edge rate limiter for keyframe requests to one publisher track: the first request
/// goes out at once, later ones within `interval` are merged into one sent when it elapses, so
/// a subscriber that starts receiving never waits for a keyframe longer than `interval`.
#[derive(Debug, Default)]
pub(crate) struct KeyframeLimiter {
    last_sent: Option<Instant>,
    pending: bool,
}

impl KeyframeLimiter {
    /// Records a request; returns whether to send one now.
    pub fn request(&mut self, now: Instant, interval: Duration) -> bool {
        match self.last_sent {
            Some(last) if now.saturating_duration_since(last) < interval => {
                self.pending = true;
                false
            }
            _ => {
                self.last_sent = Some(now);
                self.pending = false;
                true
            }
        }
    }

    /// When a merged request is due, if one is pending.
    pub fn deadline(&self, interval: Duration) -> Option<Instant> {
        if self.pending {
            self.last_sent.map(|l| l + interval)
        } else {
            None
        }
    }

    /// Whether the merged request is due now (and, if so, consider it sent).
    pub fn poll(&mut self, now: Instant, interval: Duration) -> bool {
        match self.deadline(interval) {
            Some(d) if d <= now => {
                self.pending = false;
                self.last_sent = Some(now);
                true
            }
            _ => false,
        }
    }
}

/// The Opus silence discarder of one publisher track.
#[derive(Debug, Default)]
pub(crate) struct SilenceDiscarder {
    /// Consecutive packets dropped so far.
    run: u32,
    /// Packets dropped since the track started: subtracted from later sequence numbers.
    pub dropped: u64,
}

impl SilenceDiscarder {
    /// Whether to drop a packet whose ssrc-audio-level extension says `level` (str0m reports
    /// `-dBov`, i.e. -127 for digital silence). Every `max_run + 1`-th silent packet passes.
    pub fn should_drop(&mut self, level: Option<i8>, threshold: Option<u8>, max_run: u32) -> bool {
        let (Some(level), Some(threshold)) = (level, threshold) else {
            self.run = 0;
            return false;
        };
        let dbov = -(level as i16);
        if dbov < threshold as i16 || self.run >= max_run {
            self.run = 0;
            return false;
        }
        self.run += 1;
        self.dropped += 1;
        true
    }
}

/// Sequence numbering of one publisher track towards one subscriber.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SeqRewrite {
    /// Added (wrapping) to the publisher's gap-free sequence number; set by the first packet.
    offset: Option<u64>,
}

impl SeqRewrite {
    /// The outgoing extended sequence number for the publisher's `logical` one (its extended
    /// number minus the silent packets dropped before it). The first packet maps to `start`
    /// (< 2^15, so the subscriber's rollover counter starts at 0 as SRTP requires without
    /// signalling).
    pub fn map(&mut self, logical: u64, start: u16) -> u64 {
        let offset = *self
            .offset
            .get_or_insert_with(|| (start as u64).wrapping_sub(logical));
        logical.wrapping_add(offset)
    }

    /// Whether this subscriber already received a packet of the track.
    pub fn started(&self) -> bool {
        self.offset.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyframe_requests_within_the_interval_are_merged_into_one() {
        let t0 = Instant::now();
        let i = Duration::from_millis(500);
        let mut k = KeyframeLimiter::default();
        assert!(k.request(t0, i));
        assert!(!k.request(t0 + Duration::from_millis(100), i));
        assert!(!k.request(t0 + Duration::from_millis(200), i));
        assert_eq!(k.deadline(i), Some(t0 + i));
        assert!(!k.poll(t0 + Duration::from_millis(499), i));
        assert!(k.poll(t0 + i, i));
        assert_eq!(k.deadline(i), None);
        assert!(k.request(t0 + Duration::from_millis(1001), i));
    }

    #[test]
    fn silence_is_dropped_except_every_thousand_and_first() {
        let mut s = SilenceDiscarder::default();
        let mut passed = 0;
        for _ in 0..2002 {
            if !s.should_drop(Some(-127), Some(127), 1000) {
                passed += 1;
            }
        }
        assert_eq!(passed, 2);
        assert_eq!(s.dropped, 2000);
        assert!(!s.should_drop(Some(-30), Some(127), 1000));
        assert!(!s.should_drop(None, Some(127), 1000));
        assert!(!s.should_drop(Some(-127), None, 1000));
    }

    #[test]
    fn sequence_numbers_start_at_the_given_value_and_follow_the_publisher() {
        let mut r = SeqRewrite::default();
        assert!(!r.started());
        assert_eq!(r.map(70_000, 1234), 1234);
        assert_eq!(r.map(70_001, 9999), 1235);
        assert_eq!(r.map(69_999, 9999), 1233);
        assert!(r.started());
    }
}
