//! Phoenix V2 binary frames (kind byte, four header lengths, headers, payload) into a real socket
//! state machine that has joined `echo:x` first, so binary pushes reach a channel.
#![no_main]
use libfuzzer_sys::fuzz_target;
use videoroom::phoenix::{Frame, Serializer};

fuzz_target!(|data: &[u8]| {
    let join = Frame::Text(r#"["1","1","echo:x","phx_join",{}]"#.to_owned());
    let frame = Frame::Binary(bytes::Bytes::copy_from_slice(data));
    videoroom_fuzz::drive_phoenix_socket(Serializer::V2, &[join, frame]);
});
