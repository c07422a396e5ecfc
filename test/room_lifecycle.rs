//! Room lifecycle over a real WebSocket against the real app (the kit's Phoenix client, V2):
//! join, peerAccepted, isolation between rooms, rooms stopping after their last peer (plus
//! grace), the peer limit, socket death, and simultaneous first joins.

mod kit;

use std::collections::HashSet;
use std::time::Duration;

use kit::eventually;
use kit::phoenix::{Client, join_event};
use kit::server::{Server, start_server, start_server_with_admission, test_config};
use serde_json::{Value, json};
use videoroom::config::Config;

const GRACE: Duration = Duration::from_millis(300);

/// The app's settings with an empty room's `grace` and at most `max_peers` per room.
fn config(grace: Duration, max_peers: Option<usize>) -> Config {
    let defaults = test_config();
    Config {
        room_grace_secs: grace.as_secs_f64(),
        max_peers_per_room: max_peers.unwrap_or(defaults.max_peers_per_room),
        ..defaults
    }
}

async fn start(grace: Duration, max_peers: Option<usize>) -> Server {
    start_server(config(grace, max_peers)).await
}

/// Joins `room` as `name` and hears of itself (its own `peerJoined`); returns the client and
/// its `peerAccepted`.
async fn join_hearing_self(server: &Server, room: &str, name: &str) -> (Client, Value) {
    let (mut c, accepted) = Client::join_room(server.http, room, name).await;
    assert_eq!(
        c.expect_media("peerJoined").await["peer"]["id"],
        accepted["id"]
    );
    (c, accepted)
}

/// A joins `room` and hears of itself, then B joins and A hears of B; returns A, B and B's
/// `peerAccepted`.
async fn two_peers(server: &Server, room: &str) -> (Client, Client, Value) {
    let (mut a, _) = join_hearing_self(server, room, "A").await;
    let (b, acc_b) = Client::join_room(server.http, room, "B").await;
    assert_eq!(
        a.expect_media("peerJoined").await["peer"]["id"],
        acc_b["id"]
    );
    (a, b, acc_b)
}

#[tokio::test]
async fn joining_replies_ok_and_the_join_event_gets_peer_accepted_then_peer_joined() {
    let server = start(GRACE, None).await;
    let (mut c, reply) = Client::joined(server.http, "room:alpha").await;
    assert_eq!(reply, json!({"status":"ok","response":{}}));
    assert!(server.rooms.contains("alpha"));
    c.media(join_event("Ann")).await;
    let accepted = c.expect_media("peerAccepted").await;
    let id = accepted["id"].as_str().unwrap().to_owned();
    let uuid = uuid::Uuid::parse_str(&id).expect("peer id is a UUID");
    assert_eq!(uuid.get_version_num(), 4);
    assert_eq!(accepted["peersInRoom"], json!([]));
    let joined = c.expect_media("peerJoined").await;
    assert_eq!(
        joined,
        json!({"peer":{"id":id,"metadata":{"displayName":"Ann"},"trackIdToMetadata":{}}})
    );
}

#[tokio::test]
async fn a_second_peer_sees_the_first_and_the_first_hears_of_the_second() {
    let server = start(GRACE, None).await;
    let (mut a, acc_a) = join_hearing_self(&server, "r", "A").await;
    let (mut b, acc_b) = Client::join_room(server.http, "r", "B").await;
    assert_eq!(
        acc_b["peersInRoom"],
        json!([{"id":acc_a["id"],"metadata":{"displayName":"A"},"trackIdToMetadata":{}}])
    );
    assert_eq!(
        a.expect_media("peerJoined").await["peer"]["id"],
        acc_b["id"]
    );
    assert_eq!(
        b.expect_media("peerJoined").await["peer"]["id"],
        acc_b["id"]
    );
}

#[tokio::test]
async fn two_rooms_never_see_each_others_events() {
    let server = start(GRACE, None).await;
    let (mut a, _) = join_hearing_self(&server, "one", "A").await;
    let (mut b, acc_b) = join_hearing_self(&server, "two", "B").await;
    assert_eq!(acc_b["peersInRoom"], json!([]));
    b.media(json!({"type":"updatePeerMetadata","data":{"metadata":{"displayName":"B2"}}}))
        .await;
    assert_eq!(
        b.expect_media("peerUpdated").await["metadata"]["displayName"],
        "B2"
    );
    a.expect_no_media(Duration::from_millis(300)).await;
    assert_eq!(server.rooms.room_ids(), ["one", "two"]);
}

