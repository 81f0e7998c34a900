//! CSV/TSV in any dialect: the first byte picks delimiter, quote and escape.
#![no_main]
use libfuzzer_sys::fuzz_target;
include!("common.rs");

fuzz_target!(|data: &[u8]| {
    let Some((&dialect, body)) = data.split_first() else {
        return;
    };
    const DELIMS: [u8; 4] = [b',', b'\t', b';', b'|'];
    let csv = decode::CsvOptions {
        delimiter: Some(DELIMS[(dialect & 3) as usize]),
        quote: if dialect & 4 == 0 { b'"' } else { b'\'' },
        escape: (dialect & 8 != 0).then_some(b'\\'),
    };
    let format = if dialect & 16 == 0 {
        Format::Csv
    } else {
        Format::Tsv
    };
    decode_as(body, format, csv);
});
