//! The shared record decoder (`Record::decode`) on arbitrary bytes — what another VM, an older
//! version or a foreign plugin may have left under `failover.v1`: no panic, and whatever
//! decodes re-encodes to the same record.
#![no_main]

use failover_filter::state::Record;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Record::decode(data) {
        let again = Record::decode(&r.encode()).expect("an encoded record decodes");
        assert_eq!(again, r);
    }
});