#[tokio::test]
async fn a_room_is_gone_after_its_last_peer_leaves_and_the_grace_period() {
    let server = start(Duration::from_millis(1000), None).await;
    let (mut a, _) = Client::join_room(server.http, "brief", "A").await;
    a.leave().await;
    assert!(
        server.rooms.contains("brief"),
        "the room waits for the grace period"
    );
    assert!(
        eventually(Duration::from_secs(3), || !server.rooms.contains("brief")).await,
        "room stopped"
    );
    assert_eq!(server.rooms.room_count(), 0);
    // Joining again starts a fresh room.
    let (_b, acc) = Client::join_room(server.http, "brief", "B").await;
    assert_eq!(acc["peersInRoom"], json!([]));
    assert!(server.rooms.contains("brief"));
}

#[tokio::test]
async fn a_room_does_not_stop_while_a_peer_is_in_it() {
    let server = start(Duration::from_millis(300), None).await;
    let (mut a, _) = Client::join_room(server.http, "keep", "A").await;
    let (mut b, _) = Client::join_room(server.http, "keep", "B").await;
    a.leave().await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(server.rooms.contains("keep"));
    // Still the same room: B hears of a newcomer.
    b.expect_media("peerJoined").await;
    b.expect_media("peerLeft").await;
    let (_c, acc) = Client::join_room(server.http, "keep", "C").await;
    assert_eq!(b.expect_media("peerJoined").await["peer"]["id"], acc["id"]);
}

