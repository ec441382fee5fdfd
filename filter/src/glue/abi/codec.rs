//! The ABI's byte encodings: header maps (host ⇄ guest) and property paths (guest → host).
//! Plain functions over byte slices, so their golden-byte tests run natively (`lib.rs` builds
//! this file on its own under `cfg(test)`).
//!
//! A header map is: the pair count, then a (name length, value length) pair per entry, all u32
//! little-endian; then each name and each value, each followed by a NUL that the lengths do
//! not count. A property path is its segments joined by NUL, with no NUL after the last.

/// Encodes pairs as a header map (for `proxy_http_call` and `proxy_send_local_response`).
pub fn encode_pairs(pairs: &[(&str, &str)]) -> Vec<u8> {
    let word = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    let text: usize = pairs.iter().map(|(n, v)| n.len() + v.len() + 2).sum();
    let mut out = Vec::with_capacity(4 + 8 * pairs.len() + text);
    out.extend_from_slice(&word(pairs.len()));
    for (n, v) in pairs {
        out.extend_from_slice(&word(n.len()));
        out.extend_from_slice(&word(v.len()));
    }
    for (n, v) in pairs {
        out.extend_from_slice(n.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// Decodes a header map from the host. Names are decoded lossily (a header name is ASCII in
/// practice; a host that sends something else must not panic the VM); values stay bytes. Stops
/// at the first inconsistency and returns what was decoded up to there.
pub fn decode_pairs(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let word = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at.checked_add(4)?)?;
        usize::try_from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])).ok()
    };
    let Some(count) = word(0) else {
        return Vec::new();
    };
    let Some(mut at) = count.checked_mul(8).and_then(|n| n.checked_add(4)) else {
        return Vec::new();
    };
    // No more pairs than the bytes could hold (a corrupt count must not reserve gigabytes).
    let mut out = Vec::with_capacity(count.min(bytes.len() / 10));
    let mut sizes = 4usize;
    for _ in 0..count {
        let (Some(nl), Some(vl)) = (word(sizes), word(sizes + 4)) else {
            break;
        };
        sizes += 8;
        let name_end = at.saturating_add(nl);
        let value_start = name_end.saturating_add(1);
        let value_end = value_start.saturating_add(vl);
        let (Some(name), Some(value)) =
            (bytes.get(at..name_end), bytes.get(value_start..value_end))
        else {
            break;
        };
        out.push((String::from_utf8_lossy(name).into_owned(), value.to_vec()));
        at = value_end.saturating_add(1);
    }
    out
}

/// Encodes a property path (`["response", "flags"]` → `response\0flags`; `[]` → nothing).
pub fn property_path(path: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.iter().map(|p| p.len() + 1).sum());
    for (i, part) in path.iter().enumerate() {
        if i > 0 {
            out.push(0);
        }
        out.extend_from_slice(part.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two pairs, `:status: 503` and `retry-after: 7`, as a host hands them over.
    #[rustfmt::skip]
    const TWO_PAIRS: &[u8] = &[
        2, 0, 0, 0,                         // two pairs
        7, 0, 0, 0,   3, 0, 0, 0,           // ":status" is 7 bytes, "503" is 3
        11, 0, 0, 0,  1, 0, 0, 0,           // "retry-after" is 11 bytes, "7" is 1
        b':', b's', b't', b'a', b't', b'u', b's', 0,
        b'5', b'0', b'3', 0,
        b'r', b'e', b't', b'r', b'y', b'-', b'a', b'f', b't', b'e', b'r', 0,
        b'7', 0,
    ];

    #[test]
    fn encodes_the_golden_bytes() {
        assert_eq!(
            encode_pairs(&[(":status", "503"), ("retry-after", "7")]),
            TWO_PAIRS
        );
        assert_eq!(encode_pairs(&[]), [0, 0, 0, 0]);
    }

    #[test]
    fn decodes_the_golden_bytes_and_round_trips() {
        let pairs = decode_pairs(TWO_PAIRS);
        assert_eq!(
            pairs,
            vec![
                (":status".to_string(), b"503".to_vec()),
                ("retry-after".to_string(), b"7".to_vec()),
            ]
        );
        let text: Vec<(String, String)> = pairs
            .iter()
            .map(|(n, v)| (n.clone(), String::from_utf8(v.clone()).unwrap()))
            .collect();
        let borrowed: Vec<(&str, &str)> =
            text.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        assert_eq!(encode_pairs(&borrowed), TWO_PAIRS);
    }

    #[test]
    fn empty_and_missing_maps_decode_to_nothing() {
        assert!(decode_pairs(&[]).is_empty());
        assert!(decode_pairs(&[0, 0, 0, 0]).is_empty());
        assert!(decode_pairs(&[1, 0]).is_empty());
    }

    #[test]
    fn corrupt_maps_decode_what_is_consistent_and_never_panic() {
        // The second pair claims more bytes than there are: only the first is returned.
        let mut bytes = TWO_PAIRS.to_vec();
        bytes[12] = 200;
        assert_eq!(decode_pairs(&bytes).len(), 1);
        // A count far beyond the data.
        assert!(decode_pairs(&[255, 255, 255, 255, 1, 0, 0, 0]).is_empty());
        // Every truncation of a valid map.
        for end in 0..TWO_PAIRS.len() {
            assert!(decode_pairs(&TWO_PAIRS[..end]).len() <= 2);
        }
        // Values are bytes; a name that is not UTF-8 is decoded lossily.
        let odd = [1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0xff, 0, 0xfe, 0];
        assert_eq!(
            decode_pairs(&odd),
            vec![("\u{fffd}".to_string(), vec![0xfe])]
        );
    }

    #[test]
    fn property_paths_join_segments_with_nul() {
        assert_eq!(property_path(&["response", "flags"]), b"response\0flags");
        assert_eq!(property_path(&["plugin_root_id"]), b"plugin_root_id");
        assert!(property_path(&[]).is_empty());
    }
}
