//! The one Phoenix test client of the integration tests: a WebSocket [`Client`] (V1 or V2 JSON,
//! binary frames, close codes), a LongPoll [`LongPollClient`], and [`PhoenixSocket`], the
//! phoenix.js-like background socket the headless peer drives.
//!
//! Frames are written as literal text in the V2 notation `[join_ref, ref, topic, event,
//! payload]`, as on a V2 wire (`docs/phoenix-protocol.md`). A V1 client sends the same frame as
//! the V1 object `{"join_ref","ref","topic","event","payload"}`, and reads server frames, which
//! are objects of exactly `topic`, `event`, `payload` and `ref` (never `join_ref`), back into the
//! 5-array with a `null` join_ref; an expectation is compared the same way, its join_ref replaced
//! by `null` for V1. So one literal states what both serializers carry.
//!
//! This file is self-contained (no `super::`), so the headless peer can include it by `#[path]`.
#![allow(dead_code)] // each test binary uses a different subset

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for an expected frame.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a test listens to conclude that nothing is coming.
pub const QUIET: Duration = Duration::from_millis(120);

/// Serializer version of a client (the `vsn` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vsn {
    /// `vsn=1.0.0`: objects, no join_ref in server frames.
    V1,
    /// `vsn=2.0.0`: 5-arrays.
    V2,
}

/// A frame written by a test: literal text in the V2 notation, or a value built with `json!`.
pub trait IntoFrame {
    /// The frame as a JSON value.
    fn into_frame(self) -> Value;
}

impl IntoFrame for &str {
    fn into_frame(self) -> Value {
        serde_json::from_str(self).unwrap_or_else(|e| panic!("test frame {self} is no JSON: {e}"))
    }
}

impl IntoFrame for String {
    fn into_frame(self) -> Value {
        self.as_str().into_frame()
    }
}

impl IntoFrame for Value {
    fn into_frame(self) -> Value {
        self
    }
}

impl Vsn {
    /// The query value.
    pub fn query(self) -> &'static str {
        match self {
            Vsn::V1 => "1.0.0",
            Vsn::V2 => "2.0.0",
        }
    }

    /// Encodes a client frame given in the V2 notation.
    pub fn encode(self, frame: impl IntoFrame) -> String {
        let frame = frame.into_frame();
        match self {
            Vsn::V2 => frame.to_string(),
            Vsn::V1 => {
                let [jr, r, topic, event, payload] = five(&frame);
                json!({"join_ref": jr, "ref": r, "topic": topic, "event": event, "payload": payload})
                    .to_string()
            }
        }
    }

    /// Reads a server text frame into the V2 notation, checking the serializer's shape.
    pub fn decode(self, text: &str) -> Value {
        let v: Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("server sent invalid JSON {text}: {e}"));
        match self {
            Vsn::V2 => {
                five(&v);
                v
            }
            Vsn::V1 => {
                let o = v
                    .as_object()
                    .unwrap_or_else(|| panic!("V1 frame must be an object: {text}"));
                assert!(
                    !o.contains_key("join_ref"),
                    "V1 server frames carry no join_ref: {text}"
                );
                assert_eq!(o.len(), 4, "V1 frame is topic/event/payload/ref: {text}");
                json!([null, o["ref"], o["topic"], o["event"], o["payload"]])
            }
        }
    }

    /// What a frame written in the V2 notation reads as through this serializer.
    pub fn expected(self, frame: impl IntoFrame) -> Value {
        let mut frame = frame.into_frame();
        five(&frame);
        if self == Vsn::V1 {
            frame[0] = Value::Null;
        }
        frame
    }
}

fn five(frame: &Value) -> [Value; 5] {
    frame
        .as_array()
        .and_then(|a| <[Value; 5]>::try_from(a.clone()).ok())
        .unwrap_or_else(|| panic!("a frame is a 5-array: {frame}"))
}

