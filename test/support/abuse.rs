//! The abuse suite: hostile clients (floods, huge frames and fields, slow and half-open
//! connections, bursts, mass departures) tried against the real `videoroom` binary over
//! loopback, while a canary peer joined to `room:canary` measures heartbeat round trips.
//!
//! `cargo run --example abuse` (server: `$VIDEOROOM_BIN`, default `target/debug/videoroom`).
//! Prints one line per attack: what was sent, what the server answered, the canary's round trip
//! (p50/p99/max) during the attack and the server's RSS before/after. Exits non-zero when an
//! attack is not answered as specified or when the canary notices anything (closed, or a
//! heartbeat unanswered for `CANARY_STALL`). Counts are scaled down from the
//! issue where noted, so the whole suite stays within a few minutes on two cores.
//!
//! Clients connect from several loopback addresses (127.0.0.x, 127.0.x.y) so that the
//! per-IP connection limit applies to each attack on its own, as it would to strangers.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;

#[allow(dead_code)]
#[path = "../kit/server_process.rs"]
mod server_process;
use server_process::ServerProcess;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// Header-read timeout the main server runs with (seconds), so slow clients are closed quickly.
const HEADER_TIMEOUT_SECS: u64 = 2;
/// Per-IP connection limit of the main server (the default 256 would also do; 600 lets the
/// 500 half-sent headers come from one address).
const PER_IP: usize = 600;
/// A canary heartbeat unanswered this long counts as noticed.
const CANARY_STALL: Duration = Duration::from_secs(3);
/// Longest any single attack may take.
const ATTACK_DEADLINE: Duration = Duration::from_secs(60);

type Ws = WebSocketStream<TcpStream>;

// ------------------------------------------------------------------------------------------
// The server under attack

/// The real binary on free loopback ports (the tests' shared launcher).
type Server = ServerProcess;

/// Starts the server under attack with `args`.
fn start_server(args: &[&str]) -> Server {
    let bin = std::env::var("VIDEOROOM_BIN").unwrap_or_else(|_| {
        let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
        format!("{target}/debug/videoroom")
    });
    ServerProcess::start(&bin, args, &[])
}

// ------------------------------------------------------------------------------------------
// Clients

fn ip(a: u8, b: u8, c: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, a, b, c))
}

async fn tcp_from(
    addr: SocketAddr,
    from: IpAddr,
    recv_buffer: Option<u32>,
) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(addr).await
}

async fn ws_from(addr: SocketAddr, from: IpAddr, recv_buffer: Option<u32>) -> Result<Ws, String> {
    let tcp = tcp_from(addr, from, recv_buffer)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let url = format!("ws://{addr}/socket/websocket?vsn=2.0.0");
    tokio_tungstenite::client_async(url, tcp)
        .await
        .map(|(ws, _)| ws)
        .map_err(|e| format!("upgrade: {e}"))
}

/// What the server sent next.
#[derive(Debug)]
enum Frame {
    Text(Value),
    Close(Option<u16>),
    Timeout,
    Gone,
}

async fn next_frame(ws: &mut Ws, within: Duration) -> Frame {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return Frame::Timeout,
            Ok(Some(Ok(Message::Text(t)))) => {
                return Frame::Text(serde_json::from_str(&t).unwrap_or(Value::Null));
            }
            Ok(Some(Ok(Message::Close(f)))) => return Frame::Close(f.map(|f| u16::from(f.code))),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_)) | None) => return Frame::Gone,
        }
    }
}

/// The media event inside a `mediaEvent` push, if `frame` is one.
fn media_event(frame: &Value) -> Option<Value> {
    (frame[3] == "mediaEvent")
        .then(|| frame[4]["data"].as_str())
        .flatten()
        .and_then(|s| serde_json::from_str(s).ok())
}

fn push_media(topic: &str, event: &Value) -> Message {
    Message::text(json!(["1", null, topic, "mediaEvent", {"data": event.to_string()}]).to_string())
}

/// How a join ended.
#[derive(Debug, Clone, PartialEq)]
enum Joined {
    /// `peerAccepted` with this peer id.
    Accepted(String),
    /// `peerDenied` or an `error` media event.
    Denied(String),
    /// `phx_join` answered with an error.
    JoinError(String),
    /// Closed, timed out or failed before an answer.
    NoAnswer(String),
}

/// A peer of a room over one WebSocket: channel joined, media `join` sent.
struct Peer {
    ws: Ws,
    topic: String,
}

/// How long a join may take unless an attack says otherwise.
const JOIN_WITHIN: Duration = Duration::from_secs(5);

/// Joins `room` as a media peer named `name`; waits (up to [`JOIN_WITHIN`]) for the answer to
/// the media `join`.
async fn join_peer(
    addr: SocketAddr,
    from: IpAddr,
    room: &str,
    name: &str,
) -> (Option<Peer>, Joined) {
    join_peer_with(addr, from, room, name, JOIN_WITHIN, None).await
}

