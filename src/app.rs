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
use crate::room::{MaxPeers, RoomRegistry, RoomsConfig};
use crate::rtc::sfu::SfuConfig;
use crate::rtc::udp::{UdpMux, candidate_addrs};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Response;

/// Mount path of the Phoenix socket (`/socket/websocket`, `/socket/longpoll`).
pub const SOCKET_PATH: &str = "/socket";

/// The channel routes of the `/socket` socket: `room:*` (rooms from `rooms`) and `echo:*`.
pub fn socket_router(rooms: RoomRegistry) -> Router {
    crate::room::mount(Router::new().channel("echo:*", || EchoChannel), rooms)
}

/// Every HTTP route of the server.
pub fn routes(
    config: &Config,
    endpoint: &Endpoint,
    rooms: RoomRegistry,
) -> BoxedFilter<(Response,)> {
    let socket =
        SocketMount::new(SOCKET_PATH, socket_router(rooms)).settings(config.socket_settings());
    endpoint.mount(socket)
}

/// The room registry for `config`, sharing the media socket `udp` (no media plane if `None`).
/// Must run inside the tokio runtime (it starts the UDP mux task).
pub fn room_registry(config: &Config, udp: Option<UdpSocket>) -> RoomRegistry {
    let mux = udp.map(UdpMux::spawn);
    let local_addrs = match mux.as_ref().map(|m| m.local_addr()) {
        Some(Ok(bound)) => candidate_addrs(bound, config.external_ip),
        Some(Err(e)) => {
            log::error!("media socket has no local address: {e}");
            Vec::new()
        }
        None => Vec::new(),
    };
    log::info!("media: host candidates {local_addrs:?}");
    let rooms = RoomsConfig {
        sfu: SfuConfig {
            local_addrs,
            ..SfuConfig::default()
        },
        empty_grace: Duration::from_secs_f64(config.room_grace_secs.max(0.0)),
        admission: Arc::new(MaxPeers {
            max_peers: (config.max_peers_per_room > 0).then_some(config.max_peers_per_room),
        }),
        ..RoomsConfig::default()
    };
    RoomRegistry::new(rooms, mux)
}

/// Serves the app on `listener` until `shutdown` resolves, then drains sockets (1012).
/// `udp` is the media socket shared by every room (`None`: signalling only, no media).
pub async fn run(
    config: Config,
    listener: TcpListener,
    udp: Option<UdpSocket>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let rooms = room_registry(&config, udp);
    let endpoint = Endpoint::new();
    let filter = routes(&config, &endpoint, rooms);
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
