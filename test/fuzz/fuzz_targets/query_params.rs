//! Connect query strings with Plug's nested params (`a[b][]=1&…`) and `vsn` negotiation, as
//! both transports parse them before any other check.
#![no_main]
use libfuzzer_sys::fuzz_target;
use videoroom::phoenix::Serializer;
use videoroom::phoenix::transport::params::{parse_query, percent_decode};

fuzz_target!(|data: &[u8]| {
    let query = String::from_utf8_lossy(data);
    let params = parse_query(&query);
    assert!(params.is_object(), "params are always a map");
    let _ = Serializer::negotiate(params.get("vsn").and_then(|v| v.as_str()));
    let _ = percent_decode(&query);
});
