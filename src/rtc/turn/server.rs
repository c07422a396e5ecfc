//! The sans-IO TURN server (RFC 8656): allocations, permissions and channels, with time, the
//! wall clock and the relay sockets' addresses as inputs and datagrams as outputs.
//!
//! It relays only to the SFU: a permission, channel or Send to any other address is refused
//! (403) or dropped, so this is not an open relay. Each allocation's relayed transport address
//! is a UDP socket the shell binds on request ([`Output::BindRelay`], answered with
//! [`TurnServer::relay_bound`]); datagrams to the SFU leave from it ([`Output::ToPeer`]) and the
//! SFU's answers come back into [`TurnServer::handle_peer`].
//!
//! Authentication is the long-term credential mechanism (RFC 8489 §9.2) with REST-API
//! credentials ([`super::credentials`]): an unauthenticated request is challenged with 401,
//! REALM and NONCE; wrong or expired credentials get 401 again; a request for someone else's
//! allocation gets 441.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use stun::attributes::{ATTR_NONCE, ATTR_REALM, ATTR_USERNAME, ATTR_XOR_PEER_ADDRESS, AttrType};
use stun::error_code::{
    CODE_ALLOC_MISMATCH, CODE_ALLOC_QUOTA_REACHED, CODE_BAD_REQUEST, CODE_FORBIDDEN,
    CODE_INSUFFICIENT_CAPACITY, CODE_STALE_NONCE, CODE_UNAUTHORIZED, CODE_UNSUPPORTED_TRANS_PROTO,
    CODE_WRONG_CREDENTIALS, ErrorCode, ErrorCodeAttribute,
};
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::{
    CLASS_ERROR_RESPONSE, CLASS_INDICATION, CLASS_REQUEST, CLASS_SUCCESS_RESPONSE, Getter,
    METHOD_ALLOCATE, METHOD_BINDING, METHOD_CHANNEL_BIND, METHOD_CREATE_PERMISSION, METHOD_DATA,
    METHOD_REFRESH, METHOD_SEND, Message, MessageType, Method, Setter, TransactionId,
};
use stun::textattrs::TextAttribute;
use stun::xoraddr::XorMappedAddress;
use turn_proto::proto::PROTO_UDP;
use turn_proto::proto::chandata::ChannelData;
use turn_proto::proto::channum::ChannelNumber;
use turn_proto::proto::data::Data;
use turn_proto::proto::lifetime::Lifetime;
use turn_proto::proto::peeraddr::PeerAddress;
use turn_proto::proto::relayaddr::RelayedAddress;
use turn_proto::proto::reqtrans::RequestedTransport;

use super::credentials::{TurnSecret, UsernameRefusal, user_of};

/// An allocation's lifetime when the client asks for none (RFC 8656 §7.2).
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(600);
/// The longest lifetime granted (RFC 8656 recommends at most an hour).
pub const MAX_LIFETIME: Duration = Duration::from_secs(3600);
/// A permission lives this long unless refreshed (RFC 8656 §9).
pub const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
/// A channel binding lives this long unless refreshed (RFC 8656 §12).
pub const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);
/// Channel numbers a client may bind (RFC 8656 §12).
const CHANNELS: std::ops::RangeInclusive<u16> = 0x4000..=0x4FFF;

/// How a client reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// TURN over UDP.
    Udp,
    /// TURN over TCP.
    Tcp,
    /// TURN over TLS on TCP.
    Tls,
}

impl Transport {
    /// `udp`, `tcp`, `tls` (metric label and log text).
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

/// One client: its transport and address, and for TCP/TLS the connection (a 5-tuple).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientId {
    /// How it reaches us.
    pub transport: Transport,
    /// Its address.
    pub addr: SocketAddr,
    /// The connection's number (0 for UDP).
    pub connection: u64,
}

/// Identifies an allocation (and its relay socket in the shell).
pub type AllocationId = u64;

/// An address of the SFU a client may relay to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SfuAddr {
    /// The address the SFU advertises in its ICE candidates (what clients name).
    pub advertised: SocketAddr,
    /// Where the relay actually sends to reach it (differs for an `EXTERNAL_IP` behind NAT).
    pub actual: SocketAddr,
}

/// The server's settings.
#[derive(Debug, Clone)]
pub struct TurnServerConfig {
    /// The REALM of the long-term credentials.
    pub realm: String,
    /// Signs and checks the credentials.
    pub secret: TurnSecret,
    /// The nonce handed out with every challenge (random, from the shell).
    pub nonce: String,
    /// The only addresses relayed to.
    pub sfu: Vec<SfuAddr>,
    /// Most allocations at once (more: 508).
    pub max_allocations: usize,
    /// Most allocations of one user (peer) at once (more: 486).
    pub max_allocations_per_user: usize,
}

/// What a refusal was about (for the log line and the `turn_refusals` metric).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The error code sent (0: a datagram dropped without an answer).
    pub code: u16,
    /// Fixed label: `bad_credentials`, `expired`, `forbidden_peer`, `user_quota`,
    /// `total_quota`, `mismatch`, `bad_request`, `no_permission`, `malformed`.
    pub reason: &'static str,
    /// Details for the log (username, addresses).
    pub detail: String,
}

