//! Phoenix wire conformance over real WebSockets: cases 1–33 and 53 of §10 of
//! `phoenix-protocol.md` (34–35 are unit tests in `src/phoenix/serializer_tests.rs`; LongPoll
//! cases 36–52 are in `phoenix_longpoll.rs`). Channel cases run for V1 and V2.

mod common;

use common::{Received, Vsn, WsClient, connect, start_fixture, try_connect};
use serde_json::{Value, json};
use std::time::Duration;

/// Runs an async test body once per serializer version.
macro_rules! for_both_vsn {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn v1() {
                super::$name(super::Vsn::V1).await
            }
            #[tokio::test]
            async fn v2() {
                super::$name(super::Vsn::V2).await
            }
        }
    };
}

fn ok_reply() -> Value {
    json!({"status": "ok", "response": {}})
}

fn unmatched() -> Value {
    json!({"status": "error", "response": {"reason": "unmatched topic"}})
}

/// Joins a RoomChannel topic and consumes the `user_entered` / `joined` frames after the reply.
async fn join_room(c: &mut WsClient, topic: &str, jr: &str, r: &str) {
    let v = c.vsn;
    c.push(json!(jr), json!(r), topic, "phx_join", json!({}))
        .await;
    assert_eq!(
        c.recv_json().await,
        v.expect(json!(jr), json!(r), topic, "phx_reply", ok_reply())
    );
    let rest = c.recv_n(2).await;
    assert!(
        rest.contains(&v.expect(
            Value::Null,
            Value::Null,
            topic,
            "user_entered",
            json!({"user": null})
        )),
        "{rest:?}"
    );
    let joined = rest
        .iter()
        .find(|f| f[3] == "joined")
        .unwrap_or_else(|| panic!("no joined push: {rest:?}"));
    let want = v.expect(json!(jr), Value::Null, topic, "joined", Value::Null);
    assert_eq!(
        joined.as_array().unwrap()[..4],
        want.as_array().unwrap()[..4],
        "{rest:?}"
    );
    assert_eq!(joined[4]["status"], "connected");
}

// ---- 10.1 Handshake -------------------------------------------------------------------------

