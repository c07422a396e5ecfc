//! The socket state machine without I/O: frames in, outputs out, virtual time.

use super::*;
use crate::phoenix::channel::{
    Channel, ChannelContext, Flow, HandleIn, JoinReply, Router, StopReason, TerminateReason,
};
use crate::phoenix::mailbox::{Mailbox, SocketEvent};
use crate::phoenix::message::{Frame, Payload};
use crate::phoenix::presence::Presence;
use crate::phoenix::pubsub::{LocalPubSub, PubSub};
use crate::phoenix::serializer::Serializer;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

type Log = Arc<Mutex<Vec<String>>>;

struct TestChannel {
    log: Log,
}

impl Channel for TestChannel {
    type Info = String;

    fn join(&mut self, topic: &str, payload: Value, ctx: &mut ChannelContext) -> JoinReply {
        if payload.get("refuse").is_some() {
            return Err(json!({"reason": "unauthorized"}));
        }
        if payload.get("panic").is_some() {
            panic!("join panic");
        }
        if let Some(answer) = payload.get("defer").and_then(Value::as_str) {
            // The answer "arrives later": through the inbox, like an actor's reply.
            ctx.defer_join();
            let later = ctx.sender::<String>();
            later
                .try_send(format!("join:{answer}"))
                .expect("room in inbox");
            return Ok(json!({"ignored": true}));
        }
        if let Some(key) = payload.get("track").and_then(Value::as_str) {
            ctx.track_presence(key, json!({"k": key}));
        }
        ctx.broadcast("entered", json!({"topic": topic}));
        ctx.push("joined", json!({}));
        Ok(json!({"hello": topic}))
    }

    fn handle_in(&mut self, event: &str, payload: Payload, ctx: &mut ChannelContext) -> HandleIn {
        match event {
            "echo" => HandleIn::ok_with(payload),
            "boom" => panic!("boom"),
            "stop" => HandleIn::Stop {
                reason: StopReason::Normal,
                reply: Some(("ok".into(), Payload::empty())),
            },
            "shout" => {
                ctx.broadcast_from("shout", payload);
                HandleIn::NoReply
            }
            "sender" => {
                let s = ctx.sender::<String>();
                s.try_send("from server".into()).expect("room in inbox");
                HandleIn::NoReply
            }
            _ => HandleIn::error(json!({"reason": "unknown"})),
        }
    }

    fn handle_info(&mut self, msg: String, ctx: &mut ChannelContext) -> Flow {
        match msg.as_str() {
            "join:ok" => return ok_later(ctx, Ok(json!({"later": true}))),
            "join:error" => return ok_later(ctx, Err(json!({"reason": "later"}))),
            _ => {}
        }
        ctx.push("info", json!({"msg": msg}));
        Flow::Continue
    }

    fn terminate(&mut self, reason: &TerminateReason, ctx: &mut ChannelContext) {
        self.log
            .lock()
            .unwrap()
            .push(format!("terminate {} {reason:?}", ctx.topic()));
        ctx.push("bye", json!({}));
    }
}

/// Answers the deferred join of `ctx`'s channel.
fn ok_later(ctx: &mut ChannelContext, reply: JoinReply) -> Flow {
    ctx.finish_join(reply);
    Flow::Continue
}

struct Harness {
    state: SocketState,
    inbox: mpsc::Receiver<SocketEvent>,
    log: Log,
    pubsub: Arc<LocalPubSub>,
    now: Instant,
}

fn harness_with(
    serializer: Serializer,
    limits: SocketLimits,
    socket_id: Option<&str>,
    pubsub: Arc<LocalPubSub>,
) -> Harness {
    let log: Log = Arc::default();
    let l = log.clone();
    let router = Router::new().channel("room:*", move || TestChannel { log: l.clone() });
    let (mailbox, inbox, _overflow) = Mailbox::new(64);
    let env = SocketEnv {
        pubsub: pubsub.clone(),
        presence: Presence::new(pubsub.clone()),
        metrics: crate::phoenix::metrics::SocketMetrics::default(),
    };
    let now = Instant::now();
    let state = SocketState::new(
        serializer,
        Arc::new(router),
        limits,
        env,
        json!({"user": 1}),
        socket_id.map(str::to_owned),
        mailbox,
        now,
    );
    Harness {
        state,
        inbox,
        log,
        pubsub,
        now,
    }
}

