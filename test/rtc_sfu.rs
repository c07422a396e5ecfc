//! The SFU with several in-process str0m "browsers" (str0m as the offerer, like the tutorial's
//! client), passing datagrams in memory in virtual time: forwarding, ICE restarts, keyframe
//! requests, retransmission of a lost packet, the silence discarder, failure detection and room
//! isolation.
use std::time::{Duration, Instant};

use str0m::format::Codec;
use str0m::media::KeyframeRequestKind;
use str0m::rtp::RtpWrite;
use videoroom::rtc::ids::{MediaKind, PeerId};
use videoroom::rtc::sfu::{ConsumerSpec, SfuEvent};

#[path = "kit/media_world.rs"]
mod media_world;

use media_world::*;
/// Three browsers, each publishing, fully negotiated (the second round is an ICE restart).
fn three_peer_room() -> World {
    let mut w = World::new(1);
    let a = w.add_browser(0, Flavor::Firefox, true);
    let b = w.add_browser(0, Flavor::Chrome, true);
    let c = w.add_browser(0, Flavor::Chrome, true);
    for i in [a, b, c] {
        w.negotiate(i, &[]);
    }
    w.run(Duration::from_millis(500));
    for i in [a, b, c] {
        assert!(connected(&w, i), "browser {i} connected");
    }
    for i in [a, b, c] {
        let others: Vec<ConsumerSpec> = [a, b, c]
            .iter()
            .filter(|&&j| j != i)
            .flat_map(|&j| w.tracks_of(j, true))
            .collect();
        w.negotiate(i, &others);
    }
    w
}

/// A room where Chrome-like browser `a` publishes, and browser `b` (`flavor`, publishing when
/// `b_publishes`) then negotiates to receive `a`'s tracks; returns the world, `a` and `b`.
fn publisher_and_subscriber(flavor: Flavor, b_publishes: bool) -> (World, usize, usize) {
    let mut w = World::new(1);
    let a = w.add_browser(0, Flavor::Chrome, true);
    let b = w.add_browser(0, flavor, b_publishes);
    w.negotiate(a, &[]);
    w.negotiate(b, &w.tracks_of(a, true));
    (w, a, b)
}

/// Asserts that `sub` received every `kind` packet `publ` sent from its sequence number `from`
/// on, each once, in order.
fn assert_forwarded(w: &World, sub: usize, publ: usize, kind: MediaKind, from: u64) {
    let what = format!("{kind} {publ} -> {sub}");
    assert_received(
        &w.got_from(sub, publ, kind),
        from,
        w.sent_seq(publ, kind),
        &what,
    );
}

#[test]
fn every_subscriber_receives_every_publisher_with_its_own_ssrc_pt_and_continuous_seq() {
    let mut w = three_peer_room();
    w.run(Duration::from_millis(500));
    let start: Vec<(u64, u64)> = (0..3)
        .map(|i| {
            (
                w.sent_seq(i, MediaKind::Audio),
                w.sent_seq(i, MediaKind::Video),
            )
        })
        .collect();
    w.run(Duration::from_secs(3));
    for sub in 0..3 {
        for publ in (0..3).filter(|p| *p != sub) {
            for (k, kind) in [MediaKind::Audio, MediaKind::Video].into_iter().enumerate() {
                let got = w.got_from(sub, publ, kind);
                let from = if k == 0 { start[publ].0 } else { start[publ].1 };
                let what = format!("{kind} {publ} -> {sub}");
                assert_received(&got, from, w.sent_seq(publ, kind), &what);
                // The SSRC is the subscriber's own, never the publisher's.
                let pub_ssrc = {
                    let p = &mut w.browsers[publ];
                    let mid = p.send.iter().find(|t| t.kind == kind).unwrap().mid;
                    p.rtc
                        .direct_api()
                        .stream_tx_by_mid(mid, None)
                        .unwrap()
                        .ssrc()
                };
                assert!(
                    got.iter().all(|g| g.ssrc != pub_ssrc),
                    "{what}: publisher SSRC leaked"
                );
                assert_eq!(
                    got.iter()
                        .map(|g| g.ssrc)
                        .collect::<std::collections::HashSet<_>>()
                        .len(),
                    1
                );
            }
        }
    }
    // Payload types follow the subscriber's offer: Firefox-like browser 0 gets 109/120,
    // Chrome-like browsers get 111/96 from the Firefox-like publisher.
    for (sub, publ, kind, pt) in [
        (0, 1, MediaKind::Audio, 109),
        (0, 1, MediaKind::Video, 120),
        (1, 0, MediaKind::Audio, 111),
        (2, 0, MediaKind::Video, 96),
    ] {
        let got = w.got_from(sub, publ, kind);
        assert!(got.iter().all(|g| *g.pt == pt), "{kind} {publ} -> {sub}");
    }
}