/// What a WebSocket client received.
#[derive(Debug, PartialEq)]
pub enum Received {
    /// A text frame in the V2 notation.
    Json(Value),
    /// A binary frame.
    Binary(Vec<u8>),
    /// A close frame (code) or the end of the connection (None).
    Closed(Option<u16>),
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket client speaking literal frames; its auto-ref helpers ([`Client::join`],
/// [`Client::push`], [`Client::media`]) number refs 1, 2, … for tests that do not care.
pub struct Client {
    ws: Ws,
    /// Its serializer.
    pub vsn: Vsn,
    /// Frames read while waiting for something else.
    backlog: VecDeque<Received>,
    next_ref: u64,
    join_refs: HashMap<String, String>,
    /// The topic last joined with [`Client::join`]: where [`Client::media`] pushes.
    pub topic: String,
}

/// Opens a WebSocket to `path_query` on `addr` (`vsn` appended when given) with extra headers;
/// returns the client and the chosen subprotocol, or the HTTP status of a refusal.
pub async fn try_connect(
    addr: SocketAddr,
    path_query: &str,
    vsn: Option<Vsn>,
    headers: &[(&str, &str)],
) -> Result<(Client, Option<String>), u16> {
    let sep = if path_query.contains('?') { '&' } else { '?' };
    let url = match vsn {
        Some(v) => format!("ws://{addr}{path_query}{sep}vsn={}", v.query()),
        None => format!("ws://{addr}{path_query}"),
    };
    let mut req = url.into_client_request().expect("valid request");
    for (k, v) in headers {
        req.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes())
                .expect("header name"),
            v.parse().expect("header value"),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, resp)) => {
            let proto = resp
                .headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            Ok((Client::over(ws, vsn.unwrap_or(Vsn::V1)), proto))
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("unexpected handshake error: {e}"),
    }
}

/// Opens a WebSocket that must succeed.
pub async fn connect(addr: SocketAddr, path_query: &str, vsn: Vsn) -> Client {
    try_connect(addr, path_query, Some(vsn), &[])
        .await
        .map(|(c, _)| c)
        .expect("upgrade succeeds")
}

/// The media event `join` with a display name, as the web client sends it.
pub fn join_event(name: &str) -> Value {
    json!({"type":"join","data":{"receiveMedia":true,"metadata":{"displayName":name}}})
}

impl Client {
    fn over(ws: Ws, vsn: Vsn) -> Client {
        Client {
            ws,
            vsn,
            backlog: VecDeque::new(),
            next_ref: 1,
            join_refs: HashMap::new(),
            topic: String::new(),
        }
    }

    /// Connects to the app's `/socket` (V2) and joins `topic`; returns the join reply
    /// `{status, response}`.
    pub async fn joined(addr: SocketAddr, topic: &str) -> (Client, Value) {
        let mut c = connect(addr, "/socket/websocket", Vsn::V2).await;
        let reply = c.join(topic, json!({})).await;
        (c, reply)
    }

    /// Connects, joins `room:<room>`, sends the media `join` and returns the client and the
    /// `peerAccepted` data (panics on anything else).
    pub async fn join_room(addr: SocketAddr, room: &str, name: &str) -> (Client, Value) {
        let (mut c, reply) = Client::joined(addr, &format!("room:{room}")).await;
        assert_eq!(reply, json!({"status":"ok","response":{}}));
        c.media(join_event(name)).await;
        let accepted = c.expect_media("peerAccepted").await;
        (c, accepted)
    }

    // ---- literal frames ----------------------------------------------------------------------

    /// Sends a frame written in the V2 notation, in this client's serializer.
    pub async fn send(&mut self, frame: impl IntoFrame) {
        let text = self.vsn.encode(frame);
        self.send_text(&text).await;
    }

