//! Starts the real videoroom server in-process for end-to-end tests: HTTP/WebSocket on
//! 127.0.0.1:0 and the media UDP socket on 127.0.0.1:0, so host candidates are loopback only.
//! It runs the app's own `App` (registry, routes, drain), keeping its room registry for inspection.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use videoroom::config::Config;
use videoroom::room::RoomRegistry;

/// A running server; shut down (drained) on drop.
pub struct TestServer {
    /// HTTP address.
    pub http: SocketAddr,
    /// Media UDP address.
    pub udp: SocketAddr,
    rooms: RoomRegistry,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl TestServer {
    /// Starts a server with default settings.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// Starts a server whose rooms admit at most `max_peers` peers.
    pub async fn start_with(max_peers: Option<usize>) -> Self {
        let _ = env_logger::builder().is_test(true).try_init();
        let mut config = Config {
            bind: [127, 0, 0, 1].into(),
            port: 0,
            max_peers_per_room: max_peers
                .unwrap_or(videoroom::room::RoomsConfig::DEFAULT_MAX_PEERS),
            // Short, so "the room is gone" is observable quickly; still a real grace period.
            room_grace_secs: 0.5,
            ..Config::default()
        };
        config.udp_port = Some(0);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind tcp");
        let udp_socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
        let http = listener.local_addr().expect("tcp addr");
        let udp = udp_socket.local_addr().expect("udp addr");
        let (shutdown, stop) = oneshot::channel::<()>();
        let app = videoroom::app::App::new(config, Some(udp_socket)).expect("app starts");
        let rooms = app.rooms();
        let task = tokio::spawn(app.run(listener, async move {
            let _ = stop.await;
        }));
        Self {
            http,
            udp,
            rooms,
            shutdown: Some(shutdown),
            task,
        }
    }

    /// The running rooms' ids (from the room registry).
    pub fn room_ids(&self) -> Vec<String> {
        self.rooms.room_ids()
    }

    /// The phoenix.js WebSocket URL (`vsn=2.0.0`).
    pub fn socket_url(&self) -> String {
        format!("ws://{}/socket/websocket?vsn=2.0.0", self.http)
    }

    /// Stops the server and waits for it (bounded by the drain timeout).
    pub async fn stop(mut self) {
        match self.shutdown.take() {
            Some(shutdown) => {
                let _ = shutdown.send(());
            }
            None => self.task.abort(),
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.task).await;
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        } else {
            self.task.abort();
        }
    }
}