/// A request refused: the error code answered and the refusal logged.
struct Reject {
    code: ErrorCode,
    reason: &'static str,
    detail: String,
}

impl Reject {
    fn new(code: ErrorCode, reason: &'static str, detail: String) -> Self {
        Reject {
            code,
            reason,
            detail,
        }
    }
}

/// The attributes of a success answer.
type Attributes = Vec<Box<dyn Setter>>;

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `bytes` to `client` (over its transport).
    ToClient {
        /// Who.
        client: ClientId,
        /// A STUN message or ChannelData.
        bytes: Vec<u8>,
    },
    /// Send `bytes` from the relay socket of `allocation` to `to` (an [`SfuAddr::actual`]).
    ToPeer {
        /// Whose relay socket.
        allocation: AllocationId,
        /// The SFU's address.
        to: SocketAddr,
        /// The datagram.
        bytes: Vec<u8>,
    },
    /// Bind a relay socket for `allocation` (IPv6 when `ipv6`), then call
    /// [`TurnServer::relay_bound`].
    BindRelay {
        /// The new allocation.
        allocation: AllocationId,
        /// Which family the relay should have (the client's).
        ipv6: bool,
    },
    /// The allocation ended: close its relay socket.
    CloseRelay {
        /// The allocation.
        allocation: AllocationId,
    },
    /// A request was refused or a datagram dropped (log it, count it).
    Refused {
        /// Who sent it.
        client: ClientId,
        /// Why.
        refusal: Refusal,
    },
}

struct Allocation {
    client: ClientId,
    /// The Allocate request, answered once the relay is bound and again on a retransmit.
    request: Message,
    username: String,
    user: String,
    key: Vec<u8>,
    /// The relayed address; `None` while the shell binds the socket.
    relay: Option<SocketAddr>,
    /// The lifetime granted in the Allocate answer (counted from the bind).
    lifetime: Duration,
    expires: Instant,
    permissions: HashMap<IpAddr, Instant>,
    /// Channel number → (advertised SFU address, expiry).
    channels: HashMap<u16, (SocketAddr, Instant)>,
}

impl Allocation {
    fn permitted(&self, ip: IpAddr, now: Instant) -> bool {
        self.permissions.get(&ip).is_some_and(|t| *t > now)
    }

    fn channel_to(&self, peer: SocketAddr, now: Instant) -> Option<u16> {
        self.channels
            .iter()
            .find(|(_, (p, t))| *p == peer && *t > now)
            .map(|(n, _)| *n)
    }
}

/// The authenticated sender of a request.
struct Authenticated {
    username: String,
    user: String,
    key: Vec<u8>,
}

/// The TURN server's state (see the module docs).
pub struct TurnServer {
    config: TurnServerConfig,
    allocations: HashMap<AllocationId, Allocation>,
    by_client: HashMap<ClientId, AllocationId>,
    next_id: AllocationId,
    /// Counter for the transaction ids of Data indications.
    next_indication: u64,
}

impl TurnServer {
    /// A server with no allocations.
    pub fn new(config: TurnServerConfig) -> Self {
        TurnServer {
            config,
            allocations: HashMap::new(),
            by_client: HashMap::new(),
            next_id: 1,
            next_indication: 0,
        }
    }

    /// Allocations open (or being bound).
    pub fn allocations(&self) -> usize {
        self.allocations.len()
    }

