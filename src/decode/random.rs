//! Random access for formats that need it (Parquet keeps its index in a footer): S3 range
//! requests in the Lambda, a local file otherwise.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;

use bytes::Bytes;

use super::{DecodeError, RangedObject};

/// Byte ranges of one object, readable from a blocking thread.
pub trait RandomAccess: Send + Sync {
    /// The object's size in bytes.
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Bytes `start..end` (end exclusive), exactly.
    fn read_range(&self, start: u64, end: u64) -> std::io::Result<Bytes>;
}

/// An S3 object read by ranged GETs, each driven to completion on the runtime from the decode
/// thread (a tokio blocking thread or a plain thread, never an async task).
pub struct S3Ranges {
    object: RangedObject,
    size: u64,
}

impl S3Ranges {
    /// Takes the size the GetObject response gave, or asks with a HEAD when it gave none.
    pub fn new(object: RangedObject) -> Result<Self, DecodeError> {
        let size = if object.size > 0 {
            object.size
        } else {
            object
                .runtime
                .block_on(object.source.head(&object.bucket, &object.key))
                .map_err(|e| DecodeError::Read {
                    row: 0,
                    reason: e.to_string(),
                })?
                .size
        };
        Ok(S3Ranges { object, size })
    }
}

impl RandomAccess for S3Ranges {
    fn len(&self) -> u64 {
        self.size
    }

    fn read_range(&self, start: u64, end: u64) -> std::io::Result<Bytes> {
        let o = &self.object;
        let bytes = o
            .runtime
            .block_on(
                o.source
                    .read_range_if(&o.bucket, &o.key, start, end, o.etag.as_deref()),
            )
            .map_err(std::io::Error::other)?;
        if bytes.len() as u64 != end - start {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("asked S3 for bytes {start}..{end} and got {} bytes; did the object change while it was read?", bytes.len()),
            ));
        }
        Ok(bytes)
    }
}

/// A local file (or a spooled body) read with positioned reads.
pub struct LocalFile {
    file: File,
    size: u64,
}

impl LocalFile {
    pub fn new(file: File) -> std::io::Result<Self> {
        let size = file.metadata()?.len();
        Ok(LocalFile { file, size })
    }
}

impl RandomAccess for LocalFile {
    fn len(&self) -> u64 {
        self.size
    }

    fn read_range(&self, start: u64, end: u64) -> std::io::Result<Bytes> {
        let mut buf =
            vec![0; usize::try_from(end.saturating_sub(start)).map_err(std::io::Error::other)?];
        self.file.read_exact_at(&mut buf, start)?;
        Ok(Bytes::from(buf))
    }
}

/// Copies a stream to a temporary file that is unlinked at once (it disappears with the
/// handle), for Parquet bodies that arrive as a stream (`DecodeInput::ranged` is `None`).
pub fn spool_to_temp_file(mut reader: impl Read) -> std::io::Result<LocalFile> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path =
        std::env::temp_dir().join(format!("moengage-sync-{}-{n}.parquet", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    let _ = std::fs::remove_file(&path);
    std::io::copy(&mut reader, &mut file)?;
    LocalFile::new(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spooled_stream_reads_back_by_range_and_leaves_no_file() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let f = spool_to_temp_file(&data[..]).unwrap();
        assert_eq!(f.len(), 100_000);
        assert_eq!(&f.read_range(99_990, 100_000).unwrap()[..], &data[99_990..]);
        assert_eq!(&f.read_range(5, 9).unwrap()[..], &data[5..9]);
        assert!(f.read_range(99_990, 100_001).is_err());
    }
}