    /// Sends a raw text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send text");
    }

    /// Sends a raw text frame; false if the connection is gone.
    pub async fn try_send_text(&mut self, text: &str) -> bool {
        self.ws.send(Message::text(text)).await.is_ok()
    }

    /// Sends a raw binary frame.
    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws
            .send(Message::binary(bytes))
            .await
            .expect("send binary");
    }

    /// Sends a text frame whose bytes are not valid UTF-8.
    pub async fn send_invalid_utf8_text(&mut self) {
        use tokio_tungstenite::tungstenite::protocol::frame::Frame;
        use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
        let frame = Frame::message(vec![0x5b, 0xff, 0xfe, 0x5d], OpCode::Data(Data::Text), true);
        self.ws
            .send(Message::Frame(frame))
            .await
            .expect("send raw frame");
    }

    /// The next frame, waiting without limit (cancel-safe: nothing is lost when dropped).
    pub async fn next(&mut self) -> Received {
        if let Some(r) = self.backlog.pop_front() {
            return r;
        }
        loop {
            return match self.ws.next().await {
                Some(Ok(Message::Text(t))) => Received::Json(self.vsn.decode(t.as_str())),
                Some(Ok(Message::Binary(b))) => Received::Binary(b.to_vec()),
                Some(Ok(Message::Close(c))) => Received::Closed(c.map(|c| u16::from(c.code))),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => Received::Closed(None),
            };
        }
    }

    /// The next frame within `d`, or None.
    pub async fn recv_within(&mut self, d: Duration) -> Option<Received> {
        tokio::time::timeout(d, self.next()).await.ok()
    }

    /// The next frame (pings skipped), or `Closed`; panics after [`FRAME_TIMEOUT`].
    pub async fn recv(&mut self) -> Received {
        self.recv_within(FRAME_TIMEOUT)
            .await
            .unwrap_or_else(|| panic!("no frame within {FRAME_TIMEOUT:?}"))
    }

    /// The next frame, which must be a JSON one.
    pub async fn recv_json(&mut self) -> Value {
        match self.recv().await {
            Received::Json(v) => v,
            other => panic!("expected a JSON frame, got {other:?}"),
        }
    }

    /// Asserts that the next frame is `frame`.
    pub async fn expect(&mut self, frame: impl IntoFrame) {
        let want = self.vsn.expected(frame);
        assert_eq!(self.recv_json().await, want);
    }

    /// Asserts that the next frames are `frames`, in any order (frames of different sources,
    /// e.g. a reply and a broadcast, are not ordered among themselves).
    pub async fn expect_unordered<F: IntoFrame>(&mut self, frames: impl IntoIterator<Item = F>) {
        let vsn = self.vsn;
        let mut want: Vec<Value> = frames.into_iter().map(|f| vsn.expected(f)).collect();
        let mut got = Vec::new();
        while !want.is_empty() {
            let f = self.recv_json().await;
            let i = want
                .iter()
                .position(|w| *w == f)
                .unwrap_or_else(|| panic!("unexpected {f}; still expecting {want:?}, got {got:?}"));
            want.remove(i);
            got.push(f);
        }
    }

    /// Asserts that the next frame is the text `text`, byte for byte (key order included).
    pub async fn expect_text(&mut self, text: &str) {
        assert_eq!(self.recv_text().await, text);
    }

    /// The next frame, which must be text, as sent (not decoded).
    pub async fn recv_text(&mut self) -> String {
        assert!(
            self.backlog.is_empty(),
            "frames were queued: {:?}",
            self.backlog
        );
        let next = async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Text(t))) => return t.to_string(),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    other => panic!("expected a text frame, got {other:?}"),
                }
            }
        };
        tokio::time::timeout(FRAME_TIMEOUT, next)
            .await
            .unwrap_or_else(|_| panic!("no frame within {FRAME_TIMEOUT:?}"))
    }

    /// Asserts that the next frame is the binary `bytes`.
    pub async fn expect_binary(&mut self, bytes: &[u8]) {
        assert_eq!(self.recv().await, Received::Binary(bytes.to_vec()));
    }

    /// Asserts that the server closes with `code` next, with no frame before.
    pub async fn expect_closed(&mut self, code: u16) {
        assert_eq!(self.recv().await, Received::Closed(Some(code)));
    }

    /// Asserts nothing arrives for [`QUIET`].
    pub async fn expect_silence(&mut self) {
        if let Some(r) = self.recv_within(QUIET).await {
            panic!("expected silence, got {r:?}");
        }
    }

    /// Every frame that arrives until [`QUIET`] passes without one.
    pub async fn recv_until_quiet(&mut self) -> Vec<Value> {
        let mut frames = Vec::new();
        while let Some(Received::Json(f)) = self.recv_within(QUIET).await {
            frames.push(f);
        }
        frames
    }

    /// Waits for the server to close (skipping frames); returns the close code.
    pub async fn expect_close(&mut self) -> Option<u16> {
        loop {
            if let Received::Closed(code) = self.recv().await {
                return code;
            }
        }
    }

    /// Sends heartbeat `r` and checks its reply.
    pub async fn heartbeat(&mut self, r: &str) {
        self.send(json!([null, r, "phoenix", "heartbeat", {}]))
            .await;
        self.expect(json!([null, r, "phoenix", "phx_reply", {"status": "ok", "response": {}}]))
            .await;
    }

    /// Closes from the client side.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }

    /// Drops the TCP connection without a close handshake (a vanished tab).
    pub fn vanish(self) {
        drop(self);
    }

    // ---- auto refs -----------------------------------------------------------------------------

    fn take_ref(&mut self) -> String {
        let r = self.next_ref.to_string();
        self.next_ref += 1;
        r
    }

    /// Pushes `event` on `topic` with the next ref and the topic's join_ref; returns the ref.
    pub async fn push(&mut self, topic: &str, event: &str, payload: Value) -> String {
        let r = self.take_ref();
        let jr = self.join_refs.get(topic).cloned();
        self.send(json!([jr, r, topic, event, payload])).await;
        r
    }

    /// Joins `topic` (ref = join_ref) and returns its reply `{status, response}`; frames that
    /// come before the reply stay queued for the next reads.
    pub async fn join(&mut self, topic: &str, payload: Value) -> Value {
        let r = self.take_ref();
        self.join_refs.insert(topic.to_owned(), r.clone());
        self.topic = topic.to_owned();
        self.send(json!([r, r, topic, "phx_join", payload])).await;
        self.reply(&r).await
    }

    /// Leaves the topic last joined (`phx_leave`) and waits for the reply.
    pub async fn leave(&mut self) {
        let topic = self.topic.clone();
        let r = self.push(&topic, "phx_leave", json!({})).await;
        self.reply(&r).await;
    }

    /// Waits for the `phx_reply` to `r` and returns its payload; other frames stay queued.
    pub async fn reply(&mut self, r: &str) -> Value {
        let mut skipped = VecDeque::new();
        let payload = loop {
            match self.recv().await {
                Received::Json(f) if f[3] == "phx_reply" && f[1] == r => break f[4].clone(),
                Received::Closed(code) => panic!("closed ({code:?}) before the reply to {r}"),
                other => skipped.push_back(other),
            }
        };
        skipped.extend(self.backlog.drain(..));
        self.backlog = skipped;
        payload
    }

    /// Waits for a frame whose event is `event` (skipping others); returns its payload.
    pub async fn expect_event(&mut self, event: &str) -> Value {
        loop {
            match self.recv().await {
                Received::Json(f) if f[3] == event => return f[4].clone(),
                Received::Closed(code) => panic!("closed ({code:?}) before a {event} frame"),
                _ => continue,
            }
        }
    }

    // ---- media events (the `room:*` channel) ---------------------------------------------------

    /// Pushes a media event (`mediaEvent {"data": <JSON text>}`) on the topic last joined.
    pub async fn media(&mut self, event: Value) {
        self.media_raw(&event.to_string()).await;
    }

    /// As peer `id`, publishes a Chromium's first offer (audio and video, the fixture's real
    /// SDP): `renegotiateTracks`, waits for `offerData`, then `sdpOffer` with `<id>:audio` and
    /// `<id>:video` on mids 0 and 1. The answer is left to the caller.
    pub async fn offer_fixture_publisher(&mut self, id: &str) {
        self.media(json!({"type":"renegotiateTracks","data":{}}))
            .await;
        self.expect_media("offerData").await;
        let sdp = include_str!("../fixtures/sdp/chromium-156/publisher-first-offer.sdp");
        let (audio, video) = (format!("{id}:audio"), format!("{id}:video"));
        self.media(json!({"type":"sdpOffer","data":{
            "sdpOffer":{"type":"offer","sdp":sdp},
            "trackIdToTrackMetadata":{audio.clone():{}, video.clone():{}},
            "midToTrackId":{"0":audio,"1":video}}}))
            .await;
    }

    /// Pushes a raw `mediaEvent` data string.
    pub async fn media_raw(&mut self, data: &str) {
        let topic = self.topic.clone();
        self.push(&topic, "mediaEvent", json!({ "data": data }))
            .await;
    }

    /// The next media event (its parsed `data`) within `wait`; None on silence or close.
    pub async fn next_media(&mut self, wait: Duration) -> Option<Value> {
        loop {
            match self.recv_within(wait).await? {
                Received::Json(f) if f[3] == "mediaEvent" => {
                    let data = f[4]["data"].as_str().expect("mediaEvent data is text");
                    return Some(serde_json::from_str(data).expect("mediaEvent data is JSON"));
                }
                Received::Closed(_) => return None,
                _ => continue,
            }
        }
    }

    /// The next media event, which must be of `kind`; returns its `data`.
    pub async fn expect_media(&mut self, kind: &str) -> Value {
        let ev = self
            .next_media(FRAME_TIMEOUT)
            .await
            .unwrap_or_else(|| panic!("no media event, expected {kind}"));
        assert_eq!(ev["type"], kind, "{ev}");
        ev["data"].clone()
    }

    /// Asserts that no media event arrives within `wait`.
    pub async fn expect_no_media(&mut self, wait: Duration) {
        if let Some(ev) = self.next_media(wait).await {
            panic!("unexpected media event {ev}");
        }
    }
}

