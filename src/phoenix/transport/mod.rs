//! Transports: the warp shells that move frames between HTTP and a [`SocketState`](super::SocketState).
//!
//! A [`SocketMount`] describes one socket (its path, [`SocketHandler`], [`Router`] and
//! [`Settings`]); [`Endpoint::mount`] turns it into a warp filter serving
//! `<path>/websocket` and `<path>/longpoll`. Both transports run the same admission steps, in
//! Phoenix's order: origin check (403), auth token / subprotocol (403), `vsn` (403), the
//! handler's `connect` (403 or the handler's own status), socket id. A query string beyond
//! [`params`]' bounds (length, pairs, nesting depth) is refused with 400 before anything else
//! is parsed or buffered.
//!
//! The [`Endpoint`] holds what sockets share: PubSub, Presence, and the drain signal
//! ([`Endpoint::drain`] closes every socket with 1012).

mod longpoll;
pub mod origin;
pub mod params;
mod websocket;

pub use origin::CheckOrigin;

use super::channel::Router;
use super::metrics::{GaugeGuard, SocketMetrics};
use super::presence::Presence;
use super::pubsub::{LocalPubSub, PubSub};
use super::serializer::Serializer;
use super::socket::{SocketEnv, SocketLimits};
use base64::Engine as _;
use prometheus_client::metrics::gauge::Gauge;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::HeaderMap;
use warp::reply::Response;

/// What a socket handler may see of the HTTP request (Phoenix's `connect_info`).
#[derive(Debug, Clone, Default)]
pub struct ConnectInfo {
    /// `"websocket"` or `"longpoll"`.
    pub transport: &'static str,
    /// The client's address.
    pub peer_addr: Option<SocketAddr>,
    /// Request path and query.
    pub uri: String,
    /// `Host` header.
    pub host: Option<String>,
    /// `Origin` header.
    pub origin: Option<String>,
    /// `User-Agent` header.
    pub user_agent: Option<String>,
    /// All `x-*` headers (lower-case names).
    pub x_headers: Vec<(String, String)>,
    /// `traceparent` / `tracestate` headers.
    pub trace_context_headers: Vec<(String, String)>,
    /// All `sec-websocket-*` headers.
    pub sec_websocket_headers: Vec<(String, String)>,
    /// The 1.8 auth token (`base64url.bearer.phx.<b64>` subprotocol or `X-Phoenix-AuthToken`).
    pub auth_token: Option<String>,
}

/// Why `connect` refused a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// Plain refusal: HTTP 403 (LongPoll `{"status":403}`).
    Refused,
    /// Refusal with a custom HTTP status and body (Phoenix's `error_handler`, e.g. 429).
    Status {
        /// HTTP status for WebSocket (LongPoll reports 403).
        status: u16,
        /// Response body.
        body: String,
    },
}

/// The socket definition's callbacks (Phoenix's `connect/3` and `id/1`).
pub trait SocketHandler: Send + Sync + 'static {
    /// Accepts (returning the socket's assigns) or refuses a client. `params` holds the query
    /// params (including `vsn`) and the mount's path variables.
    fn connect(&self, params: &Value, info: &ConnectInfo) -> Result<Value, ConnectError> {
        let _ = (params, info);
        Ok(json!({}))
    }

    /// The socket id (e.g. `"user_socket:42"`): a `disconnect` broadcast on it closes the socket.
    fn id(&self, assigns: &Value) -> Option<String> {
        let _ = assigns;
        None
    }
}

/// Accepts everyone, anonymous sockets.
#[derive(Debug, Default, Clone, Copy)]
pub struct AcceptAll;

impl SocketHandler for AcceptAll {}

