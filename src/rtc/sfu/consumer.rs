//! A consumer: one producer's copy towards one subscriber (mediasoup's idea), with the state
//! that makes the copy the subscriber's own: payload type, sequence numbers, whether it flows.
use std::time::Duration;

use str0m::Rtc;
use str0m::format::{Codec, CodecSpec};
use str0m::media::{Mid, Pt};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite};

use super::track::SeqRewrite;
use crate::rtc::ids::{MediaKind, PeerId, TrackId};

/// One subscriber m-line that carries (or carried) a producer.
pub(super) struct Consumer {
    /// The producer's publisher and track id, as the engine named them.
    pub(super) publisher: PeerId,
    pub(super) track_id: TrackId,
    /// The producer (publisher, its mid) this consumer carries, once it is published.
    pub(super) source: Option<(PeerId, Mid)>,
    /// Active in the engine's list and answered sendonly by str0m.
    pub(super) forwarding: bool,
    seq: SeqRewrite,
    /// The first sequence number this subscriber sees (random, from the SFU's seeded RNG).
    seq_start: u16,
    /// Last publisher payload type seen → ours.
    pt_cache: Option<(Pt, Pt)>,
}

/// How long a subscriber's sent video packets stay in str0m's RTX cache for its NACKs. str0m's
/// default of 3 s held ~0.6 MiB of 720p video per subscriber. One second (libwebrtc's sender
/// floor) was too short for Chromium behind 5% loss and a 200 ms round trip: it asks again for
/// packets older than that and decoded 423-429 of ~500 frames in the lossy phase of
/// test/browser/network_loss.test.mjs (four runs) against 493-496 with 3 s (three runs); with
/// 2 s it decoded 491 and 495 (two runs).
const RTX_CACHE_AGE: Duration = Duration::from_secs(2);

/// The cache's bound in packets whatever their age (str0m overwrites the oldest beyond it): two
/// seconds of a 720p stream are ~400 packets, of a 4 Mbit/s screen share ~800.
const RTX_CACHE_PACKETS: usize = 1024;

/// Resends are dropped while they exceed this share of the bytes sent in the last second
/// (str0m's default, restated because setting the cache sets it too).
const RESEND_RATIO_CAP: Option<f32> = Some(0.15);

/// One producer packet as every consumer of it writes it (computed once per packet).
pub(super) struct Outgoing<'a> {
    pub(super) packet: &'a RtpPacket,
    /// The publisher's codec for the packet's payload type.
    pub(super) codec: Option<CodecSpec>,
    /// The publisher's extended sequence number minus the silent packets dropped before it.
    pub(super) logical_seq: u64,
    /// The end-to-end header extensions that travel on.
    pub(super) ext: ExtensionValues,
    /// Video is kept in str0m's RTX cache for NACKs.
    pub(super) nackable: bool,
}

impl<'a> Outgoing<'a> {
    /// `packet` of a `kind` producer whose payload is `codec`, after `silent_dropped` silent
    /// packets of its producer were dropped.
    pub(super) fn new(
        packet: &'a RtpPacket,
        codec: Option<CodecSpec>,
        silent_dropped: u64,
        kind: MediaKind,
    ) -> Self {
        let ext = &packet.header.ext_vals;
        Outgoing {
            packet,
            codec,
            logical_seq: (*packet.seq_no).wrapping_sub(silent_dropped),
            // Only end-to-end extensions travel on; str0m sets mid, transport-cc and
            // abs-send-time itself per subscriber.
            ext: ExtensionValues {
                audio_level: ext.audio_level,
                voice_activity: ext.voice_activity,
                video_orientation: ext.video_orientation,
                ..Default::default()
            },
            nackable: kind == MediaKind::Video,
        }
    }
}

/// What [`Consumer::write`] did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Written {
    /// Not forwarding, no matching codec, or no send stream yet.
    Skipped,
    /// Written; `first` when it was the first packet this subscriber got of the track (the
    /// producer should then be asked for a keyframe).
    Sent { first: bool },
}

impl Consumer {
    /// A consumer that has not forwarded anything yet.
    pub(super) fn new(publisher: PeerId, track_id: TrackId, seq_start: u16) -> Self {
        Consumer {
            publisher,
            track_id,
            source: None,
            forwarding: false,
            seq: SeqRewrite::default(),
            seq_start,
            pt_cache: None,
        }
    }

    /// Writes one producer packet on the subscriber's m-line `mid` of `rtc`.
    pub(super) fn write(&mut self, rtc: &mut Rtc, mid: Mid, out: &Outgoing<'_>) -> Written {
        if !self.forwarding {
            return Written::Skipped;
        }
        let in_pt = out.packet.header.payload_type;
        let out_pt = match self.pt_cache {
            Some((i, o)) if i == in_pt => o,
            _ => {
                let Some(o) = out.codec.and_then(|s| subscriber_pt(rtc, mid, &s)) else {
                    return Written::Skipped;
                };
                self.pt_cache = Some((in_pt, o));
                o
            }
        };
        let mut api = rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, None) else {
            return Written::Skipped;
        };
        let first = !self.seq.started();
        if first && out.nackable {
            tx.set_rtx_cache(RTX_CACHE_PACKETS, RTX_CACHE_AGE, RESEND_RATIO_CAP);
        }
        let seq = self.seq.map(out.logical_seq, self.seq_start);
        let pkt = out.packet;
        tx.write_rtp(
            RtpWrite::new(
                out_pt,
                seq.into(),
                pkt.header.timestamp,
                pkt.timestamp,
                pkt.payload.clone(),
            )
            .marker(pkt.header.marker)
            .ext_vals(out.ext.clone())
            .nackable(out.nackable),
        );
        Written::Sent { first }
    }
}

/// The subscriber's payload type on `mid` for the publisher's codec, if it negotiated it.
fn subscriber_pt(rtc: &Rtc, mid: Mid, spec: &CodecSpec) -> Option<Pt> {
    let media = rtc.media(mid)?;
    rtc.codec_config()
        .iter()
        .filter(|c| media.remote_pts().contains(&c.pt()))
        .find(|c| {
            let s = c.spec();
            s.codec == spec.codec
                && (s.codec != Codec::H264
                    || (s.format.profile_level_id == spec.format.profile_level_id
                        && s.format.packetization_mode == spec.format.packetization_mode))
        })
        .map(|c| c.pt())
}
