//! The forwarding hot path and keyframe requests (see the module docs of [`super`]).
use std::collections::HashMap;
use std::time::Instant;

use str0m::format::CodecSpec;
use str0m::media::{KeyframeRequestKind, Mid};
use str0m::rtp::RtpPacket;

use super::consumer::{Outgoing, Written};
use super::{Peer, Sfu};
use crate::rtc::ids::{MediaKind, PeerId, PeerMap, TrackId};
use crate::rtc::metrics::MediaMetrics;

impl Sfu {
    /// Rate-limited PLI to a producer (video only).
    pub(super) fn request_keyframe(&mut self, key: (PeerId, Mid)) {
        let interval = self.config.keyframe_request_interval;
        let now = self.last_now;
        let Some(t) = self.producers.get_mut(&key) else {
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
                "room={} peer={publisher} keyframe requested for mid {mid}",
                self.config.room
            );
            self.mark_dirty(publisher, true);
        }
    }

    /// The mid of `publisher`'s track a packet belongs to (by its SSRC) and the codec of its
    /// payload type; `None` for a packet of no stream str0m knows.
    fn track_and_codec_of(
        &mut self,
        publisher: PeerId,
        pkt: &RtpPacket,
    ) -> Option<(Mid, Option<CodecSpec>)> {
        let rtc = self.peers.get_mut(&publisher)?.rtc.as_mut()?;
        let mid = rtc.direct_api().stream_rx(&pkt.header.ssrc)?.mid();
        let codec = rtc
            .codec_config()
            .iter()
            .find(|c| c.pt() == pkt.header.payload_type)
            .map(|c| c.spec());
        Some((mid, codec))
    }

    /// The hot path: one publisher packet to every consumer of its producer.
    pub(super) fn forward(&mut self, publisher: PeerId, pkt: RtpPacket) {
        let Some((mid, codec)) = self.track_and_codec_of(publisher, &pkt) else {
            return;
        };
        self.stats.rtp_in += 1;
        // The rest borrows the producer and the peers side by side (disjoint fields of
        // `self`), which is why the fan-out stays inline here rather than a method.
        let Some(producer) = self.producers.get_mut(&(publisher, mid)) else {
            return;
        };
        let metrics = &self.config.metrics;
        note_first_media(&mut self.peers, publisher, self.last_now, metrics);
        let payload_len = pkt.payload.len() as u64;
        metrics.packets_in.get(producer.kind).inc();
        metrics.bytes_in.get(producer.kind).inc_by(payload_len);
        if producer.kind == MediaKind::Audio
            && producer.silence.should_drop(
                pkt.header.ext_vals.audio_level,
                self.config.silence_threshold,
                self.config.silence_max_drops,
            )
        {
            self.stats.silence_dropped += 1;
            metrics.drop_silence.inc();
            return;
        }
        let out = Outgoing::new(&pkt, codec, producer.silence.dropped, producer.kind);
        let mut needs_keyframe = false;
        for &(sub_id, sub_mid) in &producer.subscribers {
            let Some(sub) = self.peers.get_mut(&sub_id) else {
                continue;
            };
            if !sub.connected || sub.failed {
                continue;
            }
            let (Some(consumer), Some(rtc)) = (sub.consumers.get_mut(&sub_mid), sub.rtc.as_mut())
            else {
                continue;
            };
            let Written::Sent { first } = consumer.write(rtc, sub_mid, &out) else {
                continue;
            };
            needs_keyframe |= first;
            self.stats.rtp_out += 1;
            metrics.packets_out.get(producer.kind).inc();
            metrics.bytes_out.get(producer.kind).inc_by(payload_len);
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

    /// Recomputes which consumer carries which producer. Routes are keyed by (publisher,
    /// track id), never by the track id alone: two peers naming the same id cannot cross.
    pub(super) fn rebuild_routes(&mut self) {
        let mut index: HashMap<(PeerId, &TrackId), (PeerId, Mid)> = HashMap::new();
        for (key, t) in &self.producers {
            index.insert((key.0, &t.track_id), *key);
        }
        let mut subs: HashMap<(PeerId, Mid), Vec<(PeerId, Mid)>> = HashMap::new();
        for (sid, p) in &mut self.peers {
            for (mid, consumer) in &mut p.consumers {
                consumer.source = index
                    .get(&(consumer.publisher, &consumer.track_id))
                    .copied();
                if let Some(key) = consumer.source {
                    subs.entry(key).or_default().push((*sid, *mid));
                }
            }
        }
        let mut subscriptions = 0;
        for (key, t) in &mut self.producers {
            t.subscribers = subs.remove(key).unwrap_or_default();
            subscriptions += t.subscribers.len();
        }
        self.tracks_gauge.set(self.producers.len());
        self.subscriptions_gauge.set(subscriptions);
    }
}

/// The first media packet of a publisher: observes how long it took since its first offer. A
/// function of the fields it needs, so [`Sfu::forward`] can call it while it holds the producer.
fn note_first_media(
    peers: &mut PeerMap<Peer>,
    publisher: PeerId,
    now: Instant,
    metrics: &MediaMetrics,
) {
    if let Some(p) = peers.get_mut(&publisher)
        && !p.sent_media
    {
        p.sent_media = true;
        if let Some(t) = p.first_offer {
            let took = now.saturating_duration_since(t);
            metrics.first_media_seconds.observe(took.as_secs_f64());
        }
    }
}