#[test]
fn datagrams_handed_over_in_a_batch_before_draining_are_all_forwarded() {
    let mut w = three_peer_room();
    w.batch = true;
    w.run(Duration::from_millis(500));
    let from = w.sent_seq(0, MediaKind::Audio);
    w.run(Duration::from_secs(2));
    assert_forwarded(&w, 1, 0, MediaKind::Audio, from);
    let from = w.sent_seq(2, MediaKind::Video);
    w.run(Duration::from_secs(1));
    assert_forwarded(&w, 0, 2, MediaKind::Video, from);
}

/// The SFU keeps what it sent a subscriber for two seconds (`RTX_CACHE_AGE`): a lost packet the
/// subscriber asks for one round trip later comes back as a retransmission, once, and nothing
/// else is missing.
#[test]
fn a_video_packet_lost_on_a_subscribers_downlink_is_retransmitted_from_the_sfus_cache() {
    let (mut w, a, b) = publisher_and_subscriber(Flavor::Chrome, false);
    w.video_payload = 1000;
    w.run(Duration::from_millis(1000));
    let from = w.sent_seq(a, MediaKind::Video);
    w.lose_one_video_to = Some(w.browsers[b].addr);
    w.run(Duration::from_millis(1000));
    assert_eq!(
        w.lose_one_video_to, None,
        "a video packet to the subscriber was lost"
    );
    let to = w.sent_seq(a, MediaKind::Video);
    let mut origins: Vec<u64> = w
        .got_from(b, a, MediaKind::Video)
        .iter()
        .map(|g| g.origin.1)
        .filter(|&s| s >= from && s < to)
        .collect();
    let arrival = origins.clone();
    origins.sort_unstable();
    assert_eq!(origins, (from..to).collect::<Vec<_>>(), "every packet once");
    assert_ne!(
        arrival, origins,
        "the lost packet came later, as a retransmission"
    );
}

#[test]
fn ice_restarts_on_every_re_offer_keep_media_flowing() {
    let (mut w, a, b) = publisher_and_subscriber(Flavor::Firefox, true);
    w.run(Duration::from_secs(1));
    let from = w.sent_seq(a, MediaKind::Video);
    let from_audio = w.sent_seq(a, MediaKind::Audio);
    for _ in 0..4 {
        let tracks = w.tracks_of(a, true);
        w.negotiate(b, &tracks);
        w.run(Duration::from_millis(700));
        w.negotiate(a, &w.tracks_of(b, true));
        w.run(Duration::from_millis(300));
    }
    assert_forwarded(&w, b, a, MediaKind::Video, from);
    assert_forwarded(&w, b, a, MediaKind::Audio, from_audio);
    assert!(
        !w.events
            .iter()
            .any(|(_, _, e)| matches!(e, SfuEvent::PeerFailed(_)))
    );
}

#[test]
fn a_new_subscriber_and_its_plis_make_the_publisher_send_keyframes_at_a_limited_rate() {
    let mut w = World::new(1);
    let a = w.add_browser(0, Flavor::Chrome, true);
    let b = w.add_browser(0, Flavor::Chrome, false);
    w.negotiate(a, &[]);
    w.run(Duration::from_secs(1));
    assert!(
        w.browsers[a].keyframe_requests.is_empty(),
        "no subscriber yet, no keyframe request"
    );
    w.negotiate(b, &w.tracks_of(a, true));
    w.run(Duration::from_secs(1));
    assert!(
        !w.browsers[a].keyframe_requests.is_empty(),
        "starting a subscriber asks for a keyframe"
    );
    w.run(Duration::from_secs(1));
    let before = w.browsers[a].keyframe_requests.len();
    let t0 = w.now;
    // The subscriber asks for a keyframe 10 times within 200 ms.
    let video_ssrc = w.got_from(b, a, MediaKind::Video)[0].ssrc;
    for _ in 0..10 {
        w.browsers[b]
            .rtc
            .direct_api()
            .stream_rx(&video_ssrc)
            .unwrap()
            .request_keyframe(KeyframeRequestKind::Pli);
        w.run(Duration::from_millis(20));
    }
    w.run(Duration::from_millis(800));
    let reqs: Vec<Duration> = w.browsers[a].keyframe_requests[before..]
        .iter()
        .map(|t| *t - t0)
        .collect();
    eprintln!("keyframe requests before {before}, during PLIs {reqs:?}");
    assert!(
        !reqs.is_empty(),
        "the subscriber's PLI reached the publisher"
    );
    assert!(
        reqs.len() <= 2,
        "rate limited to one per 500 ms (plus one merged), got {reqs:?}"
    );
    if reqs.len() == 2 {
        assert!(reqs[1] - reqs[0] >= Duration::from_millis(500), "{reqs:?}");
    }
}