    /// The earliest instant something expires.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.allocations.values().map(|a| a.expires).min()
    }

    /// A datagram or framed message from `client` (`unix_now`: wall-clock seconds, for the
    /// credentials' expiry).
    pub fn handle_client(
        &mut self,
        now: Instant,
        unix_now: u64,
        client: ClientId,
        bytes: &[u8],
    ) -> Vec<Output> {
        let mut out = Vec::new();
        if bytes.first().is_some_and(|b| b & 0xC0 == 0x40) {
            self.channel_data_from_client(now, client, bytes, &mut out);
            return out;
        }
        let mut msg = Message::new();
        if msg.unmarshal_binary(bytes).is_err() {
            out.push(refused(
                client,
                0,
                "malformed",
                "not STUN or ChannelData".into(),
            ));
            return out;
        }
        let method = msg.typ.method;
        if msg.typ.class == CLASS_INDICATION {
            if method == METHOD_SEND {
                self.send_indication(now, client, &msg, &mut out);
            }
            return out;
        }
        if msg.typ.class != CLASS_REQUEST {
            return out;
        }
        if method == METHOD_BINDING {
            let mapped = XorMappedAddress {
                ip: client.addr.ip(),
                port: client.addr.port(),
            };
            out.push(to_client(
                client,
                success(&msg, vec![Box::new(mapped)], None),
            ));
            return out;
        }
        if ![
            METHOD_ALLOCATE,
            METHOD_REFRESH,
            METHOD_CREATE_PERMISSION,
            METHOD_CHANNEL_BIND,
        ]
        .contains(&method)
        {
            let reason = "unknown method";
            let reject = Reject::new(CODE_BAD_REQUEST, reason, String::new());
            self.reject(&mut out, client, &msg, None, reject);
            return out;
        }
        let auth = match self.authenticate(unix_now, client, &mut msg) {
            Ok(auth) => auth,
            Err(answer) => return answer,
        };
        let key = auth.key.clone();
        if method == METHOD_REFRESH
            && requested_lifetime(&msg).is_zero()
            && !self.by_client.contains_key(&client)
        {
            // A delete of an allocation already gone: a retransmission whose first copy
            // deleted it, or a late one after it expired. 437 tells the client it is gone,
            // which counts as success (RFC 8656 §7.4); nothing was refused.
            let crypto = self.config.secret.crypto().crypto();
            let answer =
                error_response(&msg, CODE_ALLOC_MISMATCH, Vec::new(), Some((&key, crypto)));
            out.push(to_client(client, answer));
            return out;
        }
        let answered = match method {
            METHOD_ALLOCATE => self.allocate(now, client, &msg, auth, &mut out),
            _ => self.on_allocation(now, client, &msg, &auth.username, &mut out),
        };
        if let Err(reject) = answered {
            self.reject(&mut out, client, &msg, Some(&key), reject);
        }
        out
    }

    /// Refresh, CreatePermission and ChannelBind, on the allocation of `client`, which must be
    /// `username`'s.
    fn on_allocation(
        &mut self,
        now: Instant,
        client: ClientId,
        msg: &Message,
        username: &str,
        out: &mut Vec<Output>,
    ) -> Result<(), Reject> {
        let Some(&id) = self.by_client.get(&client) else {
            let detail = format!("no allocation for {}", client.addr);
            return Err(Reject::new(CODE_ALLOC_MISMATCH, "mismatch", detail));
        };
        let a = &self.allocations[&id];
        if a.username != username {
            let detail = format!("{username} is not the allocation's user");
            return Err(Reject::new(
                CODE_WRONG_CREDENTIALS,
                "bad_credentials",
                detail,
            ));
        }
        let key = a.key.clone();
        let attributes = match msg.typ.method {
            METHOD_REFRESH => self.refresh(now, id, msg),
            METHOD_CREATE_PERMISSION => self.create_permission(now, id, msg)?,
            _ => self.channel_bind(now, id, msg)?,
        };
        let crypto = self.config.secret.crypto().crypto();
        out.push(to_client(
            client,
            signed_success(msg, attributes, &key, crypto),
        ));
        if !self.allocations.contains_key(&id) {
            // Refreshed with lifetime 0: deleted after the answer.
            out.push(Output::CloseRelay { allocation: id });
        }
        Ok(())
    }

    /// The shell bound (or failed to bind) the relay socket of `allocation`: answers the
    /// Allocate request.
    pub fn relay_bound(
        &mut self,
        now: Instant,
        allocation: AllocationId,
        relay: Option<SocketAddr>,
    ) -> Vec<Output> {
        let mut out = Vec::new();
        let Some(a) = self.allocations.get_mut(&allocation) else {
            return out;
        };
        let client = a.client;
        match relay {
            Some(relay) => {
                a.relay = Some(relay);
                a.expires = now + a.lifetime;
                let crypto = self.config.secret.crypto().crypto();
                out.push(to_client(client, allocate_success(&a.request, a, crypto)));
            }
            None => {
                let (key, request) = (a.key.clone(), a.request.clone());
                self.remove(allocation, &mut out);
                let detail = "no relay port could be bound".to_owned();
                let code = CODE_INSUFFICIENT_CAPACITY;
                let reject = Reject::new(code, "total_quota", detail);
                self.reject(&mut out, client, &request, Some(&key), reject);
            }
        }
        out
    }

    /// A datagram that the relay socket of `allocation` received from `from`.
    pub fn handle_peer(
        &mut self,
        now: Instant,
        allocation: AllocationId,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Vec<Output> {
        let mut out = Vec::new();
        let Some(a) = self.allocations.get(&allocation) else {
            return out;
        };
        // The advertised SFU address the client knows this sender as, among those it permitted.
        let peer = self
            .config
            .sfu
            .iter()
            .filter(|s| s.actual == from && a.permitted(s.advertised.ip(), now))
            .max_by_key(|s| {
                (
                    a.channel_to(s.advertised, now).is_some(),
                    s.advertised == from,
                )
            })
            .map(|s| s.advertised);
        let Some(peer) = peer else {
            let detail = format!("datagram from {from} without a permission");
            out.push(refused(a.client, 0, "no_permission", detail));
            return out;
        };
        let bytes = match a.channel_to(peer, now) {
            Some(number) => {
                let mut data = ChannelData {
                    data: bytes.to_vec(),
                    number: ChannelNumber(number),
                    raw: Vec::with_capacity(bytes.len() + 8),
                };
                data.encode();
                data.raw
            }
            None => {
                let client = a.client;
                self.next_indication += 1;
                let mut id = [0u8; 12];
                id[4..].copy_from_slice(&self.next_indication.to_be_bytes());
                let mut msg = Message::new();
                let built = msg.build(&[
                    Box::new(MessageType::new(METHOD_DATA, CLASS_INDICATION)),
                    Box::new(TransactionId(id)),
                    Box::new(PeerAddress {
                        ip: peer.ip(),
                        port: peer.port(),
                    }),
                    Box::new(Data(bytes.to_vec())),
                ]);
                if built.is_err() {
                    return out;
                }
                out.push(to_client(client, msg.raw));
                return out;
            }
        };
        out.push(to_client(a.client, bytes));
        out
    }

    /// Expires allocations, permissions and channels due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        let expired: Vec<AllocationId> = self
            .allocations
            .iter()
            .filter(|(_, a)| a.expires <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.remove(id, &mut out);
        }
        for a in self.allocations.values_mut() {
            a.permissions.retain(|_, t| *t > now);
            a.channels.retain(|_, (_, t)| *t > now);
        }
        out
    }

    /// The TCP or TLS connection of `client` closed: its allocation goes (RFC 8656 §3.1).
    pub fn client_gone(&mut self, client: ClientId) -> Vec<Output> {
        let mut out = Vec::new();
        if let Some(id) = self.by_client.get(&client).copied() {
            self.remove(id, &mut out);
        }
        out
    }

    fn remove(&mut self, id: AllocationId, out: &mut Vec<Output>) {
        if let Some(a) = self.allocations.remove(&id) {
            self.by_client.remove(&a.client);
            out.push(Output::CloseRelay { allocation: id });
        }
    }

    /// Checks USERNAME, REALM, NONCE and MESSAGE-INTEGRITY; the error answer (and the
    /// refusal, if it is one) otherwise.
    fn authenticate(
        &self,
        unix_now: u64,
        client: ClientId,
        msg: &mut Message,
    ) -> Result<Authenticated, Vec<Output>> {
        let text = |m: &Message, attr: AttrType| TextAttribute::get_from_as(m, attr).ok();
        let (Some(username), Some(_realm), Some(nonce)) = (
            text(msg, ATTR_USERNAME),
            text(msg, ATTR_REALM),
            text(msg, ATTR_NONCE),
        ) else {
            // The first request of every client: the challenge, not a refusal.
            return Err(vec![to_client(
                client,
                self.challenge(msg, CODE_UNAUTHORIZED),
            )]);
        };
        if nonce.text != self.config.nonce {
            return Err(vec![to_client(
                client,
                self.challenge(msg, CODE_STALE_NONCE),
            )]);
        }
        let username = username.text;
        // Wrong or expired credentials get the challenge again (a client may retry once).
        let challenge = to_client(client, self.challenge(msg, CODE_UNAUTHORIZED));
        let refuse = |reason: &'static str, detail: String| {
            vec![challenge.clone(), refused(client, 401, reason, detail)]
        };
        let user = match user_of(&username, unix_now) {
            Ok(user) => user.to_owned(),
            Err(UsernameRefusal::Expired) => {
                return Err(refuse("expired", format!("username {username:?} expired")));
            }
            Err(UsernameRefusal::Malformed) => {
                let detail = format!("username {username:?} malformed");
                return Err(refuse("bad_credentials", detail));
            }
        };
        let key = self
            .config
            .secret
            .long_term_key(&username, &self.config.realm);
        let crypto = self.config.secret.crypto().crypto();
        if MessageIntegrity::check(msg, &key, crypto).is_err() {
            let detail = format!("username {username:?}: wrong password");
            return Err(refuse("bad_credentials", detail));
        }
        Ok(Authenticated {
            username,
            user,
            key,
        })
    }

    /// A 401 or 438 with REALM and NONCE.
    fn challenge(&self, req: &Message, code: ErrorCode) -> Vec<u8> {
        let realm = TextAttribute::new(ATTR_REALM, self.config.realm.clone());
        let nonce = TextAttribute::new(ATTR_NONCE, self.config.nonce.clone());
        error_response(req, code, vec![Box::new(realm), Box::new(nonce)], None)
    }

    /// Pushes the error answer of `reject` to `req` (signed with `key` when the sender
    /// authenticated) and the refusal it is.
    fn reject(
        &self,
        out: &mut Vec<Output>,
        client: ClientId,
        req: &Message,
        key: Option<&[u8]>,
        reject: Reject,
    ) {
        let crypto = self.config.secret.crypto().crypto();
        let bytes = error_response(req, reject.code, Vec::new(), key.map(|k| (k, crypto)));
        out.push(to_client(client, bytes));
        out.push(refused(client, reject.code.0, reject.reason, reject.detail));
    }

    /// Allocate: checks the transport and the quotas, then asks the shell for a relay socket
    /// (the answer follows in [`TurnServer::relay_bound`]); a retransmission is answered again.
    fn allocate(
        &mut self,
        now: Instant,
        client: ClientId,
        msg: &Message,
        auth: Authenticated,
        out: &mut Vec<Output>,
    ) -> Result<(), Reject> {
        if let Some(id) = self.by_client.get(&client) {
            let a = &self.allocations[id];
            if a.request.transaction_id != msg.transaction_id {
                let detail = format!("{} already has an allocation", client.addr);
                return Err(Reject::new(CODE_ALLOC_MISMATCH, "mismatch", detail));
            }
            if a.relay.is_some() {
                let crypto = self.config.secret.crypto().crypto();
                out.push(to_client(client, allocate_success(&a.request, a, crypto)));
            }
            return Ok(());
        }
        let mut transport = RequestedTransport::default();
        if transport.get_from(msg).is_err() {
            let detail = "no REQUESTED-TRANSPORT".to_owned();
            return Err(Reject::new(CODE_BAD_REQUEST, "bad_request", detail));
        }
        if transport.protocol != PROTO_UDP {
            let detail = format!("REQUESTED-TRANSPORT {}", transport.protocol);
            let code = CODE_UNSUPPORTED_TRANS_PROTO;
            return Err(Reject::new(code, "bad_request", detail));
        }
        let of_user = self
            .allocations
            .values()
            .filter(|a| a.user == auth.user)
            .count();
        if of_user >= self.config.max_allocations_per_user {
            let detail = format!("user {} has {of_user} allocations", auth.user);
            return Err(Reject::new(CODE_ALLOC_QUOTA_REACHED, "user_quota", detail));
        }
        if self.allocations.len() >= self.config.max_allocations {
            let detail = format!("{} allocations open", self.allocations.len());
            return Err(Reject::new(
                CODE_INSUFFICIENT_CAPACITY,
                "total_quota",
                detail,
            ));
        }
        let id = self.next_id;
        self.next_id += 1;
        self.allocations.insert(
            id,
            Allocation {
                client,
                request: msg.clone(),
                username: auth.username,
                user: auth.user,
                key: auth.key,
                relay: None,
                lifetime: requested_lifetime(msg),
                // Until the relay is bound; a shell that never answers leaves no allocation.
                expires: now + Duration::from_secs(5),
                permissions: HashMap::new(),
                channels: HashMap::new(),
            },
        );
        self.by_client.insert(client, id);
        out.push(Output::BindRelay {
            allocation: id,
            ipv6: client.addr.is_ipv6(),
        });
        Ok(())
    }

    /// Refresh: a new lifetime (0 deletes the allocation); the answer's attributes.
    fn refresh(&mut self, now: Instant, id: AllocationId, msg: &Message) -> Attributes {
        let lifetime = requested_lifetime(msg);
        if lifetime.is_zero() {
            if let Some(a) = self.allocations.remove(&id) {
                self.by_client.remove(&a.client);
            }
        } else if let Some(a) = self.allocations.get_mut(&id) {
            a.expires = now + lifetime;
        }
        vec![Box::new(Lifetime(lifetime))]
    }

    /// CreatePermission: every XOR-PEER-ADDRESS must be an address of the SFU (else 403 and
    /// none is installed).
    fn create_permission(
        &mut self,
        now: Instant,
        id: AllocationId,
        msg: &Message,
    ) -> Result<Attributes, Reject> {
        let peers = peer_addresses(msg);
        if peers.is_empty() {
            let detail = "no XOR-PEER-ADDRESS".to_owned();
            return Err(Reject::new(CODE_BAD_REQUEST, "bad_request", detail));
        }
        if let Some(bad) = peers.iter().find(|p| !self.is_sfu_ip(p.ip())) {
            let detail = format!("permission for {bad}, not the SFU");
            return Err(Reject::new(CODE_FORBIDDEN, "forbidden_peer", detail));
        }
        if let Some(a) = self.allocations.get_mut(&id) {
            for p in &peers {
                a.permissions.insert(p.ip(), now + PERMISSION_LIFETIME);
            }
        }
        Ok(Vec::new())
    }

    /// ChannelBind: the peer must be the SFU's address exactly (else 403); a number or peer
    /// bound otherwise already is 400. Refreshes the permission of the peer's IP too.
    fn channel_bind(
        &mut self,
        now: Instant,
        id: AllocationId,
        msg: &Message,
    ) -> Result<Attributes, Reject> {
        let mut number = ChannelNumber::default();
        let mut peer = PeerAddress::default();
        let valid = number.get_from(msg).is_ok()
            && peer.get_from(msg).is_ok()
            && CHANNELS.contains(&number.0);
        let peer = SocketAddr::new(peer.ip, peer.port);
        if !valid {
            let detail = "bad CHANNEL-NUMBER or XOR-PEER-ADDRESS".to_owned();
            return Err(Reject::new(CODE_BAD_REQUEST, "bad_request", detail));
        }
        if !self.config.sfu.iter().any(|s| s.advertised == peer) {
            let detail = format!("channel to {peer}, not the SFU");
            return Err(Reject::new(CODE_FORBIDDEN, "forbidden_peer", detail));
        }
        let a = &self.allocations[&id];
        let taken = a.channels.get(&number.0).is_some_and(|(p, _)| *p != peer)
            || a.channel_to(peer, now).is_some_and(|n| n != number.0);
        if taken {
            let detail = format!("channel {:#x} or {peer} bound otherwise", number.0);
            return Err(Reject::new(CODE_BAD_REQUEST, "bad_request", detail));
        }
        if let Some(a) = self.allocations.get_mut(&id) {
            a.channels.insert(number.0, (peer, now + CHANNEL_LIFETIME));
            let permission = a.permissions.entry(peer.ip()).or_insert(now);
            *permission = (*permission).max(now + PERMISSION_LIFETIME);
        }
        Ok(Vec::new())
    }

    fn send_indication(
        &mut self,
        now: Instant,
        client: ClientId,
        msg: &Message,
        out: &mut Vec<Output>,
    ) {
        let Some(&id) = self.by_client.get(&client) else {
            return;
        };
        let mut peer = PeerAddress::default();
        let mut data = Data::default();
        if peer.get_from(msg).is_err() || data.get_from(msg).is_err() {
            out.push(refused(
                client,
                0,
                "malformed",
                "Send without peer or data".into(),
            ));
            return;
        }
        let peer = SocketAddr::new(peer.ip, peer.port);
        self.relay_to_sfu(now, id, peer, data.0, out);
    }

    fn channel_data_from_client(
        &mut self,
        now: Instant,
        client: ClientId,
        bytes: &[u8],
        out: &mut Vec<Output>,
    ) {
        let Some(&id) = self.by_client.get(&client) else {
            return;
        };
        let mut data = ChannelData {
            raw: bytes.to_vec(),
            ..ChannelData::default()
        };
        if data.decode().is_err() {
            out.push(refused(client, 0, "malformed", "bad ChannelData".into()));
            return;
        }
        let a = &self.allocations[&id];
        let Some((peer, _)) = a.channels.get(&data.number.0).filter(|(_, t)| *t > now) else {
            let detail = format!("ChannelData on unbound channel {:#x}", data.number.0);
            out.push(refused(client, 0, "no_permission", detail));
            return;
        };
        let peer = *peer;
        self.relay_to_sfu(now, id, peer, data.data, out);
    }

    /// Relays `bytes` to the SFU address `peer` if it is one and permitted; else drops them.
    fn relay_to_sfu(
        &mut self,
        now: Instant,
        id: AllocationId,
        peer: SocketAddr,
        bytes: Vec<u8>,
        out: &mut Vec<Output>,
    ) {
        let a = &self.allocations[&id];
        let Some(sfu) = self.config.sfu.iter().find(|s| s.advertised == peer) else {
            out.push(refused(
                a.client,
                403,
                "forbidden_peer",
                format!("Send to {peer}, not the SFU"),
            ));
            return;
        };
        if !a.permitted(peer.ip(), now) || a.relay.is_none() {
            out.push(refused(
                a.client,
                0,
                "no_permission",
                format!("Send to {peer} without a permission"),
            ));
            return;
        }
        out.push(Output::ToPeer {
            allocation: id,
            to: sfu.actual,
            bytes,
        });
    }

    fn is_sfu_ip(&self, ip: IpAddr) -> bool {
        self.config.sfu.iter().any(|s| s.advertised.ip() == ip)
    }
}

