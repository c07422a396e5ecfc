//! The WebSocket shell: `GET <path>/websocket`.
//!
//! How it works: the handshake runs Phoenix's checks in order (method 400, origin 403, auth
//! token / subprotocol 403, vsn 403, connect 403/custom, not an upgrade 400), then upgrades.
//! After the upgrade one task owns the [`SocketState`] and selects over: frames from the
//! client, the socket's inbox, the idle deadline, the overflow signal and the drain signal.
//! Frames to the client go through a queue to a writer task, bounded in frames
//! (`outbound_queue`) and in bytes (`outbound_bytes`); when it is full the client is not
//! reading, and the socket is closed with 1013 and a log line naming it. That close frame
//! jumps the queue (it follows at most the frame being written), so the client sees 1013 and
//! not a dropped connection. Close codes: see the table in [`crate::phoenix::socket`].

use super::{
    Endpoint, LiveGuard, Refusal, SocketMount, admit, connect_info, decode_bearer, header,
    raw_query, transport_path,
};
use crate::phoenix::mailbox::Mailbox;
use crate::phoenix::message::Frame;
use crate::phoenix::socket::{
    CLOSE_INVALID_DATA, CLOSE_PROTOCOL_ERROR, CLOSE_TOO_BIG, CLOSE_TRY_AGAIN_LATER, Output,
    SocketState,
};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tungstenite::Message as WsMessage;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::reply::Response;

/// The upgraded connection.
type WebSocket = ws_stream::WebSocketStream<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>;

/// Bytes tungstenite reads from the socket at a time (its default, 128 KiB, is allocated for every
/// connection up front). Larger messages are still read whole, in more reads.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// A close frame with `code` and `reason`.
fn close_message(code: u16, reason: &str) -> WsMessage {
    WsMessage::Close(Some(CloseFrame {
        code: code.into(),
        reason: reason.to_owned().into(),
    }))
}

/// The `Sec-WebSocket-Key` of a valid WebSocket upgrade request (RFC 6455 §4.2.1), else `None`.
fn upgrade_key(headers: &HeaderMap) -> Option<String> {
    let lists = |name: &str, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    let valid = lists("connection", "upgrade")
        && lists("upgrade", "websocket")
        && header(headers, "sec-websocket-version").as_deref() == Some("13");
    valid
        .then(|| header(headers, "sec-websocket-key"))
        .flatten()
}
use warp::Filter;

fn status(code: StatusCode, body: &str) -> Response {
    let mut r = Response::new(body.to_owned().into());
    *r.status_mut() = code;
    r
}

pub(super) fn filter(endpoint: Endpoint, mount: Arc<SocketMount>) -> BoxedFilter<(Response,)> {
    let path = transport_path(&mount, "websocket", mount.settings.websocket);
    let query = raw_query();
    let ws = warp::ext::optional::<hyper::upgrade::OnUpgrade>();
    path.and(warp::method())
        .and(warp::header::headers_cloned())
        .and(query)
        .and(super::client_addr())
        .and(ws)
        .map(move |(path, vars), method, headers, query, peer, ws| {
            let req = UpgradeRequest {
                path,
                vars,
                method,
                headers,
                query,
                peer,
                ws,
            };
            handshake(&endpoint, &mount, req)
        })
        .boxed()
}

/// Picks the subprotocol to answer with, extracting the auth token. `Err` → 403.
fn negotiate_protocols(
    mount: &SocketMount,
    headers: &HeaderMap,
) -> Result<(Option<String>, Option<String>), String> {
    let mut offered: Vec<String> = headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    let mut token = None;
    let mut allowed: Vec<String> = Vec::new();
    if mount.settings.auth_token {
        if let Some(pos) = offered
            .iter()
            .position(|p| p.starts_with("base64url.bearer.phx."))
        {
            let entry = offered.remove(pos);
            let b64 = &entry["base64url.bearer.phx.".len()..];
            token = Some(decode_bearer(b64).ok_or("undecodable auth token")?);
        }
        allowed.push("phoenix".into());
    }
    allowed.extend(mount.settings.subprotocols.iter().cloned());
    if allowed.is_empty() || offered.is_empty() {
        return Ok((None, token));
    }
    match allowed.into_iter().find(|a| offered.contains(a)) {
        Some(p) => Ok((Some(p), token)),
        None => Err(format!("no acceptable subprotocol in {offered:?}")),
    }
}

