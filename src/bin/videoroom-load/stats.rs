//! What a load run measures: counters shared by every peer task of the (single-threaded) run,
//! latency histograms, and the server's own CPU time and memory read from `/proc`.
use std::cell::Cell;
use std::time::Duration;

/// A log-scale histogram of microsecond values (2% wide buckets: percentiles within ~1%).
#[derive(Clone)]
pub struct Histogram {
    buckets: Vec<u64>,
    count: u64,
}

/// Relative width of one bucket.
const BUCKET_GROWTH: f64 = 1.02;
/// Buckets up to ~1.02^1200 µs (far beyond any latency a run can see).
const BUCKETS: usize = 1200;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: vec![0; BUCKETS],
            count: 0,
        }
    }
}

impl Histogram {
    /// Records one value, in microseconds.
    pub fn record(&mut self, micros: u64) {
        let index = ((micros.max(1) as f64).ln() / BUCKET_GROWTH.ln()) as usize;
        self.buckets[index.min(BUCKETS - 1)] += 1;
        self.count += 1;
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The value below which `p` (0–1) of the recorded values lie, in microseconds (upper edge
    /// of its bucket); 0 when empty.
    pub fn percentile(&self, p: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = ((self.count as f64) * p).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return BUCKET_GROWTH.powi(i as i32 + 1);
            }
        }
        BUCKET_GROWTH.powi(BUCKETS as i32)
    }
}

/// Counters of the whole run. Rates are computed from two snapshots ([`Counters::since`]).
#[derive(Clone, Copy, Default, Debug)]
pub struct Counters {
    /// UDP datagrams and bytes the load peers sent (what the server received).
    pub udp_sent: u64,
    pub udp_sent_bytes: u64,
    /// UDP datagrams and bytes the load peers received (what the server sent).
    pub udp_received: u64,
    pub udp_received_bytes: u64,
    /// RTP packets the publishers wrote, by kind.
    pub rtp_sent_video: u64,
    pub rtp_sent_audio: u64,
    /// RTP packets the subscribers received, by kind.
    pub rtp_received_video: u64,
    pub rtp_received_audio: u64,
    /// Of those, the packets the direct receive path opened (see `crate::srtp`).
    pub rtp_received_direct: u64,
    /// Packets the subscribers should have received (from the sequence numbers they saw).
    pub rtp_expected: u64,
    /// NACKs and PLIs the subscribers sent (str0m's ingress statistics, and the NACK entries
    /// of the direct receive path's feedback).
    pub nacks_sent: u64,
    pub plis_sent: u64,
    /// NACKs and PLIs (or FIRs) that reached the publishers (egress statistics).
    pub nacks_received: u64,
    pub plis_received: u64,
    /// Sum and count of |D|, the change of transit time between consecutive packets of a stream
    /// (RFC 3550's jitter before smoothing), in microseconds.
    pub jitter_sum_us: u64,
    pub jitter_samples: u64,
}

impl Counters {
    /// The difference `self - earlier`.
    pub fn since(&self, earlier: &Counters) -> Counters {
        Counters {
            udp_sent: self.udp_sent - earlier.udp_sent,
            udp_sent_bytes: self.udp_sent_bytes - earlier.udp_sent_bytes,
            udp_received: self.udp_received - earlier.udp_received,
            udp_received_bytes: self.udp_received_bytes - earlier.udp_received_bytes,
            rtp_sent_video: self.rtp_sent_video - earlier.rtp_sent_video,
            rtp_sent_audio: self.rtp_sent_audio - earlier.rtp_sent_audio,
            rtp_received_video: self.rtp_received_video - earlier.rtp_received_video,
            rtp_received_audio: self.rtp_received_audio - earlier.rtp_received_audio,
            rtp_received_direct: self.rtp_received_direct - earlier.rtp_received_direct,
            rtp_expected: self.rtp_expected - earlier.rtp_expected,
            nacks_sent: self.nacks_sent - earlier.nacks_sent,
            plis_sent: self.plis_sent - earlier.plis_sent,
            nacks_received: self.nacks_received - earlier.nacks_received,
            plis_received: self.plis_received - earlier.plis_received,
            jitter_sum_us: self.jitter_sum_us - earlier.jitter_sum_us,
            jitter_samples: self.jitter_samples - earlier.jitter_samples,
        }
    }