#[test]
fn silence_is_dropped_and_subscribers_see_gapless_sequence_numbers() {
    let (mut w, a, b) = publisher_and_subscriber(Flavor::Chrome, false);
    w.run(Duration::from_secs(1));
    let loud_from = w.sent_seq(a, MediaKind::Audio);
    w.run(Duration::from_millis(400));
    let silent_from = w.sent_seq(a, MediaKind::Audio);
    w.browsers[a].silent = true;
    // 1100 silent packets: 1000 are dropped, then one passes, then drops again.
    w.run(Duration::from_millis(22_000));
    w.browsers[a].silent = false;
    let silent_to = w.sent_seq(a, MediaKind::Audio);
    w.run(Duration::from_millis(400));
    let got = w.got_from(b, a, MediaKind::Audio);
    let silent_received = got
        .iter()
        .filter(|g| g.origin.1 >= silent_from && g.origin.1 < silent_to)
        .count();
    assert!(
        silent_to - silent_from >= 1001,
        "sent {} silent packets",
        silent_to - silent_from
    );
    assert_eq!(silent_received, 1, "one silent packet in 1001 passes");
    let loud = got.iter().filter(|g| {
        g.origin.1 >= loud_from && (g.origin.1 < silent_from || g.origin.1 >= silent_to)
    });
    assert!(loud.count() >= 38, "loud audio flows");
    let since: Vec<Got> = got
        .iter()
        .filter(|g| g.origin.1 >= loud_from)
        .copied()
        .collect();
    assert_gapless(&since, "across dropped silence");
}

/// Chrome-like `a` and Firefox-like `b`, each publishing and receiving the other, connected
/// after `settle` of virtual time.
fn each_receiving_the_other(settle: Duration) -> (World, usize, usize) {
    let (mut w, a, b) = publisher_and_subscriber(Flavor::Firefox, true);
    w.negotiate(a, &w.tracks_of(b, true));
    w.run(settle);
    assert!(connected(&w, a) && connected(&w, b));
    (w, a, b)
}

/// The peers the SFU reported failed, and when.
fn failures(w: &World) -> Vec<(Instant, PeerId)> {
    let failed = w.events.iter().filter_map(|(t, _, e)| match e {
        SfuEvent::PeerFailed(p) => Some((*t, *p)),
        _ => None,
    });
    failed.collect()
}

/// Writes `count` video packets from browser `i` (its video track one of `tracks`) whose
/// sequence numbers first jump 40,000 ahead, then count on, a step of virtual time per hundred.
/// The SFU's str0m reports none of them as received (nothing is forwarded); the browser's
/// session gives each the next transport-wide number all the same.
fn send_unreported(w: &mut World, i: usize, tracks: &[SendTrack], count: usize) {
    let video = tracks.iter().find(|t| t.kind == MediaKind::Video);
    let (mid, seq, ts) = video
        .map(|t| (t.mid, t.seq + 40_000, t.ts))
        .expect("a video track");
    let config = w.browsers[i].rtc.codec_config();
    let vp8 = config.iter().find(|c| c.spec().codec == Codec::Vp8);
    let pt = vp8.expect("VP8 negotiated").pt();
    for n in 0..count as u64 {
        let now = w.now;
        let mut payload = vec![0u8; 100];
        payload[0] = w.browsers[i].index;
        payload[1..9].copy_from_slice(&(seq + n).to_be_bytes());
        let mut api = w.browsers[i].rtc.direct_api();
        let tx = api.stream_tx_by_mid(mid, None).expect("its video stream");
        tx.write_rtp(RtpWrite::new(pt, (seq + n).into(), ts, now, payload));
        if n % 100 == 99 {
            w.step();
        }
    }
    w.step();
}