/// Transport settings of one socket mount.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Origin policy (default: the request's own host).
    pub check_origin: CheckOrigin,
    /// Largest accepted WebSocket message in bytes (default 8 MiB; closes with 1009).
    pub max_frame_size: usize,
    /// LongPoll window (default 10 s); a session dies after 1.5 windows without a poll.
    pub longpoll_window: Duration,
    /// Serve `<path>/websocket` (default on).
    pub websocket: bool,
    /// Serve `<path>/longpoll` (default on).
    pub longpoll: bool,
    /// Accept the 1.8 auth token subprotocol (default on; answered with `phoenix`).
    pub auth_token: bool,
    /// Extra WebSocket subprotocols to accept, in preference order.
    pub subprotocols: Vec<String>,
    /// Frames a socket may have queued for its client before it is closed as overloaded
    /// (default 1024).
    pub outbound_queue: usize,
    /// Events (broadcasts, handle_info messages) a socket may have queued before it is
    /// closed as overloaded (default 1024).
    pub inbox: usize,
    /// Bytes a socket may have queued for its client before it is closed as overloaded (1013);
    /// one frame bigger than this still goes out when nothing else is queued.
    pub outbound_bytes: usize,
    /// What one socket may do: channels, message rate, topic length, and the WebSocket idle
    /// timeout (closes with 1001; LongPoll sessions end by their poll window instead).
    pub socket: SocketLimits,
    /// Most LongPoll sessions open at once per mount (more: `{"status":403}`).
    pub max_longpoll_sessions: usize,
    /// Bounds of the connect query string (over them: 400).
    pub query: params::QueryLimits,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            check_origin: CheckOrigin::SameHost,
            max_frame_size: 8 * 1024 * 1024,
            longpoll_window: Duration::from_secs(10),
            websocket: true,
            longpoll: true,
            auth_token: true,
            subprotocols: Vec::new(),
            outbound_queue: 1024,
            inbox: 1024,
            outbound_bytes: 4 * 1024 * 1024,
            socket: SocketLimits::default(),
            max_longpoll_sessions: 10_000,
            query: params::QueryLimits::default(),
        }
    }
}

/// One socket mounted at a path: handler, channel routes and settings.
#[derive(Clone)]
pub struct SocketMount {
    path: String,
    router: Arc<Router>,
    handler: Arc<dyn SocketHandler>,
    settings: Settings,
}

impl std::fmt::Debug for SocketMount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketMount")
            .field("path", &self.path)
            .field("settings", &self.settings)
            .finish()
    }
}

impl SocketMount {
    /// A socket at `path` (e.g. `/socket`; segments like `:name` become params) with the
    /// given routes, accepting every client, default settings.
    pub fn new(path: &str, router: Router) -> Self {
        SocketMount {
            path: path.trim_end_matches('/').to_owned(),
            router: Arc::new(router),
            handler: Arc::new(AcceptAll),
            settings: Settings::default(),
        }
    }

    /// Sets the socket handler (`connect` / `id`).
    pub fn handler(mut self, handler: impl SocketHandler) -> Self {
        self.handler = Arc::new(handler);
        self
    }

    /// Replaces all settings.
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// Changes settings in place.
    pub fn configure(mut self, f: impl FnOnce(&mut Settings)) -> Self {
        f(&mut self.settings);
        self
    }

    /// The mount path.
    pub fn path(&self) -> &str {
        &self.path
    }

    fn limits(&self, idle: bool) -> SocketLimits {
        let socket = &self.settings.socket;
        SocketLimits {
            idle_timeout: socket.idle_timeout.filter(|_| idle),
            ..socket.clone()
        }
    }

    /// Matches `<path>/<suffix>` against the request path; returns the path variables.
    fn match_path(
        &self,
        request_path: &str,
        suffix: &str,
    ) -> Option<serde_json::Map<String, Value>> {
        let want: Vec<&str> = self
            .path
            .split('/')
            .filter(|s| !s.is_empty())
            .chain([suffix])
            .collect();
        let got: Vec<&str> = request_path.split('/').filter(|s| !s.is_empty()).collect();
        if want.len() != got.len() {
            return None;
        }
        let mut vars = serde_json::Map::new();
        for (w, g) in want.iter().zip(&got) {
            match w.strip_prefix(':') {
                Some(name) => {
                    vars.insert(name.to_owned(), Value::String(params::percent_decode(g)));
                }
                None if w == g => {}
                None => return None,
            }
        }
        Some(vars)
    }
}

