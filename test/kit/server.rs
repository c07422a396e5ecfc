//! In-process servers for the integration tests, on ephemeral loopback ports: [`start_server`]
//! runs the real [`App`] (every route, the room registry, the media UDP socket, the drain) with
//! settings a test may override, and [`serve`] runs any other route set (the Phoenix conformance
//! fixture, the web routes alone) through the same serving code the app uses
//! (`videoroom::web::serve_with`).
//!
//! This file is self-contained (no `super::`), so the headless peer can include it by `#[path]`.
#![allow(dead_code)] // each test binary uses a different subset

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use videoroom::app::{App, IceTcpSocket};
use videoroom::config::{Config, IceTcpPort};
use videoroom::phoenix::transport::Endpoint;
use videoroom::room::{Admission, RoomRegistry, RoomsConfig};
use videoroom::rtc::driver::MediaPlane;
use videoroom::rtc::sfu::SfuConfig;
use videoroom::web::ServeLimits;
use warp::filters::BoxedFilter;
use warp::reply::Response;

/// The test settings: the defaults on 127.0.0.1 with free ports, and a short room grace
/// (0.5 s) so "the room is gone" is observable quickly; override fields as needed.
pub fn test_config() -> Config {
    Config {
        bind: [127, 0, 0, 1].into(),
        port: 0,
        udp_port: Some(0),
        // Off unless a test asks for it: `None` shares the web port, another port gets a
        // listener of its own (on a free port).
        ice_tcp_port: Some(0),
        room_grace_secs: 0.5,
        ..Config::default()
    }
}

/// A running server; shut down (drained) on drop.
pub struct Server {
    /// HTTP address.
    pub http: SocketAddr,
    /// Media UDP address (the app's only UDP host candidate).
    pub udp: SocketAddr,
    /// The ICE-TCP address (the web address when shared), if ICE-TCP is on.
    pub ice_tcp: Option<SocketAddr>,
    /// The server's rooms, to observe their lifecycle.
    pub rooms: RoomRegistry,
    served: Served,
}

/// Starts the real app with `config` (its `bind`, `port`, `udp_port` and a dedicated
/// `ice_tcp_port` are ignored: the sockets are bound on 127.0.0.1 with free ports).
pub async fn start_server(config: Config) -> Server {
    let _ = env_logger::builder().is_test(true).try_init();
    let (listener, udp_socket) = bind_loopback().await;
    let udp = udp_socket.local_addr().expect("udp addr");
    let http = listener.local_addr().expect("tcp addr");
    let (ice_tcp, ice_tcp_addr) = match config.ice_tcp(http) {
        IceTcpPort::Off => (IceTcpSocket::Off, None),
        IceTcpPort::Shared => (IceTcpSocket::SharedWithWeb(http), Some(http)),
        IceTcpPort::Own(_) => {
            let own = TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind ice-tcp");
            let addr = own.local_addr().expect("ice-tcp addr");
            (IceTcpSocket::Own(own), Some(addr))
        }
    };
    let app = App::with_ice_tcp(config, Some(udp_socket), ice_tcp).expect("app starts");
    let rooms = app.rooms();
    let served = Served::spawn(listener, |listener, stop| app.run(listener, stop));
    Server {
        ice_tcp: ice_tcp_addr,
        ..Server::new(served, udp, rooms)
    }
}

/// [`start_server`], with rooms that ask `admission` whether a joiner becomes a member. The
/// app has no setting for an admission hook (it is the library's extension point), so these
/// rooms are built here from `config` and served with the app's own routes
/// (`videoroom::app::routes`).
pub async fn start_server_with_admission(config: Config, admission: Arc<dyn Admission>) -> Server {
    let _ = env_logger::builder().is_test(true).try_init();
    let (listener, udp_socket) = bind_loopback().await;
    let udp = udp_socket.local_addr().expect("udp addr");
    let media = MediaPlane::on_socket(udp_socket, None, SfuConfig::default())
        .with_limits(config.engine_limits());
    let rooms_config = RoomsConfig {
        empty_grace: Duration::from_secs_f64(config.room_grace_secs),
        max_peers: config.max_peers_per_room,
        max_rooms: config.max_rooms,
        admission,
        ..RoomsConfig::default()
    };
    let rooms = RoomRegistry::new(rooms_config, media);
    let endpoint = Endpoint::new();
    let routes = videoroom::app::routes(&config, &endpoint, rooms.clone()).expect("routes");
    let served = serve_on(
        listener,
        routes,
        None,
        Some(endpoint),
        config.serve_limits(),
    );
    Server::new(served, udp, rooms)
}

async fn bind_loopback() -> (TcpListener, UdpSocket) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind tcp");
    let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
    (listener, udp)
}

impl Server {
    fn new(served: Served, udp: SocketAddr, rooms: RoomRegistry) -> Server {
        Server {
            http: served.addr,
            udp,
            ice_tcp: None,
            rooms,
            served,
        }
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// The phoenix.js WebSocket URL (`vsn=2.0.0`).
    pub fn socket_url(&self) -> String {
        format!("ws://{}/socket/websocket?vsn=2.0.0", self.http)
    }

    /// The running rooms' ids (from the room registry).
    pub fn room_ids(&self) -> Vec<String> {
        self.rooms.room_ids()
    }

    /// Stops the server (drain) and waits for it.
    pub async fn stop(self) {
        self.served.stop().await;
    }
}

/// Routes served on a loopback port until stopped (or dropped).
pub struct Served {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    /// How long [`Served::stop`] may take.
    stop_within: Duration,
}

/// Serves `routes` on 127.0.0.1 (free port) with the default limits, over TLS when `tls` is
/// set; on stop, drains `endpoint`'s sockets (1012) like the app does.
pub async fn serve(
    routes: BoxedFilter<(Response,)>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    endpoint: Option<Endpoint>,
) -> Served {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind tcp");
    let mut served = serve_on(listener, routes, tls, endpoint, ServeLimits::default());
    served.stop_within = Duration::from_secs(5);
    served
}

fn serve_on(
    listener: TcpListener,
    routes: BoxedFilter<(Response,)>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    endpoint: Option<Endpoint>,
    limits: ServeLimits,
) -> Served {
    Served::spawn(listener, move |listener, stop| async move {
        let drain = async move {
            stop.await;
            if let Some(endpoint) = endpoint {
                endpoint.drain();
                endpoint.wait_drained(Duration::from_secs(5)).await;
            }
        };
        videoroom::web::serve_with(routes, listener, tls, limits, drain).await
    })
}

impl Served {
    /// Runs `run(listener, stop)` in a task; `stop` resolves when [`Served::stop`] is called or
    /// this is dropped.
    fn spawn<F, Fut>(listener: TcpListener, run: F) -> Served
    where
        F: FnOnce(TcpListener, Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let addr = listener.local_addr().expect("tcp addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let stopped = Box::pin(async move {
            let _ = stopped.await;
        });
        let task = tokio::spawn(run(listener, stopped));
        Served {
            addr,
            stop: Some(stop),
            task,
            // The app's drain waits up to its drain timeout (5 s) for sockets to close.
            stop_within: Duration::from_secs(10),
        }
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Signals shutdown and waits until the server has stopped (panics if that takes more
    /// than 5 s for [`serve`], 10 s for the app, or the server task panicked).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let within = self.stop_within;
        tokio::time::timeout(within, &mut self.task)
            .await
            .unwrap_or_else(|_| panic!("the server stops within {within:?} after the signal"))
            .expect("the server task did not panic");
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
