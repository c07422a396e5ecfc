//! Room limits over a real WebSocket against the real app (the kit's Phoenix client, V2): a burst of
//! joiners is admitted or refused and never evicts anyone admitted; the peers-per-room and
//! rooms-per-server refusals with their exact replies; a mass departure logs linearly; chat's
//! size and rate limits, its refusal of non-members, and that no message is kept for later.
//!
//! The log lines are counted by a logger this binary installs before any server starts; lines are
//! told apart by their `room=<id>` field, so tests running side by side do not mix.

mod kit;

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use kit::eventually;
use kit::phoenix::{Client, join_event};
use kit::server::{Server, start_server, test_config};
use serde_json::{Value, json};
use videoroom::config::Config;

/// Every log line at info or above, as written.
struct CountingLogger {
    lines: Mutex<Vec<String>>,
}

impl log::Log for CountingLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let line = record.args().to_string();
            self.lines.lock().unwrap().push(line);
        }
    }

    fn flush(&self) {}
}

fn logger() -> &'static CountingLogger {
    static LOGGER: OnceLock<&'static CountingLogger> = OnceLock::new();
    LOGGER.get_or_init(|| {
        let logger: &'static CountingLogger = Box::leak(Box::new(CountingLogger {
            lines: Mutex::new(Vec::new()),
        }));
        log::set_logger(logger).expect("this binary installs the only logger");
        log::set_max_level(log::LevelFilter::Info);
        logger
    })
}

/// The log lines so far about room `room` that contain `needle`.
fn lines_about(room: &str, needle: &str) -> Vec<String> {
    let tag = format!("room={room} ");
    logger()
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with(&tag) && l.contains(needle))
        .cloned()
        .collect()
}

/// The app with `max_peers` per room and `max_rooms` rooms; the logger is installed first.
async fn start(max_peers: usize, max_rooms: usize) -> Server {
    logger();
    start_server(Config {
        room_grace_secs: 0.3,
        max_peers_per_room: max_peers,
        max_rooms,
        // The burst opens 300 sockets from 127.0.0.1.
        max_connections_per_ip: 1000,
        ..test_config()
    })
    .await
}

/// The reply to a join or push that was accepted.
fn ok_reply() -> Value {
    json!({"status": "ok", "response": {}})
}

/// The reply to a join or push refused for `reason`.
fn refusal(reason: &str) -> Value {
    json!({"status": "error", "response": {"reason": reason}})
}

/// How one joiner of a burst ended up.
enum Outcome {
    Admitted(Client),
    Denied(Client, Value),
    Refused(Value),
}