// ---- LongPoll ----------------------------------------------------------------------------------

/// A LongPoll client of one mount (`…/longpoll`).
pub struct LongPollClient {
    http: reqwest::Client,
    base: String,
    /// Its serializer.
    pub vsn: Vsn,
    /// The current session token.
    pub token: String,
}

impl LongPollClient {
    /// `GET` without token at `url`: must open a session (`{"status":410,"token":…}`).
    pub async fn open(url: String, vsn: Vsn, extra_query: &str) -> LongPollClient {
        let mut c = LongPollClient {
            http: reqwest::Client::new(),
            base: url,
            vsn,
            token: String::new(),
        };
        let body = c.get_raw(extra_query, &[]).await;
        assert_eq!(body["status"], 410, "new session: {body}");
        c.token = body["token"].as_str().expect("token").to_owned();
        c
    }

    /// The URL with `vsn`, the token when `with_token` and known, and `extra_query`.
    pub fn url(&self, extra_query: &str, with_token: bool) -> String {
        let mut u = format!("{}?vsn={}", self.base, self.vsn.query());
        if with_token && !self.token.is_empty() {
            u.push_str(&format!("&token={}", self.token));
        }
        if !extra_query.is_empty() {
            u.push('&');
            u.push_str(extra_query);
        }
        u
    }

