//! Server settings: flags and environment variables with documented defaults.
//!
//! Every setting is a flag and an environment variable (`--port` / `SERVER_PORT`, …);
//! `videoroom --help` lists them. Other modules add their own settings here.

use crate::phoenix::transport::{CheckOrigin, Settings};
use crate::web::{TlsMode, WebConfig};
use clap::Parser;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// The media UDP port when neither `--udp-port` nor `--port-range` is given.
pub const DEFAULT_UDP_PORT: u16 = 50000;

/// Parses the Elixir demo's `PORT_RANGE` value, `FIRST-LAST` (e.g. `50000-59999`).
fn parse_port_range(value: &str) -> Result<(u16, u16), String> {
    let (first, last) = value
        .split_once('-')
        .ok_or_else(|| format!("expected FIRST-LAST, got {value:?}"))?;
    let parse = |p: &str| {
        p.trim()
            .parse::<u16>()
            .map_err(|e| format!("bad port {p:?} in {value:?}: {e}"))
    };
    let (first, last) = (parse(first)?, parse(last)?);
    if first > last {
        return Err(format!("empty port range {value:?}"));
    }
    Ok((first, last))
}

/// All settings of the `videoroom` binary.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "videoroom",
    version,
    about = "Phoenix-compatible videoroom server"
)]
pub struct Config {
    /// TCP port for HTTP, WebSocket and LongPoll.
    #[arg(long = "port", env = "SERVER_PORT", default_value_t = 4000)]
    pub port: u16,

    /// Address to bind.
    #[arg(long = "bind", env = "BIND_ADDRESS", default_value = "0.0.0.0")]
    pub bind: IpAddr,

    /// Close a WebSocket after this many seconds without a frame from the client (close 1001).
    #[arg(
        long = "idle-timeout",
        env = "IDLE_TIMEOUT_SECS",
        default_value_t = 60.0
    )]
    pub idle_timeout_secs: f64,

    /// Allowed browser origins, comma-separated (`https://a.com,//*.b.com`); `*` allows every
    /// origin; empty (default) allows only the request's own host.
    #[arg(
        long = "check-origin",
        env = "CHECK_ORIGIN",
        default_value = "",
        value_delimiter = ','
    )]
    pub check_origin: Vec<String>,

    /// Largest WebSocket message accepted, in bytes (bigger: close 1009).
    #[arg(long = "max-frame-size", env = "MAX_FRAME_SIZE", default_value_t = 8 * 1024 * 1024)]
    pub max_frame_size: usize,

    /// Maximum channels joined per socket.
    #[arg(long = "max-channels", env = "MAX_CHANNELS", default_value_t = 100)]
    pub max_channels: usize,

    /// LongPoll window in seconds (a session dies after 1.5 windows without a poll).
    #[arg(
        long = "longpoll-window",
        env = "LONGPOLL_WINDOW_SECS",
        default_value_t = 10.0
    )]
    pub longpoll_window_secs: f64,

    /// Disable the LongPoll transport.
    #[arg(long = "no-longpoll", env = "NO_LONGPOLL", default_value_t = false)]
    pub no_longpoll: bool,

    /// Frames queued for one client before it is closed as not reading.
    #[arg(
        long = "outbound-queue",
        env = "OUTBOUND_QUEUE",
        default_value_t = 1024
    )]
    pub outbound_queue: usize,

    /// UDP port of the media plane: one socket serves every peer of every room
    /// (default: the first port of `--port-range`, else 50000).
    #[arg(long = "udp-port", env = "UDP_PORT")]
    pub udp_port: Option<u16>,

    /// The Elixir demo's `PORT_RANGE` (`FIRST-LAST`), accepted for compatibility: we need one
    /// UDP port only, so the range's first port is used unless `--udp-port` is given.
    #[arg(long = "port-range", env = "PORT_RANGE", value_parser = parse_port_range)]
    pub port_range: Option<(u16, u16)>,

    /// A public IP advertised as an extra ICE host candidate (server behind 1:1 NAT).
    #[arg(long = "external-ip", env = "EXTERNAL_IP")]
    pub external_ip: Option<IpAddr>,

    /// Most peers per room (0 = no limit); further joiners get `peerDenied`.
    #[arg(
        long = "max-peers-per-room",
        env = "MAX_PEERS_PER_ROOM",
        default_value_t = 0
    )]
    pub max_peers_per_room: usize,

    /// Seconds an empty room waits for a new peer before it stops.
    #[arg(long = "room-grace", env = "ROOM_GRACE_SECS", default_value_t = 2.0)]
    pub room_grace_secs: f64,

    /// Seconds to wait for sockets to close after Ctrl-C (they are told 1012 first).
    #[arg(
        long = "drain-timeout",
        env = "DRAIN_TIMEOUT_SECS",
        default_value_t = 5.0
    )]
    pub drain_timeout_secs: f64,

    /// Serve this folder (e.g. an Elixir videoroom checkout's `priv/static`) instead of the web
    /// app embedded in the binary.
    #[arg(long = "static-dir", env = "STATIC_DIR")]
    pub static_dir: Option<PathBuf>,

    /// HTTPS: certificate chain (PEM). Needs `--tls-key`.
    #[arg(
        long = "tls-cert",
        env = "TLS_CERT",
        requires = "tls_key",
        conflicts_with = "tls_self_signed"
    )]
    pub tls_cert: Option<PathBuf>,

    /// HTTPS: private key (PEM). Needs `--tls-cert`.
    #[arg(long = "tls-key", env = "TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// HTTPS with a self-signed certificate generated at start (for localhost, 127.0.0.1, ::1
    /// and the names in `--tls-name`).
    #[arg(
        long = "tls-self-signed",
        env = "TLS_SELF_SIGNED",
        default_value_t = false
    )]
    pub tls_self_signed: bool,

    /// Extra host names or addresses for the self-signed certificate, comma-separated.
    #[arg(long = "tls-name", env = "TLS_NAMES", value_delimiter = ',')]
    pub tls_names: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        // Parsing no arguments yields the documented defaults (env vars ignored on purpose:
        // tests build configs without reading the environment).
        Config::parse_from_iter_ignoring_env()
    }
}

