//! Phoenix LongPoll conformance over real HTTP: cases 36–52 of §10.5 of `phoenix-protocol.md`,
//! each for V1 and V2 where the reference says so (fixture window 200 ms).

mod common;

use base64::Engine as _;
use common::{LpClient, Vsn, start_fixture};
use serde_json::{Value, json};
use std::time::Duration;

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

/// Joins `room:lobby` with join_ref = ref = "1" and checks the three first messages, in order.
async fn join_lobby(c: &LpClient) {
    let v = c.vsn;
    assert_eq!(
        c.send(json!("1"), json!("1"), "room:lobby", "phx_join", json!({}))
            .await,
        200
    );
    let msgs = c.poll_n(3).await;
    assert_eq!(
        msgs,
        vec![
            v.expect(
                json!("1"),
                json!("1"),
                "room:lobby",
                "phx_reply",
                ok_reply()
            ),
            v.expect(
                Value::Null,
                Value::Null,
                "room:lobby",
                "user_entered",
                json!({"user": null})
            ),
            v.expect(
                json!("1"),
                Value::Null,
                "room:lobby",
                "joined",
                json!({"status": "connected", "user_id": null})
            ),
        ]
    );
}

async fn case36_a_get_without_token_opens_a_session_with_410(vsn: Vsn) {
    let s = start_fixture().await;
    let c = LpClient::open(&s, "/ws/longpoll", vsn, "").await;
    assert!(!c.token.is_empty());
}
for_both_vsn!(case36_a_get_without_token_opens_a_session_with_410);

async fn case37_38_join_then_poll_returns_reply_broadcast_push_in_order_then_204(vsn: Vsn) {
    let s = start_fixture().await;
    let c = LpClient::open(&s, "/ws/longpoll", vsn, "").await;
    join_lobby(&c).await;
    let started = tokio::time::Instant::now();
    let body = c.get_raw("", &[]).await;
    assert_eq!(
        body,
        json!({"status": 204, "token": c.token, "messages": []})
    );
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "held for about one window"
    );
}
for_both_vsn!(case37_38_join_then_poll_returns_reply_broadcast_push_in_order_then_204);

async fn case39_publishing_delivers_broadcasts_and_unmatched_replies(vsn: Vsn) {
    let s = start_fixture().await;
    let c = LpClient::open(&s, "/ws/longpoll", vsn, "").await;
    join_lobby(&c).await;
    assert_eq!(
        c.send(
            Value::Null,
            json!("1"),
            "room:lobby",
            "new_msg",
            json!({"body": "hi!"})
        )
        .await,
        200
    );
    assert_eq!(
        c.send(
            Value::Null,
            json!("12300"),
            "room:private-room",
            "new_msg",
            json!({"body": "x"})
        )
        .await,
        200
    );
    let msgs = c.poll_n(2).await;
    assert_eq!(
        msgs,
        vec![
            vsn.expect(
                json!("1"),
                Value::Null,
                "room:lobby",
                "new_msg",
                json!({"body": "hi!", "transport": ":longpoll"})
            ),
            vsn.expect(
                Value::Null,
                json!("12300"),
                "room:private-room",
                "phx_reply",
                json!({"status": "error", "response": {"reason": "unmatched topic"}})
            ),
        ]
    );
}
for_both_vsn!(case39_publishing_delivers_broadcasts_and_unmatched_replies);

fn new_msg(body: &str) -> Value {
    json!(["1", null, "room:lobby", "new_msg", {"body": body, "transport": ":longpoll"}])
}