    /// A raw GET (token included when known); returns the JSON body (asserting HTTP 200).
    pub async fn get_raw(&self, extra_query: &str, headers: &[(&str, &str)]) -> Value {
        let mut req = self.http.get(self.url(extra_query, true));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("GET");
        assert_eq!(resp.status(), 200);
        resp.json().await.expect("JSON body")
    }

    /// Polls once; returns the body's status and its messages in the V2 notation.
    pub async fn poll(&self) -> (u64, Vec<Value>) {
        let body = self.get_raw("", &[]).await;
        (body["status"].as_u64().unwrap_or(0), self.messages(&body))
    }

    /// The messages of a poll answer, in the V2 notation.
    pub fn messages(&self, body: &Value) -> Vec<Value> {
        body["messages"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|m| self.vsn.decode(m.as_str().expect("messages are strings")))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Polls until `n` messages were collected (or panics after a few seconds).
    pub async fn poll_n(&self, n: usize) -> Vec<Value> {
        let mut all = Vec::new();
        let deadline = tokio::time::Instant::now() + FRAME_TIMEOUT;
        while all.len() < n {
            assert!(tokio::time::Instant::now() < deadline, "only got {all:?}");
            let (status, msgs) = self.poll().await;
            assert!(status == 200 || status == 204, "poll status {status}");
            all.extend(msgs);
        }
        all
    }

    /// Polls until as many messages as `frames` came and asserts they are `frames`, in order.
    pub async fn expect<F: IntoFrame>(&self, frames: impl IntoIterator<Item = F>) {
        let want: Vec<Value> = frames.into_iter().map(|f| self.vsn.expected(f)).collect();
        assert_eq!(self.poll_n(want.len()).await, want);
    }

    /// POSTs `body` with `content_type`; returns the JSON status (asserting HTTP 200).
    pub async fn post(&self, content_type: &str, body: String) -> u64 {
        let resp = self
            .http
            .post(self.url("", true))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("POST");
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.expect("JSON");
        v["status"].as_u64().unwrap_or(0)
    }

    /// POSTs one frame (V2 notation, sent in this client's serializer) as `application/json`.
    pub async fn send(&self, frame: impl IntoFrame) -> u64 {
        self.post("application/json", self.vsn.encode(frame)).await
    }
}

// ---- a phoenix.js-like socket ------------------------------------------------------------------

/// A push received from the server on a joined topic (also `phx_error`/`phx_close`).
#[derive(Debug, Clone)]
pub struct Incoming {
    /// Topic of the frame.
    pub topic: String,
    /// Event name.
    pub event: String,
    /// Payload.
    pub payload: Value,
}

enum Command {
    Join {
        topic: String,
        payload: Value,
        reply: oneshot::Sender<Result<Value, Value>>,
    },
    Push {
        topic: String,
        event: String,
        payload: Value,
    },
    Leave {
        topic: String,
    },
    /// Close the socket with a close frame.
    Close,
    /// Drop the TCP connection without a close frame (a tab that was killed).
    Abort,
}

/// Handle to a [`Client`] run by a background task the way phoenix.js runs a socket: joins
/// answered through a oneshot, pushes fire-and-forget, a heartbeat on a timer, pushes of stale
/// memberships dropped. Incoming pushes go to a bounded queue; when it is full the task waits
/// (back-pressure on the socket), as a slow browser tab does. Dropping every handle closes
/// the socket cleanly.
#[derive(Clone)]
pub struct PhoenixSocket {
    commands: mpsc::Sender<Command>,
}

/// Connects to a V2 socket URL (`ws://<addr>/socket/websocket?vsn=2.0.0`), starts the task and
/// returns the handle plus the queue of incoming pushes.
pub async fn connect_socket(
    url: &str,
    heartbeat: Duration,
) -> Result<(PhoenixSocket, mpsc::Receiver<Incoming>), String> {
    let (ws, _response) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| format!("websocket connect to {url}: {e}"))?;
    let (commands_tx, commands_rx) = mpsc::channel(256);
    let (incoming_tx, incoming_rx) = mpsc::channel(1024);
    let client = Client::over(ws, Vsn::V2);
    tokio::spawn(run_socket(client, commands_rx, incoming_tx, heartbeat));
    Ok((
        PhoenixSocket {
            commands: commands_tx,
        },
        incoming_rx,
    ))
}

