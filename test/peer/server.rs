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

/// The real server binary (`target/…/videoroom`) in a child process, on free loopback ports
/// (`--port 0 --udp-port 0`; the port is read from its "listening on" line); its stderr (the
/// log) is kept for inspection. Killed when dropped.
pub struct ServerProcess {
    /// HTTP address.
    pub http: SocketAddr,
    child: std::process::Child,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl ServerProcess {
    /// Starts `binary` with `args` (after the address flags) and the environment `env`
    /// (`RUST_LOG` defaults to `warn`); waits until it listens.
    pub fn start(binary: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        use std::io::{BufRead, BufReader, Read};
        use std::process::{Command, Stdio};
        let mut command = Command::new(binary);
        command
            .args(["--bind", "127.0.0.1", "--port", "0", "--udp-port", "0"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("the server binary starts");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut stderr = child.stderr.take().expect("piped stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&chunk[..n]).into_owned();
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_str(&text);
            }
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("videoroom listening on http://") {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("the server never said where it listens")
            });
        let http = addr.parse().expect("a socket address");
        ServerProcess { http, child, log }
    }

    /// The phoenix.js WebSocket URL (`vsn=2.0.0`).
    pub fn socket_url(&self) -> String {
        format!("ws://{}/socket/websocket?vsn=2.0.0", self.http)
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// Everything the server wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