#[tokio::test]
async fn case40_ndjson_batches_carry_json_and_base64_binary_lines_in_order() {
    let s = start_fixture().await;
    let c = LpClient::open(&s, "/ws/longpoll", Vsn::V2, "").await;
    join_lobby(&c).await;
    let lines = [
        json!(["1", "2", "room:lobby", "new_msg", {"body": "hi1"}]).to_string(),
        json!(["1", "3", "room:lobby", "new_msg", {"body": "hi2"}]).to_string(),
        json!(["stale", "stale", "room:lobby", "new_msg", {"body": "stale"}]).to_string(),
    ];
    assert_eq!(c.post("application/x-ndjson", lines.join("\n")).await, 200);
    let bin = [
        &[0x00, 0x01, 0x01, 0x0A, 0x03][..],
        b"1",
        b"4",
        b"room:lobby",
        b"bin",
        &[1, 2, 3],
    ]
    .concat();
    let lines = [
        base64::engine::general_purpose::STANDARD.encode(bin),
        json!(["1", "5", "room:lobby", "new_msg", {"body": "hi3"}]).to_string(),
    ];
    assert_eq!(
        c.post("application/x-ndjson", lines.join("\r\n")).await,
        200
    );
    let msgs = c.poll_n(4).await;
    assert_eq!(
        msgs,
        vec![
            new_msg("hi1"),
            new_msg("hi2"),
            json!(["1", null, "room:lobby", "bin_ack", {"transport": ":longpoll"}]),
            new_msg("hi3"),
        ]
    );
}

#[tokio::test]
async fn case41_only_the_first_100_lines_of_a_batch_are_processed() {
    let s = start_fixture().await;
    let c = LpClient::open(&s, "/ws/longpoll", Vsn::V2, "").await;
    join_lobby(&c).await;
    let lines: Vec<String> = (1..=101)
        .map(|i| {
            json!(["1", i.to_string(), "room:lobby", "new_msg", {"body": i.to_string()}])
                .to_string()
        })
        .collect();
    assert_eq!(c.post("application/x-ndjson", lines.join("\n")).await, 200);
    let msgs = c.poll_n(100).await;
    assert_eq!(msgs.len(), 100);
    assert_eq!(msgs[99], new_msg("100"));
    let (status, rest) = c.poll().await;
    assert_eq!((status, rest), (204, vec![]), "line 101 was ignored");
}

// The slow handler blocks its worker thread on purpose, so the POST needs another one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case42_a_post_not_processed_within_the_window_answers_408() {
    let s = start_fixture().await;
    let c = LpClient::open(&s, "/ws/longpoll", Vsn::V2, "").await;
    join_lobby(&c).await;
    assert_eq!(
        c.send(
            json!("1"),
            json!("2"),
            "room:lobby",
            "slow",
            json!({"ms": 600})
        )
        .await,
        408
    );
}

async fn case43_a_refused_connect_answers_403(vsn: Vsn) {
    let s = start_fixture().await;
    let fresh = |q: &'static str| {
        let http = reqwest::Client::new();
        let url = s.http(&format!("/ws/longpoll?vsn={}&{q}", vsn.query()));
        async move {
            http.get(url)
                .send()
                .await
                .expect("GET")
                .json::<Value>()
                .await
                .expect("JSON")
        }
    };
    assert_eq!(fresh("reject=true").await, json!({"status": 403}));
    assert_eq!(fresh("ratelimit=true").await, json!({"status": 403}));
}
for_both_vsn!(case43_a_refused_connect_answers_403);

async fn case44_origins_are_checked(vsn: Vsn) {
    let s = start_fixture().await;
    let http = reqwest::Client::new();
    let url = s.http(&format!("/ws/longpoll?vsn={}", vsn.query()));
    let get = |origin: &'static str| {
        let req = http.get(&url).header("origin", origin);
        async move {
            req.send()
                .await
                .expect("GET")
                .json::<Value>()
                .await
                .expect("JSON")
        }
    };
    assert_eq!(get("https://example.com").await["status"], 410);
    assert_eq!(get("http://notallowed.com").await, json!({"status": 403}));
}
for_both_vsn!(case44_origins_are_checked);

#[tokio::test]
async fn case45_a_vsn_matching_no_serializer_answers_403() {
    let s = start_fixture().await;
    let body: Value = reqwest::get(s.http("/ws/longpoll?vsn=123.1.1"))
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(body, json!({"status": 403}));
}

async fn case46_a_crash_over_longpoll_delivers_phx_error(vsn: Vsn) {
    let s = start_fixture().await;
    let c = LpClient::open(&s, "/ws/longpoll", vsn, "").await;
    join_lobby(&c).await;
    assert_eq!(
        c.send(json!("1"), json!("1"), "room:lobby", "boom", json!({}))
            .await,
        200
    );
    let msgs = c.poll_n(1).await;
    assert_eq!(
        msgs[0],
        vsn.expect(
            json!("1"),
            json!("1"),
            "room:lobby",
            "phx_error",
            json!({"reason": "channel_crash"})
        )
    );
}
for_both_vsn!(case46_a_crash_over_longpoll_delivers_phx_error);

