//! Server settings: flags and environment variables with documented defaults.
//!
//! Every setting is a flag and an environment variable (`--port` / `SERVER_PORT`, …);
//! `videoroom --help` lists them. Other modules add their own settings here.

use crate::phoenix::SocketLimits;
use crate::phoenix::transport::params::QueryLimits;
use crate::phoenix::transport::{CheckOrigin, Settings};
use crate::room::RoomsConfig;
use crate::rtc::engine::EngineLimits;
use crate::web::{ServeLimits, TlsMode, WebConfig};
use clap::Parser;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// The media UDP port when neither `--udp-port` nor `--port-range` is given.
pub const DEFAULT_UDP_PORT: u16 = 50000;

/// Deepest `--max-query-depth` accepted: the parser never recurses, but each level costs a
/// map, so an operator cannot raise the bound to "unlimited" by mistake.
const MAX_QUERY_DEPTH_SETTING: usize = 1024;

/// Parses `--max-query-depth`: 1 to [`MAX_QUERY_DEPTH_SETTING`].
fn parse_query_depth(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(depth @ 1..=MAX_QUERY_DEPTH_SETTING) => Ok(depth),
        _ => Err(format!("expected 1 to {MAX_QUERY_DEPTH_SETTING}")),
    }
}

/// A default duration as the seconds a flag shows (`None`, i.e. never: 0).
fn default_secs(duration: Option<Duration>) -> f64 {
    duration.map_or(0.0, |d| d.as_secs_f64())
}

