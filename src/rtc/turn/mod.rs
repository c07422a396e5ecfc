//! The embedded TURN server (RFC 8656) over UDP, TCP and TLS, relaying only into our own SFU.
//!
//! - [`client`]: what a TURN client sends (tests, fuzzing, tools).
//! - [`credentials`]: REST-API credentials (`"<expiry>:<peer id>"`, HMAC-SHA1 password) handed
//!   out with the channel join and checked without state.
//! - [`server`]: the sans-IO core: allocations, permissions, channels, quotas, refusals.
//! - [`shell`]: the tokio shell: the UDP socket, the TCP and TLS listeners, one relay UDP socket
//!   per allocation, all driven by one task that owns the core.
//!
//! The wire format (STUN messages, TURN attributes, ChannelData) is webrtc-rs's `rtc-stun` and
//! `rtc-turn` (see Cargo.toml).

pub mod client;
pub mod credentials;
pub mod server;
pub mod shell;

pub use credentials::{Credentials, TurnSecret};
pub use server::{ClientId, Transport, TurnServer, TurnServerConfig};

use std::time::Duration;

/// What a client is told about the TURN server: the ports it listens on and how to sign
/// credentials; [`IceServers::for_peer`] makes the `RTCIceServer` list of one peer.
#[derive(Debug, Clone)]
pub struct IceServers {
    /// Signs the credentials.
    pub secret: TurnSecret,
    /// How long credentials stay valid.
    pub ttl: Duration,
    /// The host in the URLs (`--turn-host`); `None`: the host the client reached us by.
    pub host: Option<String>,
    /// TURN over UDP.
    pub udp_port: Option<u16>,
    /// TURN over TCP.
    pub tcp_port: Option<u16>,
    /// TURN over TLS.
    pub tls_port: Option<u16>,
}

impl IceServers {
    /// The `RTCIceServer` list (`[{"urls": […], "username", "credential"}]`) for `peer`, with
    /// credentials valid from `unix_now`; `request_host` is the `Host` the client connected
    /// with (its port is dropped). Empty without a host to name.
    pub fn for_peer(
        &self,
        peer: &str,
        request_host: Option<&str>,
        unix_now: u64,
    ) -> serde_json::Value {
        let host = self
            .host
            .as_deref()
            .map(url_host)
            .or_else(|| request_host.map(host_of_header).map(str::to_owned));
        let Some(host) = host.filter(|h| !h.is_empty()) else {
            return serde_json::json!([]);
        };
        let mut urls = Vec::new();
        if let Some(port) = self.udp_port {
            urls.push(format!("turn:{host}:{port}?transport=udp"));
        }
        if let Some(port) = self.tcp_port {
            urls.push(format!("turn:{host}:{port}?transport=tcp"));
        }
        if let Some(port) = self.tls_port {
            urls.push(format!("turns:{host}:{port}?transport=tcp"));
        }
        let c = self.secret.issue(peer, unix_now, self.ttl);
        serde_json::json!([{ "urls": urls, "username": c.username, "credential": c.password }])
    }
}

/// A `--turn-host` value as a URL host (an IPv6 address in brackets).
fn url_host(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// The host of a `Host` header (`example.com:4000` → `example.com`, `[::1]:4000` → `[::1]`).
fn host_of_header(header: &str) -> &str {
    if header.starts_with('[') {
        return header.split_inclusive(']').next().unwrap_or(header);
    }
    match header.split_once(':') {
        Some((host, _port)) => host,
        None => header,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(host: Option<&str>) -> IceServers {
        IceServers {
            secret: TurnSecret::new("s").expect("provider"),
            ttl: Duration::from_secs(60),
            host: host.map(str::to_owned),
            udp_port: Some(3478),
            tcp_port: Some(3478),
            tls_port: Some(5349),
        }
    }

    #[test]
    fn the_ice_servers_name_every_transport_at_the_host_the_client_used() {
        let list = servers(None).for_peer("p1", Some("[::1]:4000"), 100);
        let secret = TurnSecret::new("s").expect("provider");
        assert_eq!(
            list,
            serde_json::json!([{
                "urls": [
                    "turn:[::1]:3478?transport=udp",
                    "turn:[::1]:3478?transport=tcp",
                    "turns:[::1]:5349?transport=tcp"
                ],
                "username": "160:p1",
                "credential": secret.password_for("160:p1"),
            }])
        );
        let named = servers(Some("turn.example.com")).for_peer("p1", Some("a:1"), 100);
        assert_eq!(
            named[0]["urls"][0],
            "turn:turn.example.com:3478?transport=udp"
        );
        assert_eq!(
            servers(None).for_peer("p1", None, 100),
            serde_json::json!([])
        );
        let v4 = servers(None).for_peer("p1", Some("127.0.0.1:4000"), 100);
        assert_eq!(v4[0]["urls"][2], "turns:127.0.0.1:5349?transport=tcp");
    }
}
