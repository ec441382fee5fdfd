//! Header rules that need no runtime: the proxy-wasm header-map wire format the host reads
//! from and writes to guest memory, and the hop-by-hop headers a proxy never forwards.
//!
//! Kept apart from the ABI glue (`abi/headers.rs`) and the router so that they are tested, and
//! fuzzed (`fuzz/fuzz_targets/headers.rs`), without a Wasm VM: decoding is where bytes from a
//! buggy or hostile module meet the host, so it must refuse malformed maps, never panic.
//!
//! Wire format (the SDK's `serialize_map`): u32 count, then per pair u32 name length and u32
//! value length, then per pair name bytes, NUL, value bytes, NUL. All little-endian.

use http::{header, HeaderMap, HeaderName};

/// Encodes `pairs` in the proxy-wasm map format.
pub fn encode(pairs: &[(String, Vec<u8>)]) -> Vec<u8> {
    let size = 4 + pairs
        .iter()
        .map(|(k, v)| k.len() + v.len() + 10)
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// Why a serialized map could not be decoded.
#[derive(Debug, PartialEq, Eq)]
pub struct MalformedMap;

fn u32_at(bytes: &[u8], at: usize) -> Result<usize, MalformedMap> {
    let b = bytes.get(at..at + 4).ok_or(MalformedMap)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

/// Decodes the proxy-wasm map format; empty input is an empty map. Bounds are checked.
pub fn decode(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, MalformedMap> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let count = u32_at(bytes, 0)?;
    let mut data = count
        .checked_mul(8)
        .and_then(|n| n.checked_add(4))
        .ok_or(MalformedMap)?;
    if data > bytes.len() {
        return Err(MalformedMap);
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let klen = u32_at(bytes, 4 + i * 8)?;
        let vlen = u32_at(bytes, 8 + i * 8)?;
        let key = bytes
            .get(data..data.checked_add(klen).ok_or(MalformedMap)?)
            .ok_or(MalformedMap)?;
        data += klen + 1;
        let value = bytes
            .get(data..data.checked_add(vlen).ok_or(MalformedMap)?)
            .ok_or(MalformedMap)?;
        data += vlen + 1;
        out.push((
            String::from_utf8_lossy(key).to_ascii_lowercase(),
            value.to_vec(),
        ));
    }
    Ok(out)
}

/// Headers that belong to one connection and are never forwarded.
pub const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
];

/// Drops connection-scoped headers.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most requests carry none of them: one pass over the names (no parsing, no hashing)
    // before paying for six removals.
    if !headers.keys().any(|k| HOP_BY_HOP.contains(&k.as_str())) {
        return;
    }
    // Tokens are read from the bytes, so that one odd byte elsewhere in a `Connection` value
    // does not let the headers it names through; what is not a header name names nothing.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .filter_map(|token| HeaderName::from_bytes(token.trim_ascii()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        if name == "te" {
            // `te: trailers` may pass.
            let keep = headers
                .get("te")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
            if keep {
                continue;
            }
        }
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    // Golden bytes: the SDK's own fixture for this map (hostcalls.rs, SERIALIZED_MAP).
    #[rustfmt::skip]
    const GOLDEN: &[u8] = &[
        4, 0, 0, 0,                           // 4 pairs
        7, 0, 0, 0, 3, 0, 0, 0,               // ":method" / "GET"
        5, 0, 0, 0, 8, 0, 0, 0,               // ":path" / "/bytes/1"
        10, 0, 0, 0, 11, 0, 0, 0,             // ":authority" / "httpbin.org"
        10, 0, 0, 0, 10, 0, 0, 0,             // "powered-by" / "proxy-wasm"
        b':', b'm', b'e', b't', b'h', b'o', b'd', 0, b'G', b'E', b'T', 0,
        b':', b'p', b'a', b't', b'h', 0, b'/', b'b', b'y', b't', b'e', b's', b'/', b'1', 0,
        b':', b'a', b'u', b't', b'h', b'o', b'r', b'i', b't', b'y', 0,
        b'h', b't', b't', b'p', b'b', b'i', b'n', b'.', b'o', b'r', b'g', 0,
        b'p', b'o', b'w', b'e', b'r', b'e', b'd', b'-', b'b', b'y', 0,
        b'p', b'r', b'o', b'x', b'y', b'-', b'w', b'a', b's', b'm', 0,
    ];

    fn pairs() -> Vec<(String, Vec<u8>)> {
        vec![
            (":method".into(), b"GET".to_vec()),
            (":path".into(), b"/bytes/1".to_vec()),
            (":authority".into(), b"httpbin.org".to_vec()),
            ("powered-by".into(), b"proxy-wasm".to_vec()),
        ]
    }

    #[test]
    fn encodes_golden_bytes() {
        assert_eq!(encode(&pairs()), GOLDEN);
    }

    #[test]
    fn decodes_golden_bytes_and_round_trips() {
        assert_eq!(decode(GOLDEN).unwrap(), pairs());
        assert_eq!(decode(&encode(&[])).unwrap(), Vec::new());
        assert_eq!(decode(&[]).unwrap(), Vec::new());
    }

    #[test]
    fn rejects_truncated_and_oversized_maps() {
        assert_eq!(decode(&GOLDEN[..GOLDEN.len() - 3]), Err(MalformedMap));
        assert_eq!(decode(&[0xff, 0xff, 0xff, 0xff]), Err(MalformedMap));
        assert_eq!(decode(&[1, 0]), Err(MalformedMap));
    }

    #[test]
    fn every_prefix_cut_inside_the_map_is_refused() {
        let pairs = vec![("retry-after".to_string(), b"3".to_vec())];
        let bytes = encode(&pairs);
        assert_eq!(decode(&bytes), Ok(pairs));
        // Only the last value's terminating NUL may be missing (the decoder reads by length).
        for cut in 1..bytes.len() - 1 {
            assert!(
                decode(&bytes[..cut]).is_err(),
                "prefix of {cut} bytes accepted"
            );
        }
    }

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close, x-private"));
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert!(
            h.get("connection").is_none()
                && h.get("x-private").is_none()
                && h.get("keep-alive").is_none()
        );
        assert_eq!(h.get("te").map(|v| v.as_bytes()), Some(&b"trailers"[..]));
        assert!(h.get("x-kept").is_some());
    }

    #[test]
    fn an_odd_byte_in_connection_does_not_let_named_headers_through() {
        let mut h = HeaderMap::new();
        let value = HeaderValue::from_bytes(b"x-secret, caf\xe9, Keep-Alive")
            .expect("obs-text is a valid value");
        h.insert("connection", value);
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert!(h.get("x-secret").is_none() && h.get("connection").is_none());
        assert!(h.get("x-kept").is_some());
    }
}