/// Matches `<mount path>/<transport>` when that transport is `enabled` (otherwise 404, so other
/// routes may answer); extracts the request path and the mount's path variables.
fn transport_path(
    mount: &Arc<SocketMount>,
    transport: &'static str,
    enabled: bool,
) -> impl Filter<Extract = ((String, serde_json::Map<String, Value>),), Error = warp::Rejection>
+ Clone
+ Send
+ Sync
+ 'static {
    let mount = mount.clone();
    warp::path::full().and_then(move |p: warp::path::FullPath| {
        let vars = enabled
            .then(|| mount.match_path(p.as_str(), transport))
            .flatten();
        async move {
            match vars {
                Some(vars) => Ok((p.as_str().to_owned(), vars)),
                None => Err(warp::reject::not_found()),
            }
        }
    })
}

/// The raw query string, empty when the request has none.
fn raw_query() -> impl Filter<Extract = (String,), Error = std::convert::Infallible> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify()
}

/// The client's address: put in the request's extensions as a plain [`SocketAddr`] by the
/// server (`web::serve`), else warp's own remote address.
fn client_addr()
-> impl Filter<Extract = (Option<SocketAddr>,), Error = std::convert::Infallible> + Clone {
    warp::ext::optional::<SocketAddr>()
        .and(warp::addr::remote())
        .map(|ext: Option<SocketAddr>, remote: Option<SocketAddr>| ext.or(remote))
}

/// What sockets of one server share: PubSub, Presence, the drain signal.
#[derive(Clone)]
pub struct Endpoint {
    pubsub: Arc<dyn PubSub>,
    presence: Arc<Presence>,
    drain: watch::Sender<bool>,
    live: Arc<AtomicUsize>,
    metrics: SocketMetrics,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("live_sockets", &self.live_sockets())
            .finish()
    }
}

impl Default for Endpoint {
    fn default() -> Self {
        Self::new()
    }
}

impl Endpoint {
    /// An endpoint with a node-local PubSub.
    pub fn new() -> Self {
        Self::with_pubsub(LocalPubSub::new())
    }

    /// An endpoint on a given PubSub.
    pub fn with_pubsub(pubsub: Arc<dyn PubSub>) -> Self {
        let presence = Presence::new(pubsub.clone());
        Endpoint {
            pubsub,
            presence,
            drain: watch::channel(false).0,
            live: Arc::new(AtomicUsize::new(0)),
            metrics: SocketMetrics::default(),
        }
    }

    /// The same endpoint counting its sockets, channels, closes and limit hits in `metrics`.
    pub fn with_metrics(self, metrics: SocketMetrics) -> Self {
        Endpoint { metrics, ..self }
    }

    /// The endpoint's counters and gauges.
    pub fn metrics(&self) -> &SocketMetrics {
        &self.metrics
    }

    /// The PubSub (e.g. to broadcast `disconnect` on a socket id).
    pub fn pubsub(&self) -> &Arc<dyn PubSub> {
        &self.pubsub
    }

    /// The Presence tracker.
    pub fn presence(&self) -> &Arc<Presence> {
        &self.presence
    }

    /// Closes every socket with 1012 (Service Restart) and refuses nothing new by itself
    /// (stop the HTTP server for that).
    pub fn drain(&self) {
        self.drain.send_replace(true);
    }

