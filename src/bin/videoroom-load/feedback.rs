//! The receiver's RTCP of the direct receive path ([`crate::srtp`]): what a browser's receiver
//! sends about the media it gets, so the server sees the same feedback whichever path a load
//! peer reads with. Sans-IO: packets and time go in, plain RTCP comes out (the peer seals it).
//!
//! - transport-wide feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01 §3.1) every
//!   [`TWCC_INTERVAL`], as libwebrtc's receiver sends it, with any NACKs due;
//! - a receiver report (RFC 3550 §6.4.2) for every received stream every [`REPORT_INTERVAL`];
//! - generic NACKs (RFC 4585 §6.2.1) as soon as a sequence-number gap shows, each missing
//!   packet asked for at most [`NACK_TRIES`] times, [`NACK_RETRY`] apart (libwebrtc's receiver
//!   also asks at once and again after about a round trip; loopback round trips are short).
use std::time::{Duration, Instant};

/// How often transport-wide feedback (and NACKs) go out: libwebrtc's receiver sends it every
/// 50 ms at video bitrates (its longest interval, 250 ms, is for a few kbit/s), as str0m does.
pub const TWCC_INTERVAL: Duration = Duration::from_millis(50);
/// How often receiver reports go out.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// Times one missing packet is asked for.
const NACK_TRIES: u8 = 3;
/// Wait before asking for a missing packet again.
pub const NACK_RETRY: Duration = Duration::from_millis(50);
/// Missing packets remembered per stream (older ones are given up).
const MAX_MISSING: usize = 256;
/// Most packet statuses in one transport-wide feedback.
const MAX_STATUSES: u64 = 4096;
/// Statuses a run-length chunk can hold.
const MAX_RUN: u64 = 8191;

/// One received stream's reception statistics (RFC 3550 Appendix A.3, A.8).
struct Stream {
    ssrc: u32,
    /// RTP clock rate, Hz.
    clock: u32,
    base: u64,
    highest: u64,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Interarrival jitter, in 1/16 timestamp units (RFC 3550 A.8).
    jitter_16: u64,
    last_transit: Option<i64>,
    /// Packets still missing, in no order.
    missing: Vec<Missing>,
}

/// One missing packet: its extended sequence number, how often and when last it was asked for.
#[derive(Clone, Copy)]
struct Missing {
    seq: u64,
    tries: u8,
    asked: Option<Instant>,
}

/// The receiver's feedback state of one peer (see the module docs).
pub struct Feedback {
    /// Our RTCP sender SSRC.
    sender_ssrc: u32,
    epoch: Instant,
    streams: Vec<Stream>,
    /// Arrivals (extended transport-wide number, µs since `epoch`) not yet reported.
    arrivals: Vec<(u64, u64)>,
    /// Highest extended transport-wide number seen.
    twcc_highest: Option<u64>,
    /// First number the next feedback covers.
    twcc_next: Option<u64>,
    feedback_count: u8,
    next_twcc: Instant,
    next_report: Instant,
    /// When NACKs are next due (a new gap: at once).
    next_nack: Option<Instant>,
    /// NACK entries sent (for the run's counters).
    pub nacks_sent: u64,
}

impl Feedback {
    /// Feedback sent as `sender_ssrc`, starting at `now`.
    pub fn new(sender_ssrc: u32, now: Instant) -> Feedback {
        Feedback {
            sender_ssrc,
            epoch: now,
            streams: Vec::new(),
            arrivals: Vec::new(),
            twcc_highest: None,
            twcc_next: None,
            feedback_count: 0,
            next_twcc: now + TWCC_INTERVAL,
            next_report: now + REPORT_INTERVAL,
            next_nack: None,
            nacks_sent: 0,
        }
    }

    /// When [`Feedback::poll`] next has something to send.
    pub fn deadline(&self) -> Instant {
        let next = self.next_twcc.min(self.next_report);
        self.next_nack.map_or(next, |n| n.min(next))
    }

