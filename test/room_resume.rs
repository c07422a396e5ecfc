//! Resume tokens over a real WebSocket against the real app, in literal frames (the kit's
//! Phoenix client, V2): `peerAccepted` carries one, a channel joining `room:<id>` with
//! `{"resumeToken": …}` takes the peer back (same id, `peerAccepted` replayed, others hear
//! nothing), and every abuse (a spent, dead, foreign, garbage or ill-typed token) is refused
//! with a clear join error while the real peer goes on untouched. These peers never start
//! media, so a lost socket removes them at once (a peer is held only while its media lives:
//! `test/e2e_reconnect.rs`).

mod kit;

use kit::phoenix::{Client, join_event};
use kit::server::{Server, start_server, test_config};
use serde_json::{Value, json};
use std::time::Duration;

/// Silence long enough to show that nothing was sent.
const QUIET: Duration = Duration::from_millis(300);

async fn start() -> Server {
    start_server(test_config()).await
}

/// Connects a fresh socket and joins `room:<room>` with `payload`; returns the client and the
/// join reply.
async fn join_with(server: &Server, room: &str, payload: Value) -> (Client, Value) {
    let mut c =
        kit::phoenix::connect(server.http, "/socket/websocket", kit::phoenix::Vsn::V2).await;
    let reply = c.join(&format!("room:{room}"), payload).await;
    (c, reply)
}

/// The join error `reason`.
fn refused(reason: &str) -> Value {
    json!({"status":"error","response":{"reason":reason}})
}

/// A joins `room` and hears of itself; returns A and its `peerAccepted`.
async fn first_peer(server: &Server, room: &str) -> (Client, Value) {
    let (mut a, accepted) = Client::join_room(server.http, room, "A").await;
    a.expect_media("peerJoined").await;
    (a, accepted)
}

/// A joins `room`, then B: each hears of itself first, then A hears of B. Returns A and B
/// with their `peerAccepted`.
async fn two_peers(server: &Server, room: &str) -> [(Client, Value); 2] {
    let (mut a, accepted_a) = first_peer(server, room).await;
    let (mut b, accepted_b) = Client::join_room(server.http, room, "B").await;
    assert_eq!(
        b.expect_media("peerJoined").await["peer"]["id"],
        accepted_b["id"],
        "B's own peerJoined first"
    );
    assert_eq!(
        a.expect_media("peerJoined").await["peer"]["id"],
        accepted_b["id"]
    );
    [(a, accepted_a), (b, accepted_b)]
}

fn token_of(accepted: &Value) -> String {
    accepted["resumeToken"]
        .as_str()
        .expect("peerAccepted carries a resume token")
        .to_owned()
}

#[tokio::test]
async fn peer_accepted_carries_a_base64url_token_of_at_least_128_bits() {
    let server = start().await;
    let (_a, accepted) = first_peer(&server, "t").await;
    let token = token_of(&accepted);
    assert!(token.len() >= 22, "{token}");
    assert!(
        token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "{token}"
    );
    let (_b, accepted_b) = Client::join_room(server.http, "t", "B").await;
    assert_ne!(token_of(&accepted_b), token, "one token per peer");
}

#[tokio::test]
async fn a_token_takes_its_peer_back_on_a_new_socket_and_the_others_hear_nothing() {
    let server = start().await;
    let [(mut a, accepted), (mut b, accepted_b)] = two_peers(&server, "r").await;
    let a_id = accepted["id"].clone();

    let (mut a2, reply) =
        join_with(&server, "r", json!({"resumeToken": token_of(&accepted)})).await;
    assert_eq!(reply, json!({"status":"ok","response":{}}));
    let replayed = a2.expect_media("peerAccepted").await;
    let next = token_of(&replayed);
    assert_eq!(
        replayed,
        json!({"id": a_id, "peersInRoom": [{"id": accepted_b["id"],
            "metadata": {"displayName": "B"}, "trackIdToMetadata": {}}],
            "resumeToken": next})
    );
    assert_ne!(next, token_of(&accepted));
    // The old channel (the server had not noticed its socket die) is closed with an error.
    assert_eq!(
        a.expect_media("error").await,
        json!({"message": "resumed on another connection"})
    );
    b.expect_no_media(QUIET).await;

    // The resumed channel is the peer's: its events reach the room, the room's reach it.
    a2.media(json!({"type":"updatePeerMetadata","data":{"metadata":{"displayName":"A2"}}}))
        .await;
    let updated = json!({"peerId": a_id, "metadata": {"displayName": "A2"}});
    assert_eq!(b.expect_media("peerUpdated").await, updated);
    assert_eq!(a2.expect_media("peerUpdated").await, updated);
}

