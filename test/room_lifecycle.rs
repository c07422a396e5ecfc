//! Room lifecycle over a real WebSocket with a raw Phoenix V2 client: join, peerAccepted,
//! isolation between rooms, rooms stopping after their last peer (plus grace), the peer limit,
//! socket death, and simultaneous first joins.

mod room_common;

use std::collections::HashSet;
use std::time::Duration;

use room_common::{Client, eventually, rooms_config, start};
use serde_json::json;

const GRACE: Duration = Duration::from_millis(300);

#[tokio::test]
async fn joining_replies_ok_and_the_join_event_gets_peer_accepted_then_peer_joined() {
    let server = start(rooms_config(GRACE, None)).await;
    let (mut c, reply) = Client::join(server.addr, "room:alpha").await;
    assert_eq!(reply, json!({"status":"ok","response":{}}));
    assert!(server.registry.contains("alpha"));
    c.media(json!({"type":"join","data":{"receiveMedia":true,"metadata":{"displayName":"Ann"}}}))
        .await;
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
    let server = start(rooms_config(GRACE, None)).await;
    let (mut a, acc_a) = Client::join_room(server.addr, "r", "A").await;
    a.expect_media("peerJoined").await;
    let (mut b, acc_b) = Client::join_room(server.addr, "r", "B").await;
    assert_eq!(
        acc_b["peersInRoom"],
        json!([{"id":acc_a["id"],"metadata":{"displayName":"A"},"trackIdToMetadata":{}}])
    );
    let joined = a.expect_media("peerJoined").await;
    assert_eq!(joined["peer"]["id"], acc_b["id"]);
    assert_eq!(
        b.expect_media("peerJoined").await["peer"]["id"],
        acc_b["id"]
    );
}

#[tokio::test]
async fn two_rooms_never_see_each_others_events() {
    let server = start(rooms_config(GRACE, None)).await;
    let (mut a, _) = Client::join_room(server.addr, "one", "A").await;
    a.expect_media("peerJoined").await;
    let (mut b, acc_b) = Client::join_room(server.addr, "two", "B").await;
    assert_eq!(acc_b["peersInRoom"], json!([]));
    b.expect_media("peerJoined").await;
    b.media(json!({"type":"updatePeerMetadata","data":{"metadata":{"displayName":"B2"}}}))
        .await;
    assert_eq!(
        b.expect_media("peerUpdated").await["metadata"]["displayName"],
        "B2"
    );
    a.expect_silence(Duration::from_millis(300)).await;
    assert_eq!(server.registry.room_ids(), ["one", "two"]);
}

#[tokio::test]
async fn a_room_is_gone_after_its_last_peer_leaves_and_the_grace_period() {
    let server = start(rooms_config(Duration::from_millis(1000), None)).await;
    let (mut a, _) = Client::join_room(server.addr, "brief", "A").await;
    a.leave().await;
    assert!(
        server.registry.contains("brief"),
        "the room waits for the grace period"
    );
    assert!(
        eventually(Duration::from_secs(3), || !server
            .registry
            .contains("brief"))
        .await,
        "room stopped"
    );
    assert_eq!(server.registry.room_count(), 0);
    // Joining again starts a fresh room.
    let (_b, acc) = Client::join_room(server.addr, "brief", "B").await;
    assert_eq!(acc["peersInRoom"], json!([]));
    assert!(server.registry.contains("brief"));
}

#[tokio::test]
async fn a_room_does_not_stop_while_a_peer_is_in_it() {
    let server = start(rooms_config(Duration::from_millis(300), None)).await;
    let (mut a, _) = Client::join_room(server.addr, "keep", "A").await;
    let (mut b, _) = Client::join_room(server.addr, "keep", "B").await;
    a.leave().await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(server.registry.contains("keep"));
    // Still the same room: B hears of a newcomer.
    b.expect_media("peerJoined").await;
    b.expect_media("peerLeft").await;
    let (_c, acc) = Client::join_room(server.addr, "keep", "C").await;
    assert_eq!(b.expect_media("peerJoined").await["peer"]["id"], acc["id"]);
}

