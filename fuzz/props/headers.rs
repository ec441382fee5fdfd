//! The header-handling property, shared by the `headers` fuzz target and the stable proptest
//! suite (`tests/tests/bad_input.rs`), so both check exactly the same thing.
//!
//! Header handling on arbitrary bytes, on both sides of the ABI.
//!
//! Host side: the proxy-wasm header-map decoder (what a buggy or hostile module hands the
//! host) refuses malformed bytes and round-trips what it accepts; `strip_hop_by_hop` leaves no
//! connection-scoped header and nothing a `Connection` header names. Filter side: the
//! upstream-controlled header values (`retry-after` and rate-limit resets, `content-type`,
//! SSE frames, `source.address`) never panic and never give a deadline past the 24 h clamp.
//!
//! The input is read twice: as a serialized map, and as `name: value` lines (easier for the
//! fuzzer to reach real header names from the corpus).
use failover_filter::classify::{is_event_stream, sse_error_event};
use failover_filter::retry_after::{deadline_ms, MAX_DELAY_MS};
use failover_filter::status_page::parse_source;
use failover_host::headers::{decode, encode, strip_hop_by_hop, HOP_BY_HOP};
use http::{HeaderMap, HeaderName, HeaderValue};

const NOW_MS: u64 = 1_700_000_000_000;

/// Checks every property above on `data`; panics when one does not hold.
pub fn check(data: &[u8]) {
    if let Ok(pairs) = decode(data) {
        let again = decode(&encode(&pairs)).expect("an encoded map decodes");
        assert_eq!(again, pairs);
        check_pairs(&pairs);
    }
    let lines: Vec<(String, Vec<u8>)> = data
        .split(|b| *b == b'\n')
        .filter_map(|line| {
            let at = line.iter().position(|b| *b == b':')?;
            let name = String::from_utf8_lossy(&line[..at])
                .trim()
                .to_ascii_lowercase();
            Some((name, line[at + 1..].trim_ascii().to_vec()))
        })
        .collect();
    check_pairs(&lines);
    let _ = sse_error_event(data);
}

fn check_pairs(pairs: &[(String, Vec<u8>)]) {
    // Filter: what it reads from upstream answers and from `source.address`.
    let text: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
        .collect();
    for status in [429, 503, 529, 200] {
        if let Some(d) = deadline_ms(status, &text, NOW_MS) {
            assert!(d <= NOW_MS + MAX_DELAY_MS, "deadline past the clamp: {d}");
        }
    }
    for (_, v) in pairs {
        let _ = is_event_stream(v);
        let _ = sse_error_event(v);
    }
    for (_, v) in &text {
        let _ = parse_source(v);
    }

    // Host: hop-by-hop stripping on whatever of it is a valid HTTP header.
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_bytes(v),
        ) {
            map.append(name, value);
        }
    }
    // What `Connection` names, worked out from the input pairs (not from the map the code
    // under test reads): every comma-separated token of a valid `connection` value.
    let named: Vec<String> = pairs
        .iter()
        .filter(|(k, v)| k.eq_ignore_ascii_case("connection") && HeaderValue::from_bytes(v).is_ok())
        .flat_map(|(_, v)| {
            String::from_utf8_lossy(v)
                .split(',')
                .map(|t| t.trim_matches([' ', '\t']).to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .collect();
    strip_hop_by_hop(&mut map);
    for name in HOP_BY_HOP {
        if name == "te"
            && map
                .get("te")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"))
        {
            continue;
        }
        assert!(!map.contains_key(name), "{name} survived");
    }
    for name in named {
        assert!(
            !map.contains_key(name.as_str()),
            "{name} named by Connection survived"
        );
    }
}
