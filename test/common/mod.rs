//! Shared helpers for the Phoenix integration tests: an in-process fixture server on
//! 127.0.0.1:0, a raw-frame WebSocket client (V1 or V2) and a LongPoll client.
#![allow(dead_code)] // each test binary uses a different subset

pub mod fixture;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::Message as WsMsg;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use videoroom::phoenix::LocalPubSub;
use videoroom::phoenix::transport::Endpoint;

/// How long a test waits for an expected frame.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a test listens to conclude that nothing is coming.
pub const QUIET: Duration = Duration::from_millis(120);

/// A running fixture server.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its endpoint (drain, pubsub).
    pub endpoint: Endpoint,
    /// The same PubSub, concretely typed (for subscriber counts).
    pub pubsub: Arc<LocalPubSub>,
}

/// Starts the §10.0 fixture in-process on an ephemeral port.
pub async fn start_fixture() -> TestServer {
    let pubsub = LocalPubSub::new();
    let endpoint = Endpoint::with_pubsub(pubsub.clone());
    let routes = fixture::routes(&endpoint, true);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(warp::serve(routes).incoming(listener).run());
    TestServer {
        addr,
        endpoint,
        pubsub,
    }
}

impl TestServer {
    /// `http://addr{path}`.
    pub fn http(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Waits until no subscriber is left on `topic` (channels terminated).
    pub async fn wait_unsubscribed(&self, topic: &str) -> bool {
        for _ in 0..150 {
            if self.pubsub.subscriber_count(topic) == 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

/// Serializer version of a test client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vsn {
    /// `vsn=1.0.0`: objects, no join_ref in server frames.
    V1,
    /// `vsn=2.0.0`: arrays.
    V2,
}

impl Vsn {
    /// The query value.
    pub fn query(self) -> &'static str {
        match self {
            Vsn::V1 => "1.0.0",
            Vsn::V2 => "2.0.0",
        }
    }

    /// Encodes a client message.
    pub fn encode(self, jr: Value, r: Value, topic: &str, event: &str, payload: Value) -> String {
        match self {
            Vsn::V1 => json!({"topic": topic, "event": event, "payload": payload, "ref": r, "join_ref": jr}).to_string(),
            Vsn::V2 => json!([jr, r, topic, event, payload]).to_string(),
        }
    }

    /// Normalizes a server text message to `[jr, ref, topic, event, payload]`; V1 frames must
    /// not carry `join_ref` and get a null jr.
    pub fn normalize(self, text: &str) -> Value {
        let v: Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("server sent invalid JSON {text}: {e}"));
        match self {
            Vsn::V2 => {
                assert!(
                    v.as_array().is_some_and(|a| a.len() == 5),
                    "V2 frame must be a 5-array: {text}"
                );
                v
            }
            Vsn::V1 => {
                let o = v
                    .as_object()
                    .unwrap_or_else(|| panic!("V1 frame must be an object: {text}"));
                assert!(
                    !o.contains_key("join_ref"),
                    "V1 responses must not contain join_ref: {text}"
                );
                assert_eq!(
                    o.len(),
                    4,
                    "V1 frame has exactly topic/event/payload/ref: {text}"
                );
                json!([null, o["ref"], o["topic"], o["event"], o["payload"]])
            }
        }
    }

    /// The normalized frame a test expects (jr dropped for V1).
    pub fn expect(self, jr: Value, r: Value, topic: &str, event: &str, payload: Value) -> Value {
        match self {
            Vsn::V1 => json!([null, r, topic, event, payload]),
            Vsn::V2 => json!([jr, r, topic, event, payload]),
        }
    }
}

/// What a WebSocket client received.
#[derive(Debug, PartialEq)]
pub enum Received {
    /// A text frame, normalized.
    Json(Value),
    /// A binary frame.
    Binary(Vec<u8>),
    /// A close frame (code) or the end of the connection (None).
    Closed(Option<u16>),
}

/// A raw-frame WebSocket client.
pub struct WsClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Its serializer.
    pub vsn: Vsn,
}

/// Opens a WebSocket to `path_query` (vsn is appended) with extra headers; returns the HTTP
/// status on refusal.
pub async fn try_connect(
    addr: SocketAddr,
    path_query: &str,
    vsn: Option<Vsn>,
    headers: &[(&str, &str)],
) -> Result<(WsClient, Option<String>), u16> {
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
            Ok((
                WsClient {
                    ws,
                    vsn: vsn.unwrap_or(Vsn::V1),
                },
                proto,
            ))
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("unexpected handshake error: {e}"),
    }
}

/// Opens a WebSocket that must succeed.
pub async fn connect(addr: SocketAddr, path_query: &str, vsn: Vsn) -> WsClient {
    try_connect(addr, path_query, Some(vsn), &[])
        .await
        .map(|(c, _)| c)
        .expect("upgrade succeeds")
}

impl WsClient {
    /// Sends one message in this client's serializer.
    pub async fn push(&mut self, jr: Value, r: Value, topic: &str, event: &str, payload: Value) {
        let text = self.vsn.encode(jr, r, topic, event, payload);
        self.send_text(&text).await;
    }

