//! A minimal Phoenix Channels V2 client (the `vsn=2.0.0` JSON-array serializer of phoenix.js),
//! just enough to behave like the tutorial page: join one topic, push events, receive pushes,
//! heartbeat, leave.
//!
//! One actor task owns the WebSocket; the handle talks to it through a bounded command queue.
//! Incoming pushes go to a bounded queue read by the peer; when it is full the actor waits
//! (back-pressure on the socket), which is what a slow browser tab does too.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

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

/// Handle to the socket actor. Dropping every handle closes the socket cleanly.
#[derive(Clone)]
pub struct PhoenixSocket {
    commands: mpsc::Sender<Command>,
}

/// Connects to `ws://<addr>/socket/websocket?vsn=2.0.0` (give the full URL), starts the actor
/// and returns the handle plus the queue of incoming pushes.
pub async fn connect(
    url: &str,
    heartbeat: Duration,
) -> Result<(PhoenixSocket, mpsc::Receiver<Incoming>), String> {
    let (ws, _response) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| format!("websocket connect to {url}: {e}"))?;
    let (commands_tx, commands_rx) = mpsc::channel(256);
    let (incoming_tx, incoming_rx) = mpsc::channel(1024);
    tokio::spawn(run(ws, commands_rx, incoming_tx, heartbeat));
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
        self.commands
            .send(Command::Join {
                topic: topic.to_owned(),
                payload,
                reply,
            })
            .await
            .map_err(|_| json!({"reason": "socket closed"}))?;
        rx.await
            .unwrap_or_else(|_| Err(json!({"reason": "socket closed"})))
    }

    /// Pushes `event` on `topic` (fire and forget, like `channel.push` without `receive`).
    pub async fn push(&self, topic: &str, event: &str, payload: Value) {
        let _ = self
            .commands
            .send(Command::Push {
                topic: topic.to_owned(),
                event: event.to_owned(),
                payload,
            })
            .await;
    }

    /// Leaves `topic` (`phx_leave`).
    pub async fn leave(&self, topic: &str) {
        let _ = self
            .commands
            .send(Command::Leave {
                topic: topic.to_owned(),
            })
            .await;
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

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn run(
    ws: Ws,
    mut commands: mpsc::Receiver<Command>,
    incoming: mpsc::Sender<Incoming>,
    heartbeat: Duration,
) {
    let (mut sink, mut stream) = ws.split();
    let mut next_ref: u64 = 1;
    // topic → join_ref of the current membership, so stale pushes are dropped like phoenix.js.
    let mut join_refs: HashMap<String, String> = HashMap::new();
    // ref → pending join reply.
    let mut pending_joins: HashMap<String, oneshot::Sender<Result<Value, Value>>> = HashMap::new();
    let mut ticker = tokio::time::interval(heartbeat);
    ticker.tick().await;
    loop {
        tokio::select! {
            command = commands.recv() => {
                let frame = match command {
                    None | Some(Command::Close) => {
                        let _ = sink.send(Message::Close(None)).await;
                        return;
                    }
                    Some(Command::Abort) => return,
                    Some(Command::Join { topic, payload, reply }) => {
                        let r = next_ref.to_string();
                        next_ref += 1;
                        join_refs.insert(topic.clone(), r.clone());
                        pending_joins.insert(r.clone(), reply);
                        json!([r, r, topic, "phx_join", payload])
                    }
                    Some(Command::Push { topic, event, payload }) => {
                        let r = next_ref.to_string();
                        next_ref += 1;
                        let join_ref = join_refs.get(&topic).cloned();
                        json!([join_ref, r, topic, event, payload])
                    }
                    Some(Command::Leave { topic }) => {
                        let r = next_ref.to_string();
                        next_ref += 1;
                        let join_ref = join_refs.remove(&topic);
                        json!([join_ref, r, topic, "phx_leave", {}])
                    }
                };
                if sink.send(Message::text(frame.to_string())).await.is_err() {
                    return;
                }
            }
            _ = ticker.tick() => {
                let r = next_ref.to_string();
                next_ref += 1;
                let frame = json!([null, r, "phoenix", "heartbeat", {}]);
                if sink.send(Message::text(frame.to_string())).await.is_err() {
                    return;
                }
            }
            message = stream.next() => {
                let text = match message {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                        let _ = incoming.send(Incoming {
                            topic: "phoenix".into(),
                            event: "socket_closed".into(),
                            payload: Value::Null,
                        }).await;
                        return;
                    }
                    Some(Ok(_)) => continue,
                };
                let Ok(Value::Array(parts)) = serde_json::from_str::<Value>(&text) else {
                    log::warn!("phoenix client: ignoring malformed frame {text}");
                    continue;
                };
                let [join_ref, reference, topic, event, payload]: [Value; 5] = match parts.try_into() {
                    Ok(parts) => parts,
                    Err(_) => continue,
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
                    && join_refs.get(&topic).is_some_and(|current| current != join_ref)
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
