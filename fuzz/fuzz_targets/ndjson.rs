//! NDJSON / JSON Lines.
#![no_main]
use libfuzzer_sys::fuzz_target;
include!("common.rs");

fuzz_target!(|data: &[u8]| {
    decode_as(data, Format::Ndjson, Default::default());
});
