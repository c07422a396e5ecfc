//! Synthetic media: Opus and VP8 RTP packet generators and per-track receive recorders.
//!
//! Sans-IO: generators only build packets and recorders only count what they are shown; the
//! peer's tasks do the sending and timing. Every payload ends with a 12-byte trailer
//! (`tag`, `index`, magic) so a receiver can tell exactly which sent packet arrived, whatever
//! SSRC, sequence number or payload type the SFU rewrote on the way.

use std::collections::HashSet;
use std::time::{Duration, Instant};

/// URI of the client-to-mixer audio level header extension (RFC 6464).
pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
/// Marks the end of every synthetic payload.
pub const TRAILER_MAGIC: [u8; 4] = *b"HdPr";
/// Length of the payload trailer.
pub const TRAILER_LEN: usize = 12;
/// Audio level of digital silence (−127 dBov), what the SFU's silence discarder drops.
pub const SILENCE_LEVEL: u8 = 127;
/// Audio level used for voiced packets.
pub const VOICE_LEVEL: u8 = 30;

/// Media kind of a generated or received track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Opus audio.
    Audio,
    /// VP8 video.
    Video,
}

impl Kind {
    /// The name used in `offerData` and SDP (`audio`/`video`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Audio => "audio",
            Kind::Video => "video",
        }
    }
}

/// Identifies one synthetic packet: which track sent it (`tag`) and its index in that track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    /// Random per-track tag chosen by the sender.
    pub tag: u32,
    /// Index of the packet in its track, counting from 0.
    pub index: u32,
}

fn push_trailer(payload: &mut Vec<u8>, trailer: Trailer) {
    payload.extend_from_slice(&trailer.tag.to_be_bytes());
    payload.extend_from_slice(&trailer.index.to_be_bytes());
    payload.extend_from_slice(&TRAILER_MAGIC);
}

/// Reads the trailer of a synthetic payload, `None` for anything else.
pub fn read_trailer(payload: &[u8]) -> Option<Trailer> {
    let n = payload.len();
    if n < TRAILER_LEN || payload[n - 4..] != TRAILER_MAGIC {
        return None;
    }
    let tag = u32::from_be_bytes(payload[n - 12..n - 8].try_into().ok()?);
    let index = u32::from_be_bytes(payload[n - 8..n - 4].try_into().ok()?);
    Some(Trailer { tag, index })
}

/// One generated RTP packet, before SSRC and payload type (which depend on negotiation).
#[derive(Debug, Clone)]
pub struct GeneratedPacket {
    /// RTP sequence number.
    pub sequence_number: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// RTP marker bit.
    pub marker: bool,
    /// Payload with trailer.
    pub payload: Vec<u8>,
    /// Value of the audio level extension byte (`V` bit + level), audio only.
    pub audio_level: Option<u8>,
    /// Trailer written into the payload.
    pub trailer: Trailer,
    /// Whether the packet carries digital silence.
    pub silent: bool,
}

/// Opus generator: one 20 ms packet per call, 48 kHz clock.
pub struct OpusGenerator {
    tag: u32,
    index: u32,
    sequence_number: u16,
    timestamp: u32,
}

impl OpusGenerator {
    /// Interval between two packets.
    pub const PTIME: Duration = Duration::from_millis(20);

    /// A generator for the track tagged `tag`, random initial sequence number and timestamp.
    pub fn new(tag: u32) -> Self {
        Self {
            tag,
            index: 0,
            sequence_number: rand::random(),
            timestamp: rand::random(),
        }
    }

    /// The next packet; `silent` packets carry level 127 and a tiny payload (like DTX comfort noise).
    pub fn next_packet(&mut self, silent: bool) -> GeneratedPacket {
        let trailer = Trailer {
            tag: self.tag,
            index: self.index,
        };
        // TOC byte: config 31 (CELT fullband, 20 ms), mono, one frame.
        let mut payload = vec![0xF8];
        let body = if silent { 2 } else { 60 };
        payload.extend((0..body).map(|i| (i as u8).wrapping_mul(31) ^ self.index as u8));
        push_trailer(&mut payload, trailer);
        let level = if silent {
            SILENCE_LEVEL
        } else {
            0x80 | VOICE_LEVEL
        };
        let packet = GeneratedPacket {
            sequence_number: self.sequence_number,
            timestamp: self.timestamp,
            marker: self.index == 0,
            payload,
            audio_level: Some(level),
            trailer,
            silent,
        };
        self.index += 1;
        self.sequence_number = self.sequence_number.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(960);
        packet
    }
}

