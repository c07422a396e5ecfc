//! The forwarding hot path and keyframe requests (see the module docs of [`super`]).
use std::collections::HashMap;

use str0m::Rtc;
use str0m::format::{Codec, CodecSpec};
use str0m::media::{KeyframeRequestKind, Mid, Pt};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite};

use super::Sfu;
use crate::rtc::ids::{MediaKind, PeerId};

impl Sfu {
    /// Rate-limited PLI to a publisher track (video only).
    pub(super) fn request_keyframe(&mut self, key: (PeerId, Mid)) {
        let interval = self.config.keyframe_request_interval;
        let now = self.last_now;
        let Some(t) = self.tracks.get_mut(&key) else {
            return;
        };
        if t.kind == MediaKind::Video && t.keyframe.request(now, interval) {
            self.send_pli(key);
        }
    }

    pub(super) fn send_pli(&mut self, (publisher, mid): (PeerId, Mid)) {
        let Some(rtc) = self.peers.get_mut(&publisher).and_then(|p| p.rtc.as_mut()) else {
            return;
        };
        if let Some(rx) = rtc.direct_api().stream_rx_by_mid(mid, None) {
            rx.request_keyframe(KeyframeRequestKind::Pli);
            self.stats.keyframe_requests += 1;
            log::debug!(
                "room {} peer {publisher}: keyframe requested for mid {mid}",
                self.config.room
            );
            self.mark_dirty(publisher, true);
        }
    }

    /// The hot path: one publisher packet to every subscriber of its track.
    pub(super) fn forward(&mut self, publisher: PeerId, pkt: RtpPacket) {
        let Some(p) = self.peers.get_mut(&publisher) else {
            return;
        };
        let Some(rtc) = p.rtc.as_mut() else { return };
        let Some(mid) = rtc
            .direct_api()
            .stream_rx(&pkt.header.ssrc)
            .map(|s| s.mid())
        else {
            return;
        };
        let in_pt = pkt.header.payload_type;
        let spec = rtc
            .codec_config()
            .iter()
            .find(|c| c.pt() == in_pt)
            .map(|c| c.spec());
        self.stats.rtp_in += 1;
        let Some(track) = self.tracks.get_mut(&(publisher, mid)) else {
            return;
        };
        if track.kind == MediaKind::Audio
            && track.silence.should_drop(
                pkt.header.ext_vals.audio_level,
                self.config.silence_threshold,
                self.config.silence_max_drops,
            )
        {
            self.stats.silence_dropped += 1;
            return;
        }
        let logical = (*pkt.seq_no).wrapping_sub(track.silence.dropped);
        // Only end-to-end extensions travel on; str0m sets mid, transport-cc and abs-send-time
        // itself per subscriber.
        let ext = ExtensionValues {
            audio_level: pkt.header.ext_vals.audio_level,
            voice_activity: pkt.header.ext_vals.voice_activity,
            video_orientation: pkt.header.ext_vals.video_orientation,
            ..Default::default()
        };
        let nackable = track.kind == MediaKind::Video;
        let mut needs_keyframe = false;
        for &(sub_id, sub_mid) in &track.subscribers {
            let Some(sub) = self.peers.get_mut(&sub_id) else {
                continue;
            };
            if !sub.connected || sub.failed {
                continue;
            }
            let (Some(slot), Some(rtc)) = (sub.outbound.get_mut(&sub_mid), sub.rtc.as_mut()) else {
                continue;
            };
            if !slot.forwarding {
                continue;
            }
            let out_pt = match slot.pt_cache {
                Some((i, o)) if i == in_pt => o,
                _ => {
                    let Some(o) = spec.and_then(|s| subscriber_pt(rtc, sub_mid, &s)) else {
                        continue;
                    };
                    slot.pt_cache = Some((in_pt, o));
                    o
                }
            };
            if !slot.seq.started() {
                needs_keyframe = true;
            }
            let seq = slot.seq.map(logical, slot.seq_start);
            let mut api = rtc.direct_api();
            let Some(tx) = api.stream_tx_by_mid(sub_mid, None) else {
                continue;
            };
            tx.write_rtp(
                RtpWrite::new(
                    out_pt,
                    seq.into(),
                    pkt.header.timestamp,
                    pkt.timestamp,
                    pkt.payload.clone(),
                )
                .marker(pkt.header.marker)
                .ext_vals(ext.clone())
                .nackable(nackable),
            );
            self.stats.rtp_out += 1;
            sub.needs_tick = true;
            if !sub.dirty {
                sub.dirty = true;
                self.dirty.push_back(sub_id);
            }
        }
        if needs_keyframe {
            self.request_keyframe((publisher, mid));
        }
    }

    /// Recomputes which subscriber m-line carries which publisher track.
    pub(super) fn rebuild_routes(&mut self) {
        let mut index: HashMap<&str, (PeerId, Mid)> = HashMap::new();
        for (key, t) in &self.tracks {
            index.insert(t.track_id.as_str(), *key);
        }
        let mut subs: HashMap<(PeerId, Mid), Vec<(PeerId, Mid)>> = HashMap::new();
        for (sid, p) in &mut self.peers {
            for (mid, slot) in &mut p.outbound {
                slot.source = index.get(slot.track_id.as_str()).copied();
                if let Some(key) = slot.source {
                    subs.entry(key).or_default().push((*sid, *mid));
                }
            }
        }
        for (key, t) in &mut self.tracks {
            t.subscribers = subs.remove(key).unwrap_or_default();
        }
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