/// Parses a count that must be at least 1 (a room of no peers, or no rooms, would refuse all).
fn at_least_one(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "expected a whole number of at least 1, got {value:?}"
        )),
    }
}

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

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `time level target: message`, one line per event.
    Text,
    /// One JSON object per line (`ts`, `level`, `target`, `msg`, and `room`/`peer` when the
    /// message names them), for log shippers.
    Json,
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
    #[arg(long, env = "SERVER_PORT", default_value_t = 4000)]
    pub port: u16,

    /// Address to bind.
    #[arg(long, env = "BIND_ADDRESS", default_value = "0.0.0.0")]
    pub bind: IpAddr,

    /// Close a WebSocket after this many seconds without a frame from the client (close 1001).
    #[arg(long = "idle-timeout", env, default_value_t = default_secs(SocketLimits::default().idle_timeout))]
    pub idle_timeout_secs: f64,

    /// Allowed browser origins, comma-separated (`https://a.com,//*.b.com`); `*` allows every
    /// origin; empty (default) allows only the request's own host.
    #[arg(long, env, default_value = "", value_delimiter = ',')]
    pub check_origin: Vec<String>,

    /// Largest WebSocket message or LongPoll request body accepted, in bytes (bigger: close
    /// 1009, HTTP 413).
    #[arg(long, env, default_value_t = Settings::default().max_frame_size)]
    pub max_frame_size: usize,

    /// Maximum channels joined per socket.
    #[arg(long, env, default_value_t = SocketLimits::default().max_channels)]
    pub max_channels: usize,

    /// Largest peer metadata (display name included) in `join`/`updatePeerMetadata`, in bytes (bigger: `peerDenied`, or an `error` media event).
    #[arg(long, env, default_value_t = EngineLimits::default().max_peer_metadata_bytes)]
    pub max_peer_metadata_bytes: usize,

    /// Largest metadata of one track, in bytes (bigger: an `error` media event).
    #[arg(long, env, default_value_t = EngineLimits::default().max_track_metadata_bytes)]
    pub max_track_metadata_bytes: usize,

    /// Tracks one peer may publish at once (more: an `error` media event).
    #[arg(long, env, default_value_t = EngineLimits::default().max_tracks_per_peer)]
    pub max_tracks_per_peer: usize,

    /// Largest SDP offer, in bytes (bigger: an `error` media event).
    #[arg(long, env, default_value_t = EngineLimits::default().max_offer_bytes)]
    pub max_offer_bytes: usize,

    /// Most m-lines in one SDP offer (more: an `error` media event).
    #[arg(long, env, default_value_t = EngineLimits::default().max_offer_m_lines)]
    pub max_offer_m_lines: usize,

    /// ICE candidates a peer may send per m-line of its offer (more: an `error` media event).
    #[arg(long, env, default_value_t = EngineLimits::default().max_candidates_per_offer)]
    pub max_candidates_per_offer: usize,

    /// Longest ICE candidate string, in bytes (longer: an `error` media event).
    #[arg(long, env, default_value_t = EngineLimits::default().max_candidate_bytes)]
    pub max_candidate_bytes: usize,

    /// LongPoll window in seconds (a session dies after 1.5 windows without a poll).
    #[arg(long = "longpoll-window", env, default_value_t = Settings::default().longpoll_window.as_secs_f64())]
    pub longpoll_window_secs: f64,

    /// Disable the LongPoll transport.
    #[arg(long, env, default_value_t = false)]
    pub no_longpoll: bool,

    /// Frames queued for one client before it is closed as not reading.
    #[arg(long, env, default_value_t = Settings::default().outbound_queue)]
    pub outbound_queue: usize,

    /// Bytes queued for one client before it is closed as not reading (close 1013).
    #[arg(long, env, default_value_t = Settings::default().outbound_bytes)]
    pub outbound_bytes: usize,

    /// Inbound messages per second per socket, bursts of as many allowed (more: close 1008).
    #[arg(long, env, default_value_t = SocketLimits::default().max_messages_per_sec)]
    pub max_messages_per_sec: u32,

    /// Longest channel topic (`room:<id>`) a client may join, in bytes (longer: join error
    /// `topic too long`).
    #[arg(long, env, default_value_t = SocketLimits::default().max_topic_bytes)]
    pub max_topic_bytes: usize,

    /// Most LongPoll sessions open at once (more: `{"status":403}`).
    #[arg(long, env, default_value_t = Settings::default().max_longpoll_sessions)]
    pub max_longpoll_sessions: usize,

    /// Longest connect query string (`/socket/websocket?…`, `/socket/longpoll?…`) in bytes
    /// (longer: 400).
    #[arg(long, env, default_value_t = QueryLimits::default().max_bytes)]
    pub max_query_bytes: usize,

    /// Most `key=value` pairs in a connect query string (more: 400).
    #[arg(long, env, default_value_t = QueryLimits::default().max_pairs)]
    pub max_query_params: usize,

    /// Deepest nesting of one connect query key, `a[b][c]` being 3 (deeper: 400).
    #[arg(
        long,
        env,
        default_value_t = QueryLimits::default().max_depth,
        value_parser = parse_query_depth
    )]
    pub max_query_depth: usize,

    /// Most open TCP connections, WebSockets included (more are closed at once).
    #[arg(long, env, default_value_t = ServeLimits::default().max_connections)]
    pub max_connections: usize,

    /// Most open TCP connections from one source IP (more are closed at once).
    #[arg(long, env, default_value_t = ServeLimits::default().max_connections_per_ip)]
    pub max_connections_per_ip: usize,

    /// Seconds a client has to send a request's headers, counted from the connection's start
    /// or its previous response, so also the idle time before a WebSocket upgrade (then closed).
    #[arg(
        long = "header-read-timeout",
        env,
        default_value_t = ServeLimits::default().header_read_timeout.as_secs_f64()
    )]
    pub header_read_timeout_secs: f64,

    /// Seconds an HTTPS client has to finish its TLS handshake (then the connection is closed).
    #[arg(
        long = "tls-handshake-timeout",
        env,
        default_value_t = ServeLimits::default().tls_handshake_timeout.as_secs_f64()
    )]
    pub tls_handshake_timeout_secs: f64,

    /// Largest request head (request line and headers) in bytes, at least 8192 (bigger: 431).
    #[arg(long, env, default_value_t = ServeLimits::default().max_header_bytes)]
    pub max_header_bytes: usize,

    /// UDP port of the media plane: one socket serves every peer of every room
    /// (default: the first port of `--port-range`, else 50000).
    #[arg(long, env)]
    pub udp_port: Option<u16>,

    /// TCP port of ICE-TCP media (RFC 6544), the fallback when UDP is blocked: unset or equal
    /// to `--port` shares the web port (told apart by the first bytes), another port opens
    /// its own listener, `0` turns ICE-TCP off.
    #[arg(long, env)]
    pub ice_tcp_port: Option<u16>,

    /// The Elixir demo's `PORT_RANGE` (`FIRST-LAST`), accepted for compatibility: we need one
    /// UDP port only, so the range's first port is used unless `--udp-port` is given.
    #[arg(long, env, value_parser = parse_port_range)]
    pub port_range: Option<(u16, u16)>,

    /// A public IP advertised as an extra ICE host candidate (server behind 1:1 NAT).
    #[arg(long, env)]
    pub external_ip: Option<IpAddr>,

    /// Run the embedded TURN server (UDP and TCP on `--turn-port`, TLS on `--turn-tls-port`
    /// when HTTPS is on); joiners of our client get its URLs and credentials.
    #[arg(long, env, default_value_t = false)]
    pub turn: bool,

    /// TURN port, UDP and TCP (0: any free port, each).
    #[arg(long, env, default_value_t = 3478)]
    pub turn_port: u16,

    /// TURN over TLS port, with the HTTPS certificate (only when HTTPS is on; 0: any free port).
    #[arg(long, env, default_value_t = 5349)]
    pub turn_tls_port: u16,

    /// Secret signing the TURN credentials (TURN REST API convention); default: random at start.
    #[arg(long, env, hide_env_values = true)]
    pub turn_secret: Option<String>,

    /// Host name or IP in the TURN URLs sent to clients (default: the host the client reached
    /// the server by).
    #[arg(long, env)]
    pub turn_host: Option<String>,

    /// Seconds a peer's TURN credentials stay valid (they are issued at each channel join).
    #[arg(long = "turn-credential-ttl", env, default_value_t = 86400.0)]
    pub turn_credential_ttl_secs: f64,

    /// Most TURN allocations at once (more: 508), also the most TURN TCP/TLS connections.
    #[arg(long, env, default_value_t = 1000)]
    pub turn_max_allocations: usize,

    /// Most TURN allocations of one peer at once (more: 486); a browser opens one per TURN URL
    /// and network interface at every ICE restart, keeping the older ones a while.
    #[arg(long, env, default_value_t = 32)]
    pub turn_max_allocations_per_peer: usize,

    /// Most peers per room (at least 1); further joiners get `peerDenied`, and channel joins
    /// beyond twice as many get `{"reason":"room is busy"}`.
    #[arg(long, env, default_value_t = RoomsConfig::default().max_peers, value_parser = at_least_one)]
    pub max_peers_per_room: usize,

    /// Most rooms running at once; a join that would start another gets
    /// `{"reason":"too many rooms"}`.
    #[arg(long, env, default_value_t = RoomsConfig::default().max_rooms, value_parser = at_least_one)]
    pub max_rooms: usize,

    /// Seconds an empty room waits for a new peer before it stops.
    #[arg(long = "room-grace", env, default_value_t = 2.0)]
    pub room_grace_secs: f64,

    /// Seconds a peer whose socket was lost without `leave` stays in its room while its media
    /// is alive, for its client to resume with its token (0: removed at once).
    #[arg(
        long = "reconnect-grace",
        env,
        default_value_t = default_secs(Some(EngineLimits::default().reconnect_grace))
    )]
    pub reconnect_grace_secs: f64,

    /// Seconds to wait for sockets to close after Ctrl-C (they are told 1012 first).
    #[arg(long = "drain-timeout", env, default_value_t = 5.0)]
    pub drain_timeout_secs: f64,

    /// Seconds between the shutdown signal and telling sockets 1012, while `/readyz` already
    /// answers 503 (lets a load balancer take the server out before clients are moved).
    #[arg(long = "drain-delay", env, default_value_t = 0.0)]
    pub drain_delay_secs: f64,

    /// `/healthz` fails when the UDP mux or a room's media loop has made no progress for this
    /// many seconds.
    #[arg(long = "stall-timeout", env, default_value_t = 5.0)]
    pub stall_timeout_secs: f64,

    /// Log format: `text` (one line per event) or `json` (one JSON object per line).
    #[arg(long, env, default_value = "text")]
    pub log_format: LogFormat,

    /// Serve this folder (e.g. an Elixir videoroom checkout's `priv/static`) instead of the web
    /// app embedded in the binary.
    #[arg(long, env)]
    pub static_dir: Option<PathBuf>,

    /// HTTPS: certificate chain (PEM). Needs `--tls-key`.
    #[arg(long, env, requires = "tls_key", conflicts_with = "tls_self_signed")]
    pub tls_cert: Option<PathBuf>,

    /// HTTPS: private key (PEM). Needs `--tls-cert`.
    #[arg(long, env, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// HTTPS with a self-signed certificate generated at start (for localhost, 127.0.0.1, ::1
    /// and the names in `--tls-name`).
    #[arg(long, env, default_value_t = false)]
    pub tls_self_signed: bool,

    /// Extra host names or addresses for the self-signed certificate, comma-separated.
    #[arg(long = "tls-name", env, value_delimiter = ',')]
    pub tls_names: Vec<String>,

    /// Several nodes as one service: the Redis server that holds the room registry and carries
    /// PubSub between nodes (`redis://host:6379/0`). Unset: one node, nothing else needed.
    #[arg(long, env)]
    pub redis_url: Option<String>,

    /// This node's name in the cluster (default: `<host name>-<port>`).
    #[arg(long, env)]
    pub node_id: Option<String>,

    /// The base URL other nodes reach this node's signalling at (`ws://10.0.0.5:4000`;
    /// default: `ws://` + `--external-ip` or `--bind` (127.0.0.1 if unspecified) + `--port`).
    #[arg(long, env)]
    pub node_url: Option<String>,

    /// Seconds a room's (and a node's) registration lives in Redis without being renewed: a
    /// dead node's rooms can be taken over after this long (renewed every third of it).
    #[arg(long = "cluster-lease", env, default_value_t = 3.0)]
    pub cluster_lease_secs: f64,
}

