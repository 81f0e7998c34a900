//! Parquet from memory, through the same range reads as S3 (footer, then column-chunk windows).
#![no_main]
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use moengage_sync::decode::{ParquetRows, RandomAccess};
include!("common.rs");

struct Memory(bytes::Bytes);

impl RandomAccess for Memory {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_range(&self, start: u64, end: u64) -> std::io::Result<bytes::Bytes> {
        if start > end || end > self.len() {
            return Err(std::io::Error::other("range outside the object"));
        }
        Ok(self.0.slice(start as usize..end as usize))
    }
}

fuzz_target!(|data: &[u8]| {
    // libFuzzer's panic hook aborts even on panics the decoder catches (the parquet crate panics
    // on some damaged pages; `ParquetRows` turns those into a corrupt-file error). A panic that
    // escapes still fails the run: libfuzzer-sys aborts on any panic leaving the target.
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let access = Arc::new(Memory(bytes::Bytes::copy_from_slice(data)));
    if let Ok(mut rows) = ParquetRows::open(access, limits()) {
        drain(&mut rows);
    }
});
