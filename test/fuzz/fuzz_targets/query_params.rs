//! Connect query strings with Plug's nested params (`a[b][]=1&…`) and `vsn` negotiation, as
//! both transports parse them before any other check.
#![no_main]
use libfuzzer_sys::fuzz_target;
use videoroom::phoenix::Serializer;
use videoroom::phoenix::transport::params::{QueryLimits, parse_query, percent_decode};

/// The widest limits an operator can set (`--max-query-depth` stops at 1024): the parser must
/// stay bounded there too, not only under the defaults.
const WIDEST: QueryLimits = QueryLimits {
    max_bytes: usize::MAX,
    max_pairs: usize::MAX,
    max_depth: 1024,
};

fuzz_target!(
    init: {
        // Regression for a deep-nesting stack overflow the fuzzer once found: `a` + `[a]` × 100,000 + `=1`,
        // a 300 KB query that once recursed once per level. Too big for the committed corpus
        // (and beyond `-max_len`), so every fuzz process replays it once here.
        let deep = format!("a{}=1", "[a]".repeat(100_000));
        assert!(parse_query(&deep, &QueryLimits::default()).is_err(), "a 300 KB, 100,000-level query is refused");
    },
    |data: &[u8]| {
        let query = String::from_utf8_lossy(data);
        let defaults = QueryLimits::default();
        if let Ok(params) = parse_query(&query, &defaults) {
            assert!(params.is_object(), "params are always a map");
            assert!(query.len() <= defaults.max_bytes, "an accepted query is within the size limit");
        }
        let Ok(params) = parse_query(&query, &WIDEST) else {
            return; // refused over a limit: the transports answer 400
        };
        assert!(params.is_object(), "params are always a map");
        let _ = Serializer::negotiate(params.get("vsn").and_then(|v| v.as_str()));
        let _ = percent_decode(&query);
    }
);
