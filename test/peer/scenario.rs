//! Building blocks of the end-to-end scenarios: join-and-wait, "is receiving everything",
//! delivery assertions. Waits are generous (a loaded 2-core machine), assertions are exact.

use super::client::{HeadlessPeer, Observations, PeerOptions, Reconnect};
use super::media::{self, LocalTrackRecord};
use super::server::TestServer;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Upper bound for anything signalling-related (joins, negotiations, first media).
pub const LONG: Duration = Duration::from_secs(45);

/// Joins `room` and waits for `peerAccepted`.
pub async fn join_accepted(server: &TestServer, room: &str, options: PeerOptions) -> HeadlessPeer {
    join_accepted_at(&server.socket_url(), room, options).await
}

/// Joins `room` on the server at `socket_url` (e.g. a [`super::server::ServerProcess`]) and
/// waits for `peerAccepted`.
pub async fn join_accepted_at(socket_url: &str, room: &str, options: PeerOptions) -> HeadlessPeer {
    let peer = HeadlessPeer::join(socket_url, room, options)
        .await
        .expect("join");
    peer.wait_for("peerAccepted", LONG, |o| o.peer_id.is_some())
        .await
        .unwrap();
    peer
}

/// Waits until `observer` hears `peerLeft` for `peer_id`; returns when it arrived.
pub async fn peer_left_at(observer: &HeadlessPeer, peer_id: &str) -> Instant {
    let left = |o: &Observations| {
        o.events_of("peerLeft")
            .find(|e| e.data["peerId"] == peer_id)
            .map(|e| e.at)
    };
    observer
        .wait_for("peerLeft", LONG, |o| left(o).is_some())
        .await
        .unwrap();
    observer.observe(left).expect("peerLeft heard")
}

/// Waits until `peer` has reconnected after losing its socket and heard `peerAccepted` again
/// (resumed or as a new peer); returns that reconnection.
pub async fn reconnected(peer: &HeadlessPeer) -> Reconnect {
    let back = |o: &Observations| {
        o.reconnects
            .first()
            .filter(|r| r.accepted.is_some())
            .cloned()
    };
    peer.wait_for("peerAccepted after a reconnection", LONG, |o| {
        back(o).is_some()
    })
    .await
    .unwrap();
    peer.observe(back).expect("reconnected")
}

/// Packets received so far by `subscriber` on every track of `publisher`.
pub fn packets_from(subscriber: &HeadlessPeer, publisher: &HeadlessPeer) -> Vec<u64> {
    let tracks = active_tracks(publisher);
    subscriber.observe(|o| {
        tracks
            .iter()
            .map(|t| o.remote.get(&t.track_id).map_or(0, |r| r.packets))
            .collect()
    })
}

/// Local tracks still published by `peer`.
pub fn active_tracks(peer: &HeadlessPeer) -> Vec<LocalTrackRecord> {
    peer.observe(|o| o.local.values().filter(|t| t.active).cloned().collect())
}

/// Whether `o` receives at least `min_packets` of every track in `tracks`, resolved to `publisher`.
pub fn receives(
    o: &Observations,
    publisher: &str,
    tracks: &[LocalTrackRecord],
    min_packets: u64,
) -> bool {
    tracks.iter().all(|t| {
        o.remote
            .get(&t.track_id)
            .is_some_and(|r| r.packets >= min_packets && r.peer_id.as_deref() == Some(publisher))
    })
}

/// Waits until `subscriber` receives every active track of each of `publishers`.
pub async fn wait_receiving(subscriber: &HeadlessPeer, publishers: &[&HeadlessPeer]) {
    let expected: Vec<(String, Vec<LocalTrackRecord>)> = publishers
        .iter()
        .map(|p| (p.peer_id().expect("accepted"), active_tracks(p)))
        .collect();
    subscriber
        .wait_for("media of every publisher", LONG, |o| {
            expected
                .iter()
                .all(|(pid, tracks)| receives(o, pid, tracks, 10))
        })
        .await
        .unwrap();
}

/// Asserts that `subscriber` got at least `percent`% of the packets `publisher` sent on each
/// active track between `from` and `until`, with no sequence gap after `from`; prints figures.
pub fn assert_delivery(
    subscriber: &HeadlessPeer,
    publisher: &HeadlessPeer,
    from: Instant,
    until: Instant,
    percent: usize,
) {
    check_delivery(subscriber, publisher, from, until, percent, false);
}

/// Lets media flow for `window`, then asserts [`assert_delivery`] of it at 95% for `subscriber`
/// from `publisher` (the last 500 ms left out: still in flight).
pub async fn assert_delivery_over(
    subscriber: &HeadlessPeer,
    publisher: &HeadlessPeer,
    window: Duration,
) {
    let from = Instant::now();
    tokio::time::sleep(window).await;
    let until = Instant::now() - Duration::from_millis(500);
    assert_delivery(subscriber, publisher, from, until, 95);
}

/// Like [`assert_delivery`] for a window in which the peers restart ICE. A webrtc-rs sender
/// stalls ~200 ms when it applies an ICE restart, and the packet on either edge of that stall
/// can be lost. Those (sent within 50 ms of an offer of either peer, before it or while its
/// answer is applied, or on the edge of a stall that began there) are tolerated, and only as gaps of exactly the lost packets: any
/// other gap, or less than `percent`% delivered, still fails.
pub fn assert_delivery_across_restarts(
    subscriber: &HeadlessPeer,
    publisher: &HeadlessPeer,
    from: Instant,
    until: Instant,
    percent: usize,
) {
    check_delivery(subscriber, publisher, from, until, percent, true);
}