fn harness() -> Harness {
    harness_on(Serializer::V2, &LocalPubSub::new())
}

/// A socket with default limits speaking `serializer`, sharing `pubsub` with other harnesses.
fn harness_on(serializer: Serializer, pubsub: &Arc<LocalPubSub>) -> Harness {
    harness_with(serializer, SocketLimits::default(), None, pubsub.clone())
}

/// A V2 socket with `limits` on a PubSub of its own.
fn harness_limited(limits: SocketLimits) -> Harness {
    harness_with(Serializer::V2, limits, None, LocalPubSub::new())
}

/// A V2 socket with default limits that has sent the frames `joins` (their answers dropped).
fn harness_joined(joins: &[Value]) -> Harness {
    let mut h = harness();
    for join in joins {
        h.send(join.clone());
    }
    h
}

/// The first of `frames` carrying `event`.
fn first_event(frames: &[Value], event: &str) -> Value {
    match frames.iter().find(|f| f[3] == event) {
        Some(frame) => frame.clone(),
        None => panic!("no {event} in {frames:?}"),
    }
}

impl Harness {
    fn send(&mut self, frame: Value) -> Vec<Value> {
        self.state
            .handle_frame(self.now, &Frame::Text(frame.to_string()));
        self.outputs()
    }

    fn outputs(&mut self) -> Vec<Value> {
        let mut v = Vec::new();
        while let Some(o) = self.state.poll_output() {
            v.push(match o {
                Output::Frame(Frame::Text(t)) => serde_json::from_str(&t).unwrap(),
                Output::Frame(Frame::Binary(b)) => json!({"binary": b.to_vec()}),
                Output::Close { code, .. } => json!({"close": code}),
            });
        }
        v
    }

    fn pump_inbox(&mut self) -> Vec<Value> {
        while let Ok(ev) = self.inbox.try_recv() {
            self.state.handle_event(self.now, ev);
        }
        self.outputs()
    }
}

#[test]
fn heartbeat_is_answered_with_a_null_join_ref_before_any_join() {
    let mut h = harness();
    assert_eq!(
        h.send(json!([null, "1", "phoenix", "heartbeat", {}])),
        vec![json!([null, "1", "phoenix", "phx_reply", {"status": "ok", "response": {}}])]
    );
}

#[test]
fn join_replies_first_and_keeps_the_channels_own_broadcast_before_its_push() {
    let mut h = harness();
    let out = h.send(json!(["11", "1", "room:a", "phx_join", {}]));
    assert_eq!(
        out,
        vec![
            json!(["11", "1", "room:a", "phx_reply", {"status": "ok", "response": {"hello": "room:a"}}]),
            json!([null, null, "room:a", "entered", {"topic": "room:a"}]),
            json!(["11", null, "room:a", "joined", {}]),
        ]
    );
    // The broadcast reached our own socket in line, not again through the inbox.
    assert_eq!(h.pump_inbox(), Vec::<Value>::new());
}

#[test]
fn join_without_route_gets_unmatched_topic_with_null_join_ref() {
    let mut h = harness();
    assert_eq!(
        h.send(json!(["11", "1", "nope", "phx_join", {}])),
        vec![
            json!([null, "1", "nope", "phx_reply", {"status": "error", "response": {"reason": "unmatched topic"}}])
        ]
    );
}

