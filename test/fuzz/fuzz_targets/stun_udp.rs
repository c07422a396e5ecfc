//! STUN and the UDP demux: the ufrag the mux routes a datagram by, then the SFU's own
//! classification (`accepts`) and input (`handle_datagram`, str0m's STUN/DTLS/SRTP parsers) for
//! a room with one negotiated peer.
#![no_main]
use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use videoroom::rtc::ids::PeerId;
use videoroom::rtc::net::{Datagram, Protocol};
use videoroom::rtc::sfu::{Offer, Sfu, SfuConfig, SfuOutput};

const OFFER: &str = include_str!("../../fixtures/sdp/chromium-156/publisher-first-offer.sdp");

thread_local! {
    static SFU: RefCell<Sfu> = RefCell::new({
        let now = Instant::now();
        let mut sfu = Sfu::new(
            SfuConfig {
                room: "fuzz".into(),
                local_addrs: vec!["127.0.0.1:50000".parse().unwrap()],
                ..SfuConfig::default()
            },
            now,
        );
        let peer = PeerId::new_v4();
        sfu.add_peer(peer, now);
        let offer = Offer { sdp: OFFER, producers: &Default::default(), consumers: &[] };
        sfu.handle_offer(peer, offer, now)
            .expect("the fixture offer is answered");
        sfu
    });
}

fuzz_target!(|data: &[u8]| {
    let ufrag = videoroom::fuzzing::stun_local_ufrag(data);
    if let Some(u) = ufrag {
        assert!(!u.contains(':'), "the local ufrag stops at the first ':'");
    }
    let source: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let destination: SocketAddr = "0.0.0.0:50000".parse().unwrap();
    SFU.with_borrow_mut(|sfu| {
        let _ = sfu.accepts(source, destination, data);
        sfu.handle_datagram(&Datagram {
            source,
            destination,
            received: Instant::now(),
            protocol: Protocol::Udp,
            contents: Bytes::copy_from_slice(data),
        });
        while !matches!(sfu.poll_output(), SfuOutput::Timeout(_)) {}
    });
});