/// Where ICE-TCP media listens ([`Config::ice_tcp`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceTcpPort {
    /// No ICE-TCP.
    Off,
    /// On the web port, next to HTTP/HTTPS.
    Shared,
    /// On its own listener at this address.
    Own(SocketAddr),
}

impl Default for Config {
    /// The documented defaults: the flags' own defaults, environment variables ignored (tests
    /// build configs without reading the environment).
    fn default() -> Self {
        use clap::{CommandFactory, FromArgMatches};
        let command = Config::command().mut_args(|arg| arg.env(None));
        let matches = command
            .try_get_matches_from(["videoroom"])
            .expect("no arguments always parse");
        Config::from_arg_matches(&matches).expect("the defaults are valid settings")
    }
}

impl Config {
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

    /// Where ICE-TCP media listens, given the web listener's actual address `web`.
    pub fn ice_tcp(&self, web: SocketAddr) -> IceTcpPort {
        match self.ice_tcp_port {
            Some(0) => IceTcpPort::Off,
            None => IceTcpPort::Shared,
            Some(p) if p == web.port() || p == self.port => IceTcpPort::Shared,
            Some(p) => IceTcpPort::Own(SocketAddr::new(self.bind, p)),
        }
    }

    /// How long `/readyz` answers 503 before the sockets are drained.
    pub fn drain_delay(&self) -> Duration {
        Duration::from_secs_f64(self.drain_delay_secs.max(0.0))
    }