async fn join_and_wait(addr: std::net::SocketAddr, room: &str, name: String) -> Outcome {
    let (mut c, reply) = Client::joined(addr, &format!("room:{room}")).await;
    if reply["status"] != "ok" {
        return Outcome::Refused(reply);
    }
    c.media(join_event(&name)).await;
    let first = c
        .next_media(Duration::from_secs(30))
        .await
        .expect("an attached joiner hears peerAccepted or peerDenied");
    match first["type"].as_str() {
        Some("peerAccepted") => Outcome::Admitted(c),
        Some("peerDenied") => Outcome::Denied(c, first["data"].clone()),
        _ => panic!("unexpected first media event {first}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_300_joiners_is_admitted_or_refused_and_never_evicts_an_admitted_peer() {
    let server = start(100, 10).await;
    let joins: Vec<_> = (0..300)
        .map(|i| tokio::spawn(join_and_wait(server.http, "burst", format!("p{i}"))))
        .collect();
    let (mut admitted, mut denied, mut refused) = (Vec::new(), Vec::new(), Vec::new());
    for j in joins {
        match j.await.unwrap() {
            Outcome::Admitted(c) => admitted.push(c),
            Outcome::Denied(c, data) => denied.push((c, data)),
            Outcome::Refused(reply) => refused.push(reply),
        }
    }
    // 100 members, as many channels waiting (here: denied), the rest refused at the channel.
    assert_eq!(admitted.len(), 100);
    assert_eq!(denied.len(), 100);
    assert_eq!(refused.len(), 100);
    for (_, data) in &denied {
        assert_eq!(data, &json!({"reason":"room is full"}));
    }
    for reply in &refused {
        assert_eq!(reply, &refusal("room is busy"));
    }
    // Every admitted peer heard only of arrivals (no peerLeft, no error, no close) ...
    let drains = admitted.iter_mut().map(|c| async move {
        while let Some(ev) = c.next_media(Duration::from_millis(300)).await {
            assert_eq!(ev["type"], "peerJoined", "an admitted peer got {ev}");
        }
    });
    futures_util::future::join_all(drains).await;
    // ... and its channel is still open: its leave is answered.
    for c in &mut admitted {
        c.leave().await;
    }
    assert!(lines_about("burst", "overloaded").is_empty());
    assert!(lines_about("burst", "disconnected").is_empty());
}

#[tokio::test]
async fn the_joiner_beyond_the_peer_limit_is_denied_and_beyond_twice_it_is_refused_as_busy() {
    let server = start(2, 10).await;
    let (_a, _) = Client::join_room(server.http, "small", "A").await;
    let (_b, _) = Client::join_room(server.http, "small", "B").await;
    let (mut c, reply) = Client::joined(server.http, "room:small").await;
    assert_eq!(reply, ok_reply());
    c.media(join_event("C")).await;
    assert_eq!(
        c.expect_media("peerDenied").await,
        json!({"reason":"room is full"})
    );
    let (_d, reply) = Client::joined(server.http, "room:small").await;
    assert_eq!(reply, ok_reply());
    let (_e, reply) = Client::joined(server.http, "room:small").await;
    assert_eq!(reply, refusal("room is busy"));
    assert_eq!(lines_about("small", "join refused: room is busy").len(), 1);
}

#[tokio::test]
async fn a_join_that_would_start_one_room_too_many_gets_too_many_rooms_and_one_log_line() {
    let server = start(10, 2).await;
    let (_a, _) = Client::join_room(server.http, "first", "A").await;
    let (_b, _) = Client::join_room(server.http, "second", "B").await;
    let (_c, reply) = Client::joined(server.http, "room:third").await;
    assert_eq!(reply, refusal("too many rooms"));
    assert_eq!(lines_about("third", "").len(), 1);
    assert_eq!(
        lines_about("third", "join refused: too many rooms").len(),
        1
    );
    // A running room still takes joiners.
    let (_d, reply) = Client::joined(server.http, "room:first").await;
    assert_eq!(reply, ok_reply());
    assert_eq!(server.rooms.room_ids(), ["first", "second"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_peers_vanishing_at_once_log_a_linear_number_of_lines() {
    const N: usize = 60;
    let server = start(N, 10).await;
    let mut peers = Vec::new();
    for i in 0..N {
        let (c, _) = Client::join_room(server.http, "depart", &format!("p{i}")).await;
        peers.push(c);
    }
    // Every peer has heard of everyone, so each departure is broadcast to all who remain.
    let drains = peers
        .iter_mut()
        .map(|c| async move { while c.next_media(Duration::from_millis(200)).await.is_some() {} });
    futures_util::future::join_all(drains).await;
    let before = lines_about("depart", "").len();
    for c in peers {
        c.vanish();
    }
    assert!(
        eventually(Duration::from_secs(20), || !server.rooms.contains("depart")).await,
        "the room stops after its last peer and the grace period"
    );
    let during = lines_about("depart", "").len() - before;
    let not_delivered = lines_about("depart", "not delivered").len();
    assert!(
        not_delivered <= N,
        "{not_delivered} 'not delivered' lines for {N} peers"
    );
    // A handful of lines per peer (channel ended, detached, perhaps not delivered) and the stop,
    // where one line per undeliverable event would be N²/2 = 1800.
    assert!(during <= 5 * N, "{during} lines for {N} departures");
}

/// `c` pushes `chat` with `payload` on `room:<room>`; returns the push's reply.
async fn send_chat(c: &mut Client, room: &str, payload: Value) -> Value {
    let r = c.push(&format!("room:{room}"), "chat", payload).await;
    c.reply(&r).await
}

/// The next `chat` push a client receives (skipping media events).
async fn next_chat(c: &mut Client) -> Value {
    c.expect_event("chat").await
}

#[tokio::test]
async fn a_chat_message_reaches_every_member_with_the_senders_name_and_the_server_time() {
    let server = start(10, 10).await;
    let (mut ann, _) = Client::join_room(server.http, "chat", "Ann").await;
    let (mut bo, _) = Client::join_room(server.http, "chat", "<b>Bo</b>").await;
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert_eq!(
        send_chat(
            &mut bo,
            "chat",
            json!({"text": "<script>hi</script> & \"ż\""})
        )
        .await,
        ok_reply()
    );
    for c in [&mut ann, &mut bo] {
        let m = next_chat(c).await;
        // Text and name go out as they came in: JSON carries them, the client renders text.
        assert_eq!(m["displayName"], "<b>Bo</b>");
        assert_eq!(m["text"], "<script>hi</script> & \"ż\"");
        assert!(m["peerId"].as_str().is_some_and(|p| p.len() == 36), "{m}");
        let at = m["sentAt"].as_u64().expect("sentAt in ms");
        assert!(at >= before && at < before + 60_000, "{at} vs {before}");
    }
}

#[tokio::test]
async fn chat_over_the_size_or_rate_limit_is_answered_with_an_error_and_not_delivered() {
    use videoroom::room::chat::{CHAT_BURST, MAX_CHAT_CHARS};
    let server = start(10, 10).await;
    let (mut ann, _) = Client::join_room(server.http, "chat-limits", "Ann").await;
    let (mut bo, _) = Client::join_room(server.http, "chat-limits", "Bo").await;

    assert_eq!(
        send_chat(
            &mut ann,
            "chat-limits",
            json!({"text": "x".repeat(MAX_CHAT_CHARS + 1)})
        )
        .await,
        refusal("message too long")
    );
    for payload in [json!({"text": "  "}), json!({"text": 5}), json!({})] {
        assert_eq!(
            send_chat(&mut ann, "chat-limits", payload).await,
            refusal("empty message")
        );
    }
    // The burst goes through; the next message at once is over the rate.
    for i in 0..CHAT_BURST {
        assert_eq!(
            send_chat(&mut ann, "chat-limits", json!({"text": format!("m{i}")})).await,
            ok_reply()
        );
    }
    assert_eq!(
        send_chat(&mut ann, "chat-limits", json!({"text": "one too many"})).await,
        refusal("too many messages")
    );
    // Bo sees exactly the burst, in order, and nothing refused: the next chat after it is the
    // one Bo sends now (a refused message, had it reached the room, would come before it).
    assert_eq!(
        send_chat(&mut bo, "chat-limits", json!({"text": "from Bo"})).await,
        ok_reply()
    );
    for i in 0..CHAT_BURST {
        assert_eq!(next_chat(&mut bo).await["text"], format!("m{i}"));
    }
    assert_eq!(next_chat(&mut bo).await["text"], "from Bo");
}

#[tokio::test]
async fn chat_is_not_kept_a_member_who_joins_later_gets_no_earlier_messages() {
    let server = start(10, 10).await;
    let (mut ann, _) = Client::join_room(server.http, "chat-history", "Ann").await;
    assert_eq!(
        send_chat(&mut ann, "chat-history", json!({"text": "before Cy"})).await,
        ok_reply()
    );
    assert_eq!(next_chat(&mut ann).await["text"], "before Cy");
    let (mut cy, _) = Client::join_room(server.http, "chat-history", "Cy").await;
    assert_eq!(
        send_chat(&mut ann, "chat-history", json!({"text": "after Cy"})).await,
        ok_reply()
    );
    // Cy's first chat is the one sent after Cy joined: there is no history to replay.
    assert_eq!(next_chat(&mut cy).await["text"], "after Cy");
}

#[tokio::test]
async fn chat_from_a_peer_not_admitted_to_the_room_is_refused() {
    let server = start(1, 10).await;
    let (_inside, _) = Client::join_room(server.http, "chat-full", "Inside").await;
    let (mut outside, reply) = Client::joined(server.http, "room:chat-full").await;
    assert_eq!(reply["status"], "ok");
    outside.media(join_event("Outside")).await;
    outside.expect_media("peerDenied").await;
    assert_eq!(
        send_chat(&mut outside, "chat-full", json!({"text": "let me in"})).await,
        refusal("not in the room")
    );
}