#[test]
fn refused_and_crashing_joins_reply_errors_and_leave_no_channel() {
    let mut h = harness();
    let out = h.send(json!(["11", "1", "room:a", "phx_join", {"refuse": true}]));
    assert_eq!(
        out,
        vec![
            json!(["11", "1", "room:a", "phx_reply", {"status": "error", "response": {"reason": "unauthorized"}}])
        ]
    );
    let out = h.send(json!(["12", "2", "room:a", "phx_join", {"panic": true}]));
    assert_eq!(
        out,
        vec![
            json!(["12", "2", "room:a", "phx_reply", {"status": "error", "response": {"reason": "join crashed"}}])
        ]
    );
    assert_eq!(h.state.channel_count(), 0);
    assert_eq!(h.pubsub.subscriber_count("room:a"), 0);
    assert!(
        h.log.lock().unwrap().is_empty(),
        "terminate is not called for failed joins"
    );
}

#[test]
fn duplicate_join_replies_to_the_new_join_then_closes_the_old_instance() {
    let mut h = harness_joined(&[json!(["11", "1", "room:j", "phx_join", {}])]);
    let out = h.send(json!(["12", "2", "room:j", "phx_join", {}]));
    let reply = out.iter().position(|f| f[3] == "phx_reply").unwrap();
    let close = out.iter().position(|f| f[3] == "phx_close").unwrap();
    assert!(reply < close);
    assert_eq!(
        out[reply],
        json!(["12", "2", "room:j", "phx_reply", {"status": "ok", "response": {"hello": "room:j"}}])
    );
    assert_eq!(out[close], json!(["11", "11", "room:j", "phx_close", {}]));
    assert_eq!(h.state.channel_count(), 1);
    assert_eq!(h.pubsub.subscriber_count("room:j"), 1);
    assert_eq!(
        *h.log.lock().unwrap(),
        vec!["terminate room:j DuplicateJoin"]
    );
}

#[test]
fn the_channel_limit_refuses_the_next_join() {
    let mut h = harness_limited(SocketLimits {
        max_channels: 2,
        ..SocketLimits::default()
    });
    h.send(json!(["1", "1", "room:1", "phx_join", {}]));
    h.send(json!(["2", "2", "room:2", "phx_join", {}]));
    assert_eq!(
        h.send(json!(["3", "3", "room:3", "phx_join", {}])),
        vec![
            json!(["3", "3", "room:3", "phx_reply", {"status": "error", "response": {"reason": "too many channels joined"}}])
        ]
    );
}

#[test]
fn stale_join_refs_are_dropped_and_null_join_refs_accepted() {
    let mut h = harness_joined(&[json!(["11", "1", "room:s", "phx_join", {}])]);
    assert_eq!(
        h.send(json!(["99", "2", "room:s", "echo", {"a": 1}])),
        Vec::<Value>::new()
    );
    assert_eq!(
        h.send(json!(["stale", "3", "room:s", "phx_leave", {}])),
        Vec::<Value>::new()
    );
    assert_eq!(
        h.send(json!([null, "4", "room:s", "echo", {"a": 1}])),
        vec![json!(["11", "4", "room:s", "phx_reply", {"status": "ok", "response": {"a": 1}}])]
    );
}

#[test]
fn leave_replies_closes_and_then_forwards_terminate_pushes() {
    let mut h = harness_joined(&[json!(["11", "1", "room:l", "phx_join", {}])]);
    assert_eq!(
        h.send(json!(["11", "2", "room:l", "phx_leave", {}])),
        vec![
            json!(["11", "2", "room:l", "phx_reply", {"status": "ok", "response": {}}]),
            json!(["11", "11", "room:l", "phx_close", {}]),
            json!(["11", null, "room:l", "bye", {}]),
        ]
    );
    assert_eq!(*h.log.lock().unwrap(), vec!["terminate room:l Left"]);
    assert_eq!(
        h.send(json!(["11", "3", "room:l", "echo", {}])),
        vec![
            json!([null, "3", "room:l", "phx_reply", {"status": "error", "response": {"reason": "unmatched topic"}}])
        ]
    );
    assert_eq!(
        h.send(json!(["5", "6", "room:nope", "phx_leave", {}])),
        vec![json!(["5", "6", "room:nope", "phx_reply", {"status": "ok", "response": {}}])]
    );
}