#[tokio::test]
async fn the_peer_beyond_the_maximum_gets_peer_denied_with_a_reason() {
    let server = start(rooms_config(GRACE, Some(2))).await;
    let (_a, _) = Client::join_room(server.addr, "full", "A").await;
    let (_b, _) = Client::join_room(server.addr, "full", "B").await;
    let (mut c, reply) = Client::join(server.addr, "room:full").await;
    assert_eq!(reply["status"], "ok");
    c.media(json!({"type":"join","data":{"receiveMedia":true,"metadata":{"displayName":"C"}}}))
        .await;
    assert_eq!(
        c.expect_media("peerDenied").await,
        json!({"reason":"room is full"})
    );
    // The denied peer is no member: its events are dropped, the others hear nothing of it.
    c.media(json!({"type":"updatePeerMetadata","data":{"metadata":{}}}))
        .await;
    c.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_closed_socket_gives_the_others_peer_left_exactly_once() {
    let server = start(rooms_config(GRACE, None)).await;
    let (mut a, _) = Client::join_room(server.addr, "drop", "A").await;
    a.expect_media("peerJoined").await;
    let (b, acc_b) = Client::join_room(server.addr, "drop", "B").await;
    a.expect_media("peerJoined").await;
    b.vanish();
    assert_eq!(
        a.expect_media("peerLeft").await,
        json!({"peerId": acc_b["id"]})
    );
    a.expect_silence(Duration::from_millis(500)).await;
}

#[tokio::test]
async fn a_leave_event_then_socket_close_gives_peer_left_once() {
    let server = start(rooms_config(GRACE, None)).await;
    let (mut a, _) = Client::join_room(server.addr, "bye", "A").await;
    a.expect_media("peerJoined").await;
    let (mut b, acc_b) = Client::join_room(server.addr, "bye", "B").await;
    a.expect_media("peerJoined").await;
    b.media(json!({"type":"leave"})).await;
    assert_eq!(
        a.expect_media("peerLeft").await,
        json!({"peerId": acc_b["id"]})
    );
    b.leave().await;
    a.expect_silence(Duration::from_millis(400)).await;
}

#[tokio::test]
async fn simultaneous_first_joins_start_one_room() {
    let server = start(rooms_config(GRACE, None)).await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let addr = server.addr;
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
    assert_eq!(server.registry.room_ids(), ["race"]);
    // All twelve are members of the same room: the last to join saw eleven others.
    let (_late, acc) = Client::join_room(server.addr, "race", "late").await;
    assert_eq!(acc["peersInRoom"].as_array().unwrap().len(), 12);
}

#[tokio::test]
async fn bad_input_is_dropped_and_the_room_keeps_serving_the_others() {
    let server = start(rooms_config(GRACE, None)).await;
    let (mut a, _) = Client::join_room(server.addr, "bad", "A").await;
    a.expect_media("peerJoined").await;
    let (mut stranger, _) = Client::join(server.addr, "room:bad").await;
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
    a.send("mediaEvent", json!({"data": 42})).await;
    a.send("someOtherEvent", json!({})).await;
    a.expect_silence(Duration::from_millis(300)).await;
    // The room still works for everyone.
    let (_b, acc_b) = Client::join_room(server.addr, "bad", "B").await;
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
    let mut config = rooms_config(GRACE, None);
    config.admission = std::sync::Arc::new(PanickyAdmission);
    let server = start(config).await;
    let (mut calm, _) = Client::join_room(server.addr, "calm", "A").await;
    calm.expect_media("peerJoined").await;
    let (mut bystander, _) = Client::join_room(server.addr, "fragile", "Y").await;
    bystander.expect_media("peerJoined").await;

    let (mut culprit, _) = Client::join(server.addr, "room:fragile").await;
    culprit
        .media(
            json!({"type":"join","data":{"receiveMedia":true,"metadata":{"displayName":"boom"}}}),
        )
        .await;
    for c in [&mut culprit, &mut bystander] {
        assert_eq!(
            c.expect_media("error").await,
            json!({"message":"room crashed"})
        );
        c.expect_frame("phx_close").await;
    }
    assert!(
        eventually(Duration::from_secs(2), || !server
            .registry
            .contains("fragile"))
        .await
    );

    // The other room never noticed and keeps serving.
    let (_b, acc) = Client::join_room(server.addr, "calm", "B").await;
    assert_eq!(acc["peersInRoom"].as_array().unwrap().len(), 1);
    assert_eq!(
        calm.expect_media("peerJoined").await["peer"]["id"],
        acc["id"]
    );
    // And the crashed room's id starts afresh.
    let (_z, acc) = Client::join_room(server.addr, "fragile", "Z").await;
    assert_eq!(acc["peersInRoom"], json!([]));
}
