//! The embedded TURN server's sans-IO core (`TurnServer`, the rtc-stun / rtc-turn parsers it
//! uses) and the stream framing of TURN over TCP/TLS. Each input is a fresh server with one
//! authenticated allocation, then a sequence of operations: raw client datagrams, requests of
//! every TURN method carrying fuzzed attributes but signed with valid credentials (so they get
//! past MESSAGE-INTEGRITY into the attribute parsers), datagrams from the SFU, time passing and
//! stream frame headers. Invariant: nothing is ever relayed to an address other than the SFU's.
#![no_main]
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use stun::attributes::{AttrType, RawAttribute};
use stun::message::{
    CLASS_INDICATION, CLASS_REQUEST, METHOD_ALLOCATE, METHOD_BINDING, METHOD_CHANNEL_BIND,
    METHOD_CREATE_PERMISSION, METHOD_REFRESH, METHOD_SEND,
};
use videoroom::rtc::turn::TurnSecret;
use videoroom::rtc::turn::client::{Attributes, LongTermAuth, message};
use videoroom::rtc::turn::server::{
    ClientId, Output, SfuAddr, Transport, TurnServer, TurnServerConfig,
};
use videoroom::rtc::turn::shell::frame_length;

const UNIX_NOW: u64 = 1_000_000;
const REALM: &str = "videoroom";
const NONCE: &str = "fuzz-nonce";

/// A request (or indication) of `method` with the TLVs of `tlvs` as attributes, signed with
/// `secret`'s credentials for peer `fuzz`.
fn signed(secret: &TurnSecret, method_byte: u8, tlvs: &[u8]) -> Vec<u8> {
    let methods = [
        METHOD_ALLOCATE,
        METHOD_REFRESH,
        METHOD_CREATE_PERMISSION,
        METHOD_CHANNEL_BIND,
        METHOD_SEND,
        METHOD_BINDING,
    ];
    let method = methods[usize::from(method_byte) % methods.len()];
    let class = if method_byte & 0x80 != 0 { CLASS_INDICATION } else { CLASS_REQUEST };
    let mut attributes: Attributes<'_> = Vec::new();
    let mut rest = tlvs;
    while rest.len() >= 4 {
        let typ = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]])).min(rest.len() - 4);
        // Integrity and fingerprint are the signer's.
        if typ != 0x0008 && typ != 0x8028 {
            let value = rest[4..4 + len].to_vec();
            attributes.push(Box::new(RawAttribute { typ: AttrType(typ), length: 0, value }));
        }
        rest = &rest[4 + len..];
    }
    let auth = LongTermAuth {
        credentials: secret.issue("fuzz", UNIX_NOW, Duration::from_secs(600)),
        realm: REALM.into(),
        nonce: NONCE.into(),
    };
    message(method, class, [7; 12], attributes, Some(&auth)).unwrap_or_default()
}

fuzz_target!(|data: &[u8]| {
    let sfu: SocketAddr = "198.51.100.1:50000".parse().unwrap();
    let relay: SocketAddr = "198.51.100.1:40000".parse().unwrap();
    let secret = TurnSecret::new("fuzz").expect("provider");
    let mut server = TurnServer::new(TurnServerConfig {
        realm: REALM.into(),
        secret: secret.clone(),
        nonce: NONCE.into(),
        sfu: vec![SfuAddr { advertised: sfu, actual: sfu }],
        max_allocations: 4,
        max_allocations_per_user: 2,
    });
    let client = ClientId {
        transport: Transport::Tcp,
        addr: "192.0.2.7:5000".parse().unwrap(),
        connection: 1,
    };
    let mut now = Instant::now();
    // Performs the outputs the shell would: binds relays, checks where datagrams go.
    let perform = |server: &mut TurnServer, now: Instant, outputs: Vec<Output>| {
        let mut queue = outputs;
        while let Some(output) = queue.pop() {
            match output {
                Output::BindRelay { allocation, .. } => {
                    queue.extend(server.relay_bound(now, allocation, Some(relay)));
                }
                Output::ToPeer { to, .. } => assert_eq!(to, sfu, "relayed elsewhere than the SFU"),
                _ => {}
            }
        }
    };
    let allocate = signed(&secret, 0, &[0x00, 0x19, 0x00, 0x04, 17, 0, 0, 0]);
    let outputs = server.handle_client(now, UNIX_NOW, client, &allocate);
    perform(&mut server, now, outputs);
    assert_eq!(server.allocations(), 1, "the seed allocation is made");

    let mut rest = data;
    while let [op, len_hi, len_lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*len_hi, *len_lo])).min(tail.len());
        let (chunk, next) = tail.split_at(len);
        rest = next;
        let outputs = match op % 5 {
            0 => server.handle_client(now, UNIX_NOW, client, chunk),
            1 => {
                let (method, tlvs) = chunk.split_first().unwrap_or((&0, &[]));
                let request = signed(&secret, *method, tlvs);
                server.handle_client(now, UNIX_NOW, client, &request)
            }
            2 => server.handle_peer(now, 1, sfu, chunk),
            3 => {
                now += Duration::from_secs(u64::from(chunk.first().copied().unwrap_or(1)) * 10);
                server.handle_timeout(now)
            }
            _ => {
                if let [a, b, c, d, ..] = chunk
                    && let Some(length) = frame_length([*a, *b, *c, *d])
                {
                    assert!((4..=4096).contains(&length), "frame of {length} bytes");
                }
                Vec::new()
            }
        };
        perform(&mut server, now, outputs);
    }
});
