//! Decoding: the bytes of an export into rows with a header, streamed. A reader over the S3 body
//! goes in; a [`RowSource`] hands out one row at a time from reused buffers.
//!
//! - `csv`: CSV/TSV with a header row.

mod csv;

use std::io::{BufRead, BufReader, Read};

pub use self::csv::CsvRows;
use crate::mapping::Row;

/// How an object's bytes are compressed (`SOURCE_COMPRESSION` overrides detection).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub const ACCEPTED: &'static str = "none, gzip or zstd";
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" | "uncompressed" => Some(Compression::None),
            "gzip" | "gz" => Some(Compression::Gzip),
            "zstd" | "zst" => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// The export's format (`SOURCE_FORMAT` overrides detection).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Tsv,
    Ndjson,
    Parquet,
}

impl Format {
    pub const ACCEPTED: &'static str = "csv, tsv, ndjson or parquet";
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "csv" => Some(Format::Csv),
            "tsv" => Some(Format::Tsv),
            "ndjson" | "jsonl" | "json" => Some(Format::Ndjson),
            "parquet" => Some(Format::Parquet),
            _ => None,
        }
    }
}

/// Everything a decoder may need about one object.
pub struct DecodeInput<'a> {
    /// The object's body as a stream (GetObject).
    pub reader: Box<dyn Read + Send + 'a>,
    pub key: &'a str,
    pub content_encoding: Option<&'a str>,
    /// `SOURCE_FORMAT` / `SOURCE_COMPRESSION`, when set.
    pub format: Option<Format>,
    pub compression: Option<Compression>,
    /// Range access for formats that need random access (Parquet); `None` for local files.
    pub ranged: Option<RangedObject>,
}

/// Random access to an S3 object from a blocking thread.
#[derive(Clone)]
pub struct RangedObject {
    pub source: std::sync::Arc<dyn crate::source::ObjectSource>,
    pub bucket: String,
    pub key: String,
    pub size: u64,
    /// The runtime to `block_on` range reads from the decode thread (a blocking thread may).
    pub runtime: tokio::runtime::Handle,
}

/// gzip's magic bytes, for objects whose key and metadata say nothing.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

impl Compression {
    /// From the key's extension or the object's `Content-Encoding`; `None` when neither says.
    pub fn from_metadata(key: &str, content_encoding: Option<&str>) -> Option<Self> {
        let lower = key.to_ascii_lowercase();
        if lower.ends_with(".gz") || lower.ends_with(".gzip") {
            return Some(Compression::Gzip);
        }
        match content_encoding.map(|e| e.trim().to_ascii_lowercase()) {
            Some(e) if e == "gzip" || e == "x-gzip" => Some(Compression::Gzip),
            _ => None,
        }
    }
}

/// An object could not be decoded at all (as opposed to one bad row).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("could not read the header row: {0}")]
    Header(String),
    #[error("the export has no header row (the object is empty)")]
    Empty,
    #[error("reading failed after row {row}: {reason}")]
    Read { row: u64, reason: String },
}

/// A row that cannot become an element whatever the mapping (wrong width, bad quoting, not JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// 1-based data row number.
    pub row: u64,
    /// Line of the file where the row starts, when the format has lines.
    pub line: Option<u64>,
    pub reason: String,
}

/// One decoded row, borrowed from the decoder's buffers until the next call.
pub struct RowRef<'a> {
    pub row: &'a dyn Row,
    /// 1-based data row number (the header is not counted).
    pub number: u64,
    pub line: Option<u64>,
}

/// A stream of rows with a header — the one interface every format implements.
pub trait RowSource: Send {
    /// Column names, in order; the mapping resolves against them.
    fn header(&self) -> &[String];
    /// Advances to the next row. `Ok(None)` at the end; `Ok(Some(Err(bad)))` for a row to reject;
    /// `Err` when the stream itself failed (corrupt compression, S3 read error).
    #[allow(clippy::type_complexity)]
    fn next_row(&mut self) -> Result<Option<Result<RowRef<'_>, BadRecord>>, DecodeError>;
}

/// Wraps `reader` in the right decompressor. With no hint, sniffs gzip's magic bytes so a
/// `.csv` that is really gzip (a common `COPY INTO` mix-up) still decodes.
pub fn decompress<'a>(reader: impl Read + Send + 'a, hint: Option<Compression>) -> std::io::Result<Box<dyn Read + Send + 'a>> {
    // 256 KiB reads keep syscalls and S3 chunk hand-offs rare without holding much memory.
    let mut buffered = BufReader::with_capacity(256 * 1024, reader);
    let compression = match hint {
        Some(c) => c,
        None => {
            let head = buffered.fill_buf()?;
            if head.starts_with(&GZIP_MAGIC) { Compression::Gzip } else { Compression::None }
        }
    };
    Ok(match compression {
        // Multi-member: Snowflake and `gzip -c a b` produce concatenated gzip streams.
        Compression::Gzip => Box::new(BufReader::with_capacity(256 * 1024, flate2::bufread::MultiGzDecoder::new(buffered))),
        Compression::None => Box::new(buffered),
        Compression::Zstd => {
            return Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "zstd is not supported yet"));
        }
    })
}

/// Opens the rows of an object: decompression by override / key / `Content-Encoding` / magic
/// bytes, then the format's decoder.
pub fn open(input: DecodeInput<'_>) -> Result<Box<dyn RowSource + '_>, DecodeError> {
    let hint = input.compression.or_else(|| Compression::from_metadata(input.key, input.content_encoding));
    let reader = decompress(input.reader, hint).map_err(|e| DecodeError::Read { row: 0, reason: e.to_string() })?;
    let tsv = input.format == Some(Format::Tsv) || input.key.to_ascii_lowercase().trim_end_matches(".gz").ends_with(".tsv");
    Ok(Box::new(CsvRows::new(reader, if tsv { b'\t' } else { b',' })?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_from_key_or_content_encoding() {
        assert_eq!(Compression::from_metadata("a/b.csv.gz", None), Some(Compression::Gzip));
        assert_eq!(Compression::from_metadata("a/b.CSV.GZIP", None), Some(Compression::Gzip));
        assert_eq!(Compression::from_metadata("a/b.csv", Some("gzip")), Some(Compression::Gzip));
        assert_eq!(Compression::from_metadata("a/b.csv", None), None);
    }
}
