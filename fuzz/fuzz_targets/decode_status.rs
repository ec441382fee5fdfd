//! Status and integer decoding of header bytes and host properties: `None` or a real status.
#![no_main]

use failover_filter::classify::{decode_status, decode_u64_le};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(s) = decode_status(data) {
        assert!((100..=599).contains(&s));
    }
    assert_eq!(decode_u64_le(data).is_some(), data.len() == 8);
});
