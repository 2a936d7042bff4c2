//! What the SQL stores read back from a shared database, as a party with
//! write access may have planted it: a row's `record` (kind, until, before,
//! ids). Never a panic; whatever is accepted is bounded and reads back as
//! written.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tower_sliding_jwt::fuzzing::sql_record(data);
});
