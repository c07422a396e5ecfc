//! SDP offers through the media engine and the SFU (str0m parses and answers them): each input
//! is the SDP of an `sdpOffer` media event from a freshly admitted peer, who then leaves.
#![no_main]
use std::cell::RefCell;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use videoroom::rtc::engine::{Engine, EngineOutput};
use videoroom::rtc::ids::PeerId;
use videoroom::rtc::sfu::{Sfu, SfuConfig};

thread_local! {
    // One room for the whole run (its DTLS certificate is made once); every input is a new peer.
    static ENGINE: RefCell<Engine<Sfu>> = RefCell::new(Engine::new(
        "fuzz",
        Sfu::new(
            SfuConfig {
                room: "fuzz".into(),
                local_addrs: vec!["127.0.0.1:50000".parse().unwrap()],
                ..SfuConfig::default()
            },
            Instant::now(),
        ),
    ));
}

fn drain(engine: &mut Engine<Sfu>) -> Vec<PeerId> {
    let mut join_requests = Vec::new();
    loop {
        match engine.poll_output() {
            EngineOutput::Timeout(_) => return join_requests,
            EngineOutput::JoinRequest { peer, .. } => join_requests.push(peer),
            _ => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let sdp = String::from_utf8_lossy(data);
    ENGINE.with_borrow_mut(|engine| {
        let now = Instant::now();
        let peer = PeerId::new_v4();
        engine.handle_media_event(
            peer,
            r#"{"type":"join","data":{"receiveMedia":true,"metadata":{"displayName":"f"}}}"#,
            now,
        );
        for p in drain(engine) {
            engine.accept_peer(p, now);
        }
        drain(engine);
        assert!(engine.is_member(peer), "a joined peer is a member");
        let offer = serde_json::json!({
            "type": "sdpOffer",
            "data": {
                "sdpOffer": {"type": "offer", "sdp": sdp},
                "trackIdToTrackMetadata": {},
                "midToTrackId": {}
            }
        });
        engine.handle_media_event(peer, &offer.to_string(), now);
        drain(engine);
        engine.remove_peer(peer);
        drain(engine);
        assert_eq!(engine.member_count(), 0, "every fuzz peer left");
    });
});