impl PhoenixSocket {
    /// Joins `topic` and waits for the `phx_reply`: `Ok(response)` or `Err(response)`.
    pub async fn join(&self, topic: &str, payload: Value) -> Result<Value, Value> {
        let (reply, rx) = oneshot::channel();
        let join = Command::Join {
            topic: topic.to_owned(),
            payload,
            reply,
        };
        self.commands
            .send(join)
            .await
            .map_err(|_| json!({"reason": "socket closed"}))?;
        rx.await
            .unwrap_or_else(|_| Err(json!({"reason": "socket closed"})))
    }

    /// Pushes `event` on `topic` (fire and forget, like `channel.push` without `receive`).
    pub async fn push(&self, topic: &str, event: &str, payload: Value) {
        let push = Command::Push {
            topic: topic.to_owned(),
            event: event.to_owned(),
            payload,
        };
        let _ = self.commands.send(push).await;
    }

    /// Leaves `topic` (`phx_leave`).
    pub async fn leave(&self, topic: &str) {
        let topic = topic.to_owned();
        let _ = self.commands.send(Command::Leave { topic }).await;
    }

    /// Closes the WebSocket with a close frame.
    pub async fn close(&self) {
        let _ = self.commands.send(Command::Close).await;
    }

    /// Drops the TCP connection without a close frame.
    pub async fn abort(&self) {
        let _ = self.commands.send(Command::Abort).await;
    }
}

