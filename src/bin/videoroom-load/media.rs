//! Synthetic media: VP8-shaped video frames and Opus-sized audio packets, each ending in a stamp
//! (publisher, kind, send time) that lets a subscriber measure the forwarding latency, and the
//! receiving side's per-stream loss and jitter accounting.
use std::time::{Duration, Instant};

/// Bytes of the stamp at the end of every payload: magic, kind, publisher (u32), send time (µs
/// since the run's epoch, u64), 2 spare.
pub const STAMP_BYTES: usize = 16;
const MAGIC: u8 = 0xb7;

/// Audio or video.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Audio,
    Video,
}

/// What a publisher sends: the shape of its video and audio.
#[derive(Clone, Debug)]
pub struct MediaShape {
    /// Video frames per second, and RTP packets per delta frame and per keyframe.
    pub fps: u32,
    pub packets_per_frame: u32,
    pub packets_per_keyframe: u32,
    /// Payload bytes of one video packet.
    pub video_bytes: usize,
    /// A keyframe this often (and whenever a PLI arrives).
    pub keyframe_interval: Duration,
    /// Audio packets per second (0: no audio) and their payload bytes.
    pub audio_pps: u32,
    pub audio_bytes: usize,
    /// Video off (audio-only publishers).
    pub no_video: bool,
}

/// Writes the stamp into the last [`STAMP_BYTES`] of `payload`.
fn stamp(payload: &mut [u8], kind: Kind, publisher: u32, sent_us: u64) {
    let n = payload.len();
    let s = &mut payload[n - STAMP_BYTES..];
    s[0] = MAGIC;
    s[1] = kind as u8;
    s[2..6].copy_from_slice(&publisher.to_be_bytes());
    s[6..14].copy_from_slice(&sent_us.to_be_bytes());
}

/// The stamp of a received payload: (kind, publisher, send time in µs since the epoch).
pub fn read_stamp(payload: &[u8]) -> Option<(Kind, u32, u64)> {
    let n = payload.len();
    let s = payload.get(n.checked_sub(STAMP_BYTES)?..)?;
    if s[0] != MAGIC {
        return None;
    }
    let kind = if s[1] == Kind::Video as u8 {
        Kind::Video
    } else {
        Kind::Audio
    };
    let publisher = u32::from_be_bytes(s[2..6].try_into().ok()?);
    let sent = u64::from_be_bytes(s[6..14].try_into().ok()?);
    Some((kind, publisher, sent))
}

/// One video RTP payload: the VP8 payload descriptor (S bit on the first packet of a frame),
/// on the first packet the VP8 frame header (keyframe flag, and for a keyframe the start code and
/// a 1280×720 size), filler, then the stamp.
pub fn video_payload(
    size: usize,
    first_of_frame: bool,
    keyframe: bool,
    publisher: u32,
    sent_us: u64,
) -> Vec<u8> {
    let mut p = vec![0x5a; size.max(STAMP_BYTES + 11)];
    p[0] = if first_of_frame { 0x10 } else { 0x00 };
    if first_of_frame {
        // Frame tag: bit 0 is 0 for a keyframe; version 0, show_frame set.
        p[1] = if keyframe { 0x10 } else { 0x11 };
        p[2] = 0x00;
        p[3] = 0x00;
        if keyframe {
            p[4..7].copy_from_slice(&[0x9d, 0x01, 0x2a]);
            p[7..9].copy_from_slice(&1280u16.to_le_bytes());
            p[9..11].copy_from_slice(&720u16.to_le_bytes());
        }
    }
    stamp(&mut p, Kind::Video, publisher, sent_us);
    p
}

/// One Opus payload: a TOC byte (CELT fullband 20 ms, mono), filler, the stamp.
pub fn audio_payload(size: usize, publisher: u32, sent_us: u64) -> Vec<u8> {
    let mut p = vec![0xa5; size.max(STAMP_BYTES + 1)];
    p[0] = 0xfc;
    stamp(&mut p, Kind::Audio, publisher, sent_us);
    p
}

/// Microseconds from `epoch` to `t`.
pub fn micros_since(epoch: Instant, t: Instant) -> u64 {
    t.saturating_duration_since(epoch).as_micros() as u64
}

/// Loss and jitter accounting of one received stream (one SSRC).
#[derive(Default)]
pub struct RxStream {
    /// Highest extended sequence number seen.
    max_seq: Option<u64>,
    /// Transit time (receive − send, µs) of the previous packet.
    last_transit: Option<i64>,
}

/// What one received packet adds to the run's counters.
pub struct RxUpdate {
    /// Packets this one shows were due (1, more after a gap, 0 for a late or repeated one).
    pub expected: u64,
    /// |D| against the previous packet, µs (RFC 3550), when there was one.
    pub jitter_us: Option<u64>,
}

impl RxStream {
    /// Accounts one packet of extended sequence number `seq` whose transit took `transit_us`.
    pub fn on_packet(&mut self, seq: u64, transit_us: i64) -> RxUpdate {
        let expected = match self.max_seq {
            None => 1,
            Some(max) if seq > max => seq - max,
            Some(_) => 0,
        };
        if expected > 0 {
            self.max_seq = Some(seq);
        }
        let jitter_us = self
            .last_transit
            .map(|last| (transit_us - last).unsigned_abs());
        self.last_transit = Some(transit_us);
        RxUpdate {
            expected,
            jitter_us,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamped_video_payload_reads_back_its_publisher_and_send_time() {
        let p = video_payload(1200, true, true, 7, 123_456_789);
        assert_eq!(p.len(), 1200);
        assert_eq!(&p[..5], &[0x10, 0x10, 0, 0, 0x9d]);
        assert_eq!(read_stamp(&p), Some((Kind::Video, 7, 123_456_789)));
        let a = audio_payload(100, 3, 42);
        assert_eq!(read_stamp(&a), Some((Kind::Audio, 3, 42)));
        assert_eq!(read_stamp(&[0u8; 40]), None);
    }

    #[test]
    fn a_gap_in_sequence_numbers_counts_the_missing_packets_as_expected() {
        let mut s = RxStream::default();
        assert_eq!(s.on_packet(10, 500).expected, 1);
        let next = s.on_packet(11, 700);
        assert_eq!((next.expected, next.jitter_us), (1, Some(200)));
        assert_eq!(s.on_packet(15, 600).expected, 4);
        assert_eq!(s.on_packet(13, 600).expected, 0);
    }
}