    /// Records one received packet: `index` is its sequence number extended by its rollover
    /// counter, `rtp_time` its RTP timestamp at `clock` Hz.
    pub fn on_packet(
        &mut self,
        ssrc: u32,
        clock: u32,
        index: u64,
        rtp_time: u32,
        transport_seq: Option<u16>,
        now: Instant,
    ) {
        let at_us = self.on_transport(transport_seq, now);
        let stream = match self.streams.iter().position(|s| s.ssrc == ssrc) {
            Some(i) => &mut self.streams[i],
            None => {
                self.streams.push(Stream {
                    ssrc,
                    clock,
                    base: index,
                    highest: index,
                    received: 0,
                    expected_prior: 0,
                    received_prior: 0,
                    jitter_16: 0,
                    last_transit: None,
                    missing: Vec::new(),
                });
                self.streams.last_mut().expect("just pushed")
            }
        };
        stream.received += 1;
        if index > stream.highest {
            for seq in (stream.highest + 1..index).rev().take(MAX_MISSING) {
                stream.missing.push(Missing {
                    seq,
                    tries: 0,
                    asked: None,
                });
                self.next_nack = Some(now);
            }
            if stream.missing.len() > MAX_MISSING {
                stream.missing.sort_unstable_by_key(|m| m.seq);
                let excess = stream.missing.len() - MAX_MISSING;
                stream.missing.drain(..excess);
            }
            stream.highest = index;
        } else {
            stream.missing.retain(|m| m.seq != index);
        }
        let arrival = (at_us as u128 * u128::from(stream.clock) / 1_000_000) as i64;
        let transit = arrival - i64::from(rtp_time);
        if let Some(last) = stream.last_transit {
            let d = (transit - last).unsigned_abs();
            // J += (|D| - J) / 16, kept in sixteenths.
            stream.jitter_16 = stream.jitter_16 + d - ((stream.jitter_16 + 8) >> 4);
        }
        stream.last_transit = Some(transit);
    }

    /// Records the arrival of a packet's transport-wide number (every packet of the session
    /// carries one: media, retransmissions, padding); returns the arrival in µs since the epoch.
    pub fn on_transport(&mut self, transport_seq: Option<u16>, now: Instant) -> u64 {
        let at_us = now.saturating_duration_since(self.epoch).as_micros() as u64;
        if let Some(seq) = transport_seq {
            let ext = extend(self.twcc_highest, seq);
            if self.twcc_highest.is_none_or(|h| ext > h) {
                self.twcc_highest = Some(ext);
            }
            if self.twcc_next.is_none_or(|n| ext >= n) {
                self.arrivals.push((ext, at_us));
            }
        }
        at_us
    }

    /// A packet repaired by retransmission: no longer asked for.
    pub fn on_repaired(&mut self, ssrc: u32, index: u64) {
        if let Some(s) = self.streams.iter_mut().find(|s| s.ssrc == ssrc) {
            s.missing.retain(|m| m.seq != index);
        }
    }

