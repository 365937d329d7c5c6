//! The configuration parser never panics, and a pool it accepts maps indexes and
//! numbers both ways: `cargo +nightly fuzz run parse_config`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use request_access_config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(config) = Config::parse(text, "fuzz") else { return };
    for group in &config.groups {
        let size = group.pool.size();
        for index in [0, size / 2, size - 1] {
            let number = group.pool.number_at(index).expect("an index below the size has a number");
            assert_eq!(group.pool.index_of(&number), Some(index), "{number}");
        }
        assert_eq!(group.pool.number_at(size), None);
    }
});
