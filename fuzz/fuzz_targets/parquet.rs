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
    let access = Arc::new(Memory(bytes::Bytes::copy_from_slice(data)));
    if let Ok(mut rows) = ParquetRows::open(access, limits()) {
        drain(&mut rows);
    }
});