    /// Sends a raw text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(WsMsg::text(text)).await.expect("send text");
    }

    /// Sends a raw binary frame.
    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws
            .send(WsMsg::binary(bytes))
            .await
            .expect("send binary");
    }

    /// Sends a text frame whose bytes are not valid UTF-8.
    pub async fn send_invalid_utf8_text(&mut self) {
        use tokio_tungstenite::tungstenite::protocol::frame::Frame;
        use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
        let frame = Frame::message(vec![0x5b, 0xff, 0xfe, 0x5d], OpCode::Data(Data::Text), true);
        self.ws
            .send(WsMsg::Frame(frame))
            .await
            .expect("send raw frame");
    }

    /// Joins `topic` (ref = join_ref = `r`) and asserts the ok reply; returns frames that came
    /// with it (pushes after the reply).
    pub async fn join(&mut self, topic: &str, r: &str, payload: Value) {
        self.push(json!(r), json!(r), topic, "phx_join", payload)
            .await;
        loop {
            match self.recv().await {
                Received::Json(f) if f[3] == "phx_reply" && f[1] == json!(r) => {
                    assert_eq!(f[4]["status"], "ok", "join of {topic} failed: {f}");
                    return;
                }
                Received::Json(_) => continue,
                other => panic!("join of {topic}: unexpected {other:?}"),
            }
        }
    }

    /// Next frame (pings skipped), or `Closed`.
    pub async fn recv(&mut self) -> Received {
        self.recv_within(FRAME_TIMEOUT)
            .await
            .unwrap_or_else(|| panic!("no frame within {FRAME_TIMEOUT:?}"))
    }

    /// Next frame within `d`, or None.
    pub async fn recv_within(&mut self, d: Duration) -> Option<Received> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?;
            return Some(match next {
                Some(Ok(WsMsg::Text(t))) => Received::Json(self.vsn.normalize(t.as_str())),
                Some(Ok(WsMsg::Binary(b))) => Received::Binary(b.to_vec()),
                Some(Ok(WsMsg::Close(c))) => Received::Closed(c.map(|c| u16::from(c.code))),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => Received::Closed(None),
            });
        }
    }

    /// Next JSON frame (panics on anything else).
    pub async fn recv_json(&mut self) -> Value {
        match self.recv().await {
            Received::Json(v) => v,
            other => panic!("expected a JSON frame, got {other:?}"),
        }
    }

    /// Collects `n` JSON frames (any order checks are the caller's).
    pub async fn recv_n(&mut self, n: usize) -> Vec<Value> {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.recv_json().await);
        }
        v
    }

    /// Asserts nothing arrives for a short while.
    pub async fn expect_silence(&mut self) {
        if let Some(r) = self.recv_within(QUIET).await {
            panic!("expected silence, got {r:?}");
        }
    }

    /// Waits for the server to close; returns the close code.
    pub async fn expect_close(&mut self) -> Option<u16> {
        loop {
            match self.recv().await {
                Received::Closed(code) => return code,
                Received::Json(_) | Received::Binary(_) => continue,
            }
        }
    }

    /// Sends a heartbeat and checks the reply.
    pub async fn heartbeat(&mut self, r: &str) {
        self.push(Value::Null, json!(r), "phoenix", "heartbeat", json!({}))
            .await;
        let want = self.vsn.expect(
            Value::Null,
            json!(r),
            "phoenix",
            "phx_reply",
            json!({"status": "ok", "response": {}}),
        );
        assert_eq!(self.recv_json().await, want);
    }

    /// Closes from the client side.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// A LongPoll client for one mount.
pub struct LpClient {
    http: reqwest::Client,
    base: String,
    /// Its serializer.
    pub vsn: Vsn,
    /// The current session token.
    pub token: String,
}

impl LpClient {
    /// `GET` without token: must open a session (410 + token).
    pub async fn open(server: &TestServer, path: &str, vsn: Vsn, extra_query: &str) -> LpClient {
        let mut c = LpClient {
            http: reqwest::Client::new(),
            base: server.http(path),
            vsn,
            token: String::new(),
        };
        let body = c.get_raw(extra_query, &[]).await;
        assert_eq!(body["status"], 410, "new session: {body}");
        c.token = body["token"].as_str().expect("token").to_owned();
        c
    }

    fn url(&self, extra_query: &str, with_token: bool) -> String {
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

    /// Polls once; returns (status, normalized messages).
    pub async fn poll(&self) -> (u64, Vec<Value>) {
        let body = self.get_raw("", &[]).await;
        let msgs = body["messages"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|m| {
                        self.vsn
                            .normalize(m.as_str().expect("messages are strings"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        (body["status"].as_u64().unwrap_or(0), msgs)
    }

    /// Polls until `n` messages were collected (or panics after a few seconds).
    pub async fn poll_n(&self, n: usize) -> Vec<Value> {
        let mut all = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while all.len() < n {
            assert!(tokio::time::Instant::now() < deadline, "only got {all:?}");
            let (status, msgs) = self.poll().await;
            assert!(status == 200 || status == 204, "poll status {status}");
            all.extend(msgs);
        }
        all
    }

    /// POSTs `body` with `content_type`; returns the JSON status.
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

    /// POSTs one message as `application/json`.
    pub async fn send(&self, jr: Value, r: Value, topic: &str, event: &str, payload: Value) -> u64 {
        self.post(
            "application/json",
            self.vsn.encode(jr, r, topic, event, payload),
        )
        .await
    }
}
