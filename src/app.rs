//! Wiring: builds the routes and runs the server until shutdown.
//!
//! [`routes`] composes everything served over HTTP: the Phoenix socket at `/socket` (WebSocket +
//! LongPoll) with the `room:*` channel ([`socket_router`]), then the web app (pages, static
//! files; [`crate::web`]), over HTTPS when TLS is configured. [`App::run`] serves them on a
//! listener until `shutdown` resolves, then drains: every socket is closed with 1012 so clients
//! reconnect elsewhere, and the process exits within the drain timeout. The media plane (one UDP
//! socket, [`crate::rtc::driver::MediaPlane`]) is made in [`room_registry`].
//!
//! Operations ([`crate::metrics`]): one [`Metrics`] registry whose handles go to each layer, and
//! the probes: `/readyz` answers 503 from the moment the shutdown signal arrives (then
//! `--drain-delay` passes before the sockets are told 1012) until the process exits, while the
//! listener keeps answering.

use crate::cluster::Cluster;
use crate::cluster::pubsub::RedisPubSub;
use crate::config::Config;
use crate::metrics::{Health, Metrics};
use crate::phoenix::Router;
use crate::phoenix::transport::{Endpoint, SocketMount};
use crate::room::{Placement, RoomRegistry, RoomsConfig};
use crate::rtc::driver::MediaPlane;
use crate::rtc::metrics::Heartbeats;
use crate::rtc::sfu::SfuConfig;
use crate::rtc::tcp::TcpMedia;
use crate::web::IceTcpHandoff;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};
use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::{Filter, Reply};

/// Mount path of the Phoenix socket (`/socket/websocket`, `/socket/longpoll`).
pub const SOCKET_PATH: &str = "/socket";