/// str0m 0.25 misreads a transport-wide number far ahead of those it registered and then grows
/// without bound (see `rtc::sfu::twcc_guard`; the fuzz target `rtp_forward` found it). The SFU
/// cannot see what str0m registered, only what it reported: a publisher whose numbers ran
/// 33,000 past any reported packet has its packets kept from str0m, and after a second of that
/// its media fails as a silent peer's does (nothing it sent reached anyone); the others go on.
#[test]
fn a_publisher_whose_transport_wide_numbers_run_out_of_reach_fails_alone() {
    let (mut w, a, b) = each_receiving_the_other(Duration::from_millis(500));
    // Browser a's regular media pauses while it sends those packets, then resumes.
    let tracks = std::mem::take(&mut w.browsers[a].send);
    send_unreported(&mut w, a, &tracks, 33_000);
    w.browsers[a].send = tracks;
    let from = w.sent_seq(b, MediaKind::Audio);
    w.run(Duration::from_secs(2));
    assert!(
        w.sfu(0).stats().twcc_guard_dropped >= 250,
        "{:?}",
        w.sfu(0).stats()
    );
    let failed: Vec<PeerId> = failures(&w).into_iter().map(|(_, p)| p).collect();
    assert_eq!(failed, [w.browsers[a].peer]);
    assert!(connected(&w, b));
    let seq = w.sent_seq(b, MediaKind::Audio);
    assert!(seq > from + 80, "b kept publishing: {from} -> {seq}");
}

#[test]
fn a_vanished_peer_is_reported_failed_within_five_seconds() {
    let (mut w, a, b) = each_receiving_the_other(Duration::from_secs(2));
    let vanished_at = w.now;
    w.browsers[b].vanished = true;
    w.run(Duration::from_secs(6));
    let failed = failures(&w);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].1, w.browsers[b].peer);
    let after = failed[0].0 - vanished_at;
    eprintln!("failure detected after {after:?}");
    assert!(after <= Duration::from_secs(5), "detected after {after:?}");
    // The remaining publisher keeps being served (and does not fail).
    let seq = w.sent_seq(a, MediaKind::Audio);
    w.run(Duration::from_secs(1));
    assert!(w.sent_seq(a, MediaKind::Audio) > seq + 40);
}

/// A browser whose checks never reach the SFU (every datagram of it lost from its offer on) is
/// diagnosed once, eight seconds after its offer, as blocked; the connected one never is.
#[test]
fn a_peer_whose_checks_never_arrive_is_diagnosed_once_as_blocked_eight_seconds_after_its_offer() {
    let mut w = World::new(1);
    let a = w.add_browser(0, Flavor::Chrome, true);
    let b = w.add_browser(0, Flavor::Firefox, true);
    w.negotiate(a, &[]);
    w.browsers[b].vanished = true;
    let offered_at = w.now;
    w.negotiate(b, &[]);
    w.run(Duration::from_secs(10));
    let diagnosed: Vec<(Duration, PeerId, &str)> = w
        .events
        .iter()
        .filter_map(|(t, _, e)| match e {
            SfuEvent::MediaNotConnected(p, cause) => Some((*t - offered_at, *p, cause.label())),
            _ => None,
        })
        .collect();
    assert_eq!(diagnosed.len(), 1, "{diagnosed:?}");
    let (after, peer, cause) = diagnosed[0];
    assert_eq!((peer, cause), (w.browsers[b].peer, "blocked"));
    assert!(
        after >= Duration::from_secs(8) && after < Duration::from_millis(8500),
        "diagnosed {after:?} after the offer"
    );
    assert!(connected(&w, a));
}

#[test]
fn two_sfus_never_see_each_others_media() {
    let mut w = World::new(2);
    let a1 = w.add_browser(0, Flavor::Chrome, true);
    let b1 = w.add_browser(0, Flavor::Chrome, false);
    let a2 = w.add_browser(1, Flavor::Firefox, true);
    let b2 = w.add_browser(1, Flavor::Chrome, false);
    w.negotiate(a1, &[]);
    w.negotiate(a2, &[]);
    w.negotiate(b1, &w.tracks_of(a1, true));
    w.negotiate(b2, &w.tracks_of(a2, true));
    w.record = true;
    w.run(Duration::from_secs(2));
    // Each room's traffic, shown to the other room (as on a shared socket), is not accepted.
    for (s, src, dst, data) in &w.seen {
        let other = 1 - *s;
        assert!(
            !w.sfu(other).accepts(*src, *dst, data),
            "room {other} accepted a datagram of room {s}"
        );
    }
    assert!(w.seen.len() > 100);
    let origins = |i: usize| -> Vec<u8> {
        let mut v: Vec<u8> = w.browsers[i]
            .received
            .values()
            .flatten()
            .map(|g| g.origin.0)
            .collect();
        v.dedup();
        v.sort();
        v.dedup();
        v
    };
    assert_eq!(origins(b1), vec![w.browsers[a1].index]);
    assert_eq!(origins(b2), vec![w.browsers[a2].index]);
}
