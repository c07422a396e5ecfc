//! Starts the real videoroom server in-process for end-to-end tests: HTTP/WebSocket on
//! 127.0.0.1:0 and the media UDP socket on 127.0.0.1:0, so host candidates are loopback only.

use std::net::SocketAddr;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use videoroom::config::Config;

/// A running server; shut down (drained) on drop.
pub struct TestServer {
    /// HTTP address.
    pub http: SocketAddr,
    /// Media UDP address.
    pub udp: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl TestServer {
    /// Starts a server with default settings.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// Starts a server whose rooms admit at most `max_peers` peers.
    ///
    /// `VIDEOROOM_E2E_BACKEND=engine` runs the engine stand-in (`engine_server`) instead of
    /// `app::run`, for as long as the room layer is not wired into the app.
    pub async fn start_with(max_peers: Option<usize>) -> Self {
        let _ = env_logger::builder().is_test(true).try_init();
        if std::env::var("VIDEOROOM_E2E_BACKEND").as_deref() == Ok("engine") {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind tcp");
            let udp_socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
            let http = listener.local_addr().expect("tcp addr");
            let udp = udp_socket.local_addr().expect("udp addr");
            let task = tokio::spawn(super::engine_server::serve(listener, udp_socket, max_peers));
            return Self {
                http,
                udp,
                shutdown: None,
                task,
            };
        }
        let configure = |config: &mut Config| {
            // The room layer's admission setting is wired here once it exists.
            let _ = (config, max_peers);
        };
        let mut config = Config {
            bind: [127, 0, 0, 1].into(),
            port: 0,
            ..Config::default()
        };
        configure(&mut config);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind tcp");
        let udp_socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
        let http = listener.local_addr().expect("tcp addr");
        let udp = udp_socket.local_addr().expect("udp addr");
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(videoroom::app::run(
            config,
            listener,
            Some(udp_socket),
            async {
                let _ = stop.await;
            },
        ));
        Self {
            http,
            udp,
            shutdown: Some(shutdown),
            task,
        }
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
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), &mut self.task).await;
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