#[test]
fn a_panicking_channel_gets_phx_error_and_the_others_keep_working() {
    let mut h = harness_joined(&[
        json!(["1", "1", "room:a", "phx_join", {}]),
        json!(["2", "2", "room:b", "phx_join", {}]),
    ]);
    let out = h.send(json!(["1", "3", "room:a", "boom", {}]));
    assert_eq!(
        out[0],
        json!(["1", "1", "room:a", "phx_error", {"reason": "channel_crash"}])
    );
    assert!(out.iter().all(|f| f[3] != "phx_reply"));
    assert_eq!(
        h.send(json!(["2", "4", "room:b", "echo", {"x": 1}])),
        vec![json!(["2", "4", "room:b", "phx_reply", {"status": "ok", "response": {"x": 1}}])]
    );
    assert!(h.log.lock().unwrap()[0].starts_with("terminate room:a Crashed"));
}

#[test]
fn stop_replies_then_closes() {
    let mut h = harness_joined(&[json!(["1", "1", "room:a", "phx_join", {}])]);
    let out = h.send(json!(["1", "2", "room:a", "stop", {}]));
    assert_eq!(out[0][3], "phx_reply");
    assert_eq!(out[1], json!(["1", "1", "room:a", "phx_close", {}]));
}

#[test]
fn undecodable_frames_close_the_socket_with_1011_and_terminate_channels() {
    let mut h = harness_joined(&[json!(["1", "1", "room:a", "phx_join", {}])]);
    h.state.handle_frame(h.now, &Frame::Text("not json".into()));
    assert_eq!(h.outputs(), vec![json!({"close": 1011})]);
    assert_eq!(
        *h.log.lock().unwrap(),
        vec!["terminate room:a SocketClosed"]
    );
    assert_eq!(h.pubsub.subscriber_count("room:a"), 0);
}

#[test]
fn idle_sockets_close_with_1001_after_the_timeout() {
    let mut h = harness_limited(SocketLimits {
        idle_timeout: Some(Duration::from_millis(200)),
        ..SocketLimits::default()
    });
    let start = h.now;
    assert_eq!(
        h.state.poll_timeout(),
        Some(start + Duration::from_millis(200))
    );
    h.now = start + Duration::from_millis(150);
    h.send(json!([null, "1", "phoenix", "heartbeat", {}]));
    h.state.handle_timeout(start + Duration::from_millis(250));
    assert_eq!(
        h.outputs(),
        Vec::<Value>::new(),
        "the heartbeat reset the idle clock"
    );
    h.state.handle_timeout(start + Duration::from_millis(351));
    assert_eq!(h.outputs(), vec![json!({"close": 1001})]);
}

#[test]
fn a_disconnect_broadcast_on_the_socket_id_closes_with_1001() {
    let pubsub = LocalPubSub::new();
    let mut h = harness_with(
        Serializer::V2,
        SocketLimits::default(),
        Some("users:7"),
        pubsub.clone(),
    );
    h.send(json!(["1", "1", "room:a", "phx_join", {}]));
    pubsub.broadcast("users:7", "other", Payload::empty());
    assert_eq!(h.pump_inbox(), Vec::<Value>::new());
    pubsub.broadcast("users:7", "disconnect", Payload::empty());
    assert_eq!(h.pump_inbox(), vec![json!({"close": 1001})]);
    assert_eq!(
        *h.log.lock().unwrap(),
        vec!["terminate room:a SocketClosed"]
    );
}