/// VP8 generator: 640x360 frames at 24 fps, a keyframe every `keyframe_interval` frames (and on
/// request), frames split into packets of at most 1100 bytes with RFC 7741 payload descriptors.
pub struct Vp8Generator {
    tag: u32,
    index: u32,
    frame: u64,
    picture_id: u16,
    sequence_number: u16,
    timestamp: u32,
    keyframe_interval: u64,
    keyframe_requested: bool,
}

/// Frame width in the keyframe header.
pub const VP8_WIDTH: u16 = 640;
/// Frame height in the keyframe header.
pub const VP8_HEIGHT: u16 = 360;
const VP8_MAX_PAYLOAD: usize = 1100;

impl Vp8Generator {
    /// Interval between two frames (24 fps).
    pub const FRAME_INTERVAL: Duration = Duration::from_micros(41_667);

    /// A generator for the track tagged `tag`.
    pub fn new(tag: u32, keyframe_interval: u64) -> Self {
        Self {
            tag,
            index: 0,
            frame: 0,
            picture_id: rand::random::<u16>() & 0x7fff,
            sequence_number: rand::random(),
            timestamp: rand::random(),
            keyframe_interval: keyframe_interval.max(1),
            keyframe_requested: false,
        }
    }

    /// Makes the next frame a keyframe (a PLI or FIR arrived).
    pub fn request_keyframe(&mut self) {
        self.keyframe_requested = true;
    }

    /// The packets of the next frame.
    pub fn next_frame(&mut self) -> Vec<GeneratedPacket> {
        let keyframe = self.keyframe_requested || self.frame.is_multiple_of(self.keyframe_interval);
        self.keyframe_requested = false;
        // The VP8 bitstream: 3-byte frame tag (+ start code and dimensions for keyframes),
        // then filler standing in for the compressed partitions.
        let size = if keyframe { 2800 } else { 700 };
        let mut frame = Vec::with_capacity(size);
        let first_partition_size: u32 = (size as u32 - 10) / 2;
        let tag: u32 = (first_partition_size << 5) | (1 << 4) | u32::from(!keyframe);
        frame.extend_from_slice(&tag.to_le_bytes()[..3]);
        if keyframe {
            frame.extend_from_slice(&[0x9d, 0x01, 0x2a]);
            frame.extend_from_slice(&VP8_WIDTH.to_le_bytes());
            frame.extend_from_slice(&VP8_HEIGHT.to_le_bytes());
        }
        while frame.len() < size {
            frame.push((frame.len() as u8).wrapping_mul(7) ^ self.frame as u8);
        }
        let body_max = VP8_MAX_PAYLOAD - 4 - TRAILER_LEN;
        let chunks: Vec<&[u8]> = frame.chunks(body_max).collect();
        let count = chunks.len();
        let mut packets = Vec::with_capacity(count);
        for (i, chunk) in chunks.into_iter().enumerate() {
            let trailer = Trailer {
                tag: self.tag,
                index: self.index,
            };
            // Payload descriptor: X=1, S on the first packet, PID 0; I=1 with a 15-bit picture id.
            let mut payload = vec![
                0x80 | if i == 0 { 0x10 } else { 0 },
                0x80,
                0x80 | (self.picture_id >> 8) as u8,
                self.picture_id as u8,
            ];
            payload.extend_from_slice(chunk);
            push_trailer(&mut payload, trailer);
            packets.push(GeneratedPacket {
                sequence_number: self.sequence_number,
                timestamp: self.timestamp,
                marker: i + 1 == count,
                payload,
                audio_level: None,
                trailer,
                silent: false,
            });
            self.index += 1;
            self.sequence_number = self.sequence_number.wrapping_add(1);
        }
        self.frame += 1;
        self.picture_id = (self.picture_id + 1) & 0x7fff;
        self.timestamp = self.timestamp.wrapping_add(3750);
        packets
    }
}

