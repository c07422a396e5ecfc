//! The LongPoll shell: `GET`/`POST`/`OPTIONS <path>/longpoll`.
//!
//! How it works: every response is HTTP 200 with the logical status in JSON (`{"status":N}`),
//! `cache-control: no-store` and `access-control-allow-origin: *`.
//!
//! * `GET` without a (live) session token: admission (origin, vsn, connect; 403 on failure),
//!   then a new session → `{"status":410,"token":T,"messages":[]}`.
//! * `GET` with a token: buffered messages at once (200), else wait up to one window (204).
//! * `POST` with a token: the body (ndjson: `[`/`{` lines are JSON text, other lines base64 binary
//!   pushes, at most 100 lines; any other content type: one message) is handed to the session;
//!   200 once processed, 408 if not processed within a window, 410 without a session.
//! * A session with no poll for 1.5 windows ends (its channels terminate).
//! * Limits: a query over the parser's bounds is HTTP 400; a POST body longer than
//!   `max_frame_size` is HTTP 413 (a declared `content-length` is refused before any byte is
//!   read, a chunked body once the limit is passed); more than `max_longpoll_sessions` open
//!   sessions: a new one gets `{"status":403}`; unread messages over `outbound_queue` frames or
//!   `outbound_bytes` bytes end the session.
//!
//! The token travels as query param `token` or header `X-Phoenix-Longpoll-Token` (the header
//! wins). Each session is a task owning one [`SocketState`]; its outbound buffer is bounded
//! (`outbound_queue` messages; overflow closes the session with a log line). LongPoll cannot
//! carry binary frames to the client (as in Phoenix); they are dropped with a warning.

use super::{
    Endpoint, LiveGuard, Refusal, SocketMount, admit, connect_info, header, raw_query,
    transport_path,
};
use crate::phoenix::mailbox::{Mailbox, Overflow, SocketEvent};
use crate::phoenix::message::Frame;
use crate::phoenix::socket::{CLOSE_TRY_AGAIN_LATER, Output, SocketState};
use base64::Engine as _;
use bytes::{Buf, Bytes};
use dashmap::DashMap;
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode};
use warp::reply::Response;

/// Lines of one ndjson POST that are processed; the rest are ignored (Phoenix ≥1.8.9).
const MAX_BATCH: usize = 100;

type Sessions = Arc<DashMap<String, mpsc::Sender<Command>>>;

/// A request body, read only after the request passed its checks, and only up to the limit.
type BodyStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, warp::Error>> + Send>>;

fn box_body<S, B>(body: S) -> BodyStream
where
    S: futures_util::Stream<Item = Result<B, warp::Error>> + Send + 'static,
    B: Buf,
{
    Box::pin(body.map(|chunk| chunk.map(|mut b| b.copy_to_bytes(b.remaining()))))
}

