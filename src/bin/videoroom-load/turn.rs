//! `--turn`: a load peer's media through the server's TURN relay over UDP, as a browser on a
//! network that blocks UDP to the media port (but not to the TURN port) sends it. The peer
//! allocates with the credentials of its channel join reply, offers only its relayed address
//! as an ICE candidate, binds a channel to each server candidate, and wraps every datagram in
//! ChannelData. The messages are built with `videoroom::rtc::turn::client` (a client's message
//! builder, no server logic); allocations are not refreshed (they last 10 minutes, longer than
//! a run).
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use stun::attributes::{ATTR_NONCE, ATTR_REALM};
use stun::error_code::ErrorCodeAttribute;
use stun::message::{CLASS_REQUEST, Getter, METHOD_ALLOCATE, METHOD_CHANNEL_BIND, Message};
use stun::textattrs::TextAttribute;
use tokio::net::UdpSocket;
use turn_proto::proto::PROTO_UDP;
use turn_proto::proto::chandata::ChannelData;
use turn_proto::proto::channum::ChannelNumber;
use turn_proto::proto::peeraddr::PeerAddress;
use turn_proto::proto::relayaddr::RelayedAddress;
use turn_proto::proto::reqtrans::RequestedTransport;
use videoroom::rtc::turn::Credentials;
use videoroom::rtc::turn::client::{Attributes, LongTermAuth, message};

/// First channel number a peer binds.
const FIRST_CHANNEL: u16 = 0x4000;

/// One peer's TURN allocation.
pub struct TurnRelay {
    /// The TURN server's UDP address.
    pub server: SocketAddr,
    /// The relayed address (our only ICE candidate).
    pub relayed: SocketAddr,
    auth: LongTermAuth,
    channels: HashMap<SocketAddr, u16>,
    peers: HashMap<u16, SocketAddr>,
    transactions: u32,
}

/// The TURN/UDP server and credentials of a join reply's `iceServers`.
pub fn udp_server_of(reply: &Value) -> Option<(SocketAddr, Credentials)> {
    let server = reply["iceServers"].as_array()?.first()?;
    let url = server["urls"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find(|u| u.starts_with("turn:") && u.ends_with("?transport=udp"))?;
    let addr = url.strip_prefix("turn:")?.strip_suffix("?transport=udp")?;
    let credentials = Credentials {
        username: server["username"].as_str()?.to_owned(),
        password: server["credential"].as_str()?.to_owned(),
    };
    Some((addr.parse().ok()?, credentials))
}

impl TurnRelay {
    /// Allocates on `server` from `socket` (the 401 challenge, then the signed request).
    pub async fn allocate(
        socket: &UdpSocket,
        server: SocketAddr,
        credentials: Credentials,
    ) -> Result<Self, String> {
        let transport = || -> Attributes<'static> {
            vec![Box::new(RequestedTransport {
                protocol: PROTO_UDP,
            })]
        };
        let challenge =
            exchange(socket, server, METHOD_ALLOCATE, [1; 12], transport(), None).await?;
        let text = |attr| {
            TextAttribute::get_from_as(&challenge, attr)
                .map(|t| t.text)
                .map_err(|e| format!("TURN challenge without {attr}: {e}"))
        };
        let auth = LongTermAuth {
            credentials,
            realm: text(ATTR_REALM)?,
            nonce: text(ATTR_NONCE)?,
        };
        let answer = exchange(
            socket,
            server,
            METHOD_ALLOCATE,
            [2; 12],
            transport(),
            Some(&auth),
        )
        .await?;
        let mut relayed = RelayedAddress::default();
        relayed
            .get_from(&answer)
            .map_err(|e| format!("TURN Allocate refused or without a relayed address: {e}"))?;
        Ok(TurnRelay {
            server,
            relayed: SocketAddr::new(relayed.ip, relayed.port),
            auth,
            channels: HashMap::new(),
            peers: HashMap::new(),
            transactions: 2,
        })
    }

    /// The ChannelBind request for `peer` (a server candidate), if it has no channel yet; its
    /// answer is not awaited: the ChannelData sent after it on the same path reaches the
    /// server after it, and a refused bind shows as checks that go unanswered.
    pub fn bind(&mut self, peer: SocketAddr) -> Option<Vec<u8>> {
        if self.channels.contains_key(&peer) {
            return None;
        }
        let number = FIRST_CHANNEL + u16::try_from(self.channels.len()).ok()?;
        self.channels.insert(peer, number);
        self.peers.insert(number, peer);
        self.transactions += 1;
        let mut transaction = [3u8; 12];
        transaction[8..].copy_from_slice(&self.transactions.to_be_bytes());
        let attributes: Attributes<'static> = vec![
            Box::new(ChannelNumber(number)),
            Box::new(PeerAddress {
                ip: peer.ip(),
                port: peer.port(),
            }),
        ];
        message(
            METHOD_CHANNEL_BIND,
            CLASS_REQUEST,
            transaction,
            attributes,
            Some(&self.auth),
        )
    }

    /// `payload` for `to` as ChannelData (`None` without a channel to `to`).
    pub fn wrap(&self, to: SocketAddr, payload: &[u8]) -> Option<Vec<u8>> {
        let number = *self.channels.get(&to)?;
        let mut data = ChannelData {
            data: payload.to_vec(),
            number: ChannelNumber(number),
            raw: Vec::with_capacity(payload.len() + 8),
        };
        data.encode();
        Some(data.raw)
    }

    /// A datagram from the TURN server as (the peer it relays, its payload); `None` for
    /// anything but ChannelData of a bound channel (e.g. the ChannelBind answers).
    pub fn unwrap(&self, datagram: &[u8]) -> Option<(SocketAddr, Vec<u8>)> {
        if !ChannelData::is_channel_data(datagram) {
            return None;
        }
        let mut data = ChannelData {
            raw: datagram.to_vec(),
            ..ChannelData::default()
        };
        data.decode().ok()?;
        Some((*self.peers.get(&data.number.0)?, data.data))
    }
}

/// Sends a request and waits for its answer (the challenge or the final one).
async fn exchange(
    socket: &UdpSocket,
    server: SocketAddr,
    method: stun::message::Method,
    transaction: [u8; 12],
    attributes: Attributes<'_>,
    auth: Option<&LongTermAuth>,
) -> Result<Message, String> {
    let request = message(method, CLASS_REQUEST, transaction, attributes, auth)
        .ok_or("TURN request not encodable")?;
    socket
        .send_to(&request, server)
        .await
        .map_err(|e| format!("TURN send: {e}"))?;
    let mut buf = vec![0u8; 2048];
    let wait = async {
        loop {
            let (n, from) = socket
                .recv_from(&mut buf)
                .await
                .map_err(|e| e.to_string())?;
            let mut answer = Message::new();
            if from == server
                && answer.unmarshal_binary(&buf[..n]).is_ok()
                && answer.transaction_id.0 == transaction
            {
                return Ok::<Message, String>(answer);
            }
        }
    };
    let answer = tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .map_err(|_| format!("no TURN answer from {server} within 5 s"))??;
    let mut code = ErrorCodeAttribute::default();
    match code.get_from(&answer) {
        // 401 is the expected challenge of the first request.
        Ok(()) if auth.is_some() || code.code.0 != 401 => {
            Err(format!("TURN error {}", code.code.0))
        }
        _ => Ok(answer),
    }
}