#[tokio::test]
async fn the_peer_beyond_the_maximum_gets_peer_denied_with_a_reason() {
    let server = start(GRACE, Some(2)).await;
    let (_a, _) = Client::join_room(server.http, "full", "A").await;
    let (_b, _) = Client::join_room(server.http, "full", "B").await;
    let (mut c, reply) = Client::joined(server.http, "room:full").await;
    assert_eq!(reply["status"], "ok");
    c.media(join_event("C")).await;
    assert_eq!(
        c.expect_media("peerDenied").await,
        json!({"reason":"room is full"})
    );
    // The denied peer is no member: its events are dropped, the others hear nothing of it.
    c.media(json!({"type":"updatePeerMetadata","data":{"metadata":{}}}))
        .await;
    c.expect_no_media(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_closed_socket_gives_the_others_peer_left_exactly_once() {
    let server = start(GRACE, None).await;
    let (mut a, b, acc_b) = two_peers(&server, "drop").await;
    b.vanish();
    assert_eq!(
        a.expect_media("peerLeft").await,
        json!({"peerId": acc_b["id"]})
    );
    a.expect_no_media(Duration::from_millis(500)).await;
}

#[tokio::test]
async fn a_leave_event_then_socket_close_gives_peer_left_once() {
    let server = start(GRACE, None).await;
    let (mut a, mut b, acc_b) = two_peers(&server, "bye").await;
    b.media(json!({"type":"leave"})).await;
    assert_eq!(
        a.expect_media("peerLeft").await,
        json!({"peerId": acc_b["id"]})
    );
    b.leave().await;
    a.expect_no_media(Duration::from_millis(400)).await;
}

#[tokio::test]
async fn simultaneous_first_joins_start_one_room() {
    let server = start(GRACE, None).await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let addr = server.http;
        tasks.push(tokio::spawn(async move {
            Client::join_room(addr, "race", &format!("p{i}")).await
        }));
    }
    let mut ids = HashSet::new();
    let mut clients = Vec::new();
    for t in tasks {
        let (c, acc) = t.await.unwrap();
        ids.insert(acc["id"].as_str().unwrap().to_owned());
        clients.push(c);
    }
    assert_eq!(ids.len(), 12);
    assert_eq!(server.rooms.room_ids(), ["race"]);
    // All twelve are members of the same room: the last to join saw eleven others.
    let (_late, acc) = Client::join_room(server.http, "race", "late").await;
    assert_eq!(acc["peersInRoom"].as_array().unwrap().len(), 12);
}

#[tokio::test]
async fn bad_input_is_dropped_and_the_room_keeps_serving_the_others() {
    let server = start(GRACE, None).await;
    let (mut a, _) = join_hearing_self(&server, "bad", "A").await;
    let (mut stranger, _) = Client::joined(server.http, "room:bad").await;
    // Before join, every event but join is dropped.
    stranger
        .media(json!({"type":"updatePeerMetadata","data":{"metadata":{"x":1}}}))
        .await;
    stranger.media(json!({"type":"leave"})).await;
    for data in [
        "{not json",
        r#"{"type":"custom","data":{}}"#,
        r#"{"type":"sdpOffer","data":7}"#,
    ] {
        a.media_raw(data).await;
        stranger.media_raw(data).await;
    }
    a.push("room:bad", "mediaEvent", json!({"data": 42})).await;
    a.push("room:bad", "someOtherEvent", json!({})).await;
    a.expect_no_media(Duration::from_millis(300)).await;
    // The room still works for everyone.
    let (_b, acc_b) = Client::join_room(server.http, "bad", "B").await;
    assert_eq!(acc_b["peersInRoom"].as_array().unwrap().len(), 1);
    assert_eq!(
        a.expect_media("peerJoined").await["peer"]["id"],
        acc_b["id"]
    );
}

/// An admission hook that panics for peers named "boom" (a bug in application code).
struct PanickyAdmission;

impl videoroom::room::Admission for PanickyAdmission {
    fn admit(
        &self,
        _room: &str,
        _peer: videoroom::rtc::ids::PeerId,
        metadata: &serde_json::Value,
        _members: usize,
    ) -> Result<(), serde_json::Value> {
        if metadata["displayName"] == "boom" {
            panic!("admission hook bug");
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_panic_in_one_room_closes_only_that_room() {
    let admission = std::sync::Arc::new(PanickyAdmission);
    let server = start_server_with_admission(config(GRACE, None), admission).await;
    let (mut calm, _) = join_hearing_self(&server, "calm", "A").await;
    let (mut bystander, _) = join_hearing_self(&server, "fragile", "Y").await;

    let (mut culprit, _) = Client::joined(server.http, "room:fragile").await;
    culprit.media(join_event("boom")).await;
    for c in [&mut culprit, &mut bystander] {
        assert_eq!(
            c.expect_media("error").await,
            json!({"message":"room crashed"})
        );
        c.expect_event("phx_close").await;
    }
    assert!(eventually(Duration::from_secs(2), || !server.rooms.contains("fragile")).await);

    // The other room never noticed and keeps serving.
    let (_b, acc) = Client::join_room(server.http, "calm", "B").await;
    assert_eq!(acc["peersInRoom"].as_array().unwrap().len(), 1);
    assert_eq!(
        calm.expect_media("peerJoined").await["peer"]["id"],
        acc["id"]
    );
    // And the crashed room's id starts afresh.
    let (_z, acc) = Client::join_room(server.http, "fragile", "Z").await;
    assert_eq!(acc["peersInRoom"], json!([]));
}

/// A peer whose media never connects (its offer is answered, but no connectivity check ever
/// comes) is pushed the server's diagnosis on its channel, once, about 8 s after its offer, as
/// a `mediaDiagnosis` event of its own next to the media events. Here the server is bound to
/// 127.0.0.1 and the offer carries no loopback candidate: "loopback_server".
#[tokio::test]
async fn a_peer_whose_media_never_connects_is_pushed_the_diagnosis_as_its_own_event() {
    let server = start_server(test_config()).await;
    let (mut a, accepted) = Client::join_room(server.http, "diag", "A").await;
    let id = accepted["id"].as_str().expect("a peer id").to_owned();
    a.expect_media("peerJoined").await;
    a.offer_fixture_publisher(&id).await;
    let mut answered = false;
    let diagnosis = loop {
        match a.recv_within(Duration::from_secs(12)).await {
            Some(kit::phoenix::Received::Json(f)) if f[3] == "mediaDiagnosis" => break f,
            Some(kit::phoenix::Received::Json(f)) => {
                answered |= f[3] == "mediaEvent"
                    && f[4]["data"]
                        .as_str()
                        .is_some_and(|d| d.contains(r#""type":"sdpAnswer""#));
            }
            other => panic!("no mediaDiagnosis push: {other:?}"),
        }
    };
    assert!(answered, "the offer was answered before the diagnosis");
    assert!(
        diagnosis[0].is_string() && diagnosis[1].is_null(),
        "{diagnosis}"
    );
    assert_eq!(
        diagnosis.as_array().expect("a V2 frame")[2..],
        [
            json!("room:diag"),
            json!("mediaDiagnosis"),
            json!({
                "cause": "loopback_server",
                "message": "Media cannot connect: the server listens only on a loopback address (127.0.0.1), which this browser does not use for media. Open the server by its network address instead."
            })
        ]
    );
    // Once only.
    while let Some(kit::phoenix::Received::Json(f)) = a.recv_within(Duration::from_secs(2)).await {
        assert_ne!(f[3], "mediaDiagnosis", "{f}");
    }
}
