//! The relay link: a peer whose socket landed on this node while its room lives on another.
//!
//! The channel here keeps the client's socket; the link is one WebSocket from this node to the
//! room's node, joined to the same `room:<id>` topic as an ordinary Phoenix client (V2 JSON),
//! so the owning node needs nothing special: it sees one more peer. Everything the client
//! pushes (`mediaEvent`, `chat`) goes over the link in order; everything the room pushes comes
//! back and is pushed to the client unchanged. One TCP connection per relayed peer keeps each
//! peer's media events in order and exactly once; the SDP answers and ICE candidates are
//! written by the owning node, so they name its media address and media flows straight there.
//!
//! How the link ends ([`RelayEnd`]):
//! - the room's node closed the channel (`phx_close`: the room closed or refused the peer):
//!   the client's channel closes too, with what the room pushed before;
//! - the link broke (socket error, `phx_error`, the node died or drained): the client's channel
//!   errors (`phx_error`), phoenix.js rejoins it, and placement finds the room's node anew;
//! - the client left: the link sends `phx_leave` (the peer leaves the room at once); a client
//!   whose socket was lost drops the link without it, so the owning node holds the peer for its
//!   reconnect grace and a resume through any node takes it back.
//!
//! Queue policy: the client's pushes wait in a bounded queue of `peer_queue` entries (the share
//! of the room inbox a local peer has); a client that fills it is disconnected like a local
//! peer that floods its room. What comes back is delivered with the channel's non-blocking
//! sender; a client socket too slow to take it is closed by its own shell (as for local rooms).

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use ws_stream::tungstenite::Message;
use ws_stream::tungstenite::protocol::WebSocketConfig;

use super::PeerMessage;
use crate::phoenix::{ChannelSender, JoinReply, ReplyRef};

/// How long connecting and joining the room's node may take before the link gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Heartbeat period on the link (the owning node closes sockets idle for a minute).
const HEARTBEAT: Duration = Duration::from_secs(5);

/// A link that has heard nothing (not even a heartbeat reply) for this long is lost: a node
/// whose host went down without closing its connections is noticed here, not after TCP's own
/// retransmission timeout of many minutes.
const SILENCE_LIMIT: Duration = Duration::from_secs(15);

/// Largest frame accepted from the room's node: far above any SDP offer or room snapshot
/// a room's limits allow, small enough that a confused node cannot make us buffer much.
const MAX_FRAME_BYTES: usize = 4 << 20;

/// Chat replies a link waits for at once (chat is rate-limited far below this).
const MAX_PENDING_REPLIES: usize = 64;

/// How a relay link ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayEnd {
    /// Nothing listens at the node's URL (connection refused): the node is gone.
    Refused,
    /// The link broke or could not be made (the text says how).
    Lost(String),
    /// The room's node closed the peer's channel (`phx_close`).
    Closed,
}

/// What the channel asks its link to do.
#[derive(Debug)]
enum RelayCommand {
    /// Push `event` with `payload`; answer `reply` (the client's push) when the node replies.
    Push {
        event: &'static str,
        payload: Value,
        reply: Option<ReplyRef>,
    },
    /// The client left: `phx_leave`, then close.
    Leave,
}

/// The channel's end of a relay link; dropping it closes the link without a leave.
#[derive(Debug)]
pub struct RelayLink {
    tx: mpsc::Sender<RelayCommand>,
    /// The node at the other end.
    pub node: String,
}

impl RelayLink {
    /// Opens a link to `url` (`ws://host:port`) joining `topic` with `params`; the join's
    /// answer and everything after come to `channel` as [`PeerMessage`]s. `queue` bounds the
    /// pushes waiting to go out.
    pub fn open(
        node: &str,
        url: &str,
        topic: &str,
        params: Value,
        channel: ChannelSender<PeerMessage>,
        queue: usize,
    ) -> RelayLink {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let url = format!("{url}/socket/websocket?vsn=2.0.0");
        let task = LinkTask {
            topic: topic.to_owned(),
            channel,
            pending: VecDeque::new(),
            next_ref: 2,
        };
        tokio::spawn(task.run(url, params, rx));
        RelayLink {
            tx,
            node: node.to_owned(),
        }
    }

    /// Queues a push of the client's; `false` when the queue is full (the client floods).
    pub fn push(&self, event: &'static str, payload: Value, reply: Option<ReplyRef>) -> bool {
        let command = RelayCommand::Push {
            event,
            payload,
            reply,
        };
        self.tx.try_send(command).is_ok()
    }

    /// The client left: the peer leaves the room (best effort: a full queue drops the link,
    /// which the room treats as a lost socket).
    pub fn leave(self) {
        let _ = self.tx.try_send(RelayCommand::Leave);
    }
}

type Ws = ws_stream::WebSocketStream<ws_stream::MaybeTlsStream<tokio::net::TcpStream>>;

struct LinkTask {
    topic: String,
    channel: ChannelSender<PeerMessage>,
    /// Refs of relayed pushes awaiting the node's reply, oldest first.
    pending: VecDeque<(u64, ReplyRef)>,
    next_ref: u64,
}

impl LinkTask {
    async fn run(mut self, url: String, params: Value, rx: mpsc::Receiver<RelayCommand>) {
        let joined = tokio::time::timeout(CONNECT_TIMEOUT, self.connect_and_join(&url, params));
        let ws = match joined.await {
            Ok(Ok((ws, reply))) => {
                let accepted = reply.is_ok();
                let _ = self.channel.try_send(PeerMessage::RelayJoined(reply));
                if !accepted {
                    return;
                }
                ws
            }
            Ok(Err(end)) => return self.end(end),
            Err(_) => return self.end(RelayEnd::Lost("timed out joining".into())),
        };
        let end = self.relay(ws, rx).await;
        self.end(end);
    }