/// One WebSocket upgrade request as the filter extracted it.
struct UpgradeRequest {
    /// The mount path that matched (for log lines).
    path: String,
    /// Path variables of the mount.
    vars: serde_json::Map<String, serde_json::Value>,
    method: Method,
    headers: HeaderMap,
    /// The raw query string.
    query: String,
    peer: Option<SocketAddr>,
    /// hyper's upgrade handle (absent when the connection cannot be upgraded).
    ws: Option<hyper::upgrade::OnUpgrade>,
}

/// What Phoenix's checks leave of a request they accept.
struct Accepted {
    admitted: super::Admitted,
    protocol: Option<String>,
    on_upgrade: hyper::upgrade::OnUpgrade,
    key: String,
}

/// Runs Phoenix's checks, then upgrades: a `101` whose connection a spawned [`Shell`] serves,
/// or the refusal.
fn handshake(endpoint: &Endpoint, mount: &Arc<SocketMount>, req: UpgradeRequest) -> Response {
    let path = req.path.clone();
    let accepted = match check(mount, req) {
        Ok(accepted) => accepted,
        Err((code, body)) => return status(code, &body),
    };
    let Accepted {
        admitted,
        protocol,
        on_upgrade,
        key,
    } = accepted;
    let shell = Shell::new(endpoint, mount, admitted);
    log::debug!("websocket {path}: {} connected", shell.state.label());
    let config = socket_config(mount.settings.max_frame_size);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let io = hyper_util::rt::TokioIo::new(upgraded);
                let socket = WebSocket::from_raw_socket(io, Role::Server, Some(config)).await;
                shell.run(socket).await;
            }
            Err(e) => log::debug!("websocket upgrade failed: {e}"),
        }
    });
    switching_protocols(&key, protocol)
}

/// Phoenix's checks in order: method 400, origin 403, auth token / subprotocol 403, query 400,
/// vsn and connect 403/custom, not an upgrade 400. `Err` is the refusal to send.
fn check(mount: &SocketMount, req: UpgradeRequest) -> Result<Accepted, (StatusCode, String)> {
    let path = &req.path;
    let headers = &req.headers;
    if req.method != Method::GET {
        log::info!("websocket {path}: refusing {} (400)", req.method);
        return Err((StatusCode::BAD_REQUEST, String::new()));
    }
    let origin = header(headers, "origin");
    if !mount
        .settings
        .check_origin
        .allows(origin.as_deref(), header(headers, "host").as_deref())
    {
        log::warn!("websocket {path}: origin {origin:?} not allowed (403)");
        return Err((StatusCode::FORBIDDEN, String::new()));
    }
    let mut info = connect_info("websocket", headers, path, &req.query, req.peer);
    let (protocol, token) = negotiate_protocols(mount, headers).map_err(|e| {
        log::warn!("websocket {path}: {e} (403)");
        (StatusCode::FORBIDDEN, String::new())
    })?;
    info.auth_token = token;
    let mut params =
        super::params::parse_query(&req.query, &mount.settings.query).map_err(|e| {
            log::warn!("websocket {path}: refusing {e} (400)");
            (StatusCode::BAD_REQUEST, String::new())
        })?;
    let admitted = admit(mount, &mut params, req.vars, &info).map_err(|refusal| match refusal {
        Refusal::Forbidden(why) => {
            log::warn!("websocket {path}: {why} (403)");
            (StatusCode::FORBIDDEN, String::new())
        }
        Refusal::Status(code, body) => {
            log::warn!("websocket {path}: connect refused with {code}");
            (
                StatusCode::from_u16(code).unwrap_or(StatusCode::FORBIDDEN),
                body,
            )
        }
    })?;
    let (Some(on_upgrade), Some(key)) = (req.ws, upgrade_key(headers)) else {
        log::info!("websocket {path}: not a valid upgrade request (400)");
        return Err((
            StatusCode::BAD_REQUEST,
            "'connection' header must contain 'upgrade'".to_owned(),
        ));
    };
    Ok(Accepted {
        admitted,
        protocol,
        on_upgrade,
        key,
    })
}

/// tungstenite's settings for one connection: the size limit is enforced before a whole message
/// is buffered; frames are written as they come (no write buffering target) because the
/// outbound queue is ours, bounded in bytes.
fn socket_config(max_frame_size: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(Some(max_frame_size))
        .max_frame_size(Some(max_frame_size))
}

/// The `101 Switching Protocols` answer for `key`, naming the chosen subprotocol.
fn switching_protocols(key: &str, protocol: Option<String>) -> Response {
    let mut reply = status(StatusCode::SWITCHING_PROTOCOLS, "");
    let h = reply.headers_mut();
    h.insert(
        "connection",
        warp::http::HeaderValue::from_static("upgrade"),
    );
    h.insert("upgrade", warp::http::HeaderValue::from_static("websocket"));
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    if let Ok(v) = warp::http::HeaderValue::from_str(&accept) {
        h.insert("sec-websocket-accept", v);
    }
    if let Some(v) = protocol.and_then(|p| warp::http::HeaderValue::from_str(&p).ok()) {
        h.insert("sec-websocket-protocol", v);
    }
    reply
}

