//! Phoenix LongPoll conformance over real HTTP against the conformance fixture (LongPoll window
//! 200 ms): sessions and tokens, polls, NDJSON batches, timeouts, refusals, origins, crashes,
//! leaves, expiry, disconnects, CORS and drain (`docs/phoenix-protocol.md`), for V1 and V2
//! where both apply. Frames are literal, in the V2 notation the kit client translates for V1.

#[macro_use]
mod kit;

use base64::Engine as _;
use kit::phoenix::{LongPollClient, Vsn};
use kit::{Fixture, start_fixture};
use serde_json::{Value, json};
use std::time::Duration;

/// Opens a session on the fixture's `/ws/longpoll` (`extra_query` added to the first GET).
async fn open(s: &Fixture, vsn: Vsn, extra_query: &str) -> LongPollClient {
    LongPollClient::open(s.http("/ws/longpoll"), vsn, extra_query).await
}

/// The JSON body of a request's answer.
async fn body_of(request: reqwest::RequestBuilder) -> Value {
    let resp = request.send().await.expect("request");
    resp.json().await.expect("JSON body")
}

/// Joins `room:lobby` with join_ref = ref = "1" and checks the three first messages, in order.
async fn join_lobby(c: &LongPollClient) {
    assert_eq!(c.send(r#"["1","1","room:lobby","phx_join",{}]"#).await, 200);
    c.expect([
        r#"["1","1","room:lobby","phx_reply",{"status":"ok","response":{}}]"#,
        r#"[null,null,"room:lobby","user_entered",{"user":null}]"#,
        r#"["1",null,"room:lobby","joined",{"status":"connected","user_id":null}]"#,
    ])
    .await;
}

/// A session that joined `room:lobby` ([`join_lobby`]).
async fn open_in_lobby(s: &Fixture, vsn: Vsn) -> LongPollClient {
    let c = open(s, vsn, "").await;
    join_lobby(&c).await;
    c
}

/// Posts each frame (`application/json`) and asserts each is accepted (`{"status":200}`).
async fn send_all(c: &LongPollClient, frames: &[&str]) {
    for frame in frames {
        assert_eq!(c.send(*frame).await, 200, "{frame}");
    }
}

/// In a fresh session that joined `room:lobby`: posts `frames` (each accepted), then polls
/// exactly `answers`, in order.
async fn lobby_exchange(vsn: Vsn, frames: &[&str], answers: &[&str]) {
    let s = start_fixture().await;
    let c = open_in_lobby(&s, vsn).await;
    send_all(&c, frames).await;
    c.expect(answers.iter().copied()).await;
}

async fn a_get_without_token_opens_a_session_with_410(vsn: Vsn) {
    let s = start_fixture().await;
    let c = open(&s, vsn, "").await;
    assert!(!c.token.is_empty());
}
for_both_vsn!(a_get_without_token_opens_a_session_with_410);

async fn join_then_poll_returns_reply_broadcast_push_in_order_then_204(vsn: Vsn) {
    let s = start_fixture().await;
    let c = open_in_lobby(&s, vsn).await;
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
for_both_vsn!(join_then_poll_returns_reply_broadcast_push_in_order_then_204);

async fn publishing_delivers_broadcasts_and_unmatched_replies(vsn: Vsn) {
    lobby_exchange(
        vsn,
        &[
            r#"[null,"1","room:lobby","new_msg",{"body":"hi!"}]"#,
            r#"[null,"12300","room:private-room","new_msg",{"body":"x"}]"#,
        ],
        &[
            r#"["1",null,"room:lobby","new_msg",{"body":"hi!","transport":":longpoll"}]"#,
            r#"[null,"12300","room:private-room","phx_reply",{"status":"error","response":{"reason":"unmatched topic"}}]"#,
        ],
    )
    .await;
}
for_both_vsn!(publishing_delivers_broadcasts_and_unmatched_replies);

/// The fixture's `new_msg` broadcast to `room:lobby` (join_ref "1") over LongPoll.
fn new_msg(body: &str) -> Value {
    json!(["1", null, "room:lobby", "new_msg", {"body": body, "transport": ":longpoll"}])
}

#[tokio::test]
async fn ndjson_batches_carry_json_and_base64_binary_lines_in_order() {
    let s = start_fixture().await;
    let c = open_in_lobby(&s, Vsn::V2).await;
    let lines = [
        r#"["1","2","room:lobby","new_msg",{"body":"hi1"}]"#,
        r#"["1","3","room:lobby","new_msg",{"body":"hi2"}]"#,
        r#"["stale","stale","room:lobby","new_msg",{"body":"stale"}]"#,
    ];
    assert_eq!(c.post("application/x-ndjson", lines.join("\n")).await, 200);
    // A binary push (kind 0) of event "bin" on room:lobby, base64 in its line.
    // Sizes 1, 1, 10, 3, then "1", "4", "room:lobby", "bin" and the payload 1, 2, 3.
    let bin = b"\x00\x01\x01\x0a\x0314room:lobbybin\x01\x02\x03";
    let lines = [
        base64::engine::general_purpose::STANDARD.encode(bin),
        r#"["1","5","room:lobby","new_msg",{"body":"hi3"}]"#.to_owned(),
    ];
    assert_eq!(
        c.post("application/x-ndjson", lines.join("\r\n")).await,
        200
    );
    c.expect([
        new_msg("hi1"),
        new_msg("hi2"),
        json!(["1", null, "room:lobby", "bin_ack", {"transport": ":longpoll"}]),
        new_msg("hi3"),
    ])
    .await;
}

#[tokio::test]
async fn only_the_first_100_lines_of_a_batch_are_processed() {
    let s = start_fixture().await;
    let c = open_in_lobby(&s, Vsn::V2).await;
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
async fn a_post_not_processed_within_the_window_answers_408() {
    let s = start_fixture().await;
    let c = open_in_lobby(&s, Vsn::V2).await;
    let slow = r#"["1","2","room:lobby","slow",{"ms":600}]"#;
    assert_eq!(c.send(slow).await, 408);
}

async fn a_refused_connect_answers_403(vsn: Vsn) {
    let s = start_fixture().await;
    let http = reqwest::Client::new();
    for q in ["reject=true", "ratelimit=true"] {
        let url = s.http(&format!("/ws/longpoll?vsn={}&{q}", vsn.query()));
        assert_eq!(body_of(http.get(url)).await, json!({"status": 403}), "{q}");
    }
}
for_both_vsn!(a_refused_connect_answers_403);

async fn origins_are_checked(vsn: Vsn) {
    let s = start_fixture().await;
    let http = reqwest::Client::new();
    let url = s.http(&format!("/ws/longpoll?vsn={}", vsn.query()));
    let get = |origin: &str| http.get(&url).header("origin", origin);
    assert_eq!(body_of(get("https://example.com")).await["status"], 410);
    assert_eq!(
        body_of(get("http://notallowed.com")).await,
        json!({"status": 403})
    );
}
for_both_vsn!(origins_are_checked);

#[tokio::test]
async fn a_vsn_matching_no_serializer_answers_403() {
    let s = start_fixture().await;
    let http = reqwest::Client::new();
    let body = body_of(http.get(s.http("/ws/longpoll?vsn=123.1.1"))).await;
    assert_eq!(body, json!({"status": 403}));
}

async fn a_crash_over_longpoll_delivers_phx_error(vsn: Vsn) {
    let s = start_fixture().await;
    let c = open_in_lobby(&s, vsn).await;
    send_all(&c, &[r#"["1","1","room:lobby","boom",{}]"#]).await;
    let msgs = c.poll_n(1).await;
    assert_eq!(
        msgs[0],
        vsn.expected(r#"["1","1","room:lobby","phx_error",{"reason":"channel_crash"}]"#)
    );
}
for_both_vsn!(a_crash_over_longpoll_delivers_phx_error);

async fn stale_leaves_are_ignored_and_null_join_ref_leaves_close(vsn: Vsn) {
    lobby_exchange(
        vsn,
        &[
            r#"["stale","stale","room:lobby","phx_leave",{}]"#,
            r#"[null,"2","room:lobby","phx_leave",{}]"#,
        ],
        &[
            r#"["1","2","room:lobby","phx_reply",{"status":"ok","response":{}}]"#,
            r#"["1","1","room:lobby","phx_close",{}]"#,
            r#"["1",null,"room:lobby","you_left",{"message":"bye!"}]"#,
        ],
    )
    .await;
}
for_both_vsn!(stale_leaves_are_ignored_and_null_join_ref_leaves_close);

async fn a_session_without_polls_expires_and_its_token_is_gone(vsn: Vsn) {
    let s = start_fixture().await;
    let c = open(&s, vsn, "").await;
    send_all(&c, &[r#"["1","1","room:inactive","phx_join",{}]"#]).await;
    assert_eq!(s.pubsub.subscriber_count("room:inactive"), 1);
    let started = tokio::time::Instant::now();
    assert!(s.wait_unsubscribed("room:inactive").await);
    assert!(
        started.elapsed() <= Duration::from_millis(1500),
        "expired after {:?}",
        started.elapsed()
    );
    let late = r#"["1","2","room:inactive","new_msg",{}]"#;
    assert_eq!(c.send(late).await, 410);
}
for_both_vsn!(a_session_without_polls_expires_and_its_token_is_gone);

async fn a_disconnect_broadcast_ends_the_session(vsn: Vsn) {
    let s = start_fixture().await;
    let c = open(&s, vsn, "user_id=456").await;
    send_all(
        &c,
        &[
            r#"["1","1","room:lpdisconnect1","phx_join",{}]"#,
            r#"["2","2","room:lpdisconnect2","phx_join",{}]"#,
        ],
    )
    .await;
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
for_both_vsn!(a_disconnect_broadcast_ends_the_session);

#[tokio::test]
async fn a_body_without_content_type_is_one_message() {
    let s = start_fixture().await;
    let c = open(&s, Vsn::V2, "").await;
    let leave = r#"["1","1","room:nope","phx_leave",{}]"#;
    assert_eq!(c.post("", leave.to_owned()).await, 200);
    c.expect([r#"["1","1","room:nope","phx_reply",{"status":"ok","response":{}}]"#])
        .await;
}

#[tokio::test]
async fn the_token_travels_as_param_or_header_and_the_header_wins() {
    let s = start_fixture().await;
    let c = open(&s, Vsn::V2, "").await;
    let http = reqwest::Client::new();
    let with_token =
        |request: reqwest::RequestBuilder| request.header("x-phoenix-longpoll-token", &c.token);
    // Header only.
    let resp = with_token(http.get(s.http("/ws/longpoll?vsn=2.0.0")))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(body["status"], 204);
    assert_eq!(body["token"], json!(c.token));
    // Header beats a stale param.
    let stale = with_token(http.get(s.http("/ws/longpoll?vsn=2.0.0&token=stale")));
    assert_eq!(body_of(stale).await["status"], 204);
    // POST with the header.
    let post = with_token(http.post(s.http("/ws/longpoll?vsn=2.0.0")))
        .header("content-type", "application/json")
        .body(r#"[null,"1","phoenix","heartbeat",{}]"#);
    assert_eq!(body_of(post).await, json!({"status": 200}));
}

#[tokio::test]
async fn cors_preflight_and_headers() {
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
    let url = s.http("/ws/longpoll?vsn=2.0.0");
    let get = http.get(&url).send().await.expect("GET");
    assert_eq!(get.headers()["access-control-allow-origin"], "*");
    assert_eq!(
        get.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    let put = http.put(&url).send().await.expect("PUT");
    assert_eq!(put.status(), 400);
}

#[tokio::test]
async fn a_malformed_body_ends_the_session_with_408_and_later_posts_get_410() {
    let s = start_fixture().await;
    let c = open(&s, Vsn::V2, "").await;
    send_all(&c, &[r#"["1","1","room:bad","phx_join",{}]"#]).await;
    assert_eq!(c.post("application/json", "not json".into()).await, 408);
    assert!(
        s.wait_unsubscribed("room:bad").await,
        "the session's channels ended"
    );
    let heartbeat = r#"[null,"2","phoenix","heartbeat",{}]"#;
    assert_eq!(c.post("application/json", heartbeat.into()).await, 410);
    assert_eq!(
        c.get_raw("", &[]).await["status"],
        410,
        "a GET opens a new session"
    );
}

#[tokio::test]
async fn v1_clients_may_batch_object_lines_as_ndjson() {
    let s = start_fixture().await;
    let c = open(&s, Vsn::V1, "").await;
    let lines = [
        r#"{"join_ref":null,"ref":"1","topic":"phoenix","event":"heartbeat","payload":{}}"#,
        r#"{"join_ref":null,"ref":"2","topic":"room:none","event":"phx_leave","payload":{}}"#,
    ];
    assert_eq!(c.post("application/x-ndjson", lines.join("\n")).await, 200);
    c.expect([
        r#"[null,"1","phoenix","phx_reply",{"status":"ok","response":{}}]"#,
        r#"[null,"2","room:none","phx_reply",{"status":"ok","response":{}}]"#,
    ])
    .await;
}

#[tokio::test]
async fn draining_ends_sessions_and_refuses_new_ones() {
    let s = start_fixture().await;
    let c = open_in_lobby(&s, Vsn::V2).await;
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
    let http = reqwest::Client::new();
    let fresh = body_of(http.get(s.http("/ws/longpoll?vsn=2.0.0"))).await;
    assert_eq!(
        fresh,
        json!({"status": 403}),
        "no new sessions while draining"
    );
}