    fn end(&self, end: RelayEnd) {
        let _ = self.channel.try_send(PeerMessage::RelayEnded(end));
    }

    /// Connects and joins; the join's answer (ok or the node's refusal).
    async fn connect_and_join(
        &mut self,
        url: &str,
        params: Value,
    ) -> Result<(Ws, JoinReply), RelayEnd> {
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_FRAME_BYTES))
            .max_frame_size(Some(MAX_FRAME_BYTES));
        let (mut ws, _) = ws_stream::connect_async_with_config(url, Some(config), true)
            .await
            .map_err(|e| match e {
                ws_stream::tungstenite::Error::Io(io)
                    if io.kind() == std::io::ErrorKind::ConnectionRefused =>
                {
                    RelayEnd::Refused
                }
                e => RelayEnd::Lost(format!("connect {url}: {e}")),
            })?;
        let join = json!(["1", "1", self.topic, "phx_join", params]);
        send(&mut ws, &join).await?;
        loop {
            let frame = next_frame(&mut ws).await?;
            if frame[1] == "1" && frame[3] == "phx_reply" {
                let response = frame[4]["response"].clone();
                return Ok(match frame[4]["status"].as_str() {
                    Some("ok") => (ws, Ok(response)),
                    _ => (ws, Err(response)),
                });
            }
        }
    }

    /// Carries pushes both ways until one side ends.
    async fn relay(&mut self, mut ws: Ws, mut rx: mpsc::Receiver<RelayCommand>) -> RelayEnd {
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.tick().await;
        let mut last_heard = tokio::time::Instant::now();
        loop {
            tokio::select! {
                command = rx.recv() => {
                    let Some(command) = command else {
                        // The client's channel is gone without a leave: close, no phx_leave.
                        let _ = ws.close(None).await;
                        return RelayEnd::Lost("client gone".into());
                    };
                    if let Err(end) = self.send_command(&mut ws, command).await {
                        return end;
                    }
                }
                frame = next_frame(&mut ws) => {
                    last_heard = tokio::time::Instant::now();
                    match frame {
                        Ok(frame) => if let Some(end) = self.deliver(frame) {
                            return end;
                        },
                        Err(end) => return end,
                    }
                }
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > SILENCE_LIMIT {
                        return RelayEnd::Lost(format!("the room's node was silent for {SILENCE_LIMIT:?}"));
                    }
                    let r = self.take_ref();
                    let beat = json!([null, r.to_string(), "phoenix", "heartbeat", {}]);
                    if let Err(end) = send(&mut ws, &beat).await {
                        return end;
                    }
                }
            }
        }
    }

    fn take_ref(&mut self) -> u64 {
        self.next_ref += 1;
        self.next_ref
    }

    async fn send_command(&mut self, ws: &mut Ws, command: RelayCommand) -> Result<(), RelayEnd> {
        match command {
            RelayCommand::Push {
                event,
                payload,
                reply,
            } => {
                let r = self.take_ref();
                if let Some(reply) = reply {
                    if self.pending.len() == MAX_PENDING_REPLIES {
                        self.pending.pop_front();
                    }
                    self.pending.push_back((r, reply));
                }
                send(ws, &json!(["1", r.to_string(), self.topic, event, payload])).await
            }
            RelayCommand::Leave => {
                let r = self.take_ref();
                send(
                    ws,
                    &json!(["1", r.to_string(), self.topic, "phx_leave", {}]),
                )
                .await?;
                let _ = ws.close(None).await;
                Err(RelayEnd::Closed)
            }
        }
    }

    /// Hands one frame from the room's node to the client's channel; `Some` when the link ends.
    fn deliver(&mut self, frame: Value) -> Option<RelayEnd> {
        let event = frame[3].as_str()?;
        let payload = &frame[4];
        let message = match event {
            "mediaEvent" => PeerMessage::MediaEvent(payload["data"].as_str()?.to_owned()),
            "chat" => PeerMessage::Chat(std::sync::Arc::new(payload.clone())),
            "phx_reply" => {
                let r: u64 = frame[1].as_str()?.parse().ok()?;
                let at = self.pending.iter().position(|(n, _)| *n == r)?;
                let (_, reply) = self.pending.remove(at)?;
                PeerMessage::RelayReply {
                    reply,
                    status: payload["status"].as_str().unwrap_or("error").to_owned(),
                    response: payload["response"].clone(),
                }
            }
            "phx_close" => return Some(RelayEnd::Closed),
            "phx_error" => return Some(RelayEnd::Lost("the room's channel crashed".into())),
            // Any other push of the room's channel (`mediaDiagnosis`, …) goes on unchanged.
            other if !other.starts_with("phx_") => PeerMessage::RelayPush {
                event: other.to_owned(),
                payload: payload.clone(),
            },
            _ => return None,
        };
        // A client socket that cannot take it is closed by its own shell; the link ends with it.
        match self.channel.try_send(message) {
            Ok(()) => None,
            Err(e) => Some(RelayEnd::Lost(format!("client channel: {e}"))),
        }
    }
}

async fn send(ws: &mut Ws, frame: &Value) -> Result<(), RelayEnd> {
    ws.send(Message::text(frame.to_string()))
        .await
        .map_err(|e| RelayEnd::Lost(format!("send: {e}")))
}

/// The next JSON text frame from the node (other frames skipped).
async fn next_frame(ws: &mut Ws) -> Result<Value, RelayEnd> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                if let Ok(frame) = serde_json::from_str::<Value>(&text) {
                    return Ok(frame);
                }
            }
            Some(Ok(Message::Close(_))) | None => {
                return Err(RelayEnd::Lost("the room's node closed the link".into()));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(RelayEnd::Lost(format!("link: {e}"))),
        }
    }
}