#[tokio::test]
async fn every_abused_token_is_refused_with_a_clear_reason_and_the_real_peer_goes_on() {
    let server = start().await;
    let (mut a, accepted) = first_peer(&server, "r").await;
    let token = token_of(&accepted);
    let (_other, _) = first_peer(&server, "elsewhere").await;

    let cases = [
        (
            json!({"resumeToken": "garbage"}),
            "r",
            "invalid resume token",
        ),
        (json!({"resumeToken": ""}), "r", "invalid resume token"),
        (
            json!({"resumeToken": "A".repeat(5000)}),
            "r",
            "invalid resume token",
        ),
        (json!({"resumeToken": 42}), "r", "invalid resume token"),
        (
            json!({"resumeToken": {"t": token}}),
            "r",
            "invalid resume token",
        ),
        (
            json!({"resumeToken": token}),
            "elsewhere",
            "resume token is for another room",
        ),
        (
            json!({"resumeToken": token}),
            "no-such-room",
            "resume token is for another room",
        ),
    ];
    for (payload, room, reason) in cases {
        let (_c, reply) = join_with(&server, room, payload.clone()).await;
        assert_eq!(reply, refused(reason), "{payload} in room {room}");
    }
    assert_eq!(
        server.room_ids(),
        ["elsewhere", "r"],
        "no room started by a refused resume"
    );

    // A heard nothing and is still a member with a working token.
    a.expect_no_media(QUIET).await;
    let (_b, _) = Client::join_room(server.http, "r", "B").await;
    assert_eq!(
        a.expect_media("peerJoined").await["peer"]["metadata"],
        json!({"displayName":"B"})
    );
    let (mut a2, reply) = join_with(&server, "r", json!({"resumeToken": token})).await;
    assert_eq!(reply, json!({"status":"ok","response":{}}));
    let next = token_of(&a2.expect_media("peerAccepted").await);

    // The spent token is refused, and the new one still works after that.
    let (_c, reply) = join_with(&server, "r", json!({"resumeToken": token})).await;
    assert_eq!(reply, refused("resume token already used"));
    a2.expect_no_media(QUIET).await;
    let (mut a3, reply) = join_with(&server, "r", json!({"resumeToken": next})).await;
    assert_eq!(reply, json!({"status":"ok","response":{}}));
    a3.expect_media("peerAccepted").await;

    // Operators see each outcome.
    let metrics = kit::get_text(&server.url("/metrics")).await;
    for line in [
        r#"videoroom_reconnects_total{outcome="invalid"} 5"#,
        r#"videoroom_reconnects_total{outcome="other_room"} 2"#,
        r#"videoroom_reconnects_total{outcome="used"} 1"#,
        r#"videoroom_reconnects_total{outcome="resumed"} 2"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} missing");
    }
}

#[tokio::test]
async fn a_left_or_removed_peers_token_is_expired() {
    let server = start().await;
    let [(mut a, accepted), (mut b, accepted_b)] = two_peers(&server, "r").await;
    // A says `leave` as the tutorial's client does: removed at once.
    a.media(json!({"type":"leave"})).await;
    assert_eq!(
        b.expect_media("peerLeft").await,
        json!({"peerId": accepted["id"]})
    );
    let (_c, reply) = join_with(&server, "r", json!({"resumeToken": token_of(&accepted)})).await;
    assert_eq!(reply, refused("resume token expired"));

    // B's socket dies before its media ever started: nothing to hold, it is removed at once.
    let (mut watcher, _) = Client::join_room(server.http, "r", "W").await;
    watcher.expect_media("peerJoined").await;
    b.vanish();
    assert_eq!(
        watcher.expect_media("peerLeft").await,
        json!({"peerId": accepted_b["id"]})
    );
    let (_c, reply) = join_with(&server, "r", json!({"resumeToken": token_of(&accepted_b)})).await;
    assert_eq!(reply, refused("resume token expired"));
}

#[tokio::test]
async fn a_join_without_a_token_or_with_a_null_one_is_a_new_peer() {
    let server = start().await;
    let (_a, accepted) = first_peer(&server, "r").await;
    let (mut c, reply) = join_with(&server, "r", json!({"resumeToken": null})).await;
    assert_eq!(reply, json!({"status":"ok","response":{}}));
    c.media(join_event("C")).await;
    let accepted_c = c.expect_media("peerAccepted").await;
    assert_ne!(accepted_c["id"], accepted["id"]);
}
