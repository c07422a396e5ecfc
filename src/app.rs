//! Wiring: builds the routes and runs the server until shutdown.
//!
//! [`routes`] composes everything served over HTTP; today that is the Phoenix socket at
//! `/socket` (WebSocket + LongPoll) with the example `echo:*` channel. To extend: add channel
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

/// Every HTTP route of the server.
pub fn routes(config: &Config, endpoint: &Endpoint) -> BoxedFilter<(Response,)> {
    let socket = SocketMount::new(SOCKET_PATH, socket_router()).settings(config.socket_settings());
    endpoint.mount(socket)
}

/// Serves the app on `listener` until `shutdown` resolves, then drains sockets (1012).
/// `udp` is the media socket (used once the SFU is wired in).
pub async fn run(
    config: Config,
    listener: TcpListener,
    udp: Option<UdpSocket>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let _ = udp;
    let endpoint = Endpoint::new();
    let filter = routes(&config, &endpoint);
    let drain = endpoint.clone();
    let drain_timeout = config.drain_timeout();
    warp::serve(filter.with(warp::log("videoroom::http")))
        .incoming(listener)
        .graceful(async move {
            shutdown.await;
            log::info!("shutting down: draining {} sockets", drain.live_sockets());
            drain.drain();
            drain.wait_drained(drain_timeout).await;
        })
        .run()
        .await;
}