/// [`join_peer`] waiting up to `within`, over a socket with `recv_buffer` bytes of receive
/// buffer (None: the kernel's default).
async fn join_peer_with(
    addr: SocketAddr,
    from: IpAddr,
    room: &str,
    name: &str,
    within: Duration,
    recv_buffer: Option<u32>,
) -> (Option<Peer>, Joined) {
    let mut ws = match ws_from(addr, from, recv_buffer).await {
        Ok(ws) => ws,
        Err(e) => return (None, Joined::NoAnswer(e)),
    };
    let topic = format!("room:{room}");
    if ws
        .send(Message::text(
            json!(["1", "1", topic, "phx_join", {}]).to_string(),
        ))
        .await
        .is_err()
    {
        return (None, Joined::NoAnswer("send phx_join".into()));
    }
    let deadline = Instant::now() + within;
    loop {
        match next_frame(&mut ws, deadline.saturating_duration_since(Instant::now())).await {
            Frame::Text(v) if v[1] == "1" && v[3] == "phx_reply" => {
                if v[4]["status"] != "ok" {
                    return (None, Joined::JoinError(v[4]["response"].to_string()));
                }
                break;
            }
            Frame::Text(_) => continue,
            other => return (None, Joined::NoAnswer(format!("phx_join: {other:?}"))),
        }
    }
    let metadata = json!({"displayName": name});
    let join = json!({"type": "join", "data": {"receiveMedia": true, "metadata": metadata}});
    if ws.send(push_media(&topic, &join)).await.is_err() {
        return (None, Joined::NoAnswer("send join".into()));
    }
    loop {
        match next_frame(&mut ws, deadline.saturating_duration_since(Instant::now())).await {
            Frame::Text(v) => match media_event(&v) {
                Some(e) if e["type"] == "peerAccepted" => {
                    let id = e["data"]["id"].as_str().unwrap_or("").to_owned();
                    return (Some(Peer { ws, topic }), Joined::Accepted(id));
                }
                Some(e) if e["type"] == "peerDenied" || e["type"] == "error" => {
                    let what = format!("{} {}", e["type"], clip(&e["data"].to_string(), 60));
                    return (Some(Peer { ws, topic }), Joined::Denied(what));
                }
                _ => continue,
            },
            other => return (None, Joined::NoAnswer(format!("media join: {other:?}"))),
        }
    }
}

/// Reads `ws` (skipping text frames) until it ends or `within` passes: how it ended (`close
/// Some(code)`, or the frame it ended with), None when it did not.
async fn ending(ws: &mut Ws, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        match next_frame(ws, Duration::from_secs(5)).await {
            Frame::Text(_) => continue,
            Frame::Close(c) => return Some(format!("close {c:?}")),
            other => return Some(format!("{other:?}")),
        }
    }
    None
}

