//! End-to-end: headless webrtc-rs peers that behave like the tutorial's client, against the
//! real server (in-process, real WebSocket, real UDP on loopback): the media scenarios a room
//! must get right (delivery, departures, late tracks, silence, isolation, keyframes, ICE restarts).

#[allow(dead_code)]
mod peer;

#[path = "kit/e2e_scenario.rs"]
mod e2e_scenario;

use e2e_scenario::{join_in_turn, on_fresh_server, receiving_pair};
use peer::client::PeerOptions;
use peer::media::Kind;
use peer::scenario::{
    LONG, active_tracks, answer_directions, assert_clean, assert_delivery,
    assert_delivery_across_restarts, assert_delivery_over, join_accepted, wait_receiving,
};
use serde_json::json;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Every scenario runs under this bound, so a hung server fails the test instead of the run.
const BOUND: Duration = Duration::from_secs(150);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_peers_each_receive_the_other_two_peers_audio_and_video() {
    on_fresh_server(BOUND, None, async |server| {
        let [a, b, c] = join_in_turn(server, "trio", ["a", "b", "c"].map(PeerOptions::new)).await;
        let everyone = [(&a, [&b, &c]), (&b, [&a, &c]), (&c, [&a, &b])];
        for (sub, pubs) in everyone {
            wait_receiving(sub, &pubs).await;
        }
        let from = Instant::now();
        tokio::time::sleep(Duration::from_secs(4)).await;
        let until = Instant::now() - Duration::from_millis(500);
        for (sub, pubs) in everyone {
            for publisher in pubs {
                assert_delivery(sub, publisher, from, until, 95);
                // Audio and video of one publisher share one msid stream, as the browser offered them.
                let ids: Vec<String> = active_tracks(publisher)
                    .into_iter()
                    .map(|t| t.track_id)
                    .collect();
                sub.observe(|o| {
                    let answer = o.answers.last().expect("an answer");
                    let sections = peer::sdp::media_sections(&answer.sdp);
                    let streams: HashSet<String> = answer
                        .mid_to_track_id
                        .iter()
                        .filter(|(_, t)| ids.contains(t))
                        .filter_map(|(mid, _)| peer::sdp::section(&sections, mid)?.msid.clone())
                        .map(|(stream, _)| stream)
                        .collect();
                    assert_eq!(
                        streams.len(),
                        1,
                        "{} sees {} in streams {streams:?}",
                        sub.name,
                        publisher.name
                    );
                });
            }
        }
        // Every subscriber resolved every track to the right publisher on ontrack.
        for sub in [&a, &b, &c] {
            sub.observe(|o| {
                let ready: HashSet<_> = o.ready.iter().cloned().collect();
                assert_eq!(ready.len(), 4, "{}: onTrackReady {:?}", sub.name, o.ready);
            });
        }
        assert_clean(&[&a, &b, &c]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_leaves_and_a_peer_that_vanishes_are_removed_and_their_m_lines_go_inactive() {
    on_fresh_server(BOUND, None, async |server| {
        let names = ["stay", "leaver", "ghost"];
        let [stay, leaver, ghost] =
            join_in_turn(server, "exits", names.map(PeerOptions::new)).await;
        wait_receiving(&stay, &[&leaver, &ghost]).await;
        let leaver_id = leaver.peer_id().unwrap();
        let ghost_id = ghost.peer_id().unwrap();
        let gone_tracks: Vec<String> = active_tracks(&leaver)
            .into_iter()
            .chain(active_tracks(&ghost))
            .map(|t| t.track_id)
            .collect();

        leaver.leave().await.unwrap();
        stay.wait_for("peerLeft of the leaver", Duration::from_secs(10), |o| {
            o.events_of("peerLeft")
                .any(|e| e.data["peerId"] == leaver_id.as_str())
        })
        .await
        .unwrap();

        // The ghost's peer connection stops answering; its socket stays open and silent.
        let vanished = Instant::now();
        ghost.vanish().await.unwrap();
        stay.wait_for(
            "peerLeft of the vanished peer",
            Duration::from_secs(15),
            |o| {
                o.events_of("peerLeft")
                    .any(|e| e.data["peerId"] == ghost_id.as_str())
            },
        )
        .await
        .unwrap();
        let detected = stay.observe(|o| {
            o.events_of("peerLeft")
                .find(|e| e.data["peerId"] == ghost_id.as_str())
                .unwrap()
                .at
                - vanished
        });
        eprintln!("vanished peer removed after {detected:?}");
        assert!(
            detected <= Duration::from_millis(6500),
            "ICE consent failure took {detected:?} to detect (must be ~5 s)"
        );

        // The next answer keeps those m-lines (midToTrackId still lists them) but inactive.
        stay.wait_for("an answer with the departed tracks inactive", LONG, |o| {
            let directions = answer_directions(o, &gone_tracks);
            directions.len() == gone_tracks.len() && directions.iter().all(|(_, d)| d == "inactive")
        })
        .await
        .unwrap();
        stay.observe(|o| {
            assert!(o.peers.is_empty(), "stay still knows {:?}", o.peers.keys());
            for id in [&leaver_id, &ghost_id] {
                let n = o
                    .events_of("peerLeft")
                    .filter(|e| e.data["peerId"] == id.as_str())
                    .count();
                assert_eq!(n, 1, "peerLeft for {id} sent {n} times");
            }
            let removed: HashSet<&String> = o.removed.iter().collect();
            assert!(gone_tracks.iter().all(|t| removed.contains(t)));
        });
        assert_clean(&[&stay]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_adds_a_track_later_and_removes_it_again() {
    on_fresh_server(BOUND, None, async |server| {
        // Audio only at first, so the later camera gets a fresh transceiver (a browser would
        // re-use an unused recvonly one of the same kind).
        let names = ["watcher", "presenter"];
        let [watcher, presenter] =
            join_in_turn(server, "late", names.map(PeerOptions::audio_only)).await;
        wait_receiving(&watcher, &[&presenter]).await;
        let presenter_id = presenter.peer_id().unwrap();

        let camera = presenter
            .add_track(Kind::Video, json!({"type": "camera"}))
            .await
            .unwrap();
        watcher
            .wait_for("tracksAdded with the camera", LONG, |o| {
                o.events_of("tracksAdded").any(|e| {
                    e.data["peerId"] == presenter_id.as_str()
                        && e.data["trackIdToMetadata"][&camera] == json!({"type": "camera"})
                })
            })
            .await
            .unwrap();
        wait_receiving(&watcher, &[&presenter]).await;
        assert_delivery_over(&watcher, &presenter, Duration::from_secs(3)).await;

        presenter.remove_track(&camera).await.unwrap();
        watcher
            .wait_for("tracksRemoved with the camera", LONG, |o| {
                o.events_of("tracksRemoved").any(|e| {
                    e.data["peerId"] == presenter_id.as_str()
                        && e.data["trackIds"]
                            .as_array()
                            .is_some_and(|ids| ids.iter().any(|i| i == camera.as_str()))
                })
            })
            .await
            .unwrap();
        watcher
            .wait_for("an answer with the camera inactive", LONG, |o| {
                let d = answer_directions(o, std::slice::from_ref(&camera));
                d.len() == 1 && d[0].1 == "inactive"
            })
            .await
            .unwrap();
        presenter.observe(|o| {
            let last = o.offers.last().unwrap();
            assert!(
                !last.mid_to_track_id.values().any(|t| *t == camera),
                "removed track still offered as sending"
            );
        });
        // Audio keeps flowing.
        assert_delivery_over(&watcher, &presenter, Duration::from_secs(2)).await;
        assert_clean(&[&watcher, &presenter]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_is_dropped_and_sequence_numbers_stay_gapless() {
    on_fresh_server(BOUND, None, async |server| {
        let options = [
            PeerOptions::audio_only("speaker"),
            PeerOptions::receive_only("listener"),
        ];
        let [speaker, listener] = join_in_turn(server, "quiet", options).await;
        wait_receiving(&listener, &[&speaker]).await;
        let audio = active_tracks(&speaker).remove(0);
        let from = Instant::now();
        tokio::time::sleep(Duration::from_secs(1)).await;
        speaker.set_silent(true).await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        speaker.set_silent(false).await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let until = Instant::now() - Duration::from_millis(500);

        // Voiced packets arrive, with no sequence gap where the silence was cut out.
        assert_delivery(&listener, &speaker, from, until, 95);
        let sent = speaker.observe(|o| o.local[&audio.track_id].clone());
        let silent: HashSet<u32> = sent
            .sent
            .iter()
            .filter(|p| p.silent)
            .map(|p| p.index)
            .collect();
        assert!(
            silent.len() >= 80,
            "the speaker sent {} silent packets",
            silent.len()
        );
        listener.observe(|o| {
            let received = &o.remote[&audio.track_id];
            let got = received.indices_of(sent.tag).unwrap();
            let leaked = got.intersection(&silent).count();
            assert_eq!(leaked, 0, "{leaked} silent packets were forwarded");
            assert_eq!(received.silent_packets, 0);
            assert_eq!(
                received.missing_sequence_numbers, 0,
                "gaps {:?}",
                received.gaps
            );
        });
        assert_clean(&[&speaker, &listener]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rooms_never_see_each_others_media_or_events() {
    on_fresh_server(BOUND, None, async |server| {
        let x1 = join_accepted(server, "x", PeerOptions::new("x1")).await;
        let y1 = join_accepted(server, "y", PeerOptions::new("y1")).await;
        let x2 = join_accepted(server, "x", PeerOptions::new("x2")).await;
        let y2 = join_accepted(server, "y", PeerOptions::new("y2")).await;
        wait_receiving(&x1, &[&x2]).await;
        wait_receiving(&x2, &[&x1]).await;
        wait_receiving(&y1, &[&y2]).await;
        wait_receiving(&y2, &[&y1]).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rooms = [([&x1, &x2], [&y1, &y2]), ([&y1, &y2], [&x1, &x2])];
        for (own, other) in rooms {
            let other_ids: Vec<String> = other.iter().map(|p| p.peer_id().unwrap()).collect();
            let other_tags: HashSet<u32> = other
                .iter()
                .flat_map(|p| active_tracks(p).into_iter().map(|t| t.tag))
                .collect();
            for peer in own {
                peer.observe(|o| {
                    for event in &o.events {
                        let text = event.data.to_string();
                        for id in &other_ids {
                            assert!(
                                !text.contains(id.as_str()),
                                "{} got {} about another room: {text}",
                                peer.name,
                                event.kind
                            );
                        }
                    }
                    assert_eq!(o.peers.len(), 1, "{} knows {:?}", peer.name, o.peers.keys());
                    for record in o.remote.values() {
                        for (tag, _) in &record.received {
                            assert!(
                                !other_tags.contains(tag),
                                "{} received media of the other room",
                                peer.name
                            );
                        }
                    }
                });
            }
        }
        assert_clean(&[&x1, &x2, &y1, &y2]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_subscriber_gets_a_keyframe_from_a_publisher_that_only_sends_them_on_request() {
    on_fresh_server(BOUND, None, async |server| {
        // An encoder that never produces a keyframe unless asked (after its very first frame).
        let mut options = PeerOptions::new("camera").publishing(false, true);
        options.keyframe_interval = u64::MAX;
        let camera = join_accepted(server, "keyframes", options).await;
        camera
            .wait_for("the camera sending", LONG, |o| {
                o.local.values().any(|t| t.sent.len() > 48)
            })
            .await
            .unwrap();
        let viewer = join_accepted(server, "keyframes", PeerOptions::receive_only("viewer")).await;
        wait_receiving(&viewer, &[&camera]).await;
        let video = active_tracks(&camera).remove(0);
        viewer
            .wait_for("a keyframe", Duration::from_secs(5), |o| {
                o.remote
                    .get(&video.track_id)
                    .is_some_and(|r| r.keyframes > 0)
            })
            .await
            .unwrap();
        let requests = camera.observe(|o| o.local[&video.track_id].keyframe_requests);
        assert!(
            requests >= 1,
            "the SFU never asked the publisher for a keyframe"
        );
        viewer.observe(|o| assert_eq!(o.remote[&video.track_id].malformed_vp8, 0));
        assert_clean(&[&camera, &viewer]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_keeps_flowing_while_a_newcomer_makes_everyone_renegotiate_with_an_ice_restart() {
    on_fresh_server(BOUND, None, async |server| {
        let [a, b] = receiving_pair(server, "restarts").await;
        let offers_before = a.observe(|o| o.offers.len());
        let from = Instant::now();
        tokio::time::sleep(Duration::from_millis(500)).await;
        // The newcomer's tracks make a and b renegotiate; every re-offer restarts ICE.
        let c = join_accepted(server, "restarts", PeerOptions::new("c")).await;
        wait_receiving(&a, &[&c]).await;
        wait_receiving(&b, &[&c]).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let until = Instant::now() - Duration::from_millis(300);
        a.observe(|o| {
            assert!(o.offers.len() > offers_before, "a never re-offered");
            let ufrags: Vec<Option<String>> = o.offers[offers_before - 1..]
                .iter()
                .map(|offer| peer::sdp::media_sections(&offer.sdp)[0].ice_ufrag.clone())
                .collect();
            let distinct: HashSet<_> = ufrags.iter().collect();
            assert_eq!(
                distinct.len(),
                ufrags.len(),
                "a re-offer kept its ICE credentials"
            );
        });
        // Across the restarts: everything a and b sent each other arrived, without gaps.
        assert_delivery_across_restarts(&a, &b, from, until, 95);
        assert_delivery_across_restarts(&b, &a, from, until, 95);
        assert_clean(&[&a, &b, &c]);
    })
    .await;
}
