//! The embedded TURN server over real sockets on loopback.
//!
//! - The TURN shell alone (`videoroom::rtc::turn::shell::spawn`) with a test socket standing for
//!   the SFU: a client over UDP, TCP and TLS relays to it and hears it back; wrong and expired
//!   credentials get 401, relaying anywhere else 403, quotas 486 and 508. The client is built
//!   on the same wire-format crates as the server (rtc-stun, rtc-turn).
//! - The real app with `--turn`: headless webrtc-rs peers that gather relay candidates only
//!   (`iceTransportPolicy: "relay"`, TURN/UDP: webrtc-rs has no TURN over TCP or TLS; the
//!   browser test covers those) exchange media through the SFU, and `/metrics` counts the
//!   relayed bytes.

#[allow(dead_code)]
mod peer;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use stun::attributes::{ATTR_NONCE, ATTR_REALM};
use stun::error_code::ErrorCodeAttribute;
use stun::message::{
    CLASS_INDICATION, CLASS_REQUEST, Getter, METHOD_ALLOCATE, METHOD_CHANNEL_BIND,
    METHOD_CREATE_PERMISSION, METHOD_REFRESH, METHOD_SEND, Message, Method, Setter, TransactionId,
};
use stun::textattrs::TextAttribute;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_rustls::rustls;
use turn_proto::proto::PROTO_UDP;
use turn_proto::proto::chandata::ChannelData;
use turn_proto::proto::channum::ChannelNumber;
use turn_proto::proto::data::Data;
use turn_proto::proto::lifetime::Lifetime;
use turn_proto::proto::peeraddr::PeerAddress;
use turn_proto::proto::relayaddr::RelayedAddress;
use turn_proto::proto::reqtrans::RequestedTransport;
use videoroom::rtc::metrics::TurnMetrics;
use videoroom::rtc::turn::client::{LongTermAuth, message};
use videoroom::rtc::turn::server::{SfuAddr, TurnServerConfig};
use videoroom::rtc::turn::shell::{RelaySettings, TurnSockets, frame_length};
use videoroom::rtc::turn::{Credentials, TurnSecret};
use videoroom::web::TlsIdentity;

const SECRET: &str = "test secret";
const WAIT: Duration = Duration::from_secs(5);

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

fn secret() -> TurnSecret {
    TurnSecret::new(SECRET).expect("crypto provider")
}

/// Credentials of `peer` valid for ten minutes.
fn credentials(peer: &str) -> Credentials {
    secret().issue(peer, unix_now(), Duration::from_secs(600))
}

/// A TURN shell on loopback relaying to `sfu` only, and its addresses.
struct Turn {
    udp: SocketAddr,
    tcp: SocketAddr,
    tls: SocketAddr,
    cert: rustls::pki_types::CertificateDer<'static>,
    metrics: TurnMetrics,
}

