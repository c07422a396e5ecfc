//! Phoenix V1 JSON frames (`{"topic","event","payload","ref"}`), one per input line, into a real
//! socket state machine.
#![no_main]
use libfuzzer_sys::fuzz_target;
use videoroom::phoenix::Serializer;

fuzz_target!(|data: &[u8]| {
    videoroom_fuzz::drive_phoenix_socket(Serializer::V1, &videoroom_fuzz::text_frames(data));
});