fn to_client(client: ClientId, bytes: Vec<u8>) -> Output {
    Output::ToClient { client, bytes }
}

fn refused(client: ClientId, code: u16, reason: &'static str, detail: String) -> Output {
    Output::Refused {
        client,
        refusal: Refusal {
            code,
            reason,
            detail,
        },
    }
}

type Setters<'a> = Vec<Box<dyn Setter + 'a>>;

/// A response of `class` to `req` with `attributes`, MESSAGE-INTEGRITY (when `key` is given)
/// and FINGERPRINT.
fn response(
    req: &Message,
    class: stun::message::MessageClass,
    attributes: Setters<'_>,
    key: Option<(&[u8], &dyn stun::crypto::RTCCrypto)>,
) -> Vec<u8> {
    let method: Method = req.typ.method;
    let mut setters: Setters<'_> = vec![
        Box::new(MessageType::new(method, class)),
        Box::new(req.transaction_id),
    ];
    setters.extend(attributes);
    if let Some((key, crypto)) = key {
        setters.push(Box::new(MessageIntegrity::new_raw_integrity_with_provider(
            key.to_vec(),
            crypto,
        )));
    }
    setters.push(Box::new(FINGERPRINT));
    let mut msg = Message::new();
    match msg.build(&setters) {
        Ok(()) => msg.raw,
        Err(e) => {
            // Only our own attributes are encoded here; none can overflow.
            log::error!("turn: cannot encode a response: {e}");
            Vec::new()
        }
    }
}