struct Shell {
    state: SocketState,
    inbox: mpsc::Receiver<crate::phoenix::mailbox::SocketEvent>,
    overflow: Arc<crate::phoenix::mailbox::Overflow>,
    drain: tokio::sync::watch::Receiver<bool>,
    outbound: usize,
    outbound_bytes: usize,
    _live: LiveGuard,
}

/// The writer task: sends queued frames in order; a frame on `urgent` (the overflow close)
/// jumps the queue, even while a send is stuck on a client that does not read. `queued` counts
/// the bytes of frames handed to the writer and not yet sent.
async fn write_frames(
    mut sink: futures_util::stream::SplitSink<WebSocket, WsMessage>,
    mut frames: mpsc::Receiver<WsMessage>,
    mut urgent: tokio::sync::oneshot::Receiver<WsMessage>,
    queued: Arc<AtomicUsize>,
) {
    // The loop ends with the urgent close frame to send, if one jumped the queue.
    let urgent_close = loop {
        let msg = tokio::select! {
            biased;
            close = &mut urgent => break close.ok(),
            msg = frames.recv() => match msg {
                Some(msg) => msg,
                None => break None,
            },
        };
        let len = msg.len();
        let is_close = msg.is_close();
        // A frame abandoned here is already in tungstenite's write buffer whole (start_send),
        // so the close frame that follows it is written after it, never inside it.
        let sent = tokio::select! {
            biased;
            close = &mut urgent => break close.ok(),
            sent = sink.send(msg) => sent.is_ok(),
        };
        queued.fetch_sub(len, Ordering::SeqCst);
        if !sent || is_close {
            break None;
        }
    };
    if let Some(close) = urgent_close {
        let _ = sink.send(close).await;
    }
    let _ = sink.close().await;
}

/// Maps a read error to the close code to send (`None`: the connection is already gone).
fn read_error_close(err: &tungstenite::Error) -> Option<(u16, &'static str)> {
    match err {
        tungstenite::Error::Capacity(_) => Some((CLOSE_TOO_BIG, "message too big")),
        tungstenite::Error::Utf8(_) => Some((CLOSE_INVALID_DATA, "invalid UTF-8")),
        tungstenite::Error::Protocol(_) => Some((CLOSE_PROTOCOL_ERROR, "protocol error")),
        _ => None,
    }
}

impl Shell {
    /// The shell of one admitted socket: its state machine, inbox and queue bounds.
    fn new(endpoint: &Endpoint, mount: &SocketMount, admitted: super::Admitted) -> Self {
        let settings = &mount.settings;
        let (mailbox, inbox, overflow) = Mailbox::new(settings.inbox);
        let state = SocketState::new(
            admitted.serializer,
            mount.router.clone(),
            mount.limits(true),
            endpoint.env(),
            admitted.assigns,
            admitted.socket_id,
            mailbox,
            Instant::now(),
        );
        Shell {
            state,
            inbox,
            overflow,
            drain: endpoint.drain.subscribe(),
            outbound: settings.outbound_queue,
            outbound_bytes: settings.outbound_bytes,
            _live: LiveGuard::new(endpoint, &endpoint.metrics.websockets),
        }
    }