#[test]
fn broadcast_from_skips_only_the_sender() {
    let pubsub = LocalPubSub::new();
    let mut a = harness_on(Serializer::V2, &pubsub);
    let mut b = harness_on(Serializer::V1, &pubsub);
    a.send(json!(["1", "1", "room:x", "phx_join", {}]));
    b.send(json!({"topic": "room:x", "event": "phx_join", "payload": {}, "ref": "1"}));
    a.pump_inbox();
    b.pump_inbox();
    assert_eq!(
        a.send(json!(["1", "2", "room:x", "shout", {"hi": 1}])),
        Vec::<Value>::new()
    );
    assert_eq!(a.pump_inbox(), Vec::<Value>::new());
    assert_eq!(
        b.pump_inbox(),
        vec![json!({"topic": "room:x", "event": "shout", "payload": {"hi": 1}, "ref": null})]
    );
}

#[test]
fn handle_info_messages_reach_the_channel_through_its_sender() {
    let mut h = harness_joined(&[json!(["1", "1", "room:a", "phx_join", {}])]);
    assert_eq!(
        h.send(json!(["1", "2", "room:a", "sender", {}])),
        Vec::<Value>::new()
    );
    assert_eq!(
        h.pump_inbox(),
        vec![json!(["1", null, "room:a", "info", {"msg": "from server"}])]
    );
}

#[test]
fn presence_state_follows_the_join_and_diffs_are_broadcast() {
    let pubsub = LocalPubSub::new();
    let mut a = harness_on(Serializer::V2, &pubsub);
    // Both sockets share one tracker through one PubSub.
    let presence = a.state.shared.env.presence.clone();
    let mut b = harness_on(Serializer::V2, &pubsub);
    b.state.shared.env.presence = presence;
    a.send(json!(["1", "1", "room:p", "phx_join", {"track": "a"}]));
    a.pump_inbox();
    let out = b.send(json!(["1", "1", "room:p", "phx_join", {"track": "b"}]));
    let state = first_event(&out, "presence_state");
    assert_eq!(state[0], json!("1"));
    assert!(state[4]["a"]["metas"][0]["phx_ref"].is_string());
    assert!(state[4]["b"]["metas"][0]["phx_ref"].is_string());
    let diff = first_event(&a.pump_inbox(), "presence_diff");
    assert_eq!(diff[4]["joins"]["b"]["metas"][0]["k"], "b");
    b.send(json!(["1", "2", "room:p", "phx_leave", {}]));
    let diff = first_event(&a.pump_inbox(), "presence_diff");
    assert_eq!(diff[4]["leaves"]["b"]["metas"][0]["k"], "b");
    assert_eq!(diff[4]["joins"], json!({}));
}

#[test]
fn closing_the_transport_terminates_every_channel_exactly_once() {
    let mut h = harness_joined(&[
        json!(["1", "1", "room:a", "phx_join", {}]),
        json!(["2", "2", "room:b", "phx_join", {}]),
    ]);
    h.state.transport_closed();
    h.state.transport_closed();
    assert_eq!(h.outputs(), Vec::<Value>::new());
    let mut log = h.log.lock().unwrap().clone();
    log.sort();
    assert_eq!(
        log,
        vec![
            "terminate room:a SocketClosed",
            "terminate room:b SocketClosed"
        ]
    );
}

#[test]
fn draining_closes_with_1012() {
    let mut h = harness();
    h.state.drain();
    assert_eq!(h.outputs(), vec![json!({"close": 1012})]);
}

#[test]
fn v1_frames_never_carry_join_ref() {
    let mut h = harness_on(Serializer::V1, &LocalPubSub::new());
    let out = h.send(json!({"topic": "room:x", "event": "phx_join", "payload": {}, "ref": "1", "join_ref": "11"}));
    assert_eq!(
        out[0],
        json!({"topic": "room:x", "event": "phx_reply", "payload": {"status": "ok", "response": {"hello": "room:x"}}, "ref": "1"})
    );
    assert!(out.iter().all(|f| f.get("join_ref").is_none()));
}