    /// Writes the RTCP due at `now` into `out` (cleared first): one datagram's worth, the
    /// receiver report first when it is due, then transport-wide feedback, then NACKs. False
    /// when nothing was due.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<u8>) -> bool {
        out.clear();
        if now >= self.next_report {
            self.next_report = now + REPORT_INTERVAL;
            if !self.streams.is_empty() {
                self.write_report(out);
            }
        }
        if now >= self.next_twcc {
            self.next_twcc = now + TWCC_INTERVAL;
            self.write_twcc(out);
        }
        if self.next_nack.is_some_and(|n| now >= n) {
            self.write_nacks(now, out);
        }
        !out.is_empty()
    }

    /// RFC 3550 §6.4.2: one report block per stream.
    fn write_report(&mut self, out: &mut Vec<u8>) {
        let blocks = self.streams.len().min(31);
        let start = header(out, blocks as u8, 201, self.sender_ssrc);
        for s in self.streams.iter_mut().take(blocks) {
            let expected = s.highest - s.base + 1;
            let lost = expected.saturating_sub(s.received).min(0x7f_ffff);
            let expected_interval = expected - s.expected_prior;
            let received_interval = s.received - s.received_prior;
            s.expected_prior = expected;
            s.received_prior = s.received;
            let lost_interval = expected_interval.saturating_sub(received_interval);
            let fraction = (lost_interval << 8)
                .checked_div(expected_interval)
                .map_or(0, |f| f.min(255));
            out.extend_from_slice(&s.ssrc.to_be_bytes());
            out.push(fraction as u8);
            out.extend_from_slice(&(lost as u32).to_be_bytes()[1..]);
            out.extend_from_slice(&(s.highest as u32).to_be_bytes());
            out.extend_from_slice(&((s.jitter_16 >> 4) as u32).to_be_bytes());
            // No sender report is read on this path: LSR and DLSR 0 (RFC 3550 §6.4.1).
            out.extend_from_slice(&[0; 8]);
        }
        finish(out, start);
    }

    /// Generic NACKs for every packet due to be asked for (again); sets when next.
    fn write_nacks(&mut self, now: Instant, out: &mut Vec<u8>) {
        let mut next: Option<Instant> = None;
        for s in &mut self.streams {
            s.missing.retain(|m| m.tries < NACK_TRIES);
            s.missing.sort_unstable_by_key(|m| m.seq);
            let due = |m: &Missing| m.asked.is_none_or(|at| now >= at + NACK_RETRY);
            let mut start = None;
            let mut i = 0;
            while i < s.missing.len() {
                if !due(&s.missing[i]) {
                    i += 1;
                    continue;
                }
                if start.is_none() {
                    let at = header(out, 1, 205, self.sender_ssrc);
                    out.extend_from_slice(&s.ssrc.to_be_bytes());
                    start = Some(at);
                }
                let pid = s.missing[i].seq;
                let mut blp = 0u16;
                let mut j = i;
                while j < s.missing.len() && s.missing[j].seq <= pid + 16 {
                    let m = &mut s.missing[j];
                    if due(m) {
                        if m.seq > pid {
                            blp |= 1 << (m.seq - pid - 1);
                        }
                        m.tries += 1;
                        m.asked = Some(now);
                    }
                    j += 1;
                }
                out.extend_from_slice(&(pid as u16).to_be_bytes());
                out.extend_from_slice(&blp.to_be_bytes());
                self.nacks_sent += 1;
                i = j;
            }
            if let Some(at) = start {
                finish(out, at);
            }
            for m in s.missing.iter().filter(|m| m.tries < NACK_TRIES) {
                let again = m.asked.map_or(now, |at| at + NACK_RETRY);
                next = Some(next.map_or(again, |n: Instant| n.min(again)));
            }
        }
        self.next_nack = next;
    }

    /// Transport-wide feedback for the arrivals since the last one; false if there were none.
    fn write_twcc(&mut self, out: &mut Vec<u8>) -> bool {
        let Some(highest) = self.twcc_highest else {
            return false;
        };
        if self.arrivals.is_empty() {
            return false;
        }
        self.arrivals.sort_unstable();
        self.arrivals.dedup_by_key(|a| a.0);
        let base = self
            .twcc_next
            .unwrap_or(self.arrivals[0].0)
            .max(highest.saturating_sub(MAX_STATUSES - 1));
        self.arrivals.retain(|a| a.0 >= base);
        let Some(&(_, first_us)) = self.arrivals.first() else {
            return false;
        };
        let reference = first_us / 64_000;
        // Symbols and deltas, packet by packet; stops early at a delta that does not fit.
        let mut symbols: Vec<u8> = Vec::new();
        let mut deltas: Vec<u8> = Vec::new();
        let mut previous_us = reference * 64_000;
        let mut next = base;
        let mut taken = 0;
        for &(seq, at_us) in &self.arrivals {
            let units = (at_us as i64 - previous_us as i64) / 250;
            let symbol = match units {
                0..=255 => 1,
                -32768..=32767 => 2,
                _ => break,
            };
            symbols.extend(std::iter::repeat_n(0, (seq - next) as usize));
            symbols.push(symbol);
            if symbol == 1 {
                deltas.push(units as u8);
            } else {
                deltas.extend_from_slice(&(units as i16).to_be_bytes());
            }
            previous_us = (previous_us as i64 + units * 250) as u64;
            next = seq + 1;
            taken += 1;
        }
        if taken == 0 {
            return false;
        }
        self.arrivals.drain(..taken);
        self.twcc_next = Some(next);
        let media_ssrc = self.streams.first().map_or(0, |s| s.ssrc);
        let start = header(out, 15, 205, self.sender_ssrc);
        out.extend_from_slice(&media_ssrc.to_be_bytes());
        out.extend_from_slice(&(base as u16).to_be_bytes());
        out.extend_from_slice(&(symbols.len() as u16).to_be_bytes());
        out.extend_from_slice(&((reference as u32) & 0xff_ffff).to_be_bytes()[1..]);
        out.push(self.feedback_count);
        self.feedback_count = self.feedback_count.wrapping_add(1);
        // Run-length chunks only (§3.1.3): 0 | symbol (2 bits) | run length (13 bits).
        let mut i = 0;
        while i < symbols.len() {
            let symbol = symbols[i];
            let mut run = 1;
            while i + run < symbols.len() && symbols[i + run] == symbol && (run as u64) < MAX_RUN {
                run += 1;
            }
            let chunk = (u16::from(symbol) << 13) | run as u16;
            out.extend_from_slice(&chunk.to_be_bytes());
            i += run;
        }
        out.extend_from_slice(&deltas);
        finish(out, start);
        true
    }
}

