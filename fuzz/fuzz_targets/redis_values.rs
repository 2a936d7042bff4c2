//! What the Redis store reads back from Redis, as a party with write access
//! may have planted it: stored revocations (`{kind}:{id}` = `{until}|{before}`)
//! and announcements. Never a panic; whatever is accepted is bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (key, value) = text.split_once('\n').unwrap_or((text, ""));
    tower_sliding_jwt::fuzzing::redis_entries(key, value, text);
});