fn success(
    req: &Message,
    attributes: Setters<'_>,
    key: Option<(&[u8], &dyn stun::crypto::RTCCrypto)>,
) -> Vec<u8> {
    response(req, CLASS_SUCCESS_RESPONSE, attributes, key)
}

fn signed_success(
    req: &Message,
    attributes: Setters<'_>,
    key: &[u8],
    crypto: &dyn stun::crypto::RTCCrypto,
) -> Vec<u8> {
    success(req, attributes, Some((key, crypto)))
}

fn error_response(
    req: &Message,
    code: ErrorCode,
    mut attributes: Setters<'_>,
    key: Option<(&[u8], &dyn stun::crypto::RTCCrypto)>,
) -> Vec<u8> {
    let reason = stun::error_code::ERROR_REASONS
        .get(&code)
        .cloned()
        .unwrap_or_default();
    attributes.insert(0, Box::new(ErrorCodeAttribute { code, reason }));
    response(req, CLASS_ERROR_RESPONSE, attributes, key)
}

/// The Allocate success answer: relayed and mapped addresses, lifetime, signed.
fn allocate_success(
    req: &Message,
    a: &Allocation,
    crypto: &dyn stun::crypto::RTCCrypto,
) -> Vec<u8> {
    let relay = a.relay.unwrap_or(a.client.addr);
    let attributes: Setters<'_> = vec![
        Box::new(RelayedAddress {
            ip: relay.ip(),
            port: relay.port(),
        }),
        Box::new(Lifetime(a.lifetime)),
        Box::new(XorMappedAddress {
            ip: a.client.addr.ip(),
            port: a.client.addr.port(),
        }),
    ];
    signed_success(req, attributes, &a.key, crypto)
}