/// Extends a 16-bit number to 64 bits next to the highest one so far.
fn extend(highest: Option<u64>, seq: u16) -> u64 {
    let Some(h) = highest else {
        return u64::from(seq);
    };
    let candidate = (h & !0xffff) | u64::from(seq);
    let diff = candidate as i64 - h as i64;
    if diff > 32768 && candidate >= 0x1_0000 {
        candidate - 0x1_0000
    } else if diff < -32768 {
        candidate + 0x1_0000
    } else {
        candidate
    }
}

/// Starts an RTCP packet (its length written by [`finish`]); returns where it starts.
fn header(out: &mut Vec<u8>, count: u8, packet_type: u8, sender_ssrc: u32) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0x80 | (count & 0x1f), packet_type, 0, 0]);
    out.extend_from_slice(&sender_ssrc.to_be_bytes());
    start
}

/// Pads the packet begun at `start` to 32 bits (RFC 3550 §6.4.1 padding bit) and writes its
/// length in words minus one.
fn finish(out: &mut Vec<u8>, start: usize) {
    let pad = (4 - (out.len() - start) % 4) % 4;
    if pad > 0 {
        out.extend(std::iter::repeat_n(0, pad - 1));
        out.push(pad as u8);
        out[start] |= 0x20;
    }
    let words = ((out.len() - start) / 4 - 1) as u16;
    out[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn transport_feedback_lists_each_arrival_with_a_gap_as_not_received() {
        let t0 = Instant::now();
        let mut fb = Feedback::new(0x1111, t0);
        // Transport numbers 10, 11, 13 (12 lost) arrive 1 ms apart.
        for (i, seq) in [10u16, 11, 13].into_iter().enumerate() {
            fb.on_packet(
                0xAAAA,
                90_000,
                100 + i as u64,
                0,
                Some(seq),
                t0 + MS * i as u32,
            );
        }
        let mut out = Vec::new();
        assert!(
            !fb.poll(t0 + 20 * MS, &mut out),
            "nothing due before the interval"
        );
        assert!(fb.poll(t0 + TWCC_INTERVAL, &mut out));
        assert_eq!(
            &out[..2],
            &[0x80 | 0x20 | 15, 205],
            "FMT 15 transport feedback, padded"
        );
        assert_eq!(&out[4..12], &[0, 0, 0x11, 0x11, 0, 0, 0xAA, 0xAA]);
        assert_eq!(&out[12..16], &[0, 10, 0, 4], "base 10, four statuses");
        assert_eq!(&out[16..20], &[0, 0, 0, 0], "reference time 0, feedback 0");
        // Chunks: run of two "small delta", one "not received", one "small delta".
        assert_eq!(&out[20..26], &[0x20, 2, 0, 1, 0x20, 1]);
        // Deltas in 250 µs from the previous arrival: 0, 4 (1 ms), 4, then the padding.
        assert_eq!(&out[26..29], &[0, 4, 4]);
        assert_eq!(out.len() % 4, 0);
        assert_eq!(*out.last().unwrap(), (out.len() - 29) as u8);
        assert_eq!(
            u16::from_be_bytes([out[2], out[3]]) as usize,
            out.len() / 4 - 1
        );
        // The next feedback starts after what this one covered.
        fb.on_packet(0xAAAA, 90_000, 104, 0, Some(14), t0 + 70 * MS);
        assert!(fb.poll(t0 + 2 * TWCC_INTERVAL, &mut out));
        assert_eq!(&out[12..16], &[0, 14, 0, 1]);
        assert_eq!(out[19], 1, "feedback count moves on");
    }

    #[test]
    fn a_gap_is_nacked_at_once_then_twice_more_unless_the_packet_is_repaired() {
        let t0 = Instant::now();
        let mut fb = Feedback::new(1, t0);
        for seq in [1u64, 2, 5, 6] {
            fb.on_packet(7, 90_000, seq, 0, None, t0);
        }
        assert_eq!(fb.deadline(), t0, "a gap is asked about at once");
        let mut out = Vec::new();
        let mut asked = Vec::new();
        for tick in 0..4u32 {
            let at = t0 + NACK_RETRY * tick;
            assert_eq!(fb.deadline(), at);
            assert_eq!(fb.poll(at, &mut out), tick < 3);
            asked.push(out.clone());
        }
        // PT 205 FMT 1, media SSRC 7, PID 3 with BLP bit 0 (4).
        assert_eq!(
            asked[0],
            vec![0x81, 205, 0, 3, 0, 0, 0, 1, 0, 0, 0, 7, 0, 3, 0, 1]
        );
        assert_eq!(asked[1], asked[0]);
        assert_eq!(fb.nacks_sent, 3);
        assert!(asked[3].is_empty(), "given up after three tries");
        fb.on_packet(7, 90_000, 9, 0, None, t0 + 160 * MS);
        assert_eq!(fb.deadline(), t0 + 160 * MS);
        fb.on_repaired(7, 8);
        fb.on_packet(7, 90_000, 7, 0, None, t0 + 161 * MS);
        assert!(
            !fb.poll(t0 + 161 * MS, &mut out),
            "both were received after all"
        );
    }

    #[test]
    fn a_packet_not_yet_due_again_is_left_out_of_a_nack_for_a_new_gap() {
        let t0 = Instant::now();
        let mut fb = Feedback::new(1, t0);
        for seq in [1u64, 3] {
            fb.on_packet(7, 90_000, seq, 0, None, t0);
        }
        let mut out = Vec::new();
        assert!(fb.poll(t0, &mut out));
        assert_eq!(&out[12..], &[0, 2, 0, 0]);
        fb.on_packet(7, 90_000, 5, 0, None, t0 + 10 * MS);
        assert!(fb.poll(t0 + 10 * MS, &mut out));
        assert_eq!(
            &out[12..],
            &[0, 4, 0, 0],
            "only 4: 2 was asked for 10 ms ago"
        );
        assert_eq!(fb.deadline(), t0 + NACK_RETRY, "2 is due again first");
    }

    #[test]
    fn a_receiver_report_counts_loss_and_the_highest_sequence_number() {
        let t0 = Instant::now();
        let mut fb = Feedback::new(1, t0);
        for seq in (65_530u64..65_540).filter(|s| *s != 65_535) {
            fb.on_packet(9, 48_000, seq, 0, None, t0);
        }
        let mut out = Vec::new();
        assert!(fb.poll(t0 + REPORT_INTERVAL, &mut out));
        assert_eq!(&out[..8], &[0x81, 201, 0, 7, 0, 0, 0, 1], "RR, one block");
        assert_eq!(&out[8..12], &[0, 0, 0, 9]);
        assert_eq!(out[12], 25, "1 of 10 lost: 25/256");
        assert_eq!(&out[13..16], &[0, 0, 1], "one lost in all");
        assert_eq!(&out[16..20], &65_539u32.to_be_bytes());
        assert_eq!(
            &out[32..34],
            &[0x81, 205],
            "the NACK for it follows in the compound"
        );
    }

    #[test]
    fn transport_numbers_extend_across_the_wrap() {
        assert_eq!(extend(None, 65_535), 65_535);
        assert_eq!(extend(Some(65_535), 2), 65_538);
        assert_eq!(extend(Some(65_538), 65_534), 65_534);
        assert_eq!(extend(Some(70_000), 4_465), 70_001);
    }
}