    /// RTP packets received by subscribers, both kinds.
    pub fn rtp_received(&self) -> u64 {
        self.rtp_received_video + self.rtp_received_audio
    }

    /// Lost share of what the subscribers should have received (0–1).
    pub fn loss(&self) -> f64 {
        let got = self.rtp_received().min(self.rtp_expected);
        (self.rtp_expected - got) as f64 / self.rtp_expected.max(1) as f64
    }

    /// Mean |D| in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        self.jitter_sum_us as f64 / self.jitter_samples.max(1) as f64 / 1000.0
    }
}

/// Everything the peer tasks update: counters, the forwarding-latency histogram of the current
/// window, join-to-first-video latencies, and each peer's own tally.
#[derive(Default)]
pub struct Stats {
    pub counters: Counters,
    /// Send-to-receive time of every media packet (µs), since the measuring window opened.
    pub latency: Histogram,
    /// WebSocket connect to the first video packet received, per receiving peer (µs).
    pub first_video: Histogram,
    /// Peers that reached each stage.
    pub joined: usize,
    pub connected: usize,
    pub failed: usize,
    /// One tally per peer, in start order.
    pub peers: Vec<std::rc::Rc<PeerTally>>,
}

/// What one peer saw, for the end-of-run check and report.
#[derive(Default)]
pub struct PeerTally {
    /// `<room>/<p|s><index>`.
    pub name: String,
    pub publisher: bool,
    /// Video tracks the server said it would send (the last `offerData`).
    pub video_tracks: Cell<u64>,
    pub audio_tracks: Cell<u64>,
    pub video_received: Cell<u64>,
    pub audio_received: Cell<u64>,
    /// Why it stopped early, if it did.
    pub error: std::cell::RefCell<Option<String>>,
}

/// CPU time (user + system) and resident memory of a process, from `/proc/<pid>`.
#[derive(Clone, Copy, Debug)]
pub struct ProcessSample {
    pub cpu: Duration,
    pub rss_kib: u64,
}

/// Linux reports `/proc/<pid>/stat` times in USER_HZ ticks, 100 per second on every
/// architecture the kernel exposes to user space.
const USER_HZ: f64 = 100.0;

/// Samples process `pid`; `None` if it is gone or unreadable.
pub fn sample_process(pid: u32) -> Option<ProcessSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after its ')' are plain.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the whole line (utime, stime) are 11 and 12 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    Some(ProcessSample {
        cpu: Duration::from_secs_f64(ticks as f64 / USER_HZ),
        rss_kib,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_histogram_fall_within_two_percent_of_the_recorded_values() {
        let mut h = Histogram::default();
        for v in 1..=1000u64 {
            h.record(v * 100);
        }
        let p50 = h.percentile(0.5);
        assert!((50_000.0..=51_000.0).contains(&p50), "p50 {p50}");
        let p99 = h.percentile(0.99);
        assert!((99_000.0..=101_000.0).contains(&p99), "p99 {p99}");
        assert_eq!(Histogram::default().percentile(0.5), 0.0);
    }

    #[test]
    fn loss_counts_only_what_was_expected_and_not_received() {
        let c = Counters {
            rtp_expected: 1000,
            rtp_received_video: 990,
            ..Counters::default()
        };
        assert!((c.loss() - 0.01).abs() < 1e-9);
        let duplicates = Counters {
            rtp_expected: 10,
            rtp_received_audio: 12,
            ..Counters::default()
        };
        assert_eq!(duplicates.loss(), 0.0);
    }

    #[test]
    fn the_own_process_can_be_sampled() {
        let s = sample_process(std::process::id()).expect("own /proc entry");
        assert!(s.rss_kib > 0);
    }
}
