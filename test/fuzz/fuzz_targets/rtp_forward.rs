//! RTP through the SFU's forwarding path: a connected publisher (in-process str0m, so every
//! packet is real SRTP) sends packets whose header fields come from the fuzzer — payload type
//! (any negotiated one, also on the other kind's m-line), sequence jumps backwards and forwards,
//! timestamps, marker, audio level and voice activity, payload bytes — and the SFU decrypts,
//! runs the silence discarder and the per-subscriber rewrite (payload type, sequence numbers),
//! and forwards to a Firefox-flavoured subscriber with other payload types. Virtual time, no
//! sockets: the world of `test/kit/media_world.rs`.
#![no_main]
use std::cell::RefCell;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use str0m::rtp::{ExtensionValues, RtpWrite};
use videoroom::rtc::sfu::SfuEvent;

#[path = "../../kit/media_world.rs"]
mod media_world;
use media_world::{Flavor, World, connected};

/// A Chrome-flavoured publisher (browser 0) and a Firefox-flavoured subscriber (browser 1),
/// connected and negotiated.
fn publisher_and_subscriber() -> World {
    let mut world = World::new(1);
    let publisher = world.add_browser(0, Flavor::Chrome, true);
    let subscriber = world.add_browser(0, Flavor::Firefox, false);
    world.negotiate(publisher, &[]);
    let tracks = world.tracks_of(publisher, true);
    world.negotiate(subscriber, &tracks);
    world.run(Duration::from_millis(500));
    assert!(connected(&world, publisher) && connected(&world, subscriber));
    world
}

thread_local! {
    static WORLD: RefCell<World> = RefCell::new(publisher_and_subscriber());
}

fuzz_target!(|data: &[u8]| {
    WORLD.with(|world| {
        let mut world = world.borrow_mut();
        let now = world.now;
        let publisher = &mut world.browsers[0];
        let pts: Vec<_> = publisher
            .rtc
            .codec_config()
            .iter()
            .map(|c| c.pt())
            .collect();
        // Eight bytes a packet: track, payload type, sequence step (i16), timestamp step,
        // flags (marker, audio level present, voice activity), audio level, payload length.
        for (n, p) in data.chunks_exact(8).take(64).enumerate() {
            let tracks = publisher.send.len();
            let track = &mut publisher.send[p[0] as usize % tracks];
            let pt = pts[p[1] as usize % pts.len()];
            let step = i16::from_be_bytes([p[2], p[3]]);
            track.seq = track.seq.wrapping_add_signed(step as i64) & 0xffff_ffff_ffff;
            track.ts = track.ts.wrapping_add(p[4] as u32 * 90);
            let ext = ExtensionValues {
                audio_level: (p[5] & 2 != 0).then_some(-((p[6] & 0x7f) as i8)),
                voice_activity: (p[5] & 4 != 0).then_some(p[5] & 8 != 0),
                ..Default::default()
            };
            // The world's receivers read (browser index, publisher seq) from the first 9 bytes.
            let mut payload = vec![0u8; 9 + p[7] as usize];
            payload[1..9].copy_from_slice(&track.seq.to_be_bytes());
            for (i, b) in payload[9..].iter_mut().enumerate() {
                *b = data[(n * 8 + i) % data.len()];
            }
            let mid = track.mid;
            let seq = track.seq;
            let ts = track.ts;
            let mut api = publisher.rtc.direct_api();
            if let Some(tx) = api.stream_tx_by_mid(mid, None) {
                tx.write_rtp(
                    RtpWrite::new(pt, seq.into(), ts, now, payload)
                        .marker(p[5] & 1 != 0)
                        .ext_vals(ext),
                );
            }
        }
        world.drain_browser(0);
        world.deliver();
        world.step();
        // The world records what the subscriber got and every SFU event; this target checks
        // only that nothing breaks, so the records are dropped to keep memory flat.
        for browser in &mut world.browsers {
            browser.received.clear();
        }
        // A publisher whose packets the SFU had to keep from str0m (transport-wide numbers out
        // of its reach) is failed; later inputs need a live one.
        let failed = world
            .events
            .iter()
            .any(|(_, _, e)| matches!(e, SfuEvent::PeerFailed(_)));
        world.events.clear();
        if failed {
            *world = publisher_and_subscriber();
        }
    })
});