/// Reads at most `limit` bytes of `body`; `Err(status)`: 413 when it is longer, 400 when the
/// client broke off. A declared `content-length` over the limit is refused before any read.
async fn read_bounded(
    headers: &HeaderMap,
    mut body: BodyStream,
    limit: usize,
) -> Result<Bytes, StatusCode> {
    let declared = header(headers, "content-length").and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(StatusCode::PAYLOAD_TOO_LARGE);
    }
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|_| StatusCode::BAD_REQUEST)?;
        if buf.len() + chunk.len() > limit {
            return Err(StatusCode::PAYLOAD_TOO_LARGE);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

enum Command {
    Poll(oneshot::Sender<Vec<String>>),
    Publish(Vec<Frame>, oneshot::Sender<()>),
}

fn json_response(body: Value) -> Response {
    let mut r = Response::new(body.to_string().into());
    let h = r.headers_mut();
    h.insert(
        "content-type",
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    h.insert("cache-control", HeaderValue::from_static("no-store"));
    h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    r
}

fn plain(code: StatusCode) -> Response {
    let mut r = Response::new(Default::default());
    *r.status_mut() = code;
    r.headers_mut()
        .insert("access-control-allow-origin", HeaderValue::from_static("*"));
    r
}

pub(super) fn filter(endpoint: Endpoint, mount: Arc<SocketMount>) -> BoxedFilter<(Response,)> {
    let sessions: Sessions = Arc::new(DashMap::new());
    let full_logged = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let path = transport_path(&mount, "longpoll", mount.settings.longpoll);
    let query = raw_query();
    path.and(warp::method())
        .and(warp::header::headers_cloned())
        .and(query)
        .and(super::client_addr())
        .and(warp::body::stream().map(box_body))
        .then(move |(path, vars), method, headers, query, peer, body| {
            let ctx = Request {
                endpoint: endpoint.clone(),
                mount: mount.clone(),
                sessions: sessions.clone(),
                full_logged: full_logged.clone(),
                path,
                vars,
                headers,
                query,
                peer,
            };
            async move { ctx.handle(method, body).await }
        })
        .boxed()
}

struct Request {
    endpoint: Endpoint,
    mount: Arc<SocketMount>,
    sessions: Sessions,
    /// Whether the session limit was logged since the mount was last under it.
    full_logged: Arc<std::sync::atomic::AtomicBool>,
    path: String,
    vars: serde_json::Map<String, Value>,
    headers: HeaderMap,
    query: String,
    peer: Option<SocketAddr>,
}

impl Request {
    async fn handle(self, method: Method, body: BodyStream) -> Response {
        if method == Method::OPTIONS {
            let mut r = plain(StatusCode::OK);
            let h = r.headers_mut();
            if let Some(req) = self.headers.get("access-control-request-headers") {
                h.insert("access-control-allow-headers", req.clone());
            }
            h.insert(
                "access-control-allow-methods",
                HeaderValue::from_static("get, post, options"),
            );
            h.insert("access-control-max-age", HeaderValue::from_static("3600"));
            return r;
        }
        if method != Method::GET && method != Method::POST {
            return plain(StatusCode::BAD_REQUEST);
        }
        let origin = header(&self.headers, "origin");
        if !self
            .mount
            .settings
            .check_origin
            .allows(origin.as_deref(), header(&self.headers, "host").as_deref())
        {
            log::warn!(
                "longpoll {}: origin {origin:?} not allowed (403)",
                self.path
            );
            return json_response(json!({"status": 403}));
        }
        let params = match super::params::parse_query(&self.query, &self.mount.settings.query) {
            Ok(params) => params,
            Err(e) => {
                log::warn!("longpoll {}: refusing {e} (400)", self.path);
                return plain(StatusCode::BAD_REQUEST);
            }
        };
        // The header wins over the query param (Phoenix ≥1.8.10).
        let token = header(&self.headers, "x-phoenix-longpoll-token").or_else(|| {
            params
                .get("token")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
        let session = token
            .as_ref()
            .and_then(|t| self.sessions.get(t).map(|s| s.clone()));
        if method == Method::GET {
            self.get(token, session, params).await
        } else {
            self.post(session, body).await
        }
    }

    async fn get(
        self,
        token: Option<String>,
        session: Option<mpsc::Sender<Command>>,
        params: Value,
    ) -> Response {
        let token_given = token.is_some();
        if let (Some(token), Some(session)) = (token, session) {
            let (tx, rx) = oneshot::channel();
            if session.send(Command::Poll(tx)).await.is_ok() {
                let window = self.mount.settings.longpoll_window;
                // The session answers within a window; the margin covers a busy session.
                match tokio::time::timeout(window * 2 + Duration::from_secs(1), rx).await {
                    Ok(Ok(messages)) => {
                        let status = if messages.is_empty() { 204 } else { 200 };
                        return json_response(
                            json!({"status": status, "token": token, "messages": messages}),
                        );
                    }
                    Ok(Err(_)) => {} // session ended while we waited: start a new one
                    Err(_) => {
                        return json_response(
                            json!({"status": 204, "token": token, "messages": []}),
                        );
                    }
                }
            }
        }
        if *self.endpoint.drain.borrow() {
            // Shutting down: no new sessions. A client that had one is told it is gone (410),
            // so phoenix.js ≥1.8.2 reconnects (elsewhere); a fresh client is refused.
            let status = if token_given { 410 } else { 403 };
            return json_response(json!({"status": status}));
        }
        self.open(params)
    }

    fn open(self, mut params: Value) -> Response {
        let mut info = connect_info(
            "longpoll",
            &self.headers,
            &self.path,
            &self.query,
            self.peer,
        );
        info.auth_token = header(&self.headers, "x-phoenix-authtoken");
        if let Value::Object(map) = &mut params {
            map.remove("token");
        }
        let admitted = match admit(&self.mount, &mut params, self.vars, &info) {
            Ok(a) => a,
            Err(Refusal::Forbidden(why)) => {
                log::warn!("longpoll {}: {why} (403)", self.path);
                return json_response(json!({"status": 403}));
            }
            Err(Refusal::Status(code, _)) => {
                log::warn!("longpoll {}: connect refused with {code} (403)", self.path);
                return json_response(json!({"status": 403}));
            }
        };
        let settings = &self.mount.settings;
        if self.sessions.len() >= settings.max_longpoll_sessions {
            self.endpoint.metrics.limit_hit("longpoll_sessions");
            // One line per episode of being full, not one per refused client.
            if !self
                .full_logged
                .swap(true, std::sync::atomic::Ordering::SeqCst)
            {
                log::warn!(
                    "longpoll {}: refusing sessions: {} open (limit --max-longpoll-sessions) (403)",
                    self.path,
                    self.sessions.len()
                );
            }
            return json_response(json!({"status": 403}));
        }
        self.full_logged
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let token = uuid::Uuid::new_v4().simple().to_string();
        let (mailbox, inbox, overflow) = Mailbox::new(settings.inbox);
        let state = SocketState::new(
            admitted.serializer,
            self.mount.router.clone(),
            self.mount.limits(false),
            self.endpoint.env(),
            admitted.assigns,
            admitted.socket_id,
            mailbox,
            Instant::now(),
        );
        let (tx, rx) = mpsc::channel(64);
        self.sessions.insert(token.clone(), tx);
        let session = Session {
            state,
            commands: rx,
            inbox,
            overflow,
            drain: self.endpoint.drain.subscribe(),
            window: settings.longpoll_window,
            max_buffer: settings.outbound_queue.max(1),
            max_buffer_bytes: settings.outbound_bytes,
            buffer: VecDeque::new(),
            buffer_bytes: 0,
            pending: None,
            last_poll: Instant::now(),
            _live: LiveGuard::new(&self.endpoint, &self.endpoint.metrics.longpolls),
        };
        let sessions = self.sessions.clone();
        let key = token.clone();
        tokio::spawn(async move {
            session.run().await;
            sessions.remove(&key);
        });
        json_response(json!({"status": 410, "token": token, "messages": []}))
    }

    async fn post(self, session: Option<mpsc::Sender<Command>>, body: BodyStream) -> Response {
        let Some(session) = session else {
            return json_response(json!({"status": 410}));
        };
        let limit = self.mount.settings.max_frame_size;
        let body = match read_bounded(&self.headers, body, limit).await {
            Ok(body) => body,
            Err(code) => {
                log::warn!(
                    "longpoll {}: refusing a POST body ({code}, limit {limit} bytes)",
                    self.path
                );
                return plain(code);
            }
        };
        let ndjson = header(&self.headers, "content-type")
            .is_some_and(|c| c.starts_with("application/x-ndjson"));
        let frames = if ndjson {
            split_ndjson(&body)
        } else {
            vec![Frame::Text(String::from_utf8_lossy(&body).into_owned())]
        };
        let (tx, rx) = oneshot::channel();
        if session.send(Command::Publish(frames, tx)).await.is_err() {
            return json_response(json!({"status": 410}));
        }
        match tokio::time::timeout(self.mount.settings.longpoll_window, rx).await {
            Ok(Ok(())) => json_response(json!({"status": 200})),
            Ok(Err(_)) | Err(_) => {
                log::warn!("longpoll {}: POST not acknowledged (408)", self.path);
                json_response(json!({"status": 408}))
            }
        }
    }
}

/// Splits an ndjson body: JSON lines stay text, other lines are base64 binary pushes.
fn split_ndjson(body: &[u8]) -> Vec<Frame> {
    let text = String::from_utf8_lossy(body);
    text.split('\n')
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty())
        .take(MAX_BATCH)
        .map(|line| {
            if line.starts_with('[') || line.starts_with('{') {
                Frame::Text(line.to_owned())
            } else {
                match base64::engine::general_purpose::STANDARD.decode(line) {
                    Ok(bytes) => Frame::Binary(Bytes::from(bytes)),
                    // Not base64: let the serializer reject it (the session then closes).
                    Err(_) => Frame::Text(line.to_owned()),
                }
            }
        })
        .collect()
}

struct Session {
    state: SocketState,
    commands: mpsc::Receiver<Command>,
    inbox: mpsc::Receiver<SocketEvent>,
    overflow: Arc<Overflow>,
    drain: watch::Receiver<bool>,
    window: Duration,
    max_buffer: usize,
    max_buffer_bytes: usize,
    buffer: VecDeque<String>,
    buffer_bytes: usize,
    pending: Option<(oneshot::Sender<Vec<String>>, Instant)>,
    last_poll: Instant,
    _live: LiveGuard,
}

impl Session {
    /// Moves the state's outputs into the buffer; returns false when the session must end.
    fn collect(&mut self) -> bool {
        while let Some(out) = self.state.poll_output() {
            match out {
                Output::Frame(Frame::Text(t)) => {
                    let over_bytes = self.buffer_bytes > 0
                        && self.buffer_bytes + t.len() > self.max_buffer_bytes;
                    if self.buffer.len() >= self.max_buffer || over_bytes {
                        log::warn!(
                            "{}: closing LongPoll session, {} messages ({} bytes) unread",
                            self.state.label(),
                            self.buffer.len(),
                            self.buffer_bytes
                        );
                        self.state.transport_closed();
                        return false;
                    }
                    self.buffer_bytes += t.len();
                    self.buffer.push_back(t);
                }
                Output::Frame(Frame::Binary(_)) => {
                    log::warn!(
                        "{}: LongPoll cannot carry binary frames; dropped one",
                        self.state.label()
                    );
                }
                Output::Close { code, reason } => {
                    log::info!(
                        "{}: LongPoll session ends ({code} {reason})",
                        self.state.label()
                    );
                    return false;
                }
            }
        }
        if !self.buffer.is_empty()
            && let Some((reply, _)) = self.pending.take()
        {
            self.buffer_bytes = 0;
            let _ = reply.send(self.buffer.drain(..).collect());
        }
        !self.state.is_closed()
    }

    async fn run(mut self) {
        if *self.drain.borrow() {
            self.state.drain();
        }
        while self.collect() {
            let expiry = self.last_poll + self.window.mul_f32(1.5);
            let deadline = match &self.pending {
                Some((_, until)) => *until,
                None => expiry,
            };
            tokio::select! {
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Poll(reply)) => {
                        let now = Instant::now();
                        self.last_poll = now;
                        if let Some((old, _)) = self.pending.take() {
                            let _ = old.send(Vec::new());
                        }
                        if self.buffer.is_empty() {
                            self.pending = Some((reply, now + self.window));
                        } else {
                            self.buffer_bytes = 0;
                            let _ = reply.send(self.buffer.drain(..).collect());
                        }
                    }
                    Some(Command::Publish(frames, ack)) => {
                        for frame in &frames {
                            self.state.handle_frame(Instant::now(), frame);
                            if self.state.is_closed() {
                                break;
                            }
                        }
                        if !self.state.is_closed() {
                            let _ = ack.send(());
                        }
                    }
                    None => break,
                },
                Some(ev) = self.inbox.recv() => self.state.handle_event(Instant::now(), ev),
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {
                    let now = Instant::now();
                    match self.pending.take() {
                        Some((reply, until)) if now >= until => {
                            self.last_poll = now;
                            let _ = reply.send(Vec::new());
                        }
                        Some(p) => self.pending = Some(p),
                        None if now >= expiry => {
                            log::info!("{}: LongPoll session expired (no poll for {:?})", self.state.label(), self.window.mul_f32(1.5));
                            self.state.transport_closed();
                        }
                        None => {}
                    }
                }
                () = self.overflow.tripped() => {
                    log::warn!("{}: closing LongPoll session, inbox full", self.state.label());
                    self.state.close(CLOSE_TRY_AGAIN_LATER, "overloaded");
                }
                Ok(()) = self.drain.changed() => {
                    if *self.drain.borrow() {
                        self.state.drain();
                    }
                }
            }
        }
        self.state.transport_closed();
    }
}
