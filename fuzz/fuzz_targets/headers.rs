//! Header handling on arbitrary bytes, on both sides of the ABI: see `fuzz/props/headers.rs`
//! for the properties (the stable proptest suite checks the same file).
#![no_main]

#[path = "../props/headers.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::check(data));
