//! What a connection to the web port or the ICE-TCP port sends: its first bytes classified
//! (`web::sniff`), then the stream cut into RFC 4571 frames (`rtc::tcp::FrameReader`) in
//! reads of fuzzer-chosen sizes, each frame counted as a remote ICE candidate line would be.
#![no_main]
use libfuzzer_sys::fuzz_target;
use videoroom::rtc::sfu::diagnosis::CandidateTally;
use videoroom::rtc::tcp::{FrameReader, MAX_FRAME};
use videoroom::web::sniff::{FirstBytes, SNIFF_LEN, classify};

fuzz_target!(|data: &[u8]| {
    // The first byte sets the read size (1 to 256 bytes), the rest is the stream.
    let Some((&size, stream)) = data.split_first() else {
        return;
    };
    if classify(stream) == FirstBytes::IceTcp {
        assert!(stream.len() >= SNIFF_LEN, "decided on whole prefixes only");
    }
    let mut reader = FrameReader::default();
    let mut consumed = 0usize;
    let mut tally = CandidateTally::default();
    for read in stream.chunks(size as usize + 1) {
        reader.push(read);
        loop {
            match reader.next_frame() {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= MAX_FRAME, "no frame above the limit");
                    // The frame is exactly what followed its length in the stream.
                    assert_eq!(&stream[consumed + 2..consumed + 2 + frame.len()], &frame[..]);
                    consumed += 2 + frame.len();
                    tally.add(&String::from_utf8_lossy(&frame));
                }
                Ok(None) => break,
                Err(_) => return, // the connection is closed here
            }
        }
        assert!(reader.buffered() <= 2 + MAX_FRAME + read.len(), "one partial frame at most");
    }
    let _ = tally.summary();
});