async fn run_socket(
    mut client: Client,
    mut commands: mpsc::Receiver<Command>,
    incoming: mpsc::Sender<Incoming>,
    heartbeat: Duration,
) {
    // ref → pending join reply.
    let mut pending_joins: HashMap<String, oneshot::Sender<Result<Value, Value>>> = HashMap::new();
    let mut ticker = tokio::time::interval(heartbeat);
    ticker.tick().await;
    loop {
        tokio::select! {
            command = commands.recv() => {
                let sent = match command {
                    None | Some(Command::Close) => return client.close().await,
                    Some(Command::Abort) => return,
                    Some(Command::Join { topic, payload, reply }) => {
                        let r = client.take_ref();
                        client.join_refs.insert(topic.clone(), r.clone());
                        pending_joins.insert(r.clone(), reply);
                        client.ws.send(Message::text(json!([r, r, topic, "phx_join", payload]).to_string())).await
                    }
                    Some(Command::Push { topic, event, payload }) => {
                        let r = client.take_ref();
                        let jr = client.join_refs.get(&topic).cloned();
                        client.ws.send(Message::text(json!([jr, r, topic, event, payload]).to_string())).await
                    }
                    Some(Command::Leave { topic }) => {
                        let r = client.take_ref();
                        let jr = client.join_refs.remove(&topic);
                        client.ws.send(Message::text(json!([jr, r, topic, "phx_leave", {}]).to_string())).await
                    }
                };
                if sent.is_err() {
                    return;
                }
            }
            _ = ticker.tick() => {
                let r = client.take_ref();
                let beat = json!([null, r, "phoenix", "heartbeat", {}]).to_string();
                if client.ws.send(Message::text(beat)).await.is_err() {
                    return;
                }
            }
            received = next_lenient(&mut client) => {
                let Some(frame) = received else {
                    let closed = Incoming {
                        topic: "phoenix".into(),
                        event: "socket_closed".into(),
                        payload: Value::Null,
                    };
                    let _ = incoming.send(closed).await;
                    return;
                };
                let Ok([join_ref, reference, topic, event, payload]) = <[Value; 5]>::try_from(frame) else {
                    continue;
                };
                let topic = topic.as_str().unwrap_or_default().to_owned();
                let event = event.as_str().unwrap_or_default().to_owned();
                if event == "phx_reply" {
                    if let Some(reply) = reference.as_str().and_then(|r| pending_joins.remove(r)) {
                        let ok = payload["status"] == "ok";
                        let response = payload["response"].clone();
                        let _ = reply.send(if ok { Ok(response) } else { Err(response) });
                    }
                    continue;
                }
                // phoenix.js drops a frame whose join_ref differs from the channel's current one.
                if let Some(join_ref) = join_ref.as_str()
                    && client.join_refs.get(&topic).is_some_and(|current| current != join_ref)
                {
                    continue;
                }
                if incoming.send(Incoming { topic, event, payload }).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The next text frame as a JSON array (malformed text skipped with a warning, like phoenix.js
/// does), or None once the socket closed.
async fn next_lenient(client: &mut Client) -> Option<Vec<Value>> {
    loop {
        match client.ws.next().await {
            Some(Ok(Message::Text(text))) => match serde_json::from_str::<Value>(&text) {
                Ok(Value::Array(parts)) => return Some(parts),
                _ => log::warn!("phoenix client: ignoring malformed frame {text}"),
            },
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => continue,
        }
    }
}