impl Config {
    fn parse_from_iter_ignoring_env() -> Self {
        Config {
            port: 4000,
            bind: IpAddr::from([0, 0, 0, 0]),
            idle_timeout_secs: 60.0,
            check_origin: Vec::new(),
            max_frame_size: 8 * 1024 * 1024,
            max_channels: 100,
            longpoll_window_secs: 10.0,
            no_longpoll: false,
            outbound_queue: 1024,
            drain_timeout_secs: 5.0,
            static_dir: None,
            tls_cert: None,
            tls_key: None,
            tls_self_signed: false,
            tls_names: Vec::new(),
            udp_port: None,
            port_range: None,
            external_ip: None,
            max_peers_per_room: 0,
            room_grace_secs: 2.0,
        }
    }

    /// The address to listen on.
    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }

    /// The address of the media UDP socket (same IP as the HTTP listener).
    pub fn udp_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.media_udp_port())
    }

    /// The media UDP port: `--udp-port`, else the first port of `--port-range`, else 50000.
    pub fn media_udp_port(&self) -> u16 {
        self.udp_port
            .or(self.port_range.map(|(first, _)| first))
            .unwrap_or(DEFAULT_UDP_PORT)
    }

    /// How long to wait for sockets to close on shutdown.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.drain_timeout_secs.max(0.0))
    }

    /// The web settings (static files, HTTPS) these flags describe.
    pub fn web_config(&self) -> WebConfig {
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => TlsMode::PemFiles {
                cert: cert.clone(),
                key: key.clone(),
            },
            _ if self.tls_self_signed => TlsMode::self_signed_for(
                self.tls_names
                    .iter()
                    .map(|n| n.trim().to_owned())
                    .filter(|n| !n.is_empty()),
            ),
            _ => TlsMode::Off,
        };
        WebConfig {
            static_dir: self.static_dir.clone(),
            tls,
        }
    }

    /// The Phoenix transport settings these flags describe.
    pub fn socket_settings(&self) -> Settings {
        let origins: Vec<String> = self
            .check_origin
            .iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        let check_origin = if origins.iter().any(|o| o == "*") {
            CheckOrigin::Off
        } else if origins.is_empty() {
            CheckOrigin::SameHost
        } else {
            CheckOrigin::List(origins)
        };
        Settings {
            check_origin,
            idle_timeout: Duration::from_secs_f64(self.idle_timeout_secs.max(0.001)),
            max_frame_size: self.max_frame_size,
            max_channels: self.max_channels,
            longpoll_window: Duration::from_secs_f64(self.longpoll_window_secs.max(0.01)),
            longpoll: !self.no_longpoll,
            outbound_queue: self.outbound_queue,
            ..Settings::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Config;
    use clap::Parser;

    #[test]
    fn defaults_match_the_documented_values() {
        let parsed = Config::try_parse_from(["videoroom"]).expect("no args parse");
        let d = Config::default();
        assert_eq!(parsed.bind, d.bind);
        assert_eq!(d.port, 4000);
        assert_eq!(d.max_channels, 100);
        assert_eq!(d.socket_settings().idle_timeout.as_secs(), 60);
    }

    #[test]
    fn the_media_port_comes_from_udp_port_then_port_range_then_the_default() {
        let port = |args: &[&str]| {
            let mut all = vec!["videoroom"];
            all.extend_from_slice(args);
            Config::try_parse_from(all).expect("parse").media_udp_port()
        };
        assert_eq!(port(&[]), 50000);
        assert_eq!(port(&["--port-range", "40000-40100"]), 40000);
        assert_eq!(
            port(&["--port-range", "40000-40100", "--udp-port", "41000"]),
            41000
        );
        assert!(Config::try_parse_from(["videoroom", "--port-range", "9-2"]).is_err());
        assert!(Config::try_parse_from(["videoroom", "--port-range", "abc"]).is_err());
    }

    #[test]
    fn check_origin_list_is_comma_separated() {
        let c = Config::try_parse_from(["videoroom", "--check-origin", "https://a.com,//*.b.com"])
            .expect("parse");
        assert_eq!(c.check_origin, vec!["https://a.com", "//*.b.com"]);
    }
}