    /// Number of open WebSocket connections and LongPoll sessions.
    pub fn live_sockets(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// Waits until every socket closed, at most `max`.
    pub async fn wait_drained(&self, max: Duration) {
        let deadline = tokio::time::Instant::now() + max;
        while self.live_sockets() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn env(&self) -> SocketEnv {
        SocketEnv {
            pubsub: self.pubsub.clone(),
            presence: self.presence.clone(),
            metrics: self.metrics.clone(),
        }
    }

    /// The warp filter serving `mount` (`<path>/websocket` and/or `<path>/longpoll`).
    pub fn mount(&self, mount: SocketMount) -> BoxedFilter<(Response,)> {
        let mount = Arc::new(mount);
        let ws = websocket::filter(self.clone(), mount.clone());
        let lp = longpoll::filter(self.clone(), mount);
        ws.or(lp).unify().boxed()
    }
}

/// Counts a live socket for as long as it is held (and in the gauge of its transport).
struct LiveGuard {
    live: Arc<AtomicUsize>,
    _transport: GaugeGuard,
}

impl LiveGuard {
    fn new(endpoint: &Endpoint, transport: &Gauge) -> Self {
        endpoint.live.fetch_add(1, Ordering::SeqCst);
        LiveGuard {
            live: endpoint.live.clone(),
            _transport: GaugeGuard::new(transport),
        }
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Why admission failed.
#[derive(Debug, PartialEq)]
enum Refusal {
    /// 403 with a log reason.
    Forbidden(String),
    /// Handler-chosen status.
    Status(u16, String),
}

/// A socket that passed admission.
struct Admitted {
    serializer: Serializer,
    assigns: Value,
    socket_id: Option<String>,
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn headers_with(headers: &HeaderMap, pred: impl Fn(&str) -> bool) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(k, _)| pred(k.as_str()))
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect()
}

fn connect_info(
    transport: &'static str,
    headers: &HeaderMap,
    path: &str,
    query: &str,
    peer: Option<SocketAddr>,
) -> ConnectInfo {
    ConnectInfo {
        transport,
        peer_addr: peer,
        uri: if query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{query}")
        },
        host: header(headers, "host"),
        origin: header(headers, "origin"),
        user_agent: header(headers, "user-agent"),
        x_headers: headers_with(headers, |k| k.starts_with("x-")),
        trace_context_headers: headers_with(headers, |k| k == "traceparent" || k == "tracestate"),
        sec_websocket_headers: headers_with(headers, |k| k.starts_with("sec-websocket-")),
        auth_token: None,
    }
}

/// Decodes the token of a `base64url.bearer.phx.<b64>` subprotocol (standard alphabet,
/// padding optional; the URL-safe alphabet is accepted too).
fn decode_bearer(b64: &str) -> Option<String> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let trimmed = b64.trim_end_matches('=');
    let bytes = STANDARD_NO_PAD
        .decode(trimmed)
        .or_else(|_| URL_SAFE_NO_PAD.decode(trimmed))
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// The admission steps after the origin check, shared by both transports.
fn admit(
    mount: &SocketMount,
    params: &mut Value,
    vars: serde_json::Map<String, Value>,
    info: &ConnectInfo,
) -> Result<Admitted, Refusal> {
    let serializer = match params.get("vsn") {
        None => Serializer::negotiate(None),
        Some(Value::String(v)) => Serializer::negotiate(Some(v)),
        Some(_) => None,
    };
    let Some(serializer) = serializer else {
        return Err(Refusal::Forbidden(format!(
            "the client's requested serializer version {} does not match server's version",
            params.get("vsn").cloned().unwrap_or_default()
        )));
    };
    if let Value::Object(map) = params {
        map.extend(vars);
    }
    let assigns = match mount.handler.connect(params, info) {
        Ok(assigns) => assigns,
        Err(ConnectError::Refused) => return Err(Refusal::Forbidden("connect refused".into())),
        Err(ConnectError::Status { status, body }) => return Err(Refusal::Status(status, body)),
    };
    let socket_id = mount.handler.id(&assigns);
    Ok(Admitted {
        serializer,
        assigns,
        socket_id,
    })
}
