//! The `retry-after` / rate-limit reset header parsers on arbitrary text (upstream-controlled
//! header values): no panic or overflow, and a deadline never beyond the 24 h clamp.
#![no_main]

use failover_filter::retry_after::{
    deadline_ms, parse_go_duration_ms, parse_http_date_ms, parse_retry_after, parse_rfc3339_ms,
    MAX_DELAY_MS,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (now, text) = match data.split_first_chunk::<8>() {
        Some((n, rest)) => (u64::from_le_bytes(*n), String::from_utf8_lossy(rest)),
        None => (1_700_000_000_000, String::from_utf8_lossy(data)),
    };
    let _ = parse_retry_after(&text, now);
    let _ = parse_http_date_ms(&text);
    let _ = parse_rfc3339_ms(&text);
    let _ = parse_go_duration_ms(&text);
    let headers = vec![
        ("retry-after".to_string(), text.to_string()),
        (
            "anthropic-ratelimit-requests-reset".to_string(),
            text.to_string(),
        ),
        ("x-ratelimit-reset-tokens".to_string(), text.to_string()),
    ];
    for status in [429, 503, 529] {
        for h in [&headers[..], &headers[1..]] {
            if let Some(d) = deadline_ms(status, h, now) {
                assert!(d <= now.saturating_add(MAX_DELAY_MS));
            }
        }
    }
});