/// Heartbeat on `ws`; true when answered ok within `within` (other frames are skipped).
async fn heartbeat(ws: &mut Ws, within: Duration) -> bool {
    let hb = Message::text(r#"[null,"hb","phoenix","heartbeat",{}]"#);
    if ws.send(hb).await.is_err() {
        return false;
    }
    let deadline = Instant::now() + within;
    loop {
        match next_frame(ws, deadline.saturating_duration_since(Instant::now())).await {
            Frame::Text(v) if v[1] == "hb" => return v[4]["status"] == "ok",
            Frame::Text(_) => continue,
            _ => return false,
        }
    }
}

/// A peer whose frames are read by a background task (media events kept, clipped), so it
/// never falls behind; it sends through `sink`. `ended` holds how it ended, if it did.
struct Drained {
    sink: futures_util::stream::SplitSink<Ws, Message>,
    events: Arc<Mutex<Vec<Value>>>,
    replies: Arc<Mutex<Vec<String>>>,
    bytes: Arc<AtomicU64>,
    ended: Arc<Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
    topic: String,
}

/// [`join_peer`] that must be admitted: the peer and its id, or the failed setup step.
async fn join_accepted(
    addr: SocketAddr,
    from: IpAddr,
    room: &str,
    name: &str,
) -> Result<(Peer, String), Outcome> {
    match join_peer(addr, from, room, name).await {
        (Some(peer), Joined::Accepted(id)) => Ok((peer, id)),
        (_, joined) => Err(setup_failed(&format!("{name} join"), format!("{joined:?}"))),
    }
}

/// `count` peers named `<prefix><n>` joined to `room` one after another from `source(n)`, each
/// admitted and drained; the first that is not admitted ends it with what happened to it.
async fn join_admitted(
    s: &Server,
    source: impl Fn(usize) -> IpAddr,
    room: &str,
    prefix: &str,
    count: usize,
) -> Result<Vec<Drained>, Outcome> {
    let mut peers = Vec::with_capacity(count);
    for n in 0..count {
        let (peer, _) = join_accepted(s.http, source(n), room, &format!("{prefix}{n}")).await?;
        peers.push(drain(peer));
    }
    Ok(peers)
}

fn drain(peer: Peer) -> Drained {
    let events = Arc::new(Mutex::new(Vec::new()));
    let replies = Arc::new(Mutex::new(Vec::new()));
    let bytes = Arc::new(AtomicU64::new(0));
    let ended = Arc::new(Mutex::new(None));
    let (ev, re, by, en) = (
        events.clone(),
        replies.clone(),
        bytes.clone(),
        ended.clone(),
    );
    let (sink, mut stream) = peer.ws.split();
    let task = tokio::spawn(async move {
        loop {
            let why = match stream.next().await {
                Some(Ok(Message::Text(t))) => {
                    by.fetch_add(t.len() as u64, Ordering::Relaxed);
                    let Ok(frame) = serde_json::from_str::<Value>(&t) else {
                        continue;
                    };
                    if frame[3] == "phx_reply" {
                        re.lock()
                            .unwrap()
                            .push(frame[1].as_str().unwrap_or("").to_owned());
                    } else if let Some(mut e) = media_event(&frame) {
                        // Keep the event's shape, not megabytes of metadata.
                        if t.len() > 4096 {
                            e = json!({"type": e["type"], "data": {"peerId": e["data"]["peerId"], "clipped": true}});
                        }
                        ev.lock().unwrap().push(e);
                    }
                    continue;
                }
                Some(Ok(Message::Close(f))) => format!("close {:?}", f.map(|f| u16::from(f.code))),
                Some(Ok(_)) => continue,
                Some(Err(e)) => format!("error {e}"),
                None => "gone".into(),
            };
            *en.lock().unwrap() = Some(why);
            return;
        }
    });
    Drained {
        sink,
        events,
        replies,
        bytes,
        ended,
        task,
        topic: peer.topic,
    }
}

impl Drained {
    fn ended(&self) -> Option<String> {
        self.ended.lock().unwrap().clone()
    }

    async fn send_media(&mut self, event: &Value) -> bool {
        let frame = push_media(&self.topic, event);
        self.sink.send(frame).await.is_ok()
    }

    /// Heartbeat answered within 5 s?
    async fn heartbeat(&mut self) -> bool {
        let reference = format!("hb{}", uuid::Uuid::new_v4().simple());
        let frame = format!(r#"[null,"{reference}","phoenix","heartbeat",{{}}]"#);
        if self.sink.send(Message::text(frame)).await.is_err() {
            return false;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.replies.lock().unwrap().contains(&reference) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    /// Alive: not ended and answers a heartbeat.
    async fn alive(&mut self) -> bool {
        self.ended().is_none() && self.heartbeat().await
    }
}

impl Drop for Drained {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn clip(s: &str, n: usize) -> String {
    if s.len() <= n {
        s.to_owned()
    } else {
        let mut end = n;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    }
}

/// Raw HTTP: sends `request`, returns the answer's status line (reads for at most `within`).
async fn http_status(addr: SocketAddr, from: IpAddr, request: &[u8], within: Duration) -> String {
    let Ok(mut tcp) = tcp_from(addr, from, None).await else {
        return "connect failed".into();
    };
    if tcp.write_all(request).await.is_err() {
        return "write failed".into();
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(within, tcp.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or("(nothing)")
        .to_owned()
}

async fn get_status(addr: SocketAddr, target: &str) -> String {
    let request = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    http_status(
        addr,
        ip(0, 0, 1),
        request.as_bytes(),
        Duration::from_secs(5),
    )
    .await
}

/// Waits until the server closes `tcp` (EOF or reset); returns when, or None after `within`.
async fn closed_after(mut tcp: TcpStream, started: Instant, within: Duration) -> Option<Duration> {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((started + within).into(), tcp.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

// ------------------------------------------------------------------------------------------
// The canary

/// Heartbeat round trips of the canary peer in `room:canary`, sampled every 20 ms.
struct Canary {
    samples: Arc<Mutex<Vec<f64>>>,
    /// Set when the canary was closed or a heartbeat went unanswered for `CANARY_STALL`.
    noticed: Arc<Mutex<Option<String>>>,
}

impl Canary {
    async fn start(addr: SocketAddr) -> Canary {
        let (peer, _) = match join_accepted(addr, ip(0, 0, 1), "canary", "canary").await {
            Ok(joined) => joined,
            Err((step, why, _)) => panic!("canary could not join: {step}: {why}"),
        };
        let samples = Arc::new(Mutex::new(Vec::new()));
        let noticed = Arc::new(Mutex::new(None));
        let (s, n) = (samples.clone(), noticed.clone());
        let mut ws = peer.ws;
        tokio::spawn(async move {
            let mut seq = 0u64;
            loop {
                seq += 1;
                let sent = Instant::now();
                let hb = format!(r#"[null,"c{seq}","phoenix","heartbeat",{{}}]"#);
                if ws.send(Message::text(hb)).await.is_err() {
                    *n.lock().unwrap() = Some("send failed".into());
                    return;
                }
                let want = format!("c{seq}");
                loop {
                    match next_frame(&mut ws, CANARY_STALL.saturating_sub(sent.elapsed())).await {
                        Frame::Text(v) if v[1] == want.as_str() => {
                            s.lock()
                                .unwrap()
                                .push(sent.elapsed().as_secs_f64() * 1000.0);
                            break;
                        }
                        Frame::Text(_) => continue,
                        other => {
                            *n.lock().unwrap() = Some(format!("heartbeat c{seq}: {other:?}"));
                            return;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Canary { samples, noticed }
    }

    /// Round trips since the last call: (count, p50, p99, max) in ms.
    fn take(&self) -> (usize, f64, f64, f64) {
        let mut v = std::mem::take(&mut *self.samples.lock().unwrap());
        if v.is_empty() {
            return (0, 0.0, 0.0, 0.0);
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        (v.len(), at(0.5), at(0.99), v[v.len() - 1])
    }
}

// ------------------------------------------------------------------------------------------
// The attacks. Each returns (what was sent, what the server answered, as specified?), or the
// outcome of the setup step that failed before it could attack.

type Outcome = (String, String, bool);
type Attack = Result<Outcome, Outcome>;

/// The outcome of setup `step` failing with `why`.
fn setup_failed(step: &str, why: impl std::fmt::Display) -> Outcome {
    (step.to_owned(), why.to_string(), false)
}

/// How much a server log grew: `<bytes> bytes in <lines> lines`.
fn log_growth(log: &str) -> String {
    format!("{} bytes in {} lines", log.len(), log.lines().count())
}

async fn nested_query(s: &Server) -> Attack {
    let nested = format!("a{}=1", "[a]".repeat(9000));
    let ws = get_status(s.http, &format!("/socket/websocket?vsn=2.0.0&{nested}")).await;
    let lp = get_status(s.http, &format!("/socket/longpoll?vsn=2.0.0&{nested}")).await;
    let health = get_status(s.http, "/healthcheck").await;
    let ok = ws.contains(" 400 ") && lp.contains(" 400 ") && health.contains(" 200 ");
    Ok((
        format!(
            "GET with a 9,000-level nested query ({} KB) on both transports",
            nested.len() / 1000
        ),
        format!("websocket `{ws}`, longpoll `{lp}`, then /healthcheck `{health}`"),
        ok,
    ))
}

async fn longpoll_bodies(s: &Server) -> Attack {
    let open = {
        let request = format!(
            "GET /socket/longpoll?vsn=2.0.0 HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            s.http
        );
        let mut tcp = TcpStream::connect(s.http).await.expect("connect");
        tcp.write_all(request.as_bytes()).await.expect("write");
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
        String::from_utf8_lossy(&answer).into_owned()
    };
    let Some(token) = open
        .split("\"token\":\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .map(str::to_owned)
    else {
        return Err(setup_failed(
            "open a LongPoll session",
            format!("no token: {}", clip(&open, 200)),
        ));
    };
    let rss_before = s.rss_mib();
    let mut tasks = Vec::new();
    for n in 0..10u8 {
        let (addr, token) = (s.http, token.clone());
        tasks.push(tokio::spawn(async move {
            let tcp = tcp_from(addr, ip(0, 1, n + 1), None).await.expect("connect");
            let (mut rd, mut wr) = tcp.into_split();
            let head = format!(
                "POST /socket/longpoll?vsn=2.0.0&token={token} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-ndjson\r\nContent-Length: 200000000\r\nConnection: close\r\n\r\n"
            );
            let writer = tokio::spawn(async move {
                let chunk = vec![b'x'; 64 * 1024];
                let mut sent = 0usize;
                if wr.write_all(head.as_bytes()).await.is_err() {
                    return sent;
                }
                while sent < 3 * 1024 * 1024 {
                    if wr.write_all(&chunk).await.is_err() {
                        break;
                    }
                    sent += chunk.len();
                }
                sent
            });
            let mut answer = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), rd.read_to_end(&mut answer)).await;
            let sent = tokio::time::timeout(Duration::from_secs(5), writer).await.ok().and_then(Result::ok).unwrap_or(0);
            let status = String::from_utf8_lossy(&answer).lines().next().unwrap_or("(nothing)").to_owned();
            (status, sent)
        }));
    }
    let mut statuses = Vec::new();
    let mut body_bytes = 0;
    for t in tasks {
        let (status, sent) = t.await.expect("task");
        statuses.push(status);
        body_bytes += sent;
    }
    let rss_after = s.rss_mib();
    let refused = statuses.iter().filter(|s| s.contains(" 413 ")).count();
    let ok = refused == 10 && rss_after - rss_before < 32.0;
    Ok((
        format!(
            "10 LongPoll POSTs declaring Content-Length 200,000,000, {:.1} MB of body actually written in total",
            body_bytes as f64 / 1e6
        ),
        format!(
            "{refused}/10 `HTTP/1.1 413 Payload Too Large` (others: {:?}); RSS {rss_before:.1} → {rss_after:.1} MiB",
            statuses
                .iter()
                .filter(|s| !s.contains(" 413 "))
                .collect::<Vec<_>>()
        ),
        ok,
    ))
}

async fn half_sent_headers(s: &Server) -> Attack {
    let started = Instant::now();
    let mut waits = Vec::new();
    for _ in 0..500 {
        let Ok(mut tcp) = tcp_from(s.http, ip(0, 0, 4), None).await else {
            continue;
        };
        let _ = tcp
            .write_all(b"GET /healthcheck HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await;
        waits.push(tokio::spawn(closed_after(
            tcp,
            started,
            Duration::from_secs(HEADER_TIMEOUT_SECS + 5),
        )));
    }
    let health = get_status(s.http, "/healthcheck").await;
    let mut closed = Vec::new();
    let mut open = 0;
    for w in waits {
        match w.await.expect("task") {
            Some(d) => closed.push(d.as_secs_f64()),
            None => open += 1,
        }
    }
    closed.sort_by(|a, b| a.total_cmp(b));
    let (first, last) = (
        closed.first().copied().unwrap_or(0.0),
        closed.last().copied().unwrap_or(0.0),
    );
    let ok = open == 0
        && closed.len() == 500
        && first >= HEADER_TIMEOUT_SECS as f64 - 0.5
        && last <= HEADER_TIMEOUT_SECS as f64 + 1.5
        && health.contains(" 200 ");
    Ok((
        format!(
            "500 connections each sending half a request head (no blank line), header timeout {HEADER_TIMEOUT_SECS} s"
        ),
        format!(
            "{} closed between {first:.2} s and {last:.2} s, {open} still open; meanwhile /healthcheck `{health}`",
            closed.len()
        ),
        ok,
    ))
}

async fn silent_connections(s: &Server) -> Attack {
    const SILENT: usize = 2000;
    let started = Instant::now();
    // One after the other (a burst of 2,000 SYNs overflows the kernel's listen backlog, which is
    // not the server's doing); on loopback all are connected well before the header timeout.
    let mut waits = Vec::new();
    for _ in 0..SILENT {
        let Ok(tcp) = tcp_from(s.http, ip(0, 0, 2), None).await else {
            waits.push(tokio::spawn(async { None }));
            continue;
        };
        waits.push(tokio::spawn(closed_after(
            tcp,
            Instant::now(),
            Duration::from_secs(HEADER_TIMEOUT_SECS + 5),
        )));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let connected_in = started.elapsed().as_secs_f64();
    // A new user from another address, while the silent ones are held.
    let newcomer_started = Instant::now();
    let (peer, joined) = join_peer(s.http, ip(0, 0, 3), "newcomer", "new").await;
    let newcomer_ms = newcomer_started.elapsed().as_secs_f64() * 1000.0;
    let newcomer_ok = matches!(joined, Joined::Accepted(_));
    drop(peer);
    let mut at_once = 0;
    let mut after_timeout = 0;
    let mut open = 0;
    for w in waits {
        match w.await.expect("task") {
            Some(d) if d.as_secs_f64() < HEADER_TIMEOUT_SECS as f64 - 0.2 => at_once += 1,
            Some(_) => after_timeout += 1,
            None => open += 1,
        }
    }
    // Every connection ends: over the limit at once, the rest at the header timeout. When
    // connecting takes longer than the timeout (a loaded machine), the first held ones time out
    // and free their places for later ones, so only the refused majority is a fixed bound.
    let ok = newcomer_ok && open == 0 && at_once >= SILENT / 2 && at_once + after_timeout == SILENT;
    Ok((
        format!(
            "{SILENT} silent TCP connections from 127.0.0.2 (issue: 20,000; per-IP limit {PER_IP}), then a new user from 127.0.0.3"
        ),
        format!(
            "{at_once} closed before the header timeout (over the per-IP limit), {after_timeout} closed after the {HEADER_TIMEOUT_SECS} s header timeout, {open} neither (still open, failed or closed early); all connected within {connected_in:.1} s; new user {} in {newcomer_ms:.0} ms; all done {:.1} s",
            if newcomer_ok {
                "admitted (peerAccepted)".to_owned()
            } else {
                format!("NOT admitted: {joined:?}")
            },
            started.elapsed().as_secs_f64()
        ),
        ok,
    ))
}

async fn sigterm_half_open() -> Attack {
    let mut server = start_server(&["--drain-timeout", "1"]);
    let addr = server.http;
    let (peer, _) = join_peer(addr, ip(0, 0, 1), "drain", "deaf").await;
    let mut half = TcpStream::connect(addr).await.expect("connect");
    half.write_all(b"POST /socket/longpoll HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nab")
        .await
        .expect("write");
    let _silent = TcpStream::connect(addr).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let term = Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status();
    let mut exit = None;
    while started.elapsed() < Duration::from_secs(5) {
        if let Some(status) = server.exit_status() {
            exit = Some((started.elapsed(), status));
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(peer);
    let ok = term.is_ok_and(|t| t.success())
        && exit.is_some_and(|(d, st)| d <= Duration::from_secs(2) && st.success());
    Ok((
        "SIGTERM to a separate server (--drain-timeout 1) holding a joined deaf WebSocket, a half-sent POST body and a silent connection".into(),
        match exit {
            Some((d, st)) => format!("exited after {:.2} s with {st} (limit: drain 1 s + 1 s)", d.as_secs_f64()),
            None => "still running after 5 s".into(),
        },
        ok,
    ))
}

async fn stopped_receiver(s: &Server) -> Attack {
    let rss_before = s.rss_mib();
    // The stuck peer reads nothing from here on; a small receive buffer keeps the kernel from
    // absorbing what the server's queue bound is about.
    let buffer = Some(16 * 1024);
    let (stuck, joined) =
        join_peer_with(s.http, ip(0, 0, 5), "stuck", "stuck", JOIN_WITHIN, buffer).await;
    let Some(mut stuck) = stuck else {
        return Err(setup_failed("stuck peer join", format!("{joined:?}")));
    };
    const TALKERS: usize = 6;
    // Each update stays under the peer-metadata limit (4 KiB), so it is broadcast; the count makes
    // up the volume, paced under the inbound rate limit (200/s).
    const UPDATES: usize = 600;
    let talkers = join_admitted(s, |_| ip(0, 0, 6), "stuck", "talker", TALKERS).await?;
    let blob = "m".repeat(3 * 1024);
    let mut handles = Vec::new();
    for mut t in talkers {
        let blob = blob.clone();
        handles.push(tokio::spawn(async move {
            for n in 0..UPDATES {
                let update = json!({"type": "updatePeerMetadata", "data": {"metadata": {"displayName": "talker", "n": n, "blob": blob}}});
                if !t.send_media(&update).await {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(6)).await;
            }
            t
        }));
    }
    let mut talkers = Vec::new();
    for h in handles {
        talkers.push(h.await.expect("task"));
    }
    let rss_peak = s.rss_mib();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Now read what is left: the backlog, then the close frame.
    let code = ending(&mut stuck.ws, Duration::from_secs(15)).await;
    let mut talkers_ok = 0;
    for t in &mut talkers {
        if t.alive().await {
            talkers_ok += 1;
        }
    }
    let rss_after = s.rss_mib();
    let ok = code.as_deref() == Some("close Some(1013)")
        && talkers_ok == TALKERS
        && rss_peak - rss_before < 64.0;
    Ok((
        format!(
            "a peer that stops reading (16 KiB receive buffer) in a room where {TALKERS} peers each broadcast {UPDATES} × 3 KB updatePeerMetadata ({:.1} MB towards it)",
            (TALKERS * UPDATES * 3 * 1024) as f64 / 1e6
        ),
        format!(
            "stuck peer: {}; {talkers_ok}/{TALKERS} talkers still answer heartbeats; RSS {rss_before:.1} → peak {rss_peak:.1} → {rss_after:.1} MiB",
            code.unwrap_or_else(|| "no close".into())
        ),
        ok,
    ))
}

async fn unknown_event_flood(s: &Server) -> Attack {
    let log_before = s.log_len();
    let socket = ws_from(s.http, ip(0, 0, 7), None).await;
    let mut ws = socket.map_err(|e| setup_failed("flood socket", e))?;
    let _ = ws
        .send(Message::text(r#"["1","1","room:flood","phx_join",{}]"#))
        .await;
    let _ = next_frame(&mut ws, Duration::from_secs(5)).await;
    let started = Instant::now();
    let mut sent = 0usize;
    'flood: while sent < 500_000 {
        for _ in 0..1000 {
            let frame = format!(r#"["1","{sent}","room:flood","no_such_event",{{}}]"#);
            if ws.feed(Message::text(frame)).await.is_err() {
                break 'flood;
            }
            sent += 1;
        }
        if ws.flush().await.is_err() {
            break;
        }
    }
    let flood_secs = started.elapsed().as_secs_f64();
    let code = ending(&mut ws, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = s.log_since(log_before);
    // Bounded by the rate limit (its burst of 200), not by the flood's 500,000 frames.
    let ok = code.as_deref() == Some("close Some(1008)")
        && log.lines().count() <= 20
        && log.len() < 64 * 1024;
    Ok((
        format!(
            "{sent} frames `[\"1\",n,\"room:flood\",\"no_such_event\",{{}}]` on a joined channel in {flood_secs:.1} s"
        ),
        format!(
            "{}; server log grew {}",
            code.unwrap_or_else(|| "no close".into()),
            log_growth(&log)
        ),
        ok,
    ))
}

async fn huge_topic(s: &Server) -> Attack {
    let log_before = s.log_len();
    let socket = ws_from(s.http, ip(0, 0, 8), None).await;
    let mut ws = socket.map_err(|e| setup_failed("socket", e))?;
    let topic = format!("room:{}", "t".repeat(8_000_000 - 5));
    let _ = ws
        .send(Message::text(format!(
            r#"["1","1","{topic}","phx_join",{{}}]"#
        )))
        .await;
    let reply = match next_frame(&mut ws, Duration::from_secs(10)).await {
        Frame::Text(v) => format!("{} {}", v[3], v[4]),
        other => format!("{other:?}"),
    };
    let alive = heartbeat(&mut ws, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = s.log_since(log_before);
    let ok =
        reply.contains("topic too long") && alive && log.lines().count() == 1 && log.len() < 1024;
    Ok((
        "phx_join of an 8,000,000-byte topic `room:ttt…`".into(),
        format!(
            "`{reply}`; socket still answers heartbeats: {alive}; log grew {}",
            log_growth(&log)
        ),
        ok,
    ))
}

async fn huge_display_names(s: &Server) -> Attack {
    let observers = join_admitted(s, |_| ip(0, 0, 9), "names", "obs", 3).await?;
    let rss_before = s.rss_mib();
    let name = "n".repeat(4 * 1024 * 1024);
    let mut tasks = Vec::new();
    for n in 0..20u8 {
        let (addr, name) = (s.http, name.clone());
        tasks.push(tokio::spawn(async move {
            let within = Duration::from_secs(20);
            let (peer, joined) =
                join_peer_with(addr, ip(0, 2, n + 1), "names", &name, within, None).await;
            // Keep the socket for a moment (an attacker would), then go.
            tokio::time::sleep(Duration::from_millis(500)).await;
            drop(peer);
            joined
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("task"));
    }
    let rss_peak = s.rss_mib();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refused = results
        .iter()
        .filter(|j| matches!(j, Joined::Denied(_) | Joined::JoinError(_)))
        .count();
    let accepted = results
        .iter()
        .filter(|j| matches!(j, Joined::Accepted(_)))
        .count();
    let example = results
        .iter()
        .find(|j| !matches!(j, Joined::Accepted(_)))
        .map(|j| format!("{j:?}"))
        .unwrap_or_default();
    let mut observers_ok = 0;
    let mut observed_bytes = 0;
    for mut o in observers {
        observed_bytes += o.bytes.load(Ordering::Relaxed);
        if o.alive().await {
            observers_ok += 1;
        }
    }
    let ok = refused == 20 && observers_ok == 3 && observed_bytes < 3 * 1024 * 1024;
    Ok((
        "20 peers joining one room with 4 MiB display names (3 observers in the room)".into(),
        format!(
            "{accepted} accepted, {refused} refused{}; observers still connected {observers_ok}/3, received {:.1} MB in total; RSS {rss_before:.1} → peak {rss_peak:.1} MiB",
            if example.is_empty() {
                String::new()
            } else {
                format!(" (e.g. {})", clip(&example, 80))
            },
            observed_bytes as f64 / 1e6
        ),
        ok,
    ))
}

const PUBLISHER_SDP: &str = include_str!("../fixtures/sdp/chromium-156/publisher-first-offer.sdp");

/// Asks for an offer (`renegotiateTracks`), then offers the fixture SDP publishing `track` on
/// mid 0; returns the media events received up to the answer or an `error`.
async fn publish(peer: &mut Peer, track: &str, ufrag: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    let _ = peer
        .ws
        .send(push_media(
            &peer.topic,
            &json!({"type": "renegotiateTracks", "data": {}}),
        ))
        .await;
    let sdp = PUBLISHER_SDP
        .replace("a=ice-ufrag:", &format!("a=ice-ufrag:{ufrag}"))
        .replace("a=ice-pwd:", &format!("a=ice-pwd:{ufrag}"));
    let mut offered = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match next_frame(
            &mut peer.ws,
            deadline.saturating_duration_since(Instant::now()),
        )
        .await
        {
            Frame::Text(v) => {
                let Some(e) = media_event(&v) else { continue };
                let kind = e["type"].as_str().unwrap_or("").to_owned();
                seen.push(e);
                if kind == "offerData" && !offered {
                    offered = true;
                    let offer = json!({"type": "sdpOffer", "data": {
                        "sdpOffer": {"type": "offer", "sdp": sdp},
                        "trackIdToTrackMetadata": {track: {}},
                        "midToTrackId": {"0": track}}});
                    let _ = peer.ws.send(push_media(&peer.topic, &offer)).await;
                }
                if kind == "sdpAnswer" || kind == "error" {
                    return seen;
                }
            }
            _ => return seen,
        }
    }
}

async fn track_ownership(s: &Server) -> Attack {
    let (mut a, a_id) = join_accepted(s.http, ip(0, 0, 10), "own", "a").await?;
    let a_track = format!("{a_id}:{}", uuid::Uuid::new_v4());
    let a_seen = publish(&mut a, &a_track, "aaaa").await;
    let a_answered = a_seen.iter().any(|e| e["type"] == "sdpAnswer");
    let a = drain(a);
    let (observer, _) = join_accepted(s.http, ip(0, 0, 10), "own", "c").await?;
    let observer = drain(observer);
    let (mut b, b_id) = join_accepted(s.http, ip(0, 0, 10), "own", "b").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let observed_before = observer.events.lock().unwrap().len();
    let b_seen = publish(&mut b, &a_track, "bbbb").await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let b_error = b_seen
        .iter()
        .find(|e| e["type"] == "error")
        .map(|e| e["data"]["message"].to_string());
    let b_answer = b_seen.iter().any(|e| e["type"] == "sdpAnswer");
    let observed: Vec<Value> = observer.events.lock().unwrap()[observed_before..].to_vec();
    let changed: Vec<String> = observed
        .iter()
        .filter(|e| e.to_string().contains(&a_track))
        .map(|e| {
            format!(
                "{} from {}",
                e["type"],
                if e["data"]["peerId"] == b_id.as_str() {
                    "b"
                } else {
                    "a"
                }
            )
        })
        .collect();
    let ok = a_answered && b_error.is_some() && changed.is_empty();
    drop((a, observer));
    Ok((
        "peer b offers a track under peer a's track id (`<a>:<uuid>`) in a room with a and an observer".into(),
        format!(
            "a's own offer answered: {a_answered}; b got {}{}; observer saw {}",
            b_error.map_or("no error".to_owned(), |m| format!("error {m}")),
            if b_answer { " and an sdpAnswer" } else { "" },
            if changed.is_empty() { "nothing about a's track".to_owned() } else { changed.join(", ") }
        ),
        ok,
    ))
}

async fn mass_departure(s: &Server) -> Attack {
    const N: usize = 100;
    let peers = join_admitted(s, |n| ip(0, 3, (n / 200 + 1) as u8), "mass", "p", N).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log_before = s.log_len();
    // Everyone goes at once: the sockets are dropped without a close handshake.
    drop(peers);
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let log = s.log_since(log_before);
    // Other rooms may still be logging their own backlog: count this room's lines.
    let room_lines: Vec<&str> = log.lines().filter(|l| l.contains("room=mass ")).collect();
    let not_delivered = room_lines
        .iter()
        .filter(|l| l.contains("not delivered"))
        .count();
    let ok = not_delivered <= 2 * N && room_lines.len() <= 3 * N;
    Ok((
        format!("{N} peers of one room drop their sockets at once (no closing handshake)"),
        format!(
            "server logged {} lines in all ({} bytes), {} for room=mass, {not_delivered} of them \"not delivered\" (O(N) bound 2N = {}; N²/2 = {})",
            log.lines().count(),
            log.len(),
            room_lines.len(),
            2 * N,
            N * N / 2
        ),
        ok,
    ))
}

async fn burst_joiners(s: &Server) -> Attack {
    const ADMITTED: usize = 20;
    const BURST: usize = 1500;
    let admitted = join_admitted(s, |_| ip(0, 0, 11), "burst", "early", ADMITTED).await?;
    let rss_before = s.rss_mib();
    let log_before = s.log_len();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for n in 0..BURST {
        let addr = s.http;
        tasks.push(tokio::spawn(async move {
            let (from, within) = (ip(0, 4, (n / 250 + 1) as u8), Duration::from_secs(40));
            let (peer, joined) =
                join_peer_with(addr, from, "burst", &format!("j{n}"), within, None).await;
            (peer.map(drain), joined)
        }));
    }
    let mut accepted_joiners = Vec::new();
    let mut others = Vec::new();
    let (mut refused, mut no_answer) = (0, Vec::new());
    for t in tasks {
        let (peer, joined) = t.await.expect("task");
        match (&joined, peer) {
            (Joined::Accepted(_), Some(p)) => accepted_joiners.push(p),
            (Joined::Accepted(_), None) => no_answer.push("accepted without a socket".into()),
            (Joined::Denied(_) | Joined::JoinError(_), p) => {
                refused += 1;
                others.extend(p);
            }
            (Joined::NoAnswer(why), _) => no_answer.push(why.clone()),
        }
    }
    let accepted = accepted_joiners.len();
    let burst_secs = started.elapsed().as_secs_f64();
    // Joiners admitted during the burst must not be kicked by the rest of it either.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let kicked_joiners = accepted_joiners
        .iter()
        .filter(|j| {
            j.ended().is_some()
                || j.events
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|e| e["type"] == "error")
        })
        .count();
    let log = s.log_since(log_before);
    let not_delivered = log.matches("not delivered").count();
    let rss_peak = s.rss_mib();
    let mut kicked = Vec::new();
    for (n, a) in admitted.into_iter().enumerate() {
        let errors = a
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "error")
            .count();
        let ended = a.ended();
        let mut a = a;
        let answered = a.alive().await;
        if errors > 0 || ended.is_some() || !answered {
            kicked.push(format!(
                "early{n}: {errors} errors, ended {ended:?}, heartbeat {answered}"
            ));
        }
    }
    drop((accepted_joiners, others));
    let ok = kicked.is_empty() && kicked_joiners == 0 && no_answer.is_empty();
    Ok((
        format!("{BURST} simultaneous joiners to a room holding {ADMITTED} admitted peers"),
        format!(
            "in {burst_secs:.1} s: {accepted} accepted, {refused} refused, {} without an answer{}; early peers kicked: {}{}; burst joiners kicked after peerAccepted: {kicked_joiners}; log {:.1} MB, {not_delivered} \"not delivered\" lines; RSS {rss_before:.1} → peak {rss_peak:.1} MiB",
            no_answer.len(),
            no_answer
                .first()
                .map(|w| format!(" (e.g. {})", clip(w, 80)))
                .unwrap_or_default(),
            kicked.len(),
            kicked
                .first()
                .map(|k| format!(" (e.g. {k})"))
                .unwrap_or_default(),
            log.len() as f64 / 1e6,
        ),
        ok,
    ))
}

// ------------------------------------------------------------------------------------------

#[tokio::main]
async fn main() {
    let suite_started = Instant::now();
    let timeout = HEADER_TIMEOUT_SECS.to_string();
    let per_ip = PER_IP.to_string();
    let mut server = start_server(&[
        "--header-read-timeout",
        &timeout,
        "--max-connections-per-ip",
        &per_ip,
    ]);
    let canary = Canary::start(server.http).await;
    println!(
        "abuse suite against pid {} at {} (header timeout {timeout} s, per-IP limit {per_ip}); canary joined room:canary",
        server.pid(),
        server.http
    );
    let names = [
        "nested_query",
        "longpoll_bodies",
        "half_sent_headers",
        "silent_connections",
        "sigterm_half_open",
        "stopped_receiver",
        "unknown_event_flood",
        "huge_topic",
        "huge_display_names",
        "track_ownership",
        "mass_departure",
        "burst_joiners",
    ];
    let mut failed = Vec::new();
    for name in names {
        canary.take();
        let rss_before = server.rss_mib();
        let started = Instant::now();
        let s = &server;
        let attack = async {
            match name {
                "nested_query" => nested_query(s).await,
                "longpoll_bodies" => longpoll_bodies(s).await,
                "half_sent_headers" => half_sent_headers(s).await,
                "silent_connections" => silent_connections(s).await,
                "sigterm_half_open" => sigterm_half_open().await,
                "stopped_receiver" => stopped_receiver(s).await,
                "unknown_event_flood" => unknown_event_flood(s).await,
                "huge_topic" => huge_topic(s).await,
                "huge_display_names" => huge_display_names(s).await,
                "track_ownership" => track_ownership(s).await,
                "mass_departure" => mass_departure(s).await,
                "burst_joiners" => burst_joiners(s).await,
                _ => unreachable!(),
            }
        };
        let (sent, answer, ok) = match tokio::time::timeout(ATTACK_DEADLINE, attack).await {
            Ok(Ok(outcome) | Err(outcome)) => outcome,
            Err(_) => {
                let late = format!("did not finish within {ATTACK_DEADLINE:?}");
                ("(attack)".into(), late, false)
            }
        };
        let alive = server.is_running();
        let (n, p50, p99, max) = canary.take();
        let noticed = canary.noticed.lock().unwrap().clone();
        let ok = ok && alive;
        let verdict = if ok { "PASS" } else { "FAIL" };
        println!(
            "[{verdict}] {name} ({:.1} s): sent {sent}; server: {answer}{}; canary {n} round trips p50 {p50:.1} ms p99 {p99:.1} ms max {max:.1} ms{}; server RSS {rss_before:.1} → {:.1} MiB",
            started.elapsed().as_secs_f64(),
            if alive { "" } else { "; SERVER DIED" },
            noticed
                .as_ref()
                .map(|w| format!(" NOTICED: {w}"))
                .unwrap_or_default(),
            server.rss_mib(),
        );
        if !ok || noticed.is_some() {
            failed.push(name);
        }
        if noticed.is_some() || !alive {
            break;
        }
    }
    println!(
        "abuse suite: {} in {:.0} s; {} attacks",
        if failed.is_empty() {
            "ok".to_owned()
        } else {
            format!("FAILED {failed:?}")
        },
        suite_started.elapsed().as_secs_f64(),
        names.len()
    );
    if !failed.is_empty() {
        std::process::exit(1);
    }
}