async fn turn_for(sfu: SocketAddr, max_allocations: usize, per_user: usize) -> Turn {
    let udp = UdpSocket::bind("127.0.0.1:0").await.expect("udp");
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("tcp");
    let tls = TcpListener::bind("127.0.0.1:0").await.expect("tls");
    let identity = TlsIdentity::self_signed(&["127.0.0.1".to_owned()]).expect("certificate");
    let turn = Turn {
        udp: udp.local_addr().expect("addr"),
        tcp: tcp.local_addr().expect("addr"),
        tls: tls.local_addr().expect("addr"),
        cert: identity.cert_chain[0].clone(),
        metrics: TurnMetrics::default(),
    };
    let config = TurnServerConfig {
        realm: "videoroom".into(),
        secret: secret(),
        nonce: "test-nonce".into(),
        sfu: vec![SfuAddr {
            advertised: sfu,
            actual: sfu,
        }],
        max_allocations,
        max_allocations_per_user: per_user,
    };
    let sockets = TurnSockets {
        udp: Some(udp),
        tcp: Some(tcp),
        tls: Some((tls, identity.turn_acceptor().expect("acceptor"))),
    };
    let relay = RelaySettings {
        bind_ip: [127, 0, 0, 1].into(),
        advertised_ip: [127, 0, 0, 1].into(),
    };
    videoroom::rtc::turn::shell::spawn(sockets, config, relay, turn.metrics.clone());
    turn
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// How the test client reaches the server.
enum Conn {
    Udp(UdpSocket, SocketAddr),
    Stream(Pin<Box<dyn Stream>>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Via {
    Udp,
    Tcp,
    Tls,
}

/// A TURN client speaking the raw protocol (one request at a time).
struct Client {
    conn: Conn,
    credentials: Credentials,
    realm_nonce: Option<(String, String)>,
}

impl Client {
    async fn connect(turn: &Turn, via: Via, credentials: Credentials) -> Client {
        let conn = match via {
            Via::Udp => {
                let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
                Conn::Udp(socket, turn.udp)
            }
            Via::Tcp => {
                let stream = TcpStream::connect(turn.tcp).await.expect("connect");
                Conn::Stream(Box::pin(stream))
            }
            Via::Tls => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(turn.cert.clone()).expect("root");
                let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .expect("versions")
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
                let tcp = TcpStream::connect(turn.tls).await.expect("connect");
                let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
                let tls = connector.connect(name, tcp).await.expect("TLS handshake");
                Conn::Stream(Box::pin(tls))
            }
        };
        Client {
            conn,
            credentials,
            realm_nonce: None,
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        match &mut self.conn {
            Conn::Udp(socket, to) => {
                socket.send_to(bytes, *to).await.expect("send");
            }
            Conn::Stream(stream) => stream.write_all(bytes).await.expect("write"),
        }
    }

    /// The next datagram or framed message, if one comes within `wait`.
    async fn recv_within(&mut self, wait: Duration) -> Option<Vec<u8>> {
        use tokio::io::AsyncReadExt;
        let read = async {
            match &mut self.conn {
                Conn::Udp(socket, _) => {
                    let mut buf = vec![0u8; 4096];
                    let (n, _) = socket.recv_from(&mut buf).await.ok()?;
                    buf.truncate(n);
                    Some(buf)
                }
                Conn::Stream(stream) => {
                    let mut header = [0u8; 4];
                    stream.read_exact(&mut header).await.ok()?;
                    let mut frame = vec![0u8; frame_length(header)?];
                    frame[..4].copy_from_slice(&header);
                    stream.read_exact(&mut frame[4..]).await.ok()?;
                    Some(frame)
                }
            }
        };
        tokio::time::timeout(wait, read).await.ok().flatten()
    }

    /// Sends a request of `method` with `attributes` (authenticated once challenged) and
    /// returns its answer.
    async fn request(&mut self, method: Method, attributes: Vec<Box<dyn Setter>>) -> Message {
        let transaction = TransactionId::new();
        let auth = self
            .realm_nonce
            .as_ref()
            .map(|(realm, nonce)| LongTermAuth {
                credentials: self.credentials.clone(),
                realm: realm.clone(),
                nonce: nonce.clone(),
            });
        let request = message(
            method,
            CLASS_REQUEST,
            transaction.0,
            attributes,
            auth.as_ref(),
        );
        self.send(&request.expect("request")).await;
        loop {
            let bytes = self.recv_within(WAIT).await.expect("an answer");
            let mut answer = Message::new();
            if answer.unmarshal_binary(&bytes).is_ok() && answer.transaction_id == transaction {
                return answer;
            }
        }
    }

    /// Allocates (answering the 401 challenge); the final answer.
    async fn allocate(&mut self) -> Message {
        let transport = || -> Vec<Box<dyn Setter>> {
            vec![Box::new(RequestedTransport {
                protocol: PROTO_UDP,
            })]
        };
        if self.realm_nonce.is_none() {
            let challenge = self.request(METHOD_ALLOCATE, transport()).await;
            assert_eq!(
                error_code(&challenge),
                Some(401),
                "the first Allocate is challenged"
            );
            let text = |attr| {
                TextAttribute::get_from_as(&challenge, attr)
                    .expect("attr")
                    .text
            };
            self.realm_nonce = Some((text(ATTR_REALM), text(ATTR_NONCE)));
        }
        self.request(METHOD_ALLOCATE, transport()).await
    }

    async fn create_permission(&mut self, peer: SocketAddr) -> Message {
        let attributes: Vec<Box<dyn Setter>> = vec![Box::new(peer_address(peer))];
        self.request(METHOD_CREATE_PERMISSION, attributes).await
    }

    async fn channel_bind(&mut self, number: u16, peer: SocketAddr) -> Message {
        let attributes: Vec<Box<dyn Setter>> = vec![
            Box::new(ChannelNumber(number)),
            Box::new(peer_address(peer)),
        ];
        self.request(METHOD_CHANNEL_BIND, attributes).await
    }

    async fn send_indication(&mut self, peer: SocketAddr, data: &[u8]) {
        let attributes: Vec<Box<dyn Setter>> =
            vec![Box::new(peer_address(peer)), Box::new(Data(data.to_vec()))];
        let transaction = TransactionId::new().0;
        let indication = message(METHOD_SEND, CLASS_INDICATION, transaction, attributes, None);
        self.send(&indication.expect("indication")).await;
    }

    async fn channel_data(&mut self, number: u16, data: &[u8]) {
        let mut channel_data = ChannelData {
            data: data.to_vec(),
            number: ChannelNumber(number),
            raw: Vec::new(),
        };
        channel_data.encode();
        self.send(&channel_data.raw).await;
    }
}

fn peer_address(peer: SocketAddr) -> PeerAddress {
    PeerAddress {
        ip: peer.ip(),
        port: peer.port(),
    }
}

/// The ERROR-CODE of an answer (`None`: a success).
fn error_code(msg: &Message) -> Option<u16> {
    let mut code = ErrorCodeAttribute::default();
    code.get_from(msg).ok().map(|()| code.code.0)
}

fn relayed_address(msg: &Message) -> SocketAddr {
    let mut relayed = RelayedAddress::default();
    relayed.get_from(msg).expect("XOR-RELAYED-ADDRESS");
    SocketAddr::new(relayed.ip, relayed.port)
}

/// A datagram at `socket` within `wait`.
async fn datagram(socket: &UdpSocket, wait: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = vec![0u8; 4096];
    let (n, from) = tokio::time::timeout(wait, socket.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    buf.truncate(n);
    Some((buf, from))
}

/// Allocate, permission, channel bind, then data both ways through the relay over `via`.
async fn relays_both_ways(via: Via) {
    let sfu = UdpSocket::bind("127.0.0.1:0").await.expect("sfu");
    let sfu_addr = sfu.local_addr().expect("addr");
    let turn = turn_for(sfu_addr, 10, 10).await;
    let mut client = Client::connect(&turn, via, credentials("peer-a")).await;
    let allocated = client.allocate().await;
    assert_eq!(error_code(&allocated), None, "{via:?}: Allocate succeeds");
    let relayed = relayed_address(&allocated);
    let mut lifetime = Lifetime::default();
    lifetime.get_from(&allocated).expect("LIFETIME");
    assert_eq!(lifetime.0, Duration::from_secs(600));

    // Send indication after a permission: the SFU hears it from the relayed address.
    let permitted = client.create_permission(sfu_addr).await;
    assert_eq!(error_code(&permitted), None);
    client.send_indication(sfu_addr, b"via send").await;
    let (bytes, from) = datagram(&sfu, WAIT).await.expect("the SFU hears the Send");
    assert_eq!((bytes.as_slice(), from), (&b"via send"[..], relayed));

    // The SFU's answer comes back as a Data indication naming the SFU.
    sfu.send_to(b"answer 1", relayed).await.expect("send");
    let bytes = client.recv_within(WAIT).await.expect("a Data indication");
    let mut msg = Message::new();
    msg.unmarshal_binary(&bytes).expect("STUN");
    let (mut peer, mut data) = (PeerAddress::default(), Data::default());
    peer.get_from(&msg).expect("XOR-PEER-ADDRESS");
    data.get_from(&msg).expect("DATA");
    assert_eq!(
        (peer.port, data.0.as_slice()),
        (sfu_addr.port(), &b"answer 1"[..])
    );

    // Over a channel, both ways.
    let bound = client.channel_bind(0x4001, sfu_addr).await;
    assert_eq!(error_code(&bound), None);
    client.channel_data(0x4001, b"via channel").await;
    let (bytes, _) = datagram(&sfu, WAIT)
        .await
        .expect("the SFU hears the ChannelData");
    assert_eq!(bytes, b"via channel");
    sfu.send_to(b"answer 2", relayed).await.expect("send");
    let bytes = client.recv_within(WAIT).await.expect("ChannelData");
    let mut channel_data = ChannelData {
        raw: bytes,
        ..ChannelData::default()
    };
    channel_data.decode().expect("ChannelData");
    assert_eq!(
        (channel_data.number.0, channel_data.data.as_slice()),
        (0x4001, &b"answer 2"[..])
    );

    // Refresh with lifetime 0 deletes the allocation: the relay no longer forwards.
    let attributes: Vec<Box<dyn Setter>> = vec![Box::new(Lifetime(Duration::ZERO))];
    let refreshed = client.request(METHOD_REFRESH, attributes).await;
    assert_eq!(error_code(&refreshed), None);
    client.channel_data(0x4001, b"after delete").await;
    assert_eq!(datagram(&sfu, Duration::from_millis(300)).await, None);
    assert_eq!(turn.metrics.bytes_to_sfu.get(), 8 + 11);
    assert_eq!(turn.metrics.bytes_to_client.get(), 8 + 8);
}

#[tokio::test]
async fn a_client_over_udp_relays_to_the_sfu_and_hears_it_back() {
    relays_both_ways(Via::Udp).await;
}

#[tokio::test]
async fn a_client_over_tcp_relays_to_the_sfu_and_hears_it_back() {
    relays_both_ways(Via::Tcp).await;
}

#[tokio::test]
async fn a_client_over_tls_relays_to_the_sfu_and_hears_it_back() {
    relays_both_ways(Via::Tls).await;
}

#[tokio::test]
async fn wrong_and_expired_credentials_are_refused_with_401() {
    let sfu = UdpSocket::bind("127.0.0.1:0").await.expect("sfu");
    let turn = turn_for(sfu.local_addr().expect("addr"), 10, 10).await;
    let wrong = Credentials {
        password: "not the password".into(),
        ..credentials("peer-a")
    };
    let expired = secret().issue("peer-a", unix_now() - 700, Duration::from_secs(600));
    let forged = TurnSecret::new("another secret").expect("provider").issue(
        "peer-a",
        unix_now(),
        Duration::from_secs(600),
    );
    for (what, credentials) in [("wrong", wrong), ("expired", expired), ("forged", forged)] {
        let mut client = Client::connect(&turn, Via::Udp, credentials).await;
        let answer = client.allocate().await;
        assert_eq!(error_code(&answer), Some(401), "{what} credentials");
        // The challenge is repeated, so a client with fresh credentials can retry.
        assert!(
            TextAttribute::get_from_as(&answer, ATTR_NONCE).is_ok(),
            "{what}"
        );
    }
    let mut client = Client::connect(&turn, Via::Udp, credentials("peer-a")).await;
    assert_eq!(
        error_code(&client.allocate().await),
        None,
        "valid credentials"
    );
    let refusals = |reason| {
        turn.metrics
            .refusals
            .get_or_create(&[("reason", reason)])
            .get()
    };
    assert_eq!((refusals("bad_credentials"), refusals("expired")), (2, 1));
}

#[tokio::test]
async fn permissions_channels_and_sends_to_any_address_but_the_sfu_are_refused_with_403() {
    let sfu = UdpSocket::bind("127.0.0.1:0").await.expect("sfu");
    let stranger = UdpSocket::bind("127.0.0.1:0").await.expect("stranger");
    let (sfu_addr, stranger_addr) = (
        sfu.local_addr().expect("addr"),
        stranger.local_addr().expect("addr"),
    );
    let turn = turn_for(sfu_addr, 10, 10).await;
    let mut client = Client::connect(&turn, Via::Tcp, credentials("peer-a")).await;
    assert_eq!(error_code(&client.allocate().await), None);
    let elsewhere = SocketAddr::from(([192, 0, 2, 1], 3478));
    assert_eq!(
        error_code(&client.create_permission(elsewhere).await),
        Some(403)
    );
    // Same IP as the SFU, other port: a permission is per IP (allowed), a channel is not.
    assert_eq!(
        error_code(&client.create_permission(stranger_addr).await),
        None
    );
    assert_eq!(
        error_code(&client.channel_bind(0x4000, stranger_addr).await),
        Some(403)
    );
    assert_eq!(
        error_code(&client.channel_bind(0x4000, elsewhere).await),
        Some(403)
    );
    client
        .send_indication(stranger_addr, b"to a stranger")
        .await;
    client.send_indication(sfu_addr, b"to the sfu").await;
    let (bytes, _) = datagram(&sfu, WAIT).await.expect("the SFU hears its Send");
    assert_eq!(bytes, b"to the sfu");
    assert_eq!(datagram(&stranger, Duration::from_millis(300)).await, None);
    let forbidden = turn
        .metrics
        .refusals
        .get_or_create(&[("reason", "forbidden_peer")])
        .get();
    assert_eq!(forbidden, 4);
}

#[tokio::test]
async fn allocations_beyond_the_per_peer_quota_get_486_and_beyond_the_total_508() {
    let sfu = UdpSocket::bind("127.0.0.1:0").await.expect("sfu");
    let turn = turn_for(sfu.local_addr().expect("addr"), 3, 2).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut client = Client::connect(&turn, Via::Udp, credentials("peer-a")).await;
        assert_eq!(error_code(&client.allocate().await), None);
        held.push(client);
    }
    let mut third = Client::connect(&turn, Via::Udp, credentials("peer-a")).await;
    assert_eq!(
        error_code(&third.allocate().await),
        Some(486),
        "peer-a's third"
    );
    let mut other = Client::connect(&turn, Via::Tcp, credentials("peer-b")).await;
    assert_eq!(error_code(&other.allocate().await), None, "peer-b's first");
    let mut fourth = Client::connect(&turn, Via::Udp, credentials("peer-c")).await;
    assert_eq!(
        error_code(&fourth.allocate().await),
        Some(508),
        "the fourth in all"
    );
    // Closing peer-b's TCP connection ends its allocation and frees a place.
    drop(other);
    let mut retry = Client::connect(&turn, Via::Udp, credentials("peer-c")).await;
    let answer = loop {
        let answer = retry.allocate().await;
        if error_code(&answer) != Some(508) {
            break answer;
        }
        // The close reaches the server task shortly after the drop.
        tokio::time::sleep(Duration::from_millis(50)).await;
        retry = Client::connect(&turn, Via::Udp, credentials("peer-c")).await;
    };
    assert_eq!(error_code(&answer), None);
    assert_eq!(turn.metrics.allocations.get(), 3);
    drop(held);
}

// ---- the real app ------------------------------------------------------------------------

use peer::client::PeerOptions;
use peer::scenario::{assert_delivery, join_accepted, wait_receiving};
use peer::server::{TestServer, test_config};

/// `/metrics` of the in-process server as text.
async fn metrics_text(server: &TestServer) -> String {
    reqwest::get(server.url("/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("body")
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_only_peers_get_each_others_media_through_the_turn_server() {
    let config = videoroom::config::Config {
        turn: true,
        turn_port: 0,
        turn_tls_port: 0,
        ..test_config()
    };
    let server = TestServer::start_with_config(config).await;
    let run = async {
        let (socket, _incoming) =
            peer::phoenix::connect(&server.socket_url(), Duration::from_secs(30))
                .await
                .expect("socket");
        let reply = socket.join("room:probe", json!({})).await.expect("joined");
        let servers = &reply["iceServers"];
        let urls: Vec<&str> = servers[0]["urls"]
            .as_array()
            .expect("urls")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(
            urls.len(),
            2,
            "UDP and TCP (no TLS without HTTPS): {urls:?}"
        );
        assert!(urls[0].starts_with("turn:127.0.0.1:") && urls[0].ends_with("?transport=udp"));
        assert!(urls[1].starts_with("turn:127.0.0.1:") && urls[1].ends_with("?transport=tcp"));
        socket.leave("room:probe").await;

        let a = join_accepted(&server, "relay", PeerOptions::new("a").relay_only()).await;
        let b = join_accepted(&server, "relay", PeerOptions::new("b").relay_only()).await;
        wait_receiving(&a, &[&b]).await;
        wait_receiving(&b, &[&a]).await;
        let from = std::time::Instant::now();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let until = std::time::Instant::now() - Duration::from_millis(500);
        assert_delivery(&a, &b, from, until, 95);
        assert_delivery(&b, &a, from, until, 95);
        let text = metrics_text(&server).await;
        let to_sfu = metric(
            &text,
            "videoroom_turn_relayed_bytes_total{direction=\"to_sfu\"}",
        );
        let to_client = metric(
            &text,
            "videoroom_turn_relayed_bytes_total{direction=\"to_client\"}",
        );
        // Three seconds of two peers' audio and video: far more than 100 kB each way.
        assert!(
            to_sfu > 100_000.0 && to_client > 100_000.0,
            "{to_sfu} {to_client}"
        );
        // One allocation per peer at least (webrtc-rs may hold more across ICE restarts).
        let allocations = metric(&text, "videoroom_turn_allocations ");
        assert!(allocations >= 2.0, "{allocations} allocations");
    };
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("within a minute");
    server.stop().await;
}
