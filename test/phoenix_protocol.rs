//! Phoenix wire conformance over real WebSockets against the conformance fixture: the
//! handshake, heartbeats and the idle timeout, join / event / leave, join refs, limits, binary
//! frames, presence, drain and back-pressure (`docs/phoenix-protocol.md`). Channel behaviour is
//! tested for V1 and V2 (`mod <test> { v1, v2 }`); frames are literal, in the V2 notation the
//! kit client translates for V1. LongPoll is in `phoenix_longpoll.rs`, the serializers' byte
//! layouts in `src/phoenix/serializer_tests.rs`.

#[macro_use]
mod kit;

use kit::phoenix::{Client, Received, Vsn, connect, try_connect};
use kit::{Fixture, start_fixture, start_fixture_with_idle_timeout};
use serde_json::{Value, json};
use std::time::Duration;

/// A fresh fixture and a client of `path` on it (keep the fixture: dropping it stops it).
async fn fixture_client(path: &str, vsn: Vsn) -> (Fixture, Client) {
    let s = start_fixture().await;
    let c = connect(s.addr, path, vsn).await;
    (s, c)
}

/// Joins a fixture `room:*` topic: the reply, then (in either order) the channel's broadcast
/// `user_entered` and its push `joined` carrying the socket's `user_id`.
async fn join_room_as(c: &mut Client, topic: &str, jr: &str, r: &str, user_id: Value) {
    c.send(json!([jr, r, topic, "phx_join", {}])).await;
    c.expect(json!([jr, r, topic, "phx_reply", {"status": "ok", "response": {}}]))
        .await;
    c.expect_unordered([
        json!([null, null, topic, "user_entered", {"user": null}]),
        json!([jr, null, topic, "joined", {"status": "connected", "user_id": user_id}]),
    ])
    .await;
}

/// [`join_room_as`] for a socket connected without `user_id`.
async fn join_room(c: &mut Client, topic: &str, jr: &str, r: &str) {
    join_room_as(c, topic, jr, r, Value::Null).await;
}

/// Joins a topic whose channel replies `{}` and pushes nothing (`echo:*`, or a presence join).
async fn join_ok(c: &mut Client, topic: &str, r: &str, payload: Value) {
    c.send(json!([r, r, topic, "phx_join", payload])).await;
    c.expect(json!([r, r, topic, "phx_reply", {"status": "ok", "response": {}}]))
        .await;
}

/// A client of `/socket/websocket` on `s` that joined the echo channel `topic` ([`join_ok`],
/// ref "1").
async fn echo_client(s: &Fixture, vsn: Vsn, topic: &str) -> Client {
    let mut c = connect(s.addr, "/socket/websocket", vsn).await;
    join_ok(&mut c, topic, "1", json!({})).await;
    c
}

/// Asks the fixture's `whoami` (ref `r`) on joined `topic` and expects the connect `params`
/// and `auth_token` it saw.
async fn expect_whoami(
    c: &mut Client,
    topic: &str,
    jr: &str,
    r: &str,
    params: Value,
    token: Value,
) {
    c.send(json!([jr, r, topic, "whoami", {}])).await;
    c.expect(json!([jr, r, topic, "phx_reply", {"status": "ok", "response": {"params": params, "auth_token": token}}]))
        .await;
}

/// The HTTP status refusing an upgrade of `path` (None: the upgrade succeeded).
async fn refusal(path: &str, vsn: Option<Vsn>, headers: &[(&str, &str)]) -> Option<u16> {
    let s = start_fixture().await;
    try_connect(s.addr, path, vsn, headers).await.err()
}

// ---- Handshake --------------------------------------------------------------------------------

#[tokio::test]
async fn an_upgrade_succeeds_with_an_allowed_origin_and_without_origin() {
    let allowed = [("origin", "https://example.com")];
    assert_eq!(
        refusal("/ws/websocket", Some(Vsn::V2), &allowed).await,
        None
    );
    assert_eq!(refusal("/ws/websocket", Some(Vsn::V2), &[]).await, None);
}

