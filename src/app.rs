//! Wiring: builds the routes and runs the server until shutdown.
//!
//! [`routes`] composes everything served over HTTP; today that is the Phoenix socket at
//! `/socket` (WebSocket + LongPoll) with the example `echo:*` channel, then the web app
//! (pages, static files; [`crate::web`]), over HTTPS when TLS is configured. To extend: add channel
//! routes in [`socket_router`] (e.g. the room channel on `room:*`) and more warp filters in
//! [`routes`] (pages, static files). [`run`] serves them on a listener until `shutdown`
//! resolves, then drains: every socket is closed with 1012 so clients reconnect elsewhere.

use crate::config::Config;
use crate::phoenix::transport::{Endpoint, SocketMount};
use crate::phoenix::{EchoChannel, Router};
use std::future::Future;
use tokio::net::{TcpListener, UdpSocket};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Response;

/// Mount path of the Phoenix socket (`/socket/websocket`, `/socket/longpoll`).
pub const SOCKET_PATH: &str = "/socket";

/// The channel routes of the `/socket` socket.
pub fn socket_router() -> Router {
    Router::new().channel("echo:*", || EchoChannel)
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
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
) -> Result<BoxedFilter<(Response,)>, StartError> {
    let socket = SocketMount::new(SOCKET_PATH, socket_router()).settings(config.socket_settings());
    let web = crate::web::routes(&config.web_config())?;
    Ok(endpoint.mount(socket).or(web).unify().boxed())
}

/// A server ready to run: routes built, certificate loaded, nothing listening yet.
pub struct App {
    config: Config,
    endpoint: Endpoint,
    filter: BoxedFilter<(Response,)>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl App {
    /// Builds the routes and loads (or generates) the TLS certificate; fails on bad settings.
    pub fn new(config: Config) -> Result<Self, StartError> {
        let endpoint = Endpoint::new();
        let filter = routes(&config, &endpoint)?;
        let tls = config.web_config().tls.acceptor()?;
        Ok(App {
            config,
            endpoint,
            filter,
            tls,
        })
    }

    /// The URL clients use for `addr`: `https://…` when TLS is on.
    pub fn url_for(&self, addr: std::net::SocketAddr) -> String {
        crate::web::tls::url_for(addr, self.tls.is_some())
    }

    /// Serves on `listener` until `shutdown` resolves, then drains sockets (1012).
    /// `udp` is the media socket (used once the SFU is wired in).
    pub async fn run(
        self,
        listener: TcpListener,
        udp: Option<UdpSocket>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) {
        let _ = udp;
        let drain = self.endpoint.clone();
        let drain_timeout = self.config.drain_timeout();
        let shutdown = async move {
            shutdown.await;
            log::info!("shutting down: draining {} sockets", drain.live_sockets());
            drain.drain();
            drain.wait_drained(drain_timeout).await;
        };
        crate::web::serve(
            self.filter.with(warp::log("videoroom::http")),
            listener,
            self.tls,
            shutdown,
        )
        .await;
    }
}

/// Builds the app from `config` and serves it on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    udp: Option<UdpSocket>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    App::new(config)?.run(listener, udp, shutdown).await;
    Ok(())
}