fn check_delivery(
    subscriber: &HeadlessPeer,
    publisher: &HeadlessPeer,
    from: Instant,
    until: Instant,
    percent: usize,
    restarts: bool,
) {
    let restart_instants: Vec<Instant> = if restarts {
        let mut at: Vec<Instant> = publisher.observe(|o| o.offers.iter().map(|x| x.at).collect());
        at.extend(subscriber.observe(|o| o.offers.iter().map(|x| x.at).collect::<Vec<_>>()));
        at
    } else {
        Vec::new()
    };
    for sent in active_tracks(publisher) {
        subscriber.observe(|o| {
            let received = o.remote.get(&sent.track_id).unwrap_or_else(|| {
                panic!(
                    "{} never received {} ({:?}) of {}",
                    subscriber.name, sent.track_id, sent.kind, publisher.name
                )
            });
            let (expected, delivered) = media::delivery(&sent, received, from, until);
            let missing = received.missing_since(from);
            if missing > 0 || delivered < expected {
                let got = received.indices_of(sent.tag);
                let lost: Vec<String> = sent
                    .sent
                    .iter()
                    .filter(|p| !p.silent && p.at >= from && p.at <= until)
                    .filter(|p| !got.is_some_and(|g| g.contains(&p.index)))
                    .map(|p| format!("#{} sent at +{:?} (retried: {})", p.index, p.at - from, p.retried))
                    .collect();
                // What the sender did around the losses (a stalled sender shows as a hole here).
                let around: Vec<String> = sent
                    .sent
                    .windows(2)
                    .filter(|w| w[1].at - w[0].at > std::time::Duration::from_millis(100) && w[1].at >= from)
                    .map(|w| format!("#{}..#{} +{:?}..+{:?}", w[0].index, w[1].index, w[0].at - from, w[1].at - from))
                    .collect();
                eprintln!("  sender pauses over 100 ms: {around:?}");
                let times = |o: &Observations| {
                    let offers: Vec<String> = o.offers.iter().filter(|x| x.at >= from).map(|x| format!("{:?}", x.at - from)).collect();
                    let answers: Vec<String> = o.answers.iter().filter(|x| x.at >= from).map(|x| format!("{:?}", x.at - from)).collect();
                    format!("offers at +{offers:?}, answers at +{answers:?}")
                };
                let gaps: Vec<String> = received.gaps.iter().filter(|(at, _)| *at >= from).map(|(at, n)| format!("{n} before the packet at +{:?}", *at - from)).collect();
                eprintln!(
                    "  lost {lost:?}; gaps {gaps:?}\n  publisher {}: {}\n  subscriber {}: {}",
                    publisher.name,
                    publisher.observe(times),
                    subscriber.name,
                    times(o)
                );
            }
            eprintln!(
                "{} <- {} {:?}: {delivered}/{expected} delivered, {missing} sequence numbers missing, ssrcs {:?}",
                subscriber.name, publisher.name, sent.kind, received.ssrcs
            );
            assert!(expected > 0, "{} sent nothing in the window", publisher.name);
            assert!(
                delivered * 100 >= expected * percent,
                "{} got {delivered}/{expected} of {}'s {:?}",
                subscriber.name,
                publisher.name,
                sent.kind
            );
            let got = received.indices_of(sent.tag);
            // Within 50 ms of an offer, either side: before it, or after it while the answer
            // is being applied (the sender's stall can begin a few ms after the offer).
            let near_restart = |at: Instant| {
                restart_instants.iter().any(|r| {
                    let gap = if *r >= at { *r - at } else { at - *r };
                    gap <= std::time::Duration::from_millis(50)
                })
            };
            // The packets on either edge of a sender stall that began at an ICE restart.
            let mut edges = HashSet::new();
            for w in sent.sent.windows(2) {
                if w[1].at - w[0].at > std::time::Duration::from_millis(100) && near_restart(w[0].at) {
                    edges.insert(w[0].index);
                    edges.insert(w[1].index);
                }
            }
            let lost_at_restart = sent
                .sent
                .iter()
                .filter(|p| !p.silent && p.at >= from && p.at <= until)
                .filter(|p| !got.is_some_and(|g| g.contains(&p.index)))
                .filter(|p| edges.contains(&p.index) || near_restart(p.at))
                .count() as u64;
            let tolerated = lost_at_restart.min(2 * restart_instants.len() as u64);
            assert_eq!(
                missing, tolerated,
                "{} saw sequence gaps on {}'s {:?}: {:?} ({tolerated} packets lost at an ICE restart)",
                subscriber.name, publisher.name, sent.kind, received.gaps
            );
            assert_eq!(received.foreign_payloads, 0);
        });
    }
}

/// Asserts that no peer recorded a client-side error (failed lookups, SDP errors, `error`
/// events) or an overlapping `offerData`.
pub fn assert_clean(peers: &[&HeadlessPeer]) {
    for peer in peers {
        peer.observe(|o| {
            assert!(
                o.errors.is_empty(),
                "{}: client errors {:?}",
                peer.name,
                o.errors
            );
            assert_eq!(
                o.overlapping_offer_data, 0,
                "{}: offerData while an offer was unanswered",
                peer.name
            );
        });
    }
}

/// mids of `o`'s last answer that map to one of `track_ids`, with their direction.
pub fn answer_directions(o: &Observations, track_ids: &[String]) -> Vec<(String, String)> {
    let Some(answer) = o.answers.last() else {
        return Vec::new();
    };
    let sections = super::sdp::media_sections(&answer.sdp);
    answer
        .mid_to_track_id
        .iter()
        .filter(|(_, t)| track_ids.contains(t))
        .map(|(mid, _)| {
            let direction = super::sdp::section(&sections, mid)
                .map(|s| s.direction.clone())
                .unwrap_or_else(|| "missing".into());
            (mid.clone(), direction)
        })
        .collect()
}