async fn case47_stale_leaves_are_ignored_and_null_join_ref_leaves_close(vsn: Vsn) {
    let s = start_fixture().await;
    let c = LpClient::open(&s, "/ws/longpoll", vsn, "").await;
    join_lobby(&c).await;
    assert_eq!(
        c.send(
            json!("stale"),
            json!("stale"),
            "room:lobby",
            "phx_leave",
            json!({})
        )
        .await,
        200
    );
    assert_eq!(
        c.send(
            Value::Null,
            json!("2"),
            "room:lobby",
            "phx_leave",
            json!({})
        )
        .await,
        200
    );
    let msgs = c.poll_n(2).await;
    assert_eq!(
        msgs[0],
        vsn.expect(
            json!("1"),
            json!("2"),
            "room:lobby",
            "phx_reply",
            ok_reply()
        )
    );
    assert_eq!(
        msgs[1],
        vsn.expect(json!("1"), json!("1"), "room:lobby", "phx_close", json!({}))
    );
}
for_both_vsn!(case47_stale_leaves_are_ignored_and_null_join_ref_leaves_close);

async fn case48_a_session_without_polls_expires_and_its_token_is_gone(vsn: Vsn) {
    let s = start_fixture().await;
    let c = LpClient::open(&s, "/ws/longpoll", vsn, "").await;
    assert_eq!(
        c.send(
            json!("1"),
            json!("1"),
            "room:inactive",
            "phx_join",
            json!({})
        )
        .await,
        200
    );
    assert_eq!(s.pubsub.subscriber_count("room:inactive"), 1);
    let started = tokio::time::Instant::now();
    assert!(s.wait_unsubscribed("room:inactive").await);
    assert!(
        started.elapsed() <= Duration::from_millis(1500),
        "expired after {:?}",
        started.elapsed()
    );
    assert_eq!(
        c.send(
            json!("1"),
            json!("2"),
            "room:inactive",
            "new_msg",
            json!({})
        )
        .await,
        410
    );
}
for_both_vsn!(case48_a_session_without_polls_expires_and_its_token_is_gone);

async fn case49_a_disconnect_broadcast_ends_the_session(vsn: Vsn) {
    let s = start_fixture().await;
    let c = LpClient::open(&s, "/ws/longpoll", vsn, "user_id=456").await;
    assert_eq!(
        c.send(
            json!("1"),
            json!("1"),
            "room:lpdisconnect1",
            "phx_join",
            json!({})
        )
        .await,
        200
    );
    assert_eq!(
        c.send(
            json!("2"),
            json!("2"),
            "room:lpdisconnect2",
            "phx_join",
            json!({})
        )
        .await,
        200
    );
    s.endpoint.pubsub().broadcast(
        "user_sockets:456",
        "disconnect",
        videoroom::phoenix::Payload::empty(),
    );
    assert!(s.wait_unsubscribed("room:lpdisconnect1").await);
    assert!(s.wait_unsubscribed("room:lpdisconnect2").await);
    let body = c.get_raw("", &[]).await;
    assert_eq!(body["status"], 410);
    assert_ne!(body["token"], json!(c.token), "a new session");
}
for_both_vsn!(case49_a_disconnect_broadcast_ends_the_session);

#[tokio::test]
async fn case50_a_body_without_content_type_is_one_message() {
    let s = start_fixture().await;
    let c = LpClient::open(&s, "/ws/longpoll", Vsn::V2, "").await;
    assert_eq!(
        c.post(
            "",
            json!(["1", "1", "room:nope", "phx_leave", {}]).to_string()
        )
        .await,
        200
    );
    assert_eq!(
        c.poll_n(1).await,
        vec![json!(["1", "1", "room:nope", "phx_reply", ok_reply()])]
    );
}