    /// How long a watched loop may go without progress before `/healthz` fails.
    pub fn stall_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.stall_timeout_secs.max(0.1))
    }

    /// The cluster settings, when `--redis-url` is set.
    pub fn cluster_config(&self) -> Option<crate::cluster::ClusterConfig> {
        let redis_url = self.redis_url.clone()?;
        let host = match (self.external_ip, self.bind) {
            (Some(ip), _) => ip,
            (None, ip) if ip.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
            (None, ip) => ip,
        };
        let node_url = self.node_url.clone().unwrap_or_else(|| match host {
            IpAddr::V6(v6) => format!("ws://[{v6}]:{}", self.port),
            IpAddr::V4(v4) => format!("ws://{v4}:{}", self.port),
        });
        let node_id = self.node_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
            let host = host.trim();
            format!(
                "{}-{}",
                if host.is_empty() { "node" } else { host },
                self.port
            )
        });
        Some(crate::cluster::ClusterConfig {
            redis_url,
            node_id,
            node_url: node_url.trim_end_matches('/').to_owned(),
            lease: Duration::from_secs_f64(self.cluster_lease_secs.clamp(0.3, 3600.0)),
        })
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
            max_frame_size: self.max_frame_size,
            socket: SocketLimits {
                max_channels: self.max_channels,
                idle_timeout: Some(Duration::from_secs_f64(self.idle_timeout_secs.max(0.001))),
                max_messages_per_sec: self.max_messages_per_sec,
                max_topic_bytes: self.max_topic_bytes,
            },
            longpoll_window: Duration::from_secs_f64(self.longpoll_window_secs.max(0.01)),
            longpoll: !self.no_longpoll,
            outbound_queue: self.outbound_queue,
            outbound_bytes: self.outbound_bytes,
            max_longpoll_sessions: self.max_longpoll_sessions,
            query: QueryLimits {
                max_bytes: self.max_query_bytes,
                max_pairs: self.max_query_params,
                max_depth: self.max_query_depth,
            },
            ..Settings::default()
        }
    }

    /// What each room holds its peers to (metadata, tracks, offers, candidates).
    pub fn engine_limits(&self) -> EngineLimits {
        EngineLimits {
            max_peer_metadata_bytes: self.max_peer_metadata_bytes,
            max_track_metadata_bytes: self.max_track_metadata_bytes,
            max_tracks_per_peer: self.max_tracks_per_peer,
            max_offer_bytes: self.max_offer_bytes,
            max_offer_m_lines: self.max_offer_m_lines,
            max_candidates_per_offer: self.max_candidates_per_offer,
            max_candidate_bytes: self.max_candidate_bytes,
            reconnect_grace: self.reconnect_grace(),
        }
    }

    /// [`Config::reconnect_grace_secs`] as a duration (negative or NaN: none).
    pub fn reconnect_grace(&self) -> Duration {
        Duration::try_from_secs_f64(self.reconnect_grace_secs.max(0.0)).unwrap_or_default()
    }

    /// The connection-level limits of the HTTP server; after a drain, open requests get the
    /// rest of a second.
    pub fn serve_limits(&self) -> ServeLimits {
        ServeLimits {
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            header_read_timeout: Duration::from_secs_f64(self.header_read_timeout_secs.max(0.001)),
            max_header_bytes: self.max_header_bytes,
            tls_handshake_timeout: Duration::from_secs_f64(
                self.tls_handshake_timeout_secs.max(0.001),
            ),
            ..ServeLimits::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Config, IceTcpPort, Settings};
    use clap::Parser;
    use std::net::SocketAddr;

    #[test]
    fn defaults_match_the_documented_values() {
        let d = Config::default();
        assert_eq!(d.port, 4000);
        assert_eq!(d.max_channels, 100);
        assert_eq!(d.max_peers_per_room, 100);
        assert_eq!(d.max_rooms, 1000);
        let rooms = crate::room::RoomsConfig::default();
        assert_eq!(
            (d.max_peers_per_room, d.max_rooms),
            (rooms.max_peers, rooms.max_rooms)
        );
        let settings = d.socket_settings();
        let defaults = Settings::default();
        assert_eq!(settings.socket.idle_timeout, defaults.socket.idle_timeout);
        assert_eq!(settings.socket.max_channels, defaults.socket.max_channels);
        assert_eq!(settings.max_frame_size, defaults.max_frame_size);
        assert_eq!(settings.outbound_bytes, defaults.outbound_bytes);
        let rate = settings.socket.max_messages_per_sec;
        assert_eq!(rate, defaults.socket.max_messages_per_sec);
        let topic = settings.socket.max_topic_bytes;
        assert_eq!(topic, defaults.socket.max_topic_bytes);
        assert_eq!(settings.query, defaults.query);
        assert_eq!(settings.longpoll_window, defaults.longpoll_window);
        let limits = d.serve_limits();
        let serve_defaults = crate::web::ServeLimits::default();
        assert_eq!(
            limits.header_read_timeout,
            serve_defaults.header_read_timeout
        );
        assert_eq!(limits.max_connections, serve_defaults.max_connections);
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
    fn ice_tcp_shares_the_web_port_unless_given_another_or_zero() {
        let at = |args: &[&str]| {
            let mut all = vec!["videoroom", "--port", "4000"];
            all.extend_from_slice(args);
            let web: SocketAddr = "0.0.0.0:4000".parse().unwrap();
            Config::try_parse_from(all).expect("parse").ice_tcp(web)
        };
        assert_eq!(at(&[]), IceTcpPort::Shared);
        assert_eq!(at(&["--ice-tcp-port", "4000"]), IceTcpPort::Shared);
        assert_eq!(at(&["--ice-tcp-port", "0"]), IceTcpPort::Off);
        assert_eq!(
            at(&["--ice-tcp-port", "4443"]),
            IceTcpPort::Own("0.0.0.0:4443".parse().unwrap())
        );
    }

    /// The README's settings table names every flag with its environment variable and its
    /// default, as `--help` does (the clap attributes are the one source of the defaults).
    #[test]
    fn the_readme_settings_table_matches_the_flags() {
        use clap::CommandFactory;
        let readme = include_str!("../README.md");
        let command = Config::command();
        for arg in command.get_arguments() {
            let Some(flag) = arg.get_long() else { continue };
            if flag == "help" || flag == "version" {
                continue;
            }
            let flag = format!("`--{flag}`");
            let row = readme
                .lines()
                .find(|l| {
                    l.starts_with('|') && l.split('|').nth(1).is_some_and(|c| c.contains(&flag))
                })
                .unwrap_or_else(|| panic!("README settings table has no row for {flag}"));
            let env = arg.get_env().expect("every flag has an env var");
            let env = format!("`{}`", env.to_string_lossy());
            assert!(
                row.contains(&env),
                "README row of {flag} lacks {env}: {row}"
            );
            let default: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            let default_cell = row.split('|').nth(3).unwrap_or("").trim();
            match default.as_slice() {
                [] => {}
                [d] if d.is_empty() => {}
                [d] if d == "false" => assert!(
                    default_cell.starts_with("off"),
                    "README default of {flag} should be off: {row}"
                ),
                [d] => assert!(
                    default_cell.starts_with(&format!("`{d}`")),
                    "README default of {flag} should be `{d}`: {row}"
                ),
                more => panic!("{flag} has several defaults {more:?}"),
            }
        }
    }

    #[test]
    fn a_room_limit_of_zero_is_rejected_rather_than_meaning_unlimited() {
        for flag in ["--max-peers-per-room", "--max-rooms"] {
            assert!(
                Config::try_parse_from(["videoroom", flag, "0"]).is_err(),
                "{flag} 0"
            );
            assert!(
                Config::try_parse_from(["videoroom", flag, "1"]).is_ok(),
                "{flag} 1"
            );
        }
    }

    #[test]
    fn check_origin_list_is_comma_separated() {
        let c = Config::try_parse_from(["videoroom", "--check-origin", "https://a.com,//*.b.com"])
            .expect("parse");
        assert_eq!(c.check_origin, vec!["https://a.com", "//*.b.com"]);
    }
}