#[tokio::test]
async fn case01_upgrade_succeeds_with_an_allowed_origin_and_without_origin() {
    let s = start_fixture().await;
    assert!(
        try_connect(
            s.addr,
            "/ws/websocket",
            Some(Vsn::V2),
            &[("origin", "https://example.com")]
        )
        .await
        .is_ok()
    );
    assert!(
        try_connect(s.addr, "/ws/websocket", Some(Vsn::V2), &[])
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn case02_a_socket_mounted_at_several_segments_serves_joins() {
    let s = start_fixture().await;
    let mut c = connect(s.addr, "/ws/admin/websocket", Vsn::V2).await;
    c.push(
        json!("11"),
        json!("1"),
        "room:admin-lobby1",
        "phx_join",
        json!({}),
    )
    .await;
    assert_eq!(
        c.recv_json().await,
        json!(["11", "1", "room:admin-lobby1", "phx_reply", ok_reply()])
    );
}

#[tokio::test]
async fn case03_a_foreign_origin_is_refused_with_403() {
    let s = start_fixture().await;
    let r = try_connect(
        s.addr,
        "/ws/websocket",
        Some(Vsn::V2),
        &[("origin", "http://notallowed.com")],
    )
    .await;
    assert_eq!(r.err(), Some(403));
}

#[tokio::test]
async fn case04_a_refused_connect_is_403() {
    let s = start_fixture().await;
    assert_eq!(
        try_connect(s.addr, "/ws/websocket?reject=true", Some(Vsn::V2), &[])
            .await
            .err(),
        Some(403)
    );
}

#[tokio::test]
async fn case05_a_custom_connect_error_uses_the_handlers_status() {
    let s = start_fixture().await;
    assert_eq!(
        try_connect(s.addr, "/ws/websocket?ratelimit=true", Some(Vsn::V2), &[])
            .await
            .err(),
        Some(429)
    );
}

#[tokio::test]
async fn case06_a_vsn_matching_no_serializer_is_403() {
    let s = start_fixture().await;
    assert_eq!(
        try_connect(s.addr, "/ws/websocket?vsn=123.1.1", None, &[])
            .await
            .err(),
        Some(403)
    );
    assert_eq!(
        try_connect(s.addr, "/ws/websocket?vsn=2.1.0", None, &[])
            .await
            .err(),
        Some(403)
    );
}

#[tokio::test]
async fn case07_an_invalid_or_non_string_vsn_is_403() {
    let s = start_fixture().await;
    assert_eq!(
        try_connect(s.addr, "/ws/websocket?vsn=abc", None, &[])
            .await
            .err(),
        Some(403)
    );
    assert_eq!(
        try_connect(s.addr, "/ws/websocket?vsn%5B%5D=2.0.0", None, &[])
            .await
            .err(),
        Some(403)
    );
}

#[tokio::test]
async fn case08_without_vsn_the_v1_serializer_is_used() {
    let s = start_fixture().await;
    let (mut c, _) = try_connect(s.addr, "/ws/websocket", None, &[])
        .await
        .expect("upgrade");
    c.send_text(r#"{"topic":"room:x","event":"phx_join","payload":{},"ref":"1","join_ref":"11"}"#)
        .await;
    // `recv_json` (V1 mode) asserts the object has exactly topic/event/payload/ref.
    assert_eq!(
        c.recv_json().await,
        json!([null, "1", "room:x", "phx_reply", ok_reply()])
    );
}

#[tokio::test]
async fn case09_requests_that_are_not_upgrades_get_400() {
    let s = start_fixture().await;
    let http = reqwest::Client::new();
    let get = http
        .get(s.http("/ws/websocket?vsn=2.0.0"))
        .send()
        .await
        .expect("GET");
    assert_eq!(get.status(), 400);
    let post = http
        .post(s.http("/ws/websocket?vsn=2.0.0"))
        .send()
        .await
        .expect("POST");
    assert_eq!(post.status(), 400);
}

#[tokio::test]
async fn case10_configured_subprotocols_are_selected_or_refused() {
    let s = start_fixture().await;
    let (_, proto) = try_connect(
        s.addr,
        "/ws/sip/websocket",
        Some(Vsn::V2),
        &[("sec-websocket-protocol", "sip")],
    )
    .await
    .expect("sip");
    assert_eq!(proto.as_deref(), Some("sip"));
    let (_, proto) = try_connect(s.addr, "/ws/sip/websocket", Some(Vsn::V2), &[])
        .await
        .expect("none");
    assert_eq!(proto, None);
    let refused = try_connect(
        s.addr,
        "/ws/sip/websocket",
        Some(Vsn::V2),
        &[("sec-websocket-protocol", "mqtt")],
    )
    .await;
    assert_eq!(refused.err(), Some(403));
}

#[tokio::test]
async fn case11_the_auth_token_subprotocol_is_answered_with_phoenix_and_reaches_connect() {
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
    c.push(json!("1"), json!("2"), "room:token", "whoami", json!({}))
        .await;
    let reply = c.recv_json().await;
    assert_eq!(reply[4]["response"]["auth_token"], "secret");
}

#[tokio::test]
async fn case12_query_params_nested_params_and_path_vars_reach_connect() {
    let s = start_fixture().await;
    async fn params_of(addr: std::net::SocketAddr, path: &str) -> Value {
        let mut c = connect(addr, path, Vsn::V2).await;
        join_room(&mut c, "room:params", "1", "1").await;
        c.push(json!("1"), json!("2"), "room:params", "whoami", json!({}))
            .await;
        c.recv_json().await[4]["response"]["params"].clone()
    }
    assert_eq!(
        params_of(s.addr, "/ws/websocket?user_id=1001").await,
        json!({"user_id": "1001", "vsn": "2.0.0"})
    );
    assert_eq!(
        params_of(s.addr, "/ws/websocket?user%5Bid%5D=7").await,
        json!({"user": {"id": "7"}, "vsn": "2.0.0"})
    );
    assert_eq!(
        params_of(s.addr, "/custom/var1/websocket").await,
        json!({"socket_var": "var1", "vsn": "2.0.0"})
    );
}

// ---- 10.2 Heartbeat and idle timeout --------------------------------------------------------

async fn case13_heartbeats_are_answered(vsn: Vsn) {
    let s = start_fixture().await;
    let mut c = connect(s.addr, "/ws/websocket", vsn).await;
    c.heartbeat("1").await;
}
for_both_vsn!(case13_heartbeats_are_answered);

#[tokio::test]
async fn case14_a_quiet_client_is_closed_with_1001_after_the_idle_timeout() {
    let s = start_fixture().await;
    let mut c = connect(s.addr, "/ws/websocket", Vsn::V2).await;
    c.heartbeat("1").await;
    let started = tokio::time::Instant::now();
    let code = c.expect_close().await;
    assert_eq!(code, Some(1001));
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "closed after {:?}",
        started.elapsed()
    );
}

async fn case15_heartbeats_work_before_and_during_joins_without_touching_channels(vsn: Vsn) {
    let s = start_fixture().await;
    let mut c = connect(s.addr, "/ws/websocket", vsn).await;
    c.heartbeat("1").await;
    join_room(&mut c, "room:hb", "2", "2").await;
    c.heartbeat("3").await;
    c.push(json!("2"), json!("4"), "room:hb", "whoami", json!({}))
        .await;
    assert_eq!(c.recv_json().await[1], json!("4"));
}
for_both_vsn!(case15_heartbeats_work_before_and_during_joins_without_touching_channels);

// ---- 10.3 Join / event / leave --------------------------------------------------------------

async fn case16_to_20_join_event_leave_and_events_after_leave(vsn: Vsn) {
    let s = start_fixture().await;
    let mut c = connect(s.addr, "/ws/websocket", vsn).await;
    // 16
    join_room(&mut c, "room:lobby", "11", "1").await;
    // 17
    c.push(
        json!("11"),
        json!("2"),
        "room:lobby",
        "new_msg",
        json!({"body": "hi!"}),
    )
    .await;
    let got = c.recv_n(2).await;
    assert!(
        got.contains(&vsn.expect(
            json!("11"),
            json!("2"),
            "room:lobby",
            "phx_reply",
            ok_reply()
        )),
        "{got:?}"
    );
    let pushed = vsn.expect(
        json!("11"),
        Value::Null,
        "room:lobby",
        "new_msg",
        json!({"body": "hi!", "transport": ":websocket"}),
    );
    assert!(got.contains(&pushed), "{got:?}");
    // 18
    c.push(
        json!("11"),
        json!("3"),
        "room:lobby",
        "phx_leave",
        json!({}),
    )
    .await;
    assert_eq!(
        c.recv_json().await,
        vsn.expect(
            json!("11"),
            json!("3"),
            "room:lobby",
            "phx_reply",
            ok_reply()
        )
    );
    assert_eq!(
        c.recv_json().await,
        vsn.expect(
            json!("11"),
            json!("11"),
            "room:lobby",
            "phx_close",
            json!({})
        )
    );
    assert_eq!(
        c.recv_json().await,
        vsn.expect(
            json!("11"),
            Value::Null,
            "room:lobby",
            "you_left",
            json!({"message": "bye!"})
        )
    );
    assert!(s.wait_unsubscribed("room:lobby").await, "channel gone");
    // 19
    c.push(
        json!("11"),
        json!("4"),
        "room:lobby",
        "new_msg",
        json!({"body": "Should ignore"}),
    )
    .await;
    assert_eq!(
        c.recv_json().await,
        vsn.expect(
            Value::Null,
            json!("4"),
            "room:lobby",
            "phx_reply",
            unmatched()
        )
    );
    // 20
    c.push(
        json!("12"),
        json!("5"),
        "room:never",
        "new_msg",
        json!({"body": "x"}),
    )
    .await;
    assert_eq!(
        c.recv_json().await,
        vsn.expect(
            Value::Null,
            json!("5"),
            "room:never",
            "phx_reply",
            unmatched()
        )
    );
    c.expect_silence().await;
}
for_both_vsn!(case16_to_20_join_event_leave_and_events_after_leave);

async fn case21_joining_an_unrouted_topic_replies_unmatched_with_null_join_ref(vsn: Vsn) {
    let s = start_fixture().await;
    let mut c = connect(s.addr, "/ws/websocket", vsn).await;
    c.push(
        json!("11"),
        json!("1"),
        "unmatched-topic",
        "phx_join",
        json!({}),
    )
    .await;
    let got = c.recv_json().await;
    assert_eq!(
        got,
        vsn.expect(
            Value::Null,
            json!("1"),
            "unmatched-topic",
            "phx_reply",
            unmatched()
        )
    );
    assert_eq!(got[0], Value::Null);
}
for_both_vsn!(case21_joining_an_unrouted_topic_replies_unmatched_with_null_join_ref);

async fn case22_leaving_an_unjoined_topic_replies_ok_without_close(vsn: Vsn) {
    let s = start_fixture().await;
    let mut c = connect(s.addr, "/ws/websocket", vsn).await;
    c.push(json!("5"), json!("6"), "room:nope", "phx_leave", json!({}))
        .await;
    assert_eq!(
        c.recv_json().await,
        vsn.expect(json!("5"), json!("6"), "room:nope", "phx_reply", ok_reply())
    );
    c.expect_silence().await;
}
for_both_vsn!(case22_leaving_an_unjoined_topic_replies_ok_without_close);

async fn case23_a_crashing_channel_gets_phx_error_and_the_socket_survives(vsn: Vsn) {
    let s = start_fixture().await;
    let mut c = connect(s.addr, "/ws/websocket", vsn).await;
    join_room(&mut c, "room:lobby", "11", "1").await;
    join_room(&mut c, "room:other", "12", "2").await;
    c.push(json!("11"), json!("3"), "room:lobby", "boom", json!({}))
        .await;
    assert_eq!(
        c.recv_json().await,
        vsn.expect(
            json!("11"),
            json!("11"),
            "room:lobby",
            "phx_error",
            json!({"reason": "channel_crash"})
        )
    );
    // terminate's push may follow; never a reply to ref "3".
    while let Some(Received::Json(f)) = c.recv_within(common::QUIET).await {
        assert_ne!(f[3], "phx_reply", "no reply to the crashing message: {f}");
    }
    c.push(json!("12"), json!("4"), "room:other", "whoami", json!({}))
        .await;
    assert_eq!(c.recv_json().await[1], json!("4"));
    c.heartbeat("5").await;
}
for_both_vsn!(case23_a_crashing_channel_gets_phx_error_and_the_socket_survives);

async fn case24_join_errors_crashes_successes_and_server_closes(vsn: Vsn) {
    let s = start_fixture().await;
    let mut c = connect(s.addr, "/ws/websocket", vsn).await;
    c.push(
        json!("11"),
        json!("1"),
        "custom:ignore",
        "phx_join",
        json!({"action": "ignore"}),
    )
    .await;
    assert_eq!(
        c.recv_json().await,
        vsn.expect(
            json!("11"),
            json!("1"),
            "custom:ignore",
            "phx_reply",
            json!({"status": "error", "response": {"action": "ignore"}})
        )
    );
    c.push(
        json!("12"),
        json!("2"),
        "custom:error",
        "phx_join",
        json!({"action": "error"}),
    )
    .await;
    assert_eq!(
        c.recv_json().await,
        vsn.expect(
            json!("12"),
            json!("2"),
            "custom:error",
            "phx_reply",
            json!({"status": "error", "response": {"reason": "join crashed"}})
        )
    );
    c.push(
        json!("13"),
        json!("3"),
        "custom:ok",
        "phx_join",
        json!({"action": "ok"}),
    )
    .await;
    assert_eq!(
        c.recv_json().await,
        vsn.expect(
            json!("13"),
            json!("3"),
            "custom:ok",
            "phx_reply",
            json!({"status": "ok", "response": {"action": "ok"}})
        )
    );
    c.push(
        json!("13"),
        json!("4"),
        "custom:ok",
        "close",
        json!({"body": "bye!"}),
    )
    .await;
    assert_eq!(
        c.recv_json().await,
        vsn.expect(
            json!("13"),
            json!("13"),
            "custom:ok",
            "phx_close",
            json!({})
        )
    );
}
for_both_vsn!(case24_join_errors_crashes_successes_and_server_closes);

async fn case25_a_duplicate_join_replies_first_then_closes_the_old_instance(vsn: Vsn) {
    let s = start_fixture().await;
    let mut c = connect(s.addr, "/ws/websocket", vsn).await;
    join_room(&mut c, "room:joiner", "11", "1").await;
    c.push(
        json!("12"),
        json!("2"),
        "room:joiner",
        "phx_join",
        json!({}),
    )
    .await;
    let mut frames = Vec::new();
    while let Some(Received::Json(f)) = c.recv_within(common::QUIET).await {
        frames.push(f);
    }
    let reply = frames.iter().position(|f| {
        *f == vsn.expect(
            json!("12"),
            json!("2"),
            "room:joiner",
            "phx_reply",
            ok_reply(),
        )
    });
    let close = frames.iter().position(|f| {
        *f == vsn.expect(
            json!("11"),
            json!("11"),
            "room:joiner",
            "phx_close",
            json!({}),
        )
    });
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
for_both_vsn!(case25_a_duplicate_join_replies_first_then_closes_the_old_instance);

#[tokio::test]
async fn case26_the_101st_join_is_refused() {
    let s = start_fixture().await;
    let mut c = connect(s.addr, "/ws/websocket", Vsn::V2).await;
    for i in 1..=100 {
        join_room(
            &mut c,
            &format!("room:limit-{i}"),
            &(10 + i).to_string(),
            &i.to_string(),
        )
        .await;
    }
    c.push(
        json!("111"),
        json!("101"),
        "room:limit-101",
        "phx_join",
        json!({}),
    )
    .await;
    assert_eq!(
        c.recv_json().await,
        json!(["111", "101", "room:limit-101", "phx_reply", {"status": "error", "response": {"reason": "too many channels joined"}}])
    );
}

#[tokio::test]
async fn case27_a_configured_channel_limit_is_enforced() {
    let s = start_fixture().await;
    let mut c = connect(s.addr, "/ws/limited/websocket", Vsn::V2).await;
    join_room(&mut c, "room:a", "1", "1").await;
    c.push(json!("2"), json!("2"), "room:b", "phx_join", json!({}))
        .await;
    assert_eq!(
        c.recv_json().await,
        json!(["2", "2", "room:b", "phx_reply", {"status": "error", "response": {"reason": "too many channels joined"}}])
    );
}

async fn case28_stale_join_refs_are_dropped_and_null_join_refs_processed(vsn: Vsn) {
    let s = start_fixture().await;
    let mut c = connect(s.addr, "/ws/websocket", vsn).await;
    join_room(&mut c, "room:lobby", "11", "1").await;
    c.push(
        json!("99"),
        json!("5"),
        "room:lobby",
        "new_msg",
        json!({"body": "x"}),
    )
    .await;
    c.expect_silence().await;
    c.push(
        Value::Null,
        json!("6"),
        "room:lobby",
        "new_msg",
        json!({"body": "y"}),
    )
    .await;
    let got = c.recv_n(2).await;
    assert!(
        got.contains(&vsn.expect(
            json!("11"),
            json!("6"),
            "room:lobby",
            "phx_reply",
            ok_reply()
        )),
        "{got:?}"
    );
}
for_both_vsn!(case28_stale_join_refs_are_dropped_and_null_join_refs_processed);

async fn case29_stale_leaves_are_ignored_and_null_join_ref_leaves_accepted(vsn: Vsn) {
    let s = start_fixture().await;
    let mut c = connect(s.addr, "/ws/websocket", vsn).await;
    join_room(&mut c, "room:lobby", "11", "1").await;
    c.push(
        json!("stale"),
        json!("stale"),
        "room:lobby",
        "phx_leave",
        json!({}),
    )
    .await;
    c.expect_silence().await;
    c.push(
        Value::Null,
        json!("2"),
        "room:lobby",
        "phx_leave",
        json!({}),
    )
    .await;
    assert_eq!(
        c.recv_json().await,
        vsn.expect(
            json!("11"),
            json!("2"),
            "room:lobby",
            "phx_reply",
            ok_reply()
        )
    );
    assert_eq!(
        c.recv_json().await,
        vsn.expect(
            json!("11"),
            json!("11"),
            "room:lobby",
            "phx_close",
            json!({})
        )
    );
    assert_eq!(
        c.recv_json().await,
        vsn.expect(
            json!("11"),
            Value::Null,
            "room:lobby",
            "you_left",
            json!({"message": "bye!"})
        )
    );
}
for_both_vsn!(case29_stale_leaves_are_ignored_and_null_join_ref_leaves_accepted);

#[tokio::test]
async fn case30_a_disconnect_broadcast_closes_the_socket_with_1001_and_ends_its_channels() {
    let s = start_fixture().await;
    let mut c = connect(s.addr, "/ws/websocket?user_id=1001", Vsn::V2).await;
    join_room(&mut c, "room:wsdisconnect1", "1", "1").await;
    join_room(&mut c, "room:wsdisconnect2", "2", "2").await;
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
async fn case31_a_client_close_terminates_every_channel_silently() {
    let s = start_fixture().await;
    let mut c = connect(s.addr, "/ws/websocket", Vsn::V2).await;
    join_room(&mut c, "room:closing1", "1", "1").await;
    join_room(&mut c, "room:closing2", "2", "2").await;
    c.close().await;
    assert!(s.wait_unsubscribed("room:closing1").await);
    assert!(s.wait_unsubscribed("room:closing2").await);
}

#[tokio::test]
async fn case32_malformed_frames_close_the_connection_with_1011_without_a_reply() {
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
    assert_eq!(c.recv().await, Received::Closed(Some(1011)));
    let mut c = connect(s.addr, "/ws/websocket", Vsn::V1).await;
    c.send_text(r#"["1","1","room:x","phx_join",{}]"#).await;
    assert_eq!(c.recv().await, Received::Closed(Some(1011)));
}

// ---- 10.4 Binary ----------------------------------------------------------------------------

#[tokio::test]
async fn case33_binary_pushes_get_binary_replies_and_binary_pushes() {
    let s = start_fixture().await;
    let mut c = connect(s.addr, "/ws/websocket", Vsn::V2).await;
    join_room(&mut c, "room:bin", "11", "1").await;
    let push = [
        &[0x00, 0x02, 0x01, 0x08, 0x0C][..],
        b"11",
        b"2",
        b"room:bin",
        b"binary_event",
        &[1, 2],
    ]
    .concat();
    c.send_binary(push).await;
    let reply = [
        &[0x01, 0x02, 0x01, 0x08, 0x02][..],
        b"11",
        b"2",
        b"room:bin",
        b"ok",
        &[1, 2, 3, 4],
    ]
    .concat();
    let server_push = [
        &[0x00, 0x02, 0x08, 0x0C][..],
        b"11",
        b"room:bin",
        b"binary_event",
        &[0, 1],
    ]
    .concat();
    let got = [c.recv().await, c.recv().await];
    assert!(got.contains(&Received::Binary(reply)), "{got:?}");
    assert!(got.contains(&Received::Binary(server_push)), "{got:?}");
}

#[tokio::test]
async fn binary_broadcasts_use_kind_2_frames() {
    let s = start_fixture().await;
    let mut c = connect(s.addr, "/ws/websocket", Vsn::V2).await;
    c.join("echo:b", "1", json!({})).await;
    s.endpoint.pubsub().broadcast(
        "echo:b",
        "blob",
        videoroom::phoenix::Payload::Binary(bytes::Bytes::from_static(&[9, 8])),
    );
    let want = [&[0x02, 0x06, 0x04][..], b"echo:b", b"blob", &[9, 8]].concat();
    assert_eq!(c.recv().await, Received::Binary(want));
}

// ---- 10.6 Presence --------------------------------------------------------------------------

#[tokio::test]
async fn case53_presence_state_follows_a_join_and_diffs_reach_everyone() {
    let s = start_fixture().await;
    let mut a = connect(s.addr, "/ws/websocket", Vsn::V2).await;
    a.join("room:p", "1", json!({"presence_key": "a"})).await;
    // a: user_entered, joined, presence_state, own presence_diff (order across sources free).
    let first = a.recv_n(4).await;
    let state = first
        .iter()
        .find(|f| f[3] == "presence_state")
        .expect("presence_state for a");
    assert_eq!(state[0], json!("1"));
    assert!(state[4]["a"]["metas"][0]["phx_ref"].is_string());

    let mut b = connect(s.addr, "/ws/websocket", Vsn::V2).await;
    b.join("room:p", "7", json!({"presence_key": "b"})).await;
    let frames = b.recv_n(4).await;
    let state = frames
        .iter()
        .find(|f| f[3] == "presence_state")
        .expect("presence_state for b");
    assert_eq!(state[0], json!("7"));
    assert_eq!(state[1], Value::Null);
    assert!(
        state[4]["a"]["metas"].is_array() && state[4]["b"]["metas"].is_array(),
        "{state}"
    );

    let mut diff = Value::Null;
    while diff.is_null() {
        let f = a.recv_json().await;
        if f[3] == "presence_diff" {
            diff = f;
        }
    }
    assert_eq!(diff[0], Value::Null);
    assert_eq!(diff[4]["joins"]["b"]["metas"][0]["name"], "b");
    assert_eq!(diff[4]["leaves"], json!({}));

    b.push(json!("7"), json!("8"), "room:p", "phx_leave", json!({}))
        .await;
    let mut leave = Value::Null;
    while leave.is_null() {
        let f = a.recv_json().await;
        if f[3] == "presence_diff" {
            leave = f;
        }
    }
    assert_eq!(leave[4]["leaves"]["b"]["metas"][0]["name"], "b");
    assert_eq!(leave[4]["joins"], json!({}));
}

// ---- Beyond §10: limits, drain, server-side messages, backpressure -----------------------------

#[tokio::test]
async fn an_oversize_frame_closes_the_connection_with_1009() {
    let s = start_fixture().await;
    let mut c = connect(s.addr, "/ws/websocket", Vsn::V2).await;
    let big = format!(
        r#"[null,"1","phoenix","heartbeat",{{"pad":"{}"}}]"#,
        "x".repeat(100 * 1024)
    );
    c.send_text(&big).await;
    assert_eq!(c.recv().await, Received::Closed(Some(1009)));
}

#[tokio::test]
async fn a_text_frame_with_invalid_utf8_closes_the_connection_with_1007() {
    let s = start_fixture().await;
    let mut c = connect(s.addr, "/ws/websocket", Vsn::V2).await;
    c.send_invalid_utf8_text().await;
    assert_eq!(c.recv().await, Received::Closed(Some(1007)));
}

#[tokio::test]
async fn draining_closes_every_socket_with_1012() {
    let s = start_fixture().await;
    let mut a = connect(s.addr, "/socket/websocket", Vsn::V2).await;
    a.join("echo:1", "1", json!({})).await;
    let mut b = connect(s.addr, "/socket/websocket", Vsn::V1).await;
    b.heartbeat("1").await;
    s.endpoint.drain();
    assert_eq!(a.expect_close().await, Some(1012));
    assert_eq!(b.expect_close().await, Some(1012));
    s.endpoint.wait_drained(Duration::from_secs(2)).await;
    assert_eq!(s.endpoint.live_sockets(), 0);
}

async fn server_side_messages_reach_handle_info_and_can_reply_later(vsn: Vsn) {
    let s = start_fixture().await;
    let mut c = connect(s.addr, "/socket/websocket", vsn).await;
    join_room(&mut c, "room:later", "1", "1").await;
    c.push(
        json!("1"),
        json!("5"),
        "room:later",
        "later",
        json!({"x": 1}),
    )
    .await;
    assert_eq!(
        c.recv_json().await,
        vsn.expect(
            json!("1"),
            Value::Null,
            "room:later",
            "info",
            json!({"value": {"x": 1}})
        )
    );
    assert_eq!(
        c.recv_json().await,
        vsn.expect(
            json!("1"),
            json!("5"),
            "room:later",
            "phx_reply",
            json!({"status": "ok", "response": {"later": {"x": 1}}})
        )
    );
}
for_both_vsn!(server_side_messages_reach_handle_info_and_can_reply_later);

#[tokio::test]
async fn an_echo_channel_pushes_and_replies_every_payload() {
    let s = start_fixture().await;
    let mut c = connect(s.addr, "/socket/websocket", Vsn::V2).await;
    c.join("echo:x", "1", json!({})).await;
    c.push(json!("1"), json!("2"), "echo:x", "ping", json!({"n": 1}))
        .await;
    let got = c.recv_n(2).await;
    assert!(
        got.contains(&json!(["1", null, "echo:x", "ping", {"n": 1}])),
        "{got:?}"
    );
    assert!(
        got.contains(
            &json!(["1", "2", "echo:x", "phx_reply", {"status": "ok", "response": {"n": 1}}])
        ),
        "{got:?}"
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_instead_of_buffered_forever() {
    let s = start_fixture().await;
    let mut slow = connect(s.addr, "/socket/websocket", Vsn::V2).await;
    slow.join("echo:flood", "1", json!({})).await;
    let mut fast = connect(s.addr, "/socket/websocket", Vsn::V2).await;
    fast.join("echo:flood", "1", json!({})).await;
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
