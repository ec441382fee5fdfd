//! The plugin configuration parser (`Config::parse`) on arbitrary bytes: `Ok` or an error that
//! names a field path and never prints a resolved `${ENV}` value. Same property as
//! `filter/tests/bad_input.rs::check_config`.
#![no_main]

use failover_filter::config::Config;
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "s3cr3t-value-never-printed";

fuzz_target!(|data: &[u8]| {
    let env = |_: &str| Some(SECRET.to_string());
    match Config::parse(data, &env) {
        Ok(c) => assert!(!format!("{c:?}").contains(SECRET)),
        Err(e) => {
            let text = e.to_string();
            assert!(text.starts_with("plugin config: "));
            assert!(!text.contains(SECRET));
        }
    }
});
