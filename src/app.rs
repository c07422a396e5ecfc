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
use crate::rtc::turn::IceServers;
use crate::web::IceTcpHandoff;
use crate::web::TlsIdentity;
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
    /// A TURN port could not be bound.
    #[error("TURN: {0}")]
    Turn(#[from] std::io::Error),
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
        let identity = config.web_config().tls.identity()?;
        let media_addr = udp.as_ref().and_then(|u| u.local_addr().ok());
        let ice_servers = match media_addr {
            Some(media) if config.turn => Some(turn::start(
                &config,
                media,
                identity.as_ref(),
                &metrics.turn,
            )?),
            _ => None,
        };
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
        let extras = RoomExtras {
            placement,
            ice_servers,
        };
        let rooms = rooms_on(&config, media, &metrics, extras);
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
        let tls = identity.map(TlsIdentity::acceptor).transpose()?;
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
    rooms_on(config, media, &metrics, RoomExtras::default())
}

/// What the rooms get beyond the settings: the cluster's placement and the TURN servers.
#[derive(Default)]
struct RoomExtras {
    placement: Option<Arc<dyn Placement>>,
    ice_servers: Option<IceServers>,
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
    extras: RoomExtras,
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
        placement: extras.placement,
        ice_servers: extras.ice_servers,
        ..RoomsConfig::default()
    };
    RoomRegistry::new(rooms, media)
}

/// Starting the embedded TURN server from the settings.
mod turn {
    use std::net::{IpAddr, SocketAddr};
    use std::time::Duration;

    use super::StartError;
    use crate::config::Config;
    use crate::rtc::metrics::TurnMetrics;
    use crate::rtc::turn::server::{SfuAddr, TurnServerConfig};
    use crate::rtc::turn::shell::{RelaySettings, TurnSockets};
    use crate::rtc::turn::{IceServers, TurnSecret};
    use crate::rtc::udp::candidate_addrs;
    use crate::web::TlsIdentity;

    /// Binds the TURN ports of `config` (TLS with `tls`, when HTTPS is on) and starts the
    /// server relaying to the media socket `media`; what joiners are told about it.
    pub(super) fn start(
        config: &Config,
        media: SocketAddr,
        tls: Option<&TlsIdentity>,
        metrics: &TurnMetrics,
    ) -> Result<IceServers, StartError> {
        let bind = |port: u16| SocketAddr::new(config.bind, port);
        let udp = std_udp(bind(config.turn_port))?;
        let tcp = std_tcp(bind(config.turn_port))?;
        let tls = match tls {
            Some(identity) => Some((
                std_tcp(bind(config.turn_tls_port))?,
                identity.turn_acceptor()?,
            )),
            None => None,
        };
        let port = |l: &tokio::net::TcpListener| l.local_addr().ok().map(|a| a.port());
        let udp_port = udp.local_addr().ok().map(|a| a.port());
        let (tcp_port, tls_port) = (port(&tcp), tls.as_ref().and_then(|(l, _)| port(l)));
        let secret_bytes = match &config.turn_secret {
            Some(secret) if !secret.is_empty() => secret.as_bytes().to_vec(),
            _ => rand::random::<[u8; 32]>().to_vec(),
        };
        let secret = TurnSecret::new(secret_bytes).ok_or_else(|| {
            StartError::Turn(std::io::Error::other("no crypto provider for TURN"))
        })?;
        let sfu = sfu_addrs(media, config.external_ip);
        let nonce: String = rand::random::<[u8; 12]>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let server = TurnServerConfig {
            realm: "videoroom".into(),
            secret: secret.clone(),
            nonce,
            sfu: sfu.clone(),
            max_allocations: config.turn_max_allocations,
            max_allocations_per_user: config.turn_max_allocations_per_peer,
        };
        // Bound to one address, the relay is seen by the SFU at exactly the relayed address it
        // advertises (bound to every interface, the kernel would pick the source per SFU
        // address, and the browser would see a peer-reflexive candidate instead of its relay).
        let relay_ip = relayed_ip(media, &sfu);
        let relay = RelaySettings {
            bind_ip: relay_ip,
            advertised_ip: relay_ip,
        };
        log::info!(
            "turn: udp {udp_port:?} tcp {tcp_port:?} tls {tls_port:?}, relaying to {:?}",
            sfu.iter().map(|s| s.advertised).collect::<Vec<_>>()
        );
        let sockets = TurnSockets {
            udp: Some(udp),
            tcp: Some(tcp),
            tls,
        };
        crate::rtc::turn::shell::spawn(sockets, server, relay, metrics.clone());
        Ok(IceServers {
            secret,
            ttl: Duration::try_from_secs_f64(config.turn_credential_ttl_secs.max(1.0))
                .unwrap_or(Duration::from_secs(86400)),
            host: config.turn_host.clone().filter(|h| !h.trim().is_empty()),
            udp_port,
            tcp_port,
            tls_port,
        })
    }

    /// The SFU's advertised addresses and where the relay reaches each: itself when it is a
    /// local address; `EXTERNAL_IP` (not on this host behind a 1:1 NAT) through a local one.
    fn sfu_addrs(media: SocketAddr, external_ip: Option<IpAddr>) -> Vec<SfuAddr> {
        let local = candidate_addrs(media, None);
        candidate_addrs(media, external_ip)
            .into_iter()
            .map(|advertised| {
                let actual = if local.contains(&advertised) {
                    advertised
                } else {
                    local
                        .iter()
                        .find(|l| l.is_ipv4() == advertised.is_ipv4())
                        .copied()
                        .unwrap_or(advertised)
                };
                SfuAddr { advertised, actual }
            })
            .collect()
    }

    /// The IP relay sockets bind and advertise: the media socket's, or (bound to every
    /// interface) the first local non-loopback address of the SFU.
    fn relayed_ip(media: SocketAddr, sfu: &[SfuAddr]) -> IpAddr {
        if !media.ip().is_unspecified() {
            return media.ip();
        }
        sfu.iter()
            .map(|s| s.actual.ip())
            .find(|ip| !ip.is_loopback())
            .or_else(|| sfu.first().map(|s| s.advertised.ip()))
            .unwrap_or(media.ip())
    }

    fn std_udp(addr: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
        let socket = std::net::UdpSocket::bind(addr)
            .map_err(|e| std::io::Error::new(e.kind(), format!("UDP {addr}: {e}")))?;
        socket.set_nonblocking(true)?;
        tokio::net::UdpSocket::from_std(socket)
    }

    fn std_tcp(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|e| std::io::Error::new(e.kind(), format!("TCP {addr}: {e}")))?;
        listener.set_nonblocking(true)?;
        tokio::net::TcpListener::from_std(listener)
    }
}