#[tokio::test]
async fn case51_the_token_travels_as_param_or_header_and_the_header_wins() {
    let s = start_fixture().await;
    let c = LpClient::open(&s, "/ws/longpoll", Vsn::V2, "").await;
    let http = reqwest::Client::new();
    // Header only.
    let resp = http
        .get(s.http("/ws/longpoll?vsn=2.0.0"))
        .header("x-phoenix-longpoll-token", &c.token)
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(body["status"], 204);
    assert_eq!(body["token"], json!(c.token));
    // Header beats a stale param.
    let body: Value = http
        .get(s.http("/ws/longpoll?vsn=2.0.0&token=stale"))
        .header("x-phoenix-longpoll-token", &c.token)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(body["status"], 204);
    // POST with the header.
    let body: Value = http
        .post(s.http("/ws/longpoll?vsn=2.0.0"))
        .header("x-phoenix-longpoll-token", &c.token)
        .header("content-type", "application/json")
        .body(json!([null, "1", "phoenix", "heartbeat", {}]).to_string())
        .send()
        .await
        .expect("POST")
        .json()
        .await
        .expect("JSON");
    assert_eq!(body, json!({"status": 200}));
}

#[tokio::test]
async fn case52_cors_preflight_and_headers() {
    let s = start_fixture().await;
    let http = reqwest::Client::new();
    let resp = http
        .request(reqwest::Method::OPTIONS, s.http("/ws/longpoll"))
        .header("access-control-request-headers", "x-foo")
        .send()
        .await
        .expect("OPTIONS");
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    assert_eq!(h["access-control-allow-headers"], "x-foo");
    assert_eq!(h["access-control-allow-methods"], "get, post, options");
    assert_eq!(h["access-control-max-age"], "3600");
    assert_eq!(h["access-control-allow-origin"], "*");
    let get = http
        .get(s.http("/ws/longpoll?vsn=2.0.0"))
        .send()
        .await
        .expect("GET");
    assert_eq!(get.headers()["access-control-allow-origin"], "*");
    assert_eq!(
        get.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    let put = http
        .put(s.http("/ws/longpoll?vsn=2.0.0"))
        .send()
        .await
        .expect("PUT");
    assert_eq!(put.status(), 400);
}

#[tokio::test]
async fn a_malformed_body_ends_the_session_with_408_and_later_posts_get_410() {
    let s = start_fixture().await;
    let c = LpClient::open(&s, "/ws/longpoll", Vsn::V2, "").await;
    assert_eq!(
        c.send(json!("1"), json!("1"), "room:bad", "phx_join", json!({}))
            .await,
        200
    );
    assert_eq!(c.post("application/json", "not json".into()).await, 408);
    assert!(
        s.wait_unsubscribed("room:bad").await,
        "the session's channels ended"
    );
    assert_eq!(
        c.post(
            "application/json",
            json!([null, "2", "phoenix", "heartbeat", {}]).to_string()
        )
        .await,
        410
    );
    assert_eq!(
        c.get_raw("", &[]).await["status"],
        410,
        "a GET opens a new session"
    );
}

#[tokio::test]
async fn v1_clients_may_batch_object_lines_as_ndjson() {
    let s = start_fixture().await;
    let c = LpClient::open(&s, "/ws/longpoll", Vsn::V1, "").await;
    let lines = [
        Vsn::V1.encode(Value::Null, json!("1"), "phoenix", "heartbeat", json!({})),
        Vsn::V1.encode(Value::Null, json!("2"), "room:none", "phx_leave", json!({})),
    ];
    assert_eq!(c.post("application/x-ndjson", lines.join("\n")).await, 200);
    let msgs = c.poll_n(2).await;
    assert_eq!(
        msgs[0],
        json!([null, "1", "phoenix", "phx_reply", ok_reply()])
    );
    assert_eq!(
        msgs[1],
        json!([null, "2", "room:none", "phx_reply", ok_reply()])
    );
}

#[tokio::test]
async fn draining_ends_sessions_and_refuses_new_ones() {
    let s = start_fixture().await;
    let c = LpClient::open(&s, "/ws/longpoll", Vsn::V2, "").await;
    join_lobby(&c).await;
    s.endpoint.drain();
    assert!(
        s.wait_unsubscribed("room:lobby").await,
        "the session's channels ended"
    );
    assert_eq!(
        c.get_raw("", &[]).await,
        json!({"status": 410}),
        "a client with a session is told it is gone"
    );
    let fresh: Value = reqwest::get(s.http("/ws/longpoll?vsn=2.0.0"))
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        fresh,
        json!({"status": 403}),
        "no new sessions while draining"
    );
}