#[test]
fn more_messages_in_a_second_than_the_rate_closes_the_socket_with_1008() {
    let mut h = harness_limited(SocketLimits {
        max_messages_per_sec: 3,
        ..SocketLimits::default()
    });
    let heartbeat = json!([null, "1", "phoenix", "heartbeat", {}]);
    let ok = json!([null, "1", "phoenix", "phx_reply", {"status": "ok", "response": {}}]);
    for _ in 0..3 {
        assert_eq!(h.send(heartbeat.clone()), vec![ok.clone()]);
    }
    // A second later the bucket is full again.
    h.now += Duration::from_secs(1);
    for _ in 0..3 {
        assert_eq!(h.send(heartbeat.clone()), vec![ok.clone()]);
    }
    assert_eq!(h.send(heartbeat), vec![json!({"close": 1008})]);
    assert!(h.state.is_closed());
}

#[test]
fn a_topic_longer_than_the_limit_gets_a_join_error_before_any_route_runs() {
    let mut h = harness_limited(SocketLimits {
        max_topic_bytes: 10,
        ..SocketLimits::default()
    });
    assert_eq!(
        h.send(json!(["1", "1", "room:0123456", "phx_join", {}])),
        vec![
            json!(["1", "1", "room:0123456", "phx_reply", {"status": "error", "response": {"reason": "topic too long"}}])
        ]
    );
    assert_eq!(h.state.channel_count(), 0);
    assert!(h.log.lock().unwrap().is_empty());
}

#[test]
fn client_strings_in_log_lines_are_clipped_to_64_bytes_with_their_length() {
    assert_eq!(Clip("room:a").to_string(), "\"room:a\"");
    let long = "é".repeat(40);
    assert_eq!(
        Clip(&long).to_string(),
        format!("{:?}… (80 bytes)", "é".repeat(32))
    );
}

#[test]
fn a_deferred_join_is_answered_when_the_channel_finishes_it_and_the_channel_then_works() {
    let mut h = harness();
    let join = json!(["1", "1", "room:a", "phx_join", {"defer": "ok"}]);
    assert_eq!(h.send(join), Vec::<Value>::new());
    assert_eq!(
        h.pump_inbox(),
        vec![
            json!(["1", "1", "room:a", "phx_reply", {"status": "ok", "response": {"later": true}}])
        ]
    );
    assert_eq!(
        h.send(json!(["1", "2", "room:a", "echo", {"x": 1}])),
        vec![json!(["1", "2", "room:a", "phx_reply", {"status": "ok", "response": {"x": 1}}])]
    );
}

#[test]
fn a_deferred_join_refused_later_gets_only_the_error_reply_and_ends_the_channel() {
    let mut h = harness();
    assert_eq!(
        h.send(json!(["1", "1", "room:a", "phx_join", {"defer": "error"}])),
        Vec::<Value>::new()
    );
    assert_eq!(
        h.pump_inbox(),
        vec![
            json!(["1", "1", "room:a", "phx_reply", {"status": "error", "response": {"reason": "later"}}])
        ]
    );
    assert_eq!(
        h.log.lock().unwrap().as_slice(),
        ["terminate room:a Stopped(Normal)"]
    );
    // Not joined: a push on the topic is answered as on any topic never joined.
    let frames = h.send(json!(["1", "2", "room:a", "echo", {}]));
    assert_eq!(
        first_event(&frames, "phx_reply")[4]["response"]["reason"],
        "unmatched topic"
    );
}

#[test]
fn a_leave_while_the_join_is_deferred_ends_the_channel_and_the_late_answer_is_dropped() {
    let mut h = harness();
    h.send(json!(["1", "1", "room:a", "phx_join", {"defer": "ok"}]));
    let frames = h.send(json!(["1", "2", "room:a", "phx_leave", {}]));
    assert_eq!(
        first_event(&frames, "phx_reply"),
        json!(["1", "2", "room:a", "phx_reply", {"status": "ok", "response": {}}])
    );
    assert_eq!(h.pump_inbox(), Vec::<Value>::new());
}