/// The channel routes of the `/socket` socket: `room:*` (rooms from `rooms`). The example
/// `echo:*` channel is not on the production endpoint; tests mount it on their own.
pub fn socket_router(rooms: RoomRegistry) -> Router {
    crate::room::mount(Router::new(), rooms)
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `--redis-url` is set but Redis cannot be used.
    #[error("cluster: {0}")]
    Cluster(#[from] crate::cluster::ClusterError),
    /// `--static-dir` does not name a readable folder.
    #[error("static files: {0}")]
    StaticDir(#[from] crate::web::StaticDirError),
    /// The HTTPS certificate or key could not be loaded or generated.
    #[error("TLS: {0}")]
    Tls(#[from] crate::web::TlsError),
}

/// Every HTTP route of the server: the Phoenix socket first, then pages and static files.
pub fn routes(
    config: &Config,
    endpoint: &Endpoint,
    rooms: RoomRegistry,
) -> Result<BoxedFilter<(Response,)>, StartError> {
    let socket = SocketMount::new(SOCKET_PATH, socket_router(rooms))
        .handler(crate::room::RoomSocket)
        .settings(config.socket_settings());
    let web = crate::web::routes(&config.web_config())?;
    Ok(endpoint.mount(socket).or(web).unify().boxed())
}

/// The environment variable that turns on the test-only fault hooks (`1`); see
/// [`RoomsConfig::fault_injection`]. Not a setting: production never sets it.
pub const FAULT_INJECTION_ENV: &str = "VIDEOROOM_FAULT_INJECTION";

/// The TCP side of the media plane, as the binary bound it ([`App::with_ice_tcp`]).
pub enum IceTcpSocket {
    /// No ICE-TCP.
    Off,
    /// ICE-TCP on the web listener, whose address this is (connections are told apart by
    /// their first bytes).
    SharedWithWeb(std::net::SocketAddr),
    /// ICE-TCP on its own listener.
    Own(TcpListener),
}

/// A server ready to run: routes built, certificate loaded, nothing listening yet.
pub struct App {
    config: Config,
    rooms: RoomRegistry,
    endpoint: Endpoint,
    filter: BoxedFilter<(Response,)>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    metrics: Arc<Metrics>,
    health: Health,
    cluster: Option<Cluster>,
    /// Takes ICE-TCP connections off the web listener (the port is shared).
    ice_tcp_on_web: Option<TcpMedia>,
}

impl App {
    /// Builds the rooms (on the media socket `udp`; `None`: signalling only, no media), the
    /// routes, and loads (or generates) the TLS certificate; fails on bad settings. One node:
    /// `--redis-url` is not looked at (see [`App::start`]); no ICE-TCP.
    /// Must run inside the tokio runtime (it starts the UDP mux task).
    pub fn new(config: Config, udp: Option<UdpSocket>) -> Result<Self, StartError> {
        Self::with_ice_tcp(config, udp, IceTcpSocket::Off)
    }

    /// [`App::new`] with ICE-TCP media on `ice_tcp` (its own listener starts serving now; a
    /// shared web port from [`App::run`] on).
    pub fn with_ice_tcp(
        config: Config,
        udp: Option<UdpSocket>,
        ice_tcp: IceTcpSocket,
    ) -> Result<Self, StartError> {
        Self::build(config, udp, ice_tcp, Arc::new(Metrics::new()), None)
    }

    /// [`App::with_ice_tcp`], joining the cluster first when `--redis-url` is set (fails when
    /// Redis does not answer: a node meant for a cluster never runs alone by mistake).
    pub async fn start(
        config: Config,
        udp: Option<UdpSocket>,
        ice_tcp: IceTcpSocket,
    ) -> Result<Self, StartError> {
        let metrics = Arc::new(Metrics::new());
        let cluster = match config.cluster_config() {
            Some(settings) => Some(Cluster::connect(settings, metrics.cluster.clone()).await?),
            None => None,
        };
        Self::build(config, udp, ice_tcp, metrics, cluster)
    }

    fn build(
        config: Config,
        udp: Option<UdpSocket>,
        ice_tcp: IceTcpSocket,
        metrics: Arc<Metrics>,
        cluster: Option<Cluster>,
    ) -> Result<Self, StartError> {
        let heartbeats = Heartbeats::default();
        let health = Health::new(heartbeats.clone(), config.stall_timeout());
        let placement = cluster.clone().map(|c| Arc::new(c) as Arc<dyn Placement>);
        let mut media = media_plane(&config, udp, &metrics, heartbeats);
        let mut ice_tcp_on_web = None;
        let tcp_bound = match &ice_tcp {
            IceTcpSocket::Off => None,
            IceTcpSocket::SharedWithWeb(addr) => Some(*addr),
            IceTcpSocket::Own(listener) => listener.local_addr().ok(),
        };
        if let Some(bound) = tcp_bound {
            let (plane, tcp) = media.with_ice_tcp(bound, config.external_ip);
            media = plane;
            match (ice_tcp, tcp) {
                (IceTcpSocket::Own(listener), Some(tcp)) => tcp.serve_listener(listener),
                (IceTcpSocket::SharedWithWeb(_), tcp) => ice_tcp_on_web = tcp,
                _ => {}
            }
        }
        let rooms = rooms_on(&config, media, &metrics, placement);
        let endpoint = match &cluster {
            Some(cluster) => Endpoint::with_pubsub(RedisPubSub::start(cluster)),
            None => Endpoint::new(),
        }
        .with_metrics(metrics.sockets.clone());
        if let Some(cluster) = &cluster {
            cluster.start(rooms.clone());
        }
        let ops = crate::metrics::routes(metrics.clone(), health.clone())
            .or(cluster_route(cluster.clone(), rooms.clone()))
            .unify();
        let filter = ops
            .or(routes(&config, &endpoint, rooms.clone())?)
            .unify()
            .boxed();
        let tls = config.web_config().tls.acceptor()?;
        Ok(App {
            config,
            rooms,
            endpoint,
            filter,
            tls,
            metrics,
            health,
            cluster,
            ice_tcp_on_web,
        })
    }

    /// The server's metrics (what `GET /metrics` exports).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The room registry (a cheap handle): lets tests and operators see which rooms run.
    pub fn rooms(&self) -> RoomRegistry {
        self.rooms.clone()
    }

    /// The URL clients use for `addr`: `https://…` when TLS is on.
    pub fn url_for(&self, addr: std::net::SocketAddr) -> String {
        crate::web::serve::url_for(addr, self.tls.is_some())
    }

    /// Serves on `listener` until `shutdown` resolves, then drains sockets (1012).
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) {
        let drain = self.endpoint.clone();
        let drain_timeout = self.config.drain_timeout();
        let drain_delay = self.config.drain_delay();
        let health = self.health.clone();
        let (cluster, rooms) = (self.cluster.clone(), self.rooms.clone());
        let shutdown = async move {
            shutdown.await;
            // From here until exit /readyz answers 503; the listener stays open meanwhile.
            health.start_draining();
            // Clustered: the rooms are released first, so the peers told to reconnect below
            // are placed on the other nodes at once.
            if let Some(cluster) = cluster {
                cluster.leave(&rooms).await;
            }
            if !drain_delay.is_zero() {
                log::info!("shutting down: not ready; sockets close in {drain_delay:?}");
                tokio::time::sleep(drain_delay).await;
            }
            log::info!("shutting down: draining {} sockets", drain.live_sockets());
            drain.drain();
            drain.wait_drained(drain_timeout).await;
        };
        let ice_tcp = self.ice_tcp_on_web.map(|tcp| -> IceTcpHandoff {
            Arc::new(move |io, remote, local| tcp.accept(io, remote, local))
        });
        crate::web::serve_shared(
            self.filter.with(warp::log("videoroom::http")),
            listener,
            self.tls,
            self.config.serve_limits(),
            ice_tcp,
            shutdown,
        )
        .await;
    }
}

/// The room registry for `config`, sharing the media socket `udp` (no media plane if `None`).
/// Must run inside the tokio runtime (it starts the UDP mux task).
pub fn room_registry(config: &Config, udp: Option<UdpSocket>) -> RoomRegistry {
    let metrics = Metrics::new();
    let media = media_plane(config, udp, &metrics, Heartbeats::default());
    rooms_on(config, media, &metrics, None)
}

/// `GET /cluster`: this node, the live nodes and Redis's state as JSON (one node: Redis
/// `"off"`, no other nodes).
fn cluster_route(cluster: Option<Cluster>, rooms: RoomRegistry) -> BoxedFilter<(Response,)> {
    warp::path("cluster")
        .and(warp::path::end())
        .and(warp::get())
        .map(move || {
            let status = match &cluster {
                Some(cluster) => cluster.status(&rooms),
                None => serde_json::json!({
                    "node": {
                        "rooms": rooms.room_count(),
                        "peers": rooms.metrics().peers.get(),
                    },
                    "nodes": [],
                    "redis": "off",
                }),
            };
            warp::reply::json(&status).into_response()
        })
        .boxed()
}

/// The media plane for `config` on the socket `udp` (none: signalling only), counting in
/// `metrics`, with the UDP mux and every room's media loop registered in `heartbeats` (the
/// liveness probe's list).
fn media_plane(
    config: &Config,
    udp: Option<UdpSocket>,
    metrics: &Metrics,
    heartbeats: Heartbeats,
) -> MediaPlane {
    let sfu = SfuConfig {
        metrics: metrics.media.clone(),
        ..SfuConfig::default()
    };
    match udp {
        Some(socket) => MediaPlane::on_watched_socket(socket, config.external_ip, sfu, heartbeats),
        None => MediaPlane::new(sfu, None),
    }
    .with_limits(config.engine_limits())
}

/// The room registry for `config` on `media`, placed by `placement` when clustered.
fn rooms_on(
    config: &Config,
    media: MediaPlane,
    metrics: &Metrics,
    placement: Option<Arc<dyn Placement>>,
) -> RoomRegistry {
    let fault_injection = std::env::var_os(FAULT_INJECTION_ENV).is_some_and(|v| v == "1");
    if fault_injection {
        log::warn!("{FAULT_INJECTION_ENV}=1: test-only fault hooks are on (never in production)");
    }
    let rooms = RoomsConfig {
        empty_grace: Duration::from_secs_f64(config.room_grace_secs.max(0.0)),
        max_peers: config.max_peers_per_room.max(1),
        max_rooms: config.max_rooms,
        metrics: metrics.rooms.clone(),
        fault_injection,
        reconnect_grace: config.reconnect_grace(),
        placement,
        ..RoomsConfig::default()
    };
    RoomRegistry::new(rooms, media)
}
