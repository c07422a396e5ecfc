//! Membrane media events (the JSON inside `mediaEvent` pushes): client events parse or are
//! classified, and what parses serializes back to JSON that parses to the same event.
#![no_main]
use libfuzzer_sys::fuzz_target;
use videoroom::rtc::media_event::{MediaEventIn, MediaEventOut};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(event) = MediaEventIn::parse(text) {
        let json = event.to_json();
        let again = MediaEventIn::parse(&json).expect("a parsed event re-parses");
        assert_eq!(again, event, "round trip of {json}");
        let _ = event.kind();
    }
    if let Ok(event) = MediaEventOut::parse(text) {
        let _ = event.to_json();
    }
});