/// The LIFETIME asked for (default when absent), at most [`MAX_LIFETIME`].
fn requested_lifetime(msg: &Message) -> Duration {
    let mut lifetime = Lifetime::default();
    match lifetime.get_from(msg) {
        Ok(()) => lifetime.0.min(MAX_LIFETIME),
        Err(_) => DEFAULT_LIFETIME,
    }
}

/// Every XOR-PEER-ADDRESS of `msg` (CreatePermission may carry several), each decoded by the
/// crate from a message of its own with the same transaction id.
fn peer_addresses(msg: &Message) -> Vec<SocketAddr> {
    msg.attributes
        .0
        .iter()
        .filter(|a| a.typ == ATTR_XOR_PEER_ADDRESS)
        .filter_map(|attr| {
            let mut one = Message::new();
            one.transaction_id = msg.transaction_id;
            one.write_transaction_id();
            one.add(ATTR_XOR_PEER_ADDRESS, &attr.value);
            let mut peer = PeerAddress::default();
            peer.get_from(&one).ok()?;
            Some(SocketAddr::new(peer.ip, peer.port))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtc::turn::client::{Attributes, LongTermAuth, message};

    const NOW_UNIX: u64 = 1_000_000;
    const SFU: &str = "198.51.100.1:50000";

    fn sfu() -> SocketAddr {
        SFU.parse().expect("addr")
    }

    fn server() -> TurnServer {
        TurnServer::new(TurnServerConfig {
            realm: "videoroom".into(),
            secret: TurnSecret::new("secret").expect("provider"),
            nonce: "nonce".into(),
            sfu: vec![SfuAddr {
                advertised: sfu(),
                actual: sfu(),
            }],
            max_allocations: 10,
            max_allocations_per_user: 10,
        })
    }

    fn client(port: u16) -> ClientId {
        ClientId {
            transport: Transport::Udp,
            addr: SocketAddr::from(([192, 0, 2, 7], port)),
            connection: 0,
        }
    }

    fn auth(user: &str) -> LongTermAuth {
        let secret = TurnSecret::new("secret").expect("provider");
        LongTermAuth {
            credentials: secret.issue(user, NOW_UNIX, Duration::from_secs(3600)),
            realm: "videoroom".into(),
            nonce: "nonce".into(),
        }
    }

    /// A signed request of `user` with `transaction`, handled at `now`; binds any relay asked.
    fn request(
        server: &mut TurnServer,
        now: Instant,
        from: ClientId,
        user: &str,
        (method, transaction): (Method, u8),
        attributes: Attributes<'_>,
    ) -> Vec<Output> {
        let bytes = message(
            method,
            CLASS_REQUEST,
            [transaction; 12],
            attributes,
            Some(&auth(user)),
        )
        .expect("request");
        let mut out = server.handle_client(now, NOW_UNIX, from, &bytes);
        if let Some(Output::BindRelay { allocation, .. }) = out.first().cloned() {
            let relay = SocketAddr::from(([198, 51, 100, 1], 40000));
            out = server.relay_bound(now, allocation, Some(relay));
        }
        out
    }

    /// The answers sent to the client: (error code or 0, LIFETIME if any).
    fn answers(out: &[Output]) -> Vec<(u16, Option<Duration>)> {
        out.iter()
            .filter_map(|o| match o {
                Output::ToClient { bytes, .. } => {
                    let mut msg = Message::new();
                    msg.unmarshal_binary(bytes).ok()?;
                    let mut code = ErrorCodeAttribute::default();
                    let code = code.get_from(&msg).map_or(0, |()| code.code.0);
                    let mut lifetime = Lifetime::default();
                    let lifetime = lifetime.get_from(&msg).ok().map(|()| lifetime.0);
                    Some((code, lifetime))
                }
                _ => None,
            })
            .collect()
    }

    fn allocate_attributes(lifetime: Option<u64>) -> Attributes<'static> {
        let mut attributes: Attributes<'static> = vec![Box::new(RequestedTransport {
            protocol: PROTO_UDP,
        })];
        if let Some(secs) = lifetime {
            attributes.push(Box::new(Lifetime(Duration::from_secs(secs))));
        }
        attributes
    }

    /// A signed Allocate of user `p` with `transaction` and LIFETIME `lifetime` (seconds).
    fn allocate(
        s: &mut TurnServer,
        now: Instant,
        from: ClientId,
        (transaction, lifetime): (u8, Option<u64>),
    ) -> Vec<Output> {
        let attributes = allocate_attributes(lifetime);
        request(
            s,
            now,
            from,
            "p",
            (METHOD_ALLOCATE, transaction),
            attributes,
        )
    }

    fn closed(out: &[Output]) -> bool {
        out.iter()
            .any(|o| matches!(o, Output::CloseRelay { allocation: 1 }))
    }

    #[test]
    fn an_allocation_lives_its_lifetime_and_a_refresh_extends_it() {
        let (mut s, t0, c) = (server(), Instant::now(), client(1));
        let out = allocate(&mut s, t0, c, (1, Some(100)));
        assert_eq!(answers(&out), [(0, Some(Duration::from_secs(100)))]);
        assert!(!closed(&s.handle_timeout(t0 + Duration::from_secs(99))));
        let at = t0 + Duration::from_secs(50);
        let lifetime: Attributes<'_> = vec![Box::new(Lifetime(Duration::from_secs(200)))];
        let out = request(&mut s, at, c, "p", (METHOD_REFRESH, 2), lifetime);
        assert_eq!(answers(&out), [(0, Some(Duration::from_secs(200)))]);
        assert!(!closed(&s.handle_timeout(t0 + Duration::from_secs(249))));
        assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(250)));
        assert!(closed(&s.handle_timeout(t0 + Duration::from_secs(250))));
        assert_eq!(s.allocations(), 0);
    }

    #[test]
    fn a_lifetime_over_an_hour_is_granted_as_an_hour_and_none_as_ten_minutes() {
        let (mut s, t0) = (server(), Instant::now());
        let long = allocate_attributes(Some(86400));
        let out = request(&mut s, t0, client(1), "p", (METHOD_ALLOCATE, 1), long);
        assert_eq!(answers(&out), [(0, Some(MAX_LIFETIME))]);
        let none = allocate_attributes(None);
        let out = request(&mut s, t0, client(2), "p", (METHOD_ALLOCATE, 2), none);
        assert_eq!(answers(&out), [(0, Some(DEFAULT_LIFETIME))]);
    }

    #[test]
    fn a_retransmitted_allocate_gets_the_same_answer_and_a_new_one_437() {
        let (mut s, t0, c) = (server(), Instant::now(), client(1));
        let first = allocate(&mut s, t0, c, (1, None));
        let again = allocate(&mut s, t0, c, (1, None));
        assert_eq!(first, again);
        let other = allocate(&mut s, t0, c, (2, None));
        assert_eq!(answers(&other), [(437, None)]);
        assert_eq!(s.allocations(), 1);
    }

    #[test]
    fn a_delete_repeated_after_the_allocation_went_gets_437_and_is_no_refusal() {
        let (mut s, t0, c) = (server(), Instant::now(), client(1));
        allocate(&mut s, t0, c, (1, None));
        let delete = || -> Attributes<'static> { vec![Box::new(Lifetime(Duration::ZERO))] };
        let out = request(&mut s, t0, c, "p", (METHOD_REFRESH, 2), delete());
        assert_eq!(answers(&out), [(0, Some(Duration::ZERO))]);
        assert!(closed(&out));
        let again = request(&mut s, t0, c, "p", (METHOD_REFRESH, 2), delete());
        assert_eq!(answers(&again), [(437, None)]);
        assert!(!again.iter().any(|o| matches!(o, Output::Refused { .. })));
        let keep: Attributes<'_> = vec![Box::new(Lifetime(Duration::from_secs(60)))];
        let refresh = request(&mut s, t0, c, "p", (METHOD_REFRESH, 3), keep);
        assert_eq!(answers(&refresh), [(437, None)]);
        assert!(refresh.iter().any(|o| matches!(
            o,
            Output::Refused { refusal, .. } if refusal.reason == "mismatch"
        )));
    }

    #[test]
    fn another_users_request_on_an_allocation_gets_441() {
        let (mut s, t0, c) = (server(), Instant::now(), client(1));
        allocate(&mut s, t0, c, (1, None));
        let peer: Attributes<'_> = vec![Box::new(PeerAddress {
            ip: sfu().ip(),
            port: sfu().port(),
        })];
        let out = request(&mut s, t0, c, "q", (METHOD_CREATE_PERMISSION, 2), peer);
        assert_eq!(answers(&out), [(441, None)]);
    }

    #[test]
    fn a_permission_lapses_after_five_minutes_and_then_nothing_is_relayed() {
        let (mut s, t0, c) = (server(), Instant::now(), client(1));
        allocate(&mut s, t0, c, (1, None));
        let peer = || -> Attributes<'static> {
            vec![Box::new(PeerAddress {
                ip: sfu().ip(),
                port: sfu().port(),
            })]
        };
        let out = request(&mut s, t0, c, "p", (METHOD_CREATE_PERMISSION, 2), peer());
        assert_eq!(answers(&out), [(0, None)]);
        let send = |s: &mut TurnServer, at: Instant| {
            let mut attributes = peer();
            attributes.push(Box::new(Data(b"x".to_vec())));
            let bytes = message(METHOD_SEND, CLASS_INDICATION, [3; 12], attributes, None)
                .expect("indication");
            s.handle_client(at, NOW_UNIX, c, &bytes)
        };
        let relayed = |out: &[Output]| out.iter().any(|o| matches!(o, Output::ToPeer { .. }));
        assert!(relayed(&send(&mut s, t0 + Duration::from_secs(299))));
        let answered = |out: &[Output]| out.iter().any(|o| matches!(o, Output::ToClient { .. }));
        let back = s.handle_peer(t0 + Duration::from_secs(299), 1, sfu(), b"y");
        assert!(answered(&back), "{back:?}");
        let lapsed = t0 + PERMISSION_LIFETIME;
        s.handle_timeout(lapsed);
        assert!(!relayed(&send(&mut s, lapsed)));
        let back = s.handle_peer(lapsed, 1, sfu(), b"y");
        assert!(
            matches!(back.as_slice(), [Output::Refused { .. }]),
            "{back:?}"
        );
    }
}
