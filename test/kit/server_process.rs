//! The real server binary (`target/…/videoroom`) as a child process, and readers of its
//! `/metrics`: shared by the fault tests, the operations-endpoint tests, the soak, the abuse
//! suite and the socket-memory benchmark, which include this file with `#[path]`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

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
    /// The `videoroom` binary of the same build as the running example
    /// (`target/<profile>/videoroom` next to `target/<profile>/examples/`).
    pub fn binary_beside_example() -> std::path::PathBuf {
        let exe = std::env::current_exe().expect("current exe");
        exe.parent()
            .and_then(|examples| examples.parent())
            .map(|dir| dir.join("videoroom"))
            .expect("target dir")
    }

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

    /// How the process ended, once it has.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The process id (for signals and `/proc/<pid>/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its resident memory in MiB (`VmRSS` of `/proc/<pid>/status`; 0 once it is gone).
    pub fn rss_mib(&self) -> f64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    }

    /// How many bytes of log the server has written so far (a mark for [`Self::log_since`]).
    pub fn log_len(&self) -> usize {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The log written since the mark `from` (a [`Self::log_len`]).
    pub fn log_since(&self, from: usize) -> String {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.get(from.min(log.len())..)
            .unwrap_or_default()
            .to_owned()
    }

    /// `(status, body)` of `GET <path>`, or `None` if nothing answered.
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        let response = reqwest::get(self.url(path)).await.ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.ok()?))
    }

    /// The `/metrics` exposition (asserts a 200).
    pub async fn metrics(&self) -> String {
        let (status, text) = self.get("/metrics").await.expect("/metrics answers");
        assert_eq!(status, 200, "/metrics");
        text
    }

    /// The value of `series` in `/metrics`; 0 if absent (a labelled counter appears once it has
    /// counted something).
    pub async fn metric(&self, series: &str) -> f64 {
        sample(&self.metrics().await, series).unwrap_or(0.0)
    }

    /// Polls `series` until it equals `want` (gauges move when a room has handled an event, a
    /// moment after the clients saw its effect); panics after 20 s.
    pub async fn metric_becomes(&self, series: &str, want: f64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let value = self.metric(series).await;
            if value == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{series} is {value}, expected {want}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The value of one series (`name` or `name{labels}`, written as exported) in a Prometheus text
/// exposition.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The sum over every label set of metric `name`, or `None` when no series of it is exported.
pub fn family_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        if let Some(value) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *found.get_or_insert(0.0) += value;
        }
    }
    found
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