#[tokio::test]
async fn a_socket_mounted_at_several_segments_serves_joins() {
    let (_s, mut c) = fixture_client("/ws/admin/websocket", Vsn::V2).await;
    c.send(r#"["11","1","room:admin-lobby1","phx_join",{}]"#)
        .await;
    c.expect(r#"["11","1","room:admin-lobby1","phx_reply",{"status":"ok","response":{}}]"#)
        .await;
}

#[tokio::test]
async fn a_foreign_origin_is_refused_with_403() {
    let foreign = [("origin", "http://notallowed.com")];
    assert_eq!(
        refusal("/ws/websocket", Some(Vsn::V2), &foreign).await,
        Some(403)
    );
}

#[tokio::test]
async fn a_refused_connect_is_403() {
    let path = "/ws/websocket?reject=true";
    assert_eq!(refusal(path, Some(Vsn::V2), &[]).await, Some(403));
}

#[tokio::test]
async fn a_custom_connect_error_uses_the_handlers_status() {
    let path = "/ws/websocket?ratelimit=true";
    assert_eq!(refusal(path, Some(Vsn::V2), &[]).await, Some(429));
}

#[tokio::test]
async fn a_vsn_matching_no_serializer_is_403() {
    for path in ["/ws/websocket?vsn=123.1.1", "/ws/websocket?vsn=2.1.0"] {
        assert_eq!(refusal(path, None, &[]).await, Some(403), "{path}");
    }
}

#[tokio::test]
async fn an_invalid_or_non_string_vsn_is_403() {
    for path in ["/ws/websocket?vsn=abc", "/ws/websocket?vsn%5B%5D=2.0.0"] {
        assert_eq!(refusal(path, None, &[]).await, Some(403), "{path}");
    }
}

#[tokio::test]
async fn without_vsn_the_v1_serializer_is_used() {
    let s = start_fixture().await;
    let (mut c, _) = try_connect(s.addr, "/ws/websocket", None, &[])
        .await
        .expect("upgrade");
    c.send_text(r#"{"topic":"room:x","event":"phx_join","payload":{},"ref":"1","join_ref":"11"}"#)
        .await;
    // The V1 client checks the answer is an object of exactly topic/event/payload/ref.
    c.expect(r#"[null,"1","room:x","phx_reply",{"status":"ok","response":{}}]"#)
        .await;
}

#[tokio::test]
async fn requests_that_are_not_upgrades_get_400() {
    let s = start_fixture().await;
    let http = reqwest::Client::new();
    let url = s.http("/ws/websocket?vsn=2.0.0");
    for request in [http.get(&url), http.post(&url)] {
        assert_eq!(request.send().await.expect("request").status(), 400);
    }
}

#[tokio::test]
async fn configured_subprotocols_are_selected_or_refused() {
    let s = start_fixture().await;
    let path = "/ws/sip/websocket";
    let (_, proto) = try_connect(
        s.addr,
        path,
        Some(Vsn::V2),
        &[("sec-websocket-protocol", "sip")],
    )
    .await
    .expect("sip");
    assert_eq!(proto.as_deref(), Some("sip"));
    let (_, proto) = try_connect(s.addr, path, Some(Vsn::V2), &[])
        .await
        .expect("none");
    assert_eq!(proto, None);
    let mqtt = [("sec-websocket-protocol", "mqtt")];
    assert_eq!(refusal(path, Some(Vsn::V2), &mqtt).await, Some(403));
}

#[tokio::test]
async fn the_auth_token_subprotocol_is_answered_with_phoenix_and_reaches_connect() {
    let s = start_fixture().await;
    let offer = [(
        "sec-websocket-protocol",
        "phoenix, base64url.bearer.phx.c2VjcmV0",
    )];
    let (mut c, proto) = try_connect(s.addr, "/ws/websocket", Some(Vsn::V2), &offer)
        .await
        .expect("upgrade");
    assert_eq!(proto.as_deref(), Some("phoenix"));
    join_room(&mut c, "room:token", "1", "1").await;
    let params = json!({"vsn": "2.0.0"});
    expect_whoami(&mut c, "room:token", "1", "2", params, json!("secret")).await;
}

#[tokio::test]
async fn query_params_nested_params_and_path_vars_reach_connect() {
    let s = start_fixture().await;
    for (path, user_id, params) in [
        (
            "/ws/websocket?user_id=1001",
            json!("1001"),
            json!({"user_id": "1001", "vsn": "2.0.0"}),
        ),
        (
            "/ws/websocket?user%5Bid%5D=7",
            Value::Null,
            json!({"user": {"id": "7"}, "vsn": "2.0.0"}),
        ),
        (
            "/custom/var1/websocket",
            Value::Null,
            json!({"socket_var": "var1", "vsn": "2.0.0"}),
        ),
    ] {
        let mut c = connect(s.addr, path, Vsn::V2).await;
        join_room_as(&mut c, "room:params", "1", "1", user_id).await;
        expect_whoami(&mut c, "room:params", "1", "2", params, Value::Null).await;
    }
}

// ---- Heartbeat and idle timeout ---------------------------------------------------------------

async fn heartbeats_are_answered(vsn: Vsn) {
    let (_s, mut c) = fixture_client("/ws/websocket", vsn).await;
    c.heartbeat("1").await;
}
for_both_vsn!(heartbeats_are_answered);

#[tokio::test]
async fn a_quiet_client_is_closed_with_1001_after_the_idle_timeout() {
    let s = start_fixture_with_idle_timeout(Duration::from_millis(200)).await;
    let mut c = connect(s.addr, "/ws/websocket", Vsn::V2).await;
    c.heartbeat("1").await;
    let started = tokio::time::Instant::now();
    assert_eq!(c.expect_close().await, Some(1001));
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "closed after {:?}",
        started.elapsed()
    );
}

async fn heartbeats_work_before_and_during_joins_without_touching_channels(vsn: Vsn) {
    let (_s, mut c) = fixture_client("/ws/websocket", vsn).await;
    c.heartbeat("1").await;
    join_room(&mut c, "room:hb", "2", "2").await;
    c.heartbeat("3").await;
    let params = json!({"vsn": vsn.query()});
    expect_whoami(&mut c, "room:hb", "2", "4", params, Value::Null).await;
}
for_both_vsn!(heartbeats_work_before_and_during_joins_without_touching_channels);

// ---- Join / event / leave ---------------------------------------------------------------------

async fn join_event_leave_and_events_after_leave(vsn: Vsn) {
    let (s, mut c) = fixture_client("/ws/websocket", vsn).await;
    join_room(&mut c, "room:lobby", "11", "1").await;
    c.send(r#"["11","2","room:lobby","new_msg",{"body":"hi!"}]"#)
        .await;
    c.expect_unordered([
        r#"["11","2","room:lobby","phx_reply",{"status":"ok","response":{}}]"#,
        r#"["11",null,"room:lobby","new_msg",{"body":"hi!","transport":":websocket"}]"#,
    ])
    .await;
    c.send(r#"["11","3","room:lobby","phx_leave",{}]"#).await;
    c.expect(r#"["11","3","room:lobby","phx_reply",{"status":"ok","response":{}}]"#)
        .await;
    c.expect(r#"["11","11","room:lobby","phx_close",{}]"#).await;
    c.expect(r#"["11",null,"room:lobby","you_left",{"message":"bye!"}]"#)
        .await;
    assert!(s.wait_unsubscribed("room:lobby").await, "channel gone");
    // After the leave, and on a topic never joined: unmatched, with a null join_ref.
    c.send(r#"["11","4","room:lobby","new_msg",{"body":"Should ignore"}]"#)
        .await;
    c.expect(r#"[null,"4","room:lobby","phx_reply",{"status":"error","response":{"reason":"unmatched topic"}}]"#)
        .await;
    c.send(r#"["12","5","room:never","new_msg",{"body":"x"}]"#)
        .await;
    c.expect(r#"[null,"5","room:never","phx_reply",{"status":"error","response":{"reason":"unmatched topic"}}]"#)
        .await;
    c.expect_silence().await;
}
for_both_vsn!(join_event_leave_and_events_after_leave);

async fn joining_an_unrouted_topic_replies_unmatched_with_null_join_ref(vsn: Vsn) {
    let (_s, mut c) = fixture_client("/ws/websocket", vsn).await;
    c.send(r#"["11","1","unmatched-topic","phx_join",{}]"#)
        .await;
    c.expect(r#"[null,"1","unmatched-topic","phx_reply",{"status":"error","response":{"reason":"unmatched topic"}}]"#)
        .await;
}
for_both_vsn!(joining_an_unrouted_topic_replies_unmatched_with_null_join_ref);

async fn leaving_an_unjoined_topic_replies_ok_without_close(vsn: Vsn) {
    let (_s, mut c) = fixture_client("/ws/websocket", vsn).await;
    c.send(r#"["5","6","room:nope","phx_leave",{}]"#).await;
    c.expect(r#"["5","6","room:nope","phx_reply",{"status":"ok","response":{}}]"#)
        .await;
    c.expect_silence().await;
}
for_both_vsn!(leaving_an_unjoined_topic_replies_ok_without_close);

async fn a_crashing_channel_gets_phx_error_and_the_socket_survives(vsn: Vsn) {
    let (_s, mut c) = fixture_client("/ws/websocket", vsn).await;
    join_room(&mut c, "room:lobby", "11", "1").await;
    join_room(&mut c, "room:other", "12", "2").await;
    c.send(r#"["11","3","room:lobby","boom",{}]"#).await;
    c.expect(r#"["11","11","room:lobby","phx_error",{"reason":"channel_crash"}]"#)
        .await;
    // terminate's push may follow; never a reply to ref "3".
    for f in c.recv_until_quiet().await {
        assert_ne!(f[3], "phx_reply", "no reply to the crashing message: {f}");
    }
    let params = json!({"vsn": vsn.query()});
    expect_whoami(&mut c, "room:other", "12", "4", params, Value::Null).await;
    c.heartbeat("5").await;
}
for_both_vsn!(a_crashing_channel_gets_phx_error_and_the_socket_survives);

async fn join_errors_crashes_successes_and_server_closes(vsn: Vsn) {
    let (_s, mut c) = fixture_client("/ws/websocket", vsn).await;
    for (sent, answer) in [
        (
            r#"["11","1","custom:ignore","phx_join",{"action":"ignore"}]"#,
            r#"["11","1","custom:ignore","phx_reply",{"status":"error","response":{"action":"ignore"}}]"#,
        ),
        (
            r#"["12","2","custom:error","phx_join",{"action":"error"}]"#,
            r#"["12","2","custom:error","phx_reply",{"status":"error","response":{"reason":"join crashed"}}]"#,
        ),
        (
            r#"["13","3","custom:ok","phx_join",{"action":"ok"}]"#,
            r#"["13","3","custom:ok","phx_reply",{"status":"ok","response":{"action":"ok"}}]"#,
        ),
        (
            r#"["13","4","custom:ok","close",{"body":"bye!"}]"#,
            r#"["13","13","custom:ok","phx_close",{}]"#,
        ),
    ] {
        c.send(sent).await;
        c.expect(answer).await;
    }
}
for_both_vsn!(join_errors_crashes_successes_and_server_closes);

async fn a_duplicate_join_replies_first_then_closes_the_old_instance(vsn: Vsn) {
    let (s, mut c) = fixture_client("/ws/websocket", vsn).await;
    join_room(&mut c, "room:joiner", "11", "1").await;
    c.send(r#"["12","2","room:joiner","phx_join",{}]"#).await;
    let frames = c.recv_until_quiet().await;
    let position = |frame: &str| frames.iter().position(|f| *f == vsn.expected(frame));
    let reply = position(r#"["12","2","room:joiner","phx_reply",{"status":"ok","response":{}}]"#);
    let close = position(r#"["11","11","room:joiner","phx_close",{}]"#);
    assert!(
        reply.is_some() && close.is_some() && reply < close,
        "{frames:?}"
    );
    assert_eq!(
        s.pubsub.subscriber_count("room:joiner"),
        1,
        "exactly one channel instance remains"
    );
}
for_both_vsn!(a_duplicate_join_replies_first_then_closes_the_old_instance);

#[tokio::test]
async fn the_101st_join_is_refused() {
    let (_s, mut c) = fixture_client("/ws/websocket", Vsn::V2).await;
    for i in 1..=100 {
        let (topic, jr, r) = (
            format!("room:limit-{i}"),
            (10 + i).to_string(),
            i.to_string(),
        );
        join_room(&mut c, &topic, &jr, &r).await;
    }
    c.send(r#"["111","101","room:limit-101","phx_join",{}]"#)
        .await;
    c.expect(r#"["111","101","room:limit-101","phx_reply",{"status":"error","response":{"reason":"too many channels joined"}}]"#)
        .await;
}

#[tokio::test]
async fn a_configured_channel_limit_is_enforced() {
    let (_s, mut c) = fixture_client("/ws/limited/websocket", Vsn::V2).await;
    join_room(&mut c, "room:a", "1", "1").await;
    c.send(r#"["2","2","room:b","phx_join",{}]"#).await;
    c.expect(r#"["2","2","room:b","phx_reply",{"status":"error","response":{"reason":"too many channels joined"}}]"#)
        .await;
}

async fn stale_join_refs_are_dropped_and_null_join_refs_processed(vsn: Vsn) {
    let (_s, mut c) = fixture_client("/ws/websocket", vsn).await;
    join_room(&mut c, "room:lobby", "11", "1").await;
    c.send(r#"["99","5","room:lobby","new_msg",{"body":"x"}]"#)
        .await;
    c.expect_silence().await;
    c.send(r#"[null,"6","room:lobby","new_msg",{"body":"y"}]"#)
        .await;
    c.expect_unordered([
        r#"["11","6","room:lobby","phx_reply",{"status":"ok","response":{}}]"#,
        r#"["11",null,"room:lobby","new_msg",{"body":"y","transport":":websocket"}]"#,
    ])
    .await;
}
for_both_vsn!(stale_join_refs_are_dropped_and_null_join_refs_processed);

async fn stale_leaves_are_ignored_and_null_join_ref_leaves_accepted(vsn: Vsn) {
    let (_s, mut c) = fixture_client("/ws/websocket", vsn).await;
    join_room(&mut c, "room:lobby", "11", "1").await;
    c.send(r#"["stale","stale","room:lobby","phx_leave",{}]"#)
        .await;
    c.expect_silence().await;
    c.send(r#"[null,"2","room:lobby","phx_leave",{}]"#).await;
    c.expect(r#"["11","2","room:lobby","phx_reply",{"status":"ok","response":{}}]"#)
        .await;
    c.expect(r#"["11","11","room:lobby","phx_close",{}]"#).await;
    c.expect(r#"["11",null,"room:lobby","you_left",{"message":"bye!"}]"#)
        .await;
}
for_both_vsn!(stale_leaves_are_ignored_and_null_join_ref_leaves_accepted);

#[tokio::test]
async fn a_disconnect_broadcast_closes_the_socket_with_1001_and_ends_its_channels() {
    let (s, mut c) = fixture_client("/ws/websocket?user_id=1001", Vsn::V2).await;
    join_room_as(&mut c, "room:wsdisconnect1", "1", "1", json!("1001")).await;
    join_room_as(&mut c, "room:wsdisconnect2", "2", "2", json!("1001")).await;
    let mut other = connect(s.addr, "/ws/websocket?user_id=1002", Vsn::V2).await;
    s.endpoint.pubsub().broadcast(
        "user_sockets:1001",
        "disconnect",
        videoroom::phoenix::Payload::empty(),
    );
    assert_eq!(c.expect_close().await, Some(1001));
    assert!(s.wait_unsubscribed("room:wsdisconnect1").await);
    assert!(s.wait_unsubscribed("room:wsdisconnect2").await);
    other.heartbeat("1").await;
}

#[tokio::test]
async fn a_client_close_terminates_every_channel_silently() {
    let (s, mut c) = fixture_client("/ws/websocket", Vsn::V2).await;
    join_room(&mut c, "room:closing1", "1", "1").await;
    join_room(&mut c, "room:closing2", "2", "2").await;
    c.close().await;
    assert!(s.wait_unsubscribed("room:closing1").await);
    assert!(s.wait_unsubscribed("room:closing2").await);
}

#[tokio::test]
async fn malformed_frames_close_the_connection_with_1011_without_a_reply() {
    let s = start_fixture().await;
    for bad in [
        r#"{"topic":"x"}"#,
        "[1,2]",
        "not json",
        r#"[null,"1",7,"e",{}]"#,
    ] {
        let mut c = connect(s.addr, "/ws/websocket", Vsn::V2).await;
        c.send_text(bad).await;
        assert_eq!(c.recv().await, Received::Closed(Some(1011)), "{bad}");
    }
    let mut c = connect(s.addr, "/ws/websocket", Vsn::V2).await;
    c.send_binary(vec![0x05, 0, 0, 0, 0]).await;
    c.expect_closed(1011).await;
    // A V2 array on a V1 socket is malformed too.
    let mut c = connect(s.addr, "/ws/websocket", Vsn::V1).await;
    c.send_text(r#"["1","1","room:x","phx_join",{}]"#).await;
    c.expect_closed(1011).await;
}

// ---- Binary -------------------------------------------------------------------------------------

#[tokio::test]
async fn binary_pushes_get_binary_replies_and_binary_pushes() {
    let (_s, mut c) = fixture_client("/ws/websocket", Vsn::V2).await;
    join_room(&mut c, "room:bin", "11", "1").await;
    // Kind 0 (push): the sizes of join_ref, ref, topic and event (2, 1, 8, 12), then "11", "2",
    // "room:bin", "binary_event" and the payload 1, 2.
    let push = b"\x00\x02\x01\x08\x0c112room:binbinary_event\x01\x02".to_vec();
    c.send_binary(push).await;
    // Kind 1 (reply): the sizes of join_ref, ref, topic and status, the strings, the payload
    // 1, 2, 3, 4; the server's kind 0 push has no ref.
    let reply = b"\x01\x02\x01\x08\x02112room:binok\x01\x02\x03\x04".to_vec();
    let server_push = b"\x00\x02\x08\x0c11room:binbinary_event\x00\x01".to_vec();
    let got = [c.recv().await, c.recv().await];
    assert!(got.contains(&Received::Binary(reply)), "{got:?}");
    assert!(got.contains(&Received::Binary(server_push)), "{got:?}");
}

#[tokio::test]
async fn binary_broadcasts_use_kind_2_frames() {
    let (s, mut c) = fixture_client("/ws/websocket", Vsn::V2).await;
    join_ok(&mut c, "echo:b", "1", json!({})).await;
    s.endpoint.pubsub().broadcast(
        "echo:b",
        "blob",
        videoroom::phoenix::Payload::Binary(bytes::Bytes::from_static(&[9, 8])),
    );
    // Kind 2 (broadcast): sizes 6, 4, then "echo:b", "blob" and the payload 9, 8.
    c.expect_binary(b"\x02\x06\x04echo:bblob\x09\x08").await;
}

// ---- Presence -----------------------------------------------------------------------------------

/// The first `presence_diff` `c` receives (other frames skipped).
async fn next_presence_diff(c: &mut Client) -> Value {
    loop {
        let f = c.recv_json().await;
        if f[3] == "presence_diff" {
            return f;
        }
    }
}

/// Joins `room:p` tracking presence `key` (ref = join_ref = `r`) and returns the
/// `presence_state` among the four frames that follow the reply (user_entered, joined,
/// presence_state and the own presence_diff, in no fixed order across their sources).
async fn join_presence(c: &mut Client, key: &str, r: &str) -> Value {
    join_ok(c, "room:p", r, json!({"presence_key": key})).await;
    let mut state = None;
    for _ in 0..4 {
        let f = c.recv_json().await;
        if f[3] == "presence_state" {
            state = Some(f);
        }
    }
    let state = state.unwrap_or_else(|| panic!("no presence_state for {key}"));
    assert_eq!(state[0], json!(r));
    assert_eq!(state[1], Value::Null);
    state
}

#[tokio::test]
async fn presence_state_follows_a_join_and_diffs_reach_everyone() {
    let s = start_fixture().await;
    let mut a = connect(s.addr, "/ws/websocket", Vsn::V2).await;
    let state = join_presence(&mut a, "a", "1").await;
    assert!(state[4]["a"]["metas"][0]["phx_ref"].is_string());

    let mut b = connect(s.addr, "/ws/websocket", Vsn::V2).await;
    let state = join_presence(&mut b, "b", "7").await;
    assert!(
        state[4]["a"]["metas"].is_array() && state[4]["b"]["metas"].is_array(),
        "{state}"
    );

    let diff = next_presence_diff(&mut a).await;
    assert_eq!(diff[0], Value::Null);
    assert_eq!(diff[4]["joins"]["b"]["metas"][0]["name"], "b");
    assert_eq!(diff[4]["leaves"], json!({}));

    b.send(r#"["7","8","room:p","phx_leave",{}]"#).await;
    let leave = next_presence_diff(&mut a).await;
    assert_eq!(leave[4]["leaves"]["b"]["metas"][0]["name"], "b");
    assert_eq!(leave[4]["joins"], json!({}));
}

// ---- Limits, drain, server-side messages, back-pressure ----------------------------------------

#[tokio::test]
async fn an_oversize_frame_closes_the_connection_with_1009() {
    let (_s, mut c) = fixture_client("/ws/websocket", Vsn::V2).await;
    let big = format!(
        r#"[null,"1","phoenix","heartbeat",{{"pad":"{}"}}]"#,
        "x".repeat(100 * 1024)
    );
    c.send_text(&big).await;
    c.expect_closed(1009).await;
}

#[tokio::test]
async fn a_text_frame_with_invalid_utf8_closes_the_connection_with_1007() {
    let (_s, mut c) = fixture_client("/ws/websocket", Vsn::V2).await;
    c.send_invalid_utf8_text().await;
    c.expect_closed(1007).await;
}

#[tokio::test]
async fn draining_closes_every_socket_with_1012() {
    let s = start_fixture().await;
    let mut a = echo_client(&s, Vsn::V2, "echo:1").await;
    let mut b = connect(s.addr, "/socket/websocket", Vsn::V1).await;
    b.heartbeat("1").await;
    s.endpoint.drain();
    assert_eq!(a.expect_close().await, Some(1012));
    assert_eq!(b.expect_close().await, Some(1012));
    // A bound, not a measurement: it returns as soon as the last socket task has ended.
    s.endpoint.wait_drained(Duration::from_secs(10)).await;
    assert_eq!(s.endpoint.live_sockets(), 0);
}

async fn server_side_messages_reach_handle_info_and_can_reply_later(vsn: Vsn) {
    let (_s, mut c) = fixture_client("/socket/websocket", vsn).await;
    join_room(&mut c, "room:later", "1", "1").await;
    c.send(r#"["1","5","room:later","later",{"x":1}]"#).await;
    c.expect(r#"["1",null,"room:later","info",{"value":{"x":1}}]"#)
        .await;
    c.expect(r#"["1","5","room:later","phx_reply",{"status":"ok","response":{"later":{"x":1}}}]"#)
        .await;
}
for_both_vsn!(server_side_messages_reach_handle_info_and_can_reply_later);

#[tokio::test]
async fn an_echo_channel_pushes_and_replies_every_payload() {
    let (_s, mut c) = fixture_client("/socket/websocket", Vsn::V2).await;
    join_ok(&mut c, "echo:x", "1", json!({})).await;
    c.send(r#"["1","2","echo:x","ping",{"n":1}]"#).await;
    c.expect_unordered([
        r#"["1",null,"echo:x","ping",{"n":1}]"#,
        r#"["1","2","echo:x","phx_reply",{"status":"ok","response":{"n":1}}]"#,
    ])
    .await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_instead_of_buffered_forever() {
    let s = start_fixture().await;
    let slow = echo_client(&s, Vsn::V2, "echo:flood").await;
    let mut fast = echo_client(&s, Vsn::V2, "echo:flood").await;
    let reader = tokio::spawn(async move {
        let mut n = 0usize;
        while let Some(Received::Json(_)) = fast.recv_within(Duration::from_secs(2)).await {
            n += 1;
        }
        n
    });
    let payload = json!({"pad": "y".repeat(16 * 1024)});
    // Up to ~80 MB towards a client that reads nothing: far beyond socket buffers plus queues.
    let mut sent = 0;
    while sent < 5000 && s.pubsub.subscriber_count("echo:flood") == 2 {
        s.endpoint.pubsub().broadcast(
            "echo:flood",
            "flood",
            videoroom::phoenix::Payload::Json(payload.clone()),
        );
        sent += 1;
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    assert_eq!(
        s.pubsub.subscriber_count("echo:flood"),
        1,
        "exactly the non-reading socket was closed after {sent} broadcasts"
    );
    let received = reader.await.expect("reader");
    assert!(
        received >= sent,
        "the reading client got every broadcast ({received} of {sent})"
    );
    drop(slow);
}
