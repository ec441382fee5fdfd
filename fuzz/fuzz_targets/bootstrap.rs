//! The host's Envoy bootstrap parser on arbitrary text: `Ok` or an error with a message, never
//! a panic. File checks are skipped and the embedded module is used, so the target touches no
//! files.
#![no_main]

use failover_host::bootstrap::{parse, LoadOptions, WasmCode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let opts = LoadOptions {
        wasm_override: Some(WasmCode::Embedded),
        skip_file_checks: true,
    };
    if let Err(e) = parse(std::path::Path::new("fuzz.yaml"), text, &opts) {
        assert!(!e.to_string().is_empty());
    }
});