/// What a VP8 payload descriptor and (on a partition start) the frame header say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8PayloadInfo {
    /// S bit with partition index 0: this packet starts a frame.
    pub frame_start: bool,
    /// On a frame start: whether the frame is a keyframe with a valid start code.
    pub keyframe: bool,
    /// Keyframe dimensions.
    pub dimensions: Option<(u16, u16)>,
}

/// Parses a VP8 RTP payload (RFC 7741 descriptor + RFC 6386 frame tag); `None` if malformed.
pub fn parse_vp8(payload: &[u8]) -> Option<Vp8PayloadInfo> {
    let first = *payload.first()?;
    let mut at = 1;
    if first & 0x80 != 0 {
        let ext = *payload.get(at)?;
        at += 1;
        if ext & 0x80 != 0 {
            let pid = *payload.get(at)?;
            at += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if ext & 0x40 != 0 {
            at += 1;
        }
        if ext & 0x30 != 0 {
            at += 1;
        }
    }
    let frame_start = first & 0x10 != 0 && first & 0x07 == 0;
    let body = payload.get(at..)?;
    if !frame_start {
        return Some(Vp8PayloadInfo {
            frame_start,
            keyframe: false,
            dimensions: None,
        });
    }
    let tag = body.get(..3)?;
    let keyframe = tag[0] & 1 == 0;
    if !keyframe {
        return Some(Vp8PayloadInfo {
            frame_start,
            keyframe,
            dimensions: None,
        });
    }
    if body.get(3..6)? != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u16::from_le_bytes([*body.get(6)?, *body.get(7)?]) & 0x3fff;
    let h = u16::from_le_bytes([*body.get(8)?, *body.get(9)?]) & 0x3fff;
    Some(Vp8PayloadInfo {
        frame_start,
        keyframe,
        dimensions: Some((w, h)),
    })
}

/// A packet as the sender logged it.
#[derive(Debug, Clone, Copy)]
pub struct SentPacket {
    /// Trailer index.
    pub index: u32,
    /// When it was handed to the peer connection.
    pub at: Instant,
    /// Whether it was digital silence.
    pub silent: bool,
    /// webrtc-rs refused the first write (track being rebound around a renegotiation).
    pub retried: bool,
}

/// Everything one local track sent.
#[derive(Debug, Clone)]
pub struct LocalTrackRecord {
    /// Membrane track id (`<peerId>:<uuid>`).
    pub track_id: String,
    /// Kind.
    pub kind: Kind,
    /// SSRC used on the wire.
    pub ssrc: u32,
    /// Trailer tag.
    pub tag: u32,
    /// Sent packets in order.
    pub sent: Vec<SentPacket>,
    /// Packets the peer connection refused (not bound yet, not negotiated).
    pub refused: u64,
    /// Still published (not removed).
    pub active: bool,
    /// PLI/FIR received for this track.
    pub keyframe_requests: u64,
}

/// Everything received on one remote track.
#[derive(Debug, Clone, Default)]
pub struct RemoteTrackRecord {
    /// Membrane track id the client resolved through `midToTrackId`.
    pub track_id: String,
    /// Publisher's peer id, resolved through `trackIdToMetadata`.
    pub peer_id: Option<String>,
    /// mid of the receiving transceiver.
    pub mid: String,
    /// Kind from the transceiver.
    pub kind: Option<Kind>,
    /// SSRCs seen, in order of appearance.
    pub ssrcs: Vec<u32>,
    /// Payload types seen.
    pub payload_types: Vec<u8>,
    /// Packets received.
    pub packets: u64,
    /// Sequence numbers missing between consecutive packets (a forward jump of n counts n−1).
    pub missing_sequence_numbers: u64,
    /// Packets that arrived with a sequence number at or before the highest seen.
    pub out_of_order: u64,
    /// Every forward jump: (arrival of the packet after the gap, sequence numbers missing).
    pub gaps: Vec<(Instant, u64)>,
    /// Highest sequence number seen (extended to 64 bits).
    pub highest_sequence_number: Option<u64>,
    /// First arrival.
    pub first_arrival: Option<Instant>,
    /// Last arrival.
    pub last_arrival: Option<Instant>,
    /// Trailer indices received, per tag (normally one tag per track).
    pub received: Vec<(u32, HashSet<u32>)>,
    /// Packets without a valid trailer.
    pub foreign_payloads: u64,
    /// Audio packets whose level extension said digital silence.
    pub silent_packets: u64,
    /// VP8 keyframe starts received.
    pub keyframes: u64,
    /// VP8 payloads whose descriptor or frame header did not parse.
    pub malformed_vp8: u64,
}

impl RemoteTrackRecord {
    /// Records one received packet. `audio_level` is the level extension byte if present.
    pub fn record(
        &mut self,
        now: Instant,
        ssrc: u32,
        payload_type: u8,
        sequence_number: u16,
        payload: &[u8],
        audio_level: Option<u8>,
    ) {
        self.packets += 1;
        self.first_arrival.get_or_insert(now);
        self.last_arrival = Some(now);
        if !self.ssrcs.contains(&ssrc) {
            self.ssrcs.push(ssrc);
        }
        if !self.payload_types.contains(&payload_type) {
            self.payload_types.push(payload_type);
        }
        let extended = match self.highest_sequence_number {
            None => u64::from(sequence_number) + (1 << 16),
            Some(highest) => {
                // Pick the 64-bit value closest to the highest one seen (RFC 3550 A.1 style).
                let base = highest & !0xffff;
                let candidates = [
                    base.wrapping_sub(1 << 16) | u64::from(sequence_number),
                    base | u64::from(sequence_number),
                    (base + (1 << 16)) | u64::from(sequence_number),
                ];
                *candidates
                    .iter()
                    .min_by_key(|c| c.abs_diff(highest))
                    .expect("three candidates")
            }
        };
        match self.highest_sequence_number {
            Some(highest) if extended <= highest => self.out_of_order += 1,
            Some(highest) => {
                let missing = extended - highest - 1;
                if missing > 0 {
                    self.missing_sequence_numbers += missing;
                    self.gaps.push((now, missing));
                }
                self.highest_sequence_number = Some(extended);
            }
            None => self.highest_sequence_number = Some(extended),
        }
        match read_trailer(payload) {
            Some(trailer) => match self.received.iter_mut().find(|(t, _)| *t == trailer.tag) {
                Some((_, set)) => {
                    set.insert(trailer.index);
                }
                None => self
                    .received
                    .push((trailer.tag, HashSet::from([trailer.index]))),
            },
            None => self.foreign_payloads += 1,
        }
        if let Some(level) = audio_level
            && level & 0x7f == SILENCE_LEVEL
        {
            self.silent_packets += 1;
        }
        if self.kind == Some(Kind::Video) {
            match parse_vp8(payload) {
                Some(info) if info.keyframe => self.keyframes += 1,
                Some(_) => {}
                None => self.malformed_vp8 += 1,
            }
        }
    }

    /// Sequence numbers missing in gaps that ended after `from`.
    pub fn missing_since(&self, from: Instant) -> u64 {
        self.gaps
            .iter()
            .filter(|(at, _)| *at >= from)
            .map(|(_, n)| n)
            .sum()
    }

    /// Trailer indices received from the track tagged `tag`.
    pub fn indices_of(&self, tag: u32) -> Option<&HashSet<u32>> {
        self.received
            .iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, set)| set)
    }
}

/// How many of the packets `sent` between `from` and `until` (non-silent only) reached
/// `received`: `(expected, delivered)`.
pub fn delivery(
    sent: &LocalTrackRecord,
    received: &RemoteTrackRecord,
    from: Instant,
    until: Instant,
) -> (usize, usize) {
    let empty = HashSet::new();
    let got = received.indices_of(sent.tag).unwrap_or(&empty);
    let window = sent
        .sent
        .iter()
        .filter(|p| !p.silent && p.at >= from && p.at <= until);
    let (mut expected, mut delivered) = (0, 0);
    for p in window {
        expected += 1;
        if got.contains(&p.index) {
            delivered += 1;
        }
    }
    (expected, delivered)
}