    /// Serves the upgraded connection until the socket closes, then completes the closing
    /// handshake.
    async fn run(mut self, socket: WebSocket) {
        let (sink, mut stream) = socket.split();
        let (out_tx, out_rx) = mpsc::channel::<WsMessage>(self.outbound.max(1));
        let (urgent_tx, urgent_rx) = tokio::sync::oneshot::channel();
        let mut outbound = Outbound {
            frames: out_tx,
            urgent: Some(urgent_tx),
            queued: Arc::new(AtomicUsize::new(0)),
        };
        let writer = tokio::spawn(write_frames(
            sink,
            out_rx,
            urgent_rx,
            outbound.queued.clone(),
        ));
        if *self.drain.borrow() {
            self.state.drain();
        }
        loop {
            if self.flush(&mut outbound) || self.state.is_closed() {
                break;
            }
            let deadline = self
                .state
                .poll_timeout()
                .map(tokio::time::Instant::from_std);
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                frame = stream.next() => self.handle_read(frame),
                Some(ev) = self.inbox.recv() => self.state.handle_event(Instant::now(), ev),
                () = sleep => self.state.handle_timeout(Instant::now()),
                () = self.overflow.tripped() => {
                    log::warn!(
                        "{}: closing with {CLOSE_TRY_AGAIN_LATER}, inbox full: the socket cannot keep up",
                        self.state.label()
                    );
                    self.state.close(CLOSE_TRY_AGAIN_LATER, "overloaded");
                }
                Ok(()) = self.drain.changed() => {
                    if *self.drain.borrow() {
                        self.state.drain();
                    }
                }
            }
        }
        let urgent = outbound.urgent.take();
        drop(outbound);
        close_handshake(writer, stream).await;
        drop(urgent);
    }

    /// Queues every output of the last input (str0m's rule). `true` when the socket is closing:
    /// it asked to close, or the client stopped reading and is closed with 1013 (that close
    /// jumps the queue).
    fn flush(&mut self, outbound: &mut Outbound) -> bool {
        let mut closing = false;
        while let Some(out) = self.state.poll_output() {
            let msg = match out {
                Output::Frame(Frame::Text(t)) => WsMessage::text(t),
                Output::Frame(Frame::Binary(b)) => WsMessage::binary(b),
                Output::Close { code, reason } => {
                    closing = true;
                    close_message(code, &reason)
                }
            };
            if !outbound.try_queue(msg, self.outbound_bytes) {
                log::warn!(
                    "{}: closing with {CLOSE_TRY_AGAIN_LATER}, outbound queue full ({} bytes in {} frames at most): the client is not reading",
                    self.state.label(),
                    self.outbound_bytes,
                    self.outbound
                );
                self.state.close(CLOSE_TRY_AGAIN_LATER, "overloaded");
                if let Some(urgent) = outbound.urgent.take() {
                    let _ = urgent.send(close_message(CLOSE_TRY_AGAIN_LATER, "overloaded"));
                }
                return true;
            }
        }
        closing
    }

    /// Feeds one read from the client (a frame, a read error, or the end) to the socket.
    fn handle_read(&mut self, frame: Option<Result<WsMessage, tungstenite::Error>>) {
        let now = Instant::now();
        match frame {
            Some(Ok(msg)) => {
                if msg.is_text() {
                    let text = msg.to_text().unwrap_or_default().to_owned();
                    self.state.handle_frame(now, &Frame::Text(text));
                } else if msg.is_binary() {
                    self.state
                        .handle_frame(now, &Frame::Binary(msg.into_data()));
                } else if msg.is_close() {
                    log::debug!("{}: client closed {msg:?}", self.state.label());
                    self.state.transport_closed();
                }
                // Pings are answered by the WebSocket layer; pongs are ignored.
            }
            Some(Err(e)) => match read_error_close(&e) {
                Some((code, reason)) => {
                    log::warn!("{}: closing with {code}: {e}", self.state.label());
                    self.state.close(code, reason);
                }
                None => {
                    log::debug!("{}: connection error: {e}", self.state.label());
                    self.state.transport_closed();
                }
            },
            None => self.state.transport_closed(),
        }
    }
}

/// The socket's side of the writer task's queues.
struct Outbound {
    /// Frames in order, bounded in count.
    frames: mpsc::Sender<WsMessage>,
    /// The one frame that jumps the queue (the overflow close).
    urgent: Option<tokio::sync::oneshot::Sender<WsMessage>>,
    /// Bytes handed to the writer and not yet sent.
    queued: Arc<AtomicUsize>,
}

impl Outbound {
    /// Queues `msg` unless that exceeds the frame or byte bound (`false`). One frame bigger than
    /// the byte bound still goes out when nothing else waits.
    fn try_queue(&self, msg: WsMessage, max_bytes: usize) -> bool {
        let len = msg.len();
        let before = self.queued.fetch_add(len, Ordering::SeqCst);
        let over_bytes = before > 0 && before + len > max_bytes;
        if over_bytes || self.frames.try_send(msg).is_err() {
            self.queued.fetch_sub(len, Ordering::SeqCst);
            return false;
        }
        true
    }
}

/// The closing handshake: the close frame leaves, and what the client still sends is read and
/// discarded until its own close. Closing a TCP socket with unread input makes the kernel send a
/// reset, which destroys the close frame in flight (the client then sees 1006). A client that
/// does neither does not hold us beyond this bound.
async fn close_handshake(
    writer: tokio::task::JoinHandle<()>,
    mut stream: futures_util::stream::SplitStream<WebSocket>,
) {
    let linger = async {
        while let Some(Ok(msg)) = stream.next().await {
            if msg.is_close() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = tokio::join!(writer, linger);
    })
    .await;
}
